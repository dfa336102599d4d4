//! Rendering a plan step's templates to typed JSON.
//!
//! A step's `body`, `path` and other fields are YAML trees (loaded as [`serde_json::Value`]).
//! [`Engine::compile`] turns one tree into a [`Tree`] once; [`Tree::render`] then fills it from
//! a [`Context`] as many times as needed, without parsing anything again. `when:` conditions
//! compile to a [`Condition`] ([`Engine::condition`]).
//!
//! # Strings
//! - No `{{` at all: the string is kept as it is.
//! - Exactly one `{{ expr }}`, with nothing but whitespace around it: the **typed** value of the
//!   expression — a number, string, bool, null, list or map. `"{{ loans.amount | decimal }}"`
//!   is the JSON number `12500.50`, `"{{ loans.installments | int }}"` is `12`.
//! - Anything else (`"Loan {{ loans.loan_id }}"`, `"{{ a }}-{{ b }}"`): interpolation into a
//!   string. Each expression adds its text: a string as it is, `none` as nothing, other values
//!   as their JSON text (`true`, `12500.50`).
//! - `{{-` / `-}}` trim the whitespace next to them, as in Jinja. Statements (`{% %}`) and
//!   comments (`{# #}`) are refused: use an expression (`{{ a if cond else b }}`).
//!
//! Non-string values pass through unchanged; object keys are not templated.
//!
//! **Null omission:** an object entry whose templated value renders to null is left out of the
//! rendered object, so an optional empty column simply omits the field
//! (`{ notes: "{{ loans.notes | default(none) }}" }` renders `{}` when the cell is empty, and
//! `{ amount: "{{ loans.fee | decimal }}" }` renders `{}` when the fee cell is empty). A literal
//! `null` written in the plan is kept (it is not rendered), and a list keeps its positions (an
//! item rendering to null stays null).
//!
//! **Lists from child rows:** a body field written as `{ for_each: SOURCE, item: { … } }`
//! (optionally `when: CONDITION`) is not a template of this module: the plan takes it out of the
//! tree and renders `item` once per row of SOURCE under the step's current row, in the source's
//! order, SOURCE's row in scope (`plan::lists`, `plan::compiled`). No item (no rows, or every
//! `when` false) leaves the field out, as null omission does.
//!
//! # Context
//! `<source>.<column>` (cells are strings; an empty cell is `""`), `steps.<step_id>.<field>` (the
//! saved JSON output of an earlier step), `unit.key`, `plan.name`. See [`Context`]. A source may
//! not be called `steps`, `unit` or `plan` ([`RESERVED_NAMES`]).
//!
//! Undefined is strict: `{{ loans.nope }}` is an error naming `loans.nope`, never an empty
//! string. Only `default(x)` (and `is defined`) accept it.
//!
//! # Filters
//! Besides minijinja's built-ins (`replace`, `length`, `round`, `join`, …):
//! - `decimal`: exact number (`"12500.50"` → `12500.50`, no float anywhere: the JSON number is
//!   built from the decimal's digits). `decimal(comma=true)`: the decimal separator is a comma
//!   (`"12,5"` → `12.5`). Thousands separators are refused unless `decimal(thousands=true)`
//!   (`"1,234.56"`; with `comma=true` the separator is `.`: `"1.234,56"`), and must then be
//!   in groups of three. `decimal(places=2)` rounds half away from zero to 2 places and pads
//!   (`"12.5"` → `12.50`). Blank → null.
//! - `int`: `"12"` → `12`; `"12.0"` is an error; blank → null.
//! - `date`: a `"YYYY-MM-DD"` string. Input `%Y-%m-%d` or RFC 3339 (its date as written), or
//!   the chrono format given: `date("%d/%m/%Y")`. Blank → null.
//! - `datetime`: Mambu's `"2024-01-15T00:00:00+00:00"`. Input a date (midnight) or a date-time,
//!   ISO/RFC 3339 or the format given (`datetime("%d/%m/%Y %H:%M")`). A value without offset is
//!   taken in `tz="+02:00"`, by default the engine's offset ([`Engine::with_default_offset`]);
//!   one with an offset keeps it, or is converted to `tz` if given. Seconds' fractions are
//!   dropped. Fixed offsets only (no named zones, so no daylight saving). Blank → null.
//! - `trim`, `upper`, `lower`: text; `none` stays `none`.
//! - `default(x)`: `x` when the value is undefined, `none` **or `""`** (minijinja's own
//!   `default` only replaces undefined).
//! - `mask`: first character of each word, the rest `*` (`"Ada Lovelace"` → `"A** L*******"`),
//!   for showing personal data in reports.
//!
//! Exact decimals compare with each other but not with plain numbers inside values; in `when:`
//! conditions `decimal` yields a plain number, so `transactions.amount | decimal > 0` works.
//!
//! # Errors
//! Every [`TemplateError`] names the template's place in the tree
//! (`body.scheduleSettings.repaymentInstallments`) and the template as written. Errors never
//! quote a cell: a bad value is described by its length and shape (`10 characters, shape
//! "99/99/9999"`).
//!
//! # Static analysis
//! [`Tree::references`] and [`Condition::variables`] list the dotted variables a template uses
//! (`clients.client_id`, `steps.client.encodedKey`), for `plan validate` to check against the
//! sources' headers and earlier steps. Unknown filters and tests are found at compile time.

