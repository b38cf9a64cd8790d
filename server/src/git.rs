//! `git push` over smart HTTP: bare repositories, git's own `http-backend`
//! behind axum, and the pre-receive hook that turns a push into a deploy.
//!
//! libgit2 has no server side for the pack protocol, so the daemon runs
//! `git http-backend` as a CGI process per request and streams both ways:
//! the request body into its stdin as it arrives, its stdout back to the
//! pusher as it is written. Buffering either side would hide every `remote:`
//! line of the deploy until the push ended.
//!
//! The hook runs inside `git receive-pack` with the pushed objects still in
//! quarantine, so it is the hook (`paas hook pre-receive`, see
//! [`run_pre_receive_hook`]) that runs `git archive` on the new commit and
//! sends the tar to the daemon's internal deploy endpoint; the daemon answers
//! with the deploy's progress, which the hook prints (git shows it to the
//! pusher as `remote:` lines), and a last result line that decides the exit
//! code, so a failed deploy rejects the push.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Response, StatusCode};
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio_util::io::ReaderStream;

/// The last line of the deploy stream tells the hook how the deploy ended.
pub const RESULT_OK: &str = "paas-result: ok";
/// Prefix of the result line of a failed deploy (followed by the reason).
pub const RESULT_FAILED: &str = "paas-result: failed: ";

/// App names: a lower-case letter, then up to 29 lower-case letters, digits or dashes.
pub fn validate_app_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 30
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if ok && name != "paas" {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid app name: use a lower-case letter followed by up to 29 lower-case letters, digits or dashes (not ending in a dash, and not \"paas\"), e.g. my-blog"
        ))
    }
}

/// The bare repositories under `<data-dir>/repos`.
#[derive(Debug, Clone)]
pub struct Repos {
    root: PathBuf,
    /// The `paas` binary the hook runs.
    hook_binary: PathBuf,
}

/// A git failure on the server side.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git ({0}); install git (apt-get install git) and restart paas")]
    Spawn(std::io::Error),
    #[error("creating the repository failed: {0}")]
    Init(String),
    #[error("repository I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

impl Repos {
    /// Repositories under `root`; hooks will run `hook_binary hook pre-receive`.
    pub fn new(root: PathBuf, hook_binary: PathBuf) -> Repos {
        Repos { root, hook_binary }
    }

    /// Where the repositories live (GIT_PROJECT_ROOT).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The bare repository of an app.
    pub fn path(&self, app: &str) -> PathBuf {
        self.root.join(format!("{app}.git"))
    }

    /// Create the app's bare repository (idempotent) and install its hook.
    pub async fn ensure(&self, app: &str) -> Result<PathBuf, GitError> {
        let path = self.path(app);
        if !path.join("HEAD").exists() {
            tokio::fs::create_dir_all(&self.root).await?;
            let out = Command::new("git")
                .args(["init", "--bare", "--quiet", "--initial-branch=main"])
                .arg(&path)
                .output()
                .await
                .map_err(GitError::Spawn)?;
            if !out.status.success() {
                return Err(GitError::Init(
                    String::from_utf8_lossy(&out.stderr).trim().to_string(),
                ));
            }
        }
        self.install_hook(&path).await?;
        Ok(path)
    }

    /// (Re)write the pre-receive hook: the binary's path may change on upgrade.
    pub async fn install_hook(&self, repo: &Path) -> Result<(), GitError> {
        let hook = repo.join("hooks").join("pre-receive");
        let script = format!(
            "#!/bin/sh\n# Installed by paas: deploys pushes to main or master.\nexec '{}' hook pre-receive\n",
            self.hook_binary.display().to_string().replace('\'', "'\\''")
        );
        tokio::fs::create_dir_all(hook.parent().unwrap_or(repo)).await?;
        tokio::fs::write(&hook, script).await?;
        set_executable(&hook)?;
        Ok(())
    }

