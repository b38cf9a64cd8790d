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
    mut alive: F,
    mut on_progress: impl FnMut(&str),
) -> Result<(), HealthError>
where
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
        match probe_once(addr, host, &check.path, check.timeout).await {
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