mod context;
mod filters;
mod memo;
mod scan;
mod value;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::FixedOffset;
use minijinja::{Environment, ErrorKind, Expression, UndefinedBehavior, Value};

pub use context::{Cells, Context, RESERVED_NAMES, Row};
pub use filters::{Zone, mask_text};
pub use memo::Memo;

use context::Needs;
use filters::FilterFailure;
use scan::{Piece, Use};
use value::{Mode, NotJson, value_to_json, value_to_text};

/// Something wrong with a template: at compile time (syntax, unknown filter) or when rendering.
///
/// `path` is the template's place in the tree (`body.loanAmount`), `template` the string as
/// written in the plan. Messages never hold cell values, only their shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template does not parse, or names an unknown filter or test.
    #[error("{path}: {message} in `{template}`")]
    Syntax {
        path: String,
        template: String,
        message: String,
    },
    /// The template uses variables the context does not have.
    #[error("{path}: undefined {} in `{template}`", list(.names))]
    Undefined {
        path: String,
        template: String,
        names: Vec<String>,
    },
    /// A filter refused its input, e.g. `decimal: not a decimal number (3 characters, shape "aaa")`.
    #[error("{path}: {filter}: {problem} in `{template}`")]
    Filter {
        path: String,
        template: String,
        filter: String,
        problem: String,
    },
    /// Any other evaluation error (wrong operand types, unknown method…).
    #[error("{path}: {message} in `{template}`")]
    Eval {
        path: String,
        template: String,
        message: String,
    },
    /// The value has no JSON form (a function, a non-finite number…).
    #[error("{path}: the value is {kind}, which has no JSON form, in `{template}`")]
    NotJson {
        path: String,
        template: String,
        kind: String,
    },
    /// A `when:` condition gave something else than true or false.
    #[error("{path}: the condition gave {kind}, not true or false, in `{template}`")]
    NotBool {
        path: String,
        template: String,
        kind: String,
    },
    /// A UTC offset that does not parse.
    #[error("invalid UTC offset {offset:?}: expected +HH:MM, -HH:MM or Z")]
    InvalidOffset { offset: String },
}

fn list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl TemplateError {
    /// The template's place in the tree (empty for [`TemplateError::InvalidOffset`]).
    pub fn path(&self) -> &str {
        match self {
            TemplateError::Syntax { path, .. }
            | TemplateError::Undefined { path, .. }
            | TemplateError::Filter { path, .. }
            | TemplateError::Eval { path, .. }
            | TemplateError::NotJson { path, .. }
            | TemplateError::NotBool { path, .. } => path,
            TemplateError::InvalidOffset { .. } => "",
        }
    }
}

/// Every template error of one tree, found at once (for `plan validate`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct CompileErrors(pub Vec<TemplateError>);

