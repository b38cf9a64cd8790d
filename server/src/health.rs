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

use bytes::Bytes;
use http_body_util::Empty;
use hyper::{header, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

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
    // The probe asks for exactly this path: it must be one as HTTP sends it.
    let asked = format!("http://127.0.0.1{p}").parse::<hyper::Uri>();
    if asked
        .ok()
        .and_then(|u| u.path_and_query().map(|pq| pq.as_str() == p))
        != Some(true)
    {
        return Err(
            "is not a URL path (percent-encode what a URL cannot carry as it is, like ` and #)",
        );
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

/// One HTTP/1.1 GET through hyper's client on a fresh connection (no pool:
/// each attempt proves the app still accepts connections); returns the status
/// code. The body is not read.
pub async fn probe_once(
    addr: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<u16, String> {
    let req = Request::get(format!("http://{addr}{path}"))
        .header(header::HOST, host)
        .header(header::USER_AGENT, "paas-health")
        .header("x-forwarded-proto", "http")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot make a request for {path:?} to Host {host:?}: {e}"))?;
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();
    // The client has no per-request timeout: the whole attempt gets one.
    match tokio::time::timeout(timeout, client.request(req)).await {
        Ok(Ok(response)) => Ok(response.status().as_u16()),
        Ok(Err(e)) => Err(error_chain(&e)),
        Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
    }
}

/// An error and its causes on one line: the client's own message
/// ("client error (Connect)") alone does not say what went wrong.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
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
    // Tight at first (a new release's first answer is what a push waits
    // for: gunicorn answers within tens of milliseconds of its workers'
    // start), then doubling up to the configured interval. Whether the
    // container still runs asks the engine: at most every ALIVE_EVERY.
    let mut pause = FIRST_PAUSE.min(check.interval);
    let mut alive_asked: Option<Instant> = None;
    loop {
        if alive_asked.is_none_or(|at| at.elapsed() >= ALIVE_EVERY) {
            if let Err(reason) = alive().await {
                return Err(HealthError::Died(reason));
            }
            alive_asked = Some(Instant::now());
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
                tracing::debug!(target: "paas::health", %host, "no answer yet: {e}");
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
        tokio::time::sleep(pause).await;
        if start.elapsed() >= TIGHT_FOR {
            pause = (pause * 2).min(check.interval);
        }
    }
}

/// The pause between probes while the release starts; after TIGHT_FOR
/// each next one doubles, up to the interval.
const FIRST_PAUSE: Duration = Duration::from_millis(20);
const TIGHT_FOR: Duration = Duration::from_secs(3);
/// How often the probe loop asks the engine whether the container runs.
const ALIVE_EVERY: Duration = Duration::from_millis(250);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
            // Found by `props::fuzz_paas_toml_table`: paths the probe's
            // request cannot carry were accepted, and every probe failed.
            ("[healthcheck]\npath = \"/`\"\n", "is not a URL path"),
            ("[healthcheck]\npath = \"/up#x\"\n", "is not a URL path"),
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
            ("PAAS_HEALTHCHECK_PATH", "/`x`"),
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
    }

    /// Accepts one connection, answers `answer` after reading the request
    /// head, and hands the head back.
    async fn one_answer(answer: &'static str) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let head = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(head).unwrap()
        });
        (addr, head)
    }

    #[tokio::test]
    async fn probe_asks_with_the_apps_host_and_returns_the_status() {
        let (addr, head) =
            one_answer("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found").await;
        let code = probe_once(addr, "blog.example.org", "/health/?x=1", WAIT)
            .await
            .unwrap();
        assert_eq!(code, 404);
        let head = head.await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /health/?x=1 http/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nhost: blog.example.org\r\n"), "{head}");
        assert!(head.contains("\r\nx-forwarded-proto: http\r\n"), "{head}");
        assert!(head.contains("\r\nuser-agent: paas-health\r\n"), "{head}");
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn probe_failures_say_why() {
        // Not HTTP at all.
        let (addr, _head) = one_answer("SSH-2.0-OpenSSH_9.2\r\n").await;
        let e = probe_once(addr, "a.localhost", "/", WAIT)
            .await
            .unwrap_err();
        assert!(!e.is_empty());
        // Nothing listens.
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let e = probe_once(closed, "a.localhost", "/", WAIT)
            .await
            .unwrap_err();
        assert!(e.to_lowercase().contains("connect"), "{e}");
        // Accepts, never answers: the attempt's timeout ends it.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let started = Instant::now();
        let e = probe_once(addr, "a.localhost", "/", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(e.starts_with("no answer within"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(silent);
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

#[cfg(test)]
mod props {
    //! Property tests: the `[healthcheck]` table of a pushed paas.toml.

    use super::*;
    use crate::fuzz::{check, ensure};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(serde::Serialize)]
    struct Wrapper<'a> {
        healthcheck: &'a HealthTable,
    }

    fn table() -> impl Strategy<Value = HealthTable> {
        (
            prop::option::of(prop_oneof!["/[a-zA-Z0-9/._~?=&%-]{0,20}", any::<String>()]),
            prop::option::of(prop_oneof![0.0f64..70.0, any::<f64>()]),
            prop::option::of(prop_oneof![0u64..4000, any::<u64>()]),
            prop::option::of(prop_oneof![0u32..120, any::<u32>()]),
        )
            .prop_map(|(path, interval, timeout, attempts)| HealthTable {
                path,
                interval,
                timeout,
                attempts,
            })
    }

    /// The probe's request for `path` can be made, and asks for that path.
    fn probe_target(path: &str) -> Result<(), String> {
        let req = Request::get(format!("http://127.0.0.1:8000{path}"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let asked = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("");
        if asked == path {
            Ok(())
        } else {
            Err(format!("the probe would ask for {asked:?}"))
        }
    }

    #[test]
    fn fuzz_paas_toml_table() {
        check("paas_toml_table", 512, table(), |t| {
            // TOML has no integers past i64::MAX.
            let Ok(text) = toml::to_string(&Wrapper { healthcheck: &t }) else {
                return Ok(());
            };
            let Ok(back) = parse_repo_file(&text) else {
                return Ok(());
            };
            ensure(back == t, || {
                format!("{text:?} read back as {back:?}, not {t:?}")
            })?;
            if let Some(p) = &back.path {
                ensure(probe_target(p).is_ok(), || {
                    format!(
                        "path {p:?} was accepted, but the probe cannot ask for it: {:?}",
                        probe_target(p)
                    )
                })?;
            }
            // An accepted table makes a health check, never a panic.
            let check = settings(&back, &BTreeMap::new());
            ensure(check.is_ok(), || {
                format!("{back:?} was accepted, then refused: {check:?}")
            })?;
            let c = check.unwrap();
            ensure(
                c.timeout <= c.deadline && c.required >= 1 && c.interval > Duration::ZERO,
                || format!("{back:?} makes {c:?}"),
            )
        });
    }

    #[test]
    fn fuzz_paas_toml_text() {
        let text = prop_oneof![
            any::<String>(),
            "\\[healthcheck\\]\n(path|interval|timeout|attempts|other) = (\"[^\"\n]{0,10}\"|-?[0-9.e+-]{1,8}|nan|inf|-inf|true|\\[\\])\n",
            "\\[(healthcheck|other|healthcheck\\.x)\\]\n[a-z]{1,8} = [0-9]{1,3}\n",
        ];
        check("paas_toml_text", 512, text, |text| {
            let Ok(t) = parse_repo_file(&text) else {
                return Ok(());
            };
            if let Some(p) = &t.path {
                ensure(probe_target(p).is_ok(), || {
                    format!(
                        "path {p:?} was accepted, but the probe cannot ask for it: {:?}",
                        probe_target(p)
                    )
                })?;
            }
            ensure(settings(&t, &BTreeMap::new()).is_ok(), || {
                format!("{text:?} was accepted as {t:?}, then refused")
            })
        });
    }

    #[test]
    fn fuzz_health_config_vars() {
        let value = prop_oneof![
            any::<String>(),
            "-?[0-9]{0,4}(\\.[0-9]{0,3})?",
            Just("nan".to_string()),
            Just("inf".to_string()),
            Just("1e400".to_string()),
            "/[^ ]{0,10}",
        ];
        let key = prop::sample::select(vec![
            "PAAS_HEALTHCHECK_PATH",
            "PAAS_HEALTHCHECK_INTERVAL",
            "PAAS_HEALTHCHECK_TIMEOUT",
            "PAAS_HEALTHCHECK_ATTEMPTS",
        ]);
        let vars = prop::collection::btree_map(key.prop_map(str::to_string), value, 0..4);
        check("health_config_vars", 512, (table(), vars), |(t, vars)| {
            // The table as a push can set it: through paas.toml's checks.
            let t = toml::to_string(&Wrapper { healthcheck: &t })
                .ok()
                .and_then(|text| parse_repo_file(&text).ok())
                .unwrap_or_default();
            let Ok(c) = settings(&t, &vars) else {
                return Ok(());
            };
            ensure(probe_target(&c.path).is_ok(), || {
                format!(
                    "config {vars:?} set path {:?}, which the probe cannot ask for",
                    c.path
                )
            })?;
            ensure(
                c.timeout <= c.deadline
                    && c.required >= 1
                    && c.interval >= Duration::from_millis(50)
                    && c.interval <= Duration::from_secs(60),
                || format!("config {vars:?} made {c:?}"),
            )
        });
    }
}
