//! `paas cron`: the live release's scheduled jobs.

use super::{print_json, Result, Target};
use reqwest::Method;
use serde_json::Value;

/// `2026-11-30 03:00:00 UTC`, or `-`.
fn when_secs(v: &Value) -> String {
    v.as_i64()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

/// `paas cron`: each job's schedule, next run, last result and duration;
/// then, for each failing job, why and the end of its output.
pub async fn list(t: &Target, app: &str) -> Result<()> {
    let v = t
        .call(Method::GET, &format!("/api/apps/{app}/cron"), None)
        .await?;
    if t.json {
        return print_json(&v);
    }
    let jobs = v.as_array().cloned().unwrap_or_default();
    if jobs.is_empty() {
        println!(
            "{app}'s live release has no scheduled jobs: declare them in paas.toml as [cron.NAME] with schedule = \"0 3 * * *\" and command = \"...\", then push."
        );
        return Ok(());
    }
    println!(
        "{:<20} {:<16} {:<24} {:<10} {:>9}  LAST RUN",
        "NAME", "SCHEDULE", "NEXT RUN", "LAST", "DURATION"
    );
    for j in &jobs {
        let last = &j["last"];
        let result = if j["running"].as_bool() == Some(true) {
            "running".to_string()
        } else {
            last["outcome"].as_str().unwrap_or("-").to_string()
        };
        let duration = last["duration_ms"]
            .as_u64()
            .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        let tz = j["time_zone"].as_str().unwrap_or("UTC");
        let schedule = match tz {
            "UTC" => j["schedule"].as_str().unwrap_or("").to_string(),
            tz => format!("{} ({tz})", j["schedule"].as_str().unwrap_or("")),
        };
        println!(
            "{:<20} {:<16} {:<24} {:<10} {:>9}  {}",
            j["name"].as_str().unwrap_or(""),
            schedule,
            when_secs(&j["next_run_at"]),
            result,
            duration,
            when_secs(&last["started_at_ms"].as_i64().map(|ms| ms / 1000).into())
        );
    }
    for j in jobs.iter().filter(|j| j["failing"].as_bool() == Some(true)) {
        let failed = j["recent"]
            .as_array()
            .and_then(|r| {
                r.iter()
                    .find(|r| r["outcome"] != "skipped" && r["outcome"] != "ok")
            })
            .cloned()
            .unwrap_or_default();
        println!(
            "\nFAILING: {} ({}): {}",
            j["name"].as_str().unwrap_or(""),
            failed["outcome"].as_str().unwrap_or(""),
            failed["message"].as_str().unwrap_or("")
        );
        let out = j["last"]["output"].as_str().unwrap_or("");
        let lines: Vec<&str> = out.lines().collect();
        for l in &lines[lines.len().saturating_sub(10)..] {
            println!("  | {l}");
        }
    }
    Ok(())
}
