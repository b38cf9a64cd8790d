//! The test harness: a real `paas serve` (the built binary), a real git
//! client, the real Docker engine, and HTTP through paas's proxy.
//!
//! Nothing is mocked. When a part is missing the test fails and says what to
//! install; it never skips.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Fail loudly when the machine lacks what the suite drives.
pub fn require_parts() {
    let ok = |cmd: &mut Command| {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    assert!(
        ok(Command::new("git").arg("--version")),
        "git is missing: install it (apt-get install git), or run bash tests/setup.sh as root"
    );
    assert!(
        ok(Command::new("docker").arg("info")),
        "the Docker engine is not reachable: install and start it (apt-get install docker.io; systemctl start docker), then run bash tests/setup.sh as root"
    );
    let image = "python:3.11-slim";
    assert!(
        ok(Command::new("docker").args(["image", "inspect", image])),
        "the base image {image} is missing: run bash tests/setup.sh as root (it builds it offline)"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running daemon with its own data dir and ports.
pub struct Daemon {
    pub child: Option<Child>,
    pub data: tempfile::TempDir,
    pub http: u16,
    pub admin: u16,
    pub token: String,
    /// Apps this test created: removed from the engine at the end.
    pub apps: Vec<String>,
    /// Extra environment of the daemon process (e.g. DOCKER_HOST).
    pub env: Vec<(String, String)>,
    /// The address both listeners bind (127.0.0.1 unless a test asks).
    pub bind: String,
    log: PathBuf,
}

/// The message of the panic that is failing this thread's test, kept so the
/// daemon's log can be printed before it and the message is the last thing
/// a reader of a long CI log sees.
static PANICS: std::sync::Mutex<Vec<(std::thread::ThreadId, String)>> =
    std::sync::Mutex::new(Vec::new());

fn keep_panic_messages() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = format!("{info}");
            if let Ok(mut v) = PANICS.lock() {
                v.push((std::thread::current().id(), msg));
            }
            default(info);
        }));
    });
}

fn take_panic_message() -> Option<String> {
    let me = std::thread::current().id();
    let mut v = PANICS.lock().ok()?;
    let i = v.iter().position(|(t, _)| *t == me)?;
    Some(v.remove(i).1)
}

