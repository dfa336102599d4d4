//! Where the calls go: the embedded sandbox, started in-process with a throwaway API key, or a
//! tenant, with credentials from the environment variables the plan names.

use std::time::Duration;

use anyhow::Context as _;

use serde_json::Value;

use crate::mambu::{Client, Credentials, Expect, Keep, Quiet, RetrySettings, Session};
use crate::plan::check::{EnvCredentials, Plan, Target};
use crate::plan::file::LookupFile;
use crate::sandbox::{SandboxConfig, SandboxServer, TenantProfile};

/// A client for the target (and one for the approving user, when the plan names one), and the
/// embedded sandbox behind them if that is the target.
pub struct Connection {
    pub client: Client,
    /// The approving user's client, for four-eyes approval steps.
    pub approver: Option<Client>,
    sandbox: Option<SandboxServer>,
}

impl Connection {
    /// Stops the embedded sandbox, if any.
    pub async fn close(self) {
        if let Some(server) = self.sandbox {
            server.stop().await;
        }
    }
}

/// Where the calls go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Where {
    /// The embedded sandbox, started in-process (forgotten when the process ends).
    Embedded,
    /// A tenant, or a `mambu-migrate sandbox` process: its API base URL.
    Url(String),
}

impl Where {
    /// What the user typed (`--target`): `sandbox`, or a base URL.
    pub fn parse(text: &str) -> Self {
        if text == "sandbox" {
            Where::Embedded
        } else {
            Where::Url(text.to_owned())
        }
    }

    /// `--target` when given, else the plan's target.
    pub fn of(plan: &Plan, chosen: Option<&str>) -> Self {
        match (chosen, &plan.target) {
            (Some(text), _) => Self::parse(text),
            (None, Target::Sandbox { .. }) => Where::Embedded,
            (None, Target::Tenant { base_url, .. }) => Where::Url(base_url.clone()),
        }
    }

    pub fn is_embedded(&self) -> bool {
        matches!(self, Where::Embedded)
    }
}

/// `sandbox`, or the URL: as the user types it, and as the checkpoint records it.
impl std::fmt::Display for Where {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Where::Embedded => f.write_str("sandbox"),
            Where::Url(url) => f.write_str(url),
        }
    }
}

/// Connects to `target` (`sandbox` or a base URL).
///
/// The embedded sandbox serves the plan's tenant profile (or the built-in tenant, whose one user
/// gets a throwaway key) and the calls are made as the profile's users the plan names. A URL
/// takes credentials from the environment variables the plan names (`MAMBU_API_KEY`, or
/// `MAMBU_USERNAME` and `MAMBU_PASSWORD`; for the approving user `MAMBU_APPROVER_*`).
pub async fn connect(plan: &Plan, target: &Where, timeout: Duration) -> anyhow::Result<Connection> {
    let Where::Url(url) = target else {
        return connect_embedded(plan, timeout).await;
    };
    let built_in_env = |prefix: &str| EnvCredentials {
        api_key_env: format!("{prefix}_API_KEY"),
        username_env: format!("{prefix}_USERNAME"),
        password_env: format!("{prefix}_PASSWORD"),
    };
    let (auth, approver) = match &plan.target {
        Target::Tenant { auth, approver, .. } => (auth.clone(), approver.clone()),
        Target::Sandbox { approver, .. } => (
            built_in_env("MAMBU"),
            approver.as_ref().map(|_| built_in_env("MAMBU_APPROVER")),
        ),
    };
    let from_env = |env: &EnvCredentials| {
        Credentials::from_env(&env.api_key_env, &env.username_env, &env.password_env)
    };
    let client = Client::new(url, from_env(&auth)?, timeout)?;
    let approver = match &approver {
        Some(env) => Some(Client::new(
            url,
            from_env(env).context("the approving user's credentials (target.approver)")?,
            timeout,
        )?),
        None => None,
    };
    Ok(Connection {
        client,
        approver,
        sandbox: None,
    })
}

