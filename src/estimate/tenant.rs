//! The tenant's lookups (`--target`), read once so sample calls show real encodedKeys.

use serde_json::Value;

use crate::plan::check::Plan;

/// Reads every lookup table of the plan from `target` (`sandbox` or a base URL).
pub fn read_lookups(plan: &Plan, target: &str) -> anyhow::Result<Value> {
    crate::target::fetch_lookups(plan, &crate::target::Where::parse(target))
}
