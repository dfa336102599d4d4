//! Bulk deposits (issue 18): a `deposit` step with `bulk` posts through
//! `POST /deposits/deposit-transactions:bulk` (`../shared/mambu-api.md` §6), its items gathered
//! across units, exactly once.
//!
//! A unit reaching such a step queues its rendered item here and goes on with its later steps;
//! it is finished (done or failed) only once every item it queued is settled. The batcher (one
//! task per run) sends a step's items in bulks of its `size` as they fill, and the remainders
//! once no unit is running its steps and none will start (the units ran out, or the deadline).
//!
//! Exactly once, however the run is interrupted:
//! - A bulk is recorded (its items, in order, and a deterministic Idempotency-Key) and the
//!   checkpoint flushed before it is POSTed; Mambu's bulk process key is recorded once
//!   answered; the bulk is settled once every item's step is recorded.
//! - A lost reply to the POST, a 5xx or a 429: sent again with the same key (the session's one
//!   retry policy). A tenant that has forgotten the key makes a second bulk whose items fail as
//!   duplicates of their externalIds: those are adopted (read back by externalId, as a single
//!   deposit's replay is: [`crate::mambu::adopt`]).
//! - A lost reply to a poll: polled again.
//! - Killed at any moment, or stopped: a resume first settles the bulks the checkpoint holds
//!   unsettled (POSTed again with the same key and items when no process key was recorded,
//!   polled when one was) and then runs the units not done: an item settled by then is done,
//!   any other is rendered and queued again (so items queued but never in a recorded bulk need
//!   no record of their own: the unit, not done, renders the same item again).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use super::{RunCalls, Shared};
use crate::checkpoint::{BulkBatch, BulkItem, Record, StepRecord, StepStatus, UnitError};
use crate::mambu::adopt::{Intent, adopt};
use crate::mambu::{Expect, Keep, Refusal, Request, Sent};
use crate::plan::action::{Action, BULK_DEPOSITS, BULK_STATUS};
use crate::plan::compiled::Call;
use crate::plan::ids::idempotency_key;

/// How an item ended, for the unit that queued it.
#[derive(Debug, Clone)]
pub(crate) enum Settled {
    /// Posted (or found posted, and adopted): its step is recorded.
    Done,
    /// Mambu refused it: the unit fails at its step.
    Failed(Box<UnitError>),
    /// The run stopped first: a resume settles it.
    Interrupted,
}

/// An item queued by a unit.
pub(crate) struct Queued {
    step_id: String,
    size: usize,
    item: BulkItem,
    reply: oneshot::Sender<Settled>,
}

/// What the units and the batcher share.
#[derive(Default)]
pub(crate) struct Bulks {
    tx: Mutex<Option<mpsc::UnboundedSender<Queued>>>,
    /// Units running their steps (not waiting for their items).
    running: AtomicUsize,
    /// No unit will start any more.
    closing: AtomicBool,
    wake: Notify,
    /// Items settled by this attempt's recovery of bulks an earlier one left unsettled.
    recovered: Mutex<HashMap<(String, String), Settled>>,
}

/// Held while a unit runs its steps; dropped before it waits for its items.
pub(crate) struct Running<'a>(&'a Bulks);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        self.0.wake.notify_one();
    }
}

