//! The tenant's lookups (`--target`), read once so sample calls show real encodedKeys.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use crate::mambu::{Client, Credentials};
use crate::plan::check::{Plan, Target};

/// Reads every lookup table of the plan from `target` (`sandbox` or a base URL): a JSON object
/// of tables, each mapping the lookup's key field to its value field.
pub fn read_lookups(plan: &Plan, target: &str) -> anyhow::Result<Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let mut sandbox = None;
        let client = if target == "sandbox" {
            let key = uuid::Uuid::new_v4().to_string();
            let config = crate::sandbox::SandboxConfig::with_api_key(key.clone());
            let server = crate::sandbox::start(config, ([127, 0, 0, 1], 0).into())
                .await
                .context("starting the embedded sandbox")?;
            let client = Client::new(
                &server.base_url(),
                Credentials::ApiKey(key),
                Duration::from_secs(30),
            );
            sandbox = Some(server);
            client?
        } else {
            let (api_key_env, username_env, password_env) = match &plan.target {
                Target::Tenant {
                    api_key_env,
                    username_env,
                    password_env,
                    ..
                } => (
                    api_key_env.as_str(),
                    username_env.as_str(),
                    password_env.as_str(),
                ),
                Target::Sandbox => ("MAMBU_API_KEY", "MAMBU_USERNAME", "MAMBU_PASSWORD"),
            };
            let credentials = Credentials::from_env(api_key_env, username_env, password_env)?;
            Client::new(target, credentials, Duration::from_secs(30))?
        };
        let mut tables = serde_json::Map::new();
        let mut result = Ok(());
        for (name, lookup) in &plan.settings.lookups {
            match client.get_json(&lookup.path).await {
                Ok(Value::Array(items)) => {
                    let table = items
                        .iter()
                        .filter_map(|item| {
                            Some((
                                item.get(&lookup.key)?.as_str()?.to_owned(),
                                item.get(&lookup.value)?.clone(),
                            ))
                        })
                        .collect();
                    tables.insert(name.clone(), Value::Object(table));
                }
                Ok(_) => {
                    result = Err(anyhow::anyhow!(
                        "lookups.{name}: GET {} did not answer a list",
                        lookup.path
                    ));
                    break;
                }
                Err(e) => {
                    result = Err(anyhow::anyhow!("lookups.{name}: {e}"));
                    break;
                }
            }
        }
        if let Some(server) = sandbox {
            server.stop().await;
        }
        result.map(|()| Value::Object(tables))
    })
}
