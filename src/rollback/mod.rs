//! `rollback RUN_DIR --unit KEY… | --failed | --all` (issue 19): takes back what a run made
//! for the chosen units, so that they can be fixed and migrated again by `run --resume`.
//!
//! Each unit's steps, as the checkpoint saved them with their outputs (encodedKeys, transaction
//! keys), are undone newest first: that is the reverse dependency order (a loan's repayments
//! and fees before its disbursement, the disbursement before the approval, the loan before its
//! client; a deposit's transactions before the deposit). [`plan_undo`] says which call undoes
//! which step; [`rollback`] sends them through the same [`Session`] as a run (rate limit,
//! retries, an Idempotency-Key on each POST) and records each in the checkpoint
//! (`rollback_steps`, [`UndoLog`]) before the next goes, so a killed rollback resumes where it
//! stopped and sends no undo twice. A DELETE has no key: a second one answers 404, taken as
//! done, as an adjustment already made (TRANSACTION_ALREADY_ADJUSTED) is.
//!
//! What Mambu refuses (an account the end of day has touched, a client with other accounts) is
//! recorded with Mambu's reason and the unit left partly undone; a later rollback tries it
//! again. A unit wholly undone has its run records cleared: `run --resume` migrates it anew.
//! Exit codes (`../shared/DESIGN.md`): 0 every chosen unit undone, 1 some refused, 2 invalid
//! input (an embedded-sandbox run, an unknown unit), 3 stopped (credentials, outage).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::ExitStatus;
use crate::checkpoint::{UndoLog, UndoStatus};
use crate::mambu::client::{Keep, Request};
use crate::mambu::policy::Expect;
use crate::mambu::session::{Quiet, Sent, Session};
use crate::plan::action::Action;

#[derive(Debug, Clone)]
pub struct Options {
    pub run_dir: PathBuf,
    /// The units to undo (`--unit`); with `failed` or `all`, those too.
    pub units: Vec<String>,
    /// Every unit the run recorded as failed.
    pub failed: bool,
    /// Every unit the run recorded.
    pub all: bool,
    /// Where Mambu is, when not the run's target.
    pub target: Option<String>,
    pub rate: Option<f64>,
    /// `--confirm-production NAME`, as for `run`.
    pub confirm_production: Option<String>,
}

/// One call that undoes a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undo {
    pub method: &'static str,
    pub path: String,
    pub body: Option<String>,
    /// What it undoes (`post_repayment repayment#2`), for the record and the report.
    pub step: String,
}