/// The end of a daemon log, without the one-line-per-request proxy entries
/// that would bury what went wrong.
fn log_tail(text: &str, lines: usize) -> String {
    let kept: Vec<&str> = text.lines().filter(|l| !l.contains("proxied")).collect();
    let skipped = kept.len().saturating_sub(lines);
    let mut out = String::new();
    if skipped > 0 {
        out.push_str(&format!("[{skipped} earlier lines left out]\n"));
    }
    for l in &kept[skipped..] {
        out.push_str(l);
        out.push('\n');
    }
    out
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with_env(&[])
    }

    /// A daemon whose process gets these extra environment variables.
    pub fn start_with_env(env: &[(&str, &str)]) -> Daemon {
        Daemon::start_bound(env, "127.0.0.1")
    }

    /// A daemon whose public and admin listeners bind `ip` (e.g. 0.0.0.0,
    /// as an owner may bind them) instead of 127.0.0.1.
    pub fn start_bound(env: &[(&str, &str)], ip: &str) -> Daemon {
        let data = tempfile::Builder::new()
            .prefix("paas-it-")
            .tempdir()
            .unwrap();
        Daemon::start_in(data, env, ip)
    }

    /// A daemon on a data dir the test prepared (e.g. a small file system).
    pub fn start_in(data: tempfile::TempDir, env: &[(&str, &str)], ip: &str) -> Daemon {
        require_parts();
        keep_panic_messages();
        let mut d = Daemon {
            child: None,
            log: data.path().join("daemon.log"),
            data,
            http: free_port(),
            admin: free_port(),
            token: String::new(),
            apps: Vec::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            bind: ip.to_string(),
        };
        d.spawn();
        d.token = std::fs::read_to_string(d.data.path().join("admin.token"))
            .expect("the daemon wrote its admin token")
            .trim()
            .to_string();
        d
    }

    /// (Re)start the daemon process on the same data dir and ports.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_paas"));
        // The caller's PAAS_* variables (a PAAS_CONFIG of an installed
        // daemon, say) are not this daemon's: it gets flags and `self.env`.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PAAS_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .arg("serve")
            .arg("--data-dir")
            .arg(self.data.path())
            .args(["--http", &format!("{}:{}", self.bind, self.http)])
            .args(["--admin", &format!("{}:{}", self.bind, self.admin)])
            .args(["--domain", "localhost"])
            .args(["--build-network", "host"])
            .args(["--drain-timeout", "5"])
            .env("PAAS_LOG", "info,paas=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("the paas binary starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.admin)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "paas serve exited ({status}); its log:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "paas serve did not listen within 30 s; its log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A unique app name for this test.
    pub fn app(&mut self, stem: &str) -> String {
        let name = format!("{stem}-{}", &format!("{:x}", rand_u64())[..6]);
        self.apps.push(name.clone());
        name
    }

    /// Cleans up after an app another daemon made (a restored server).
    pub fn adopt(&mut self, app: &str) {
        self.apps.push(app.to_string());
    }

    /// A `paas` client environment pointed at this daemon.
    pub fn cli(&self) -> CliEnv {
        CliEnv::new(&format!("http://127.0.0.1:{}", self.admin))
    }

    pub fn remote(&self, app: &str) -> String {
        format!(
            "http://paas:{}@127.0.0.1:{}/{app}.git",
            self.token, self.admin
        )
    }

    /// GET through the proxy with the app's host.
    pub fn get(&self, app: &str, path: &str) -> HttpResponse {
        http(
            self.http,
            "GET",
            &format!("{app}.localhost"),
            path,
            &[],
            None,
        )
    }

    /// GET / through the proxy answers 200 with `needle` in the page.
    pub fn assert_serves(&self, app: &str, needle: &str) {
        let r = self.get(app, "/");
        assert_eq!(r.status, 200, "GET / of {app}: {} {}", r.status, r.text());
        assert!(
            r.text().contains(needle),
            "GET / of {app} lacks {needle:?}: {}",
            r.text()
        );
    }

    /// POST a form through the proxy.
    pub fn post_form(&self, app: &str, path: &str, form: &str) -> HttpResponse {
        http(
            self.http,
            "POST",
            &format!("{app}.localhost"),
            path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(form.as_bytes()),
        )
    }

    /// A request to the admin listener.
    pub fn admin_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        http(self.admin, method, "127.0.0.1", path, headers, body)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- paas daemon log (its end, proxy request lines left out) ----\n{}",
                log_tail(&self.log_text(), 150)
            );
            if let Some(msg) = take_panic_message() {
                eprintln!("---- the failure, again ----\n{msg}");
            }
        }
        for app in &self.apps {
            remove_app_objects(app);
        }
    }
}

/// What a `paas` client started by a test may see of the machine: only what
/// the test made. A daemon installed on this machine (`bash install.sh`
/// listens on the CLI's default 127.0.0.1:8300) and a user's own
/// `~/.config/paas/login.json` must never answer for the test's daemon.
pub struct CliEnv {
    /// Always given as PAAS_URL, so the CLI never falls back to its default.
    pub url: String,
    /// HOME and XDG_CONFIG_HOME of the client: `paas login` saves here.
    pub home: tempfile::TempDir,
}

impl CliEnv {
    /// A client of the daemon at `url`.
    pub fn new(url: &str) -> CliEnv {
        let home = tempfile::Builder::new()
            .prefix("paas-it-home-")
            .tempdir()
            .unwrap();
        CliEnv {
            url: url.to_string(),
            home,
        }
    }

    /// A client for commands that must find no daemon: a port on 127.0.0.1
    /// this test bound and closed again.
    pub fn no_daemon() -> CliEnv {
        CliEnv::new(&format!("http://127.0.0.1:{}", free_port()))
    }

    /// The test's environment for `cmd` (the paas binary, or a program that
    /// starts it): no PAAS_* variable of the caller's shell but PAAS_URL
    /// (and a PAAS_DATA_DIR of its own, empty),
    /// a home of its own, and git reading neither the system's nor the
    /// user's configuration nor a repository above `dir`.
    pub fn apply(&self, cmd: &mut Command, dir: &Path) {
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PAAS_") {
                cmd.env_remove(k);
            }
        }
        let home = self.home.path();
        cmd.current_dir(dir)
            .env("PAAS_URL", &self.url)
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            // Where the client looks for a local daemon's admin token: not
            // the installed daemon's /var/lib/paas.
            .env("PAAS_DATA_DIR", home.join("data"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE");
        if let Some(parent) = dir.parent() {
            cmd.env("GIT_CEILING_DIRECTORIES", parent);
        }
    }

    /// `paas` (the built binary) in `dir`, with [`CliEnv::apply`]'s environment.
    pub fn command(&self, dir: &Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_paas"));
        self.apply(&mut cmd, dir);
        cmd
    }
}

