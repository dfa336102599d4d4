//! Bulk deposit transactions (`../shared/mambu-api.md` §6): `POST
//! /deposits/deposit-transactions:bulk` queues a bulk and is answered before any item is posted;
//! the bulk then goes QUEUED → IN_PROGRESS → COMPLETE (the HTTP side moves it on a timer) and
//! `GET /bulks/{bulkProcessKey}` reports it: Mambu's `BulkProcessStatus` with
//! `processedItems[{externalId,id,indexInRequest}]` and `errors[{errorCode,errorReason,
//! errorSource,externalId,indexInRequest}]` (skyleague/mambu-sdk `src/bulks/rest.zod.ts`).
//!
//! Each item is Mambu's `DepositTransactionBulkableInputDTO`: `accountId` and `amount`
//! required, and posted by the very rules of the single deposit transaction
//! ([`Tenant::post_deposit_transaction`]): the account APPROVED or ACTIVE, a positive amount, an
//! unused externalId (a duplicate is that item's error, EXTERNAL_ID_ALREADY_EXISTS, never a
//! second transaction). It posts at the tenant's current date.

use serde_json::{Map, Value, json};

use super::json::{object, required_str};
use super::{Answer, DepositTransactionKind, Tenant};
use crate::sandbox::error::ApiError;

/// The most items one bulk may carry. Stricter reading: `../shared/mambu-api.md` §6 found no
/// maximum (open question 4); 1,000, Mambu's largest page, is taken, and a bulk over it is
/// refused whole (400) rather than cut.
pub const MAX_BULK_ITEMS: usize = 1000;

/// Where a bulk stands (Mambu's `BulkProcessStatus.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkStatus {
    Queued,
    InProgress,
    Complete,
}

impl BulkStatus {
    fn as_str(self) -> &'static str {
        match self {
            BulkStatus::Queued => "QUEUED",
            BulkStatus::InProgress => "IN_PROGRESS",
            BulkStatus::Complete => "COMPLETE",
        }
    }
}

/// One bulk as queued: its items, and once processed their outcomes.
#[derive(Debug)]
pub(super) struct Bulk {
    key: String,
    status: BulkStatus,
    items: Vec<Value>,
    processed: Vec<Value>,
    errors: Vec<Value>,
    /// Status reads answered (for the stats: a poller's cost beyond one read per bulk).
    polls: std::sync::atomic::AtomicU64,
}

impl Tenant {
    /// Queues a bulk of deposit transactions; its bulkProcessKey. The request is refused whole
    /// (400) only when it is not a list of 1 to [`MAX_BULK_ITEMS`] objects; anything wrong with
    /// an item is that item's error once the bulk is processed.
    pub fn queue_bulk_deposits(&mut self, body: &Value) -> Result<String, ApiError> {
        let items = object(body)?
            .get("transactions")
            .and_then(Value::as_array)
            .ok_or_else(|| ApiError::invalid_parameters("transactions"))?;
        if items.is_empty() || !items.iter().all(Value::is_object) {
            return Err(ApiError::invalid_parameters("transactions"));
        }
        if items.len() > MAX_BULK_ITEMS {
            return Err(ApiError::invalid_parameters(format!(
                "transactions: at most {MAX_BULK_ITEMS} items in one bulk"
            )));
        }
        let key = self.new_key();
        self.bulks.push(Bulk {
            key: key.clone(),
            status: BulkStatus::Queued,
            items: items.clone(),
            processed: Vec::new(),
            errors: Vec::new(),
            polls: Default::default(),
        });
        Ok(key)
    }

    fn bulk_mut(&mut self, key: &str) -> Option<&mut Bulk> {
        self.bulks.iter_mut().find(|b| b.key == key)
    }

    /// A queued bulk is picked up.
    pub fn start_bulk(&mut self, key: &str) {
        if let Some(bulk) = self.bulk_mut(key)
            && bulk.status == BulkStatus::Queued
        {
            bulk.status = BulkStatus::InProgress;
        }
    }

    /// Posts every item of the bulk, in order, each by the single deposit transaction's rules;
    /// the bulk is COMPLETE (processed once: a second call changes nothing).
    pub fn process_bulk(&mut self, key: &str) {
        let Some(index) = self.bulks.iter().position(|b| b.key == key) else {
            return;
        };
        if self.bulks[index].status == BulkStatus::Complete {
            return;
        }
        let items = std::mem::take(&mut self.bulks[index].items);
        let (mut processed, mut errors) = (Vec::new(), Vec::new());
        for (at, item) in items.iter().enumerate() {
            let external = item.get("externalId").cloned();
            let mut outcome = match self.post_bulk_item(item) {
                Ok(transaction) => json!({ "id": transaction["id"], "indexInRequest": at }),
                Err(e) => {
                    let mut error = e.v2_body()["errors"][0].clone();
                    error["indexInRequest"] = json!(at);
                    error
                }
            };
            if let Some(external) = external.filter(Value::is_string) {
                outcome["externalId"] = external;
            }
            if outcome.get("id").is_some() {
                processed.push(outcome);
            } else {
                errors.push(outcome);
            }
        }
        let bulk = &mut self.bulks[index];
        bulk.items = items;
        bulk.processed = processed;
        bulk.errors = errors;
        bulk.status = BulkStatus::Complete;
    }

