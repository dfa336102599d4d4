//! A plan's templates compiled once, and a unit expanded into the calls it makes.
//!
//! [`Compiled::expand`] walks a unit through the step tree (`for_each` over child rows, group
//! `when` conditions) and lists every action step instance in the order the unit runs them.
//! [`Compiled::render`] then renders one instance's call from the rows in its scope, the saved
//! outputs of earlier steps and the lookups. `plan validate` and `plan estimate` render with
//! placeholder outputs; the executor renders with real ones, one call at a time.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::action::Action;
use super::check::{ActionStep, Plan, Step};
use super::template::{Condition, Context, Engine, Memo, Row, TemplateError, Tree, Zone};
use crate::source::{Record, Unit};

/// A plan ready to render calls.
pub struct Compiled {
    steps: Vec<CompiledStep>,
    tree: Vec<Node>,
    plan_name: String,
    engine: &'static Engine,
}

enum Node {
    Action(usize),
    Group {
        source: String,
        when: Box<Option<Condition<'static>>>,
        steps: Vec<Node>,
    },
}

struct CompiledStep {
    step: ActionStep,
    when: Option<Condition<'static>>,
    body: Option<Tree<'static>>,
    /// The body cut down to the fields [`Compiled::keep_fields`] names, for
    /// [`Compiled::render_fields`]; `None` when it cannot be (a body that is not a map).
    fields: Option<Tree<'static>>,
    loan: Option<Tree<'static>>,
    deposit: Option<Tree<'static>>,
    path: Option<Tree<'static>>,
    installments: Option<(String, Tree<'static>)>,
    uses_lookups: bool,
}

/// One action step for one row: the rows in its scope, outermost first.
pub struct Planned<'u> {
    /// Index of the step in [`Compiled::step`].
    pub step: usize,
    pub rows: Vec<(&'u str, Record<'u>)>,
}

impl Planned<'_> {
    /// The row the step runs for (the innermost of its scope).
    pub fn row(&self) -> &Record<'_> {
        &self
            .rows
            .last()
            .expect("a planned step has at least the unit's row")
            .1
    }

    /// `clients/CL-1/loans/LN-2`: which instance of the step this is, stable across runs.
    pub fn instance(&self) -> String {
        self.rows
            .iter()
            .map(|(s, r)| format!("{s}/{}", r.key()))
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// A call rendered for sending.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub action: Action,
    pub method: &'static str,
    /// Under the API base, ids filled in and URL-encoded.
    pub path: String,
    pub body: Option<Value>,
    /// edit_schedule: the installments the plan gives, in order (paired by position with the
    /// schedule Mambu generated).
    pub installments: Vec<Value>,
}

/// Why a step could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("{field} renders to {what}, not an id")]
    NotAnId { field: &'static str, what: String },
}

impl Row for Record<'_> {
    fn get(&self, column: &str) -> Option<&str> {
        Record::get(self, column)
    }
    fn cells(&self) -> Vec<(&str, &str)> {
        self.schema()
            .header()
            .names()
            .iter()
            .filter_map(|n| Some((n.as_str(), Record::get(self, n)?)))
            .collect()
    }
    fn position(&self, column: &str) -> Option<usize> {
        self.schema().header().position(column)
    }
    fn cell_at(&self, position: usize) -> Option<&str> {
        self.row().get(position)
    }
}

