//! The command line: clap definitions, one subcommand per user job, and their dispatch.
//!
//! Only this module sees clap. Each subcommand turns its raw arguments into the typed
//! configuration of the module that does the job, runs it, and returns an [`ExitStatus`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::ExitStatus;
use crate::report::render::Format as ReportFormat;
use crate::sandbox::{self, Faults, IdempotencyMode, SandboxConfig};

#[derive(Debug, Parser)]
#[command(
    name = "mambu-migrate",
    version,
    about = "Move a bank's legacy data into Mambu through its REST API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// How fast to call Mambu: `run`, `plan estimate` and `verify` take it alike.
#[derive(Debug, Args)]
pub struct Pace {
    /// Calls per second (default: the plan's limits.requests_per_second; verify: the run's).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Units in flight at once (default: the plan's limits.concurrency; verify: the run's).
    #[arg(long)]
    pub concurrency: Option<u32>,
}

impl Pace {
    /// The rate, refused unless above 0.
    fn rate(&self) -> anyhow::Result<Option<f64>> {
        if let Some(rate) = self.rate {
            anyhow::ensure!(
                rate > 0.0 && rate.is_finite(),
                "--rate must be above 0, got {rate}"
            );
        }
        Ok(self.rate)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a migration plan: every unit through every step, rate-limited and resumable.
    Run(RunArgs),
    /// Check, estimate or describe a plan.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Summarise a run directory: where a run stands.
    Status(RunDirArgs),
    /// Reconcile what Mambu holds against the source data of a run; write the evidence pack.
    Verify(VerifyArgs),
    /// Undo what a run made for some units (newest first), so that they migrate again.
    Rollback(RollbackArgs),
    /// Serve the embedded Mambu simulator over HTTP.
    Sandbox(SandboxArgs),
    /// Describe or check a tenant profile (what the sandbox serves with --tenant).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Generate synthetic migration data.
    #[command(subcommand)]
    Fixtures(FixturesCommand),
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Print a tenant profile's JSON Schema.
    Schema,
    /// Check a tenant profile file: what the sandbox would refuse to serve, with where.
    Check {
        /// The profile (YAML), e.g. fixtures/tenants/strict.yaml.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The plan file (YAML).
    pub plan: PathBuf,
    /// `sandbox` or the tenant's base URL.
    #[arg(long)]
    pub target: Option<String>,
    /// Override a source's file: NAME=PATH.
    #[arg(long = "source", value_name = "NAME=PATH")]
    pub sources: Vec<String>,
    /// The run directory (default `runs/<plan name>/`).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Resume the unfinished run in the run directory (with the files its last attempt read,
    /// a reload included).
    #[arg(long)]
    pub resume: bool,
    /// Catch up a finished run with a newer extract (give its files with --source): units
    /// that did not change are skipped without a call, new units and new rows migrated,
    /// changes to rows already migrated listed in drift.csv (and applied where the plan
    /// declares an update with `on_change`). Opens a new phase of the run; --resume continues it.
    #[arg(long, conflicts_with_all = ["resume", "reload", "sample", "dry_run"])]
    pub catch_up: bool,
    /// With --catch-up: where the previous phase's file of a source is now (NAME=PATH), when it
    /// was moved; it must hold the same data.
    #[arg(long = "baseline", value_name = "NAME=PATH", requires = "catch_up")]
    pub baseline: Vec<String>,
    /// Reload fixed failed rows: resume, reading every source that has a file in the run's
    /// failed/ATTEMPT/ folder from it (`latest` when no value is given, an attempt's number,
    /// or a folder's path). The units that failed are tried again from the step they failed at.
    #[arg(long, value_name = "ATTEMPT", num_args = 0..=1, default_missing_value = "latest")]
    pub reload: Option<String>,
    /// Migrate only the first N units (the sample migration).
    #[arg(long)]
    pub sample: Option<u64>,
    /// Stop starting units at this time: HH:MM (local) or RFC 3339; units in flight finish.
    #[arg(long)]
    pub deadline: Option<String>,
    #[command(flatten)]
    pub pace: Pace,
    /// No progress bar: one line every 10 seconds instead.
    #[arg(long)]
    pub no_progress: bool,
    /// Serve the run's live dashboard (a web page) on ADDR, loopback by default; any other
    /// address needs the token printed at the start.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = crate::dashboard::DEFAULT_ADDR)]
    pub dashboard: Option<String>,
    /// Render and check every call the run would make, write them to the run directory's
    /// dry-run.jsonl, and send none.
    #[arg(long)]
    pub dry_run: bool,
    /// Confirm a run against a production tenant by its name (needed without a terminal).
    #[arg(long, value_name = "TENANT")]
    pub confirm_production: Option<String>,
    /// Go on although what the plan uses of the tenant (products, branches, custom fields, time
    /// zone) changed since the rehearsal recorded it (or, resuming, since the run began); the
    /// changes go to run.log and the tenant is recorded as it is now.
    #[arg(long)]
    pub accept_tenant_changes: bool,
    /// The tenant record to compare with and write (default:
    /// `<run dir's parent>/.tenants/<plan name>@<tenant>.json`).
    #[arg(long, value_name = "FILE")]
    pub tenant_record: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Report every problem in a plan and its data before anything touches a tenant.
    Validate(ValidateArgs),
    /// Volumes, sample calls and timings for Mambu's onboarding team.
    Estimate(EstimateArgs),
    /// Print the plan's JSON Schema.
    Schema,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The plan file (YAML).
    pub plan: PathBuf,
    /// Override a source's file: NAME=PATH (the same plan on the sample and on the full extract).
    #[arg(long = "source", value_name = "NAME=PATH")]
    pub sources: Vec<String>,
    /// Also check against a tenant's configuration (products, branches, limits): `sandbox` or
    /// its base URL (credentials from MAMBU_API_KEY, or MAMBU_USERNAME and MAMBU_PASSWORD).
    #[arg(long)]
    pub target: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
    pub format: ValidateFormat,
    /// With --target: the tenant record to compare with and write (default:
    /// `runs/.tenants/<plan name>@<tenant>.json`, where a run with the default run directory
    /// looks).
    #[arg(long, value_name = "FILE")]
    pub tenant_record: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EstimateArgs {
    /// The plan file (YAML).
    pub plan: PathBuf,
    /// Override a source's file: NAME=PATH (estimate the full extract with the sample's plan).
    #[arg(long = "source", value_name = "NAME=PATH")]
    pub sources: Vec<String>,
    /// Read the lookups from a tenant (`sandbox` or its base URL), so sample calls show them.
    #[arg(long)]
    pub target: Option<String>,
    #[command(flatten)]
    pub pace: Pace,
    /// Assumed latency of one call, ms (endpoints a --from-run sample did not measure).
    #[arg(long, default_value_t = crate::estimate::DEFAULT_LATENCY_MS)]
    pub latency_ms: f64,
    /// A sample run's directory: use its measured latencies, retry and throttle rates.
    #[arg(long, value_name = "RUN_DIR")]
    pub from_run: Option<PathBuf>,
    /// Count only what a catch-up of the run in RUN_DIR with this extract would send (`run
    /// --catch-up`): the night's calls and time, the units unchanged, new and changed.
    #[arg(long, value_name = "RUN_DIR")]
    pub catch_up: Option<PathBuf>,
    /// The cutover window (8h, 90m, 2h30m): does the run fit, and if not what it needs.
    #[arg(long, value_name = "DURATION")]
    pub window: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
    pub format: ReportFormat,
    /// Write the report to FILE (owner-only) instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `--format` of `plan estimate` and `verify`: the report formats, defined without clap beside
/// the renderers; their names on the command line are [`ReportFormat::name`].
impl ValueEnum for ReportFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &ReportFormat::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Verify a random sample of N migrated units (seeded, reported) instead of all.
    #[arg(long)]
    pub sample: Option<usize>,
    /// Seed of the sample.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where Mambu is, if not the run's target: a base URL (credentials from the environment).
    #[arg(long)]
    pub target: Option<String>,
    /// How fast to read (default: the pace the run had).
    #[command(flatten)]
    pub pace: Pace,
    /// No progress bar: one line every 10 seconds instead.
    #[arg(long)]
    pub no_progress: bool,
    /// What to print (every format is written to the run directory anyway).
    #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The run directory.
    pub run_dir: PathBuf,
    /// The units to undo, by key.
    #[arg(long = "unit", num_args = 1.., required_unless_present_any = ["failed", "all"])]
    pub units: Vec<String>,
    /// Every unit the run recorded as failed.
    #[arg(long)]
    pub failed: bool,
    /// Every unit the run recorded.
    #[arg(long)]
    pub all: bool,
    /// Where Mambu is, if not the run's target: a base URL (credentials from the environment).
    #[arg(long)]
    pub target: Option<String>,
    /// Calls per second (default: the plan's).
    #[arg(long)]
    pub rate: Option<f64>,
    /// A production tenant's name, to confirm without a terminal (as for `run`).
    #[arg(long)]
    pub confirm_production: Option<String>,
}

/// `plan validate --format`: its problem list as text or JSON. Not a [`ReportFormat`]: validate
/// prints plain text (no Markdown, no HTML page), so its set is its own.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ValidateFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct RunDirArgs {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Serve the run's dashboard (a web page, live while the run goes on) on ADDR until
    /// Ctrl-C, loopback by default; any other address needs the token printed at the start.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = crate::dashboard::DEFAULT_ADDR)]
    pub serve: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum IdempotencyArg {
    /// Replay the first answer for a repeated key; refuse a key reused with another body.
    Honour,
    /// Ignore keys, as if they had expired.
    Ignore,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Port to listen on (127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The tenant to serve (a tenant profile, YAML: time zone, users, branches, products,
    /// client rules; see fixtures/tenants/); default: the built-in lenient tenant.
    #[arg(long, value_name = "FILE")]
    pub tenant: Option<PathBuf>,
    /// The built-in tenant's API key (the `apiKey` header). A --tenant file holds its own.
    #[arg(long, env = "MAMBU_SANDBOX_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The built-in tenant's basic-auth user name.
    #[arg(long)]
    pub username: Option<String>,
    /// The built-in tenant's basic-auth password.
    #[arg(long, env = "MAMBU_SANDBOX_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Loan and deposit products (JSON, Mambu's shape) instead of the tenant's.
    #[arg(long, value_name = "FILE")]
    pub products: Option<PathBuf>,
    /// Seed for every random fault decision, so a faulty run can be replayed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Added to every answer.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Uniform random extra latency, 0..=J ms.
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,
    /// Answer 429 past this many requests per second (token bucket).
    #[arg(long)]
    pub throttle_rps: Option<f64>,
    /// Burst allowed by the throttle's bucket (default: one second's worth).
    #[arg(long)]
    pub throttle_burst: Option<u32>,
    /// Send 429s without a Retry-After header.
    #[arg(long)]
    pub no_retry_after: bool,
    /// Share of requests answered 500/502/503/504/409 before any change is made.
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
    /// Share of changes applied whose answer is then lost (connection dropped or 500).
    #[arg(long, default_value_t = 0.0)]
    pub lost_reply_rate: f64,
    /// Share of successful answers whose body is malformed (not JSON, cut off, wrong types).
    #[arg(long, default_value_t = 0.0)]
    pub malformed_rate: f64,
    /// How Idempotency-Key headers are treated.
    #[arg(long, value_enum, default_value_t = IdempotencyArg::Honour)]
    pub idempotency: IdempotencyArg,
    /// How long a bulk deposit takes from its 202 to COMPLETE, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub bulk_delay_ms: u64,
    /// The tenant's time zone instead of the profile's, an IANA id (e.g. Europe/Lisbon): every
    /// v2 date-time must carry its offset at that date, daylight saving included.
    #[arg(long, value_name = "ZONE", value_parser = time_zone)]
    pub timezone: Option<chrono_tz::Tz>,
    /// Keep the tenant in this file (SQLite, created if absent): a sandbox stopped, even
    /// killed, and started again on it holds what it held, idempotency keys included. It must
    /// be started with the same tenant profile. Default: memory only.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

/// An IANA time-zone id, as the tz database spells it.
fn time_zone(id: &str) -> Result<chrono_tz::Tz, String> {
    id.parse().map_err(|_| {
        format!("`{id}` is not an IANA time zone (e.g. Europe/Lisbon, America/New_York, UTC)")
    })
}

#[derive(Debug, Subcommand)]
pub enum FixturesCommand {
    /// Write a deterministic synthetic data set shaped like fixtures/sample.
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Number of clients.
    #[arg(long)]
    pub clients: u64,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Random seed: the same seed gives the same files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Runs the chosen subcommand.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitStatus> {
    match cli.command {
        Command::Run(args) => run(args),
        Command::Plan(PlanCommand::Validate(args)) => validate(args),
        Command::Plan(PlanCommand::Estimate(args)) => estimate(args),
        Command::Plan(PlanCommand::Schema) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&crate::plan::file::json_schema())?
            );
            Ok(ExitStatus::Success)
        }
        Command::Status(args) => status(args),
        Command::Verify(args) => verify(args),
        Command::Rollback(args) => rollback(args),
        Command::Sandbox(args) => run_sandbox(args),
        Command::Tenant(TenantCommand::Schema) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&sandbox::TenantProfile::schema())?
            );
            Ok(ExitStatus::Success)
        }
        Command::Tenant(TenantCommand::Check { file }) => {
            let profile = sandbox::TenantProfile::load(&file)?;
            println!(
                "{}: `{}` in {}, {} users, {} branches, {} loan and {} deposit products",
                file.display(),
                profile.name,
                profile.time_zone,
                profile.users.len(),
                profile.branches.len(),
                profile.loan_products.len(),
                profile.deposit_products.len()
            );
            Ok(ExitStatus::Success)
        }
        Command::Fixtures(FixturesCommand::Generate(args)) => generate_fixtures(args),
    }
}

/// `NAME=PATH` pairs of `--source`.
fn source_overrides(pairs: &[String]) -> anyhow::Result<Vec<(String, PathBuf)>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok((name.to_owned(), PathBuf::from(path))),
            _ => anyhow::bail!("--source {pair:?}: write it as NAME=PATH, e.g. --source transactions=full/transactions.csv"),
        })
        .collect()
}

