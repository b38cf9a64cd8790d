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
//! quarantine (a directory under the repository's `objects/` that git
//! deletes when the hook exits). The hook (`paas hook pre-receive`, see
//! [`run_pre_receive_hook`]) sends the daemon's internal deploy endpoint the
//! new revision and that directory, not the code: the daemon opens the
//! repository with libgit2, adds the quarantine as an alternate object store
//! ([`CommitSource`]) and writes the tree out file by file ([`export_tree`]).
//! The daemon answers with the deploy's progress, which the hook prints (git
//! shows it to the pusher as `remote:` lines), and a last result line that
//! decides the exit code, so a failed deploy rejects the push.
//!
//! Symlinks in a pushed tree are never written where the daemon reads the
//! code: [`export_tree`] hands them back as a list, and the build context
//! carries them as symlinks into the image. Nothing the daemon reads (a
//! Procfile, paas.toml, a requirements file) can point it at a host file.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Response, StatusCode};
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
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
    #[error("reading the repository failed: {0}")]
    Repo(#[from] git2::Error),
    #[error(
        "{0:?} is not a commit id: the hook sends the full 40-character id of the pushed commit"
    )]
    BadRevision(String),
    #[error("commit {0} is not in the repository: push it again")]
    NoCommit(String),
    #[error("the object directory {0:?} is not inside the app's repository, so it is not read")]
    BadObjectDir(String),
    #[error("the pushed tree holds the path {0:?}, which cannot be written safely: rename it and push again")]
    BadPath(String),
    #[error("the pushed code is larger than {} MiB; remove large files from the repository (or mark them export-ignore in .gitattributes) and push again", .0 >> 20)]
    TooLarge(u64),
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
            let p = path.clone();
            tokio::task::spawn_blocking(move || init_bare(&p))
                .await
                .map_err(|e| GitError::Init(e.to_string()))??;
        }
        self.install_hook(&path).await?;
        Ok(path)
    }

    /// Checks an object directory a hook named (the push's quarantine): it
    /// must exist inside the app's `objects/`, after resolving `..` and
    /// symlinks. The path comes over HTTP, so nothing else is opened.
    pub fn object_dir(&self, app: &str, given: &str) -> Result<PathBuf, GitError> {
        let refuse = || GitError::BadObjectDir(given.to_string());
        let objects =
            std::fs::canonicalize(self.path(app).join("objects")).map_err(|_| refuse())?;
        let dir = std::fs::canonicalize(given).map_err(|_| refuse())?;
        if dir == objects || !dir.starts_with(&objects) || !dir.is_dir() {
            return Err(refuse());
        }
        Ok(dir)
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

/// `git init --bare --initial-branch=main`, with libgit2.
fn init_bare(path: &Path) -> Result<(), GitError> {
    let mut opts = git2::RepositoryInitOptions::new();
    opts.bare(true).initial_head("main").mkpath(true);
    git2::Repository::init_opts(path, &opts)
        .map_err(|e| GitError::Init(e.message().to_string()))?;
    Ok(())
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
    // git keeps the pushed objects in a quarantine directory until this hook
    // accepts them; the daemon reads them from there (checked on its side).
    // Made absolute here: the hook runs in the repository, the daemon not.
    let objects = std::env::var_os("GIT_QUARANTINE_PATH")
        .and_then(|p| std::fs::canonicalize(p).ok())
        .map(|p| p.to_string_lossy().into_owned());
    let mut query = vec![("app", app), ("rev", rev), ("ref", refname)];
    if let Some(dir) = &objects {
        query.push(("objects", dir.as_str()));
    }
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{daemon_url}/internal/deploy"))
        .bearer_auth(secret)
        .query(&query)
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

// ------------------------------------------------------- reading a commit

/// Where a deploy reads its commit from: the app's bare repository, plus,
/// during a push, the quarantine directory that holds the pushed objects
/// until the pre-receive hook accepts them.
#[derive(Debug, Clone)]
pub struct CommitSource {
    /// The bare repository.
    pub repo: PathBuf,
    /// The commit, as 40 hex digits.
    pub rev: String,
    /// An extra object directory (checked with [`Repos::object_dir`]).
    pub objects: Option<PathBuf>,
}

/// A symlink of a pushed tree: written into the build context, never onto
/// the host's disk where the daemon reads the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symlink {
    /// Path in the tree, `/`-separated.
    pub path: String,
    /// What the link points at, as committed.
    pub target: Vec<u8>,
}

/// What [`export_tree`] wrote.
#[derive(Debug, Default)]
pub struct Export {
    /// The tree's symlinks (not written to disk).
    pub symlinks: Vec<Symlink>,
    /// Regular files written.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl CommitSource {
    fn open(&self) -> Result<(git2::Repository, git2::Oid), GitError> {
        let valid = self.rev.len() == 40 && self.rev.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid {
            return Err(GitError::BadRevision(self.rev.clone()));
        }
        let repo = git2::Repository::open_bare(&self.repo)?;
        if let Some(dir) = &self.objects {
            let dir = dir
                .to_str()
                .ok_or_else(|| GitError::BadObjectDir(dir.display().to_string()))?;
            repo.odb()?.add_disk_alternate(dir)?;
        }
        let oid = git2::Oid::from_str(&self.rev)?;
        Ok((repo, oid))
    }

    /// The first line of the commit's message.
    pub fn summary(&self) -> Result<String, GitError> {
        let (repo, oid) = self.open()?;
        let commit = repo
            .find_commit(oid)
            .map_err(|_| GitError::NoCommit(self.rev.clone()))?;
        let summary = String::from_utf8_lossy(commit.summary_bytes().unwrap_or_default());
        Ok(summary.trim().to_string())
    }
}

/// Writes the commit's tree into `dest` (created; it must not exist) as
/// `git archive` would: regular files (executable or not) and folders,
/// paths marked `export-ignore` in the tree's `.gitattributes` left out,
/// submodules as empty folders. One blob is in memory at a time. Symlinks
/// are returned, not written, so nothing read from `dest` follows one.
/// Fails once the files add up to more than `limit` bytes.
pub fn export_tree(src: &CommitSource, dest: &Path, limit: u64) -> Result<Export, GitError> {
    use git2::{AttrCheckFlags, AttrValue, ObjectType};
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    let (repo, oid) = src.open()?;
    let commit = repo
        .find_commit(oid)
        .map_err(|_| GitError::NoCommit(src.rev.clone()))?;
    let tree = commit.tree()?;
    // Attributes come from the tree being exported, as with `git archive`:
    // an in-memory index of it is where libgit2 looks for .gitattributes.
    let mut index = git2::Index::new()?;
    // libgit2 refuses the paths git never checks out (a `.git` anywhere …).
    index.read_tree(&tree).map_err(|e| match e.class() {
        git2::ErrorClass::Index => {
            let path = e.message().split('\'').nth(1).unwrap_or(e.message());
            GitError::BadPath(path.to_string())
        }
        _ => GitError::Repo(e),
    })?;
    repo.set_index(&mut index)?;
    let odb = repo.odb()?;
    std::fs::create_dir(dest)?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755))?;
    // libgit2 tells a folder from a file by looking on disk below the work
    // tree (a pattern like `docs/` matches folders only): `dest` is that
    // tree, and each folder exists before it is asked about. INDEX_ONLY:
    // the written files themselves are never read back.
    repo.set_workdir(dest, false)?;
    let flags = AttrCheckFlags::INDEX_ONLY | AttrCheckFlags::NO_SYSTEM;
    let ignored = |path: &str| -> Result<bool, GitError> {
        let value = repo.get_attr_bytes(Path::new(path), "export-ignore", flags)?;
        Ok(AttrValue::from_bytes(value) == AttrValue::True)
    };

    let mut out = Export::default();
    // (tree, its path in the commit, where it goes)
    let mut stack = vec![(tree, String::new(), dest.to_path_buf())];
    while let Some((tree, prefix, dir)) = stack.pop() {
        for entry in tree.iter() {
            let name = std::str::from_utf8(entry.name_bytes())
                .ok()
                .filter(|n| !n.is_empty() && *n != "." && *n != ".." && !n.contains('/'))
                .filter(|n| !n.eq_ignore_ascii_case(".git"))
                .ok_or_else(|| {
                    GitError::BadPath(format!(
                        "{prefix}{}",
                        String::from_utf8_lossy(entry.name_bytes())
                    ))
                })?;
            let path = format!("{prefix}{name}");
            let target = dir.join(name);
            let mode = entry.filemode();
            match entry.kind() {
                Some(ObjectType::Tree) => {
                    std::fs::create_dir(&target)?;
                    // The daemon's umask is 077; the app's user reads the tree.
                    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
                    if ignored(&path)? {
                        std::fs::remove_dir(&target)?;
                        continue;
                    }
                    let sub = repo.find_tree(entry.id())?;
                    stack.push((sub, format!("{path}/"), target));
                }
                // A submodule: `git archive` writes an empty folder.
                Some(ObjectType::Commit) => {
                    std::fs::create_dir(&target)?;
                    if ignored(&path)? {
                        std::fs::remove_dir(&target)?;
                    }
                }
                Some(ObjectType::Blob) if mode == 0o120000 => {
                    if !ignored(&path)? {
                        let blob = repo.find_blob(entry.id())?;
                        out.symlinks.push(Symlink {
                            path,
                            target: blob.content().to_vec(),
                        });
                    }
                }
                Some(ObjectType::Blob) => {
                    if ignored(&path)? {
                        continue;
                    }
                    let perm = if mode == 0o100755 { 0o755 } else { 0o644 };
                    // create_new: never through an existing file or link.
                    let mut file = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(perm)
                        .open(&target)?;
                    // fchmod: the umask (077 in the daemon) does not apply.
                    file.set_permissions(std::fs::Permissions::from_mode(perm))?;
                    // A loose object streams through a small buffer; libgit2
                    // streams no packed one, which is read whole.
                    match odb.reader(entry.id()) {
                        Ok((mut reader, size, _)) => {
                            out.bytes += size as u64;
                            if out.bytes > limit {
                                return Err(GitError::TooLarge(limit));
                            }
                            std::io::copy(&mut reader, &mut file)?;
                        }
                        Err(_) => {
                            let blob = repo.find_blob(entry.id())?;
                            out.bytes += blob.size() as u64;
                            if out.bytes > limit {
                                return Err(GitError::TooLarge(limit));
                            }
                            file.write_all(blob.content())?;
                        }
                    }
                    out.files += 1;
                }
                _ => return Err(GitError::BadPath(path)),
            }
        }
    }
    out.symlinks.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs git in `dir` with a fixed identity; panics on failure.
    fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A bare repository made by `Repos::ensure`, holding one commit of
    /// `files` (path, content; content "->target" makes a symlink) pushed
    /// to main. Returns (temp dir, repos, commit id).
    async fn pushed(files: &[(&str, &str)]) -> (tempfile::TempDir, Repos, String) {
        let tmp = tempfile::tempdir().unwrap();
        let repos = Repos::new(tmp.path().join("repos"), PathBuf::from("/bin/true"));
        let bare = repos.ensure("blog").await.unwrap();
        let work = tmp.path().join("work");
        std::fs::create_dir(&work).unwrap();
        git(&work, &["init", "-q"]);
        for (path, content) in files {
            let p = work.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            match content.strip_prefix("->") {
                Some(target) => std::os::unix::fs::symlink(target, &p).unwrap(),
                None => std::fs::write(&p, content).unwrap(),
            }
            if path.ends_with(".sh") {
                set_executable(&p).unwrap();
            }
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "First line\n\nbody"]);
        git(
            &work,
            &["push", "-q", bare.to_str().unwrap(), "HEAD:refs/heads/main"],
        );
        let rev = String::from_utf8(git(&work, &["rev-parse", "HEAD"])).unwrap();
        (tmp, repos, rev.trim().to_string())
    }

    /// Paths of the files and symlinks below `dir`, `/`-separated.
    fn files_below(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = format!("{prefix}{}", e.file_name().to_string_lossy());
            let kind = e.file_type().unwrap();
            assert!(!kind.is_symlink(), "{name}: export_tree wrote a symlink");
            if kind.is_dir() {
                files_below(&e.path(), &format!("{name}/"), out);
            } else {
                out.push(name);
            }
        }
    }

    #[tokio::test]
    async fn ensure_makes_a_bare_repository_whose_head_is_main() {
        let tmp = tempfile::tempdir().unwrap();
        let repos = Repos::new(tmp.path().join("repos"), PathBuf::from("/usr/bin/paas"));
        let path = repos.ensure("blog").await.unwrap();
        let repo = git2::Repository::open(&path).unwrap();
        assert!(repo.is_bare());
        let head = std::fs::read_to_string(path.join("HEAD")).unwrap();
        assert_eq!(head.trim(), "ref: refs/heads/main");
        let hook = std::fs::read_to_string(path.join("hooks/pre-receive")).unwrap();
        assert!(hook.contains("'/usr/bin/paas' hook pre-receive"), "{hook}");
        // Idempotent.
        repos.ensure("blog").await.unwrap();
    }

    #[tokio::test]
    async fn the_export_holds_what_git_archive_holds_export_ignore_included() {
        let files = [
            (
                ".gitattributes",
                "*.key export-ignore\ndocs/ export-ignore\nbuild export-ignore\n/top.txt export-ignore\nlinked export-ignore\n",
            ),
            ("manage.py", "print('hi')\n"),
            ("run.sh", "#!/bin/sh\n"),
            ("top.txt", "ignored at the root only\n"),
            ("sub/top.txt", "kept: the pattern is anchored\n"),
            ("server.key", "ignored\n"),
            ("docs/index.md", "ignored folder\n"),
            ("build/out/deep.bin", "ignored folder\n"),
            ("nested/.gitattributes", "local.txt export-ignore\n"),
            ("nested/local.txt", "ignored by the nested file\n"),
            ("nested/keep.txt", "kept\n"),
            ("link", "->manage.py"),
            ("linked", "->manage.py"),
            ("etc", "->/etc/passwd"),
        ];
        let (tmp, repos, rev) = pushed(&files).await;
        let src = CommitSource {
            repo: repos.path("blog"),
            rev: rev.clone(),
            objects: None,
        };
        assert_eq!(src.summary().unwrap(), "First line");
        let dest = tmp.path().join("export");
        let export = export_tree(&src, &dest, 1 << 20).unwrap();
        let mut ours = Vec::new();
        files_below(&dest, "", &mut ours);
        ours.extend(export.symlinks.iter().map(|l| l.path.clone()));
        ours.sort();

        // `git archive` is the reference.
        let tar = git(&src.repo, &["archive", "--format=tar", &rev]);
        let mut theirs: Vec<String> = tar::Archive::new(tar.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| {
                !e.header().entry_type().is_dir()
                    && !e.header().entry_type().is_pax_global_extensions()
            })
            .map(|e| e.path().unwrap().to_string_lossy().into_owned())
            .collect();
        theirs.sort();
        assert_eq!(ours, theirs);
        assert!(ours.contains(&"sub/top.txt".to_string()), "{ours:?}");
        assert!(
            !ours
                .iter()
                .any(|p| p.starts_with("docs") || p.ends_with(".key")),
            "{ours:?}"
        );

        assert_eq!(
            export.symlinks,
            [
                Symlink {
                    path: "etc".into(),
                    target: b"/etc/passwd".to_vec()
                },
                Symlink {
                    path: "link".into(),
                    target: b"manage.py".to_vec()
                },
            ]
        );
        assert!(std::fs::symlink_metadata(dest.join("etc")).is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| {
            std::fs::metadata(dest.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("run.sh"), 0o755);
        assert_eq!(mode("manage.py"), 0o644);
        assert_eq!(
            std::fs::read_to_string(dest.join("nested/keep.txt")).unwrap(),
            "kept\n"
        );

        // The same from a packed repository (libgit2 streams loose objects only).
        git(&src.repo, &["repack", "-a", "-d", "-q"]);
        git(&src.repo, &["prune-packed"]);
        let packed = tmp.path().join("packed");
        export_tree(&src, &packed, 1 << 20).unwrap();
        let mut again = Vec::new();
        files_below(&packed, "", &mut again);
        again.extend(export.symlinks.iter().map(|l| l.path.clone()));
        again.sort();
        assert_eq!(again, theirs);
        assert_eq!(
            std::fs::read_to_string(packed.join("nested/keep.txt")).unwrap(),
            "kept\n"
        );

        // Too large: refused, with what to do.
        let e = export_tree(&src, &tmp.path().join("small"), 10).unwrap_err();
        assert!(matches!(e, GitError::TooLarge(10)), "{e}");
    }

    #[tokio::test]
    async fn a_commit_still_in_the_pushs_quarantine_is_read_through_its_object_dir() {
        let (tmp, repos, _) = pushed(&[("a.txt", "a")]).await;
        // A hook that keeps a copy of the quarantine inside objects/, then
        // rejects the push: the commit exists only in that copy.
        let hook = tmp.path().join("hook.sh");
        let copy = repos.path("blog").join("objects/tmp_objdir-kept");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\ncp -r \"$GIT_QUARANTINE_PATH\" '{}'\nexit 1\n",
                copy.display()
            ),
        )
        .unwrap();
        set_executable(&hook).unwrap();
        let repos = Repos::new(repos.root().to_path_buf(), hook);
        repos.refresh_hooks().await.unwrap();
        let work = tmp.path().join("work");
        std::fs::write(work.join("b.txt"), "quarantined\n").unwrap();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "second"]);
        let rev = String::from_utf8(git(&work, &["rev-parse", "HEAD"])).unwrap();
        let rev = rev.trim().to_string();
        let out = std::process::Command::new("git")
            .args([
                "push",
                "-q",
                repos.path("blog").to_str().unwrap(),
                "HEAD:refs/heads/main",
            ])
            .current_dir(&work)
            .output()
            .unwrap();
        assert!(!out.status.success(), "the hook rejects the push");

        let mut src = CommitSource {
            repo: repos.path("blog"),
            rev,
            objects: None,
        };
        let e = src.summary().unwrap_err();
        assert!(matches!(e, GitError::NoCommit(_)), "{e}");
        src.objects = Some(repos.object_dir("blog", copy.to_str().unwrap()).unwrap());
        assert_eq!(src.summary().unwrap(), "second");
        let dest = tmp.path().join("export");
        export_tree(&src, &dest, 1 << 20).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.join("b.txt")).unwrap(),
            "quarantined\n"
        );
    }

    #[tokio::test]
    async fn unknown_commits_and_bad_revisions_are_refused() {
        let (tmp, repos, _) = pushed(&[("a.txt", "a")]).await;
        let dest = tmp.path().join("x");
        for (rev, want) in [
            (
                "0123456789012345678901234567890123456789",
                "is not in the repository",
            ),
            ("HEAD", "is not a commit id"),
            ("main~1", "is not a commit id"),
        ] {
            let src = CommitSource {
                repo: repos.path("blog"),
                rev: rev.into(),
                objects: None,
            };
            let e = export_tree(&src, &dest, 1 << 20).unwrap_err();
            assert!(e.to_string().contains(want), "{rev}: {e}");
            let _ = std::fs::remove_dir_all(&dest);
        }
    }

    #[tokio::test]
    async fn only_object_dirs_inside_the_apps_objects_are_accepted() {
        let (tmp, repos, _) = pushed(&[("a.txt", "a")]).await;
        repos.ensure("other").await.unwrap();
        let objects = repos.path("blog").join("objects");
        let incoming = objects.join("tmp_objdir-incoming-abc");
        std::fs::create_dir(&incoming).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, objects.join("tmp_objdir-link")).unwrap();
        assert_eq!(
            repos
                .object_dir("blog", incoming.to_str().unwrap())
                .unwrap(),
            std::fs::canonicalize(&incoming).unwrap()
        );
        let refused = [
            outside.display().to_string(),
            objects.display().to_string(),
            format!("{}/../../../other.git/objects", incoming.display()),
            objects.join("tmp_objdir-link").display().to_string(),
            objects.join("missing").display().to_string(),
            repos
                .path("other")
                .join("objects/info")
                .display()
                .to_string(),
            "objects/tmp_objdir-incoming-abc".into(),
        ];
        for given in refused {
            let e = repos.object_dir("blog", &given).unwrap_err();
            assert!(matches!(e, GitError::BadObjectDir(_)), "{given}: {e}");
        }
    }

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