impl Undo {
    /// `POST /loans/transactions/8a…:adjust`: what the record and the report show.
    pub fn call(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// What undoes one saved step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    Call(Undo),
    /// Nothing to send: it goes with an account deleted later (a schedule edit, a settlement
    /// link, an approval of a deposit, a loan rejected or withdrawn).
    Nothing {
        step: String,
        why: &'static str,
    },
    /// The tool cannot undo it (a write-off, a group, a plan's own request, a step whose
    /// outputs lack the key): the unit stays as it is from there on.
    Cannot {
        step: String,
        why: String,
    },
}

/// The calls that undo a unit's steps (`steps`: instance, action name, outputs, in the order
/// they finished), newest first.
pub fn plan_undo(steps: &[(String, String, Value)]) -> Vec<Planned> {
    steps
        .iter()
        .rev()
        .map(|(instance, action, outputs)| {
            let step = format!("{action} {instance}");
            let key = outputs
                .get("encodedKey")
                .or_else(|| outputs.get("id"))
                .and_then(Value::as_str);
            let call = |method, path: String, body: Option<Value>| {
                Planned::Call(Undo {
                    method,
                    path,
                    body: body.map(|b| b.to_string()),
                    step: step.clone(),
                })
            };
            let nothing = |why| Planned::Nothing {
                step: step.clone(),
                why,
            };
            let notes = json!({ "notes": "mambu-migrate rollback" });
            let Some(parsed) = Action::parse(action) else {
                return Planned::Cannot {
                    step: step.clone(),
                    why: format!("unknown action `{action}`"),
                };
            };
            let needs_key = !matches!(
                parsed,
                Action::EditSchedule
                    | Action::LinkSettlementAccount
                    | Action::ApproveDeposit
                    | Action::RejectLoan
                    | Action::WithdrawLoan
            );
            let key = match key {
                Some(key) => key,
                None if needs_key => {
                    return Planned::Cannot {
                        step: step.clone(),
                        why: "the checkpoint saved no encodedKey or id for it".into(),
                    };
                }
                None => "",
            };
            match parsed {
                Action::DisburseLoan | Action::ApplyFee | Action::PostRepayment => call(
                    "POST",
                    format!("/loans/transactions/{key}:adjust"),
                    Some(notes),
                ),
                Action::MakeDeposit | Action::MakeWithdrawal => call(
                    "POST",
                    format!("/deposits/transactions/{key}:adjust"),
                    Some(notes),
                ),
                Action::ApproveLoan => call(
                    "POST",
                    format!("/loans/{key}:changeState"),
                    Some(json!({ "action": "UNDO_APPROVE" })),
                ),
                Action::CloseLoan => call(
                    "POST",
                    format!("/loans/{key}:changeState"),
                    Some(json!({ "action": "UNDO_CLOSE" })),
                ),
                Action::CreateLoan => call("DELETE", format!("/loans/{key}"), None),
                Action::CreateDeposit => call("DELETE", format!("/deposits/{key}"), None),
                Action::CreateClient => call("DELETE", format!("/clients/{key}"), None),
                Action::EditSchedule => nothing("the schedule goes with its loan"),
                Action::LinkSettlementAccount => nothing("the link goes with its loan"),
                Action::ApproveDeposit => nothing("an approved deposit is deleted as it is"),
                Action::RejectLoan | Action::WithdrawLoan => {
                    nothing("a rejected or withdrawn loan is deleted as it is")
                }
                Action::WriteOffLoan | Action::CreateGroup | Action::Request => Planned::Cannot {
                    step: step.clone(),
                    why: format!("the tool does not undo `{action}`: undo it in Mambu by hand"),
                },
            }
        })
        .collect()
}

/// How one unit's rollback ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step undone; the unit's run records cleared.
    RolledBack,
    /// Stopped at a refusal: the calls before it are done, the rest not sent.
    Partly { call: String, reason: String },
}

/// Rolls the chosen units back; prints the summary and writes `rollback.csv`.
pub fn rollback(options: &Options) -> anyhow::Result<ExitStatus> {
    let db = options.run_dir.join("checkpoint.db");
    anyhow::ensure!(
        db.exists(),
        "{} holds no run (no checkpoint.db): give the run directory of a `mambu-migrate run`",
        options.run_dir.display()
    );
    let log = UndoLog::open(&db)?;
    let reader = crate::checkpoint::Reader::open(&db)?;
    let meta = reader.meta_all()?;
    let plan = crate::verify::RecordedPlan::of(&meta)?.plan;
    let target = crate::verify::recorded_target(options.target.as_deref(), &meta);
    anyhow::ensure!(
        !target.is_embedded(),
        "this run went to the embedded sandbox, which forgot everything when the run ended: there is nothing to roll back (give a tenant or a running `mambu-migrate sandbox` with --target URL)"
    );
    let known: Vec<String> = log.units_with_status(None)?;
    let mut chosen: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    let mut add = |unit: String, chosen: &mut Vec<String>| {
        if seen.insert(unit.clone()) {
            chosen.push(unit);
        }
    };
    if options.all {
        known.iter().for_each(|u| add(u.clone(), &mut chosen));
    }
    if options.failed {
        for u in log.units_with_status(Some("failed"))? {
            add(u, &mut chosen);
        }
    }
    for unit in &options.units {
        anyhow::ensure!(
            known.contains(unit),
            "unit `{unit}` is not in the run's checkpoint (never migrated, or rolled back already)"
        );
        add(unit.clone(), &mut chosen);
    }
    anyhow::ensure!(
        !chosen.is_empty() || options.all || options.failed,
        "say which units: --unit KEY…, --failed or --all"
    );
    if let Some(tenant) = crate::run::guard::production_tenant(&target) {
        eprintln!(
            "ROLLBACK of {} units: each is deleted from the tenant.",
            chosen.len()
        );
        if !crate::run::guard::confirm_production(
            &tenant,
            &target,
            &plan,
            chosen.len() as u64,
            options.confirm_production.as_deref(),
        )? {
            return Ok(ExitStatus::InvalidInput);
        }
    }
    let runtime = crate::runtime()?;
    let plan_name = plan.name.clone();
    let (outcomes, stopped) = runtime.block_on(async {
        let connection = crate::target::connect(
            &plan,
            &target,
            Duration::from_secs_f64(plan.settings.limits.timeout_seconds),
        )
        .await?;
        let session = connection.reader(&plan, options.rate);
        let mut outcomes: Vec<(String, Outcome)> = Vec::new();
        let mut stopped = None;
        for unit in &chosen {
            match undo_unit(&session, &log, &plan_name, unit).await? {
                Ok(outcome) => outcomes.push((unit.clone(), outcome)),
                Err(reason) => {
                    stopped = Some(reason);
                    break;
                }
            }
        }
        connection.close().await;
        anyhow::Ok((outcomes, stopped))
    })?;
    write_report(options, &outcomes)?;
    let rolled = outcomes
        .iter()
        .filter(|(_, o)| *o == Outcome::RolledBack)
        .count();
    println!(
        "rollback: {rolled} of {} units rolled back, {} partly (refused){}",
        chosen.len(),
        outcomes.len() - rolled,
        if stopped.is_some() { ", stopped" } else { "" }
    );
    for (unit, outcome) in &outcomes {
        if let Outcome::Partly { call, reason } = outcome {
            println!("  {unit}: {call} refused: {reason}");
        }
    }
    println!(
        "details in {}; `run --resume` migrates the rolled-back units again",
        options.run_dir.join("rollback.csv").display()
    );
    Ok(match stopped {
        Some(reason) => {
            eprintln!("stopped: {reason} (rollback again to go on where it stopped)");
            ExitStatus::Stopped
        }
        None if rolled == outcomes.len() => ExitStatus::Success,
        None => ExitStatus::SomeFailed,
    })
}

