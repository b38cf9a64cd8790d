//! `paas system:df` and `paas system:prune`: the host's disk, app by app.

use super::{print_json, Result, Target};
use reqwest::Method;
use serde_json::Value;

/// Bytes in powers of 1000, as `df -H` prints them.
fn human(v: &Value) -> String {
    let bytes = v.as_u64().unwrap_or(0);
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut f = bytes as f64;
    let mut unit = 0;
    while f >= 1000.0 && unit < UNITS.len() - 1 {
        f /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{f:.1} {}", UNITS[unit])
    }
}

/// `paas system:df`: each app's images, volume, backups and logs, then the
/// data dir's file system (and the warning when it is nearly full).
pub async fn df(t: &Target) -> Result<()> {
    let v = t.call(Method::GET, "/api/system/df", None).await?;
    if t.json {
        return print_json(&v);
    }
    let rows: Vec<[String; 6]> = v["apps"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            [
                a["app"].as_str().unwrap_or("").to_string(),
                human(&a["images"]),
                human(&a["volume"]),
                human(&a["backups"]),
                human(&a["logs"]),
                human(&a["total"]),
            ]
        })
        .collect();
    let header = ["APP", "IMAGES", "VOLUME", "BACKUPS", "LOGS", "TOTAL"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    let fs = &v["filesystem"];
    println!(
        "\n{}: {} used of {} ({:.0} %), {} free",
        fs["path"].as_str().unwrap_or(""),
        human(&fs["used"]),
        human(&fs["total"]),
        fs["percent"].as_f64().unwrap_or(0.0),
        human(&fs["available"]),
    );
    if let Some(w) = v["warning"].as_str() {
        println!("\n{w}");
    }
    Ok(())
}

/// `paas system:prune`: removes what paas made and no longer needs now,
/// as it does after pushes and daily.
pub async fn prune(t: &Target) -> Result<()> {
    let v = t.call(Method::POST, "/api/system/prune", None).await?;
    if t.json {
        return print_json(&v);
    }
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let (images, containers, dirs) = (list("images"), list("containers"), list("release_dirs"));
    for (what, items) in [
        ("image", &images),
        ("container", &containers),
        ("static files", &dirs),
    ] {
        for i in items {
            println!("removed {what} {}", i.as_str().unwrap_or(""));
        }
    }
    println!(
        "{} images, {} containers and {} release folders removed; nothing paas did not make was touched",
        images.len(),
        containers.len(),
        dirs.len()
    );
    Ok(())
}
