//! Credentials: the admin token (API, git, dashboard login) and dashboard sessions.
//!
//! On first start the daemon makes a random admin token, stores it 0600 at
//! `<data-dir>/admin.token` and prints it once. Requests present it as
//! `Authorization: Bearer TOKEN` (API, CLI) or as the password of HTTP basic
//! auth (git). The dashboard trades it for a session cookie.
//!
//! API tokens (`paas tokens:create --name laptop`) work wherever the admin
//! token does. Only the SHA-256 of each is stored; a request's secret is
//! hashed and looked up, so a revoked token fails with the next request.

use axum::http::{header, HeaderMap};
use base64::Engine;
use rand::RngCore;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a dashboard session lives without use.
const SESSION_IDLE: Duration = Duration::from_secs(12 * 3600);

/// A random token of `bytes` bytes, URL-safe base64 without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// A new API token's secret: 32 random bytes behind a recognisable prefix.
pub fn new_api_token() -> String {
    format!("paas_{}", random_token(32))
}

/// The SHA-256 of a secret, lower-case hex: what the store keeps of a token.
pub fn hash_token(secret: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The secret an `Authorization` header presents: the bearer token, or the
/// password of HTTP basic auth (git).
pub fn presented_secret(value: Option<&str>) -> Option<String> {
    let value = value?;
    if let Some(t) = value.strip_prefix("Bearer ") {
        return Some(t.trim().to_string());
    }
    let b = value.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b.trim())
        .ok()?;
    let raw = String::from_utf8_lossy(&raw);
    raw.split_once(':').map(|(_, p)| p.to_string())
}

/// Equality that takes the same time wherever the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The admin token, loaded or created.
pub struct AdminToken {
    token: String,
}

impl AdminToken {
    /// Load `<data-dir>/admin.token`, creating it (0600) when missing.
    /// Returns the token and whether it was just created (print it then).
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<(AdminToken, bool)> {
        let path = data_dir.join("admin.token");
        match std::fs::read_to_string(&path) {
            Ok(t) if !t.trim().is_empty() => Ok((
                AdminToken {
                    token: t.trim().to_string(),
                },
                false,
            )),
            _ => {
                let token = random_token(24);
                crate::layout::write_private(&path, format!("{token}\n").as_bytes())?;
                Ok((AdminToken { token }, true))
            }
        }
    }

    /// The token itself (to print once on creation).
    pub fn reveal(&self) -> &str {
        &self.token
    }

    /// Does this presented secret match?
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq(presented.as_bytes(), self.token.as_bytes())
    }

    /// Check an `Authorization` header: Bearer, or Basic with the token as password.
    pub fn check_header(&self, value: Option<&str>) -> bool {
        presented_secret(value).is_some_and(|s| self.matches(&s))
    }
}

/// Who a presented secret is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The admin token from `<data-dir>/admin.token`.
    Admin,
    /// The API token of this name, admin-scoped.
    Token(String),
    /// A deploy-only token: it may push to and read this one app, nothing
    /// else (no config, no one-off commands, no tokens, no dashboard).
    Deploy { name: String, app: String },
}

impl Credential {
    /// The token's name (`None`: the admin token).
    pub fn token_name(&self) -> Option<&str> {
        match self {
            Credential::Admin => None,
            Credential::Token(name) | Credential::Deploy { name, .. } => Some(name),
        }
    }

    /// The one app a deploy-only token is for (`None`: admin scope).
    pub fn deploy_app(&self) -> Option<&str> {
        match self {
            Credential::Deploy { app, .. } => Some(app),
            _ => None,
        }
    }
}

/// Dashboard sessions: random ids held in memory (a restart logs everyone
/// out), each with its CSRF token for state-changing forms.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
}

struct Session {
    seen: Instant,
    csrf: String,
    /// The API token the session was opened with (none: the admin token).
    token: Option<String>,
}

impl Sessions {
    /// Start a session; returns its id for the cookie.
    pub fn create(&self) -> String {
        self.create_for(None)
    }

