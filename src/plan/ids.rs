//! The stable identities the plan gives every call: a step instance's id, the Idempotency-Key of
//! its request and the externalId of a transaction whose plan sets none. They are the same on
//! every retry, resume and reload of the same request, so `run` replays safely and `verify`
//! finds what `run` made.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::compiled::{Compiled, Planned};

/// Namespace of the run's idempotency keys and generated externalIds.
const NAMESPACE: Uuid = Uuid::from_u128(0x6d61_6d62_752d_6d69_6772_6174_652d_7631);

/// A step instance's id in a unit: its rows' path and the step's id
/// (`clients/CL-1/loans/LN-1#disburse`). The checkpoint records steps by it.
pub fn instance_id(compiled: &Compiled, planned: &Planned<'_>) -> String {
    format!("{}#{}", planned.instance(), compiled.step(planned.step).id)
}

/// The externalId given to a transaction whose plan sets none (`verify` finds it by it).
pub fn external_id(plan: &str, unit: &str, instance: &str) -> String {
    Uuid::new_v5(
        &NAMESPACE,
        format!("ext|{plan}|{unit}|{instance}").as_bytes(),
    )
    .to_string()
}

/// UUIDv5 of (plan, unit, step instance, body): the same on every retry and resume of the same
/// request, different for every logical call, and different when the data was fixed and reloaded
/// (a key may only be reused with the exact same request).
pub fn idempotency_key(plan: &str, unit: &str, instance: &str, body: Option<&str>) -> String {
    let digest = Sha256::digest(body.unwrap_or_default().as_bytes());
    Uuid::new_v5(
        &NAMESPACE,
        format!("{plan}|{unit}|{instance}|{}", hex::encode(&digest[..8])).as_bytes(),
    )
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn idempotency_keys_are_stable_per_request_and_change_with_the_body() {
        let body = json!({ "amount": 10 }).to_string();
        let a = idempotency_key("p", "CL-1", "clients/CL-1#client", Some(&body));
        assert_eq!(
            a,
            idempotency_key("p", "CL-1", "clients/CL-1#client", Some(&body))
        );
        assert_ne!(
            a,
            idempotency_key(
                "p",
                "CL-1",
                "clients/CL-1#client",
                Some(&json!({ "amount": 11 }).to_string())
            )
        );
        assert_ne!(
            a,
            idempotency_key("p", "CL-2", "clients/CL-2#client", Some(&body))
        );
        assert_eq!(Uuid::parse_str(&a).unwrap().get_version_num(), 5);
    }
}