/// Parses a UTC offset as plans write it: `+02:00`, `-05:30`, `+0200`, `Z` or `UTC`.
pub fn parse_offset(offset: &str) -> Result<FixedOffset, TemplateError> {
    filters::parse_offset(offset).ok_or_else(|| TemplateError::InvalidOffset {
        offset: offset.to_string(),
    })
}

/// The template engine: two minijinja environments (one for values, one for conditions) with
/// strict undefined and the plan filters. Build one per run and compile every template with it;
/// compiled templates borrow it. For compiled templates that must be `'static` (moved into
/// spawned tasks), [`leak`](Self::leak) the engine: it is a few kilobytes, once per run.
#[derive(Debug)]
pub struct Engine {
    values: Environment<'static>,
    /// The zone `datetime` takes a value without an offset in.
    default_offset: Zone,
    conditions: Environment<'static>,
    /// Names minijinja defines globally (`range`, `dict`…): used alone, not context variables.
    globals: BTreeSet<String>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    /// An engine whose `datetime` takes offset-less values in UTC.
    pub fn new() -> Self {
        Self::with_zone(Zone::UTC)
    }

    /// An engine whose `datetime` takes offset-less values at `offset`.
    pub fn with_default_offset(offset: FixedOffset) -> Self {
        Self::with_zone(Zone::Fixed(offset))
    }

    /// An engine whose `datetime` takes offset-less values in `zone` (the plan's `timezone`),
    /// with the offset in force on each value's date.
    pub fn with_zone(offset: Zone) -> Self {
        let build = |mode| {
            let mut env = Environment::new();
            env.set_undefined_behavior(UndefinedBehavior::Strict);
            // No debug info: it would copy context values (personal data) into errors.
            env.set_debug(false);
            filters::register(&mut env, mode, offset);
            env
        };
        let values = build(Mode::Value);
        let conditions = build(Mode::Condition);
        let globals = values.globals().map(|(name, _)| name.to_string()).collect();
        Engine {
            values,
            default_offset: offset,
            conditions,
            globals,
        }
    }

