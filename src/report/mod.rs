//! What a run leaves for people, read from its checkpoint: report.md, report.json, report.html
//! and errors.csv ([`write_all`], at the end or the stop of a run), the terminal picture of a
//! run in progress or finished ([`status()`], `mambu-migrate status RUN_DIR`), and the
//! dashboard page ([`page`], served live by [`crate::dashboard`]; report.html is it, frozen).
//!
//! Everything here reads the checkpoint only (opened read-only), so it works while the run is
//! going and after it. The checkpoint holds keys and Mambu's error bodies, no source data;
//! the reports show counts, keys and Mambu's answers only. The files are written owner-only
//! (0600): Mambu's error messages may quote client data.
//!
//! Modules: [`summary`] reads [`Summary`], the figures (report.json is it); [`board`] adds what
//! a live page shows (ETA, outage, failures with their units); [`markdown`] renders report.md,
//! [`page`] the dashboard and report.html, [`errors`] errors.csv, [`status`](mod@status) the
//! status text; [`html`] the look every HTML page shares (stylesheet, shell, SVG charts);
//! [`stats`] holds percentiles, time buckets, time formats; [`render`] the helpers every
//! report of the crate is written with (`plan estimate` and `verify` too): HTML escape, numbers
//! with thousands separators, Markdown tables, the report formats.

pub mod board;
pub mod errors;
pub mod html;
pub mod markdown;
pub mod page;
pub mod render;
pub mod stats;
pub mod status;
pub mod summary;

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::checkpoint::Reader;
pub use summary::Summary;

/// The checkpoint's file name in a run directory.
pub const CHECKPOINT: &str = "checkpoint.db";

pub(crate) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Opens the run directory's checkpoint read-only, with an error that says what to do when
/// there is none.
pub(crate) fn open(run_dir: &Path) -> anyhow::Result<(Reader, PathBuf)> {
    if !run_dir.is_dir() {
        anyhow::bail!(
            "run directory {} does not exist: give the directory of a run (`mambu-migrate run` uses runs/<plan name>/ unless told --run-dir)",
            run_dir.display()
        );
    }
    let path = run_dir.join(CHECKPOINT);
    if !path.is_file() {
        anyhow::bail!(
            "{} holds no {CHECKPOINT}: no run has started in it. Give the directory of a run, or start one with `mambu-migrate run PLAN --run-dir {}`",
            run_dir.display(),
            stats::shell_word(&run_dir.display().to_string())
        );
    }
    let reader = Reader::open(&path).with_context(|| format!("opening {}", path.display()))?;
    Ok((reader, path))
}

/// Reads `run_dir/checkpoint.db` and writes `run_dir/report.md`, `report.json`, `report.html`
/// and `errors.csv` (each replaced, owner-only). Returns the figures written.
pub fn write_all(run_dir: &Path) -> anyhow::Result<Summary> {
    let (reader, board) = read_board(run_dir)?;
    let summary = board.summary.clone();
    let reading = || format!("reading {}", run_dir.join(CHECKPOINT).display());
    let failed = reader.failed_units().with_context(reading)?;
    let mut json = serde_json::to_string_pretty(&summary)?;
    json.push('\n');
    crate::files::write_private(&run_dir.join("report.json"), json.as_bytes())?;
    crate::files::write_private(
        &run_dir.join("report.md"),
        markdown::render(&summary).as_bytes(),
    )?;
    crate::files::write_private(&run_dir.join("errors.csv"), &errors::render(&failed)?)?;
    // A catch-up's drift, every phase's.
    let drift = reader.drift().with_context(reading)?;
    if !drift.is_empty() || !summary.phases.is_empty() {
        crate::files::write_private(
            &run_dir.join("drift.csv"),
            &crate::catchup::drift_csv(&drift)?,
        )?;
    }
    write_page_of(run_dir, &board)?;
    Ok(summary)
}

/// Writes `run_dir/report.html` again, as the run directory stands now: after `verify`, the
/// page shows its control totals (expected beside found) too.
pub fn write_page(run_dir: &Path) -> anyhow::Result<()> {
    let (_, board) = read_board(run_dir)?;
    write_page_of(run_dir, &board)
}

fn read_board(run_dir: &Path) -> anyhow::Result<(Reader, board::Board)> {
    let (reader, path) = open(run_dir)?;
    let board = board::Board::read(&reader, run_dir, now())
        .with_context(|| format!("reading {}", path.display()))?;
    Ok((reader, board))
}

fn write_page_of(run_dir: &Path, board: &board::Board) -> anyhow::Result<()> {
    crate::files::write_private(
        &run_dir.join("report.html"),
        page::render(board, page::Mode::Frozen).as_bytes(),
    )
}

/// Where the run in `run_dir` stands, for the terminal: state (and why it stopped), units,
/// calls and rates, throttles and retries, the ETA while running, the resume command when
/// stopped.
pub fn status(run_dir: &Path) -> anyhow::Result<String> {
    status_at(run_dir, now())
}

/// [`status()`] as it stands at `now` (seconds since the Unix epoch): rates and the ETA are
/// measured up to `now`.
pub fn status_at(run_dir: &Path, now: f64) -> anyhow::Result<String> {
    let (reader, path) = open(run_dir)?;
    status::render(&reader, run_dir, now).with_context(|| format!("reading {}", path.display()))
}
