//! `paas certs` (each name's certificate: issuer, expiry, next renewal,
//! last error) and `paas certs:ca` (the local CA's root to trust).

use super::{print_json, Result, Target};
use reqwest::Method;
use serde_json::Value;

/// `paas certs [-a APP]`.
pub async fn list(t: &Target, app: Option<&str>) -> Result<()> {
    let path = match app {
        Some(app) => format!("/api/apps/{app}/certs"),
        None => "/api/certs".to_string(),
    };
    let v = t.call(Method::GET, &path, None).await?;
    if t.json {
        return print_json(&v);
    }
    print!("{}", table(&v));
    Ok(())
}

/// The rows as a table; a failed order is shown under its row, loud.
fn table(v: &Value) -> String {
    let rows = v.as_array().cloned().unwrap_or_default();
    let s = |r: &Value, k: &str| r[k].as_str().unwrap_or("-").to_string();
    let mut lines = vec![[
        "DOMAIN".to_string(),
        "STATE".into(),
        "ISSUER".into(),
        "NOT AFTER".into(),
        "RENEWS".into(),
    ]];
    for r in &rows {
        lines.push([
            s(r, "domain"),
            s(r, "state"),
            s(r, "issuer"),
            s(r, "not_after"),
            s(r, "renew_at"),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (n, l) in lines.iter().enumerate() {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if n == 0 {
            continue;
        }
        let r = &rows[n - 1];
        if let Some(err) = r["last_error"].as_str() {
            let times = match r["failures"].as_u64() {
                Some(n) if n > 1 => format!("; failed {n} times in a row"),
                _ => String::new(),
            };
            let retry = r["next_try"]
                .as_str()
                .map(|t| format!("; next try {t}"))
                .unwrap_or_default();
            out.push_str(&format!("  ERROR: {err}{times}{retry}\n"));
        }
    }
    out
}

/// `paas certs:ca`: the PEM, alone on stdout (`paas certs:ca > root.pem`).
pub async fn ca(t: &Target) -> Result<()> {
    let v = t.call(Method::GET, "/api/certs/ca", None).await?;
    if t.json {
        return print_json(&v);
    }
    print!("{}", v["root"].as_str().unwrap_or(""));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_shown_under_their_row() {
        let v = serde_json::json!([
            {"domain": "a.example.com", "state": "valid", "issuer": "R3",
             "not_after": "2027-01-01T00:00:00Z", "renew_at": "2026-12-01T00:00:00Z"},
            {"domain": "b.example.com", "state": "missing", "failures": 1,
             "last_error": "the ACME server refused", "next_try": "2026-11-30T20:00:00Z"},
            {"domain": "c.example.com", "state": "missing", "failures": 3,
             "last_error": "no answer", "next_try": "2026-11-30T21:00:00Z"},
        ]);
        let t = table(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("DOMAIN"), "{t}");
        assert!(
            lines[1].contains("a.example.com") && lines[1].contains("R3"),
            "{t}"
        );
        assert!(lines[2].starts_with("b.example.com"), "{t}");
        assert_eq!(
            lines[3],
            "  ERROR: the ACME server refused; next try 2026-11-30T20:00:00Z"
        );
        assert_eq!(
            lines[5],
            "  ERROR: no answer; failed 3 times in a row; next try 2026-11-30T21:00:00Z"
        );
    }
}
