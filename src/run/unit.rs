//! One unit through its steps: render each call, send it under the shared rate limit with
//! retries, adopt what already exists after a lost reply, record everything.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::Shared;
use super::bulk::Settled;
use crate::catchup::Decision;
use crate::checkpoint::{CallRecord, Record, StepRecord, StepStatus, UnitError};
use crate::mambu::adopt::{Intent, adopt};
use crate::mambu::{Answer, CallOutcome, Expect, Keep, Observer, Refusal, Request, Sent};
use crate::plan::action::Action;
use crate::plan::compiled::{Call, Planned};
use crate::plan::ids::{external_id, idempotency_key, instance_id};
use crate::source::Unit;

/// A unit's finished steps as the checkpoint saved them: instance → (status, outputs).
pub type Saved = HashMap<String, (StepStatus, Value)>;

/// How a unit ended.
#[derive(Debug)]
pub enum UnitEnd {
    Done,
    Failed(Box<UnitError>),
    /// Stopped between steps (interrupt, error budget): resumes from the next step.
    Interrupted,
}

/// Runs the unit's steps (holding `permit`, one of the run's concurrency), then, the permit
/// given back, waits for the items it queued for bulks: it ends once they are settled.
pub async fn run_unit(
    shared: Arc<Shared>,
    unit: Unit,
    ordinal: u64,
    saved: Saved,
    delta: Option<crate::catchup::UnitDelta>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> UnitEnd {
    let running = shared.bulks.running();
    shared.checkpoint.record(Record::UnitStarted {
        key: unit.key().to_owned(),
        ordinal: ordinal as i64,
    });
    let mut queued = Vec::new();
    let mut outputs: HashMap<String, Value> = HashMap::new();
    let mut calls = 0i64;
    // A catch-up also weighs the updates (`on_change`) of the rows that changed.
    let planned = shared.compiled.expand_with(&unit, delta.is_some());
    let mut end = UnitEnd::Done;
    for step in &planned {
        if let Some(e) = shared.checkpoint.failure() {
            // Nothing more is sent that could not be recorded: stop, resumably.
            shared.stop(e.to_string());
        }
        if shared.halt().is_cancelled() {
            end = UnitEnd::Interrupted;
            break;
        }
        let action = shared.compiled.step(step.step);
        let mut instance = instance_id(&shared.compiled, step);
        if let Some(delta) = &delta {
            match delta.decide(&shared.compiled, step, &instance) {
                Decision::Run => {}
                Decision::Update(update) => instance = update,
                Decision::Pass => continue,
            }
        }
        if let Some((status, out)) = saved.get(&instance)
            && *status != StepStatus::Failed
        {
            let skipped = *status == StepStatus::Skipped;
            if !skipped {
                outputs.insert(action.id.clone(), out.clone());
            }
            if shared.compiled.keeps_row_output(step.step) {
                // A later list reads it for this row: kept by instance too (null: skipped).
                let out = if skipped { Value::Null } else { out.clone() };
                outputs.insert(instance.clone(), out);
            }
            continue;
        }
        let result = match action.bulk {
            Some(size) => queue_bulk_item(&shared, &unit, step, &instance, &mut outputs, size)
                .map(|settled| queued.extend(settled)),
            None => run_step(&shared, &unit, step, &instance, &mut outputs, &mut calls).await,
        };
        match result {
            Ok(()) => {}
            Err(StepStop::Failed(error)) => {
                end = UnitEnd::Failed(error);
                break;
            }
            Err(StepStop::Interrupted) => {
                end = UnitEnd::Interrupted;
                break;
            }
        }
    }
    drop((running, permit));
    if matches!(end, UnitEnd::Done) {
        end = settled(queued).await;
    }
    match &end {
        UnitEnd::Done => shared.checkpoint.record(Record::UnitFinished {
            key: unit.key().to_owned(),
            error: None,
            calls,
            attempt: shared.attempt,
            rows: Vec::new(),
        }),
        UnitEnd::Failed(error) => {
            // The rows go with the failure, in one commit: failed/<attempt>/ is written from them.
            shared.checkpoint.record(Record::UnitFinished {
                key: unit.key().to_owned(),
                error: Some(error.clone()),
                calls,
                attempt: shared.attempt,
                rows: super::failed::rows_of(&unit, &shared.source_names),
            });
            tracing::warn!(unit = unit.key(), step = %error.step, http_status = ?error.http_status, error_reason = ?error.error_reason, "unit failed");
        }
        UnitEnd::Interrupted => {}
    }
    end
}

enum StepStop {
    Failed(Box<UnitError>),
    Interrupted,
}

/// How the unit ends once its bulk items are settled: failed at the first item refused, else
/// interrupted when one is left for a resume, else done.
async fn settled(queued: Vec<tokio::sync::oneshot::Receiver<Settled>>) -> UnitEnd {
    let mut end = UnitEnd::Done;
    for item in queued {
        match item.await.unwrap_or(Settled::Interrupted) {
            Settled::Done => {}
            Settled::Failed(error) => {
                if !matches!(end, UnitEnd::Failed(_)) {
                    end = UnitEnd::Failed(error);
                }
            }
            Settled::Interrupted => {
                if matches!(end, UnitEnd::Done) {
                    end = UnitEnd::Interrupted;
                }
            }
        }
    }
    end
}

/// A bulk step: settled already by this attempt's recovery, or its call rendered (as a single
/// deposit's) and its item queued for a bulk; the item's answer to wait for, if queued.
fn queue_bulk_item(
    shared: &Shared,
    unit: &Unit,
    planned: &Planned<'_>,
    instance: &str,
    outputs: &mut HashMap<String, Value>,
    size: usize,
) -> Result<Option<tokio::sync::oneshot::Receiver<Settled>>, StepStop> {
    let step = shared.compiled.step(planned.step);
    match shared.bulks.recovered(unit.key(), instance) {
        Some(Settled::Done) => return Ok(None),
        Some(Settled::Failed(error)) => return Err(StepStop::Failed(error)),
        Some(Settled::Interrupted) | None => {}
    }
    let Some(call) = prepare(shared, unit, planned, instance, outputs)? else {
        return Ok(None);
    };
    Ok(Some(shared.bulks.queue(
        &step.id,
        size,
        unit.key(),
        instance,
        &call,
    )))
}

/// Records a step instance's end.
fn record_step(
    shared: &Shared,
    unit: &Unit,
    instance: &str,
    step: &crate::plan::check::ActionStep,
    end: (StepStatus, Option<u16>, &Value),
    attempts: u32,
    latency: f64,
) {
    let (status, http, out) = end;
    shared.checkpoint.record(Record::Step(Box::new(StepRecord {
        unit: unit.key().to_owned(),
        instance: instance.to_owned(),
        step_id: step.id.clone(),
        action: step.action.name().to_owned(),
        status,
        idempotency_key: None,
        http_status: http,
        outputs: out.clone(),
        attempts,
        latency_ms: latency,
    })));
}

/// A step's call, rendered: `None` when its `when` is false (recorded as skipped). A
/// transaction without an externalId is given one: the second line of replay safety (after
/// the Idempotency-Key).
fn prepare(
    shared: &Shared,
    unit: &Unit,
    planned: &Planned<'_>,
    instance: &str,
    outputs: &mut HashMap<String, Value>,
) -> Result<Option<Call>, StepStop> {
    let compiled = &shared.compiled;
    let step = compiled.step(planned.step);
    let lookups = shared.lookups.get();
    match compiled.when(planned, outputs, lookups) {
        Ok(true) => {}
        Ok(false) => {
            record_step(
                shared,
                unit,
                instance,
                step,
                (StepStatus::Skipped, None, &Value::Null),
                0,
                0.0,
            );
            if compiled.keeps_row_output(planned.step) {
                // A later list must not read another row's output for this one.
                outputs.insert(instance.to_owned(), Value::Null);
            }
            return Ok(None);
        }
        Err(e) => {
            return Err(unit_error(
                &step.id,
                format!("`when` could not be evaluated: {e}"),
                0,
            ));
        }
    }
    let mut call = compiled
        .render(unit, planned, outputs, lookups)
        .map_err(|e| unit_error(&step.id, format!("the call could not be rendered: {e}"), 0))?;
    if call.action.is_transaction()
        && let Some(Value::Object(body)) = call.body.as_mut()
        && !body.contains_key("externalId")
    {
        body.insert(
            "externalId".into(),
            json!(external_id(&shared.plan_name, unit.key(), instance)),
        );
    }
    Ok(Some(call))
}

fn unit_error(step: &str, message: String, attempts: u32) -> StepStop {
    StepStop::Failed(Box::new(UnitError {
        step: step.to_owned(),
        message,
        attempts,
        ..Default::default()
    }))
}

async fn run_step(
    shared: &Shared,
    unit: &Unit,
    planned: &Planned<'_>,
    instance: &str,
    outputs: &mut HashMap<String, Value>,
    calls: &mut i64,
) -> Result<(), StepStop> {
    let compiled = &shared.compiled;
    let step = compiled.step(planned.step);
    let lookups = shared.lookups.get();
    let Some(call) = prepare(shared, unit, planned, instance, outputs)? else {
        return Ok(());
    };
    let started = Instant::now();
    let mut attempts = 0u32;
    let kept = kept_fields(&step.save);
    let mut ctx = CallCtx {
        shared,
        unit: unit.key(),
        step: &step.id,
        attempts: &mut attempts,
        calls,
        keep: Keep::Fields {
            whole: &kept,
            lists: &["installments"],
        },
        refused: None,
        action: call.action,
        expect: if call.action.creates().is_some() {
            Expect::Entity
        } else {
            Expect::Any
        },
        method: "GET",
        endpoint: String::new(),
        waiting: None,
    };

    let (answer, status) = if call.action == Action::EditSchedule {
        edit_schedule(&mut ctx, &call).await?
    } else {
        // Serialized once: the same text is hashed into the key and sent on every attempt.
        let body = call.body.as_ref().map(Value::to_string);
        let keyed = match shared.rolled_back.get(unit.key()) {
            Some(rollbacks) => format!("{instance}@rollback{rollbacks}"),
            None => instance.to_owned(),
        };
        let key = call
            .takes_idempotency_key()
            .then(|| idempotency_key(&shared.plan_name, unit.key(), &keyed, body.as_deref()));
        let request = Request {
            method: call.method,
            path: &call.path,
            body: body.as_deref(),
            idempotency_key: key.as_deref(),
            v1: call.action.is_v1(),
            keep: ctx.keep,
        };
        let endpoint = endpoint_of(step.action, &call);
        match ctx.send(&request, &endpoint).await {
            Sent::Ok(answer) => (answer, StepStatus::Done),
            Sent::Refused(answer, refusal) => {
                let pending = ctx.refused.take();
                // A request step adopts as its plan declares: its `adopt.get` is rendered like
                // its call, only once a refusal names one of its reasons.
                let declared = match &step.adopt {
                    Some(adoption) if adoption.on.iter().any(|r| refusal.is(r)) => {
                        match compiled.render_adopt(planned, outputs, lookups) {
                            Ok(get) => get,
                            Err(e) => {
                                tracing::warn!(unit = unit.key(), step = %step.id, error = %e, "adopt.get could not be rendered: the refusal stands");
                                None
                            }
                        }
                    }
                    _ => None,
                };
                let intent = match (&step.adopt, &declared) {
                    (Some(adoption), Some(get)) => Intent::Declared {
                        on: &adoption.on,
                        get,
                        pick: adoption.pick.as_deref(),
                    },
                    _ => intent_of(&call),
                };
                let shared = ctx.shared;
                let keep = ctx.keep;
                let adopted = adopt(&shared.session, &intent, &refusal, keep, &mut ctx).await;
                ctx.settle(CallOutcome::Failed);
                ctx.refused = pending;
                match adopted {
                    Some(existing) => {
                        ctx.settle(CallOutcome::Adopted);
                        (existing, StepStatus::Adopted)
                    }
                    None => {
                        ctx.settle(CallOutcome::Failed);
                        return Err(refused(&step.id, &answer, refusal, *ctx.attempts));
                    }
                }
            }
            Sent::GaveUp { message, status } => {
                let attempts = *ctx.attempts;
                return Err(StepStop::Failed(Box::new(UnitError {
                    step: step.id.clone(),
                    http_status: status,
                    message,
                    attempts,
                    ..Default::default()
                })));
            }
            Sent::Stop(reason) => {
                shared.stop(stopped_at_step(shared, &step.id, step.action, reason));
                return Err(StepStop::Interrupted);
            }
            Sent::Interrupted => return Err(StepStop::Interrupted),
        }
    };
    drop(ctx);
    let out = outputs_of(step.action, &answer.body, &step.save);
    record_step(
        shared,
        unit,
        instance,
        step,
        (status, Some(answer.status), &out),
        attempts,
        started.elapsed().as_secs_f64() * 1000.0,
    );
    if compiled.keeps_row_output(planned.step) {
        // A later step's list reads it for this row ([`Compiled::keeps_row_output`]).
        outputs.insert(instance.to_owned(), out.clone());
    }
    outputs.insert(step.id.clone(), out);
    Ok(())
}

fn refused(step: &str, answer: &Answer, refusal: Refusal, attempts: u32) -> StepStop {
    StepStop::Failed(refusal_error(step, answer, refusal, attempts))
}

/// Why a unit fails at `step` when Mambu refused its call.
pub(super) fn refusal_error(
    step: &str,
    answer: &Answer,
    refusal: Refusal,
    attempts: u32,
) -> Box<UnitError> {
    let message = match (&refusal.reason, answer.json) {
        (Some(reason), _) => format!("Mambu refused: {reason}"),
        (None, true) => format!("Mambu refused with HTTP {}", answer.status),
        (None, false) => format!(
            "HTTP {} with a body that is not JSON ({})",
            answer.status,
            answer.body.as_str().unwrap_or("")
        ),
    };
    Box::new(UnitError {
        step: step.to_owned(),
        http_status: Some(answer.status),
        error_code: refusal.code,
        error_reason: refusal.reason,
        error_source: refusal.source,
        message,
        attempts,
    })
}

/// The endpoint template a call is counted under.
/// Why the run stops; for a missing permission, with the step whose call was refused and which
/// user made it (approvals go as the approving user when the plan names one).
fn stopped_at_step(shared: &Shared, step: &str, action: Action, reason: String) -> String {
    if !reason.starts_with(crate::mambu::policy::PERMISSION_REFUSED) {
        // An outage or refused credentials: no step is to blame.
        return reason;
    }
    let reason = if action == Action::ApproveLoan && shared.session.has_approver() {
        reason.replace("the API user", "the approving user (target.approver)")
    } else {
        reason
    };
    format!("step `{step}` ({}): {reason}", action.name())
}

fn endpoint_of(action: Action, call: &Call) -> String {
    match action.calls().last() {
        Some((_, path)) => (*path).to_owned(),
        None => call.path.split('?').next().unwrap_or("").to_owned(),
    }
}

/// The top-level fields of an answer the executor reads whole: those [`outputs_of`] keeps (ids,
/// the account state, the roots of the plan's `save` paths). Of `installments` only whether it
/// is a list is read ([`usable`]); `edit_schedule` reads the schedule it edits whole, and
/// refusals are always read whole ([`Keep::Fields`]).
fn kept_fields(save: &std::collections::BTreeMap<String, String>) -> Vec<&str> {
    let mut fields = vec!["id", "encodedKey", "accountState"];
    fields.extend(
        save.values()
            .map(|path| path.split('.').next().unwrap_or(path)),
    );
    fields
}

/// What later steps may use of an answer: ids, the account state, and the plan's `save` fields.
fn outputs_of(
    action: Action,
    body: &Value,
    save: &std::collections::BTreeMap<String, String>,
) -> Value {
    let mut out = serde_json::Map::new();
    for field in ["id", "encodedKey", "accountState"] {
        if let Some(v) = body.get(field) {
            out.insert(field.to_owned(), v.clone());
        }
    }
    if action == Action::DisburseLoan {
        // A disbursed loan is active; the answer is the transaction, which does not say.
        out.insert("accountState".into(), json!("ACTIVE"));
    }
    for (name, path) in save {
        let value = path.split('.').try_fold(body, |node, part| node.get(part));
        out.insert(name.clone(), value.cloned().unwrap_or(Value::Null));
    }
    Value::Object(out)
}

struct CallCtx<'a> {
    shared: &'a Shared,
    unit: &'a str,
    step: &'a str,
    attempts: &'a mut u32,
    calls: &'a mut i64,
    /// What of an object answer to keep: what the step's outputs and checks read.
    keep: Keep<'a>,
    /// The last refused attempt, recorded once we know whether what it refused is adopted.
    refused: Option<CallRecord>,
    /// What a successful answer must be; one that is not is a spoiled answer, sent again.
    expect: Expect,
    /// The step's action (approvals go as the approving user).
    action: Action,
    /// The request being sent: its method and the endpoint it is counted under.
    method: &'static str,
    endpoint: String,
    /// Held while this call waits out an outage.
    waiting: Option<Waiting<'a>>,
}

