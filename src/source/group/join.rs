//! The two ways a deeper child's rows learn their root key from their parent's key index:
//! one pass walking the index alongside a file in parent key order ([`Work::join_in_order`]),
//! or two passes and two sorts of small records for a file in any order
//! ([`Work::join_sorted`]).

use std::io;

use super::orphan;
use super::pipeline::Work;
use super::records::{KeyRec, LineRec, LinkRec, OrderVal, RowRec};
use crate::source::reader::{Row, RowReader};
use crate::source::sort::{Sorted, Sorter};

/// Out-of-order parent keys a deeper child may have before its rows are joined to their
/// roots the general way (two passes and two sorts): each one rescans the parent's key index.
const MAX_DESCENTS: u32 = 16;

/// Tests set it to take the general way always, to compare the two.
#[cfg(test)]
pub(crate) static ALWAYS_SORT_LINKS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

impl Work<'_> {
    /// A deeper child whose file is (nearly) in parent key order: each row's root is found by
    /// walking the parent's key index alongside, in one pass. `None` if the file has more than
    /// [`MAX_DESCENTS`] parent keys out of order.
    #[allow(clippy::type_complexity)]
    pub(super) fn join_in_order(
        &mut self,
        reader: RowReader,
        map: &Sorted<KeyRec>,
        order_vals: &dyn Fn(&Row) -> Vec<OrderVal>,
    ) -> io::Result<Option<(Sorter<RowRec>, Sorter<KeyRec>)>> {
        #[cfg(test)]
        if ALWAYS_SORT_LINKS.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(None);
        }
        let prep = self.prep;
        let s = self.source;
        let schema = &prep.schemas[s];
        let (_, parent_col) = schema.parent.expect("a child");
        let mut rows = self.sorter::<RowRec>();
        let mut keys = self.sorter::<KeyRec>();
        let mut map_iter = map.iter()?;
        let mut current = map_iter.next().transpose()?;
        let mut previous = String::new();
        let mut descents = 0;
        let mut gave_up = false;
        // Orphans are reported in (parent key, line) order, as the general way does: the
        // first ones are kept, the others counted.
        let cap = prep.max_problems.max(1);
        let mut orphans: std::collections::BinaryHeap<(String, u64)> =
            std::collections::BinaryHeap::new();
        let mut orphan_count = 0u64;
        let result = self.read(reader, |row, spill| {
            let line = row.line();
            let key = row.get(schema.key).unwrap_or_default().to_string();
            let parent_key = row.get(parent_col).unwrap_or_default();
            if parent_key < previous.as_str() {
                descents += 1;
                if descents > MAX_DESCENTS {
                    // Stops the reading; the general way starts again.
                    gave_up = true;
                    return Err(io::Error::other("out of parent key order"));
                }
                map_iter = map.iter()?;
                current = map_iter.next().transpose()?;
            }
            if previous != parent_key {
                previous.clear();
                previous.push_str(parent_key);
            }
            while current
                .as_ref()
                .is_some_and(|c| c.key.as_str() < parent_key)
            {
                current = map_iter.next().transpose()?;
            }
            match &current {
                Some(c) if c.key == parent_key => {
                    let root = c.root.clone();
                    let k = KeyRec {
                        key,
                        line,
                        root: root.clone(),
                    };
                    keys.push(k, spill)?;
                    if !root.is_empty() && prep.wanted(&root) {
                        let rec = RowRec {
                            root,
                            parent_col: parent_col as u32,
                            order: order_vals(&row),
                            row,
                        };
                        rows.push(rec, spill)?;
                    }
                }
                _ => {
                    orphan_count += 1;
                    let entry = (parent_key.to_string(), line);
                    if orphans.len() < cap {
                        orphans.push(entry);
                    } else if orphans.peek().is_some_and(|top| entry < *top) {
                        orphans.pop();
                        orphans.push(entry);
                    }
                    let k = KeyRec {
                        key,
                        line,
                        root: String::new(),
                    };
                    keys.push(k, spill)?;
                }
            }
            Ok(())
        });
        if gave_up {
            return Ok(None);
        }
        result?;
        let kept = orphans.into_sorted_vec();
        let unlisted = orphan_count - kept.len() as u64;
        for (parent_key, line) in kept {
            self.problems
                .push(orphan(prep.schemas, s, line, &parent_key));
        }
        for _ in 0..unlisted {
            self.problems.push(orphan(prep.schemas, s, 0, ""));
        }
        Ok(Some((rows, keys)))
    }

    /// A deeper child in any order. Pass 1: (parent key, line, key) of each row, sorted by
    /// parent key and merge-joined with the parent's key index, gives (line, root key), sorted
    /// by line. Only these small records are sorted twice, not the rows. Pass 2 reads the file
    /// again and gives each row its root key.
    pub(super) fn join_sorted(
        &mut self,
        reader: RowReader,
        map: &Sorted<KeyRec>,
        order_vals: &dyn Fn(&Row) -> Vec<OrderVal>,
        rows: &mut Sorter<RowRec>,
        keys: &mut Sorter<KeyRec>,
    ) -> io::Result<()> {
        let prep = self.prep;
        let s = self.source;
        let schema = &prep.schemas[s];
        let (_, parent_col) = schema.parent.expect("a child");
        let mut links = self.sorter::<LinkRec>();
        self.read(reader, |row, spill| {
            let link = LinkRec {
                parent: row.get(parent_col).unwrap_or_default().to_string(),
                line: row.line(),
                key: row.get(schema.key).unwrap_or_default().to_string(),
            };
            links.push(link, spill)
        })?;
        let (links, links_rows, links_bytes) = self.finish(links)?;
        let mut roots = self.sorter::<LineRec>();
        let mut map_iter = map.iter()?;
        let mut current = map_iter.next().transpose()?;
        for link in links.into_iter()? {
            let link = link?;
            while current.as_ref().is_some_and(|c| c.key < link.parent) {
                current = map_iter.next().transpose()?;
            }
            match &current {
                Some(c) if c.key == link.parent => {
                    // An empty root: the parent is an orphan (reported), so is this.
                    if !c.root.is_empty() && prep.wanted(&c.root) {
                        let root = LineRec {
                            line: link.line,
                            root: c.root.clone(),
                        };
                        roots.push(root, &mut self.spill)?;
                    }
                    let key = KeyRec {
                        key: link.key,
                        line: link.line,
                        root: c.root.clone(),
                    };
                    keys.push(key, &mut self.spill)?;
                }
                _ => {
                    let p = orphan(prep.schemas, s, link.line, &link.parent);
                    self.problems.push(p);
                    // Indexed with no root, so that its own children are not reported again.
                    let key = KeyRec {
                        key: link.key,
                        line: link.line,
                        root: String::new(),
                    };
                    keys.push(key, &mut self.spill)?;
                }
            }
        }
        drop(map_iter);
        self.release(links_rows, links_bytes);
        let (roots, roots_rows, roots_bytes) = self.finish(roots)?;
        match RowReader::open(&prep.sources.defs[s]) {
            Err(p) => self.problems.push(p),
            Ok(again) => {
                let mut roots_iter = roots.into_iter()?;
                let mut current = roots_iter.next().transpose()?;
                for row in again.filter_map(Result::ok) {
                    while current.as_ref().is_some_and(|c| c.line < row.line()) {
                        current = roots_iter.next().transpose()?;
                    }
                    let Some(c) = current.as_ref().filter(|c| c.line == row.line()) else {
                        continue;
                    };
                    let rec = RowRec {
                        root: c.root.clone(),
                        parent_col: parent_col as u32,
                        order: order_vals(&row),
                        row,
                    };
                    rows.push(rec, &mut self.spill)?;
                }
            }
        }
        self.release(roots_rows, roots_bytes);
        Ok(())
    }
}
