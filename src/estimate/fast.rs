//! The counting pass of `plan estimate`: every source read once by the field scan
//! ([`crate::source::scan`]), in parallel chunks, holding counts and keys, never rows, and no
//! sort.
//!
//! Sources are read parents first. A source with children keeps its keys (as 128-bit hashes)
//! with the unit each row belongs to and which `for_each` groups are open for it, so that a
//! child row finds its unit and whether its steps run. Every `when` is evaluated by the template
//! engine itself, on the row's own cells, once per distinct combination of the cells it reads
//! (a `kind` column with two values costs two evaluations for 20 million rows).
//!
//! Rows are left out as the grouping leaves them out: orphans, a second row with the same key
//! (in a source with children), a wrong number of cells, an empty key or parent, bytes that are
//! not UTF-8. A condition may read its own row or its parent's (`loans.custom_schedule == 'Y'`
//! on a transactions step): the latter is evaluated on the parent's rows and its outcome handed
//! down in the parent's slot. A plan this pass cannot follow (a condition reading two sources,
//! a grandparent or `unit.key`, a `for_each` not nested under its parent's) goes through the
//! grouping instead.
//!
//! Sample calls: the first matching row of each step is remembered by its byte offset; after
//! the pass its chain of rows (unit, parents, the row, the rows `installments.from` reads) is
//! copied to small files and rendered through the same grouping and templates as a run would.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::plan::check::{Plan, Step};
use crate::plan::template::{Condition, Context, Engine, Zone};
use crate::source::scan::{ScanSpec, Scanned, find_records, first_record, record_at, scan};
use crate::source::{Header, RowReader, SourceDef, Sources};

/// Evaluations cached per condition and thread; past this, a condition is evaluated per row.
const CACHE_LIMIT: usize = 4096;

/// What a `when` gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    True,
    False,
    Error,
}

/// An [`Outcome`] in two bits.
fn bits(o: Outcome) -> u64 {
    match o {
        Outcome::True => 0,
        Outcome::False => 1,
        Outcome::Error => 2,
    }
}

/// A `when` of a group or step, on the cells of its own source or its parent's.
struct Cond {
    condition: Condition<'static>,
    /// The source whose rows it reads: the step's (or group's) own, or its parent's (then it is
    /// evaluated on the parent's rows and its outcome handed down in the parent's slot).
    at: usize,
    source: String,
    /// The columns it reads, and where they are among the scanned cells.
    columns: Vec<(String, usize)>,
    /// Group conditions see no step outputs nor lookups, and an error counts as true.
    group: bool,
    /// `source.column == 'text'` (or `!=`): compared here, without the engine. Cells are
    /// strings to the engine too, so this is the same comparison.
    native: Option<Native>,
}

struct Native {
    at: usize,
    equal: bool,
    literal: Vec<u8>,
}

/// `<source>.<column> == 'text'`, `!=`, either way round; `None` for anything else.
fn native_comparison(text: &str, source: &str) -> Option<(String, bool, String)> {
    let (op, equal) = if text.contains("==") {
        ("==", true)
    } else {
        ("!=", false)
    };
    let mut parts = text.splitn(2, op);
    let (a, b) = (parts.next()?.trim(), parts.next()?.trim());
    if b.contains("==") || b.contains("!=") || a.contains("!=") {
        return None;
    }
    let literal = |t: &str| -> Option<String> {
        let q = t.chars().next()?;
        if !(q == '\'' || q == '"') || t.len() < 2 || !t.ends_with(q) {
            return None;
        }
        let inner = &t[1..t.len() - 1];
        (!inner.contains(['\'', '"', '\\'])).then(|| inner.to_owned())
    };
    let column = |t: &str| -> Option<String> {
        let c = t.strip_prefix(source)?.strip_prefix('.')?;
        let ident = |s: &str| {
            s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        ident(c).then(|| c.to_owned())
    };
    match (column(a), literal(b), column(b), literal(a)) {
        (Some(c), Some(l), _, _) | (_, _, Some(c), Some(l)) => Some((c, equal, l)),
        _ => None,
    }
}

struct Group {
    source: usize,
    /// The enclosing group (over the parent source), `None` at the top.
    parent: Option<usize>,
    /// Bit in the source's entries.
    bit: u32,
    when: Option<usize>,
}

struct StepInfo {
    group: Option<usize>,
    source: usize,
    when: Option<usize>,
    calls_each: u32,
    work_ms: f64,
}

/// How the pass reads the plan; `None` from [`Analysis::new`] when it cannot.
pub(super) struct Analysis<'p> {
    plan: &'p Plan,
    defs: Vec<SourceDef>,
    parent: Vec<Option<usize>>,
    order: Vec<usize>,
    has_children: Vec<bool>,
    groups: Vec<Group>,
    steps: Vec<StepInfo>,
    conds: Vec<Cond>,
    /// Per source: the header, and the scanned columns (key, parent, then condition columns).
    headers: Vec<Header>,
    columns: Vec<Vec<usize>>,
    /// Sources whose rows `installments.from` reads, with the steps that read them.
    installments: Vec<(usize, usize)>,
    /// Per source: conditions of its children's steps and groups that read only its own row,
    /// evaluated on it (2 bits each in [`Slot::inherited`]).
    inherited: Vec<Vec<usize>>,
}

/// What the pass counted.
pub(super) struct Counted {
    /// Data records per source, in definition order.
    pub rows: Vec<u64>,
    pub units: u64,
    pub data_problems: u64,
    /// Per action step: instances, skipped, unevaluated.
    pub steps: Vec<[u64; 3]>,
    /// Per unit, in file order: its key, calls and work (ms).
    pub unit_keys: Keys,
    pub unit_calls: Vec<u32>,
    pub unit_work: Vec<f64>,
    /// Units in run order (indexes into the three above).
    pub run_order: Vec<u32>,
    /// Mini extract holding the rows of each step's first instance (for the sample calls).
    pub sample_dir: Option<tempfile::TempDir>,
    pub sample_sources: Vec<SourceDef>,
}