    /// Moves the engine to the heap for the rest of the process, so what it compiles is
    /// `'static`.
    pub fn leak(self) -> &'static Engine {
        Box::leak(Box::new(self))
    }

    /// Compiles every string of `tree`. `path` names the tree in messages (`body`,
    /// `steps[2].body`); the templates inside are named from it (`body.scheduleSettings.x`,
    /// `body.items[0]`). All errors are reported, not just the first.
    pub fn compile(&self, path: &str, tree: &serde_json::Value) -> Result<Tree<'_>, CompileErrors> {
        let mut compiler = Compiler {
            engine: self,
            errors: Vec::new(),
            references: Vec::new(),
        };
        let root = compiler.node(path, tree);
        if !compiler.errors.is_empty() {
            return Err(CompileErrors(compiler.errors));
        }
        let mut needs = Needs::default();
        for r in &compiler.references {
            needs.add(&r.variable);
        }
        let mut variables: Vec<String> = compiler
            .references
            .iter()
            .map(|r| r.variable.clone())
            .collect();
        variables.sort();
        variables.dedup();
        Ok(Tree {
            root,
            needs,
            references: compiler.references,
            variables,
            id: memo::next_id(),
        })
    }

    /// Compiles one string (a path template, a header…): [`compile`](Self::compile) of a
    /// string value.
    pub fn compile_str(&self, path: &str, template: &str) -> Result<Tree<'_>, CompileErrors> {
        self.compile(path, &serde_json::Value::String(template.to_string()))
    }

    /// Compiles a `when:` condition: a bare expression such as `loans.deposit_id != ''` (braces
    /// around it, `{{ … }}`, are tolerated).
    pub fn condition(&self, path: &str, condition: &str) -> Result<Condition<'_>, TemplateError> {
        let lead = condition.len() - condition.trim_start().len();
        let (source, offset) = match scan::split(condition.trim()).as_deref() {
            Ok([Piece::Expr { source, offset }]) => (*source, lead + offset),
            _ => (condition, 0),
        };
        let template: Arc<str> = Arc::from(condition);
        let expr = self.expression(Mode::Condition, Arc::from(path), &template, source, offset)?;
        let mut needs = Needs::default();
        for v in &expr.variables {
            needs.add(v);
        }
        Ok(Condition { expr, needs })
    }

    /// Compiles one expression and checks the filters and tests it names.
    fn expression(
        &self,
        mode: Mode,
        path: Arc<str>,
        template: &Arc<str>,
        source: &str,
        offset: usize,
    ) -> Result<Expr<'_>, TemplateError> {
        let syntax = |message: String| TemplateError::Syntax {
            path: path.to_string(),
            template: template.to_string(),
            message,
        };
        let env = match mode {
            Mode::Value => &self.values,
            Mode::Condition => &self.conditions,
        };
        let compiled = env
            .compile_expression_owned(source.to_string())
            .map_err(|e| {
                let at = offset + e.range().map_or(0, |r| r.start);
                let message = e
                    .detail()
                    .map_or_else(|| e.kind().to_string(), str::to_string);
                syntax(format!(
                    "{} (at character {})",
                    message,
                    char_position(template, at)
                ))
            })?;
        for u in scan::uses(source) {
            let (probe, unknown_kind, what) = match u {
                Use::Filter(name) => (
                    format!("none | {name}"),
                    ErrorKind::UnknownFilter,
                    ("filter", name),
                ),
                Use::Test(name) => (
                    format!("none is {name}"),
                    ErrorKind::UnknownTest,
                    ("test", name),
                ),
            };
            let unknown = match env.compile_expression_owned(probe) {
                Ok(p) => p.eval(()).is_err_and(|e| e.kind() == unknown_kind),
                Err(_) => false,
            };
            if unknown {
                let (what, name) = what;
                let hint = if what == "filter" {
                    format!(" (plan filters: {})", filters::PLAN_FILTERS)
                } else {
                    String::new()
                };
                return Err(syntax(format!("unknown {what} `{name}`{hint}")));
            }
        }
        let mut variables: Vec<String> = compiled
            .undeclared_variables(true)
            .into_iter()
            // `range(3)` names `range`; a dotted `range.x` would be a source's column.
            .filter(|v| !self.globals.contains(v.as_str()))
            .collect();
        variables.sort();
        // A bare variable (`{{ loans.loan_id }}`) gives the cell's string whatever it holds.
        let bare = variables.len() == 1 && source.trim() == variables[0];
        // One source cell through plan filters: `plan validate` calls the filters directly.
        let chain = match variables.as_slice() {
            [v] if mode == Mode::Value
                && v.split_once('.').is_some_and(|(first, column)| {
                    !column.contains('.') && !RESERVED_NAMES.contains(&first)
                }) =>
            {
                filters::Chain::parse(source, v, self.default_offset).map(Box::new)
            }
            _ => None,
        };
        let mut needs = Needs::default();
        for v in &variables {
            needs.add(v);
        }
        Ok(Expr {
            needs,
            compiled,
            path,
            template: template.clone(),
            variables,
            id: memo::next_id(),
            bare,
            chain,
        })
    }
}

/// The 1-based character position of byte `at` in `s`.
fn char_position(s: &str, at: usize) -> usize {
    s.char_indices().take_while(|(i, _)| *i < at).count() + 1
}

/// A dotted variable a template uses, and where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    /// The template's place in the tree: `body.accountHolderKey`.
    pub path: String,
    /// The variable, dotted: `steps.client.encodedKey`, `loans.amount`, or just `loans` when the
    /// template uses the whole row (`loans['amount']`, `loans | length`).
    pub variable: String,
}

/// One compiled expression.
struct Expr<'e> {
    compiled: Expression<'e, 'static>,
    path: Arc<str>,
    template: Arc<str>,
    /// Dotted, sorted, without minijinja's globals.
    variables: Vec<String>,
    /// What of a context this expression alone reads.
    needs: Needs,
    /// Names the expression in a [`Memo`].
    id: u64,
    /// The expression is one variable and nothing else.
    bare: bool,
    /// The expression is one source cell through plan filters, for [`check`].
    chain: Option<Box<filters::Chain>>,
}

