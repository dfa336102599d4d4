//! A plan's templates compiled once, and a unit expanded into the calls it makes.
//!
//! [`Compiled::expand`] walks a unit through the step tree (`for_each` over child rows, group
//! `when` conditions) and lists every action step instance in the order the unit runs them.
//! [`Compiled::render`] then renders one instance's call from the rows in its scope, the saved
//! outputs of earlier steps and the lookups. `plan validate` and `plan estimate` render with
//! placeholder outputs; the executor renders with real ones, one call at a time.
//!
//! A body's lists built from child rows ([`super::lists`]) are rendered after the rest of the
//! body, one item per child row, and put in their fields. Inside an item, `steps.<id>` of a
//! step that ran in a for_each the step is not in (the group's members, created under
//! `for_each: members`) reads that step's output for the item's row: the executor keeps those
//! outputs by instance as well as by id ([`Compiled::keeps_row_output`]).

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::action::Action;
use super::check::{ActionStep, Plan, Step};
use super::lists::{self, BodyList};
use super::template::{Condition, Context, Engine, Memo, Row, TemplateError, Tree, Zone};
use crate::source::{Record, Unit};

/// A plan ready to render calls.
pub struct Compiled {
    steps: Vec<CompiledStep>,
    tree: Vec<Node>,
    plan_name: String,
    engine: &'static Engine,
    /// Ids of the steps whose outputs list items read per row ([`Self::keeps_row_output`]).
    row_outputs: HashSet<String>,
}

/// The stand-in for a step's output an item's row has none of (the step did not run for it).
static NO_OUTPUT: Value = Value::Null;

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
    /// request: the `adopt.get` path template.
    adopt_get: Option<Tree<'static>>,
    installments: Option<(String, Tree<'static>)>,
    /// The body's lists built from child rows, taken out of `body`.
    lists: Vec<CompiledList>,
    /// The body without its lists, for [`Compiled::keep_fields`].
    plain_body: Option<Value>,
    /// Which of `lists` [`Compiled::render_fields`] renders (those under or over a kept field).
    kept_lists: Vec<bool>,
    uses_lookups: bool,
}

/// A list built from child rows, compiled.
struct CompiledList {
    /// The keys from the enclosing value (body or item) to the list's field.
    field: Vec<String>,
    /// Its key path in the plan, for errors.
    path: String,
    source: String,
    when: Option<Condition<'static>>,
    /// `None`: it did not compile (reported by `plan validate`); the list renders empty.
    item: Option<Tree<'static>>,
    lists: Vec<CompiledList>,
    /// The steps the item (or its `when`) reads for the item's row: their id and how many of
    /// the item's rows are theirs (the length of their scope).
    per_row: Vec<(String, usize)>,
}

impl CompiledList {
    fn uses_lookups(&self) -> bool {
        self.item
            .as_ref()
            .is_some_and(|t| t.variables().iter().any(|v| v.starts_with("lookups")))
            || self
                .when
                .as_ref()
                .is_some_and(|w| w.variables().iter().any(|v| v.starts_with("lookups")))
            || self.lists.iter().any(CompiledList::uses_lookups)
    }
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
        instance_of(&self.rows)
    }
}