    /// One item: the single deposit transaction, on the account it names.
    fn post_bulk_item(&mut self, item: &Value) -> Answer {
        let doc = object(item)?;
        // Stricter reading: DepositTransactionBulkableInputDTO has no valueDate or bookingDate
        // (a bulk item posts at the tenant's current date); an item carrying one is refused
        // rather than posted at a date other than the one it asks for.
        for field in ["valueDate", "bookingDate"] {
            if doc.contains_key(field) {
                return Err(ApiError::invalid_parameters(format!(
                    "{field}: a bulk deposit takes none (it posts at the current date)"
                )));
            }
        }
        let account = required_str(doc, "accountId")?.to_owned();
        let body: Map<String, Value> = doc
            .iter()
            .filter(|(k, _)| k.as_str() != "accountId")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.post_deposit_transaction(
            &account,
            DepositTransactionKind::Deposit,
            &Value::Object(body),
        )
    }

    /// `GET /bulks/{bulkProcessKey}`: Mambu's BulkProcessStatus. Stricter reading: an unknown
    /// key is a 404 (the record does not say what Mambu answers).
    pub fn bulk_status(&self, key: &str) -> Answer {
        let bulk = self.bulks.iter().find(|b| b.key == key).ok_or_else(|| {
            ApiError::new(axum::http::StatusCode::NOT_FOUND, 4, "INVALID_PARAMETERS")
                .at("bulkProcessKey")
        })?;
        bulk.polls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut out = json!({ "status": bulk.status.as_str() });
        if bulk.status == BulkStatus::Complete {
            out["processedItems"] = json!(bulk.processed);
            out["errors"] = json!(bulk.errors);
        }
        Ok(out)
    }

    /// Counts for `GET /_sandbox/stats`: bulks, their items, and how the items ended.
    pub(super) fn bulk_stats(&self) -> Value {
        let count = |f: fn(&Bulk) -> usize| self.bulks.iter().map(f).sum::<usize>();
        json!({
            "total": self.bulks.len(),
            "complete": self.bulks.iter().filter(|b| b.status == BulkStatus::Complete).count(),
            "items": count(|b| b.items.len()),
            "processed_items": count(|b| b.processed.len()),
            "item_errors": count(|b| b.errors.len()),
            "polls": self.bulks.iter().map(|b| b.polls.load(std::sync::atomic::Ordering::Relaxed)).sum::<u64>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{approved_deposit, tenant};
    use super::*;

    #[test]
    fn a_bulk_is_queued_then_posts_each_item_by_the_single_deposits_rules() {
        let mut t = tenant();
        let id = approved_deposit(&mut t);
        let key = t
            .queue_bulk_deposits(&json!({ "transactions": [
                { "accountId": id, "amount": 10, "externalId": "B-1" },
                { "accountId": id, "amount": 5, "externalId": "B-1" },
                { "accountId": id, "amount": 5, "valueDate": "2024-01-02T00:00:00+00:00" },
                { "accountId": "NOPE", "amount": 5 },
                { "accountId": id, "amount": 0 },
                { "amount": 1 },
                { "accountId": id, "amount": "2.5", "notes": "opening" },
            ]}))
            .unwrap();
        assert_eq!(t.bulk_status(&key).unwrap(), json!({ "status": "QUEUED" }));
        t.start_bulk(&key);
        assert_eq!(t.bulk_status(&key).unwrap()["status"], "IN_PROGRESS");
        assert_eq!(
            t.deposit_transactions(&id).unwrap().len(),
            0,
            "not yet posted"
        );
        t.process_bulk(&key);
        t.process_bulk(&key);
        let status = t.bulk_status(&key).unwrap();
        assert_eq!(status["status"], "COMPLETE");
        let processed = status["processedItems"].as_array().unwrap();
        assert_eq!(processed.len(), 2);
        assert_eq!(processed[0]["externalId"], "B-1");
        assert_eq!(processed[0]["indexInRequest"], 0);
        assert_eq!(processed[1]["indexInRequest"], 6);
        let reasons: Vec<(i64, &str)> = status["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["indexInRequest"].as_i64().unwrap(),
                    e["errorReason"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            reasons,
            [
                (1, "EXTERNAL_ID_ALREADY_EXISTS"),
                (2, "INVALID_PARAMETERS"),
                (3, "INVALID_DEPOSIT_ACCOUNT_ID"),
                (4, "INVALID_DEPOSIT_AMOUNT"),
                (5, "INVALID_PARAMETERS"),
            ]
        );
        assert_eq!(status["errors"][0]["externalId"], "B-1");
        assert_eq!(
            t.get_deposit(&id).unwrap()["balances"]["totalBalance"].to_string(),
            "12.5"
        );
        assert_eq!(t.bulk_stats()["processed_items"], 2);
    }

    #[test]
    fn a_bulk_that_is_not_a_list_of_at_most_the_maximum_is_refused_whole() {
        let mut t = tenant();
        for body in [
            json!({}),
            json!({ "transactions": [] }),
            json!({ "transactions": [1] }),
            json!({ "transactions": vec![json!({ "accountId": "A", "amount": 1 }); MAX_BULK_ITEMS + 1] }),
        ] {
            let err = t.queue_bulk_deposits(&body).unwrap_err();
            assert_eq!(err.reason, "INVALID_PARAMETERS", "{body}");
        }
        assert!(t.bulks.is_empty());
        let err = t.bulk_status("nope").unwrap_err();
        assert_eq!(err.status.as_u16(), 404);
    }
}
