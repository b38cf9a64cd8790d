//! The `paas` command-line client: one file per command group, all talking
//! to the daemon's HTTP API through one [`Target`] and failing with one
//! [`ClientError`].
//!
//! Where a command talks to: `--url`/`PAAS_URL`, else the `paas` git remote
//! of the current directory, else the saved `paas login`, else
//! `http://127.0.0.1:8300`. As whom: `--token`/`PAAS_TOKEN`, else the
//! remote's or the saved login's token for that URL, else the admin token
//! file of a daemon on this machine (`$PAAS_DATA_DIR/admin.token`, by
//! default /var/lib/paas).

pub mod apps;
pub mod certs;
pub mod config;
pub mod credential;
pub mod cron;
pub mod data;
pub mod domains;
pub mod login;
pub mod releases;
pub mod run;
pub mod system;
pub mod tokens;

use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Resolves names under `localhost` to the loopback address, as browsers
/// and curl do (RFC 6761), and every other name through the system:
/// `paas login https://paas.localhost:8443` works on the owner's machine
/// without an /etc/hosts line.
struct LocalhostResolver;

impl reqwest::dns::Resolve for LocalhostResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> =
                if host == "localhost" || host.ends_with(".localhost") {
                    vec![
                        (std::net::Ipv4Addr::LOCALHOST, 0).into(),
                        (std::net::Ipv6Addr::LOCALHOST, 0).into(),
                    ]
                } else {
                    tokio::net::lookup_host((host.as_str(), 0)).await?.collect()
                };
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The client's HTTP client: HTTP or HTTPS (rustls; the system's roots,
/// or the file in SSL_CERT_FILE), `*.localhost` on the loopback address.
pub fn http_client() -> reqwest::Client {
    client_builder().build().unwrap_or_default()
}

/// What [`http_client`] is built from (for a client that needs more, such
/// as HTTP/1.1 only).
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().dns_resolver(std::sync::Arc::new(LocalhostResolver))
}

/// How a client command ends: the exit code follows from it (0 done, 1 the
/// server refused or failed or cannot be reached, 2 the command was not
/// usable as given, or a one-off command's own code).
#[derive(Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The command was not usable as given (exit code 2).
    Usage(String),
    /// The daemon refused, failed, or could not be reached (exit code 1).
    Server(String),
    /// A one-off command's own exit code (`paas run`), passed on silently.
    Exit(u8),
}

/// What every client command returns.
pub type Result<T> = std::result::Result<T, ClientError>;

/// The one sentence for a daemon that does not answer.
pub fn unreachable(url: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Server(format!(
        "cannot reach paas at {url} ({e}); is `paas serve` running? Set PAAS_URL if it listens elsewhere"
    ))
}

/// The daemon's sentence from an error answer.
pub fn server_error(status: StatusCode, v: &Value) -> ClientError {
    if status == StatusCode::UNAUTHORIZED {
        return ClientError::Server("the daemon refused the token (HTTP 401): it is wrong or was revoked; set PAAS_TOKEN to the admin token or a live API token".into());
    }
    let msg = v["error"].as_str().unwrap_or("the request failed");
    ClientError::Server(format!("{msg} (HTTP {status})"))
}

/// The daemon's sentence from an error response, reading its body.
pub async fn refusal(resp: reqwest::Response) -> ClientError {
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or_default();
    server_error(status, &v)
}

/// Prints the API's answer for `--json`.
pub fn print_json(v: &Value) -> Result<()> {
    println!("{v:#}");
    Ok(())
}

/// Where and as whom a client command talks to the daemon.
pub struct Target {
    /// scheme://host[:port] of the daemon's control plane.
    pub url: String,
    /// The admin token or an API token.
    pub token: String,
    /// Print the API's JSON instead of text.
    pub json: bool,
}

impl Target {
    /// The target from the flags, the git remote, the saved login and the
    /// machine's own daemon, in that order.
    pub fn resolve(url: Option<String>, token: Option<String>, json: bool) -> Result<Target> {
        let remote = git_remote();
        let saved = login::saved();
        let url = url
            .or_else(|| remote.as_ref().map(|r| r.base.clone()))
            .or_else(|| saved.as_ref().map(|(u, _)| u.clone()))
            .unwrap_or_else(|| "http://127.0.0.1:8300".into());
        let url = url.trim_end_matches('/').to_string();
        // The remote's password is a token for the daemon the remote points
        // at; so is the saved login's, for its daemon.
        let remote_token = remote.filter(|r| r.base == url).and_then(|r| r.password);
        let saved_token = saved.filter(|(u, _)| *u == url).map(|(_, t)| t);
        let token = match (token, remote_token.or(saved_token)) {
            (Some(t), _) => t,
            (None, Some(t)) => t,
            (None, None) => std::fs::read_to_string(local_admin_token())
                .map(|t| t.trim().to_string())
                .map_err(|_| ClientError::Usage("no token: set PAAS_TOKEN (the admin token paas serve printed on first start, or one from `paas tokens:create`), run `paas login URL`, or pass --token".into()))?,
        };
        Ok(Target { url, token, json })
    }

