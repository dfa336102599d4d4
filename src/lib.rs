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
//! - [`run`]: the executor: scheduling units, the error budget, stops, attempts and resume,
//!   failed rows, progress. The one place that joins the parts.
//! - [`mambu`]: everything about talking to Mambu (the only module that sees reqwest): the
//!   client, the one rate limit, the one retry policy, a [`mambu::Session`] that reads lists page
//!   by page, and adoption. `run`, `verify`, `validate` and `estimate` talk to Mambu only
//!   through it. [`target`] says where calls go (embedded sandbox or a URL) and connects.
//! - [`checkpoint`]: the run's SQLite store (the only module that sees rusqlite).
//! - [`report`]: report.md/json, errors.csv and `status`, read from the checkpoint; and
//!   [`report::render`], the one HTML escape, number format and Markdown table every report
//!   (`estimate` and `verify` too) is written with: it depends on nothing of the crate.
//! - [`dashboard`]: the cutover dashboard, [`report::page`] served live over HTTP (axum) from
//!   the run directory by `run --dashboard` and `status --serve`.
//! - [`verify`]: reads Mambu back, reconciles it with the source, writes the evidence pack.
//! - [`sandbox`]: the embedded Mambu simulator (axum): stateful, faithful to Mambu's contracts,
//!   injects faults, reports what it holds. Shares no code with the client beyond plain data.
//! - [`fixtures`]: deterministic synthetic data shaped like `fixtures/sample/`.
//! - [`files`]: owner-only files and their hashes. [`cli`]: the command line (clap), one
//!   subcommand per user job, mapped to an [`ExitStatus`]. `stored_as_text!` declares the enums
//!   the checkpoint stores as text (a call's outcome, a step's status, an attempt's kind and
//!   state); text none of their values names is an [`UnknownText`].

pub mod catchup;
pub mod checkpoint;
pub mod cli;
pub mod dashboard;
pub mod estimate;
pub mod files;
pub mod fixtures;
pub mod mambu;
pub mod plan;
pub mod report;
pub mod rollback;
pub mod run;
pub mod sandbox;
pub mod source;
pub mod target;
pub mod validate;
pub mod verify;

use std::process::ExitCode;

/// The async runtime of every subcommand that talks to Mambu or serves the sandbox: one
/// definition (worker threads, timers, I/O) instead of one per module.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The exit codes every subcommand shares (`../shared/DESIGN.md`, "Exit codes").
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

/// A failure that ends a subcommand, typed by what it means for the user. Every error becomes
/// an exit code in one place, [`ExitStatus::of`]: an `anyhow::Error` that is not one of these
/// was found before anything was sent (invalid input, exit 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Calls were sent, then the run could not go on: what it did is recorded, and resuming
    /// goes on from there (exit 3).
    #[error("{reason}. Resume with:\n  {resume}")]
    Stopped { reason: String, resume: String },
}

/// Text stored by an earlier run (in the checkpoint) that names no value of the type it is read
/// as: a checkpoint written by a newer version, or edited by hand. Whoever reads it adds where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {text:?} (known: {})", .known.join(", "))]
pub struct UnknownText {
    /// What the text was read as, e.g. `call outcome`.
    pub what: &'static str,
    pub text: String,
    /// Every text that type knows.
    pub known: &'static [&'static str],
}

/// Declares an enum whose values are stored as text: `as_str` gives the text each value is
/// stored as (it never changes: checkpoints already written are read with it), and `FromStr`
/// reads it back, an unknown text being an [`UnknownText`] that says what was read.
///
/// ```ignore
/// stored_as_text! {
///     /// How a step ended.
///     pub enum StepStatus: "step status" {
///         Done = "done",
///         Skipped = "skipped",
///     }
/// }
/// ```
macro_rules! stored_as_text {
    (
        $(#[$attr:meta])*
        $vis:vis enum $name:ident: $what:literal {
            $($(#[$variant_attr:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$variant_attr])* $variant,)+
        }

        impl $name {
            /// The text of every value, in the order they are declared.
            pub const TEXTS: &'static [&'static str] = &[$($text),+];

            /// The text this value is stored as.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::UnknownText;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::UnknownText {
                        what: $what,
                        text: text.to_owned(),
                        known: Self::TEXTS,
                    }),
                }
            }
        }
    };
}
pub(crate) use stored_as_text;

impl ExitStatus {
    /// The exit status of a subcommand that failed with `error`.
    pub fn of(error: &anyhow::Error) -> ExitStatus {
        match error.downcast_ref::<Error>() {
            Some(Error::Stopped { .. }) => ExitStatus::Stopped,
            None => ExitStatus::InvalidInput,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_after_calls_exits_3_and_anything_else_2() {
        let stopped: anyhow::Error = Error::Stopped {
            reason: "the reports could not be written".into(),
            resume: "mambu-migrate run p.yaml --run-dir r --resume".into(),
        }
        .into();
        assert_eq!(ExitStatus::of(&stopped), ExitStatus::Stopped);
        assert_eq!(
            stopped.to_string(),
            "the reports could not be written. Resume with:\n  mambu-migrate run p.yaml --run-dir r --resume"
        );
        let context = stopped.context("run");
        assert_eq!(ExitStatus::of(&context), ExitStatus::Stopped);
        assert_eq!(
            ExitStatus::of(&anyhow::anyhow!("bad plan")),
            ExitStatus::InvalidInput
        );
    }
}
