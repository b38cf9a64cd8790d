//! The readiness probe that gates every swap.
//!
//! A new container is healthy after `required` consecutive HTTP answers below
//! 500 other than 400, asked with the app's own domain as Host header: Django
//! answers 400 to hosts it does not allow, so a probe by bare IP would lie,
//! and 404 is fine because many apps have no `/`. Between attempts the caller's
//! liveness check runs, so a container that exits fails the gate at once
//! instead of after the timeout.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How to probe.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// Request path, e.g. `/`.
    pub path: String,
    /// Pause between attempts.
    pub interval: Duration,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// Consecutive good answers needed.
    pub required: u32,
    /// Give up after this long in all.
    pub deadline: Duration,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            path: "/".into(),
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(5),
            required: 2,
            deadline: Duration::from_secs(60),
        }
    }
}

/// The `[healthcheck]` table of an optional `paas.toml` at the root of the
/// pushed code. Every field is optional; config vars win over it.
#[derive(Debug, Default, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthTable {
    /// Request path, e.g. `/health/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Seconds between attempts (fractions allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<f64>,
    /// Seconds the new release has to become healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// Consecutive good answers needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

#[derive(serde::Deserialize)]
struct RepoFile {
    healthcheck: Option<HealthTable>,
}

/// Bounds of the settings, as the error messages state them.
const INTERVAL_SECS: (f64, f64) = (0.05, 60.0);
const TIMEOUT_SECS: (u64, u64) = (1, 3600);
const ATTEMPTS: (u32, u32) = (1, 100);

/// Parse a repository's `paas.toml`; the `[healthcheck]` table (empty when
/// absent), or one sentence saying what to fix. Other tables are left to
/// whoever reads them.
pub fn parse_repo_file(text: &str) -> Result<HealthTable, String> {
    let file: RepoFile = toml::from_str(text).map_err(|e| {
        format!(
            "paas.toml in the pushed code is not valid ({}); fix it (see the README for its [healthcheck] table) and push again",
            e.message().trim_end_matches('.')
        )
    })?;
    let table = file.healthcheck.unwrap_or_default();
    let at = |key: &str| format!("paas.toml [healthcheck] {key}");
    if let Some(p) = &table.path {
        check_path(p)
            .map_err(|why| format!("{} = {p:?} {why}; fix paas.toml and push again", at("path")))?;
    }
    if let Some(v) = table.interval {
        if !(INTERVAL_SECS.0..=INTERVAL_SECS.1).contains(&v) {
            return Err(format!(
                "{} = {v} is out of range; give seconds from {} to {}, then push again",
                at("interval"),
                INTERVAL_SECS.0,
                INTERVAL_SECS.1
            ));
        }
    }
    if let Some(v) = table.timeout {
        if !(TIMEOUT_SECS.0..=TIMEOUT_SECS.1).contains(&v) {
            return Err(format!(
                "{} = {v} is out of range; give whole seconds from {} to {}, then push again",
                at("timeout"),
                TIMEOUT_SECS.0,
                TIMEOUT_SECS.1
            ));
        }
    }
    if let Some(v) = table.attempts {
        if !(ATTEMPTS.0..=ATTEMPTS.1).contains(&v) {
            return Err(format!(
                "{} = {v} is out of range; give a whole number from {} to {}, then push again",
                at("attempts"),
                ATTEMPTS.0,
                ATTEMPTS.1
            ));
        }
    }
    Ok(table)
}

fn check_path(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("does not start with /");
    }
    if p.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains spaces or control characters");
    }
    Ok(())
}

