//! The data one render sees, borrowed from the caller ([`Context`]), and how the part of it a
//! template needs becomes a minijinja value ([`Needs`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use minijinja::Value;

use super::value::{Mode, json_to_value};

/// Top-level names the context gives a meaning to; a source may not be called like this.
pub const RESERVED_NAMES: [&str; 4] = ["steps", "unit", "plan", "lookups"];

/// The cells of a row, or the column names of a source, as the caller holds them.
#[derive(Debug, Clone, Copy)]
pub enum Cells<'a> {
    /// Owned strings (`Vec<String>`, `&[String]`).
    Strings(&'a [String]),
    /// Borrowed strings (`Vec<&str>`, `&[&str]`).
    Strs(&'a [&'a str]),
    /// A csv record.
    Record(&'a csv::StringRecord),
}

impl<'a> Cells<'a> {
    fn get(&self, index: usize) -> Option<&'a str> {
        match *self {
            Cells::Strings(s) => s.get(index).map(String::as_str),
            Cells::Strs(s) => s.get(index).copied(),
            Cells::Record(r) => r.get(index),
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        match *self {
            Cells::Strings(s) => s.iter().position(|h| h == name),
            Cells::Strs(s) => s.iter().position(|h| *h == name),
            Cells::Record(r) => r.iter().position(|h| h == name),
        }
    }

    fn len(&self) -> usize {
        match *self {
            Cells::Strings(s) => s.len(),
            Cells::Strs(s) => s.len(),
            Cells::Record(r) => r.len(),
        }
    }
}

impl<'a> From<&'a [String]> for Cells<'a> {
    fn from(s: &'a [String]) -> Self {
        Cells::Strings(s)
    }
}

impl<'a> From<&'a Vec<String>> for Cells<'a> {
    fn from(s: &'a Vec<String>) -> Self {
        Cells::Strings(s)
    }
}

impl<'a> From<&'a [&'a str]> for Cells<'a> {
    fn from(s: &'a [&'a str]) -> Self {
        Cells::Strs(s)
    }
}

impl<'a> From<&'a Vec<&'a str>> for Cells<'a> {
    fn from(s: &'a Vec<&'a str>) -> Self {
        Cells::Strs(s)
    }
}

impl<'a, const N: usize> From<&'a [&'a str; N]> for Cells<'a> {
    fn from(s: &'a [&'a str; N]) -> Self {
        Cells::Strs(s)
    }
}

impl<'a> From<&'a csv::StringRecord> for Cells<'a> {
    fn from(r: &'a csv::StringRecord) -> Self {
        Cells::Record(r)
    }
}

/// A row that can be looked up by column name: implement it for a row type [`Cells`] does not
/// cover, and pass it with [`Context::source_row`].
pub trait Row {
    /// The cell of `column` (an empty cell is `Some("")`), `None` if there is no such column.
    fn get(&self, column: &str) -> Option<&str>;
    /// Every `(column, cell)`, for the rare template that uses a whole row (`loans | length`).
    fn cells(&self) -> Vec<(&str, &str)>;
    /// Where `column` is for [`cell_at`](Self::cell_at), the same in every row with the same
    /// columns; `None` to be looked up by name each time (the default).
    fn position(&self, _column: &str) -> Option<usize> {
        None
    }
    /// The cell at a [`position`](Self::position).
    fn cell_at(&self, _position: usize) -> Option<&str> {
        None
    }
}

impl<S: std::hash::BuildHasher> Row for HashMap<String, String, S> {
    fn get(&self, column: &str) -> Option<&str> {
        HashMap::get(self, column).map(String::as_str)
    }
    fn cells(&self) -> Vec<(&str, &str)> {
        self.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
}

impl Row for BTreeMap<String, String> {
    fn get(&self, column: &str) -> Option<&str> {
        BTreeMap::get(self, column).map(String::as_str)
    }
    fn cells(&self) -> Vec<(&str, &str)> {
        self.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
}

#[derive(Clone, Copy)]
enum SourceRow<'a> {
    Cells { headers: Cells<'a>, row: Cells<'a> },
    Dyn(&'a dyn Row),
}

impl<'a> SourceRow<'a> {
    fn get(&self, column: &str) -> Option<&'a str> {
        match *self {
            SourceRow::Cells { headers, row } => row.get(headers.position(column)?),
            SourceRow::Dyn(r) => r.get(column),
        }
    }

    fn position(&self, column: &str) -> Option<usize> {
        match *self {
            SourceRow::Cells { headers, .. } => headers.position(column),
            SourceRow::Dyn(r) => r.position(column),
        }
    }

    fn cell_at(&self, position: usize) -> Option<&'a str> {
        match *self {
            SourceRow::Cells { row, .. } => row.get(position),
            SourceRow::Dyn(r) => r.cell_at(position),
        }
    }

