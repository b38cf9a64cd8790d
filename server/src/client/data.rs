//! `paas pg:*` and `paas backups*`.

// -------------------------------------------------------------------- CLI

/// One request to the daemon for the CLI; the error is one sentence.
pub(crate) async fn cli_request(
    url: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, String> {
    let full = format!("{}{path}", url.trim_end_matches('/'));
    let mut req = reqwest::Client::new()
        .request(method, &full)
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.map_err(|e| {
        format!("cannot reach paas at {url} ({e}); is `paas serve` running? Set PAAS_URL if it listens elsewhere")
    })?;
    let status = resp.status();
    let value: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        let msg = value
            .get("error")
            .and_then(|v| v.as_str())
            .unwrap_or("the request failed");
        return Err(format!("{msg} (HTTP {status})"));
    }
    Ok(value)
}

pub(crate) fn message(v: &serde_json::Value) -> String {
    v["message"].as_str().unwrap_or("done").to_string()
}

/// `paas pg:create -a APP`: the text to print.
pub async fn cli_pg_create(url: &str, token: &str, app: &str) -> Result<String, String> {
    let path = format!("/api/apps/{app}/postgres");
    cli_request(url, token, reqwest::Method::POST, &path, None)
        .await
        .map(|v| message(&v))
}

/// `paas pg:info -a APP`.
pub async fn cli_pg_info(url: &str, token: &str, app: &str) -> Result<String, String> {
    let path = format!("/api/apps/{app}/postgres");
    let v = cli_request(url, token, reqwest::Method::GET, &path, None).await?;
    Ok(format!(
        "database {} (role {}) at {}:{} on server {} ({})",
        v["database"].as_str().unwrap_or(""),
        v["role"].as_str().unwrap_or(""),
        v["host"].as_str().unwrap_or(""),
        v["port"],
        v["server"].as_str().unwrap_or(""),
        if v["server_running"].as_bool() == Some(true) {
            "running"
        } else {
            "not running: it starts on the next pg or backup command"
        }
    ))
}

/// `paas pg:destroy -a APP --confirm APP`.
pub async fn cli_pg_destroy(
    url: &str,
    token: &str,
    app: &str,
    confirm: Option<&str>,
) -> Result<String, String> {
    let path = format!("/api/apps/{app}/postgres");
    let body = serde_json::json!({ "confirm": confirm });
    cli_request(url, token, reqwest::Method::DELETE, &path, Some(body))
        .await
        .map(|v| message(&v))
}

/// `paas backups:create -a APP`.
pub async fn cli_backup(url: &str, token: &str, app: &str) -> Result<String, String> {
    let path = format!("/api/apps/{app}/backups");
    let v = cli_request(url, token, reqwest::Method::POST, &path, None).await?;
    Ok(format!(
        "backup {} of {} taken ({}, {} bytes, {} ms)",
        v["id"].as_str().unwrap_or(""),
        app,
        v["kind"].as_str().unwrap_or(""),
        v["size"],
        v["duration_ms"]
    ))
}

/// `paas backups -a APP`: one line per backup, newest first.
pub async fn cli_backups(url: &str, token: &str, app: &str) -> Result<String, String> {
    let path = format!("/api/apps/{app}/backups");
    let v = cli_request(url, token, reqwest::Method::GET, &path, None).await?;
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return Ok(format!(
            "No backups of {app} yet: `paas backups:create -a {app}` takes one (paas also takes one daily)."
        ));
    }
    let lines: Vec<String> = list
        .iter()
        .map(|b| {
            format!(
                "{:<22} {:<8} {:<7} {:>12} {:<9} {}",
                b["id"].as_str().unwrap_or(""),
                b["kind"].as_str().unwrap_or(""),
                b["status"].as_str().unwrap_or(""),
                b["size"],
                b["trigger"].as_str().unwrap_or(""),
                b["error"].as_str().unwrap_or("")
            )
        })
        .collect();
    Ok(lines.join("\n"))
}

/// `paas backups:restore -a APP ID --confirm APP`.
pub async fn cli_restore(
    url: &str,
    token: &str,
    app: &str,
    id: &str,
    confirm: Option<&str>,
) -> Result<String, String> {
    let path = format!("/api/apps/{app}/backups/{id}/restore");
    let body = serde_json::json!({ "confirm": confirm });
    cli_request(url, token, reqwest::Method::POST, &path, Some(body))
        .await
        .map(|v| message(&v))
}

/// `paas apps:destroy -a APP --confirm APP [--no-backup]`.
pub async fn cli_destroy(
    url: &str,
    token: &str,
    app: &str,
    confirm: Option<&str>,
    no_backup: bool,
) -> Result<String, String> {
    let body = serde_json::json!({ "confirm": confirm, "no_backup": no_backup });
    cli_request(
        url,
        token,
        reqwest::Method::DELETE,
        &format!("/api/apps/{app}"),
        Some(body),
    )
    .await
    .map(|v| message(&v))
}