/// Undoes one unit: `Err` when the rollback must stop (credentials, outage, interrupt).
async fn undo_unit(
    session: &Session,
    log: &UndoLog,
    plan: &str,
    unit: &str,
) -> anyhow::Result<Result<Outcome, String>> {
    let steps = log.unit_steps_in_order(unit)?;
    let recorded = log.recorded(unit)?;
    for (seq, planned) in plan_undo(&steps).into_iter().enumerate() {
        let seq = seq as i64;
        if matches!(
            recorded.get(&seq),
            Some((UndoStatus::Done | UndoStatus::Skipped, _))
        ) {
            continue;
        }
        let undo = match planned {
            Planned::Nothing { step, why } => {
                log.record(unit, seq, &step, UndoStatus::Skipped, Some(why))?;
                continue;
            }
            Planned::Cannot { step, why } => {
                log.record(unit, seq, &step, UndoStatus::Refused, Some(&why))?;
                return Ok(Ok(Outcome::Partly {
                    call: step,
                    reason: why,
                }));
            }
            Planned::Call(undo) => undo,
        };
        let instance = format!("rollback#{seq}");
        let key = (undo.method == "POST").then(|| {
            crate::plan::ids::idempotency_key(plan, unit, &instance, undo.body.as_deref())
        });
        let request = Request {
            method: undo.method,
            path: &undo.path,
            body: undo.body.as_deref(),
            idempotency_key: key.as_deref(),
            v1: false,
            keep: Keep::All,
        };
        let call = undo.call();
        match session.send(&request, Expect::Any, &mut Quiet).await {
            Sent::Ok(_) => log.record(unit, seq, &call, UndoStatus::Done, None)?,
            Sent::Refused(answer, refusal) => {
                if already_undone(session, &undo, answer.status, refusal.reason.as_deref()).await {
                    log.record(unit, seq, &call, UndoStatus::Done, None)?;
                    continue;
                }
                let reason = refusal
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("HTTP {}", answer.status));
                let reason = match &refusal.source {
                    Some(source) => format!("{reason} ({source})"),
                    None => reason,
                };
                log.record(unit, seq, &call, UndoStatus::Refused, Some(&reason))?;
                return Ok(Ok(Outcome::Partly { call, reason }));
            }
            Sent::GaveUp { message, .. } => {
                log.record(unit, seq, &call, UndoStatus::Refused, Some(&message))?;
                return Ok(Ok(Outcome::Partly {
                    call,
                    reason: message,
                }));
            }
            Sent::Stop(reason) => return Ok(Err(reason)),
            Sent::Interrupted => return Ok(Err("interrupted".into())),
        }
    }
    log.clear_unit(unit)?;
    Ok(Ok(Outcome::RolledBack))
}

