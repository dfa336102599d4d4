//! Two extracts compared unit by unit, row by row: the stream of [`Compared`] units (both
//! groupings walked side by side in root key order, so only one unit of each is ever held) and
//! [`diff_unit`], what changed in one unit.

use std::collections::HashMap;

use crate::source::{Grouping, Record, Unit};

/// One unit key of either extract, with its unit in each.
pub struct Compared {
    pub key: String,
    pub old: Option<Unit>,
    pub new: Option<Unit>,
}

/// Both groupings merged by root key (byte order, as grouping yields them).
pub struct Merge<'a> {
    old: &'a mut Grouping,
    new: &'a mut Grouping,
    old_head: Option<Unit>,
    new_head: Option<Unit>,
}

impl<'a> Merge<'a> {
    pub fn new(old: &'a mut Grouping, new: &'a mut Grouping) -> Self {
        let old_head = old.next();
        let new_head = new.next();
        Merge {
            old,
            new,
            old_head,
            new_head,
        }
    }
}

impl Iterator for Merge<'_> {
    type Item = Compared;

    fn next(&mut self) -> Option<Compared> {
        let order = match (&self.old_head, &self.new_head) {
            (None, None) => return None,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(o), Some(n)) => o.key().as_bytes().cmp(n.key().as_bytes()),
        };
        let take_old = order != std::cmp::Ordering::Greater;
        let take_new = order != std::cmp::Ordering::Less;
        let old = if take_old {
            std::mem::replace(&mut self.old_head, self.old.next())
        } else {
            None
        };
        let new = if take_new {
            std::mem::replace(&mut self.new_head, self.new.next())
        } else {
            None
        };
        let key = new
            .as_ref()
            .or(old.as_ref())
            .map(|u| u.key().to_owned())
            .unwrap_or_default();
        Some(Compared { key, old, new })
    }
}

/// How a row changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new row after every row of its kind already there: its steps run.
    Added,
    /// A new row of a history (`order_by`) that sorts before a row already migrated: held back
    /// (Mambu refuses a transaction backdated before a later one), with its rows below it.
    AddedBefore,
    /// Gone from the newer extract.
    Removed,
    /// Cells that differ: (column, old, new), in the newer header's order.
    Changed(Vec<(String, String, String)>),
}

/// A row of the unit that is not the same in both extracts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowChange {
    pub source: String,
    pub key: String,
    /// The row's path, as step instances name it (`clients/CL-1/loans/LN-2`).
    pub path: String,
    pub change: Change,
}

/// What changed in a unit between two extracts: rows added, removed (only the topmost of a
/// removed subtree) and changed, in the newer extract's row order (removed rows last). Cells
/// are compared by column name over the columns both headers have; a row's line does not
/// matter.
pub fn diff_unit(old: &Unit, new: &Unit) -> Vec<RowChange> {
    let old_rows: HashMap<String, Record<'_>> =
        old.row_paths().into_iter().map(|(r, p)| (p, r)).collect();
    let new_rows = new.row_paths();
    let mut changes = Vec::new();
    // Added rows by (parent path, source), to find those that sort before a migrated sibling.
    let mut siblings: HashMap<(String, String), Vec<(usize, bool)>> = HashMap::new();
    for (record, path) in &new_rows {
        let source = record.schema().name();
        let parent = path.rsplitn(3, '/').nth(2).unwrap_or_default().to_owned();
        let entry = siblings.entry((parent, source.to_owned())).or_default();
        match old_rows.get(path) {
            None => {
                entry.push((changes.len(), true));
                changes.push(RowChange {
                    source: source.to_owned(),
                    key: record.key().to_owned(),
                    path: path.clone(),
                    change: Change::Added,
                });
            }
            Some(before) => {
                entry.push((usize::MAX, false));
                let cells = changed_cells(before, record);
                if !cells.is_empty() {
                    changes.push(RowChange {
                        source: source.to_owned(),
                        key: record.key().to_owned(),
                        path: path.clone(),
                        change: Change::Changed(cells),
                    });
                }
            }
        }
    }
    for ((_, source), rows) in &siblings {
        let ordered = new.rows(source).is_some_and(|r| r.schema().is_ordered());
        let Some(last_migrated) = rows.iter().rposition(|(_, added)| !added) else {
            continue;
        };
        if ordered {
            for (i, _) in rows[..last_migrated].iter().filter(|(_, added)| *added) {
                changes[*i].change = Change::AddedBefore;
            }
        }
    }
    // Rows below a held row are held with it; rows below a new row are new with it.
    let held: Vec<String> = changes
        .iter()
        .filter(|c| c.change == Change::AddedBefore)
        .map(|c| format!("{}/", c.path))
        .collect();
    for c in changes.iter_mut() {
        if c.change == Change::Added && held.iter().any(|h| c.path.starts_with(h)) {
            c.change = Change::AddedBefore;
        }
    }
    let new_paths: std::collections::HashSet<&str> =
        new_rows.iter().map(|(_, p)| p.as_str()).collect();
    let mut removed: Vec<(&String, &Record<'_>)> = old_rows
        .iter()
        .filter(|(p, _)| !new_paths.contains(p.as_str()))
        .collect();
    removed.sort_by_key(|(p, r)| (r.schema().name().to_owned(), (*p).clone()));
    let removed_paths: Vec<String> = removed.iter().map(|(p, _)| format!("{p}/")).collect();
    for (path, record) in removed {
        // Only the topmost row of a removed subtree.
        if removed_paths.iter().any(|r| path.starts_with(r.as_str())) {
            continue;
        }
        changes.push(RowChange {
            source: record.schema().name().to_owned(),
            key: record.key().to_owned(),
            path: path.clone(),
            change: Change::Removed,
        });
    }
    changes
}

/// (column, old, new) for every column both rows' headers have whose cells differ.
fn changed_cells(old: &Record<'_>, new: &Record<'_>) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for column in new.schema().header().names() {
        let (Some(before), Some(now)) = (old.get(column), new.get(column)) else {
            continue;
        };
        if before != now {
            out.push((column.clone(), before.to_owned(), now.to_owned()));
        }
    }
    out
}