impl Bulks {
    /// The shared side, and the queue the batcher ([`batch`]) reads.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Queued>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let bulks = Bulks {
            tx: Mutex::new(Some(tx)),
            ..Bulks::default()
        };
        (bulks, rx)
    }

    /// A unit is about to run: counted before its task is spawned, so that the batcher never
    /// sees the units idle while one that will queue items has not started yet (a task not yet
    /// polled when the last unit was handed out: its items were never sent, and the run ended
    /// with it unsettled). The unit's task takes the count over with [`Bulks::running`].
    pub fn starting(&self) {
        self.running.fetch_add(1, Ordering::SeqCst);
    }

    /// The guard of a unit counted by [`Bulks::starting`]: given back when dropped.
    pub fn running(&self) -> Running<'_> {
        Running(self)
    }

    /// No unit starts any more: the remainders go once the units running have queued theirs.
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn idle(&self) -> bool {
        self.closing.load(Ordering::SeqCst) && self.running.load(Ordering::SeqCst) == 0
    }

    /// How this attempt's recovery settled the item of `instance`, if it did.
    pub fn recovered(&self, unit: &str, instance: &str) -> Option<Settled> {
        lock(&self.recovered)
            .get(&(unit.to_owned(), instance.to_owned()))
            .cloned()
    }

    /// Queues the item of a bulk step's call; the answer comes once it is settled.
    pub fn queue(
        &self,
        step_id: &str,
        size: usize,
        unit: &str,
        instance: &str,
        call: &Call,
    ) -> oneshot::Receiver<Settled> {
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            step_id: step_id.to_owned(),
            size,
            item: BulkItem {
                unit: unit.to_owned(),
                instance: instance.to_owned(),
                item: item_of(call),
            },
            reply,
        };
        if let Some(tx) = lock(&self.tx).as_ref() {
            // The batcher gone (halted): the dropped reply reads as interrupted.
            let _ = tx.send(queued);
        }
        answer
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The bulk item of a single deposit's call: its body (DepositTransactionBulkableInputDTO has
/// the single deposit's fields but the dates) with `accountId`, the deposit the call's path
/// names (the step's `deposit`, as for a single deposit).
fn item_of(call: &Call) -> Value {
    let segment = call.path.split('/').nth(2).unwrap_or("");
    let account: String = url::form_urlencoded::parse(format!("a={segment}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let mut item = match &call.body {
        Some(Value::Object(body)) => body.clone(),
        _ => serde_json::Map::new(),
    };
    item.insert("accountId".into(), json!(account));
    Value::Object(item)
}

/// The bulk's request body: its items in their order.
fn body_of(items: &[BulkItem]) -> String {
    json!({ "transactions": items.iter().map(|i| &i.item).collect::<Vec<_>>() }).to_string()
}

/// The batcher: sends each step's items in bulks of its size, and the remainders once the
/// units are idle; ends when they are and nothing is left, or when the run is halted (what is
/// queued then is left for a resume).
pub(crate) async fn batch(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Queued>) {
    let mut pending: BTreeMap<String, Vec<Queued>> = BTreeMap::new();
    loop {
        tokio::select! {
            biased;
            () = shared.halt().cancelled() => break,
            queued = rx.recv() => match queued {
                Some(q) => pending.entry(q.step_id.clone()).or_default().push(q),
                None => break,
            },
            () = shared.bulks.wake.notified() => {}
        }
        while let Ok(q) = rx.try_recv() {
            pending.entry(q.step_id.clone()).or_default().push(q);
        }
        let idle = shared.bulks.idle();
        for queued in pending.values_mut() {
            while let Some(size) = queued.first().map(|q| q.size)
                && (queued.len() >= size || idle)
            {
                let take: Vec<Queued> = queued.drain(..size.min(queued.len())).collect();
                send(&shared, take).await;
                if shared.halt().is_cancelled() {
                    return;
                }
            }
        }
        pending.retain(|_, q| !q.is_empty());
        if idle && pending.is_empty() && rx.is_empty() {
            break;
        }
    }
    // Halted or done: nothing more is taken (a dropped reply reads as interrupted).
    lock(&shared.bulks.tx).take();
}

/// Records a bulk (committed before it is sent), sends it, and answers each item's unit.
async fn send(shared: &Shared, queued: Vec<Queued>) {
    let Some(step_id) = queued.first().map(|q| q.step_id.clone()) else {
        return;
    };
    let (items, replies): (Vec<BulkItem>, Vec<oneshot::Sender<Settled>>) =
        queued.into_iter().map(|q| (q.item, q.reply)).unzip();
    let body = body_of(&items);
    // Deterministic: the same items in the same order make the same key.
    let first = items.first().map(|i| i.instance.as_str()).unwrap_or("");
    let key = idempotency_key(&shared.plan_name, "bulk", first, Some(&body));
    let mut batch = BulkBatch {
        idempotency_key: key,
        step_id,
        items,
        bulk_key: None,
    };
    shared
        .checkpoint
        .record(Record::BulkBatch(Box::new(batch.clone())));
    if let Err(e) = tokio::task::block_in_place(|| shared.checkpoint.flush()) {
        // Never sent unrecorded: a resume renders and queues these items again.
        shared.stop(e.to_string());
        return;
    }
    let outcomes = settle(shared, &mut batch).await;
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        let _ = reply.send(outcome);
    }
}