/// A call waiting out an outage, counted in the progress line while it lasts. The first one
/// in records an `outage` event, the last one out (unless the run is stopping) `outage over`:
/// the report's history and `status` show them.
struct Waiting<'a>(&'a Shared);

impl<'a> Waiting<'a> {
    fn new(shared: &'a Shared, reason: &str) -> Self {
        if shared
            .progress
            .waiting
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            shared.checkpoint.record(Record::Event {
                kind: "outage".into(),
                detail: reason.to_owned(),
            });
        }
        Waiting(shared)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let shared = self.0;
        let left = shared
            .progress
            .waiting
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if left == 1 && !shared.halt().is_cancelled() {
            shared.checkpoint.record(Record::Event {
                kind: "outage over".into(),
                detail: String::new(),
            });
        }
    }
}

/// Every attempt of the unit's calls goes to the checkpoint and the progress line.
impl Observer for CallCtx<'_> {
    fn attempt(
        &mut self,
        status: Option<u16>,
        outcome: CallOutcome,
        latency_ms: f64,
        refused: bool,
    ) {
        *self.attempts += 1;
        *self.calls += 1;
        self.shared.progress.count_call(outcome);
        let record = CallRecord {
            unit: self.unit.to_owned(),
            step_id: self.step.to_owned(),
            method: self.method,
            endpoint: self.endpoint.clone(),
            status,
            outcome,
            latency_ms,
        };
        if refused {
            self.settle(CallOutcome::Failed);
            self.refused = Some(record);
        } else {
            self.shared
                .checkpoint
                .record(Record::Call(Box::new(record)));
        }
    }

    fn outage(&mut self, reason: &str) {
        tracing::warn!(unit = self.unit, step = self.step, %reason, "waiting for Mambu");
        self.waiting = Some(Waiting::new(self.shared, reason));
    }

    fn outage_over(&mut self) {
        self.waiting = None;
    }
}