    fn to_value(self) -> Value {
        let map: BTreeMap<&str, Value> = match self {
            SourceRow::Cells { headers, row } => (0..headers.len())
                .filter_map(|i| Some((headers.get(i)?, Value::from(row.get(i)?))))
                .collect(),
            SourceRow::Dyn(r) => r
                .cells()
                .into_iter()
                .map(|(k, v)| (k, Value::from(v)))
                .collect(),
        };
        Value::from(map)
    }
}

/// The data one render sees. Borrowed and cheap to build (a few pointers in two small vectors):
/// build one per render call.
///
/// - `<source>.<column>`: the current row of each source in scope ([`source`](Self::source)).
///   Cells are strings as in the file; an empty cell is `""`.
/// - `steps.<step_id>.<field>`: saved outputs of earlier steps ([`step`](Self::step)), any JSON.
/// - `unit.key` and `plan.name`.
///
/// Only what a template references is turned into template values, when it is rendered.
#[derive(Clone, Default)]
pub struct Context<'a> {
    sources: Vec<(&'a str, SourceRow<'a>)>,
    steps: Vec<(&'a str, &'a serde_json::Value)>,
    /// Outputs by step id, borrowed whole ([`step_outputs`](Self::step_outputs)); those of
    /// `steps` hide them.
    step_map: Option<&'a HashMap<String, serde_json::Value>>,
    /// Top-level JSON values by name (`lookups`).
    globals: Vec<(&'a str, &'a serde_json::Value)>,
    unit_key: Option<&'a str>,
    plan_name: Option<&'a str>,
}

impl std::fmt::Debug for Context<'_> {
    /// Names only: cells may be personal data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field(
                "sources",
                &self.sources.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field(
                "steps",
                &self
                    .step_map
                    .into_iter()
                    .flat_map(|m| m.keys().map(String::as_str))
                    .chain(self.steps.iter().map(|(n, _)| *n))
                    .collect::<Vec<_>>(),
            )
            .field("unit_key", &self.unit_key.is_some())
            .field("plan_name", &self.plan_name)
            .finish()
    }
}

impl<'a> Context<'a> {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the current row of source `name`: `headers` are its column names, `row` its cells,
    /// in the same order. A later source of the same name hides an earlier one.
    pub fn source(
        mut self,
        name: &'a str,
        headers: impl Into<Cells<'a>>,
        row: impl Into<Cells<'a>>,
    ) -> Self {
        self.push_source(name, headers, row);
        self
    }

    /// Like [`source`](Self::source), in place.
    pub fn push_source(
        &mut self,
        name: &'a str,
        headers: impl Into<Cells<'a>>,
        row: impl Into<Cells<'a>>,
    ) {
        self.sources.push((
            name,
            SourceRow::Cells {
                headers: headers.into(),
                row: row.into(),
            },
        ));
    }

    /// Adds the current row of source `name` as any [`Row`].
    pub fn source_row(mut self, name: &'a str, row: &'a dyn Row) -> Self {
        self.sources.push((name, SourceRow::Dyn(row)));
        self
    }

    /// Adds the saved output of step `id` (`steps.<id>.<field>`). A later output of the same
    /// id hides an earlier one.
    pub fn step(mut self, id: &'a str, output: &'a serde_json::Value) -> Self {
        self.push_step(id, output);
        self
    }

    /// Like [`step`](Self::step), in place.
    pub fn push_step(&mut self, id: &'a str, output: &'a serde_json::Value) {
        self.steps.push((id, output));
    }