/// Settles the bulks an earlier attempt left unsettled, before any unit runs: a unit then
/// finds its item's outcome ([`Bulks::recovered`]). Stops at the first one interrupted.
pub(crate) async fn recover(shared: &Shared, batches: Vec<BulkBatch>) {
    for mut batch in batches {
        let outcomes = settle(shared, &mut batch).await;
        let mut recovered = lock(&shared.bulks.recovered);
        let mut interrupted = false;
        for (item, outcome) in batch.items.iter().zip(outcomes) {
            interrupted |= matches!(outcome, Settled::Interrupted);
            recovered.insert((item.unit.clone(), item.instance.clone()), outcome);
        }
        if interrupted {
            return;
        }
    }
}

/// The first pause between polls, and the longest.
const FIRST_POLL: Duration = Duration::from_millis(100);
const LONGEST_POLL: Duration = Duration::from_secs(2);

/// The statuses after which a bulk changes no more (skyleague/mambu-sdk `BulkProcessStatus`);
/// the others (QUEUED, IN_PROGRESS, TO_BE_CANCELED, TRANSIENT_ERROR, RECOVERABLE_ERROR) are
/// polled again.
fn is_terminal(status: &str) -> bool {
    matches!(
        status,
        "COMPLETE" | "ERROR" | "NOT_FOUND" | "CANCEL" | "TIMED_OUT" | "OVERRIDDEN"
    )
}

/// POSTs the bulk unless Mambu's process key is known, polls it to a terminal status, and
/// records each item's step: one outcome per item, in order.
async fn settle(shared: &Shared, batch: &mut BulkBatch) -> Vec<Settled> {
    let started = Instant::now();
    let n = batch.items.len();
    let all = |outcome: Settled| vec![outcome; n];
    let step = batch.step_id.clone();
    if batch.bulk_key.is_none() {
        let body = body_of(&batch.items);
        let request = Request {
            method: BULK_DEPOSITS.0,
            path: BULK_DEPOSITS.1,
            body: Some(&body),
            idempotency_key: Some(&batch.idempotency_key),
            v1: false,
            keep: Keep::All,
        };
        let mut calls = RunCalls::new(shared, &step, BULK_DEPOSITS);
        let accepted = shared
            .session
            .send(&request, Expect::Accepted, &mut calls)
            .await;
        let failed = |error: Box<UnitError>| {
            record_items(
                shared,
                batch,
                &vec![ItemEnd::Refused(error.clone()); n],
                started,
            );
            all(Settled::Failed(error))
        };
        match accepted {
            Sent::Ok(answer) => {
                let key = answer
                    .location
                    .as_deref()
                    .and_then(|l| l.rsplit('/').next())
                    .unwrap_or_default()
                    .to_owned();
                shared.checkpoint.record(Record::BulkKey {
                    idempotency_key: batch.idempotency_key.clone(),
                    bulk_key: key.clone(),
                });
                batch.bulk_key = Some(key);
            }
            Sent::Refused(answer, refusal) => {
                let attempts = calls.attempts;
                return failed(super::unit::refusal_error(
                    &step, &answer, refusal, attempts,
                ));
            }
            Sent::GaveUp { message, status } => {
                let attempts = calls.attempts;
                return failed(Box::new(UnitError {
                    step: step.clone(),
                    http_status: status,
                    message,
                    attempts,
                    ..Default::default()
                }));
            }
            Sent::Stop(reason) => {
                shared.stop(format!("step `{step}` (bulk deposit): {reason}"));
                return all(Settled::Interrupted);
            }
            Sent::Interrupted => return all(Settled::Interrupted),
        }
    }
    let key = batch.bulk_key.clone().unwrap_or_default();
    let Some(status) = poll(shared, &step, &key).await else {
        return all(Settled::Interrupted);
    };
    let mut outcomes = Vec::with_capacity(n);
    for (index, item) in batch.items.iter().enumerate() {
        outcomes.push(item_outcome(shared, &step, &key, &status, index, item).await);
    }
    if outcomes.iter().any(Option::is_none) {
        // Interrupted while adopting: a resume polls this bulk again.
        return all(Settled::Interrupted);
    }
    let outcomes: Vec<ItemEnd> = outcomes.into_iter().flatten().collect();
    record_items(shared, batch, &outcomes, started);
    outcomes
        .into_iter()
        .map(|o| match o {
            ItemEnd::Refused(error) => Settled::Failed(error),
            ItemEnd::Posted(_) | ItemEnd::Adopted(_) => Settled::Done,
        })
        .collect()
}

