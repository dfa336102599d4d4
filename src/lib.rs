//! mambu-migrate moves a bank's legacy data into Mambu through its REST API.
//!
//! The parts, in the order data flows through them:
//! - [`cli`]: the command line (clap); one subcommand per user job, mapped to [`ExitStatus`].
//! - [`fixtures`]: deterministic synthetic data shaped like `fixtures/sample/`.
//! - [`sandbox`]: the embedded Mambu simulator (axum): stateful, faithful to Mambu's contracts,
//!   injects faults, reports what it holds. Shares no code with the client beyond plain data.
//!
//! Still to come (see ../shared/DESIGN.md): `plan` (YAML plan and templates), `source` (CSV
//! reading and grouping into units), `mambu` (the HTTP client), `run` (the executor),
//! `checkpoint` (SQLite), `estimate` and `report`.

pub mod checkpoint;
pub mod cli;
pub mod estimate;
pub mod files;
pub mod fixtures;
pub mod mambu;
pub mod plan;
pub mod report;
pub mod run;
pub mod sandbox;
pub mod source;
pub mod target;
pub mod validate;
pub mod verify;

use std::process::ExitCode;

/// The exit codes every subcommand shares (DESIGN.md, "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything done.
    Success = 0,
    /// Finished, but some units failed.
    SomeFailed = 1,
    /// Invalid input (usage, plan, CSV), or a subcommand that is not built yet.
    InvalidInput = 2,
    /// Stopped before the end (interrupt, error budget, deadline, credentials): resumable.
    Stopped = 3,
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status as u8)
    }
}