    /// Start a session opened with the named API token (none: the admin
    /// token); revoking that token ends it.
    pub fn create_for(&self, token: Option<&str>) -> String {
        let id = random_token(32);
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, s| s.seen.elapsed() < SESSION_IDLE);
        m.insert(
            id.clone(),
            Session {
                seen: Instant::now(),
                csrf: random_token(24),
                token: token.map(str::to_string),
            },
        );
        id
    }

    /// Is this a live session? Touches it.
    pub fn check(&self, id: &str) -> bool {
        self.csrf(id).is_some()
    }

    /// The CSRF token of a live session (touches it).
    pub fn csrf(&self, id: &str) -> Option<String> {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match m.get_mut(id) {
            Some(s) if s.seen.elapsed() < SESSION_IDLE => {
                s.seen = Instant::now();
                Some(s.csrf.clone())
            }
            _ => None,
        }
    }

    /// Does `presented` match the session's CSRF token?
    pub fn check_csrf(&self, id: &str, presented: &str) -> bool {
        self.csrf(id)
            .is_some_and(|t| constant_time_eq(t.as_bytes(), presented.as_bytes()))
    }

    /// End every session opened with the named API token.
    pub fn remove_for_token(&self, name: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, s| s.token.as_deref() != Some(name));
    }

    /// The API token a live session was opened with: `Some(None)` for the
    /// admin token, `None` for no live session.
    pub fn opened_with(&self, id: &str) -> Option<Option<String>> {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        m.get(id)
            .filter(|s| s.seen.elapsed() < SESSION_IDLE)
            .map(|s| s.token.clone())
    }

    /// End a session.
    pub fn remove(&self, id: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// The dashboard's session cookie on plain HTTP (the admin listener).
pub const COOKIE: &str = "paas_session";
/// The dashboard's session cookie over HTTPS: `__Host-` makes the browser
/// keep it for this exact host, Secure, Path=/ (an app on a sibling
/// subdomain cannot plant or overwrite it).
pub const SECURE_COOKIE: &str = "__Host-paas_session";

/// A request extension: the request came through paas's TLS listener.
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// The session id from the request's cookie, if any (the `__Host-` one
/// first; the proxy drops the plain one from requests over TLS).
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    let pairs = || {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
    };
    pairs()
        .find(|(k, _)| *k == SECURE_COOKIE)
        .or_else(|| pairs().find(|(k, _)| *k == COOKIE))
        .map(|(_, v)| v.to_string())
}

/// The Set-Cookie value that starts a session (`value` empty: ends it).
pub fn session_set_cookie(value: &str, secure: bool) -> String {
    let end = if value.is_empty() { "; Max-Age=0" } else { "" };
    if secure {
        format!("{SECURE_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict{end}")
    } else {
        format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict{end}")
    }
}

/// `bytes` random bytes as lower-case hex (database passwords, backup ids).
pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    crate::layout::hex(&buf)
}

/// Failed logins and wrong tokens per client address: after `max` within
/// [`LoginLimiter::WINDOW`], that address is refused until the oldest ages
/// out.
pub struct LoginLimiter {
    max: usize,
    failures: Mutex<HashMap<std::net::IpAddr, Vec<Instant>>>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter::new(Self::MAX_FAILURES)
    }
}

impl LoginLimiter {
    /// The default of `max`.
    pub const MAX_FAILURES: usize = 10;
    pub const WINDOW: Duration = Duration::from_secs(15 * 60);

    /// A limiter refusing an address after `max` failures in the window.
    pub fn new(max: usize) -> LoginLimiter {
        LoginLimiter {
            max,
            failures: Mutex::default(),
        }
    }

    /// Is this address allowed to try now?
    pub fn allowed(&self, ip: std::net::IpAddr) -> bool {
        let mut m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let list = m.entry(ip).or_default();
        list.retain(|t| t.elapsed() < Self::WINDOW);
        list.len() < self.max
    }

    /// Record a failed attempt.
    pub fn failed(&self, ip: std::net::IpAddr) {
        let mut m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, l| l.last().is_some_and(|t| t.elapsed() < Self::WINDOW));
        m.entry(ip).or_default().push(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_created_once_with_mode_0600_and_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (t, created) = AdminToken::load_or_create(dir.path()).unwrap();
        assert!(created);
        let mode = std::fs::metadata(dir.path().join("admin.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (t2, created) = AdminToken::load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert!(t2.matches(t.reveal()));
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("x:{}", t.reveal()));
        assert!(t.check_header(Some(&format!("Basic {basic}"))));
        assert!(t.check_header(Some(&format!("Bearer {}", t.reveal()))));
        assert!(!t.check_header(Some("Bearer nope")));
        assert!(!t.check_header(None));
    }

    #[test]
    fn sessions_carry_a_csrf_token() {
        let s = Sessions::default();
        let id = s.create();
        assert!(s.check(&id));
        let csrf = s.csrf(&id).unwrap();
        assert!(s.check_csrf(&id, &csrf));
        assert!(!s.check_csrf(&id, "forged"));
        s.remove(&id);
        assert!(!s.check(&id));
        assert!(!s.check_csrf(&id, &csrf));
        let a = s.create_for(Some("laptop"));
        let b = s.create_for(Some("phone"));
        s.remove_for_token("laptop");
        assert!(!s.check(&a) && s.check(&b));
    }

    #[test]
    fn api_tokens_hash_and_parse() {
        let t = new_api_token();
        assert!(t.starts_with("paas_") && t.len() > 40);
        assert_ne!(t, new_api_token());
        let h = hash_token(&t);
        assert_eq!(h.len(), 64);
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("paas:s3cret");
        assert_eq!(
            presented_secret(Some(&format!("Basic {basic}"))).as_deref(),
            Some("s3cret")
        );
        assert_eq!(presented_secret(Some("Bearer x ")).as_deref(), Some("x"));
        assert_eq!(presented_secret(Some("Digest x")), None);
        assert_eq!(presented_secret(None), None);
    }

    #[test]
    fn logins_are_limited_per_address() {
        let l = LoginLimiter::default();
        let a: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let b: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..LoginLimiter::MAX_FAILURES {
            assert!(l.allowed(a));
            l.failed(a);
        }
        assert!(!l.allowed(a));
        assert!(l.allowed(b));
    }
}