/// Remove every container, network and image of an app from the engine.
pub fn remove_app_objects(app: &str) {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=paas.app={app}")])
        .output()
        .unwrap();
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .output();
    }
    let _ = Command::new("docker")
        .args(["network", "rm", &format!("paas-{app}")])
        .output();
    // By tag, never by id: identical builds of a fixture in other tests'
    // apps share an image id, and removing the id would take their tags too.
    let out = Command::new("docker")
        .args([
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            &format!("paas/{app}"),
        ])
        .output()
        .unwrap();
    let tags: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|t| !t.ends_with(":<none>"))
        .map(str::to_string)
        .collect();
    if !tags.is_empty() {
        let _ = Command::new("docker").arg("rmi").args(&tags).output();
    }
}

/// Count of an app's containers and images left in the engine.
pub fn engine_objects(app: &str) -> (Vec<String>, Vec<String>) {
    let names = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--format",
            "{{.Names}} {{.Status}}",
            "--filter",
            &format!("label=paas.app={app}"),
        ])
        .output()
        .unwrap();
    let images = Command::new("docker")
        .args([
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            &format!("paas/{app}"),
        ])
        .output()
        .unwrap();
    let lines = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
    };
    (lines(&names.stdout), lines(&images.stdout))
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// A git work tree made from a fixture.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn from_fixture(name: &str) -> Project {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        assert!(src.is_dir(), "fixture {} is missing", src.display());
        let dir = tempfile::Builder::new()
            .prefix("paas-proj-")
            .tempdir()
            .unwrap();
        copy_dir(&src, dir.path());
        let p = Project { dir };
        p.git(&["init", "-q", "--initial-branch=main"]);
        p.commit("first version");
        p
    }

    /// `git` in the work tree, reading no system or user configuration: a
    /// user's credential helper must not store the test daemons' tokens,
    /// nor their `insteadOf` rewrite the remotes.
    pub fn git_command(&self) -> Command {
        let mut cmd = Command::new("git");
        cmd.args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
            .current_dir(self.dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0");
        cmd
    }

    pub fn git(&self, args: &[&str]) -> std::process::Output {
        self.git_command().args(args).output().unwrap()
    }

    pub fn commit(&self, message: &str) {
        let out = self.git(&["add", "-A"]);
        assert!(out.status.success());
        let out = self.git(&["commit", "-q", "-m", message]);
        assert!(
            out.status.success(),
            "git commit: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes `content` to `path` in the work tree (folders made as needed):
    /// a test's own files on top of a base fixture.
    pub fn write(&self, path: &str, content: &str) {
        let p = self.dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    /// Replace text in whichever file holds it.
    pub fn replace(&self, from: &str, to: &str) {
        let mut hits = 0;
        for f in walk(self.dir.path()) {
            if f.components().any(|c| c.as_os_str() == ".git") {
                continue;
            }
            if let Ok(s) = std::fs::read_to_string(&f) {
                if s.contains(from) {
                    std::fs::write(&f, s.replace(from, to)).unwrap();
                    hits += 1;
                }
            }
        }
        assert!(hits > 0, "no file of the project contains {from:?}");
    }

    /// Append to `rel`.
    pub fn append(&self, rel: &str, content: &str) {
        let path = self.dir.path().join(rel);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(content);
        std::fs::write(path, text).unwrap();
    }

    /// Delete `rel`.
    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.dir.path().join(rel)).unwrap();
    }

    /// `git push <remote> main`: (accepted, combined output).
    pub fn push(&self, remote: &str) -> (bool, String) {
        self.push_ref(remote, "main")
    }

    pub fn push_ref(&self, remote: &str, refspec: &str) -> (bool, String) {
        let out = self.git(&["push", remote, refspec]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// One HTTP exchange: its status, its headers in the order received (so
/// repeated ones such as `set-cookie` stay apart), and its whole body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The suite's HTTP client. Tests look at exactly what paas answered, so it
/// follows no redirect, reads no proxy from the environment, and opens a
/// fresh connection per request (no pool), as the suite's first clients did;
/// a whole exchange may take 120 s (config changes roll out before answering).
fn client() -> &'static reqwest::blocking::Client {
    static CLIENT: std::sync::OnceLock<reqwest::blocking::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(120))
            .build()
            .expect("an HTTP client")
    })
}

