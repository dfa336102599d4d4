//! Catch-up runs (issue 19): migrate the book days ahead, then on the cutover night only what
//! changed since (`run --catch-up`, `plan estimate --catch-up`).
//!
//! A catch-up compares the newer extract with the one the run migrated before (the previous
//! phase's), unit by unit in root key order ([`diff`]: both extracts grouped with the bounded
//! memory of grouping, one unit of each held at a time), and for each unit decides:
//! - **unchanged**: skipped without a call (and without reading the checkpoint);
//! - **new** (or never migrated): migrated in full, as a run would;
//! - **changed**: its new rows run their steps (a repayment, a fee, a loan, a deposit
//!   transaction), in the unit's order after what is there; a step instance the checkpoint holds
//!   (done or skipped) is never sent again. What changed in rows already migrated is **drift**
//!   ([`Drift`]): a changed cell, a removed row, a new row of a history dated before rows already
//!   migrated. Each is recorded (`drift.csv`, personal values masked) with what was done with
//!   it: applied by an update the plan declares for its source and column (a step with
//!   `on_change`, which runs once for the changed row in this phase), not sent (the plan reads
//!   no such column), or left for a person. Nothing is ignored silently.
//!
//! What the comparison found is counted per phase ([`PhaseCounts`]) in the checkpoint; the
//! run's `status`, `report` and `verify` show the phases.

pub mod diff;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::checkpoint::{DriftRow, PhaseCounts};
use crate::estimate::sample::Personal;
use crate::plan::check::{Plan, Step};
use crate::plan::compiled::{Compiled, Planned};
use diff::{Change, RowChange};

/// What a catch-up knows of one unit while it runs it: the rows held back, the cells changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitDelta {
    /// The phase: an update's instance carries it (`…#contact@phase2`), so that a later
    /// catch-up applies a later change again.
    pub phase: i64,
    /// Paths of rows held back (with every row below them).
    pub held: Vec<String>,
    /// Changed rows by path: the columns that changed.
    pub changed: HashMap<String, Vec<String>>,
}

/// What a catch-up does with a planned step instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// As a run would: sent unless the checkpoint holds it.
    Run,
    /// An update whose row changed: sent as this instance (unless the checkpoint holds it).
    Update(String),
    /// Not sent, not recorded: a held row's, or an update whose row did not change.
    Pass,
}

impl UnitDelta {
    /// The decision for `planned`, whose instance id is `instance`.
    pub fn decide(&self, compiled: &Compiled, planned: &Planned<'_>, instance: &str) -> Decision {
        let path = planned.instance();
        if self
            .held
            .iter()
            .any(|h| path == *h || path.starts_with(&format!("{h}/")))
        {
            return Decision::Pass;
        }
        let step = compiled.step(planned.step);
        if step.on_change.is_empty() {
            return Decision::Run;
        }
        let changed = self
            .changed
            .get(&path)
            .is_some_and(|columns| columns.iter().any(|c| step.on_change.contains(c)));
        if changed {
            Decision::Update(format!("{instance}@phase{}", self.phase))
        } else {
            Decision::Pass
        }
    }
}

/// What the plan does with each source's columns: the updates that apply a change, the
/// columns it reads; and which columns are personal (masked in `drift.csv`).
pub struct Drift {
    root: String,
    /// source → column → the update steps that apply its change.
    updates: HashMap<String, BTreeMap<String, Vec<String>>>,
    /// (source, column) the plan's templates and conditions read.
    read: BTreeSet<(String, String)>,
    personal: Personal,
}

/// The value `drift.csv` shows for a personal cell.
const MASKED: &str = "***";

impl Drift {
    pub fn new(plan: &Plan) -> Self {
        let mut updates: HashMap<String, BTreeMap<String, Vec<String>>> = HashMap::new();
        let mut read = BTreeSet::new();
        let mut texts = Vec::new();
        for step in plan.action_steps() {
            if let Some(source) = step.scope.last() {
                for column in &step.on_change {
                    updates
                        .entry(source.clone())
                        .or_default()
                        .entry(column.clone())
                        .or_default()
                        .push(step.id.clone());
                }
            }
            if step.on_change.is_empty() {
                texts.extend(crate::plan::refs::template_strings(step));
            }
        }
        fn group_whens(steps: &[Step], texts: &mut Vec<String>) {
            for step in steps {
                if let Step::ForEach(g) = step {
                    texts.extend(g.when.clone());
                    group_whens(&g.steps, texts);
                }
            }
        }
        group_whens(&plan.steps, &mut texts);
        for text in &texts {
            read.extend(crate::estimate::sample::source_columns(text));
        }
        Drift {
            root: plan.unit.clone(),
            updates,
            read,
            personal: Personal::new(plan),
        }
    }

    fn shown(&self, source: &str, column: &str, value: &str) -> String {
        if !value.is_empty() && self.personal.is_personal(source, column) {
            MASKED.to_owned()
        } else {
            value.to_owned()
        }
    }