fn run(args: RunArgs) -> anyhow::Result<ExitStatus> {
    let deadline = args
        .deadline
        .as_deref()
        .map(crate::run::parse_deadline)
        .transpose()?;
    let rate = args.pace.rate()?;
    // Bound before anything is read or sent: a port in use is invalid input.
    let dashboard = match args.dashboard.as_deref().filter(|_| !args.dry_run) {
        Some(addr) => {
            let bound = crate::dashboard::Bound::bind(crate::dashboard::parse_addr(addr)?)?;
            bound.announce("this run");
            Some(bound)
        }
        None => None,
    };
    crate::run::run(crate::run::RunOptions {
        plan: args.plan,
        target: args.target,
        sources: source_overrides(&args.sources)?,
        run_dir: args.run_dir,
        resume: args.resume,
        sample: args.sample,
        deadline,
        rate,
        concurrency: args.pace.concurrency,
        progress: !args.no_progress,
        dry_run: args.dry_run,
        reload: args.reload,
        confirm_production: args.confirm_production,
        accept_tenant_changes: args.accept_tenant_changes,
        tenant_record: args.tenant_record,
        catch_up: args.catch_up,
        baseline: source_overrides(&args.baseline)?,
        dashboard,
    })
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitStatus> {
    let options = crate::verify::Options {
        run_dir: args.run_dir.clone(),
        sample: args.sample,
        seed: args.seed,
        target: args.target,
        rate: args.pace.rate()?,
        concurrency: args.pace.concurrency,
        progress: !args.no_progress,
    };
    let (report, status) = match crate::verify::verify(&options) {
        Ok(done) => done,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitStatus::InvalidInput);
        }
    };
    // Every format is in the pack: the chosen one is printed from its file.
    let file = format!("verify.{}", args.format.name());
    print!("{}", std::fs::read_to_string(args.run_dir.join(file))?);
    eprintln!(
        "{} mismatches; evidence pack in {} (verify.md, verify.json, verify.html, manifest.sha256)",
        report.mismatches.len(),
        args.run_dir.display()
    );
    Ok(status)
}