/// The health check of a release: the defaults, then the repository's
/// `[healthcheck]` table, then the config vars PAAS_HEALTHCHECK_PATH,
/// _INTERVAL, _TIMEOUT and _ATTEMPTS (they win, so a setting can be changed
/// without a commit). A bad config var is one sentence saying what to fix.
pub fn settings(
    table: &HealthTable,
    vars: &std::collections::BTreeMap<String, String>,
) -> Result<HealthCheck, String> {
    let mut check = HealthCheck::default();
    if let Some(p) = &table.path {
        check.path = p.clone();
    }
    if let Some(v) = table.interval {
        check.interval = Duration::from_secs_f64(v);
    }
    if let Some(v) = table.timeout {
        check.deadline = Duration::from_secs(v);
    }
    if let Some(v) = table.attempts {
        check.required = v;
    }
    let bad = |key: &str, value: &str, want: String| {
        format!(
            "config var {key} = {value:?} is not {want}; fix it with `paas config:set {key}=…` (or unset it)"
        )
    };
    if let Some(p) = vars.get("PAAS_HEALTHCHECK_PATH") {
        check_path(p).map_err(|why| {
            format!("config var PAAS_HEALTHCHECK_PATH = {p:?} {why}; fix it with `paas config:set PAAS_HEALTHCHECK_PATH=/…` (or unset it)")
        })?;
        check.path = p.clone();
    }
    if let Some(v) = vars.get("PAAS_HEALTHCHECK_INTERVAL") {
        let secs = v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| (INTERVAL_SECS.0..=INTERVAL_SECS.1).contains(s))
            .ok_or_else(|| {
                bad(
                    "PAAS_HEALTHCHECK_INTERVAL",
                    v,
                    format!("seconds from {} to {}", INTERVAL_SECS.0, INTERVAL_SECS.1),
                )
            })?;
        check.interval = Duration::from_secs_f64(secs);
    }
    if let Some(v) = vars.get("PAAS_HEALTHCHECK_TIMEOUT") {
        let secs = v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| (TIMEOUT_SECS.0..=TIMEOUT_SECS.1).contains(s))
            .ok_or_else(|| {
                bad(
                    "PAAS_HEALTHCHECK_TIMEOUT",
                    v,
                    format!(
                        "whole seconds from {} to {}",
                        TIMEOUT_SECS.0, TIMEOUT_SECS.1
                    ),
                )
            })?;
        check.deadline = Duration::from_secs(secs);
    }
    if let Some(v) = vars.get("PAAS_HEALTHCHECK_ATTEMPTS") {
        let n = v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (ATTEMPTS.0..=ATTEMPTS.1).contains(n))
            .ok_or_else(|| {
                bad(
                    "PAAS_HEALTHCHECK_ATTEMPTS",
                    v,
                    format!("a whole number from {} to {}", ATTEMPTS.0, ATTEMPTS.1),
                )
            })?;
        check.required = n;
    }
    // One attempt never outlasts the whole check.
    check.timeout = check.timeout.min(check.deadline);
    Ok(check)
}

/// One HTTP/1.1 GET; returns the status code.
pub async fn probe_once(
    addr: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<u16, String> {
    let attempt = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: paas-health\r\nX-Forwarded-Proto: http\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = [0u8; 64];
        let mut n = 0;
        // Enough bytes for "HTTP/1.1 200".
        while n < 12 {
            let k = s
                .read(&mut buf[n..])
                .await
                .map_err(|e| format!("read: {e}"))?;
            if k == 0 {
                break;
            }
            n += k;
        }
        parse_status(&buf[..n]).ok_or_else(|| "no HTTP status line in the answer".to_string())
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| format!("no answer within {} s", timeout.as_secs()))?
}

fn parse_status(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head).ok()?;
    let mut parts = text.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.get(..3)?.parse().ok()
}

/// Is this answer a sign of life?
pub fn is_healthy_status(code: u16) -> bool {
    code < 500 && code != 400
}

/// Why the gate failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("{0}")]
    Died(String),
    #[error("the app did not answer healthily within {secs} s (last: {last}); check that it starts and answers on $PORT (or raise PAAS_HEALTHCHECK_TIMEOUT if it starts slowly), then push again")]
    Timeout { secs: u64, last: String },
    #[error("the app answered 400 to Host {host:?}: Django rejects the host, which means ALLOWED_HOSTS was overridden; let paas set ALLOWED_HOSTS, then push again")]
    BadHost { host: String },
}

/// Probe until healthy, the liveness check fails, or the deadline passes.
/// `alive` is called between attempts and returns the reason when the
/// container is gone.
pub async fn wait_healthy<F, Fut>(
    check: &HealthCheck,
    addr: SocketAddr,
    host: &str,
    alive: F,
    on_progress: impl FnMut(&str),
) -> Result<(), HealthError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let probe = || probe_once(addr, host, &check.path, check.timeout);
    wait_healthy_with(check, host, probe, alive, on_progress).await
}

