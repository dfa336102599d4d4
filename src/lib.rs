//! mambu-migrate moves a bank's legacy data into Mambu through its REST API.
//!
//! The parts, in the order data flows through them:
//! - [`plan`]: the YAML plan: serde model and JSON Schema, loading with line:column, checks,
//!   templates (minijinja, typed JSON), and a unit expanded into the calls it makes.
//! - [`source`]: CSV reading (BOM, CRLF, quotes), typed cells, grouping rows into units with an
//!   external sort (bounded memory), and the field scan (chosen cells of every record, parallel,
//!   no sort) that `plan estimate` counts with.
//! - [`validate`]: every problem of plan, data and tenant, before anything is sent.
//! - [`estimate`]: volumes, calls per step, sample calls, timing, calls that could be saved, for
//!   Mambu's onboarding team; one counting pass over the extract.
//! - [`run`]: the executor: rate limit, retries, adoption, error budget, stops, resume. The one
//!   place that joins the parts.
//! - [`mambu`]: the HTTP client (the only module that sees reqwest) and the one function that
//!   classifies answers. [`target`] says where calls go (embedded sandbox or tenant).
//! - [`checkpoint`]: the run's SQLite store (the only module that sees rusqlite).
//! - [`report`]: report.md/json, errors.csv and `status`, read from the checkpoint.
//! - [`verify`]: reads Mambu back, reconciles it with the source, writes the evidence pack.
//! - [`sandbox`]: the embedded Mambu simulator (axum): stateful, faithful to Mambu's contracts,
//!   injects faults, reports what it holds. Shares no code with the client beyond plain data.
//! - [`fixtures`]: deterministic synthetic data shaped like `fixtures/sample/`.
//! - [`files`]: owner-only files and their hashes. [`cli`]: the command line (clap), one
//!   subcommand per user job, mapped to an [`ExitStatus`].

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