impl Counted {
    pub fn unit_key(&self, unit: u32) -> &str {
        std::str::from_utf8(self.unit_keys.get(unit)).unwrap_or("?")
    }
}

/// Keys one after another in one buffer.
#[derive(Default)]
pub(super) struct Keys {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Keys {
    fn push(&mut self, key: &[u8]) {
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len());
    }

    fn get(&self, i: u32) -> &[u8] {
        let i = i as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}

impl<'p> Analysis<'p> {
    /// Reads the plan; `None` when a condition or `for_each` is beyond this pass.
    pub fn new(plan: &'p Plan, sources: &Sources, step_work: &[(u32, f64)]) -> Option<Self> {
        let defs = sources.defs().to_vec();
        let index = |name: &str| defs.iter().position(|d| d.name == name);
        let parent: Vec<Option<usize>> = defs
            .iter()
            .map(|d| d.parent.as_ref().and_then(|p| index(&p.source)))
            .collect();
        let order: Vec<usize> = sources
            .tree_order()
            .filter_map(|d| index(&d.name))
            .collect();
        let mut has_children = vec![false; defs.len()];
        for p in parent.iter().flatten() {
            has_children[*p] = true;
        }
        let mut headers = Vec::new();
        for d in &defs {
            headers.push(RowReader::open(d).ok()?.header().as_ref().clone());
        }
        let zone = Zone::parse(&plan.settings.timezone).unwrap_or(Zone::UTC);
        let engine: &'static Engine = Engine::with_zone(zone).leak();
        let root = index(&plan.unit)?;
        let mut analysis = Analysis {
            plan,
            defs,
            parent,
            order,
            has_children,
            groups: Vec::new(),
            steps: Vec::new(),
            conds: Vec::new(),
            headers,
            columns: Vec::new(),
            installments: Vec::new(),
            inherited: Vec::new(),
        };
        analysis.inherited = vec![Vec::new(); analysis.defs.len()];
        analysis.columns = analysis
            .defs
            .iter()
            .zip(&analysis.headers)
            .map(|(d, h)| {
                let mut cols = vec![h.position(&d.key)?];
                if let Some(p) = &d.parent {
                    cols.push(h.position(&p.column)?);
                }
                Some(cols)
            })
            .collect::<Option<Vec<_>>>()?;
        analysis.walk(engine, &plan.steps, root, None, step_work)?;
        if analysis.steps.len() != step_work.len() {
            return None;
        }
        Some(analysis)
    }

    fn walk(
        &mut self,
        engine: &'static Engine,
        steps: &[Step],
        source: usize,
        group: Option<usize>,
        step_work: &[(u32, f64)],
    ) -> Option<()> {
        for step in steps {
            match step {
                Step::ForEach(g) => {
                    let s = self.defs.iter().position(|d| d.name == g.source)?;
                    if self.parent[s] != Some(source) {
                        return None;
                    }
                    let bit = self.groups.iter().filter(|x| x.source == s).count() as u32;
                    if bit >= 32 {
                        return None;
                    }
                    let when = match &g.when {
                        Some(w) => {
                            Some(self.cond(engine, &format!("{}.when", g.path), w, s, true)?)
                        }
                        None => None,
                    };
                    self.groups.push(Group {
                        source: s,
                        parent: group,
                        bit,
                        when,
                    });
                    let id = self.groups.len() - 1;
                    self.walk(engine, &g.steps, s, Some(id), step_work)?;
                }
                Step::Action(a) => {
                    let when = match &a.when {
                        Some(w) => Some(self.cond(
                            engine,
                            &format!("{}.when", a.path),
                            w,
                            source,
                            false,
                        )?),
                        None => None,
                    };
                    let &(calls_each, work_ms) = step_work.get(self.steps.len())?;
                    // A catch-up's update makes no call in a migration.
                    let (calls_each, work_ms) = if a.on_change.is_empty() {
                        (calls_each, work_ms)
                    } else {
                        (0, 0.0)
                    };
                    if let Some(i) = &a.installments {
                        let from = self.defs.iter().position(|d| d.name == i.from)?;
                        self.installments.push((from, self.steps.len()));
                    }
                    self.steps.push(StepInfo {
                        group,
                        source,
                        when,
                        calls_each,
                        work_ms,
                    });
                }
            }
        }
        Some(())
    }