impl Expr<'_> {
    fn eval(&self, root: &Value, ctx: &Context<'_>) -> Result<Value, TemplateError> {
        self.compiled
            .eval(root.clone())
            .map_err(|e| self.error(&e, ctx))
    }

    fn eval_json(
        &self,
        root: &Value,
        ctx: &Context<'_>,
    ) -> Result<serde_json::Value, TemplateError> {
        let v = self.eval(root, ctx)?;
        value_to_json(&v).map_err(|e| self.not_json(e, ctx))
    }

    /// [`eval`](Self::eval) of a [`filters::Chain`] expression whose variable holds `cell`:
    /// the filters called on the cell's text, without the engine.
    fn eval_chain(
        &self,
        chain: &filters::Chain,
        cell: &str,
        ctx: &Context<'_>,
    ) -> Result<Value, TemplateError> {
        chain.apply(cell).map_err(|e| self.error(&e, ctx))
    }

    fn push_text(
        &self,
        out: &mut String,
        root: &Value,
        ctx: &Context<'_>,
    ) -> Result<(), TemplateError> {
        let v = self.eval(root, ctx)?;
        out.push_str(&value_to_text(&v).map_err(|e| self.not_json(e, ctx))?);
        Ok(())
    }

    fn not_json(&self, e: NotJson, ctx: &Context<'_>) -> TemplateError {
        match e {
            NotJson::Undefined => self.undefined(ctx, None),
            NotJson::Kind(kind) => TemplateError::NotJson {
                path: self.path.to_string(),
                template: self.template.to_string(),
                kind,
            },
        }
    }

    /// The variables of this expression the context lacks.
    fn undefined(&self, ctx: &Context<'_>, detail: Option<&str>) -> TemplateError {
        let mut names: Vec<String> = self
            .variables
            .iter()
            .filter(|v| !ctx.resolves(v))
            .cloned()
            .collect();
        if names.is_empty() {
            names.push(detail.map_or_else(|| "value".to_string(), str::to_string));
        }
        TemplateError::Undefined {
            path: self.path.to_string(),
            template: self.template.to_string(),
            names,
        }
    }

    fn error(&self, e: &minijinja::Error, ctx: &Context<'_>) -> TemplateError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(s) = source {
            if let Some(f) = s.downcast_ref::<FilterFailure>() {
                return TemplateError::Filter {
                    path: self.path.to_string(),
                    template: self.template.to_string(),
                    filter: f.filter.to_string(),
                    problem: f.problem.clone(),
                };
            }
            source = s.source();
        }
        if e.kind() == ErrorKind::UndefinedError {
            return self.undefined(ctx, e.detail());
        }
        let message = match e.detail() {
            Some(d) => format!("{}: {d}", e.kind()),
            None => e.kind().to_string(),
        };
        TemplateError::Eval {
            path: self.path.to_string(),
            template: self.template.to_string(),
            message,
        }
    }
}

