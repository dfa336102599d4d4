//! `rollback RUN_DIR --unit KEY… | --failed | --all` (issue 19): takes back what a run made
//! for the chosen units, so that they can be fixed and migrated again by `run --resume`.
//!
//! Each unit's steps, as the checkpoint saved them with their outputs (encodedKeys, transaction
//! keys), are undone newest first: that is the reverse dependency order (a loan's repayments
//! and fees before its disbursement, the disbursement before the approval, the loan before its
//! client; a deposit's transactions before the deposit; a group's loans before the group, the
//! group before its member clients). A write-off is undone by `POST /loans/{id}:undoWriteOff`,
//! a close by `UNDO_CLOSE`, a bulk deposit item by adjusting the transaction its bulk posted
//! (the bulk's status names it). [`plan_undo`] says which call undoes
//! which step; [`rollback`] sends them through the same [`Session`] as a run (rate limit,
//! retries, an Idempotency-Key on each POST) and records each in the checkpoint
//! (`rollback_steps`, [`UndoLog`]) before the next goes, so a killed rollback resumes where it
//! stopped and sends no undo twice. A DELETE has no key: a second one answers 404, taken as
//! done, as an adjustment already made (TRANSACTION_ALREADY_ADJUSTED) is.
//!
//! What Mambu refuses (a write-off an end of day has made final, a client with other accounts) is
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
    /// The tool cannot undo it (a plan's own request, a step whose outputs lack the key): the
    /// unit stays as it is from there on.
    Cannot {
        step: String,
        why: String,
    },
}