    fn cond(
        &mut self,
        engine: &'static Engine,
        path: &str,
        text: &str,
        source: usize,
        group: bool,
    ) -> Option<usize> {
        let condition = engine.condition(path, text).ok()?;
        // Where it is evaluated: the one source whose columns it reads, the step's own or its
        // parent's; anything else (two sources, `unit.key`) is beyond this pass.
        let mut at = None;
        for v in condition.variables() {
            if v == "plan.name" || v == "lookups" || v.starts_with("lookups.") {
                continue;
            }
            if v.starts_with("steps.") && !group {
                continue;
            }
            let (prefix, _) = v.split_once('.')?;
            let s = self.defs.iter().position(|d| d.name == prefix)?;
            if at.is_some_and(|a| a != s) || (s != source && Some(s) != self.parent[source]) {
                return None;
            }
            at = Some(s);
        }
        let at = at.unwrap_or(source);
        let name = self.defs[at].name.clone();
        let mut columns = Vec::new();
        for v in condition.variables() {
            let Some(column) = v.strip_prefix(&format!("{name}.")) else {
                continue;
            };
            let position = self.headers[at].position(column)?;
            let cols = &mut self.columns[at];
            let index = match cols.iter().position(|&c| c == position) {
                Some(i) => i,
                None => {
                    cols.push(position);
                    cols.len() - 1
                }
            };
            columns.push((column.to_owned(), index));
        }
        let native = native_comparison(text, &name).and_then(|(column, equal, literal)| {
            let at = columns.iter().find(|(c, _)| *c == column)?.1;
            Some(Native {
                at,
                equal,
                literal: literal.into_bytes(),
            })
        });
        if at != source {
            if self.inherited[at].len() >= 16 {
                return None;
            }
            self.inherited[at].push(self.conds.len());
        }
        self.conds.push(Cond {
            condition,
            at,
            source: name,
            columns,
            group,
            native,
        });
        Some(self.conds.len() - 1)
    }
}

/// Evaluates conditions with a cache per distinct cell values.
struct Evaluator<'a> {
    conds: &'a [Cond],
    plan_name: &'a str,
    outputs: &'a HashMap<String, Value>,
    lookups: Option<&'a Value>,
    caches: Vec<HashMap<Box<[u8]>, Outcome, xxhash_rust::xxh3::Xxh3DefaultBuilder>>,
    buf: Vec<u8>,
}

impl<'a> Evaluator<'a> {
    fn new(
        conds: &'a [Cond],
        plan_name: &'a str,
        outputs: &'a HashMap<String, Value>,
        lookups: Option<&'a Value>,
    ) -> Self {
        Evaluator {
            conds,
            plan_name,
            outputs,
            lookups,
            caches: vec![HashMap::default(); conds.len()],
            buf: Vec::new(),
        }
    }

    #[inline]
    fn eval(&mut self, cond: usize, cells: &[&[u8]]) -> Outcome {
        if let Some(n) = &self.conds[cond].native {
            return if same_bytes(cells[n.at], &n.literal) == n.equal {
                Outcome::True
            } else {
                Outcome::False
            };
        }
        self.eval_template(cond, cells)
    }

    /// [`Evaluator::eval`] by the template engine, once per distinct value.
    #[inline(never)]
    fn eval_template(&mut self, cond: usize, cells: &[&[u8]]) -> Outcome {
        let conds = self.conds;
        let c = &conds[cond];
        let key: &[u8] = if let [(_, at)] = c.columns.as_slice() {
            cells[*at]
        } else {
            self.buf.clear();
            for (_, at) in &c.columns {
                self.buf
                    .extend_from_slice(&(cells[*at].len() as u32).to_le_bytes());
                self.buf.extend_from_slice(cells[*at]);
            }
            &self.buf
        };
        if let Some(o) = self.caches[cond].get(key) {
            return *o;
        }
        let key = key.to_vec();
        let row: HashMap<String, String> = c
            .columns
            .iter()
            .map(|(name, at)| {
                (
                    name.clone(),
                    String::from_utf8_lossy(cells[*at]).into_owned(),
                )
            })
            .collect();
        let empty = HashMap::new();
        let mut ctx = Context::new()
            .plan_name(self.plan_name)
            .steps(if c.group { &empty } else { self.outputs }.iter())
            .source_row(&c.source, &row);
        if let (false, Some(l)) = (c.group, self.lookups) {
            ctx = ctx.global("lookups", l);
        }
        let outcome = match c.condition.eval(&ctx) {
            Ok(true) => Outcome::True,
            Ok(false) => Outcome::False,
            Err(_) if c.group => Outcome::True,
            Err(_) => Outcome::Error,
        };
        if self.caches[cond].len() < CACHE_LIMIT {
            self.caches[cond].insert(key.into_boxed_slice(), outcome);
        }
        outcome
    }
}

/// `a == b`, inline for the short cells keys and codes are (a call to `memcmp` costs more than
/// the comparison).
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8"));
    match n {
        0 => true,
        1..8 => a.iter().zip(b).all(|(x, y)| x == y),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// Keys of one source with children, in one open-addressing table: a lookup touches one
/// cache line (the key and what the pass needs live in the same slot), which the scan
/// prefetches [`AHEAD`] rows before it needs it.
struct KeyTable {
    slots: Vec<Slot>,
    /// Byte offset of each kept row, by [`Slot::row`].
    offsets: Vec<u64>,
}

#[derive(Default)]
struct Slot {
    /// The key's 128-bit hash; `[0, 0]` for an empty slot.
    key: [u64; 2],
    unit: u32,
    /// Bit `b`: the `b`-th group over this source is open for the row.
    open: u32,
    row: u32,
    /// 2 bits per condition of [`Analysis::inherited`] of this source: its outcome on this row.
    inherited: u32,
    /// Calls (top [`CALL_BITS`] bits) and work in µs (the rest) of its children's steps, added
    /// by the scan threads in one atomic add, then moved to the unit.
    load: AtomicU64,
}

/// Bits of [`Slot::load`] counting calls (a million calls under one row); the other 44 count
/// µs of work (200 days).
const CALL_BITS: u32 = 20;
const WORK_MASK: u64 = (1 << (64 - CALL_BITS)) - 1;

type Key = [u64; 2];

fn key_hash(key: &[u8]) -> Key {
    let h = xxhash_rust::xxh3::xxh3_128(key);
    match [h as u64, (h >> 64) as u64] {
        [0, 0] => [0, 1],
        k => k,
    }
}

impl KeyTable {
    /// A table filled to 60% at most: a new key probes about four slots (adjacent ones, mostly
    /// in the same or the next cache line), and a table for 1.7 M loans takes 110 MB, not the
    /// 170 MB a power-of-two size would.
    fn with_capacity(rows: usize) -> Self {
        let n = (rows * 5 / 3).max(16);
        KeyTable {
            slots: std::iter::repeat_with(Slot::default).take(n).collect(),
            offsets: Vec::with_capacity(rows),
        }
    }

    /// The key's first slot: the hash scaled to the table's size.
    fn home(&self, key: &Key) -> usize {
        ((u128::from(key[0]) * self.slots.len() as u128) >> 64) as usize
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() { 0 } else { i + 1 }
    }

    fn prefetch(&self, key: &Key) {
        let slot = &self.slots[self.home(key)];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: prefetching is a hint; the pointer is to a live slot.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                (slot as *const Slot).cast::<i8>(),
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = slot;
    }

    fn get(&self, key: &Key) -> Option<&Slot> {
        let mut i = self.home(key);
        loop {
            let slot = &self.slots[i];
            if slot.key == *key {
                return Some(slot);
            }
            if slot.key == [0, 0] {
                return None;
            }
            i = self.next(i);
        }
    }

    /// Adds a row; `false` if its key is already there (the first row keeps it).
    fn insert(&mut self, key: Key, unit: u32, open: u32, inherited: u32, offset: u64) -> bool {
        let mut i = self.home(&key);
        loop {
            let slot = &mut self.slots[i];
            if slot.key == key {
                return false;
            }
            if slot.key == [0, 0] {
                *slot = Slot {
                    key,
                    unit,
                    open,
                    inherited,
                    row: self.offsets.len() as u32,
                    ..Slot::default()
                };
                self.offsets.push(offset);
                return true;
            }
            i = self.next(i);
        }
    }

    fn offset(&self, slot: &Slot) -> u64 {
        self.offsets[slot.row as usize]
    }

    fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter(|s| s.key != [0, 0])
    }
}