    /// Refresh the hooks of every repository (on daemon start).
    pub async fn refresh_hooks(&self) -> Result<(), GitError> {
        let Ok(mut dir) = tokio::fs::read_dir(&self.root).await else {
            return Ok(());
        };
        while let Some(entry) = dir.next_entry().await? {
            if entry.path().join("HEAD").exists() {
                self.install_hook(&entry.path()).await?;
            }
        }
        Ok(())
    }

    /// Delete an app's repository.
    pub async fn remove(&self, app: &str) -> Result<(), GitError> {
        match tokio::fs::remove_dir_all(self.path(app)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

fn set_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

/// What the hook needs to reach the daemon; passed to `git http-backend` as
/// environment, which git hands on to the hook.
#[derive(Debug, Clone)]
pub struct HookEnv {
    /// Base URL of the daemon's admin listener as seen from this machine.
    pub daemon_url: String,
    /// A secret the daemon made at start; only hooks it spawned know it.
    pub secret: String,
}

/// One request to `git http-backend`.
pub struct CgiRequest {
    pub app: String,
    /// The path after `/<app>.git`, e.g. `/info/refs`.
    pub path: String,
    pub method: Method,
    pub query: String,
    pub headers: HeaderMap,
    pub remote_addr: String,
    pub body: Body,
}

/// Run `git http-backend` for one request and stream its answer.
pub async fn serve_cgi(
    repos: &Repos,
    hook: &HookEnv,
    req: CgiRequest,
) -> Result<Response<Body>, GitError> {
    let header = |name: &str| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", repos.root())
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", format!("/{}.git{}", req.app, req.path))
        .env("REQUEST_METHOD", req.method.as_str())
        .env("QUERY_STRING", &req.query)
        // receive-pack is refused unless a user is authenticated; we did that.
        .env("REMOTE_USER", "paas")
        .env("REMOTE_ADDR", &req.remote_addr)
        .env("PAAS_HOOK_URL", &hook.daemon_url)
        .env("PAAS_HOOK_SECRET", &hook.secret)
        .env("PAAS_APP", &req.app)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(v) = header("content-type") {
        cmd.env("CONTENT_TYPE", v);
    }
    // Pushes are often chunked: CONTENT_LENGTH only when the client sent one.
    if let Some(v) = header("content-length") {
        cmd.env("CONTENT_LENGTH", v);
    }
    if let Some(v) = header("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", v);
    }
    if let Some(v) = header("git-protocol") {
        cmd.env("GIT_PROTOCOL", v);
    }
    let mut child = cmd.spawn().map_err(GitError::Spawn)?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");

    // Request body → stdin, concurrently with reading stdout (a push can be
    // larger than the pipe buffers).
    let mut body = req.body.into_data_stream();
    tokio::spawn(async move {
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            if stdin.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = stdin.shutdown().await;
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::warn!(target: "paas::git", "http-backend: {line}");
        }
    });

    // The CGI header block, then the body passed through as it comes.
    let mut out = BufReader::new(stdout);
    let mut builder = Response::builder().status(StatusCode::OK);
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).await? == 0 {
            break;
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("status") {
                let code = value.split_whitespace().next().unwrap_or("200");
                builder = builder.status(code.parse::<u16>().unwrap_or(200));
            } else {
                builder = builder.header(name.trim(), value);
            }
        }
    }
    // The child lives as long as its output stream; reap it when done.
    let stream = ReaderStream::new(out).chain(futures_util::stream::once(async move {
        let _ = child.wait().await;
        Ok(bytes::Bytes::new())
    }));
    Ok(builder
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty())))
}