/// `clients/CL-1/loans/LN-2` of rows, outermost first.
fn instance_of(rows: &[(&str, Record<'_>)]) -> String {
    rows.iter()
        .map(|(s, r)| format!("{s}/{}", r.key()))
        .collect::<Vec<_>>()
        .join("/")
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

impl Call {
    /// Whether it carries an Idempotency-Key: a built-in action's as the action says, a
    /// request's when it is a POST. Mambu offers the header on POST creates and actions, and
    /// not on PUT, PATCH or DELETE (`../shared/mambu-api.md` §3: "Key that can be used to
    /// support idempotency on this POST", in the spec of every idempotent POST).
    pub fn takes_idempotency_key(&self) -> bool {
        match self.action {
            Action::Request => self.method == "POST",
            action => action.takes_idempotency_key(),
        }
    }
}

/// Why a step could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("{field} renders to {what}, not an id")]
    NotAnId { field: &'static str, what: String },
    /// A list item reads the output of a step that did not run for the item's row.
    #[error(
        "{path}: step `{step}` did not run for {row} (its `when`, or its for_each's, was false), so the item has no steps.{step}: give the list the same `when`"
    )]
    NotRun {
        path: String,
        step: String,
        row: String,
    },
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
            row_outputs: HashSet::new(),
        };
        let scopes: HashMap<&str, &[String]> = plan
            .action_steps()
            .into_iter()
            .map(|s| (s.id.as_str(), s.scope.as_slice()))
            .collect();
        compiled.tree = compiled.nodes(engine, &plan.steps, &scopes);
        compiled
    }

    /// Compiles a step's lists; `scope` is the sources whose rows the enclosing value sees,
    /// `own` the step's own scope.
    fn lists(
        &mut self,
        engine: &'static Engine,
        lists: &[BodyList],
        scope: &[String],
        own: &[String],
        scopes: &HashMap<&str, &[String]>,
    ) -> Vec<CompiledList> {
        lists
            .iter()
            .map(|list| {
                let mut inner = scope.to_vec();
                inner.push(list.source.clone());
                let item = engine.compile(&list.item_path(), &list.item).ok();
                let when = list
                    .when
                    .as_ref()
                    .and_then(|w| engine.condition(&format!("{}.when", list.path), w).ok());
                let mut per_row: Vec<(String, usize)> = Vec::new();
                let read = item
                    .iter()
                    .flat_map(|t| t.variables().into_iter().map(str::to_owned))
                    .chain(when.iter().flat_map(|w| w.variables().iter().cloned()));
                for variable in read {
                    let mut parts = variable.split('.');
                    let (Some("steps"), Some(id)) = (parts.next(), parts.next()) else {
                        continue;
                    };
                    let Some(ran) = scopes.get(id) else { continue };
                    if ran.len() > own.len()
                        && inner.starts_with(ran)
                        && !per_row.iter().any(|(i, _)| i == id)
                    {
                        per_row.push((id.to_owned(), ran.len()));
                        self.row_outputs.insert(id.to_owned());
                    }
                }
                let nested = self.lists(engine, &list.lists, &inner, own, scopes);
                CompiledList {
                    field: list.field.clone(),
                    path: list.path.clone(),
                    source: list.source.clone(),
                    when,
                    item,
                    lists: nested,
                    per_row,
                }
            })
            .collect()
    }

    fn nodes(
        &mut self,
        engine: &'static Engine,
        steps: &[Step],
        scopes: &HashMap<&str, &[String]>,
    ) -> Vec<Node> {
        let mut out = Vec::new();
        for step in steps {
            match step {
                Step::ForEach(group) => {
                    let when = group
                        .when
                        .as_ref()
                        .and_then(|w| engine.condition(&format!("{}.when", group.path), w).ok());
                    let steps = self.nodes(engine, &group.steps, scopes);
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
                    let (plain_body, lists) = a.split_body();
                    let body = plain_body
                        .as_ref()
                        .and_then(|b| engine.compile(&format!("{}.body", a.path), b).ok());
                    let lists = self.lists(engine, &lists, &a.scope, &a.scope, scopes);
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
                    let adopt_get = tree("adopt.get", &a.adopt.as_ref().map(|x| x.get.clone()));
                    let uses = uses_lookups(&[&body, &loan, &deposit, &path, &adopt_get])
                        || installments.as_ref().is_some_and(|(_, t)| {
                            t.variables().iter().any(|v| v.starts_with("lookups"))
                        })
                        || lists.iter().any(CompiledList::uses_lookups);
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
                        adopt_get,
                        installments,
                        kept_lists: vec![false; lists.len()],
                        lists,
                        plain_body,
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
            // A list is rendered whole when a kept field is in it, or it in a kept field.
            compiled.kept_lists = compiled
                .lists
                .iter()
                .map(|list| {
                    let at = format!("/{}", list.field.join("/"));
                    pointers.iter().any(|p| {
                        *p == at
                            || p.strip_prefix(at.as_str())
                                .is_some_and(|r| r.starts_with('/'))
                            || at.strip_prefix(p).is_some_and(|r| r.starts_with('/'))
                    })
                })
                .collect();
            let Some(Value::Object(whole)) = &compiled.plain_body else {
                continue;
            };
            let body = compiled.plain_body.as_ref().expect("a body");
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

    /// Whether the executor keeps the step's output by instance too, under its
    /// [`instance_id`](super::ids::instance_id) (`groups/G-1/members/M-1#member`), as well as
    /// by its id: a later step's list reads it for each item's row. Saved outputs put back on
    /// a resume go there too; a skipped instance is kept as null.
    pub fn keeps_row_output(&self, index: usize) -> bool {
        self.row_outputs.contains(&self.steps[index].step.id)
    }

    /// Whether the step's templates read `lookups` (they render only with the tenant's tables).
    pub fn uses_lookups(&self, index: usize) -> bool {
        self.steps[index].uses_lookups
    }

    /// Every action step instance of the unit, in run order. Group `when` conditions are
    /// evaluated on the rows; one that fails to evaluate counts as true (rendering the steps
    /// will report the problem).
    /// A catch-up's updates (`on_change` steps) are left out: a migration never runs them.
    pub fn expand<'u>(&self, unit: &'u Unit) -> Vec<Planned<'u>> {
        self.expand_with(unit, false)
    }

    /// [`expand`](Self::expand), with the catch-up's updates (`on_change` steps) when
    /// `updates`: a catch-up decides for each whether its row changed.
    pub fn expand_with<'u>(&self, unit: &'u Unit, updates: bool) -> Vec<Planned<'u>> {
        let mut out = Vec::new();
        let root = unit.root();
        let mut rows = vec![(root.schema().name(), root)];
        self.expand_nodes(&self.tree, unit, &mut rows, &mut out, updates);
        out
    }

    /// Whether the step is a catch-up's update (`on_change`).
    pub fn is_update(&self, index: usize) -> bool {
        !self.steps[index].step.on_change.is_empty()
    }

    fn expand_nodes<'u>(
        &self,
        nodes: &[Node],
        unit: &'u Unit,
        rows: &mut Vec<(&'u str, Record<'u>)>,
        out: &mut Vec<Planned<'u>>,
        updates: bool,
    ) {
        for node in nodes {
            match node {
                Node::Action(i) if !updates && self.is_update(*i) => {}
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
                            self.expand_nodes(steps, unit, rows, out, updates);
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
            id_of("adopt.get", &compiled.adopt_get, memo)?;
        }
        if let Some((from, tree)) = &compiled.installments {
            let parent = planned.row();
            for row in unit.children(from, parent).iter() {
                let mut rows = planned.rows.clone();
                rows.push((row.schema().name(), row));
                tree.check(&self.context(&rows, outputs, lookups), memo)?;
            }
        }
        let mut memo = Some(memo);
        for list in &compiled.lists {
            self.list_items(unit, list, &planned.rows, outputs, lookups, &mut memo)?;
        }
        Ok(())
    }

    /// Renders each of `lists` (those `only` marks, if given) and puts its items in its field of
    /// `target`; `rows` are the rows the enclosing value sees.
    #[allow(clippy::too_many_arguments)]
    fn render_lists<'u>(
        &self,
        unit: &'u Unit,
        lists: &[CompiledList],
        only: Option<&[bool]>,
        rows: &[(&'u str, Record<'u>)],
        outputs: &HashMap<String, Value>,
        lookups: Option<&Value>,
        memo: &mut Option<&mut Memo>,
        target: &mut Value,
    ) -> Result<(), RenderError> {
        for (i, list) in lists.iter().enumerate() {
            if only.is_some_and(|kept| !kept.get(i).copied().unwrap_or(false)) {
                continue;
            }
            let items = self.list_items(unit, list, rows, outputs, lookups, memo)?;
            lists::insert(target, &list.field, items);
        }
        Ok(())
    }

    /// One item per child row of the list's source under the last of `rows` (its `when`
    /// true), each with its own lists.
    fn list_items<'u>(
        &self,
        unit: &'u Unit,
        list: &CompiledList,
        rows: &[(&'u str, Record<'u>)],
        outputs: &HashMap<String, Value>,
        lookups: Option<&Value>,
        memo: &mut Option<&mut Memo>,
    ) -> Result<Vec<Value>, RenderError> {
        let Some(item) = &list.item else {
            return Ok(Vec::new());
        };
        let parent = rows.last().expect("scope holds the unit's row").1;
        let mut out = Vec::new();
        for child in unit.children(&list.source, &parent).iter() {
            let mut rows = rows.to_vec();
            rows.push((child.schema().name(), child));
            let (own, missing) = row_outputs(list, &rows, outputs);
            let mut ctx = self.context(&rows, outputs, lookups);
            for (id, output) in &own {
                ctx.push_step(id, output);
            }
            // A memo takes step outputs as the same in every context: not so for these.
            let memo = match memo {
                Some(memo) if own.is_empty() => Some(&mut **memo),
                _ => None,
            };
            let (run, memo) = match (&list.when, memo) {
                (None, memo) => (true, memo),
                (Some(when), Some(memo)) => (when.eval_memo(&ctx, memo)?, Some(memo)),
                (Some(when), None) => (when.eval(&ctx)?, None),
            };
            if !run {
                continue;
            }
            if let Some(step) = missing {
                return Err(RenderError::NotRun {
                    path: list.path.clone(),
                    step,
                    row: instance_of(&rows[1..]),
                });
            }
            let mut memo = memo;
            let mut value = match memo.as_mut() {
                Some(memo) => item.render_memo(&ctx, memo)?,
                None => item.render(&ctx)?,
            };
            drop(ctx);
            self.render_lists(
                unit,
                &list.lists,
                None,
                &rows,
                outputs,
                lookups,
                &mut memo,
                &mut value,
            )?;
            out.push(value);
        }
        Ok(out)
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
        let (mut body, only) = match (memo.is_some(), &compiled.fields) {
            (true, Some(fields)) => (
                Some(render(fields, &ctx, &mut memo)?),
                Some(compiled.kept_lists.as_slice()),
            ),
            _ => (
                compiled
                    .body
                    .as_ref()
                    .map(|t| render(t, &ctx, &mut memo))
                    .transpose()?,
                None,
            ),
        };
        if let Some(body) = body.as_mut() {
            self.render_lists(
                unit,
                &compiled.lists,
                only,
                &planned.rows,
                outputs,
                lookups,
                &mut memo,
                body,
            )?;
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

    /// A request step's `adopt.get` path, rendered with the same rows, outputs and lookups as
    /// its call; `None` when the step declares no adoption.
    pub fn render_adopt(
        &self,
        planned: &Planned<'_>,
        outputs: &HashMap<String, Value>,
        lookups: Option<&Value>,
    ) -> Result<Option<String>, RenderError> {
        let Some(tree) = &self.steps[planned.step].adopt_get else {
            return Ok(None);
        };
        match tree.render(&self.context(&planned.rows, outputs, lookups))? {
            Value::String(s) if !s.is_empty() => Ok(Some(s)),
            other => Err(RenderError::NotAnId {
                field: "adopt.get",
                what: describe(&other),
            }),
        }
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

/// The outputs of the steps an item reads for its row (`rows`, the item's own last), and the
/// first such step that did not run for it. An output the executor did not keep by instance
/// (placeholders, a verify that keeps outputs by id only) is read by id as anywhere else.
fn row_outputs<'o>(
    list: &'o CompiledList,
    rows: &[(&str, Record<'_>)],
    outputs: &'o HashMap<String, Value>,
) -> (Vec<(&'o str, &'o Value)>, Option<String>) {
    let mut own = Vec::new();
    let mut missing = None;
    for (id, depth) in &list.per_row {
        let Some(theirs) = rows.get(..*depth) else {
            continue;
        };
        let key = format!("{}#{id}", instance_of(theirs));
        let kept_by_instance = || {
            let tail = format!("#{id}");
            outputs
                .keys()
                .any(|k| k.ends_with(&tail) && k.len() > tail.len())
        };
        match outputs.get(&key) {
            Some(Value::Null) => {
                own.push((id.as_str(), &NO_OUTPUT));
                missing.get_or_insert_with(|| id.clone());
            }
            Some(output) => own.push((id.as_str(), output)),
            None if kept_by_instance() => {
                own.push((id.as_str(), &NO_OUTPUT));
                missing.get_or_insert_with(|| id.clone());
            }
            None => {}
        }
    }
    (own, missing)
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::source::{self, GroupOptions};

    /// A group unit: groups G1 (members M1 leader, M2) and G2 (no members); documents of M1.
    const PLAN: &str = r#"version: 1
name: lists
sources:
  groups: { file: groups.csv, key: group_id }
  members: { file: members.csv, key: member_id, parent: groups.group_id, order_by: [position] }
  documents: { file: documents.csv, key: doc_id, parent: members.member_id }
unit: groups
steps:
  - for_each: members
    steps:
      - id: member
        action: create_client
        when: "members.skip != 'Y'"
        body:
          id: "{{ members.member_id }}"
          firstName: "{{ members.name }}"
          lastName: x
          idDocuments:
            for_each: documents
            item: { documentType: "{{ documents.type }}", documentId: "{{ documents.number }}" }
  - id: group
    action: create_group
    body:
      id: "{{ groups.group_id }}"
      groupName: "{{ groups.name }}"
      groupMembers:
        for_each: members
        item:
          clientKey: "{{ steps.member.encodedKey }}"
          roles:
            for_each: documents
            when: "documents.type == 'ROLE'"
            item: { groupRoleNameKey: "{{ documents.number }}" }
"#;

    fn units(dir: &Path, members: &str) -> (Plan, Vec<source::Unit>) {
        std::fs::write(dir.join("groups.csv"), "group_id,name\nG1,One\nG2,Two\n").unwrap();
        std::fs::write(dir.join("members.csv"), members).unwrap();
        std::fs::write(
            dir.join("documents.csv"),
            "doc_id,member_id,type,number\nD1,M1,NID,N-1\nD2,M1,ROLE,LEADER\nD3,M2,NID,N-2\n",
        )
        .unwrap();
        let loaded = crate::plan::load::load_str(&dir.join("plan.yaml"), PLAN).unwrap();
        let plan = crate::plan::check::check(&loaded, &[]).unwrap();
        let sources = plan.source_tree().unwrap();
        let units = source::group(&sources, &GroupOptions::default()).collect();
        (plan, units)
    }

    const MEMBERS: &str = "member_id,group_id,name,position,skip\nM2,G1,Bea,2,\nM1,G1,Ana,1,\n";

    #[test]
    fn lists_render_one_item_per_child_row_and_none_leaves_the_field_out() {
        let dir = tempfile::tempdir().unwrap();
        let (plan, units) = units(dir.path(), MEMBERS);
        let compiled = Compiled::new(&plan);
        let outputs = compiled.placeholder_outputs();
        let g1 = &units[0];
        let planned = compiled.expand(g1);
        assert_eq!(planned.len(), 3);
        let first = compiled.render(g1, &planned[0], &outputs, None).unwrap();
        assert_eq!(
            first.body.unwrap()["idDocuments"],
            json!([{ "documentType": "NID", "documentId": "N-1" }, { "documentType": "ROLE", "documentId": "LEADER" }])
        );
        let group = compiled.render(g1, &planned[2], &outputs, None).unwrap();
        assert_eq!(group.path, "/groups");
        // In `order_by` order; placeholders are read by id; an empty nested list is left out.
        assert_eq!(
            group.body.unwrap(),
            json!({ "id": "G1", "groupName": "One", "groupMembers": [
                { "clientKey": "<member.encodedKey>", "roles": [{ "groupRoleNameKey": "LEADER" }] },
                { "clientKey": "<member.encodedKey>" },
            ] })
        );
        let g2 = &units[1];
        let planned = compiled.expand(g2);
        let group = compiled.render(g2, &planned[0], &outputs, None).unwrap();
        assert_eq!(
            group.body.unwrap(),
            json!({ "id": "G2", "groupName": "Two" })
        );
        // The memo path (validate --target) renders them the same.
        let mut fields = Compiled::new(&plan);
        fields.keep_fields(&["/groupMembers", "/id"]);
        let planned = fields.expand(g1);
        let mut memo = Memo::default();
        let cut = fields
            .render_fields(g1, &planned[2], &outputs, None, &mut memo)
            .unwrap();
        assert_eq!(
            cut.body.unwrap()["groupMembers"][0]["roles"][0]["groupRoleNameKey"],
            "LEADER"
        );
        fields
            .check(g1, &planned[2], &outputs, None, &mut memo)
            .unwrap();
        let mut other = Compiled::new(&plan);
        other.keep_fields(&["/id"]);
        let cut = other
            .render_fields(g1, &planned[2], &outputs, None, &mut memo)
            .unwrap();
        assert_eq!(cut.body.unwrap(), json!({ "id": "G1" }));
    }

    #[test]
    fn steps_in_an_item_read_the_output_of_the_items_row() {
        let dir = tempfile::tempdir().unwrap();
        let (plan, units) = units(dir.path(), MEMBERS);
        let compiled = Compiled::new(&plan);
        let unit = &units[0];
        let planned = compiled.expand(unit);
        assert!(compiled.keeps_row_output(planned[0].step));
        assert!(!compiled.keeps_row_output(planned[2].step));
        // As the executor keeps them: by id (the last) and by instance.
        let mut outputs = HashMap::new();
        for (p, key) in planned[..2].iter().zip(["k1", "k2"]) {
            let out = json!({ "id": p.row().key(), "encodedKey": key });
            outputs.insert(crate::plan::ids::instance_id(&compiled, p), out.clone());
            outputs.insert("member".to_owned(), out);
        }
        assert!(outputs.contains_key("groups/G1/members/M1#member"));
        let body = compiled
            .render(unit, &planned[2], &outputs, None)
            .unwrap()
            .body
            .unwrap();
        let keys: Vec<&Value> = body["groupMembers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["clientKey"])
            .collect();
        assert_eq!(keys, [&json!("k1"), &json!("k2")]);
        // A member whose step was skipped: the list may not take another member's key.
        outputs.insert("groups/G1/members/M2#member".to_owned(), Value::Null);
        let err = compiled
            .render(unit, &planned[2], &outputs, None)
            .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "steps[1].body.groupMembers: step `member` did not run for members/M2"
            ),
            "{err}"
        );
        outputs.remove("groups/G1/members/M2#member");
        assert!(matches!(
            compiled.render(unit, &planned[2], &outputs, None),
            Err(RenderError::NotRun { .. })
        ));
    }

    #[test]
    fn adopt_get_renders_with_the_steps_context_and_request_posts_take_a_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.csv"), "client_id,name\nCL-1,Ana\n").unwrap();
        let text = r#"version: 1
name: adopt
sources:
  clients: { file: c.csv, key: client_id }
unit: clients
steps:
  - id: client
    action: request
    method: POST
    path: /clients
    body: { id: "{{ clients.client_id }}", firstName: "{{ clients.name }}", lastName: x }
    adopt: { on: [CLIENT_ID_ALREADY_IN_USE], get: "/clients/{{ clients.client_id }}?by={{ steps.client.id }}" }
  - id: read
    action: request
    method: GET
    path: "/clients/{{ steps.client.encodedKey }}"
"#;
        let loaded = crate::plan::load::load_str(&dir.path().join("plan.yaml"), text).unwrap();
        let plan = crate::plan::check::check(&loaded, &[]).unwrap();
        let sources = plan.source_tree().unwrap();
        let units: Vec<source::Unit> = source::group(&sources, &GroupOptions::default()).collect();
        let compiled = Compiled::new(&plan);
        let outputs = compiled.placeholder_outputs();
        let planned = compiled.expand(&units[0]);
        let get = compiled
            .render_adopt(&planned[0], &outputs, None)
            .unwrap()
            .unwrap();
        assert_eq!(get, "/clients/CL-1?by=<client.id>");
        assert_eq!(compiled.render_adopt(&planned[1], &outputs, None), Ok(None));
        let post = compiled
            .render(&units[0], &planned[0], &outputs, None)
            .unwrap();
        let get = compiled
            .render(&units[0], &planned[1], &outputs, None)
            .unwrap();
        assert!(post.takes_idempotency_key() && !get.takes_idempotency_key());
        for method in ["PUT", "PATCH", "DELETE"] {
            assert!(
                !Call {
                    method,
                    ..post.clone()
                }
                .takes_idempotency_key()
            );
        }
        // An empty rendering is refused, as the step's own path would be.
        let mut memo = Memo::default();
        compiled
            .check(&units[0], &planned[0], &outputs, None, &mut memo)
            .unwrap();
    }
}
