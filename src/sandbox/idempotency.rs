//! Idempotency keys (`../shared/mambu-api.md` §3): the first answer given under each
//! `Idempotency-Key`, kept for a bounded number of keys and a bounded time, oldest forgotten
//! first. A key forgotten (aged past the retention, or pushed out by newer ones) is a new
//! request again, as Mambu treats a key after its expiry: the tool's second line of defence
//! (ids and externalIds) must then catch the duplicate.

use std::collections::{HashMap, VecDeque};

use axum::http::StatusCode;
use chrono::{DateTime, TimeDelta, Utc};

/// Idempotency keys are kept for this many requests, oldest forgotten first. Mambu does not
/// publish how long it keeps them; a bound keeps a long rehearsal's memory flat, and the tool
/// must not rely on keys alone anyway (ids and externalIds are the second line).
pub const KEPT_KEYS: usize = 200_000;

/// How long a key is kept when the tenant profile does not say (`idempotencyKeyRetention`).
/// Assumed, the stricter reading: the public record does not say how long Mambu keeps keys
/// (`../shared/mambu-api.md` §3, "NOT FOUND"); 24 hours is the window the common idempotency
/// designs keep, and shorter than a migration that resumes over several nights, so a rehearsal
/// meets keys that have expired between one night's run and the next.
pub const DEFAULT_RETENTION: TimeDelta = TimeDelta::hours(24);

/// The first answer given under an Idempotency-Key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub fingerprint: [u8; 32],
    pub status: StatusCode,
    /// The answer as sent (text: a tenth of the memory of a parsed value).
    pub body: Box<str>,
    /// When the answer was first given: the key's age counts from here.
    pub at: DateTime<Utc>,
}

/// The keys and their answers, in the order they came.
#[derive(Debug)]
pub struct KeyStore {
    answers: HashMap<String, Stored>,
    /// Each key as stored, with the instant it was stored: a key stored again after it expired
    /// is here twice, and only its newest entry still names its answer.
    order: VecDeque<(String, DateTime<Utc>)>,
    retention: TimeDelta,
}

impl KeyStore {
    pub fn new(retention: TimeDelta) -> Self {
        Self {
            answers: HashMap::new(),
            order: VecDeque::new(),
            retention,
        }
    }

    pub fn retention(&self) -> TimeDelta {
        self.retention
    }

    /// How many keys are kept.
    pub fn len(&self) -> usize {
        self.answers.len()
    }

    /// The answer stored under `key`, whatever its age.
    pub fn peek(&self, key: &str) -> Option<&Stored> {
        self.answers.get(key)
    }

    /// The answer stored under `key`, unless it is older than the retention at `now` (then it
    /// is forgotten).
    pub fn get(&mut self, key: &str, now: DateTime<Utc>) -> Option<&Stored> {
        if self
            .answers
            .get(key)
            .is_some_and(|stored| now - stored.at > self.retention)
        {
            self.answers.remove(key);
        }
        self.answers.get(key)
    }

    /// Stores `key`'s answer, forgetting the keys aged past the retention at `stored.at` and the
    /// oldest past [`KEPT_KEYS`]; returns the keys forgotten (a durable sandbox deletes them
    /// from its file too).
    pub fn insert(&mut self, key: String, stored: Stored) -> Vec<String> {
        let now = stored.at;
        self.order.push_back((key.clone(), now));
        self.answers.insert(key, stored);
        let mut forgotten = Vec::new();
        while let Some((old, at)) = self.order.front() {
            if self.order.len() <= KEPT_KEYS && now - *at <= self.retention {
                break;
            }
            if self.answers.get(old).is_some_and(|s| s.at == *at) {
                self.answers.remove(old);
                forgotten.push(old.clone());
            }
            self.order.pop_front();
        }
        forgotten
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(at: DateTime<Utc>) -> Stored {
        Stored {
            fingerprint: [7; 32],
            status: StatusCode::CREATED,
            body: "{}".into(),
            at,
        }
    }

    #[test]
    fn a_key_older_than_the_retention_is_forgotten_and_may_be_stored_again() {
        let start = DateTime::UNIX_EPOCH;
        let mut keys = KeyStore::new(TimeDelta::seconds(2));
        assert!(keys.insert("a".into(), stored(start)).is_empty());
        assert!(keys.get("a", start + TimeDelta::seconds(2)).is_some());
        assert!(keys.get("a", start + TimeDelta::seconds(3)).is_none());
        // A new request under the forgotten key is stored afresh and kept its own 2 seconds,
        // though its first entry is pushed out by the next key.
        let again = start + TimeDelta::seconds(3);
        assert!(keys.insert("a".into(), stored(again)).is_empty());
        let later = again + TimeDelta::seconds(1);
        assert!(keys.insert("b".into(), stored(later)).is_empty());
        assert_eq!(keys.get("a", later).map(|s| s.at), Some(again));
        // Storing a key forgets those aged past the retention by then.
        let much_later = later + TimeDelta::seconds(10);
        assert_eq!(
            keys.insert("c".into(), stored(much_later)),
            vec!["a".to_owned(), "b".to_owned()]
        );
        assert!(keys.get("b", much_later).is_none());
        assert!(keys.get("c", much_later).is_some());
    }

    #[test]
    fn past_the_cap_the_oldest_key_is_forgotten() {
        let at = DateTime::UNIX_EPOCH;
        let mut keys = KeyStore::new(DEFAULT_RETENTION);
        for n in 0..KEPT_KEYS {
            keys.insert(n.to_string(), stored(at));
        }
        assert_eq!(keys.insert("new".into(), stored(at)), vec!["0".to_owned()]);
        assert!(keys.get("0", at).is_none());
        assert!(keys.get("1", at).is_some());
    }
}