#[cfg(test)]
mod props {
    //! Property tests: app names, and the tree of a hostile push (raw git
    //! objects, as `git receive-pack` stores them without fsck) exported
    //! to disk.

    use super::*;
    use crate::fuzz::{check, ensure};
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    /// A path component of a Docker image reference: alphanumeric runs
    /// joined by `.`, `_`, `__` or dashes.
    fn docker_ref_component(s: &str) -> bool {
        let b = s.as_bytes();
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !alnum(b[i]) {
                i += 1;
            }
            let sep = &s[start..i];
            let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
            if !ok {
                return false;
            }
        }
        true
    }

    #[test]
    fn fuzz_app_names() {
        let input = prop_oneof![
            "[a-z][a-z0-9-]{0,28}[a-z0-9]",
            "[a-z]",
            "[a-zA-Z0-9._/ -]{0,40}",
            any::<String>(),
        ];
        check("app_names", 1024, input, |name| {
            let grammar = name.len() <= 30
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && !name.ends_with('-')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            let accepted = validate_app_name(&name).is_ok();
            ensure(accepted == (grammar && name != "paas"), || {
                format!(
                    "{name:?}: accepted {accepted}, the rule says {}",
                    grammar && name != "paas"
                )
            })?;
            if !accepted {
                return Ok(());
            }
            // A DNS label: <app>.<domain> is its default host.
            ensure(
                (1..=63).contains(&name.len()) && !name.starts_with('-') && !name.ends_with('-'),
                || format!("{name:?} is not a DNS label"),
            )?;
            // Docker: image paas/<app>, network and container names paas-<app>…
            ensure(docker_ref_component(&name), || {
                format!("paas/{name} is not a Docker image name")
            })?;
            let container = format!("{}-web-1", crate::layout::network_name(&name));
            ensure(
                container
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)),
                || format!("{container} is not a Docker container name"),
            )?;
            // Folders: exactly one level below apps/, repos/, backups/.
            let data = Path::new("/var/lib/paas");
            let vol = crate::layout::volume_dir(data, &name);
            ensure(
                vol.strip_prefix(data.join("apps")).ok()
                    == Some(Path::new(&name).join("data").as_path()),
                || format!("{name:?} puts its volume at {vol:?}"),
            )?;
            let repo = Repos::new(data.join("repos"), PathBuf::from("/bin/true")).path(&name);
            ensure(repo.parent() == Some(data.join("repos").as_path()), || {
                format!("{name:?} puts its repository at {repo:?}")
            })
        });
    }

    /// A tree as a push may carry it: any names, kinds and duplicates.
    #[derive(Debug, Clone)]
    enum Node {
        File(Vec<u8>, bool),
        Link(Vec<u8>),
        Submodule,
        Dir(Vec<(Vec<u8>, Node)>),
    }

    fn entry_name() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            8 => "[a-c]{1,2}".prop_map(String::into_bytes),
            1 => prop::sample::select(vec![
                &b""[..], b".", b"..", b"a/b", b"../x", b"/abs", b".git", b"\xff\xfe",
                "é 1".as_bytes(), b"-rf", b"a\\b", b"..."
            ])
            .prop_map(<[u8]>::to_vec),
        ]
    }

    fn tree() -> impl Strategy<Value = Node> {
        let leaf = prop_oneof![
            ("[a-z ]{0,12}", any::<bool>()).prop_map(|(c, x)| Node::File(c.into_bytes(), x)),
            prop::sample::select(vec![
                "../../outside/secret",
                "/etc/passwd",
                ".",
                "a",
                "../",
                "b/c"
            ])
            .prop_map(|t| Node::Link(t.as_bytes().to_vec())),
            Just(Node::Submodule),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            prop::collection::vec((entry_name(), inner), 0..5).prop_map(Node::Dir)
        })
        .prop_map(|n| match n {
            Node::Dir(_) => n,
            other => Node::Dir(vec![(b"top".to_vec(), other)]),
        })
    }

    /// Writes `node` as raw objects; its (mode, id).
    fn write(repo: &git2::Repository, node: &Node) -> (u32, git2::Oid) {
        match node {
            Node::File(content, exec) => (
                if *exec { 0o100755 } else { 0o100644 },
                repo.blob(content).unwrap(),
            ),
            Node::Link(target) => (0o120000, repo.blob(target).unwrap()),
            Node::Submodule => (
                0o160000,
                git2::Oid::from_str("1111111111111111111111111111111111111111").unwrap(),
            ),
            Node::Dir(entries) => {
                let mut raw: Vec<(Vec<u8>, u32, git2::Oid)> = entries
                    .iter()
                    .map(|(name, child)| {
                        let (mode, oid) = write(repo, child);
                        (name.clone(), mode, oid)
                    })
                    .collect();
                raw.sort_by(|a, b| a.0.cmp(&b.0));
                let mut bytes = Vec::new();
                for (name, mode, oid) in raw {
                    bytes.extend_from_slice(format!("{mode:o} ").as_bytes());
                    bytes.extend_from_slice(&name);
                    bytes.push(0);
                    bytes.extend_from_slice(oid.as_bytes());
                }
                let odb = repo.odb().unwrap();
                (0o40000, odb.write(git2::ObjectType::Tree, &bytes).unwrap())
            }
        }
    }

    /// What a faithful export holds: files (content, executable), folders,
    /// symlinks; `None` when the tree cannot be exported.
    #[derive(Debug, Default, PartialEq)]
    struct Expected {
        files: BTreeMap<String, (Vec<u8>, bool)>,
        dirs: Vec<String>,
        symlinks: Vec<(String, Vec<u8>)>,
        bytes: u64,
    }

    fn expect(node: &Node, prefix: &str, out: &mut Expected) -> bool {
        let Node::Dir(entries) = node else {
            unreachable!()
        };
        let mut on_disk = std::collections::BTreeSet::new();
        for (name, child) in entries {
            // `.git` anywhere is refused, as git refuses to check it out.
            let Some(name) = std::str::from_utf8(name)
                .ok()
                .filter(|n| !n.is_empty() && *n != "." && *n != ".." && !n.contains('/'))
                .filter(|n| !n.eq_ignore_ascii_case(".git"))
            else {
                return false;
            };
            let path = format!("{prefix}{name}");
            if !matches!(child, Node::Link(_)) && !on_disk.insert(name) {
                return false;
            }
            match child {
                Node::File(c, x) => {
                    out.bytes += c.len() as u64;
                    out.files.insert(path, (c.clone(), *x));
                }
                Node::Link(t) => out.symlinks.push((path, t.clone())),
                Node::Submodule => out.dirs.push(path),
                Node::Dir(_) => {
                    out.dirs.push(path.clone());
                    if !expect(child, &format!("{path}/"), out) {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Bytes of every file in the tree, wherever the export stops.
    fn total_bytes(node: &Node) -> u64 {
        match node {
            Node::File(c, _) => c.len() as u64,
            Node::Dir(entries) => entries.iter().map(|(_, c)| total_bytes(c)).sum(),
            _ => 0,
        }
    }

    fn has_empty_name(node: &Node) -> bool {
        match node {
            Node::Dir(entries) => entries
                .iter()
                .any(|(n, c)| n.is_empty() || has_empty_name(c)),
            _ => false,
        }
    }

    /// Everything below `dir`: (relative path, kind, content, mode).
    fn on_disk(dir: &Path, prefix: &str, out: &mut Vec<(String, &'static str, Vec<u8>, u32)>) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let rel = format!("{prefix}{}", name.to_string_lossy());
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                out.push((rel.clone(), "dir", vec![], mode));
                on_disk(&path, &format!("{rel}/"), out);
            } else if meta.is_file() {
                out.push((rel, "file", std::fs::read(&path).unwrap(), mode));
            } else {
                out.push((rel, "other", vec![], mode));
            }
        }
    }

    /// A bare repository at `dir/repo.git` whose one commit holds `root`,
    /// written as raw objects (no check git2 would make on the way).
    fn raw_commit(dir: &Path, root: &Node) -> CommitSource {
        let repo = git2::Repository::init_bare(dir.join("repo.git")).unwrap();
        let (_, tree_id) = write(&repo, root);
        let commit = format!(
            "tree {tree_id}\nauthor A <a@example.com> 0 +0000\ncommitter A <a@example.com> 0 +0000\n\nx\n"
        );
        let commit = repo
            .odb()
            .unwrap()
            .write(git2::ObjectType::Commit, commit.as_bytes())
            .unwrap();
        CommitSource {
            repo: dir.join("repo.git"),
            rev: commit.to_string(),
            objects: None,
        }
    }

    /// The export of `root` (raw objects) into a fresh folder.
    fn export_raw(root: &Node) -> Result<Export, GitError> {
        let s = tempfile::tempdir().unwrap();
        let src = raw_commit(s.path(), root);
        export_tree(&src, &s.path().join("dest"), u64::MAX)
    }

    #[test]
    fn a_dot_git_in_a_pushed_tree_is_a_bad_path() {
        // Found by `fuzz_export_tree`: an empty `.git` folder was exported,
        // and one with files failed as "reading the repository failed".
        let file = Node::File(b"x".to_vec(), false);
        let dir = |entries: Vec<(&str, Node)>| {
            Node::Dir(
                entries
                    .into_iter()
                    .map(|(n, c)| (n.as_bytes().to_vec(), c))
                    .collect(),
            )
        };
        for (tree, path) in [
            (dir(vec![(".git", dir(vec![]))]), ".git"),
            (dir(vec![(".GIT", dir(vec![]))]), ".GIT"),
            (
                dir(vec![(
                    "a",
                    dir(vec![(".git", dir(vec![("config", file.clone())]))]),
                )]),
                "a/.git/config",
            ),
        ] {
            match export_raw(&tree) {
                Err(GitError::BadPath(p)) => assert_eq!(p, path),
                other => panic!("{path}: {other:?}"),
            }
        }
        assert!(export_raw(&dir(vec![("a.git", dir(vec![("x", file)]))])).is_ok());
    }

    #[test]
    fn fuzz_export_tree() {
        let input = (tree(), prop_oneof![Just(u64::MAX), 0u64..40]);
        check("export_tree", 64, input, |(root, limit)| {
            let sandbox = tempfile::tempdir().unwrap();
            let s = sandbox.path();
            std::fs::create_dir(s.join("outside")).unwrap();
            std::fs::write(s.join("outside/secret"), "SECRET").unwrap();
            let src = raw_commit(s, &root);
            let dest = s.join("dest");
            let got = export_tree(&src, &dest, limit);

            let mut expected = Expected::default();
            let exportable = expect(&root, "", &mut expected);
            let fits = total_bytes(&root) <= limit;
            // Nothing outside dest changed, whatever happened.
            let mut around: Vec<String> = std::fs::read_dir(s)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            around.sort();
            around.retain(|n| n != "dest");
            ensure(around == ["outside", "repo.git"], || {
                format!("the export wrote next to its folder: {around:?}")
            })?;
            let outside: Vec<_> = std::fs::read_dir(s.join("outside")).unwrap().collect();
            ensure(
                outside.len() == 1 && std::fs::read(s.join("outside/secret")).unwrap() == b"SECRET",
                || "the export touched the folder next to it".to_string(),
            )?;
            let mut disk = Vec::new();
            if dest.is_dir() {
                on_disk(&dest, "", &mut disk);
            }
            ensure(disk.iter().all(|(_, kind, _, _)| *kind != "other"), || {
                format!("the export left a symlink or special file on disk: {disk:?}")
            })?;
            let out = match got {
                // A bad name or a clash is said as such, not as a failure to read.
                Err(e) => {
                    // (A tree entry without a name is an object libgit2 cannot parse.)
                    return ensure(
                        (!exportable && matches!(e, GitError::BadPath(_) | GitError::Io(_)))
                            || (!fits && matches!(e, GitError::TooLarge(_)))
                            || (has_empty_name(&root) && matches!(e, GitError::Repo(_))),
                        || format!("the tree failed with {e:?} (expected {expected:?})"),
                    );
                }
                Ok(out) => out,
            };
            ensure(exportable && fits, || {
                format!("a tree with a bad name, a clash or too many bytes was exported: {out:?}")
            })?;
            let links: Vec<(String, Vec<u8>)> = out
                .symlinks
                .iter()
                .map(|l| (l.path.clone(), l.target.clone()))
                .collect();
            // Sorted by path; links of the same name stay in tree order.
            expected.symlinks.sort_by(|a, b| a.0.cmp(&b.0));
            ensure(links == expected.symlinks, || {
                format!("symlinks {links:?}, expected {:?}", expected.symlinks)
            })?;
            let mut want: Vec<(String, &str, Vec<u8>, u32)> = expected
                .files
                .iter()
                .map(|(p, (c, x))| (p.clone(), "file", c.clone(), if *x { 0o755 } else { 0o644 }))
                .chain(
                    expected
                        .dirs
                        .iter()
                        .map(|d| (d.clone(), "dir", vec![], 0o755)),
                )
                .collect();
            want.sort();
            disk.sort();
            // Submodule folders keep the process's umask: compare kinds and
            // contents, and the modes of files.
            let strip =
                |v: &[(String, &str, Vec<u8>, u32)]| -> Vec<(String, String, Vec<u8>, u32)> {
                    v.iter()
                        .map(|(p, k, c, m)| {
                            (
                                p.clone(),
                                k.to_string(),
                                c.clone(),
                                if *k == "dir" { 0 } else { *m },
                            )
                        })
                        .collect()
                };
            ensure(strip(&disk) == strip(&want), || {
                format!("on disk {disk:?}, expected {want:?}")
            })?;
            ensure(
                out.files == expected.files.len() as u64 && out.bytes == expected.bytes,
                || {
                    format!(
                        "counted {} files / {} bytes, wrote {} / {}",
                        out.files,
                        out.bytes,
                        expected.files.len(),
                        expected.bytes
                    )
                },
            )
        });
    }
}