/// How one item of a bulk ended, as its step is recorded.
#[derive(Debug, Clone)]
enum ItemEnd {
    /// Posted by this bulk: its step's outputs.
    Posted(Value),
    /// Posted before (a replay), read back by its externalId.
    Adopted(Value),
    Refused(Box<UnitError>),
}

/// Polls the bulk until its status is terminal; `None` when the run is stopped first.
async fn poll(shared: &Shared, step: &str, key: &str) -> Option<Value> {
    let path = format!("/bulks/{}", crate::mambu::adopt::encode(key));
    let request = Request {
        method: BULK_STATUS.0,
        path: &path,
        body: None,
        idempotency_key: None,
        v1: false,
        keep: Keep::All,
    };
    let mut pause = FIRST_POLL;
    loop {
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shared.halt().cancelled() => return None,
        }
        pause = (pause * 2).min(LONGEST_POLL);
        let mut calls = RunCalls::new(shared, step, BULK_STATUS);
        match shared
            .session
            .send(&request, Expect::BulkStatus, &mut calls)
            .await
        {
            Sent::Ok(answer) => {
                let status = answer.body["status"].as_str().unwrap_or("");
                if is_terminal(status) {
                    return Some(answer.body);
                }
            }
            // A refusal of a key Mambu gave, or the attempts spent: the bulk is still there to
            // be read; polled again after the longest pause.
            Sent::Refused(..) | Sent::GaveUp { .. } => pause = LONGEST_POLL,
            Sent::Stop(reason) => {
                shared.stop(format!("step `{step}` (bulk deposit): {reason}"));
                return None;
            }
            Sent::Interrupted => return None,
        }
    }
}

/// How the item at `index` ended, by the bulk's final status; `None` when the run stopped
/// while a duplicate was read back.
async fn item_outcome(
    shared: &Shared,
    step: &str,
    key: &str,
    status: &Value,
    index: usize,
    item: &BulkItem,
) -> Option<ItemEnd> {
    let at = |list: &str| {
        status[list].as_array().and_then(|items| {
            items
                .iter()
                .find(|i| i["indexInRequest"].as_u64() == Some(index as u64))
        })
    };
    if let Some(done) = at("processedItems") {
        return Some(ItemEnd::Posted(
            json!({ "id": done["id"], "bulkProcessKey": key }),
        ));
    }
    let Some(error) = at("errors") else {
        return Some(ItemEnd::Refused(Box::new(UnitError {
            step: step.to_owned(),
            message: format!(
                "the bulk {key} ended {} with no outcome for this item",
                status["status"].as_str().unwrap_or("?")
            ),
            attempts: 1,
            ..Default::default()
        })));
    };
    let refusal = Refusal::from_body(&json!({ "errors": [error] }));
    let external_id = item.item["externalId"].as_str();
    let account = item.item["accountId"].as_str().unwrap_or("");
    if let Some(external_id) = external_id {
        // A replay of an item already posted (a retried bulk the tenant did not recognise, or
        // a resume): read back by its externalId and adopted, as a single deposit's would be.
        let intent = Intent::Transaction {
            kind: "deposits",
            account,
            external_id,
        };
        let mut calls = RunCalls::new(shared, step, ("GET", "/deposits/{deposit}/transactions"));
        if let Some(found) = adopt(&shared.session, &intent, &refusal, Keep::All, &mut calls).await
        {
            return Some(ItemEnd::Adopted(json!({
                "id": found.body["id"],
                "encodedKey": found.body["encodedKey"],
            })));
        }
        if shared.halt().is_cancelled() {
            return None;
        }
    }
    let reason = refusal.reason.clone().unwrap_or_default();
    Some(ItemEnd::Refused(Box::new(UnitError {
        step: step.to_owned(),
        http_status: None,
        error_code: refusal.code,
        error_reason: refusal.reason,
        error_source: refusal.source,
        message: format!("Mambu refused the bulk item: {reason} (bulk {key}, item {index})"),
        attempts: 1,
    })))
}