    /// Adds many step outputs at once, e.g. from a `HashMap<String, Value>` or a
    /// `serde_json::Map`.
    pub fn steps<K: AsRef<str> + 'a>(
        mut self,
        outputs: impl IntoIterator<Item = (&'a K, &'a serde_json::Value)>,
    ) -> Self {
        self.steps
            .extend(outputs.into_iter().map(|(k, v)| (k.as_ref(), v)));
        self
    }

    /// Gives the outputs of earlier steps by id, borrowed as they are (nothing copied per
    /// render); outputs added with [`step`](Self::step) or [`steps`](Self::steps) hide them.
    pub fn step_outputs(mut self, outputs: &'a HashMap<String, serde_json::Value>) -> Self {
        self.step_map = Some(outputs);
        self
    }

    /// Adds a top-level JSON value: `lookups` (a map of tables read from the tenant) is
    /// addressed as `lookups.<table>[<key>]`.
    pub fn global(mut self, name: &'a str, value: &'a serde_json::Value) -> Self {
        self.globals.push((name, value));
        self
    }

    /// Sets `unit.key`.
    pub fn unit_key(mut self, key: &'a str) -> Self {
        self.unit_key = Some(key);
        self
    }

    /// Sets `plan.name`.
    pub fn plan_name(mut self, name: &'a str) -> Self {
        self.plan_name = Some(name);
        self
    }

    fn find_source(&self, name: &str) -> Option<SourceRow<'a>> {
        self.sources
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| *r)
    }

    fn find_step(&self, id: &str) -> Option<&'a serde_json::Value> {
        self.steps
            .iter()
            .rev()
            .find(|(n, _)| *n == id)
            .map(|(_, v)| *v)
            .or_else(|| self.step_map?.get(id))
    }

    /// What a dotted variable reads from this context, for [`super::Memo`]'s keys.
    pub(super) fn keyed(&self, path: &str) -> Keyed<'a> {
        let (first, rest) = match path.split_once('.') {
            Some((first, rest)) => (first, Some(rest)),
            None => (path, None),
        };
        match first {
            "steps" | "plan" => Keyed::Constant,
            "unit" if rest.is_none_or(|r| r == "key") => Keyed::Cell(self.unit_key),
            "unit" => Keyed::Unkeyable,
            _ if self.globals.iter().any(|(n, _)| *n == first) => Keyed::Constant,
            _ => match (self.find_source(first), rest) {
                (Some(row), Some(column)) if !column.contains('.') => Keyed::Cell(row.get(column)),
                (Some(_), _) => Keyed::Unkeyable,
                (None, _) => Keyed::Constant,
            },
        }
    }

    /// Where [`keyed`](Self::keyed) finds `path` in this context, for contexts of the same
    /// shape (the same sources in the same order, with the same columns): see [`Self::read`].
    pub(super) fn locate(&self, path: &str) -> Place {
        let (first, rest) = match path.split_once('.') {
            Some((first, rest)) => (first, Some(rest)),
            None => (path, None),
        };
        match first {
            "steps" | "plan" => Place::Constant,
            "unit" if rest.is_none_or(|r| r == "key") => Place::Unit,
            "unit" => Place::Unkeyable,
            _ if self.globals.iter().any(|(n, _)| *n == first) => Place::Constant,
            _ => match (self.sources.iter().rposition(|(n, _)| *n == first), rest) {
                (Some(source), Some(column)) if !column.contains('.') => Place::Cell {
                    source,
                    position: self.sources[source].1.position(column),
                },
                (Some(_), _) => Place::Unkeyable,
                (None, _) => Place::Constant,
            },
        }
    }

    /// [`keyed`](Self::keyed) of `path` found at `place` ([`locate`](Self::locate) of the
    /// same path in a context of the same shape).
    pub(super) fn read(&self, place: Place, path: &str) -> Keyed<'a> {
        match place {
            Place::Constant => Keyed::Constant,
            Place::Unit => Keyed::Cell(self.unit_key),
            Place::Unkeyable => Keyed::Unkeyable,
            Place::Cell { source, position } => match self.sources.get(source) {
                Some((name, row))
                    if path.starts_with(name) && path.as_bytes().get(name.len()) == Some(&b'.') =>
                {
                    match position {
                        Some(i) => Keyed::Cell(row.cell_at(i)),
                        None => Keyed::Cell(row.get(&path[name.len() + 1..])),
                    }
                }
                _ => self.keyed(path),
            },
        }
    }

    /// Whether a dotted path (`loans.amount`, `steps.client.encodedKey`) resolves.
    pub(super) fn resolves(&self, path: &str) -> bool {
        let mut node = Node::Root;
        for segment in path.split('.') {
            match node.child(self, segment) {
                Some(child) => node = child,
                None => return false,
            }
        }
        true
    }
}

/// Where a variable lies in contexts of one shape ([`Context::locate`]).
#[derive(Clone, Copy, Debug)]
pub(super) enum Place {
    /// [`Keyed::Constant`].
    Constant,
    /// `unit.key`.
    Unit,
    /// [`Keyed::Unkeyable`].
    Unkeyable,
    /// A column of the source at `source` in the context, at `position` or (`None`) by name.
    Cell {
        source: usize,
        position: Option<usize>,
    },
}

/// What one variable of a template reads, as far as [`super::Memo`] is concerned.
pub(super) enum Keyed<'a> {
    /// The same in every context a memo serves: step outputs, `plan.name`, globals, or a name
    /// that is not there at all.
    Constant,
    /// One cell (or `unit.key`); `None` when the row has no such column.
    Cell(Option<&'a str>),
    /// More than one cell (a whole row): not memoized.
    Unkeyable,
}