    /// A request to the daemon, with the token.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        http_client()
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }

    /// Sends `req`; the response whatever its status, or the one sentence
    /// for a daemon that cannot be reached.
    pub async fn send_raw(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        req.send().await.map_err(|e| unreachable(&self.url, e))
    }

    /// Sends `req` and insists on a success status.
    pub async fn send_ok(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = self.send_raw(req).await?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(refusal(resp).await)
        }
    }

    /// One API request; the status and the parsed JSON answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = self.send_raw(req).await?;
        let status = resp.status();
        Ok((status, resp.json().await.unwrap_or_default()))
    }

    /// One API request; the parsed JSON answer, or the server's sentence.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let (status, v) = self.send(method, path, body).await?;
        if status.is_success() {
            Ok(v)
        } else {
            Err(server_error(status, &v))
        }
    }

    /// A request that changes something: prints the deploy's progress (if
    /// any), then the outcome (or the JSON); fails when the API says it failed.
    pub async fn action(&self, method: Method, path: &str, body: Value) -> Result<()> {
        let (status, v) = self.send(method, path, Some(body)).await?;
        if self.json {
            println!("{v:#}");
        } else {
            if let Some(log) = v["log"].as_str() {
                print!("{log}");
            }
            if let Some(m) = v["message"].as_str() {
                println!("{m}");
            }
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(server_error(status, &v))
        }
    }

    /// A request whose answer is a `message`: prints it, or the JSON.
    pub async fn say(&self, method: Method, path: &str, body: Option<Value>) -> Result<()> {
        let v = self.call(method, path, body).await?;
        if self.json {
            return print_json(&v);
        }
        println!("{}", v["message"].as_str().unwrap_or("done"));
        Ok(())
    }
}

/// The admin token file of a daemon on this machine: under `PAAS_DATA_DIR`
/// (the daemon's own setting), else `/var/lib/paas`.
fn local_admin_token() -> std::path::PathBuf {
    std::env::var_os("PAAS_DATA_DIR")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/lib/paas".into())
        .join("admin.token")
}

/// What `git remote get-url paas` says about the app and the daemon.
#[derive(Debug, PartialEq, Eq)]
pub struct Remote {
    /// scheme://host[:port] of the daemon, without credentials.
    pub base: String,
    pub app: String,
    /// The password of the remote's URL, when it carries one (a token).
    pub password: Option<String>,
}

/// `http://paas:TOKEN@host:8300/blog.git` → base `http://host:8300`, app `blog`.
pub fn parse_remote(url: &str) -> Option<Remote> {
    let (scheme, rest) = url.trim().split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let (authority, path) = rest.split_once('/')?;
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let app = path.trim_end_matches('/').strip_suffix(".git")?;
    if app.is_empty() || app.contains('/') || hostport.is_empty() {
        return None;
    }
    let password = userinfo
        .and_then(|u| u.split_once(':'))
        .map(|(_, p)| p.to_string())
        .filter(|p| !p.is_empty());
    Some(Remote {
        base: format!("{scheme}://{hostport}"),
        app: app.to_string(),
        password,
    })
}

/// The `paas` git remote of the current directory, if any.
fn git_remote() -> Option<Remote> {
    let out = std::process::Command::new("git")
        .args(["remote", "get-url", "paas"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_remote(&String::from_utf8_lossy(&out.stdout))
}

/// The app: `--app`, else the one the `paas` git remote names.
pub fn app_name(given: Option<String>) -> Result<String> {
    if let Some(app) = given {
        return Ok(app);
    }
    git_remote().map(|r| r.app).ok_or_else(|| {
        ClientError::Usage("no --app given and no `paas` git remote here: pass --app NAME or run inside the app's git checkout".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_name_the_app_and_the_daemon() {
        assert_eq!(
            parse_remote("http://paas:s3cret@example.org:8300/blog.git\n"),
            Some(Remote {
                base: "http://example.org:8300".into(),
                app: "blog".into(),
                password: Some("s3cret".into()),
            })
        );
        let r = parse_remote("https://host/shop.git").unwrap();
        assert_eq!((r.base.as_str(), r.app.as_str()), ("https://host", "shop"));
        assert_eq!(r.password, None);
        assert_eq!(parse_remote("git@github.com:me/blog.git"), None);
        assert_eq!(parse_remote("http://host/a/blog.git"), None);
        assert_eq!(parse_remote("http://host/blog"), None);
    }

    #[test]
    fn unauthorized_answers_say_what_token_to_send() {
        let e = server_error(StatusCode::UNAUTHORIZED, &Value::Null);
        assert!(matches!(e, ClientError::Server(m) if m.contains("PAAS_TOKEN")));
        let e = server_error(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "no app"}),
        );
        assert_eq!(e, ClientError::Server("no app (HTTP 404 Not Found)".into()));
    }
}
