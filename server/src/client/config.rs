//! `paas config`, `paas config:set`, `paas config:unset`.

use super::{print_json, ClientError, Result, Target};
use reqwest::Method;

/// `paas config`: the app's config vars.
pub async fn show(t: &Target, app: &str) -> Result<()> {
    let v = t
        .call(Method::GET, &format!("/api/apps/{app}/config"), None)
        .await?;
    if t.json {
        return print_json(&v);
    }
    let vars = v.as_object().cloned().unwrap_or_default();
    if vars.is_empty() {
        println!("{app} has no config vars: `paas config:set --app {app} KEY=VALUE` sets one.");
    }
    for (k, val) in vars {
        println!("{k}={}", val.as_str().unwrap_or(""));
    }
    Ok(())
}

/// `K=V…` as the changes `config:set` sends; a usage error names a bad pair.
pub fn parse_pairs(pairs: &[String]) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut changes = serde_json::Map::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(ClientError::Usage(format!(
                "{pair:?} is not KEY=VALUE: write it as KEY=VALUE (quote values with spaces)"
            )));
        };
        changes.insert(k.to_string(), serde_json::json!(v));
    }
    Ok(changes)
}

/// `paas config:set K=V…`: a new release with the changed vars.
pub async fn set(
    t: &Target,
    app: &str,
    changes: serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    patch(t, app, changes).await
}

/// `paas config:unset K…`.
pub async fn unset(t: &Target, app: &str, keys: Vec<String>) -> Result<()> {
    let changes = keys
        .into_iter()
        .map(|k| (k, serde_json::Value::Null))
        .collect();
    patch(t, app, changes).await
}

async fn patch(
    t: &Target,
    app: &str,
    changes: serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    t.action(
        Method::PATCH,
        &format!("/api/apps/{app}/config"),
        serde_json::Value::Object(changes),
    )
    .await
}
