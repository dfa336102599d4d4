//! Outcomes of expressions remembered by the cells they read: checking a million rows whose
//! `kind` column holds three values evaluates `transactions.kind == 'FEE'` three times.

use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::FxHashMap;

use super::context::{Context, Keyed, Place};
use super::{Expr, TemplateError};

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A process-wide name for a compiled expression.
pub(super) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Entries kept per expression (about 40 bytes each with a short cell); beyond them, new
/// values are evaluated and not remembered.
const ENTRIES: usize = 64 * 1024;
/// After this many lookups, an expression that was found less than once in ten lookups (an
/// id, an amount) is no longer looked up: it is evaluated each time.
const TRIAL: u64 = 64 * 1024;

/// Outcomes of template expressions (`Ok`, a condition's truth, or the error), by expression
/// and by the cells the expression reads. For [`super::Tree::check`] and
/// [`super::Condition::eval_memo`].
///
/// It assumes what `plan validate` guarantees: every context given for one template has the
/// same sources and columns, and the same step outputs, plan name and globals (`lookups`);
/// only cells (and `unit.key`) differ. Filters are pure functions of their input. An
/// expression that reads a whole row is never remembered.
#[derive(Default)]
pub struct Memo {
    /// By expression id.
    exprs: Vec<ExprMemo>,
    key: Vec<u8>,
}

#[derive(Default)]
struct ExprMemo {
    /// A condition's truth as 0 or 1, or a code given by the caller ([`Memo::code`]).
    outcomes: FxHashMap<Box<[u8]>, Result<u8, Box<TemplateError>>>,
    /// Where each variable lies, found in the first context (every context given for one
    /// template has the same shape).
    places: Option<Box<[Place]>>,
    lookups: u64,
    hits: u64,
    off: bool,
    /// Values of the expression, by the cells it reads, for
    /// [`super::Tree::render_memo`]; tried and given up as `outcomes` are.
    values: FxHashMap<Box<[u8]>, Result<minijinja::Value, Box<TemplateError>>>,
    value_lookups: u64,
    value_hits: u64,
    values_off: bool,
}

impl Memo {
    /// A memo with nothing remembered.
    pub fn new() -> Self {
        Self::default()
    }

    /// The outcome of `expr` in `ctx`: remembered, or `eval` and remembered.
    pub(super) fn outcome(
        &mut self,
        expr: &Expr<'_>,
        ctx: &Context<'_>,
        eval: impl FnOnce() -> Result<bool, TemplateError>,
    ) -> Result<bool, TemplateError> {
        self.code(expr.id, &expr.variables, expr.bare, ctx, || {
            eval().map(u8::from)
        })
        .map(|c| c != 0)
    }

    /// The cell `variable` (the one variable of the expression `id`) reads in `ctx`, found
    /// where it lay in the first context given for `id`; `None` when it is not one cell there.
    pub(super) fn cell<'a>(
        &mut self,
        id: u64,
        variable: &str,
        ctx: &Context<'a>,
    ) -> Option<&'a str> {
        let id = id as usize;
        if self.exprs.len() <= id {
            self.exprs.resize_with(id + 1, ExprMemo::default);
        }
        let places = self.exprs[id]
            .places
            .get_or_insert_with(|| Box::new([ctx.locate(variable)]));
        match places.first().map(|place| ctx.read(*place, variable)) {
            Some(Keyed::Cell(cell)) => cell,
            _ => None,
        }
    }

    /// The value of the expression `id` that reads `variables` in `ctx`: remembered by the
    /// cells they read, or `eval` and remembered (filters are pure functions of their input).
    pub(super) fn value(
        &mut self,
        id: u64,
        variables: &[String],
        ctx: &Context<'_>,
        eval: impl FnOnce() -> Result<minijinja::Value, TemplateError>,
    ) -> Result<minijinja::Value, TemplateError> {
        let id = id as usize;
        if self.exprs.len() <= id {
            self.exprs.resize_with(id + 1, ExprMemo::default);
        }
        let entry = &mut self.exprs[id];
        if entry.values_off {
            return eval();
        }
        let places = entry
            .places
            .get_or_insert_with(|| variables.iter().map(|v| ctx.locate(v)).collect());
        // The value depends on a cell's text even where the outcome does not: never bare.
        if places.len() != variables.len() || !key(variables, places, false, ctx, &mut self.key) {
            return eval();
        }
        entry.value_lookups += 1;
        if let Some(found) = entry.values.get(self.key.as_slice()) {
            entry.value_hits += 1;
            return found.clone().map_err(|e| *e);
        }
        if entry.value_lookups >= TRIAL && entry.value_hits * 10 < entry.value_lookups {
            entry.values_off = true;
            entry.values = FxHashMap::default();
        }
        let value = eval();
        if !entry.values_off && entry.values.len() < ENTRIES {
            entry
                .values
                .insert(self.key.as_slice().into(), value.clone().map_err(Box::new));
        }
        value
    }

    /// The outcome of whatever `id` names (an expression, a whole tree) that reads
    /// `variables` in `ctx`, as a code: remembered, or `eval` and remembered. `bare`: the
    /// outcome does not depend on the text of a cell that is there.
    pub(super) fn code(
        &mut self,
        id: u64,
        variables: &[String],
        bare: bool,
        ctx: &Context<'_>,
        eval: impl FnOnce() -> Result<u8, TemplateError>,
    ) -> Result<u8, TemplateError> {
        let id = id as usize;
        if self.exprs.len() <= id {
            self.exprs.resize_with(id + 1, ExprMemo::default);
        }
        let entry = &mut self.exprs[id];
        if entry.off {
            return eval();
        }
        let places = entry
            .places
            .get_or_insert_with(|| variables.iter().map(|v| ctx.locate(v)).collect());
        if !key(variables, places, bare, ctx, &mut self.key) {
            return eval();
        }
        entry.lookups += 1;
        if let Some(found) = entry.outcomes.get(self.key.as_slice()) {
            entry.hits += 1;
            return found.clone().map_err(|e| *e);
        }
        if entry.lookups >= TRIAL && entry.hits * 10 < entry.lookups {
            entry.off = true;
            entry.outcomes = FxHashMap::default();
        }
        let outcome = eval();
        if !entry.off && entry.outcomes.len() < ENTRIES {
            let kept = outcome.clone().map_err(Box::new);
            entry.outcomes.insert(self.key.as_slice().into(), kept);
        }
        outcome
    }
}

/// The cells `variables` read in `ctx`, encoded into `out`; `false` if they cannot be keyed.
fn key(
    variables: &[String],
    places: &[Place],
    bare: bool,
    ctx: &Context<'_>,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    for (v, place) in variables.iter().zip(places) {
        match ctx.read(*place, v) {
            Keyed::Constant => out.push(0),
            Keyed::Cell(None) => out.push(1),
            // A bare variable renders its cell's text whatever the text is.
            Keyed::Cell(Some(_)) if bare => out.push(2),
            Keyed::Cell(Some(cell)) => {
                out.push(3);
                out.extend_from_slice(&(cell.len() as u32).to_le_bytes());
                out.extend_from_slice(cell.as_bytes());
            }
            Keyed::Unkeyable => return false,
        }
    }
    true
}