/// Whether a refusal says the undo was made already (its reply lost, sent again without a key
/// Mambu honoured): a DELETE's 404, an adjustment's TRANSACTION_ALREADY_ADJUSTED, an
/// UNDO_APPROVE's INVALID_STATE_TRANSITION on a loan read back PENDING_APPROVAL.
async fn already_undone(session: &Session, undo: &Undo, status: u16, reason: Option<&str>) -> bool {
    match (undo.method, status, reason) {
        ("DELETE", 404, _) => true,
        (_, _, Some("TRANSACTION_ALREADY_ADJUSTED")) => true,
        (_, _, Some("INVALID_STATE_TRANSITION"))
            if undo
                .body
                .as_deref()
                .is_some_and(|b| b.contains("UNDO_APPROVE")) =>
        {
            let loan = undo.path.trim_end_matches(":changeState");
            matches!(
                session.read(loan, Expect::Entity, Keep::All, &mut Quiet).await,
                Ok(Some(answer)) if answer.body.get("accountState").and_then(Value::as_str) == Some("PENDING_APPROVAL")
            )
        }
        _ => false,
    }
}

/// `rollback.csv` in the run directory: each chosen unit and how it ended.
fn write_report(options: &Options, outcomes: &[(String, Outcome)]) -> anyhow::Result<()> {
    let mut csv = String::from("unit,outcome,call,reason\n");
    for (unit, outcome) in outcomes {
        let (what, call, reason) = match outcome {
            Outcome::RolledBack => ("rolled_back", "", ""),
            Outcome::Partly { call, reason } => ("partly", call.as_str(), reason.as_str()),
        };
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        writeln!(
            csv,
            "{},{what},{},{}",
            quote(unit),
            quote(call),
            quote(reason)
        )?;
    }
    std::fs::write(options.run_dir.join("rollback.csv"), csv)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(instance: &str, action: &str, key: &str) -> (String, String, Value) {
        (
            instance.to_owned(),
            action.to_owned(),
            json!({ "encodedKey": key }),
        )
    }

    fn calls(planned: &[Planned]) -> Vec<String> {
        planned
            .iter()
            .map(|p| match p {
                Planned::Call(u) => u.call(),
                Planned::Nothing { step, .. } => format!("nothing: {step}"),
                Planned::Cannot { step, .. } => format!("cannot: {step}"),
            })
            .collect()
    }

    #[test]
    fn a_unit_is_undone_newest_first() {
        let steps = vec![
            step("client", "create_client", "C"),
            step("deposit", "create_deposit", "D"),
            step("approve_deposit", "approve_deposit", "D"),
            step("loan", "create_loan", "L"),
            step("approve", "approve_loan", "L"),
            step("disburse", "disburse_loan", "T1"),
            step("repayment#0", "post_repayment", "T2"),
            step("repayment#1", "post_repayment", "T3"),
            step("deposit_tx#0", "deposit", "T4"),
        ];
        assert_eq!(
            calls(&plan_undo(&steps)),
            [
                "POST /deposits/transactions/T4:adjust",
                "POST /loans/transactions/T3:adjust",
                "POST /loans/transactions/T2:adjust",
                "POST /loans/transactions/T1:adjust",
                "POST /loans/L:changeState",
                "DELETE /loans/L",
                "nothing: approve_deposit approve_deposit",
                "DELETE /deposits/D",
                "DELETE /clients/C",
            ]
        );
    }

    #[test]
    fn what_the_tool_cannot_undo_is_said_and_a_missing_key_too() {
        let steps = vec![
            step("client", "create_client", "C"),
            ("loan".into(), "create_loan".into(), json!({})),
            step("writeoff", "write_off_loan", "L"),
        ];
        let planned = plan_undo(&steps);
        assert!(
            matches!(&planned[0], Planned::Cannot { why, .. } if why.contains("write_off_loan"))
        );
        assert!(matches!(&planned[1], Planned::Cannot { why, .. } if why.contains("encodedKey")));
    }
}