/// `paas hook pre-receive`: runs inside `git receive-pack`. Reads the ref
/// updates on stdin, deploys the first push to main or master through the
/// daemon, prints its progress and returns the exit code for git (non-zero
/// rejects the push).
pub async fn run_pre_receive_hook(
    daemon_url: &str,
    secret: &str,
    app: &str,
    stdin: impl tokio::io::AsyncRead + Unpin,
) -> i32 {
    let mut lines = BufReader::new(stdin).lines();
    let mut target = None;
    while let Ok(Some(line)) = lines.next_line().await {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [_old, new, refname] = parts[..] else {
            continue;
        };
        let deletes = new.chars().all(|c| c == '0');
        match refname {
            "refs/heads/main" | "refs/heads/master" if !deletes => {
                if target.is_none() {
                    target = Some((new.to_string(), refname.to_string()));
                }
            }
            "refs/heads/main" | "refs/heads/master" => {
                println!("Deleting {refname} does not stop the running app; use `paas apps:destroy {app}` for that.");
            }
            other => {
                let branch = other.strip_prefix("refs/heads/").unwrap_or(other);
                println!("{branch} stored, not deployed: only main or master deploy.");
            }
        }
    }
    let Some((rev, refname)) = target else {
        return 0;
    };
    match deploy_via_daemon(daemon_url, secret, app, &rev, &refname).await {
        Ok(code) => code,
        Err(message) => {
            println!("{message}");
            1
        }
    }
}

async fn deploy_via_daemon(
    daemon_url: &str,
    secret: &str,
    app: &str,
    rev: &str,
    refname: &str,
) -> Result<i32, String> {
    // The quarantined objects are visible to git commands run from the hook.
    let archive = Command::new("git")
        .args(["archive", "--format=tar", rev])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|e| format!("cannot run git archive ({e}); is git installed on the server?"))?;
    if !archive.status.success() {
        return Err(format!(
            "git archive {rev} failed: {}",
            String::from_utf8_lossy(&archive.stderr).trim()
        ));
    }
    let message = Command::new("git")
        .args(["log", "-1", "--format=%s", rev])
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{daemon_url}/internal/deploy"))
        .bearer_auth(secret)
        .query(&[
            ("app", app),
            ("rev", rev),
            ("ref", refname),
            ("message", message.as_str()),
        ])
        .body(archive.stdout)
        .send()
        .await
        .map_err(|e| {
            format!("the paas daemon did not answer ({e}); check that `paas serve` is running and push again.")
        })?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(format!(
            "the paas daemon refused the deploy ({status}): {text}"
        ));
    }
    let mut lines = std::pin::pin!(crate::lines::of_stream(resp.bytes_stream()));
    let mut result = None;
    while let Some(line) = lines.next().await {
        let line = line.map_err(|e| {
            format!("lost the connection to the paas daemon during the deploy ({e}); see `paas releases` for how it ended.")
        })?;
        let line = crate::lines::text(&line);
        if line == RESULT_OK {
            result = Some(0);
        } else if let Some(reason) = line.strip_prefix(RESULT_FAILED) {
            println!();
            println!("Deploy failed: {reason}");
            result = Some(1);
        } else {
            println!("{line}");
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }
    result.ok_or_else(|| {
        "the deploy stream ended without a result; see `paas releases` for how it ended."
            .to_string()
    })
}

/// Read at most `limit` bytes of a body into memory.
pub async fn read_body_limited(body: Body, limit: usize) -> Result<Vec<u8>, String> {
    let mut reader = tokio_util::io::StreamReader::new(
        body.into_data_stream()
            .map(|r| r.map_err(std::io::Error::other)),
    );
    let mut out = Vec::new();
    (&mut reader)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .await
        .map_err(|e| format!("reading the pushed code failed: {e}"))?;
    if out.len() > limit {
        return Err(format!(
            "the pushed code is larger than {} MiB; remove large files from the repository",
            limit >> 20
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_follow_the_rule() {
        for ok in ["blog", "a", "my-blog-2", "abcdefghijklmnopqrstuvwxyz0123"] {
            assert!(validate_app_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Blog",
            "1blog",
            "-blog",
            "blog-",
            "my_blog",
            "blog.git",
            "abcdefghijklmnopqrstuvwxyz01234",
            "paas",
            "../etc",
        ] {
            let e = validate_app_name(bad).unwrap_err();
            assert!(e.contains("lower-case letter"), "{e}");
        }
    }
}
