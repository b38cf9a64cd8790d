//! `paas pg:*` and `paas backups*`.

use super::{print_json, ClientError, Result, Target};
use reqwest::Method;

/// `paas pg:create`.
pub async fn pg_create(t: &Target, app: &str) -> Result<()> {
    t.say(Method::POST, &format!("/api/apps/{app}/postgres"), None)
        .await
}

/// `paas pg:info`: where the database is (never its password).
pub async fn pg_info(t: &Target, app: &str) -> Result<()> {
    let v = t
        .call(Method::GET, &format!("/api/apps/{app}/postgres"), None)
        .await?;
    if t.json {
        return print_json(&v);
    }
    println!(
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
    );
    Ok(())
}

/// `paas pg:destroy --confirm APP`.
pub async fn pg_destroy(t: &Target, app: &str, confirm: Option<&str>) -> Result<()> {
    let body = serde_json::json!({ "confirm": confirm });
    t.say(
        Method::DELETE,
        &format!("/api/apps/{app}/postgres"),
        Some(body),
    )
    .await
}

/// `paas backups:create`. A failed offsite copy fails the command (the
/// local backup stays, and the copy is retried hourly).
pub async fn backup(t: &Target, app: &str) -> Result<()> {
    let v = t
        .call(Method::POST, &format!("/api/apps/{app}/backups"), None)
        .await?;
    if t.json {
        print_json(&v)?;
    } else {
        println!(
            "backup {} of {} taken ({}, {} bytes, {} ms){}",
            v["id"].as_str().unwrap_or(""),
            app,
            v["kind"].as_str().unwrap_or(""),
            v["size"],
            v["duration_ms"],
            match v["offsite"]["status"].as_str() {
                Some("uploaded") => ", encrypted copy uploaded offsite",
                Some("pending") => ", offsite copy pending",
                _ => "",
            }
        );
    }
    if v["offsite"]["status"] == "failed" {
        return Err(ClientError::Server(format!(
            "backup {} is kept on this server, but its offsite copy FAILED: {} (paas retries it every hour)",
            v["id"].as_str().unwrap_or(""),
            v["offsite"]["error"].as_str().unwrap_or("no reason given")
        )));
    }
    Ok(())
}

/// Where a backup's copies are, for the table: `local+offsite`,
/// `local, offsite FAILED`…
fn copies(b: &serde_json::Value) -> String {
    let list: Vec<&str> = b["copies"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c.as_str()).collect())
        .unwrap_or_default();
    let mut s = list.join("+");
    match b["offsite"]["status"].as_str() {
        Some("failed") if !list.contains(&"offsite") => s.push_str(" (offsite FAILED)"),
        Some("pending") if !list.contains(&"offsite") => s.push_str(" (offsite pending)"),
        _ => {}
    }
    s
}

/// `paas backups`: one line per backup, newest first, with where its
/// copies are.
pub async fn backups(t: &Target, app: &str) -> Result<()> {
    let resp = t
        .send_ok(t.request(Method::GET, &format!("/api/apps/{app}/backups")))
        .await?;
    let problem = resp
        .headers()
        .get("paas-offsite-error")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    if let Some(p) = &problem {
        eprintln!("paas: WARNING: {p}");
    }
    if t.json {
        return print_json(&v);
    }
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!(
            "No backups of {app} yet: `paas backups:create -a {app}` takes one (paas also takes one daily)."
        );
    }
    for b in list {
        let error = b["error"]
            .as_str()
            .or(b["offsite"]["error"].as_str())
            .unwrap_or("");
        println!(
            "{:<22} {:<8} {:<7} {:>12} {:<11} {:<30} {}",
            b["id"].as_str().unwrap_or(""),
            b["kind"].as_str().unwrap_or(""),
            b["status"].as_str().unwrap_or(""),
            b["size"],
            b["trigger"].as_str().unwrap_or(""),
            copies(&b),
            error
        );
    }
    Ok(())
}

/// `paas backups:offsite:set`.
pub async fn offsite_set(t: &Target, body: serde_json::Value) -> Result<()> {
    t.say(Method::PUT, "/api/backups/offsite", Some(body)).await
}