/// Starts the embedded sandbox serving the plan's profile, and clients for its users.
async fn connect_embedded(plan: &Plan, timeout: Duration) -> anyhow::Result<Connection> {
    let (profile, user, approver) = match &plan.target {
        Target::Sandbox {
            profile: Some(path),
            user,
            approver,
        } => (
            TenantProfile::load(path)?,
            user.as_deref(),
            approver.as_deref(),
        ),
        _ => {
            let mut profile = TenantProfile::lenient();
            // A throwaway key: nothing but this process can call it.
            profile.users[0].api_key = Some(uuid::Uuid::new_v4().to_string());
            (profile, None, None)
        }
    };
    let credentials = |name: Option<&str>| -> anyhow::Result<Credentials> {
        let user = match name {
            Some(name) => profile
                .user(name)
                .with_context(|| format!("the tenant profile has no user `{name}`"))?,
            None => &profile.users[0],
        };
        Ok(match (&user.api_key, &user.password) {
            (Some(key), _) => Credentials::ApiKey(key.clone()),
            (None, Some(password)) => Credentials::Basic {
                username: user.username.clone(),
                password: password.clone(),
            },
            (None, None) => {
                anyhow::bail!("the profile's user `{}` has no credentials", user.username)
            }
        })
    };
    let main = credentials(user)?;
    let approving = approver.map(|name| credentials(Some(name))).transpose()?;
    let server = crate::sandbox::start(SandboxConfig::new(profile), ([127, 0, 0, 1], 0).into())
        .await
        .context("starting the embedded sandbox")?;
    let client = Client::new(&server.base_url(), main, timeout)?;
    let approver = match approving {
        Some(credentials) => Some(Client::new(&server.base_url(), credentials, timeout)?),
        None => None,
    };
    Ok(Connection {
        client,
        approver,
        sandbox: Some(server),
    })
}

/// The plan's retry settings, for a [`Session`].
pub fn retry_settings(plan: &Plan) -> RetrySettings {
    let retry = &plan.settings.limits.retry;
    RetrySettings {
        max_attempts: retry.max_attempts,
        initial_backoff: Duration::from_millis(retry.initial_backoff_ms),
        max_backoff: Duration::from_millis(retry.max_backoff_ms),
        outage_wait: Duration::from_secs(retry.outage_wait_seconds),
    }
}

impl Connection {
    /// A session that only reads, at the plan's rate (or `rate`) and with its retry policy.
    pub fn reader(&self, plan: &Plan, rate: Option<f64>) -> Session {
        let limits = &plan.settings.limits;
        Session::reader(
            self.client.clone(),
            rate.unwrap_or(limits.requests_per_second),
            limits.burst,
            retry_settings(plan),
        )
    }
}

/// A lookup's table from the list it reads: its `key` field to its `value` field.
pub fn lookup_table(items: &[Value], lookup: &LookupFile) -> serde_json::Map<String, Value> {
    items
        .iter()
        .filter_map(|item| {
            Some((
                item.get(&lookup.key)?.as_str()?.to_owned(),
                item.get(&lookup.value)?.clone(),
            ))
        })
        .collect()
}

/// Reads the plan's lookup tables, every page: `{ table: { key: value } }` (product and branch
/// ids to their encodedKeys, typically).
pub async fn read_lookups(session: &Session, plan: &Plan) -> anyhow::Result<Value> {
    let mut tables = serde_json::Map::new();
    for (name, lookup) in &plan.settings.lookups {
        let items = session
            .list(&lookup.path, &mut Quiet)
            .await
            .map_err(|e| anyhow::anyhow!("lookups.{name}: {e}"))?;
        tables.insert(name.clone(), Value::Object(lookup_table(&items, lookup)));
    }
    Ok(Value::Object(tables))
}

/// Where Mambu tells the tenant's settings, its time zone among them (`timeZoneID`).
pub const ORGANIZATION_SETUP: &str = "/setup/organization";

/// The tenant's time zone as Mambu tells it (`GET /setup/organization`: `timeZoneID`).
pub async fn tenant_zone(session: &Session) -> Result<chrono_tz::Tz, String> {
    let found = session
        .read(ORGANIZATION_SETUP, Expect::Any, Keep::All, &mut Quiet)
        .await?
        .ok_or("GET /setup/organization: not found (HTTP 404)")?;
    let id = found
        .body
        .get("timeZoneID")
        .and_then(Value::as_str)
        .ok_or("GET /setup/organization answered no timeZoneID")?;
    id.parse()
        .map_err(|_| format!("the tenant's timeZoneID `{id}` is not an IANA time zone"))
}

/// Whether the plan's `timezone` renders the offsets the tenant requires: `Err` says why not
/// (and the fix), or that the tenant's zone could not be read.
pub async fn check_zone(session: &Session, plan: &Plan) -> Result<(), ZoneProblem> {
    let tenant = tenant_zone(session).await.map_err(ZoneProblem::Unread)?;
    let zone = crate::plan::template::Zone::parse(&plan.settings.timezone)
        .unwrap_or(crate::plan::template::Zone::UTC);
    zone.agrees_with(tenant).map_err(ZoneProblem::Mismatch)
}

/// Why the plan's time zone could not be confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneProblem {
    /// The plan's zone renders offsets the tenant refuses.
    Mismatch(String),
    /// The tenant's zone could not be read.
    Unread(String),
}

/// Connects to `target`, reads the lookups and disconnects: for commands that only read them.
pub fn fetch_lookups(plan: &Plan, target: &Where) -> anyhow::Result<Value> {
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let connection = connect(plan, target, Duration::from_secs(30)).await?;
        let lookups = read_lookups(&connection.reader(plan, None), plan).await;
        connection.close().await;
        lookups
    })
}