/// A compiled part of a tree.
enum Node<'e> {
    /// Nothing to render: cloned as it is.
    Literal(serde_json::Value),
    /// A string that is one `{{ expr }}`: the expression's typed value.
    Typed(Expr<'e>),
    /// A string with text around or several expressions.
    Interpolated(Vec<Part<'e>>),
    Array(Vec<Node<'e>>),
    Object(Vec<(String, Node<'e>)>),
}

// Parts sit in a `Vec` of a compiled tree, built once; boxing `Expr` would add an
// indirection to every rendered expression.
#[allow(clippy::large_enum_variant)]
enum Part<'e> {
    Text(String),
    Expr(Expr<'e>),
}

struct Compiler<'e> {
    engine: &'e Engine,
    errors: Vec<TemplateError>,
    references: Vec<Reference>,
}

impl<'e> Compiler<'e> {
    fn node(&mut self, path: &str, v: &serde_json::Value) -> Node<'e> {
        let node = match v {
            serde_json::Value::String(s) => self.string(path, s),
            serde_json::Value::Array(items) => Node::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.node(&format!("{path}[{i}]"), item))
                    .collect(),
            ),
            serde_json::Value::Object(map) => Node::Object(
                map.iter()
                    .map(|(k, item)| (k.clone(), self.node(&child_path(path, k), item)))
                    .collect(),
            ),
            other => Node::Literal(other.clone()),
        };
        // A subtree without templates is one literal, cloned whole.
        match node {
            Node::Array(items) if items.iter().all(|n| matches!(n, Node::Literal(_))) => {
                Node::Literal(v.clone())
            }
            Node::Object(entries) if entries.iter().all(|(_, n)| matches!(n, Node::Literal(_))) => {
                Node::Literal(v.clone())
            }
            node => node,
        }
    }

    fn string(&mut self, path: &str, s: &str) -> Node<'e> {
        let pieces = match scan::split(s) {
            Ok(p) => p,
            Err(e) => {
                self.errors.push(TemplateError::Syntax {
                    path: path.to_string(),
                    template: s.to_string(),
                    message: format!(
                        "{} (at character {})",
                        e.message,
                        char_position(s, e.offset)
                    ),
                });
                return Node::Literal(serde_json::Value::Null);
            }
        };
        let exprs = pieces
            .iter()
            .filter(|p| matches!(p, Piece::Expr { .. }))
            .count();
        if exprs == 0 {
            return Node::Literal(serde_json::Value::String(s.to_string()));
        }
        let path: Arc<str> = Arc::from(path);
        let template: Arc<str> = Arc::from(s);
        let typed = exprs == 1
            && pieces
                .iter()
                .all(|p| !matches!(p, Piece::Text(t) if !t.trim().is_empty()));
        let mut parts = Vec::with_capacity(pieces.len());
        for piece in pieces {
            match piece {
                Piece::Text(t) => parts.push(Part::Text(t.to_string())),
                Piece::Expr { source, offset } => {
                    match self.engine.expression(
                        Mode::Value,
                        path.clone(),
                        &template,
                        source,
                        offset,
                    ) {
                        Ok(expr) => {
                            for v in &expr.variables {
                                self.references.push(Reference {
                                    path: path.to_string(),
                                    variable: v.clone(),
                                });
                            }
                            parts.push(Part::Expr(expr));
                        }
                        Err(e) => self.errors.push(e),
                    }
                }
            }
        }
        if typed {
            if let Some(Part::Expr(expr)) = parts.into_iter().find(|p| matches!(p, Part::Expr(_))) {
                return Node::Typed(expr);
            }
            return Node::Literal(serde_json::Value::Null);
        }
        Node::Interpolated(parts)
    }
}

/// `parent.key`, or `parent["odd key"]` when the key is not a plain name.
fn child_path(parent: &str, key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{}]", serde_json::Value::String(key.to_string())),
    }
}

/// A compiled tree: render it with [`render`](Self::render) as many times as needed.
pub struct Tree<'e> {
    root: Node<'e>,
    needs: Needs,
    references: Vec<Reference>,
    /// The distinct variables of `references`, sorted: what keys the tree in a [`Memo`].
    variables: Vec<String>,
    /// Names the whole tree in a [`Memo`].
    id: u64,
}

impl std::fmt::Debug for Tree<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree")
            .field("references", &self.references)
            .finish_non_exhaustive()
    }
}

