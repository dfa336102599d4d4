//! failed/<source>.csv: the rows of every failed unit, each source with its own header, ready to
//! fix and reload with `run --source <source>=<run dir>/failed/<source>.csv --resume`.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;

use crate::plan::check::Plan;
use crate::source::Unit;

pub struct FailedRows {
    dir: PathBuf,
    sources: Vec<String>,
    writers: Mutex<HashMap<String, csv::Writer<File>>>,
    /// Append to the files an earlier invocation wrote (a plain resume keeps its failures).
    append: bool,
}

impl FailedRows {
    /// `append`: keep what is there; otherwise the folder is emptied first (a new run, or a
    /// reload whose sources were read from it already).
    pub fn new(dir: &Path, plan: &Plan, append: bool) -> anyhow::Result<Self> {
        crate::files::create_private_dir(dir)?;
        if !append {
            for def in &plan.sources {
                let path = dir.join(format!("{}.csv", def.name));
                if path.exists() {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                }
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            sources: plan.sources.iter().map(|s| s.name.clone()).collect(),
            writers: Mutex::new(HashMap::new()),
            append,
        })
    }

    /// Writes every row of the unit, source by source.
    pub fn write(&self, unit: &Unit) {
        let mut writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        for name in &self.sources {
            let Some(records) = unit.rows(name) else {
                continue;
            };
            if records.is_empty() {
                continue;
            }
            let header = records.schema().header().names().to_vec();
            let writer = match writers.get_mut(name) {
                Some(w) => w,
                None => {
                    let path = self.dir.join(format!("{name}.csv"));
                    let fresh = !(self.append && path.exists());
                    let mut options = std::fs::OpenOptions::new();
                    options.create(true).append(true);
                    #[cfg(unix)]
                    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                    let Ok(file) = options.open(&path) else {
                        tracing::error!(file = %path.display(), "cannot write failed rows");
                        continue;
                    };
                    let mut w = csv::Writer::from_writer(file);
                    if fresh {
                        let _ = w.write_record(&header);
                    }
                    writers.entry(name.clone()).or_insert(w)
                }
            };
            for record in records.iter() {
                let _ = writer.write_record(header.iter().map(|h| record.get(h).unwrap_or("")));
            }
            let _ = writer.flush();
        }
    }

    pub fn finish(&self) -> anyhow::Result<()> {
        let mut writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        for w in writers.values_mut() {
            w.flush()?;
        }
        Ok(())
    }
}