/// `method path` to 127.0.0.1:`port` with `Host: host`, so that
/// `<app>.localhost` reaches an app through paas's proxy without any DNS.
pub fn http(
    port: u16,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    let send = || {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let mut req = client()
            .request(method.clone(), format!("http://127.0.0.1:{port}{path}"))
            .header(reqwest::header::HOST, host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b.to_vec());
        }
        let resp = req
            .send()
            .unwrap_or_else(|e| panic!("{method} {path} (Host {host}) on port {port}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_string(), v)
            })
            .collect();
        let body = resp
            .bytes()
            .unwrap_or_else(|e| panic!("the body of {method} {path}: {e}"))
            .to_vec();
        HttpResponse {
            status,
            headers,
            body,
        }
    };
    // reqwest's blocking client refuses to run on a thread that drives an
    // async runtime (the #[tokio::test] tests), so there it gets its own.
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(send)
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    } else {
        send()
    }
}

/// The last non-empty line of a push's output.
pub fn last_line(output: &str) -> String {
    output
        .lines()
        .map(|l| l.trim())
        .rfind(|l| {
            !l.is_empty()
                && !l.starts_with("To ")
                && !l.starts_with("error: failed to push")
                && !l.starts_with("! [remote rejected]")
        })
        .unwrap_or("")
        .to_string()
}

/// moto's S3 server (installed by tests/setup.sh), on a free port: real
/// HTTP, real signatures parsed, objects in its memory. Killed on drop.
pub struct S3Server {
    pub port: u16,
    child: Child,
}

/// Where tests/setup.sh installs moto (`PAAS_TEST_MOTO` overrides).
fn moto_server_bin() -> PathBuf {
    std::env::var_os("PAAS_TEST_MOTO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/paas-test/moto/bin/moto_server"))
}

impl S3Server {
    /// Starts a server with `bucket` made.
    pub fn start(bucket: &str) -> S3Server {
        Self::start_on(free_port(), bucket)
    }

    /// Starts a server on `port` (a restart after [`S3Server::stop`]).
    pub fn start_on(port: u16, bucket: &str) -> S3Server {
        let bin = moto_server_bin();
        assert!(
            bin.exists(),
            "moto's S3 server is missing at {}: run bash tests/setup.sh as root (it installs moto[server] with pip)",
            bin.display()
        );
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let s = S3Server { port, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // moto takes unsigned requests: the test's own view of the bucket.
        let r = s.raw("PUT", &format!("/{bucket}"), None);
        assert!(
            r.status < 300,
            "cannot make bucket {bucket}: {} {}",
            r.status,
            r.text()
        );
        s
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An unsigned request to the server (what the test sees, not paas).
    pub fn raw(&self, method: &str, path: &str, body: Option<&[u8]>) -> HttpResponse {
        http(
            self.port,
            method,
            &format!("127.0.0.1:{}", self.port),
            path,
            &[],
            body,
        )
    }

    /// Keys under `prefix` in `bucket`.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let r = self.raw(
            "GET",
            &format!("/{bucket}?list-type=2&prefix={prefix}"),
            None,
        );
        assert_eq!(r.status, 200, "listing: {}", r.text());
        r.text()
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_string()))
            .collect()
    }

    /// An object's bytes, fetched with a request signed for `key_id`.
    pub fn get_object(&self, bucket: &str, key: &str) -> Vec<u8> {
        let url = self.signed(bucket, key, "GET");
        let r = reqwest::blocking::get(url).expect("moto answers");
        assert!(r.status().is_success(), "GET {key}: {}", r.status());
        r.bytes().unwrap().to_vec()
    }

    /// Replaces an object's bytes (a signed request).
    pub fn put_object(&self, bucket: &str, key: &str, body: Vec<u8>) {
        let url = self.signed(bucket, key, "PUT");
        let r = reqwest::blocking::Client::new()
            .put(url)
            .body(body)
            .send()
            .expect("moto answers");
        assert!(r.status().is_success(), "PUT {key}: {}", r.status());
    }

    fn signed(&self, bucket: &str, key: &str, method: &str) -> reqwest::Url {
        use rusty_s3::S3Action;
        let b = rusty_s3::Bucket::new(
            self.endpoint().parse().unwrap(),
            rusty_s3::UrlStyle::Path,
            bucket.to_string(),
            "us-east-1",
        )
        .unwrap();
        let c = rusty_s3::Credentials::new("test-id", "test-secret");
        let ttl = Duration::from_secs(600);
        let url = if method == "PUT" {
            b.put_object(Some(&c), key).sign(ttl)
        } else {
            b.get_object(Some(&c), key).sign(ttl)
        };
        url.as_str().parse().unwrap()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
