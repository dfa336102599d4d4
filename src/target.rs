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
    let from_env = |env: &EnvCredentials| {
        Credentials::from_env(&env.api_key_env, &env.username_env, &env.password_env)
    };
    let (auth, approver) = match &plan.target {
        Target::Tenant { auth, approver, .. } => (
            auth.clone(),
            match approver {
                Some(env) => Some(
                    from_env(env).context("the approving user's credentials (target.approver)")?,
                ),
                None => None,
            },
        ),
        // A plan written for a sandbox profile, sent to a URL: its approver, if it names one,
        // is whoever `MAMBU_APPROVER_*` holds; without them approvals go as the one user.
        Target::Sandbox { approver, .. } => (
            built_in_env("MAMBU"),
            approver
                .as_ref()
                .and_then(|_| from_env(&built_in_env("MAMBU_APPROVER")).ok()),
        ),
    };
    let client = Client::new(url, from_env(&auth)?, timeout)?;
    let approver = match approver {
        Some(credentials) => Some(Client::new(url, credentials, timeout)?),
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
    let pairs = |items: &[Value], value: &dyn Fn(&Value) -> Option<Value>| {
        items
            .iter()
            .filter_map(|item| Some((item.get(&lookup.key)?.as_str()?.to_owned(), value(item)?)))
            .collect::<serde_json::Map<_, _>>()
    };
    match &lookup.each {
        None => pairs(items, &|item| item.get(&lookup.value).cloned()),
        Some(each) => pairs(items, &|item| {
            let inner = each
                .split('.')
                .try_fold(item, |at, field| at.get(field))?
                .as_array()?;
            Some(Value::Object(pairs(inner, &|i| {
                i.get(&lookup.value).cloned()
            })))
        }),
    }
}

/// Reads the lists the plan's lookups read, every page: (lookup name, the list's items).
pub async fn read_lookup_lists(
    session: &Session,
    plan: &Plan,
) -> anyhow::Result<Vec<(String, Vec<Value>)>> {
    let mut lists = Vec::new();
    for (name, lookup) in &plan.settings.lookups {
        let items = session
            .list(&lookup.path, &mut Quiet)
            .await
            .map_err(|e| anyhow::anyhow!("lookups.{name}: {e}"))?;
        lists.push((name.clone(), items));
    }
    Ok(lists)
}

/// The lookup tables of the lists [`read_lookup_lists`] read: `{ table: { key: value } }`.
pub fn lookup_tables(plan: &Plan, lists: &[(String, Vec<Value>)]) -> Value {
    Value::Object(
        lists
            .iter()
            .filter_map(|(name, items)| {
                let lookup = plan.settings.lookups.get(name)?;
                Some((name.clone(), Value::Object(lookup_table(items, lookup))))
            })
            .collect(),
    )
}

/// Reads the plan's lookup tables, every page: `{ table: { key: value } }` (product and branch
/// ids to their encodedKeys, typically).
pub async fn read_lookups(session: &Session, plan: &Plan) -> anyhow::Result<Value> {
    Ok(lookup_tables(
        plan,
        &read_lookup_lists(session, plan).await?,
    ))
}

/// Where Mambu tells the tenant's settings, its time zone among them (`timeZoneID`).
pub const ORGANIZATION_SETUP: &str = "/setup/organization";

/// The organization's setup (`GET /setup/organization`): its time zone (`timeZoneID`) and
/// name (`institutionName`) among others.
pub async fn organization(session: &Session) -> Result<Value, String> {
    Ok(session
        .read(ORGANIZATION_SETUP, Expect::Any, Keep::All, &mut Quiet)
        .await?
        .ok_or("GET /setup/organization: not found (HTTP 404)")?
        .body)
}

/// The time zone an organization setup names (`timeZoneID`).
pub fn zone_of(organization: &Value) -> Result<chrono_tz::Tz, String> {
    let id = organization
        .get("timeZoneID")
        .and_then(Value::as_str)
        .ok_or("GET /setup/organization answered no timeZoneID")?;
    id.parse()
        .map_err(|_| format!("the tenant's timeZoneID `{id}` is not an IANA time zone"))
}

/// The tenant's time zone as Mambu tells it (`GET /setup/organization`: `timeZoneID`).
pub async fn tenant_zone(session: &Session) -> Result<chrono_tz::Tz, String> {
    zone_of(&organization(session).await?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lookup(each: Option<&str>) -> LookupFile {
        LookupFile {
            path: "/loanproducts".into(),
            key: "id".into(),
            value: "encodedKey".into(),
            each: each.map(str::to_owned),
        }
    }

    #[test]
    fn a_lookup_maps_keys_to_values_and_each_reads_a_list_inside_every_item() {
        let products = [
            json!({"id": "PL", "encodedKey": "k1", "feesSettings": {"fees": [
                {"id": "LEGACY-FEE", "encodedKey": "f1"}, {"id": "LATE", "encodedKey": "f2"}]}}),
            json!({"id": "MICRO", "encodedKey": "k2", "feesSettings": {"fees": []}}),
            json!({"id": "OLD", "encodedKey": "k3"}),
            json!({"encodedKey": "no id"}),
        ];
        let flat = lookup_table(&products, &lookup(None));
        assert_eq!(
            Value::Object(flat),
            json!({"PL": "k1", "MICRO": "k2", "OLD": "k3"})
        );
        let fees = lookup_table(&products, &lookup(Some("feesSettings.fees")));
        assert_eq!(
            Value::Object(fees),
            json!({"PL": {"LEGACY-FEE": "f1", "LATE": "f2"}, "MICRO": {}}),
            "a product without the list has no entry: its lookups fail, located"
        );
    }
}