/// A place in the context's namespace.
#[derive(Clone, Copy)]
enum Node<'a> {
    Root,
    Steps,
    Unit(Option<&'a str>),
    Plan(Option<&'a str>),
    Row(SourceRow<'a>),
    Json(&'a serde_json::Value),
    Str(&'a str),
}

impl<'a> Node<'a> {
    fn child(self, ctx: &Context<'a>, name: &str) -> Option<Node<'a>> {
        match self {
            Node::Root => match name {
                "steps" => Some(Node::Steps),
                "unit" => Some(Node::Unit(ctx.unit_key)),
                "plan" => Some(Node::Plan(ctx.plan_name)),
                _ => match ctx.globals.iter().rev().find(|(n, _)| *n == name) {
                    Some((_, value)) => Some(Node::Json(value)),
                    None => ctx.find_source(name).map(Node::Row),
                },
            },
            Node::Steps => ctx.find_step(name).map(Node::Json),
            Node::Unit(key) => key.filter(|_| name == "key").map(Node::Str),
            Node::Plan(plan) => plan.filter(|_| name == "name").map(Node::Str),
            Node::Row(row) => row.get(name).map(Node::Str),
            Node::Json(serde_json::Value::Object(map)) => map.get(name).map(Node::Json),
            Node::Json(serde_json::Value::Array(items)) => {
                items.get(name.parse::<usize>().ok()?).map(Node::Json)
            }
            Node::Json(_) | Node::Str(_) => None,
        }
    }

    /// Maps are built only with the keys a template names; anything else is taken whole.
    fn is_map(self) -> bool {
        match self {
            Node::Str(_) => false,
            Node::Json(v) => v.is_object(),
            _ => true,
        }
    }

    fn to_value(self, ctx: &Context<'a>, mode: Mode) -> Value {
        match self {
            Node::Root => {
                let mut map: BTreeMap<&str, Value> = BTreeMap::new();
                for (name, row) in &ctx.sources {
                    map.insert(name, row.to_value());
                }
                map.insert("steps", Node::Steps.to_value(ctx, mode));
                map.insert("unit", Node::Unit(ctx.unit_key).to_value(ctx, mode));
                map.insert("plan", Node::Plan(ctx.plan_name).to_value(ctx, mode));
                for (name, value) in &ctx.globals {
                    map.insert(name, json_to_value(value, mode));
                }
                Value::from(map)
            }
            Node::Steps => {
                let map: BTreeMap<&str, Value> = ctx
                    .step_map
                    .into_iter()
                    .flat_map(|m| m.iter().map(|(id, v)| (id.as_str(), v)))
                    .chain(ctx.steps.iter().copied())
                    .map(|(id, v)| (id, json_to_value(v, mode)))
                    .collect();
                Value::from(map)
            }
            Node::Unit(key) => Value::from(
                key.map(|k| BTreeMap::from([("key", Value::from(k))]))
                    .unwrap_or_default(),
            ),
            Node::Plan(name) => Value::from(
                name.map(|n| BTreeMap::from([("name", Value::from(n))]))
                    .unwrap_or_default(),
            ),
            Node::Row(row) => row.to_value(),
            Node::Json(v) => json_to_value(v, mode),
            Node::Str(s) => Value::from(s),
        }
    }
}

/// The dotted paths a compiled template references, as a tree: rendering turns only these
/// parts of a [`Context`] into template values (a row of 40 columns of which 2 are used costs
/// 2 strings, a step output of 60 fields of which 1 is used costs 1).
///
/// Pruning never changes what a template sees: a path whose prefix is used whole (`loans`,
/// `loans[col]`, `steps.x | tojson`) takes the whole subtree, scalars and lists are always whole, and a
/// name left out is one the template never names, so reaching it stays an undefined error.
#[derive(Debug, Clone, Default)]
pub(super) struct Needs {
    whole: bool,
    children: Vec<(Arc<str>, Needs)>,
}

impl Needs {
    pub(super) fn add(&mut self, path: &str) {
        let mut node = self;
        for segment in path.split('.') {
            let index = match node.children.iter().position(|(n, _)| &**n == segment) {
                Some(i) => i,
                None => {
                    node.children.push((Arc::from(segment), Needs::default()));
                    node.children.len() - 1
                }
            };
            node = &mut node.children[index].1;
        }
        node.whole = true;
    }

    /// The root value for one render.
    pub(super) fn build(&self, ctx: &Context<'_>, mode: Mode) -> Value {
        self.build_at(Node::Root, ctx, mode)
    }

    fn build_at<'a>(&self, node: Node<'a>, ctx: &Context<'a>, mode: Mode) -> Value {
        if self.whole || !node.is_map() {
            return node.to_value(ctx, mode);
        }
        let map: BTreeMap<Arc<str>, Value> = self
            .children
            .iter()
            .filter_map(|(name, needs)| {
                let child = node.child(ctx, name)?;
                Some((name.clone(), needs.build_at(child, ctx, mode)))
            })
            .collect();
        Value::from(map)
    }
}