impl CallCtx<'_> {
    /// Records the refused attempt as adopted (what it would have made exists) or failed.
    fn settle(&mut self, outcome: CallOutcome) {
        if let Some(mut call) = self.refused.take() {
            call.outcome = outcome;
            self.shared.checkpoint.record(Record::Call(Box::new(call)));
        }
    }

    /// Sends through the run's session (the shared limit, the one retry policy), recording
    /// every attempt under `endpoint`.
    async fn send(&mut self, request: &Request<'_>, endpoint: &str) -> Sent {
        self.method = request.method;
        self.endpoint = endpoint.to_owned();
        let shared = self.shared;
        let expect = self.expect;
        // Four-eyes: loans are approved by the plan's second user, when it names one.
        let approving = self.action == Action::ApproveLoan;
        shared
            .session
            .send_as(request, expect, self, approving)
            .await
    }
}

/// What a call makes, for adoption after a refusal that says it exists.
fn intent_of(call: &Call) -> Intent<'_> {
    let body_id = || call.body.as_ref()?.get("id")?.as_str();
    // `/loans/{id}/…` or `/loans/{id}:approve`: the account the call acts on.
    let account = || {
        let id = call.path.split('/').nth(2)?;
        Some(id.split(':').next().unwrap_or(id))
    };
    let created = |kind| body_id().map(|id| Intent::Create { kind, id });
    let intent = match call.action {
        Action::CreateClient => created("clients"),
        Action::CreateGroup => created("groups"),
        Action::CreateLoan => created("loans"),
        Action::CreateDeposit => created("deposits"),
        Action::ApproveLoan => account().map(|account| Intent::Approve {
            kind: "loans",
            account,
        }),
        Action::ApproveDeposit => account().map(|account| Intent::Approve {
            kind: "deposits",
            account,
        }),
        Action::LinkSettlementAccount => Some(Intent::Link),
        action if action.closes_loan().is_some() => (|| {
            Some(Intent::Close {
                account: account()?,
                sub_state: action.closes_loan()?,
            })
        })(),
        action if action.is_transaction() => (|| {
            Some(Intent::Transaction {
                // `/loans/{id}/…` or `/deposits/{id}/…`: the account's transactions list.
                kind: if call.path.starts_with("/deposits/") {
                    "deposits"
                } else {
                    "loans"
                },
                account: account()?,
                external_id: call.body.as_ref()?.get("externalId")?.as_str()?,
            })
        })(),
        _ => None,
    };
    intent.unwrap_or(Intent::Other)
}