fn uses_lookups(trees: &[&Option<Tree<'_>>]) -> bool {
    trees
        .iter()
        .filter_map(|t| t.as_ref())
        .any(|t| t.variables().iter().any(|v| v.starts_with("lookups")))
}

impl Compiled {
    /// Compiles every template. Errors were reported by [`super::refs::check_references`]; a
    /// step whose templates do not compile is left out here.
    pub fn new(plan: &Plan) -> Self {
        let zone = Zone::parse(&plan.settings.timezone).unwrap_or(Zone::UTC);
        let engine: &'static Engine = Engine::with_zone(zone).leak();
        let mut compiled = Compiled {
            steps: Vec::new(),
            tree: Vec::new(),
            plan_name: plan.name.clone(),
            engine,
        };
        compiled.tree = compiled.nodes(engine, &plan.steps);
        compiled
    }

    fn nodes(&mut self, engine: &'static Engine, steps: &[Step]) -> Vec<Node> {
        let mut out = Vec::new();
        for step in steps {
            match step {
                Step::ForEach(group) => {
                    let when = group
                        .when
                        .as_ref()
                        .and_then(|w| engine.condition(&format!("{}.when", group.path), w).ok());
                    let steps = self.nodes(engine, &group.steps);
                    out.push(Node::Group {
                        source: group.source.clone(),
                        when: Box::new(when),
                        steps,
                    });
                }
                Step::Action(a) => {
                    let tree = |field: &str, v: &Option<String>| {
                        v.as_ref().and_then(|t| {
                            engine.compile_str(&format!("{}.{field}", a.path), t).ok()
                        })
                    };
                    let body = a
                        .body
                        .as_ref()
                        .and_then(|b| engine.compile(&format!("{}.body", a.path), b).ok());
                    let installments = a.installments.as_ref().and_then(|i| {
                        let mut map = serde_json::Map::new();
                        map.insert("dueDate".into(), json!(i.due_date));
                        map.insert(
                            "principal".into(),
                            json!({ "amount": { "due": i.principal } }),
                        );
                        if let Some(interest) = &i.interest {
                            map.insert("interest".into(), json!({ "amount": { "due": interest } }));
                        }
                        if let Some(fee) = &i.fee {
                            map.insert("fee".into(), json!({ "amount": { "due": fee } }));
                        }
                        engine
                            .compile(&format!("{}.installments", a.path), &Value::Object(map))
                            .ok()
                            .map(|t| (i.from.clone(), t))
                    });
                    let loan = tree("loan", &a.loan);
                    let deposit = tree("deposit", &a.deposit);
                    let path = tree("path", &a.request_path);
                    let uses = uses_lookups(&[&body, &loan, &deposit, &path])
                        || installments.as_ref().is_some_and(|(_, t)| {
                            t.variables().iter().any(|v| v.starts_with("lookups"))
                        });
                    self.steps.push(CompiledStep {
                        when: a
                            .when
                            .as_ref()
                            .and_then(|w| engine.condition(&format!("{}.when", a.path), w).ok()),
                        body,
                        fields: None,
                        loan,
                        deposit,
                        path,
                        installments,
                        uses_lookups: uses,
                        step: (**a).clone(),
                    });
                    out.push(Node::Action(self.steps.len() - 1));
                }
            }
        }
        out
    }

    /// Compiles, for [`render_fields`](Self::render_fields), each step's body cut down to the
    /// fields at `pointers` (`/valueDate`, `/scheduleSettings/repaymentInstallments`; `/_*`:
    /// every top-level key starting with `_`): a caller that reads only these renders only
    /// these.
    pub fn keep_fields(&mut self, pointers: &[&str]) {
        for compiled in &mut self.steps {
            let Some(Value::Object(whole)) = &compiled.step.body else {
                continue;
            };
            let body = compiled.step.body.as_ref().expect("a body");
            let mut cut = Value::Object(serde_json::Map::new());
            for pointer in pointers {
                if let Some(prefix) = pointer.strip_prefix('/').and_then(|p| p.strip_suffix('*')) {
                    if let Value::Object(map) = &mut cut {
                        map.extend(
                            whole
                                .iter()
                                .filter(|(k, _)| k.starts_with(prefix))
                                .map(|(k, v)| (k.clone(), v.clone())),
                        );
                    }
                    continue;
                }
                let Some(value) = body.pointer(pointer) else {
                    continue;
                };
                let mut at = &mut cut;
                let mut keys = pointer.split('/').skip(1).peekable();
                while let Some(key) = keys.next() {
                    let Value::Object(map) = at else { break };
                    if keys.peek().is_none() {
                        map.insert(key.to_owned(), value.clone());
                        break;
                    }
                    at = map
                        .entry(key.to_owned())
                        .or_insert_with(|| Value::Object(serde_json::Map::new()));
                }
            }
            compiled.fields = self
                .engine
                .compile(&format!("{}.body", compiled.step.path), &cut)
                .ok();
        }
    }

    pub fn step(&self, index: usize) -> &ActionStep {
        &self.steps[index].step
    }

    /// Whether the step's templates read `lookups` (they render only with the tenant's tables).
    pub fn uses_lookups(&self, index: usize) -> bool {
        self.steps[index].uses_lookups
    }

    /// Every action step instance of the unit, in run order. Group `when` conditions are
    /// evaluated on the rows; one that fails to evaluate counts as true (rendering the steps
    /// will report the problem).
    pub fn expand<'u>(&self, unit: &'u Unit) -> Vec<Planned<'u>> {
        let mut out = Vec::new();
        let root = unit.root();
        let mut rows = vec![(root.schema().name(), root)];
        self.expand_nodes(&self.tree, unit, &mut rows, &mut out);
        out
    }

    fn expand_nodes<'u>(
        &self,
        nodes: &[Node],
        unit: &'u Unit,
        rows: &mut Vec<(&'u str, Record<'u>)>,
        out: &mut Vec<Planned<'u>>,
    ) {
        for node in nodes {
            match node {
                Node::Action(i) => out.push(Planned {
                    step: *i,
                    rows: rows.clone(),
                }),
                Node::Group {
                    source,
                    when,
                    steps,
                } => {
                    let parent = rows.last().expect("scope holds the unit's row").1;
                    for child in unit.children(source, &parent).iter() {
                        rows.push((child.schema().name(), child));
                        let run = when.as_ref().as_ref().is_none_or(|w| {
                            w.eval(&self.context(rows, &HashMap::new(), None))
                                .unwrap_or(true)
                        });
                        if run {
                            self.expand_nodes(steps, unit, rows, out);
                        }
                        rows.pop();
                    }
                }
            }
        }
    }

    fn context<'a>(
        &'a self,
        rows: &'a [(&'a str, Record<'a>)],
        outputs: &'a HashMap<String, Value>,
        lookups: Option<&'a Value>,
    ) -> Context<'a> {
        let mut ctx = Context::new()
            .plan_name(&self.plan_name)
            .step_outputs(outputs);
        if let Some((_, root)) = rows.first() {
            ctx = ctx.unit_key(root.key());
        }
        for (name, row) in rows {
            ctx = ctx.source_row(name, row);
        }
        if let Some(lookups) = lookups {
            ctx = ctx.global("lookups", lookups);
        }
        ctx
    }

    /// The step's own `when`, on its rows and the outputs so far.
    pub fn when(
        &self,
        planned: &Planned<'_>,
        outputs: &HashMap<String, Value>,
        lookups: Option<&Value>,
    ) -> Result<bool, TemplateError> {
        match &self.steps[planned.step].when {
            Some(condition) => condition.eval(&self.context(&planned.rows, outputs, lookups)),
            None => Ok(true),
        }
    }

    /// [`when`](Self::when), outcomes remembered in `memo` by the cells the condition reads
    /// (`outputs` and `lookups` must be the same for every call with one memo).
    pub fn when_memo(
        &self,
        planned: &Planned<'_>,
        outputs: &HashMap<String, Value>,
        lookups: Option<&Value>,
        memo: &mut Memo,
    ) -> Result<bool, TemplateError> {
        match &self.steps[planned.step].when {
            Some(condition) => {
                condition.eval_memo(&self.context(&planned.rows, outputs, lookups), memo)
            }
            None => Ok(true),
        }
    }

    /// Whether [`render`](Self::render) would succeed, and its error if not, without building
    /// the call: each template expression's outcome is remembered in `memo` by the cells it
    /// reads (`outputs` and `lookups` must be the same for every call with one memo).
    pub fn check(
        &self,
        unit: &Unit,
        planned: &Planned<'_>,
        outputs: &HashMap<String, Value>,
        lookups: Option<&Value>,
        memo: &mut Memo,
    ) -> Result<(), RenderError> {
        let compiled = &self.steps[planned.step];
        let ctx = self.context(&planned.rows, outputs, lookups);
        // Ids are checked on their value (an empty one is refused), as `render` does; the
        // value's class is remembered by the cells the template reads.
        let id_of = |field: &'static str,
                     tree: &Option<Tree<'_>>,
                     memo: &mut Memo|
         -> Result<(), RenderError> {
            let Some(tree) = tree else { return Ok(()) };
            match tree.classify(&ctx, memo, id_class)? {
                ID => Ok(()),
                class => Err(RenderError::NotAnId {
                    field,
                    what: describe_class(class).into(),
                }),
            }
        };
        id_of("loan", &compiled.loan, memo)?;
        id_of("deposit", &compiled.deposit, memo)?;
        if let Some(body) = &compiled.body {
            body.check(&ctx, memo)?;
        }
        if compiled.step.action == Action::Request {
            id_of("path", &compiled.path, memo)?;
        }
        if let Some((from, tree)) = &compiled.installments {
            let parent = planned.row();
            for row in unit.children(from, parent).iter() {
                let mut rows = planned.rows.clone();
                rows.push((row.schema().name(), row));
                tree.check(&self.context(&rows, outputs, lookups), memo)?;
            }
        }
        Ok(())
    }

    /// Renders the call of one step instance. `unit` gives the `installments.from` rows.
    pub fn render(
        &self,
        unit: &Unit,
        planned: &Planned<'_>,
        outputs: &HashMap<String, Value>,
        lookups: Option<&Value>,
    ) -> Result<Call, RenderError> {
        self.render_body(unit, planned, outputs, lookups, None)
    }

    /// [`render`](Self::render), the body holding only the fields
    /// [`keep_fields`](Self::keep_fields) named (the whole body where it could not be cut):
    /// for a reader of those fields, who checks the whole call with [`check`](Self::check).
    ///
    /// Expressions that are one cell through filters are evaluated without the engine, where
    /// the cell lies remembered in `memo` (`outputs` and `lookups` must be the same for every
    /// call with one memo).
    pub fn render_fields(
        &self,
        unit: &Unit,
        planned: &Planned<'_>,
        outputs: &HashMap<String, Value>,
        lookups: Option<&Value>,
        memo: &mut Memo,
    ) -> Result<Call, RenderError> {
        self.render_body(unit, planned, outputs, lookups, Some(memo))
    }

    fn render_body(
        &self,
        unit: &Unit,
        planned: &Planned<'_>,
        outputs: &HashMap<String, Value>,
        lookups: Option<&Value>,
        mut memo: Option<&mut Memo>,
    ) -> Result<Call, RenderError> {
        let compiled = &self.steps[planned.step];
        let step = &compiled.step;
        let ctx = self.context(&planned.rows, outputs, lookups);
        // The engine, or (with a memo) the filters called on a cell without it.
        let render = |tree: &Tree<'_>,
                      ctx: &Context<'_>,
                      memo: &mut Option<&mut Memo>|
         -> Result<Value, TemplateError> {
            match memo {
                Some(memo) => tree.render_memo(ctx, memo),
                None => tree.render(ctx),
            }
        };
        let id_of = |field: &'static str,
                     tree: &Option<Tree<'_>>,
                     memo: &mut Option<&mut Memo>|
         -> Result<Option<String>, RenderError> {
            let Some(tree) = tree else { return Ok(None) };
            match render(tree, &ctx, memo)? {
                Value::String(s) if !s.is_empty() => Ok(Some(s)),
                Value::Number(n) => Ok(Some(n.to_string())),
                other => Err(RenderError::NotAnId {
                    field,
                    what: describe(&other),
                }),
            }
        };
        let loan = id_of("loan", &compiled.loan, &mut memo)?;
        let deposit = id_of("deposit", &compiled.deposit, &mut memo)?;
        let mut body = match (memo.is_some(), &compiled.fields) {
            (true, Some(fields)) => Some(render(fields, &ctx, &mut memo)?),
            _ => compiled
                .body
                .as_ref()
                .map(|t| render(t, &ctx, &mut memo))
                .transpose()?,
        };
        if let Some(body) = body.as_mut() {
            super::custom_fields::to_mambu_form(body);
        }
        let (method, template) = match step.action {
            Action::Request => (
                leak_method(step.method.as_deref().unwrap_or("GET")),
                String::new(),
            ),
            action => {
                let (method, path) = *action.calls().last().expect("built-in actions make a call");
                (method, path.to_owned())
            }
        };
        let path = match step.action {
            Action::Request => id_of("path", &compiled.path, &mut memo)?.unwrap_or_default(),
            _ => template
                .replace("{loan}", &encode(loan.as_deref().unwrap_or("")))
                .replace("{deposit}", &encode(deposit.as_deref().unwrap_or(""))),
        };
        let mut installments = Vec::new();
        if let Some((from, tree)) = &compiled.installments {
            let parent = planned.row();
            for row in unit.children(from, parent).iter() {
                let mut rows = planned.rows.clone();
                rows.push((row.schema().name(), row));
                installments.push(render(
                    tree,
                    &self.context(&rows, outputs, lookups),
                    &mut memo,
                )?);
            }
        }
        Ok(Call {
            action: step.action,
            method,
            path,
            body,
            installments,
        })
    }

    /// Placeholder outputs for every step (`steps.<id>.id`, `.encodedKey`, saved fields), for
    /// rendering without calling Mambu.
    pub fn placeholder_outputs(&self) -> HashMap<String, Value> {
        self.steps
            .iter()
            .map(|s| {
                let mut out = serde_json::Map::new();
                out.insert("id".into(), json!(format!("<{}.id>", s.step.id)));
                out.insert(
                    "encodedKey".into(),
                    json!(format!("<{}.encodedKey>", s.step.id)),
                );
                for name in s.step.save.keys() {
                    out.insert(name.clone(), json!(format!("<{}.{name}>", s.step.id)));
                }
                (s.step.id.clone(), Value::Object(out))
            })
            .collect()
    }
}

/// The checked method (`check` refuses any other) as the static text calls carry; anything
/// else passes through as it is, for the client to refuse, never to become a GET.
fn leak_method(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        other => Box::leak(other.to_owned().into_boxed_str()),
    }
}

/// [`id_class`] of a value that is an id.
const ID: u8 = 0;

/// Whether a rendered id is one ([`ID`]), or what it is instead (for [`describe_class`]).
fn id_class(v: &Value) -> u8 {
    match v {
        Value::String(s) if !s.is_empty() => ID,
        Value::Number(_) => ID,
        Value::Null => 1,
        Value::String(_) => 2,
        Value::Bool(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// [`describe`] of a value of [`id_class`] `class`.
fn describe_class(class: u8) -> &'static str {
    match class {
        1 => "nothing (an empty cell?)",
        2 => "an empty string",
        3 => "a boolean",
        4 => "a list",
        _ => "a map",
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (an empty cell?)".into(),
        Value::String(_) => "an empty string".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(_) => "a number".into(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a map".into(),
    }
}

/// Percent-encodes an id for a path segment.
fn encode(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