/// The keys of one source, in one [`KeyTable`] per part of the hash space, so that the tables
/// of a source with children are filled on every core at once (each part in file order: the
/// first row of a key still wins).
struct Keyed {
    parts: Vec<KeyTable>,
}

impl Keyed {
    /// Which part holds `key` (by the half of the hash the slot index does not use).
    fn part_of(key: &Key, parts: usize) -> usize {
        ((u128::from(key[1]) * parts as u128) >> 64) as usize
    }

    fn part(&self, key: &Key) -> &KeyTable {
        &self.parts[Self::part_of(key, self.parts.len())]
    }

    fn prefetch(&self, key: &Key) {
        self.part(key).prefetch(key);
    }

    fn get(&self, key: &Key) -> Option<&Slot> {
        self.part(key).get(key)
    }

    /// The byte offset of the row `key` was found in (`slot` is its slot).
    fn offset(&self, key: &Key, slot: &Slot) -> u64 {
        self.part(key).offset(slot)
    }

    fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.parts.iter().flat_map(KeyTable::slots)
    }
}

/// What filling one part of a [`Keyed`] found.
struct Merged {
    table: KeyTable,
    duplicates: u64,
    steps: Vec<[u64; 3]>,
    first: Vec<Option<(u64, Key)>>,
    /// Calls (top [`CALL_BITS`]) and µs of work per unit, of the rows of this part.
    loads: Vec<u64>,
}

/// Rows wait this many rows for their parent's slot to reach the cache.
const AHEAD: usize = 16;

/// A row whose parent is yet to be looked up.
struct Pending {
    parent: Key,
    hash: Key,
    offset: u64,
    /// Bit `b`: the `when` of the `b`-th group over this source holds.
    groups: u32,
    /// 2 bits per step of this source: its `when` (an [`Outcome`]), groups not yet applied.
    outcomes: u64,
    /// The conditions evaluated on this row for its children.
    inherited: u32,
    /// Root rows: the key's place in the chunk's `root_keys`.
    key: u32,
    /// How many rows it stands for: rows of a leaf source in a row with the same parent and the
    /// same outcomes are counted together (a loan's transactions are one lookup, not fifty).
    n: u64,
}

/// Consecutive rows of a leaf source with the same parent, by what their conditions gave.
#[derive(Default)]
struct Run {
    parent: Vec<u8>,
    hash: Key,
    /// Distinct (groups, outcomes) in order of their first row: that row's offset and key.
    kinds: Vec<(u32, u64, u64, u64, Key)>,
}

/// Per chunk of one source.
struct ChunkState<'a> {
    eval: Evaluator<'a>,
    problems: u64,
    ring: std::collections::VecDeque<Pending>,
    /// Rows of a source with children, for the in-order merge.
    rows: Blocks<Kept>,
    root_keys: Keys,
    /// Leaf sources: counts straight away.
    steps: Vec<[u64; 3]>,
    /// First instance per step: offset and key of its row.
    first: Vec<Option<(u64, Key)>>,
    /// Offsets of rows `installments.from` wants.
    captured: Vec<u64>,
    /// Leaf sources: the rows since the parent last changed (empty `parent`: none).
    run: Run,
}

/// A list grown a block at a time: no copy and no second allocation of what is already
/// there when it grows (the rows of 1.7 M loans are 80 MB).
struct Blocks<T> {
    blocks: Vec<Vec<T>>,
}

impl<T> Blocks<T> {
    const ROWS: usize = 1 << 16;

    fn new() -> Self {
        Blocks { blocks: Vec::new() }
    }

    fn push(&mut self, value: T) {
        match self.blocks.last_mut() {
            Some(block) if block.len() < Self::ROWS => block.push(value),
            _ => {
                let mut block = Vec::with_capacity(Self::ROWS);
                block.push(value);
                self.blocks.push(block);
            }
        }
    }