fn status(args: RunDirArgs) -> anyhow::Result<ExitStatus> {
    let text = crate::report::status(&args.run_dir)?;
    print!("{text}");
    let Some(addr) = args.serve else {
        return Ok(ExitStatus::Success);
    };
    let bound = crate::dashboard::Bound::bind(crate::dashboard::parse_addr(&addr)?)?;
    bound.announce(&args.run_dir.display().to_string());
    eprintln!("serving until Ctrl-C");
    crate::runtime()?.block_on(bound.serve(args.run_dir, shutdown_signal()))?;
    Ok(ExitStatus::Success)
}

fn rollback(args: RollbackArgs) -> anyhow::Result<ExitStatus> {
    if let Some(rate) = args.rate {
        anyhow::ensure!(
            rate > 0.0 && rate.is_finite(),
            "--rate must be above 0, got {rate}"
        );
    }
    let options = crate::rollback::Options {
        run_dir: args.run_dir,
        units: args.units,
        failed: args.failed,
        all: args.all,
        target: args.target,
        rate: args.rate,
        confirm_production: args.confirm_production,
    };
    match crate::rollback::rollback(&options) {
        Ok(status) => Ok(status),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitStatus::InvalidInput)
        }
    }
}

fn validate(args: ValidateArgs) -> anyhow::Result<ExitStatus> {
    let options = crate::validate::Options {
        plan: args.plan,
        sources: source_overrides(&args.sources)?,
        target: args.target,
        tenant_record: args.tenant_record,
    };
    let report = crate::validate::validate(&options);
    match args.format {
        ValidateFormat::Text => print!("{}", report.render()),
        ValidateFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(if report.is_clean() {
        ExitStatus::Success
    } else {
        ExitStatus::InvalidInput
    })
}

fn estimate(args: EstimateArgs) -> anyhow::Result<ExitStatus> {
    let rate = args.pace.rate()?;
    anyhow::ensure!(
        args.latency_ms >= 0.0 && args.latency_ms.is_finite(),
        "--latency-ms must be 0 or more, got {}",
        args.latency_ms
    );
    let window = args
        .window
        .as_deref()
        .map(crate::estimate::timing::parse_duration)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--window: {e}"))?;
    let options = crate::estimate::Options {
        plan: args.plan,
        sources: source_overrides(&args.sources)?,
        target: args.target,
        rate,
        concurrency: args.pace.concurrency,
        latency_ms: args.latency_ms,
        from_run: args.from_run,
        window,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        catch_up: args.catch_up,
    };
    crate::estimate::run(&options, args.format, args.output.as_deref())
}

fn run_sandbox(args: SandboxArgs) -> anyhow::Result<ExitStatus> {
    let mut tenant = match &args.tenant {
        Some(path) => {
            anyhow::ensure!(
                args.api_key.is_none() && args.username.is_none() && args.password.is_none(),
                "--api-key, --username and --password set the built-in tenant's user; {} holds \
                 its own users",
                path.display()
            );
            sandbox::TenantProfile::load(path)?
        }
        None => {
            let mut tenant = sandbox::TenantProfile::lenient();
            let user = &mut tenant.users[0];
            if let Some(key) = args.api_key {
                user.api_key = Some(key);
            }
            if let Some(name) = args.username {
                user.username = name;
            }
            if let Some(password) = args.password {
                user.password = Some(password);
            }
            tenant
        }
    };
    if let Some(path) = &args.products {
        let products = sandbox::Products::load(path)
            .with_context(|| format!("loading products from {}", path.display()))?;
        tenant.loan_products = products.loan_products;
        tenant.deposit_products = products.deposit_products;
        if !products.branches.is_empty() {
            tenant.branches = products.branches;
        }
    }
    if let Some(zone) = args.timezone {
        tenant.time_zone = zone.name().to_owned();
    }
    for (name, rate) in [
        ("--fault-rate", args.fault_rate),
        ("--lost-reply-rate", args.lost_reply_rate),
        ("--malformed-rate", args.malformed_rate),
    ] {
        anyhow::ensure!(
            (0.0..=1.0).contains(&rate),
            "{name} must be between 0 and 1, got {rate}"
        );
    }
    if let Some(rps) = args.throttle_rps {
        anyhow::ensure!(rps > 0.0, "--throttle-rps must be above 0, got {rps}");
    }
    let config = SandboxConfig {
        tenant,
        seed: args.seed,
        faults: Faults {
            latency_ms: args.latency_ms,
            jitter_ms: args.jitter_ms,
            throttle_rps: args.throttle_rps,
            throttle_burst: args.throttle_burst,
            retry_after: !args.no_retry_after,
            fault_rate: args.fault_rate,
            lost_reply_rate: args.lost_reply_rate,
            malformed_rate: args.malformed_rate,
            idempotency: match args.idempotency {
                IdempotencyArg::Honour => IdempotencyMode::Honour,
                IdempotencyArg::Ignore => IdempotencyMode::Ignore,
            },
            outage: false,
            bulk_delay_ms: args.bulk_delay_ms,
        },
    };
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), args.port);
    let runtime = crate::runtime()?;
    runtime.block_on(async move {
        let server = match &args.state {
            None => sandbox::start(config, addr)
                .await
                .with_context(|| format!("listening on {addr}"))?,
            Some(path) => {
                let started = std::time::Instant::now();
                let (server, replayed) = sandbox::start_durable(config, addr, path).await?;
                eprintln!(
                    "sandbox: state {}: {} operations replayed in {:.2}s, {} idempotency keys \
                     kept, {} bulks queued again",
                    path.display(),
                    replayed.ops,
                    started.elapsed().as_secs_f64(),
                    replayed.keys,
                    replayed.pending_bulks.len()
                );
                server
            }
        };
        println!("listening on http://{}", server.addr());
        shutdown_signal().await;
        eprintln!("sandbox: stopping");
        server.stop().await;
        anyhow::Ok(())
    })?;
    Ok(ExitStatus::Success)
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn generate_fixtures(args: GenerateArgs) -> anyhow::Result<ExitStatus> {
    let summary = crate::fixtures::generate(&crate::fixtures::GenerateOptions {
        clients: args.clients,
        seed: args.seed,
        out: args.out.clone(),
    })
    .with_context(|| format!("generating fixtures into {}", args.out.display()))?;
    println!("{summary}");
    Ok(ExitStatus::Success)
}