impl Tree<'_> {
    /// Renders the tree with `ctx`: typed values, interpolated strings, null entries left out
    /// of objects. Stops at the first error.
    pub fn render(&self, ctx: &Context<'_>) -> Result<serde_json::Value, TemplateError> {
        if let Node::Literal(v) = &self.root {
            return Ok(v.clone());
        }
        let root = self.needs.build(ctx, Mode::Value);
        render(&self.root, &root, ctx)
    }

    /// [`render`](Self::render)'s answer, faster: an expression that is one source cell
    /// through plan filters is evaluated by calling the filters on the cell's text, without
    /// the engine (as [`check`](Self::check) evaluates it; `memo` remembers where the cell
    /// lies, with the same assumptions).
    pub fn render_memo(
        &self,
        ctx: &Context<'_>,
        memo: &mut Memo,
    ) -> Result<serde_json::Value, TemplateError> {
        if let Node::Literal(v) = &self.root {
            return Ok(v.clone());
        }
        let mut root = None;
        render_fast(&self.root, &self.needs, &mut root, ctx, memo)
    }

    /// What [`render`](Self::render) would answer, without the value: `Ok` or its first
    /// error. Each expression's outcome is taken from `memo` when an earlier context gave it
    /// the same cells (see [`Memo`] for what it assumes).
    pub fn check(&self, ctx: &Context<'_>, memo: &mut Memo) -> Result<(), TemplateError> {
        if let Node::Literal(_) = &self.root {
            return Ok(());
        }
        check(&self.root, ctx, memo)
    }

    /// [`render`](Self::render)'s value put in a class by `classify`, or its error; remembered
    /// in `memo` by the cells the tree reads (see [`Memo`] for what it assumes). `classify`
    /// must be the same function for every call with one memo.
    pub fn classify(
        &self,
        ctx: &Context<'_>,
        memo: &mut Memo,
        classify: impl FnOnce(&serde_json::Value) -> u8,
    ) -> Result<u8, TemplateError> {
        memo.code(self.id, &self.variables, false, ctx, || {
            self.render(ctx).map(|v| classify(&v))
        })
    }

    /// Every variable each template of the tree uses, in tree order.
    pub fn references(&self) -> &[Reference] {
        &self.references
    }

    /// The distinct variables the tree uses, sorted.
    pub fn variables(&self) -> BTreeSet<&str> {
        self.references
            .iter()
            .map(|r| r.variable.as_str())
            .collect()
    }

    /// Whether the tree holds no template at all (rendering it is a clone).
    pub fn is_static(&self) -> bool {
        matches!(self.root, Node::Literal(_))
    }
}

fn render(
    node: &Node<'_>,
    root: &Value,
    ctx: &Context<'_>,
) -> Result<serde_json::Value, TemplateError> {
    Ok(match node {
        Node::Literal(v) => v.clone(),
        Node::Typed(expr) => expr.eval_json(root, ctx)?,
        Node::Interpolated(parts) => {
            let mut out = String::new();
            for part in parts {
                match part {
                    Part::Text(t) => out.push_str(t),
                    Part::Expr(expr) => expr.push_text(&mut out, root, ctx)?,
                }
            }
            serde_json::Value::String(out)
        }
        Node::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|n| render(n, root, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Node::Object(entries) => {
            let mut map = serde_json::Map::new();
            for (key, n) in entries {
                let v = render(n, root, ctx)?;
                if v.is_null() && matches!(n, Node::Typed(_)) {
                    continue;
                }
                map.insert(key.clone(), v);
            }
            serde_json::Value::Object(map)
        }
    })
}

/// [`render`]'s walk, a chained expression evaluated without the engine, the engine's root
/// (`needs` of the whole tree) built once, when an expression first needs it.
fn render_fast(
    node: &Node<'_>,
    needs: &Needs,
    root: &mut Option<Value>,
    ctx: &Context<'_>,
    memo: &mut Memo,
) -> Result<serde_json::Value, TemplateError> {
    let value = |expr: &Expr<'_>,
                 root: &mut Option<Value>,
                 memo: &mut Memo|
     -> Result<Value, TemplateError> {
        let chained = chained(expr, ctx, memo);
        memo.value(expr.id, &expr.variables, ctx, || match chained {
            Some((chain, cell)) => expr.eval_chain(chain, cell, ctx),
            None => {
                let root = root.get_or_insert_with(|| needs.build(ctx, Mode::Value));
                expr.eval(root, ctx)
            }
        })
    };
    Ok(match node {
        Node::Literal(v) => v.clone(),
        Node::Typed(expr) => {
            let v = value(expr, root, memo)?;
            value_to_json(&v).map_err(|e| expr.not_json(e, ctx))?
        }
        Node::Interpolated(parts) => {
            let mut out = String::new();
            for part in parts {
                match part {
                    Part::Text(t) => out.push_str(t),
                    Part::Expr(expr) => {
                        let v = value(expr, root, memo)?;
                        out.push_str(&value_to_text(&v).map_err(|e| expr.not_json(e, ctx))?);
                    }
                }
            }
            serde_json::Value::String(out)
        }
        Node::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|n| render_fast(n, needs, root, ctx, memo))
                .collect::<Result<_, _>>()?,
        ),
        Node::Object(entries) => {
            let mut map = serde_json::Map::new();
            for (key, n) in entries {
                let v = render_fast(n, needs, root, ctx, memo)?;
                if v.is_null() && matches!(n, Node::Typed(_)) {
                    continue;
                }
                map.insert(key.clone(), v);
            }
            serde_json::Value::Object(map)
        }
    })
}