    fn len(&self) -> usize {
        self.blocks.iter().map(Vec::len).sum()
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.blocks.iter().flatten()
    }
}

struct Kept {
    hash: Key,
    unit: u32,
    open: u32,
    /// 2 bits per step of this source (an [`Outcome`]), `3` when its group is closed.
    outcomes: u64,
    inherited: u32,
    offset: u64,
    key: u32,
}

/// One source's reading.
struct SourcePass<'x> {
    a: &'x Analysis<'x>,
    source: usize,
    steps: Vec<usize>,
    groups: Vec<usize>,
    parent: Option<&'x Keyed>,
    /// Its rows are kept (it has children, or is the unit).
    keeps: bool,
    /// Its rows' parents are looked up (it keeps rows or makes calls).
    lookup: bool,
    /// Parent keys whose rows `installments.from` wants.
    wanted: HashSet<Key>,
    /// Per step of this source: what one instance adds to its parent's [`Slot::load`].
    loads: Vec<u64>,
}

impl SourcePass<'_> {
    fn visit(&self, st: &mut ChunkState<'_>, scanned: Scanned<'_>) {
        let (offset, cells) = match scanned {
            Scanned::Row { offset, cells } => (offset, cells),
            Scanned::Problem { .. } => {
                st.problems += 1;
                return;
            }
        };
        let key = cells[0];
        if key.is_empty() {
            st.problems += 1;
            return;
        }
        let parent = match self.parent {
            Some(table) => {
                let p = cells[1];
                if p.is_empty() {
                    st.problems += 1;
                    return;
                }
                let same = !self.keeps && same_bytes(&st.run.parent, p);
                if !same && !self.keeps {
                    self.end_run(st);
                    st.run.parent.extend_from_slice(p);
                    st.run.hash = key_hash(p);
                }
                let h = if same || !self.keeps {
                    st.run.hash
                } else {
                    key_hash(p)
                };
                if !self.wanted.is_empty() && self.wanted.contains(&h) {
                    st.captured.push(offset);
                }
                if !self.lookup {
                    return;
                }
                if !same {
                    table.prefetch(&h);
                }
                Some(h)
            }
            None => None,
        };
        // Conditions on this row's own cells; those on the parent's row come with its slot.
        let own = |c: &usize| self.a.conds[*c].at == self.source;
        let mut groups = 0u32;
        for &g in &self.groups {
            let group = &self.a.groups[g];
            if group
                .when
                .filter(own)
                .is_none_or(|c| st.eval.eval(c, cells) == Outcome::True)
            {
                groups |= 1 << group.bit;
            }
        }
        let mut outcomes = 0u64;
        for (k, &i) in self.steps.iter().enumerate() {
            let o = self.a.steps[i]
                .when
                .filter(own)
                .map_or(Outcome::True, |c| st.eval.eval(c, cells));
            outcomes |= bits(o) << (2 * k);
        }
        let mut inherited = 0u32;
        for (k, &c) in self.a.inherited[self.source].iter().enumerate() {
            inherited |= (bits(st.eval.eval(c, cells)) as u32) << (2 * k);
        }
        if parent.is_some() && !self.keeps {
            // Counted with the rows of the same parent and outcomes; looked up once.
            match st
                .run
                .kinds
                .iter_mut()
                .find(|k| k.0 == groups && k.1 == outcomes)
            {
                Some(kind) => kind.2 += 1,
                None => st
                    .run
                    .kinds
                    .push((groups, outcomes, 1, offset, key_hash(key))),
            }
            return;
        }
        let key_index = if self.keeps && parent.is_none() {
            st.root_keys.push(key);
            (st.root_keys.ends.len() - 1) as u32
        } else {
            0
        };
        let pending = Pending {
            parent: parent.unwrap_or_default(),
            hash: key_hash(key),
            offset,
            groups,
            outcomes,
            inherited,
            key: key_index,
            n: 1,
        };
        match parent {
            None => self.apply(st, pending, None),
            Some(_) => self.wait(st, pending),
        }
    }

    /// Queues a child row until its parent's slot is in the cache.
    fn wait(&self, st: &mut ChunkState<'_>, pending: Pending) {
        st.ring.push_back(pending);
        if st.ring.len() > AHEAD
            && let Some(p) = st.ring.pop_front()
        {
            self.resolve(st, p);
        }
    }

    /// Queues the rows of the run of a leaf source's parent, one entry per kind.
    fn end_run(&self, st: &mut ChunkState<'_>) {
        let parent = st.run.hash;
        let mut kinds = std::mem::take(&mut st.run.kinds);
        for (groups, outcomes, n, offset, hash) in kinds.drain(..) {
            let pending = Pending {
                parent,
                hash,
                offset,
                groups,
                outcomes,
                inherited: 0,
                key: 0,
                n,
            };
            self.wait(st, pending);
        }
        st.run.kinds = kinds;
        st.run.parent.clear();
    }

    /// Rows still waiting at the end of a chunk.
    fn flush(&self, st: &mut ChunkState<'_>) {
        self.end_run(st);
        while let Some(p) = st.ring.pop_front() {
            self.resolve(st, p);
        }
    }

    fn resolve(&self, st: &mut ChunkState<'_>, p: Pending) {
        let table = self.parent.expect("only child rows wait");
        match table.get(&p.parent) {
            Some(slot) => self.apply(st, p, Some(slot)),
            None => st.problems += p.n,
        }
    }

    fn apply(&self, st: &mut ChunkState<'_>, p: Pending, parent: Option<&Slot>) {
        let a = self.a;
        let (unit, parent_open) = parent.map_or((u32::MAX, 0), |s| (s.unit, s.open));
        let parent_source = a.parent[self.source];
        let is_open = |g: Option<usize>, own: u32| -> bool {
            match g {
                None => true,
                Some(g) if a.groups[g].source == self.source => own & (1 << a.groups[g].bit) != 0,
                Some(g) => {
                    Some(a.groups[g].source) == parent_source
                        && parent_open & (1 << a.groups[g].bit) != 0
                }
            }
        };
        // The outcome of a condition evaluated on the parent's row.
        let from_parent = |c: usize| -> Option<u64> {
            if a.conds[c].at == self.source {
                return None;
            }
            let k = a.inherited[a.conds[c].at].iter().position(|&x| x == c)?;
            Some(u64::from(parent.map_or(0, |s| s.inherited) >> (2 * k)) & 3)
        };
        let mut open = 0u32;
        for &g in &self.groups {
            let group = &a.groups[g];
            if is_open(group.parent, 0)
                && p.groups & (1 << group.bit) != 0
                && group.when.and_then(from_parent).is_none_or(|o| o == 0)
            {
                open |= 1 << group.bit;
            }
        }
        let mut outcomes = 0u64;
        for (k, &i) in self.steps.iter().enumerate() {
            let o = if is_open(a.steps[i].group, open) {
                a.steps[i]
                    .when
                    .and_then(from_parent)
                    .unwrap_or((p.outcomes >> (2 * k)) & 3)
            } else {
                3
            };
            outcomes |= o << (2 * k);
        }
        if self.keeps {
            st.rows.push(Kept {
                hash: p.hash,
                unit,
                open,
                outcomes,
                inherited: p.inherited,
                offset: p.offset,
                key: p.key,
            });
            return;
        }
        for (k, &i) in self.steps.iter().enumerate() {
            match (outcomes >> (2 * k)) & 3 {
                0 => {
                    st.steps[i][0] += p.n;
                    if let Some(slot) = parent {
                        slot.load.fetch_add(self.loads[k] * p.n, Ordering::Relaxed);
                    }
                    if st.first[i].is_none() {
                        st.first[i] = Some((p.offset, p.hash));
                    }
                }
                1 => st.steps[i][1] += p.n,
                2 => st.steps[i][2] += p.n,
                _ => {}
            }
        }
    }
}