/// `paas backups:offsite`: where copies go, never the secret.
pub async fn offsite_show(t: &Target) -> Result<()> {
    let v = t.call(Method::GET, "/api/backups/offsite", None).await?;
    if t.json {
        return print_json(&v);
    }
    if v["configured"] != true {
        println!("{}", v["message"].as_str().unwrap_or(""));
        return Ok(());
    }
    println!("location       {}", v["url"].as_str().unwrap_or(""));
    println!("endpoint       {}", v["endpoint"].as_str().unwrap_or(""));
    println!("region         {}", v["region"].as_str().unwrap_or(""));
    println!(
        "access key id  {}",
        v["access_key_id"].as_str().unwrap_or("")
    );
    println!("secret         (kept on the server, never shown)");
    Ok(())
}

/// `paas backups:offsite:key`: the passphrase and how to use it.
pub async fn offsite_key(t: &Target) -> Result<()> {
    let v = t
        .call(Method::GET, "/api/backups/offsite/key", None)
        .await?;
    if t.json {
        return print_json(&v);
    }
    print!("{}", v["message"].as_str().unwrap_or(""));
    Ok(())
}

/// `paas backups:drill [-a APP]`: fails when any drill failed.
pub async fn drill(t: &Target, app: Option<&str>) -> Result<()> {
    let body = serde_json::json!({ "app": app });
    let v = t
        .call(Method::POST, "/api/backups/drill", Some(body))
        .await?;
    if t.json {
        print_json(&v)?;
    }
    let drills = v["drills"].as_array().cloned().unwrap_or_default();
    if drills.is_empty() && !t.json {
        println!("No app has data to drill yet.");
    }
    let mut failed = Vec::new();
    for d in &drills {
        let name = d["app"].as_str().unwrap_or("");
        if d["ok"] == true {
            if !t.json {
                let tables = d["tables"].as_object().map_or(0, |m| m.len());
                let rows: i64 = d["tables"]
                    .as_object()
                    .map_or(0, |m| m.values().filter_map(|n| n.as_i64()).sum());
                println!(
                    "{name}: drill passed: backup {} restored into a scratch database, {tables} tables and {rows} rows as its manifest says ({} ms)",
                    d["backup"].as_str().unwrap_or(""),
                    d["duration_ms"]
                );
            }
        } else {
            failed.push(format!(
                "{name}: {}",
                d["error"].as_str().unwrap_or("failed")
            ));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(ClientError::Server(format!(
            "restore drill FAILED for {}",
            failed.join("; ")
        )))
    }
}

/// `paas backups:restore ID --confirm APP`.
pub async fn restore(t: &Target, app: &str, id: &str, confirm: Option<&str>) -> Result<()> {
    let body = serde_json::json!({ "confirm": confirm });
    t.say(
        Method::POST,
        &format!("/api/apps/{app}/backups/{id}/restore"),
        Some(body),
    )
    .await
}

/// `paas server:backup`.
pub async fn server_backup(t: &Target) -> Result<()> {
    t.say(Method::POST, "/api/server/backup", None).await
}

/// The passphrase: `PAAS_BACKUP_PASSPHRASE`, else one line from the terminal.
pub fn ask_passphrase() -> Result<String> {
    if let Some(p) = std::env::var("PAAS_BACKUP_PASSPHRASE")
        .ok()
        .filter(|p| !p.is_empty())
    {
        return Ok(p);
    }
    eprint!("Backup passphrase (as `paas backups:offsite:key` showed it): ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| ClientError::Usage(format!("cannot read the passphrase: {e}")))?;
    let p = line.trim_end_matches(['\r', '\n']).to_string();
    if p.is_empty() {
        return Err(ClientError::Usage(
            "no passphrase given: set PAAS_BACKUP_PASSPHRASE or type it when asked".into(),
        ));
    }
    Ok(p)
}

/// `paas server:restore`: fails when an app did not come back.
pub async fn server_restore(t: &Target, body: serde_json::Value) -> Result<()> {
    let v = t
        .call(Method::POST, "/api/server/restore", Some(body))
        .await?;
    if t.json {
        print_json(&v)?;
    } else {
        for a in v["apps"].as_array().cloned().unwrap_or_default() {
            match a["error"].as_str() {
                None => println!(
                    "{}: live as v{}{}",
                    a["app"].as_str().unwrap_or(""),
                    a["release"],
                    a["data"]
                        .as_str()
                        .map(|d| format!(", data from backup {d}"))
                        .unwrap_or_default()
                ),
                Some(e) => println!("{}: FAILED: {e}", a["app"].as_str().unwrap_or("")),
            }
        }
        println!("{}", v["message"].as_str().unwrap_or(""));
    }
    if v["failed"].as_u64().unwrap_or(0) > 0 {
        return Err(ClientError::Server(
            "some apps did not come back: the lines above say why".into(),
        ));
    }
    Ok(())
}