/// One expression's outcome, through `memo`: as a typed value (`text`: as text in a string).
fn check_expr(
    expr: &Expr,
    ctx: &Context<'_>,
    memo: &mut Memo,
    text: bool,
) -> Result<(), TemplateError> {
    let chained = chained(expr, ctx, memo);
    memo.outcome(expr, ctx, || {
        if let Some((chain, cell)) = chained {
            let v = expr.eval_chain(chain, cell, ctx)?;
            let shown = if text {
                value_to_text(&v).map(|_| ())
            } else {
                value_to_json(&v).map(|_| ())
            };
            return shown.map(|()| true).map_err(|e| expr.not_json(e, ctx));
        }
        let root = expr.needs.build(ctx, Mode::Value);
        if text {
            expr.push_text(&mut String::new(), &root, ctx).map(|_| true)
        } else {
            expr.eval_json(&root, ctx).map(|_| true)
        }
    })
    .map(|_| ())
}

/// [`render`]'s walk, for errors only: the same expressions in the same order, each given
/// only what it reads.
fn check(node: &Node<'_>, ctx: &Context<'_>, memo: &mut Memo) -> Result<(), TemplateError> {
    match node {
        Node::Literal(_) => Ok(()),
        Node::Typed(expr) => check_expr(expr, ctx, memo, false),
        Node::Interpolated(parts) => {
            for part in parts {
                if let Part::Expr(expr) = part {
                    check_expr(expr, ctx, memo, true)?;
                }
            }
            Ok(())
        }
        Node::Array(items) => items.iter().try_for_each(|n| check(n, ctx, memo)),
        Node::Object(entries) => entries.iter().try_for_each(|(_, n)| check(n, ctx, memo)),
    }
}

/// The chain of `expr` and the cell its variable holds in `ctx`, when it has one and the
/// variable is a cell there (otherwise the engine evaluates it).
fn chained<'x, 'a>(
    expr: &'x Expr<'_>,
    ctx: &Context<'a>,
    memo: &mut Memo,
) -> Option<(&'x filters::Chain, &'a str)> {
    let chain = expr.chain.as_deref()?;
    let cell = memo.cell(expr.id, &expr.variables[0], ctx)?;
    Some((chain, cell))
}

/// A compiled `when:` condition.
pub struct Condition<'e> {
    expr: Expr<'e>,
    needs: Needs,
}

impl std::fmt::Debug for Condition<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condition")
            .field("condition", &self.expr.template)
            .finish_non_exhaustive()
    }
}

impl Condition<'_> {
    /// Evaluates the condition; it must give `true` or `false` (a string such as `"N"` is not
    /// taken for true: compare it, `loans.active == 'Y'`).
    pub fn eval(&self, ctx: &Context<'_>) -> Result<bool, TemplateError> {
        let root = self.needs.build(ctx, Mode::Condition);
        let v = self.expr.eval(&root, ctx)?;
        match v.kind() {
            minijinja::value::ValueKind::Bool => Ok(v.is_true()),
            minijinja::value::ValueKind::Undefined => Err(self.expr.undefined(ctx, None)),
            kind => Err(TemplateError::NotBool {
                path: self.expr.path.to_string(),
                template: self.expr.template.to_string(),
                kind: kind.to_string(),
            }),
        }
    }

    /// [`eval`](Self::eval), the outcome taken from `memo` when an earlier context gave the
    /// condition the same cells (see [`Memo`]).
    pub fn eval_memo(&self, ctx: &Context<'_>, memo: &mut Memo) -> Result<bool, TemplateError> {
        memo.outcome(&self.expr, ctx, || self.eval(ctx))
    }

    /// The dotted variables the condition uses, sorted.
    pub fn variables(&self) -> &[String] {
        &self.expr.variables
    }

    /// The condition as written.
    pub fn source(&self) -> &str {
        &self.expr.template
    }
}