/// Runs the pass.
pub(super) fn count(
    a: &Analysis<'_>,
    outputs: &HashMap<String, Value>,
    lookups: Option<&Value>,
    show_progress: bool,
) -> anyhow::Result<Counted> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let n_sources = a.defs.len();
    let total_bytes: u64 = a
        .defs
        .iter()
        .filter_map(|d| std::fs::metadata(&d.file).ok())
        .map(|m| m.len())
        .sum();
    let progress = AtomicU64::new(0);
    let bar = show_progress.then(|| {
        let bar = indicatif::ProgressBar::new(total_bytes);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "reading the extract {bar:30} {bytes}/{total_bytes} ({eta})",
            )
            .expect("progress template"),
        );
        bar
    });
    let mut tables: Vec<Option<Keyed>> = (0..n_sources).map(|_| None).collect();
    let mut rows = vec![0u64; n_sources];
    let mut problems = 0u64;
    let mut steps = vec![[0u64; 3]; a.steps.len()];
    let mut first: Vec<Option<(usize, u64, Key)>> = vec![None; a.steps.len()];
    let mut unit_keys = Keys::default();
    let mut unit_calls: Vec<u32> = Vec::new();
    let mut unit_work: Vec<f64> = Vec::new();
    let mut captured: Vec<(usize, u64)> = Vec::new();
    let root = a.order[0];

    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        if let Some(bar) = &bar {
            let (progress, done) = (&progress, &done);
            scope.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    bar.set_position(progress.load(Ordering::Relaxed));
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                bar.finish_and_clear();
            });
        }
        let result = (|| -> anyhow::Result<()> {
            for &s in &a.order {
                let def = &a.defs[s];
                let keeps = a.has_children[s] || s == root;
                let my_steps: Vec<usize> = (0..a.steps.len())
                    .filter(|&i| a.steps[i].source == s)
                    .collect();
                let pass = SourcePass {
                    a,
                    source: s,
                    groups: (0..a.groups.len())
                        .filter(|&g| a.groups[g].source == s)
                        .collect(),
                    parent: a.parent[s].and_then(|p| tables[p].as_ref()),
                    keeps,
                    lookup: keeps || !my_steps.is_empty(),
                    wanted: a
                        .installments
                        .iter()
                        .filter(|(from, _)| *from == s)
                        .filter_map(|(_, step)| first[*step].map(|(_, _, h)| h))
                        .collect(),
                    loads: my_steps
                        .iter()
                        .map(|&i| {
                            let step = &a.steps[i];
                            (u64::from(step.calls_each) << (64 - CALL_BITS))
                                | ((step.work_ms * 1000.0).round() as u64 & WORK_MASK)
                        })
                        .collect(),
                    steps: my_steps,
                };
                if !pass.lookup {
                    // Nothing here makes a call: count the records, and pick out the rows a
                    // sample call shows (an edit_schedule's installments) by their parent.
                    let (records, bytes) =
                        crate::source::count_records_of(&def.file, def.delimiter)?;
                    rows[s] = records.saturating_sub(1);
                    progress.fetch_add(bytes, Ordering::Relaxed);
                    if !pass.wanted.is_empty()
                        && let (Some(p), Some(&column)) = (a.parent[s], a.columns[s].get(1))
                    {
                        let keys = a
                            .installments
                            .iter()
                            .filter(|(from, _)| *from == s)
                            .filter_map(|(_, step)| first[*step])
                            .map(|(_, offset, _)| key_at(&a.defs[p], a.columns[p][0], offset))
                            .collect::<std::io::Result<Vec<_>>>()?;
                        let found = find_records(&def.file, def.delimiter, column, &keys)?;
                        captured.extend(found.into_iter().map(|o| (s, o)));
                    }
                    continue;
                }
                let spec = ScanSpec {
                    threads,
                    ..ScanSpec::new(def.delimiter, a.headers[s].len(), a.columns[s].clone())
                };
                let make = || ChunkState {
                    eval: Evaluator::new(&a.conds, &a.plan.name, outputs, lookups),
                    problems: 0,
                    ring: std::collections::VecDeque::with_capacity(AHEAD + 1),
                    rows: Blocks::new(),
                    root_keys: Keys::default(),
                    steps: vec![[0; 3]; a.steps.len()],
                    first: vec![None; a.steps.len()],
                    captured: Vec::new(),
                    run: Run::default(),
                };
                let (mut states, totals) = scan(&def.file, &spec, &progress, make, |st, row| {
                    pass.visit(st, row)
                })
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", def.file.display()))?;
                for st in &mut states {
                    pass.flush(st);
                }
                rows[s] = totals.records;
                for st in &states {
                    problems += st.problems;
                    captured.extend(st.captured.iter().map(|&o| (s, o)));
                    for (i, c) in st.steps.iter().enumerate() {
                        for k in 0..3 {
                            steps[i][k] += c[k];
                        }
                    }
                    for (i, f) in st.first.iter().enumerate() {
                        if first[i].is_none()
                            && let Some((offset, hash)) = f
                        {
                            first[i] = Some((s, *offset, *hash));
                        }
                    }
                }
                if keeps && s == root {
                    // In file order: the first row of a key wins, as in the grouping; units are
                    // numbered in that order.
                    let count: usize = states.iter().map(|st| st.rows.len()).sum();
                    let mut table = KeyTable::with_capacity(count);
                    for st in &states {
                        let mut ahead = st.rows.iter().skip(AHEAD);
                        for row in st.rows.iter() {
                            if let Some(ahead) = ahead.next() {
                                table.prefetch(&ahead.hash);
                            }
                            let unit = unit_calls.len() as u32;
                            if !table.insert(row.hash, unit, row.open, row.inherited, row.offset) {
                                problems += 1;
                                continue;
                            }
                            unit_keys.push(st.root_keys.get(row.key));
                            unit_calls.push(0);
                            unit_work.push(0.0);
                            for (k, &i) in pass.steps.iter().enumerate() {
                                match (row.outcomes >> (2 * k)) & 3 {
                                    0 => {
                                        steps[i][0] += 1;
                                        unit_calls[unit as usize] += a.steps[i].calls_each;
                                        unit_work[unit as usize] += a.steps[i].work_ms;
                                        if first[i].is_none() {
                                            first[i] = Some((s, row.offset, row.hash));
                                        }
                                    }
                                    1 => steps[i][1] += 1,
                                    2 => steps[i][2] += 1,
                                    _ => {}
                                }
                            }
                        }
                    }
                    tables[s] = Some(Keyed { parts: vec![table] });
                } else if keeps {
                    // One part of the keys per core, each filled in file order.
                    let parts = threads.max(1);
                    let units = unit_calls.len();
                    let merged: Vec<Merged> = std::thread::scope(|scope| {
                        let handles: Vec<_> = (0..parts)
                            .map(|part| {
                                let (states, pass) = (&states, &pass);
                                scope.spawn(move || merge_part(states, pass, part, parts, units))
                            })
                            .collect();
                        handles
                            .into_iter()
                            .map(|h| h.join().expect("merge thread"))
                            .collect()
                    });
                    let mut tables_of_parts = Vec::with_capacity(parts);
                    for m in merged {
                        problems += m.duplicates;
                        for (i, c) in m.steps.iter().enumerate() {
                            for k in 0..3 {
                                steps[i][k] += c[k];
                            }
                        }
                        for (i, f) in m.first.iter().enumerate() {
                            if let Some((offset, hash)) = *f
                                && first[i].is_none_or(|(fs, fo, _)| fs == s && offset < fo)
                            {
                                first[i] = Some((s, offset, hash));
                            }
                        }
                        for (unit, &load) in m.loads.iter().enumerate() {
                            if load > 0 {
                                unit_calls[unit] += (load >> (64 - CALL_BITS)) as u32;
                                unit_work[unit] += (load & WORK_MASK) as f64 / 1000.0;
                            }
                        }
                        tables_of_parts.push(m.table);
                    }
                    tables[s] = Some(Keyed {
                        parts: tables_of_parts,
                    });
                } else if let Some(table) = pass.parent
                    && !pass.steps.is_empty()
                {
                    // The children's calls move from their parents' slots to the units.
                    for slot in table.slots() {
                        let load = slot.load.swap(0, Ordering::Relaxed);
                        if load > 0 {
                            unit_calls[slot.unit as usize] += (load >> (64 - CALL_BITS)) as u32;
                            unit_work[slot.unit as usize] += (load & WORK_MASK) as f64 / 1000.0;
                        }
                    }
                }
            }
            Ok(())
        })();
        done.store(true, Ordering::Relaxed);
        result
    })?;

    let mut run_order: Vec<u32> = (0..unit_calls.len() as u32).collect();
    // Extracts are often in key order already.
    if !run_order.is_sorted_by(|&x, &y| unit_keys.get(x) <= unit_keys.get(y)) {
        run_order.sort_by(|&x, &y| unit_keys.get(x).cmp(unit_keys.get(y)));
    }

    let (sample_dir, sample_sources) = sample_extract(a, &tables, &first, &captured)?;
    Ok(Counted {
        rows,
        units: unit_calls.len() as u64,
        data_problems: problems,
        steps,
        unit_keys,
        unit_calls,
        unit_work,
        run_order,
        sample_dir,
        sample_sources,
    })
}