/// Records the step of every item (posted, adopted or failed), then the bulk as settled.
fn record_items(shared: &Shared, batch: &BulkBatch, outcomes: &[ItemEnd], started: Instant) {
    let latency = started.elapsed().as_secs_f64() * 1000.0;
    for (item, outcome) in batch.items.iter().zip(outcomes) {
        let (status, outputs) = match outcome {
            ItemEnd::Posted(out) => (StepStatus::Done, out.clone()),
            ItemEnd::Adopted(out) => (StepStatus::Adopted, out.clone()),
            ItemEnd::Refused(error) => (
                StepStatus::Failed,
                json!({ "errorReason": error.error_reason, "message": error.message }),
            ),
        };
        shared.checkpoint.record(Record::Step(Box::new(StepRecord {
            unit: item.unit.clone(),
            instance: item.instance.clone(),
            step_id: batch.step_id.clone(),
            action: Action::MakeDeposit.name().to_owned(),
            status,
            idempotency_key: Some(batch.idempotency_key.clone()),
            http_status: None,
            outputs,
            attempts: 1,
            latency_ms: latency,
        })));
    }
    shared.checkpoint.record(Record::BulkSettled {
        idempotency_key: batch.idempotency_key.clone(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_is_the_single_deposits_body_with_the_account_of_its_path() {
        let call = Call {
            action: Action::MakeDeposit,
            method: "POST",
            path: "/deposits/DP%201%2F2/deposit-transactions".into(),
            body: Some(json!({ "amount": 5, "externalId": "OPEN-1" })),
            installments: vec![],
        };
        assert_eq!(
            item_of(&call),
            json!({ "accountId": "DP 1/2", "amount": 5, "externalId": "OPEN-1" })
        );
    }

    #[test]
    fn the_same_items_make_the_same_body_and_statuses_end_where_mambu_stops() {
        let items = |ext: &str| {
            vec![BulkItem {
                unit: "CL-1".into(),
                instance: "clients/CL-1#open".into(),
                item: json!({ "externalId": ext, "amount": 1, "accountId": "D" }),
            }]
        };
        assert_eq!(body_of(&items("A")), body_of(&items("A")));
        assert_ne!(body_of(&items("A")), body_of(&items("B")));
        assert_eq!(
            body_of(&items("A")),
            r#"{"transactions":[{"accountId":"D","amount":1,"externalId":"A"}]}"#
        );
        for status in ["QUEUED", "IN_PROGRESS", "TRANSIENT_ERROR", "TO_BE_CANCELED"] {
            assert!(!is_terminal(status), "{status}");
        }
        for status in ["COMPLETE", "ERROR", "TIMED_OUT", "CANCEL"] {
            assert!(is_terminal(status), "{status}");
        }
    }

    #[tokio::test]
    async fn units_running_keep_the_remainder_until_they_are_idle() {
        let (bulks, _rx) = Bulks::new();
        // Counted when handed out, before its task runs: not idle even before it starts.
        bulks.starting();
        bulks.close();
        assert!(!bulks.idle(), "a unit handed out may still queue an item");
        let running = bulks.running();
        assert!(!bulks.idle(), "a unit running may still queue an item");
        drop(running);
        assert!(bulks.idle());
    }
}