/// The calls that undo a unit's steps (`steps`: instance, action name, outputs, in the order
/// they finished), newest first. `read_only`: the ids of the unit's steps that only read (a
/// `request` whose calls were all GETs), nothing to undo.
pub fn plan_undo(steps: &[(String, String, Value)], read_only: &HashSet<String>) -> Vec<Planned> {
    steps
        .iter()
        .enumerate()
        .rev()
        .map(|(at, (instance, action, outputs))| {
            let step = format!("{action} {instance}");
            let parsed = Action::parse(action);
            // A write-off answers 204 without a body: its loan is the one the unit created in
            // the enclosing scope.
            let key = key_of(outputs).or_else(|| {
                matches!(parsed, Some(Action::WriteOffLoan | Action::CloseLoan))
                    .then(|| enclosing_loan(&steps[..at], instance))
                    .flatten()
            });
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
            let Some(parsed) = parsed else {
                return Planned::Cannot {
                    step: step.clone(),
                    why: format!("unknown action `{action}`"),
                };
            };
            let step_id = instance
                .rsplit_once('#')
                .map_or(instance.as_str(), |(_, id)| id);
            if parsed == Action::Request && read_only.contains(step_id) {
                return nothing("a read changes nothing");
            }
            let needs_key = !matches!(
                parsed,
                Action::Request
                    | Action::EditSchedule
                    | Action::LinkSettlementAccount
                    | Action::ApproveDeposit
                    | Action::RejectLoan
                    | Action::WithdrawLoan
            );
            let key = match key {
                Some(key) => key,
                None if needs_key => {
                    let why = if outputs.get("bulkProcessKey").is_some() {
                        "its bulk's status gave no id, and no transaction of its deposit has its externalId"
                    } else {
                        "the checkpoint saved no encodedKey or id for it"
                    };
                    return Planned::Cannot {
                        step: step.clone(),
                        why: why.into(),
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
                Action::CreateGroup => call("DELETE", format!("/groups/{key}"), None),
                Action::WriteOffLoan => {
                    call("POST", format!("/loans/{key}:undoWriteOff"), Some(notes))
                }
                Action::EditSchedule => nothing("the schedule goes with its loan"),
                Action::LinkSettlementAccount => nothing("the link goes with its loan"),
                Action::ApproveDeposit => nothing("an approved deposit is deleted as it is"),
                Action::RejectLoan | Action::WithdrawLoan => {
                    nothing("a rejected or withdrawn loan is deleted as it is")
                }
                Action::Request => Planned::Cannot {
                    step: step.clone(),
                    why: format!("the tool does not undo `{action}`: undo it in Mambu by hand"),
                },
            }
        })
        .collect()
}

/// The encodedKey (or id) a step's outputs saved.
fn key_of(outputs: &Value) -> Option<&str> {
    outputs
        .get("encodedKey")
        .or_else(|| outputs.get("id"))
        .and_then(Value::as_str)
}

/// The key of the loan `instance` acts on: the newest `create_loan` of `before` whose scope
/// (`clients/CL-1/loans/LN-2`, the instance before its `#step`) holds the instance's.
fn enclosing_loan<'a>(before: &'a [(String, String, Value)], instance: &str) -> Option<&'a str> {
    fn scope(instance: &str) -> &str {
        instance.split('#').next().unwrap_or(instance)
    }
    let inner = scope(instance);
    before
        .iter()
        .rev()
        .filter(|(_, action, _)| Action::parse(action) == Some(Action::CreateLoan))
        .find(|(loan, _, _)| {
            let outer = scope(loan);
            inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
        .and_then(|(_, _, outputs)| key_of(outputs))
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
    // report.md and report.json show the rollbacks made (and errors.csv loses the units undone).
    if let Err(e) = crate::report::write_all(&options.run_dir) {
        eprintln!("warning: the run's reports were not rewritten: {e:#}");
    }
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
        "details in {} (and report.md); `run --resume` migrates the rolled-back units again",
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
    let mut steps = log.unit_steps_in_order(unit)?;
    for (instance, action, outputs) in &mut steps {
        if Action::parse(action) == Some(Action::MakeDeposit)
            && key_of(outputs).is_none()
            && let Some(key) = bulk_transaction(session, log, unit, instance, outputs).await?
        {
            outputs["encodedKey"] = Value::String(key);
        }
    }
    let read_only = log.read_only_steps(unit)?;
    let recorded = log.recorded(unit)?;
    for (seq, planned) in plan_undo(&steps, &read_only).into_iter().enumerate() {
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

/// The encodedKey of the transaction a bulk posted for a `deposit` step whose outputs name only
/// the bulk (Mambu's bulk status need not give an item's id): read back on its deposit by the
/// externalId the item was sent with (`plan validate` asks every bulk item for one). `None`
/// when it cannot be found (the step is then reported as one the tool cannot undo).
async fn bulk_transaction(
    session: &Session,
    log: &UndoLog,
    unit: &str,
    instance: &str,
    outputs: &Value,
) -> anyhow::Result<Option<String>> {
    let Some(bulk) = outputs.get("bulkProcessKey").and_then(Value::as_str) else {
        return Ok(None);
    };
    let Some(item) = log.bulk_item(bulk, unit, instance)? else {
        return Ok(None);
    };
    let (Some(account), Some(external_id)) = (
        item.get("accountId").and_then(Value::as_str),
        item.get("externalId").and_then(Value::as_str),
    ) else {
        return Ok(None);
    };
    let path = format!(
        "/deposits/{}/transactions",
        crate::mambu::adopt::encode(account)
    );
    let found = session.list(&path, &mut Quiet).await.ok().and_then(|list| {
        list.into_iter()
            .find(|t| t.get("externalId").and_then(Value::as_str) == Some(external_id))
    });
    Ok(found.and_then(|t| key_of(&t).map(str::to_owned)))
}

/// Whether a refusal says the undo was made already (its reply lost, sent again without a key
/// Mambu honoured): a DELETE's 404, an adjustment's TRANSACTION_ALREADY_ADJUSTED, a loan state
/// undo's INVALID_STATE_TRANSITION on a loan read back in the state the undo leads to.
async fn already_undone(session: &Session, undo: &Undo, status: u16, reason: Option<&str>) -> bool {
    match (undo.method, status, reason) {
        ("DELETE", 404, _) => true,
        (_, _, Some("TRANSACTION_ALREADY_ADJUSTED")) => true,
        (_, _, Some("INVALID_STATE_TRANSITION")) => {
            let Some((loan, states)) = state_after(undo) else {
                return false;
            };
            matches!(
                session.read(loan, Expect::Entity, Keep::All, &mut Quiet).await,
                Ok(Some(answer)) if answer.body.get("accountState").and_then(Value::as_str).is_some_and(|s| states.contains(&s))
            )
        }
        _ => false,
    }
}

/// The loan a state undo acts on (`/loans/8a…`) and the states it leads to: UNDO_APPROVE to
/// PENDING_APPROVAL, UNDO_CLOSE and undoWriteOff to ACTIVE (in arrears or not).
fn state_after(undo: &Undo) -> Option<(&str, &'static [&'static str])> {
    const ACTIVE: &[&str] = &["ACTIVE", "ACTIVE_IN_ARREARS"];
    if let Some(loan) = undo.path.strip_suffix(":undoWriteOff") {
        return Some((loan, ACTIVE));
    }
    let loan = undo.path.strip_suffix(":changeState")?;
    let body = undo.body.as_deref()?;
    if body.contains("UNDO_APPROVE") {
        Some((loan, &["PENDING_APPROVAL"]))
    } else if body.contains("UNDO_CLOSE") {
        Some((loan, ACTIVE))
    } else {
        None
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
            calls(&plan_undo(&steps, &HashSet::new())),
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
            ("read".into(), "request".into(), json!({})),
        ];
        let planned = plan_undo(&steps, &HashSet::new());
        assert!(matches!(&planned[0], Planned::Cannot { why, .. } if why.contains("request")));
        assert!(matches!(&planned[1], Planned::Cannot { why, .. } if why.contains("encodedKey")));
    }

    #[test]
    fn a_request_that_only_read_has_nothing_to_undo() {
        let steps = vec![
            step("clients/C#client", "create_client", "C"),
            (
                "clients/C/securities/S1#guarantee_account".into(),
                "request".into(),
                json!({}),
            ),
        ];
        let read_only = HashSet::from(["guarantee_account".to_owned()]);
        assert!(matches!(
            &plan_undo(&steps, &read_only)[0],
            Planned::Nothing { .. }
        ));
    }

    #[test]
    fn a_write_off_and_a_close_act_on_their_own_loan_and_a_group_goes_before_its_members() {
        let empty =
            |instance: &str, action: &str| (instance.to_owned(), action.to_owned(), json!({}));
        let steps = vec![
            step("groups/G1/members/M1#member", "create_client", "M1"),
            step("groups/G1#group", "create_group", "G"),
            step("groups/G1/loans/A#loan", "create_loan", "LA"),
            step("groups/G1/loans/B#loan", "create_loan", "LB"),
            empty("groups/G1/loans/A/closures/A#write_off", "write_off_loan"),
            empty("groups/G1/loans/B/closures/B#close", "close_loan"),
        ];
        assert_eq!(
            calls(&plan_undo(&steps, &HashSet::new())),
            [
                "POST /loans/LB:changeState",
                "POST /loans/LA:undoWriteOff",
                "DELETE /loans/LB",
                "DELETE /loans/LA",
                "DELETE /groups/G",
                "DELETE /clients/M1",
            ]
        );
    }
}