/// Fills part `part` of `parts` of a non-root source's keys from its rows, in file order.
fn merge_part(
    states: &[ChunkState<'_>],
    pass: &SourcePass<'_>,
    part: usize,
    parts: usize,
    units: usize,
) -> Merged {
    let a = pass.a;
    let mine = |row: &&Kept| Keyed::part_of(&row.hash, parts) == part;
    let count = states
        .iter()
        .flat_map(|st| st.rows.iter())
        .filter(mine)
        .count();
    let mut m = Merged {
        table: KeyTable::with_capacity(count),
        duplicates: 0,
        steps: vec![[0; 3]; a.steps.len()],
        first: vec![None; a.steps.len()],
        loads: vec![0; units],
    };
    for st in states {
        let mut ahead = st.rows.iter().filter(mine).skip(AHEAD);
        for row in st.rows.iter().filter(mine) {
            if let Some(ahead) = ahead.next() {
                m.table.prefetch(&ahead.hash);
            }
            if !m
                .table
                .insert(row.hash, row.unit, row.open, row.inherited, row.offset)
            {
                m.duplicates += 1;
                continue;
            }
            for (k, &i) in pass.steps.iter().enumerate() {
                match (row.outcomes >> (2 * k)) & 3 {
                    0 => {
                        m.steps[i][0] += 1;
                        m.loads[row.unit as usize] += pass.loads[k];
                        if m.first[i].is_none() {
                            m.first[i] = Some((row.offset, row.hash));
                        }
                    }
                    1 => m.steps[i][1] += 1,
                    2 => m.steps[i][2] += 1,
                    _ => {}
                }
            }
        }
    }
    m
}

/// Copies the rows of each step's first instance (its chain up to the unit, and the rows
/// `installments.from` reads under it) into small files with the same headers.
fn sample_extract(
    a: &Analysis<'_>,
    tables: &[Option<Keyed>],
    first: &[Option<(usize, u64, Key)>],
    captured: &[(usize, u64)],
) -> anyhow::Result<(Option<tempfile::TempDir>, Vec<SourceDef>)> {
    let mut wanted: Vec<HashSet<u64>> = vec![HashSet::new(); a.defs.len()];
    for &(s, offset) in captured {
        wanted[s].insert(offset);
    }
    for &(mut s, mut offset, _) in first.iter().flatten() {
        // Up the chain: read the row, find its parent's key, look the parent up.
        loop {
            if !wanted[s].insert(offset) {
                break;
            }
            let Some(p) = a.parent[s] else { break };
            let Some(&column) = a.columns[s].get(1) else {
                break;
            };
            let parent_key = key_at(&a.defs[s], column, offset)?;
            let Some(table) = tables[p].as_ref() else {
                break;
            };
            let hash = key_hash(&parent_key);
            let Some(slot) = table.get(&hash) else {
                break;
            };
            s = p;
            offset = table.offset(&hash, slot);
        }
    }
    if wanted.iter().all(HashSet::is_empty) {
        return Ok((None, Vec::new()));
    }
    let dir = tempfile::Builder::new()
        .prefix("mambu-migrate-estimate-")
        .tempdir()?;
    let mut defs = Vec::new();
    for (s, def) in a.defs.iter().enumerate() {
        let path: PathBuf = dir.path().join(format!("{s}.csv"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        out.write_all(&header_bytes(&def.file, def.delimiter)?)?;
        let mut offsets: Vec<u64> = wanted[s].iter().copied().collect();
        offsets.sort_unstable();
        for offset in offsets {
            let mut raw = record_at(&def.file, offset, def.delimiter)?;
            if !raw.ends_with(b"\n") {
                raw.push(b'\n');
            }
            out.write_all(&raw)?;
        }
        out.flush()?;
        let mut mini = def.clone();
        mini.file = path;
        defs.push(mini);
    }
    Ok((Some(dir), defs))
}

/// The cell `column` of the record at `offset`.
fn key_at(def: &SourceDef, column: usize, offset: u64) -> std::io::Result<Vec<u8>> {
    let raw = record_at(&def.file, offset, def.delimiter)?;
    Ok(first_record(&raw, def.delimiter)
        .and_then(|r| r.get(column).map(<[u8]>::to_vec))
        .unwrap_or_default())
}

/// The bytes of a file up to its first data record (BOM, header).
fn header_bytes(path: &Path, delimiter: u8) -> std::io::Result<Vec<u8>> {
    let mut raw = record_at(path, 0, delimiter)?;
    let mut at = raw.len() as u64;
    // Blank lines before the header.
    while raw
        .iter()
        .all(|b| matches!(b, b'\r' | b'\n' | 0xEF | 0xBB | 0xBF))
        && !raw.is_empty()
    {
        let next = record_at(path, at, delimiter)?;
        if next.is_empty() {
            break;
        }
        at += next.len() as u64;
        raw.extend_from_slice(&next);
    }
    if !raw.ends_with(b"\n") {
        raw.push(b'\n');
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::same_bytes;

    #[test]
    fn same_bytes_is_slice_equality_at_every_length() {
        let text = b"LN-000001-ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        for n in 0..text.len() {
            let a = &text[..n];
            assert!(same_bytes(a, a));
            for i in 0..n {
                let mut b = a.to_vec();
                b[i] ^= 1;
                assert!(!same_bytes(a, &b), "{n} {i}");
            }
            assert!(!same_bytes(a, &text[..n + 1]));
        }
    }
}