/// edit_schedule: GET the schedule Mambu generated, pair its installments by position with the
/// plan's, PUT them back.
async fn edit_schedule(
    ctx: &mut CallCtx<'_>,
    call: &Call,
) -> Result<(Answer, StepStatus), StepStop> {
    let step = ctx.step.to_owned();
    ctx.expect = Expect::Schedule;
    let get = Request {
        method: "GET",
        path: &call.path,
        body: None,
        idempotency_key: None,
        v1: false,
        // Its installments are paired with the plan's and compared (`already_edited`).
        keep: Keep::All,
    };
    let current = match ctx.send(&get, "/loans/{loan}/schedule").await {
        Sent::Ok(answer) => answer,
        Sent::Refused(answer, refusal) => {
            ctx.settle(CallOutcome::Failed);
            return Err(refused(&step, &answer, refusal, *ctx.attempts));
        }
        Sent::GaveUp { message, status } => {
            return Err(StepStop::Failed(Box::new(UnitError {
                step,
                http_status: status,
                message,
                attempts: *ctx.attempts,
                ..Default::default()
            })));
        }
        Sent::Stop(reason) => {
            ctx.shared
                .stop(stopped_at_step(ctx.shared, ctx.step, ctx.action, reason));
            return Err(StepStop::Interrupted);
        }
        Sent::Interrupted => return Err(StepStop::Interrupted),
    };
    let generated: &[Value] = current
        .body
        .get("installments")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    if generated.len() != call.installments.len() {
        return Err(unit_error(
            &step,
            format!(
                "the plan gives {} installments, Mambu's schedule has {}: they are paired by position",
                call.installments.len(),
                generated.len()
            ),
            *ctx.attempts,
        ));
    }
    let body: Vec<Value> = generated
        .iter()
        .zip(&call.installments)
        .map(|(mambu, ours)| {
            let mut item = ours.as_object().cloned().unwrap_or_default();
            if let Some(key) = mambu.get("encodedKey") {
                item.insert("encodedKey".into(), key.clone());
            }
            Value::Object(item)
        })
        .collect();
    let body = Value::Array(body).to_string();
    let put = Request {
        method: "PUT",
        path: &call.path,
        body: Some(&body),
        idempotency_key: None,
        v1: false,
        keep: ctx.keep,
    };
    match ctx.send(&put, "/loans/{loan}/schedule").await {
        Sent::Ok(answer) => Ok((answer, StepStatus::Done)),
        // A replay after the edit was applied and paid into: Mambu refuses to edit paid
        // installments, and the schedule already is what the plan asks for.
        Sent::Refused(_, _)
            if generated
                .iter()
                .zip(&call.installments)
                .all(|(mambu, ours)| already_edited(mambu, ours)) =>
        {
            ctx.settle(CallOutcome::Adopted);
            Ok((current, StepStatus::Adopted))
        }
        Sent::Refused(answer, refusal) => {
            ctx.settle(CallOutcome::Failed);
            Err(refused(&step, &answer, refusal, *ctx.attempts))
        }
        Sent::GaveUp { message, status } => Err(StepStop::Failed(Box::new(UnitError {
            step,
            http_status: status,
            message,
            attempts: *ctx.attempts,
            ..Default::default()
        }))),
        Sent::Stop(reason) => {
            ctx.shared
                .stop(stopped_at_step(ctx.shared, ctx.step, ctx.action, reason));
            Err(StepStop::Interrupted)
        }
        Sent::Interrupted => Err(StepStop::Interrupted),
    }
}