/// [`wait_healthy`] with the probe given: one attempt (`GET check.path`
/// with Host `host`, within `check.timeout`) answering its HTTP status.
/// The deploy passes its engine's probe, so unit tests can answer for
/// containers that do not listen.
pub async fn wait_healthy_with<P, PFut, F, Fut>(
    check: &HealthCheck,
    host: &str,
    mut probe: P,
    mut alive: F,
    mut on_progress: impl FnMut(&str),
) -> Result<(), HealthError>
where
    P: FnMut() -> PFut,
    PFut: Future<Output = Result<u16, String>>,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    let mut good = 0;
    let mut last: String;
    let mut bad_host = 0;
    loop {
        if let Err(reason) = alive().await {
            return Err(HealthError::Died(reason));
        }
        match probe().await {
            Ok(code) if is_healthy_status(code) => {
                good += 1;
                if good == 1 {
                    on_progress(&format!("answered {code} on {}", check.path));
                }
                if good >= check.required {
                    return Ok(());
                }
                continue;
            }
            Ok(code) => {
                good = 0;
                if code == 400 {
                    bad_host += 1;
                }
                last = format!("HTTP {code}");
            }
            Err(e) => {
                good = 0;
                last = e;
            }
        }
        if start.elapsed() >= check.deadline {
            if bad_host > 3 {
                return Err(HealthError::BadHost { host: host.into() });
            }
            return Err(HealthError::Timeout {
                secs: check.deadline.as_secs(),
                last,
            });
        }
        tokio::time::sleep(check.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn server(status: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        addr
    }

    fn quick() -> HealthCheck {
        HealthCheck {
            interval: Duration::from_millis(20),
            deadline: Duration::from_millis(400),
            ..Default::default()
        }
    }

    #[test]
    fn repo_file_sets_the_check_and_config_vars_win() {
        let table = parse_repo_file(
            "[healthcheck]\npath = \"/health/\"\ninterval = 0.5\ntimeout = 90\nattempts = 3\n\n[other]\nx = 1\n",
        )
        .unwrap();
        let none = std::collections::BTreeMap::new();
        let c = settings(&table, &none).unwrap();
        assert_eq!(c.path, "/health/");
        assert_eq!(c.interval, Duration::from_millis(500));
        assert_eq!(c.deadline, Duration::from_secs(90));
        assert_eq!(c.required, 3);
        let vars: std::collections::BTreeMap<String, String> = [
            ("PAAS_HEALTHCHECK_PATH", "/up"),
            ("PAAS_HEALTHCHECK_TIMEOUT", "20"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = settings(&table, &vars).unwrap();
        assert_eq!(c.path, "/up");
        assert_eq!(c.deadline, Duration::from_secs(20));
        assert_eq!(c.required, 3, "the file's value stays where no var is set");
        // No file, no table: the defaults.
        let d = settings(&parse_repo_file("").unwrap(), &none).unwrap();
        assert_eq!(d.path, HealthCheck::default().path);
        assert_eq!(d.required, HealthCheck::default().required);
        // The table survives the trip through a release's stored facts.
        let json = serde_json::to_value(&table).unwrap();
        assert_eq!(serde_json::from_value::<HealthTable>(json).unwrap(), table);
    }

    #[test]
    fn bad_health_settings_are_one_sentence_saying_what_to_fix() {
        for (text, want) in [
            (
                "[healthcheck]\npath = \"health\"\n",
                "does not start with /",
            ),
            ("[healthcheck]\nattempts = 0\n", "from 1 to 100"),
            ("[healthcheck]\ntimeout = 0\n", "whole seconds from 1"),
            ("[healthcheck]\ninterval = 0\n", "give seconds from 0.05"),
            ("[healthcheck]\nattempts = \"three\"\n", "not valid"),
            ("[healthcheck]\npaht = \"/\"\n", "unknown field `paht`"),
            ("[healthcheck\n", "not valid"),
        ] {
            let e = parse_repo_file(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.contains("paas.toml"), "{e}");
            assert!(e.ends_with("push again"), "{e}");
            assert_eq!(e.matches(". ").count(), 0, "one sentence: {e}");
        }
        for (k, v) in [
            ("PAAS_HEALTHCHECK_ATTEMPTS", "lots"),
            ("PAAS_HEALTHCHECK_TIMEOUT", "-1"),
            ("PAAS_HEALTHCHECK_INTERVAL", "100"),
            ("PAAS_HEALTHCHECK_PATH", "x y"),
        ] {
            let vars = [(k.to_string(), v.to_string())].into_iter().collect();
            let e = settings(&HealthTable::default(), &vars).unwrap_err();
            assert!(e.starts_with(&format!("config var {k} = ")), "{e}");
            assert!(e.contains("paas config:set"), "{e}");
        }
    }

    #[test]
    fn status_rules() {
        assert!(is_healthy_status(200));
        assert!(is_healthy_status(404));
        assert!(is_healthy_status(302));
        assert!(!is_healthy_status(400));
        assert!(!is_healthy_status(500));
        assert_eq!(parse_status(b"HTTP/1.1 404 Not Found"), Some(404));
        assert_eq!(parse_status(b"garbage"), None);
    }

    #[tokio::test]
    async fn healthy_404_passes_and_500_times_out() {
        let ok = server("404 Not Found").await;
        wait_healthy(&quick(), ok, "a.localhost", || async { Ok(()) }, |_| {})
            .await
            .unwrap();
        let bad = server("500 Internal Server Error").await;
        let e = wait_healthy(&quick(), bad, "a.localhost", || async { Ok(()) }, |_| {})
            .await
            .unwrap_err();
        assert!(matches!(e, HealthError::Timeout { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_dead_container_fails_at_once() {
        let addr = server("500 Internal Server Error").await;
        let check = HealthCheck {
            deadline: Duration::from_secs(30),
            ..quick()
        };
        let started = Instant::now();
        let e = wait_healthy(
            &check,
            addr,
            "a.localhost",
            || async { Err("exited with code 1".to_string()) },
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(e.to_string().contains("exited with code 1"));
    }
}