    /// The drift rows of a unit's changes, counted into `counts`, and what the unit's run needs
    /// to know of them.
    fn unit(
        &self,
        phase: i64,
        unit: &str,
        changes: &[RowChange],
        counts: &mut PhaseCounts,
    ) -> (Vec<DriftRow>, UnitDelta) {
        let mut rows = Vec::new();
        let mut delta = UnitDelta {
            phase,
            ..UnitDelta::default()
        };
        let row =
            |c: &RowChange, column: &str, change: &str, old: &str, new: &str, action| DriftRow {
                phase,
                unit: unit.to_owned(),
                source: c.source.clone(),
                row_key: c.key.clone(),
                column: column.to_owned(),
                change: change.to_owned(),
                old: self.shown(&c.source, column, old),
                new: self.shown(&c.source, column, new),
                action,
            };
        for c in changes {
            match &c.change {
                Change::Added => counts.rows_added += 1,
                Change::AddedBefore => {
                    delta.held.push(c.path.clone());
                    rows.push(row(c, "", "added before migrated rows", "", "", "left for a person: dated before rows already migrated, which Mambu refuses (a transaction backdated before a later one); post it by hand, or roll the unit back and migrate it again".to_owned()));
                }
                Change::Removed => rows.push(row(c, "", "removed", "", "", "left for a person: Mambu keeps what was migrated (adjust or delete it by hand, or roll the unit back and migrate it again)".to_owned())),
                Change::Changed(cells) => {
                    let mut columns = Vec::new();
                    for (column, old, new) in cells {
                        let action = match self.updates.get(&c.source).and_then(|u| u.get(column)) {
                            Some(steps) => {
                                columns.push(column.clone());
                                format!("update: step {}", steps.join(", "))
                            }
                            None if !self.read.contains(&(c.source.clone(), column.clone())) => {
                                "not sent: the plan does not read this column".to_owned()
                            }
                            None => format!("left for a person: Mambu holds the value migrated before (declare an update with `on_change: [{column}]` on a step for {}, or change it by hand)", c.source),
                        };
                        rows.push(row(c, column, "changed", old, new, action));
                    }
                    if !columns.is_empty() {
                        delta.changed.insert(c.path.clone(), columns);
                    }
                }
            }
        }
        for r in &rows {
            counts.drift += 1;
            if r.action.starts_with("update") {
                counts.drift_applied += 1;
            } else if r.action.starts_with("not sent") {
                counts.drift_not_sent += 1;
            } else {
                counts.drift_left += 1;
            }
        }
        (rows, delta)
    }

    /// The drift row of a unit the newer extract no longer has.
    fn removed_unit(&self, phase: i64, unit: &str, counts: &mut PhaseCounts) -> DriftRow {
        counts.units_removed += 1;
        counts.drift += 1;
        counts.drift_left += 1;
        DriftRow {
            phase,
            unit: unit.to_owned(),
            source: self.root.clone(),
            row_key: unit.to_owned(),
            column: String::new(),
            change: "unit removed".into(),
            old: String::new(),
            new: String::new(),
            action: "left for a person: Mambu keeps the client and its accounts (close them by hand, or `rollback --unit` it)".into(),
        }
    }
}

/// Where a unit stood after the previous phases, as the checkpoint says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrated {
    /// Never run (or rolled back): migrated in full.
    No,
    Done,
    Failed,
}

/// What a catch-up does with a unit of either extract.
#[derive(Debug)]
pub enum Verdict {
    /// Gone from the newer extract: its drift row.
    Removed(DriftRow),
    /// Its rows did not change: no call (still failed, when it had failed).
    Unchanged,
    /// Run it with this delta (drift rows found in it, to record).
    Send(UnitDelta, Vec<DriftRow>),
}

impl Drift {
    /// The verdict on one unit key: its unit in the extract migrated before and in the newer
    /// one, and where the checkpoint says it stands; counted into `counts`.
    pub fn classify(
        &self,
        phase: i64,
        key: &str,
        (old, new): (Option<&crate::source::Unit>, Option<&crate::source::Unit>),
        migrated: Migrated,
        counts: &mut PhaseCounts,
    ) -> Verdict {
        let Some(new) = new else {
            return Verdict::Removed(self.removed_unit(phase, key, counts));
        };
        match (old, migrated) {
            (Some(old), Migrated::Done | Migrated::Failed) => {
                let changes = diff::diff_unit(old, new);
                if changes.is_empty() {
                    if migrated == Migrated::Failed {
                        counts.units_failed_unchanged += 1;
                    } else {
                        counts.units_unchanged += 1;
                    }
                    return Verdict::Unchanged;
                }
                counts.units_changed += 1;
                let (rows, delta) = self.unit(phase, key, &changes, counts);
                Verdict::Send(delta, rows)
            }
            _ => {
                counts.units_new += 1;
                let delta = UnitDelta {
                    phase,
                    ..UnitDelta::default()
                };
                Verdict::Send(delta, Vec::new())
            }
        }
    }
}

/// `drift.csv`: every drift row of every phase, as the checkpoint holds them (personal values
/// masked already).
pub fn drift_csv(rows: &[DriftRow]) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "phase", "unit", "source", "key", "column", "change", "old", "new", "action",
    ])?;
    for r in rows {
        w.write_record([
            r.phase.to_string().as_str(),
            &r.unit,
            &r.source,
            &r.row_key,
            &r.column,
            &r.change,
            &r.old,
            &r.new,
            &r.action,
        ])?;
    }
    Ok(w.into_inner()?)
}