/// Whether Mambu's installment already has what ours asks for (due date and the expected
/// principal, interest and fee).
fn already_edited(mambu: &Value, ours: &Value) -> bool {
    let number =
        |v: Option<&Value>| v.and_then(|v| v.to_string().parse::<rust_decimal::Decimal>().ok());
    let date = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    };
    if date(ours.get("dueDate")) != date(mambu.get("dueDate")) {
        return false;
    }
    ["principal", "interest", "fee"].iter().all(|part| {
        match ours.pointer(&format!("/{part}/amount/due")) {
            None => true,
            Some(due) => {
                number(Some(due)) == number(mambu.pointer(&format!("/{part}/amount/expected")))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_already_edited_is_recognised() {
        let mambu = json!({ "dueDate": "2024-02-15T00:00:00+00:00", "principal": { "amount": { "expected": 400.0, "due": 0 } }, "interest": { "amount": { "expected": 10, "due": 0 } } });
        assert!(already_edited(
            &mambu,
            &json!({ "dueDate": "2024-02-15T00:00:00Z", "principal": { "amount": { "due": 400 } }, "interest": { "amount": { "due": 10.00 } } })
        ));
        assert!(!already_edited(
            &mambu,
            &json!({ "dueDate": "2024-02-15T00:00:00+00:00", "principal": { "amount": { "due": 401 } } })
        ));
        assert!(!already_edited(
            &mambu,
            &json!({ "dueDate": "2024-03-15T00:00:00+00:00", "principal": { "amount": { "due": 400 } } })
        ));
    }

    #[test]
    fn outputs_keep_ids_states_and_saved_fields() {
        let body = json!({ "id": "L1", "encodedKey": "k", "accountState": "APPROVED", "balances": { "principalBalance": 5 } });
        let save = [(
            "principal".to_owned(),
            "balances.principalBalance".to_owned(),
        )]
        .into_iter()
        .collect();
        let out = outputs_of(Action::ApproveLoan, &body, &save);
        assert_eq!(
            out,
            json!({ "id": "L1", "encodedKey": "k", "accountState": "APPROVED", "principal": 5 })
        );
    }
}
