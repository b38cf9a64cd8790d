//! The dashboard in a real browser: headless Chromium driven over WebDriver
//! (chromedriver), with a small client over plain HTTP/1.1 here rather than
//! a WebDriver crate (compile time). Screenshots are kept as PNG files in
//! `<target dir>/browser-screenshots/` for a person to look at.
//!
//! Needs Debian's `chromium` and `chromium-driver` (bash tests/setup.sh);
//! without them the test fails and says so, it never skips.

use crate::harness::{Daemon, Project};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MISSING: &str = "install chromium and chromium-driver: bash tests/setup.sh";

/// Where screenshots go: next to the test binary's target directory.
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // <target>/debug/deps/it-<hash>
    let target = exe
        .ancestors()
        .nth(3)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let dir = target.join("browser-screenshots");
    std::fs::create_dir_all(&dir).expect("create the screenshot directory");
    dir
}

/// One JSON exchange with chromedriver (HTTP/1.1, Content-Length framed).
fn wd_call(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to chromedriver");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        payload.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(payload.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let (split, length) = loop {
        let n = s.read(&mut buf).expect("read from chromedriver");
        assert!(
            n > 0,
            "chromedriver closed the connection on {method} {path}"
        );
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..i]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            break (i + 4, len);
        }
    };
    match length {
        Some(len) => {
            while raw.len() < split + len {
                let n = s.read(&mut buf).expect("read from chromedriver");
                assert!(n > 0, "short answer from chromedriver");
                raw.extend_from_slice(&buf[..n]);
            }
        }
        None => {
            let _ = s.read_to_end(&mut raw);
        }
    }
    let v: Value = serde_json::from_slice(&raw[split..]).unwrap_or_else(|e| {
        panic!(
            "chromedriver answered {method} {path} with no JSON ({e}): {}",
            String::from_utf8_lossy(&raw)
        )
    });
    v
}

/// A chromedriver process and one browser session in it.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
    shots: PathBuf,
    /// Screenshot names start with it (the test's name).
    prefix: String,
    shot_no: usize,
}

impl Browser {
    /// A headless browser for test `prefix`; its old screenshots are removed.
    fn start(prefix: &str) -> Browser {
        let has = |cmd: &str| {
            Command::new(cmd)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        assert!(
            has("chromedriver") && std::path::Path::new("/usr/bin/chromium").exists(),
            "{MISSING}"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("chromedriver did not start ({e}): {MISSING}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1200,900"]
            }
        }}});
        let mut b = Browser {
            driver,
            port,
            session: String::new(),
            shots: screenshot_dir(),
            prefix: prefix.to_string(),
            shot_no: 0,
        };
        for e in std::fs::read_dir(&b.shots).into_iter().flatten().flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{prefix}-"))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let r = wd_call(port, "POST", "/session", Some(&caps));
        b.session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {r}"))
            .to_string();
        b
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = wd_call(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        );
        if let Some(err) = r["value"]["error"].as_str() {
            panic!(
                "WebDriver {method} {path}: {err}: {}",
                r["value"]["message"]
            );
        }
        r["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    /// The element's WebDriver id, waiting up to 10 s for it to appear.
    fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = wd_call(
                self.port,
                "POST",
                &format!("/session/{}/element", self.session),
                Some(&json!({ "using": "css selector", "value": css })),
            );
            if let Some(obj) = r["value"].as_object() {
                if let Some(id) = obj
                    .iter()
                    .find(|(k, _)| k.starts_with("element-"))
                    .and_then(|(_, v)| v.as_str())
                {
                    return id.to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no element {css} on {}: {}",
                self.url(),
                self.js("return document.body.innerText")
                    .as_str()
                    .unwrap_or("")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn click(&self, css: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.cmd("GET", &format!("/element/{id}/text"), None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        );
    }

    /// A PNG of the window, numbered in the order taken.
    fn screenshot(&mut self, name: &str) {
        use base64::Engine;
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or(""))
            .expect("a base64 screenshot");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        self.shot_no += 1;
        let path = self
            .shots
            .join(format!("{}-{:02}-{name}.png", self.prefix, self.shot_no));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
    }

    /// Polls `script` (returning a boolean) until true, up to `limit`.
    fn wait_for(&self, script: &str, limit: Duration, what: &str) {
        let deadline = Instant::now() + limit;
        while self.js(script) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "{what} did not happen within {} s on {}: {}",
                limit.as_secs(),
                self.url(),
                self.js("return document.body.innerText")
                    .as_str()
                    .unwrap_or("")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                wd_call(
                    self.port,
                    "DELETE",
                    &format!("/session/{}", self.session),
                    None,
                )
            }));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The releases of an app through the API, newest first.
fn releases(d: &Daemon, app: &str) -> Vec<Value> {
    let auth = format!("Bearer {}", d.token);
    let r = d.admin_request(
        "GET",
        &format!("/api/apps/{app}/releases"),
        &[("Authorization", &auth)],
        None,
    );
    if r.status != 200 {
        return Vec::new();
    }
    serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// Log in with the token, see the deployed app, watch a second deploy's
/// log stream in on its release page, roll back with the button and see
/// the old release served through the proxy; the traffic charts, a config
/// value revealed on click, and the app page at phone width.
#[test]
fn browser_login_watch_deploy_and_roll_back() {
    let mut browser = Browser::start("login-deploy-rollback");
    // Memory and CPU every 2 s rather than 30, for the charts below.
    let mut d = Daemon::start_with_env(&[("PAAS_STATS_INTERVAL_SECS", "2")]);
    let app = d.app("blog");
    let p = Project::from_fixture("blog");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "first push rejected:\n{out}");
    d.assert_serves(&app, "Notes v1");
    let base = format!("http://127.0.0.1:{}", d.admin);

    // Log in: the dashboard sends a stranger to the login page first.
    browser.goto(&format!("{base}/"));
    assert!(browser.url().ends_with("/login"), "{}", browser.url());
    browser.type_into("#token", &d.token);
    browser.click("button.primary");
    browser.wait_for(
        &format!("return !!document.querySelector('tr[data-app=\"{app}\"]')"),
        Duration::from_secs(10),
        "the app on the overview after login",
    );
    let row = browser.text(&format!("tr[data-app=\"{app}\"]"));
    assert!(row.contains("v1") && row.contains("live"), "{row}");
    browser.screenshot("apps-overview");

    // A second deploy, pushed from another thread; the browser opens its
    // release page as soon as the release exists and watches it.
    p.replace("Notes v1", "Notes v2");
    p.commit("v2");
    let remote = d.remote(&app);
    let pusher = std::thread::spawn(move || {
        let r = p.push(&remote);
        (r, p)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !releases(&d, &app).iter().any(|r| r["version"] == 2) {
        assert!(Instant::now() < deadline, "release v2 never appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    browser.goto(&format!("{base}/apps/{app}/releases/2"));
    let first_status = browser.text("#status");
    let first_log = browser
        .js("return document.getElementById('log').textContent.length")
        .as_u64()
        .unwrap();
    // Marks this page load: a reload would lose it.
    browser.js("window.__sameLoad = true; return null");
    assert!(
        !["live", "failed", "retired"].contains(&first_status.as_str()),
        "the deploy finished before the page could watch it ({first_status})"
    );
    let mut grew_while_in_flight = false;
    let mut shot_mid = false;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let now = browser.js(
            "return [document.getElementById('status').textContent, document.getElementById('log').textContent.length, window.__sameLoad === true]",
        );
        let status = now[0].as_str().unwrap_or("").to_string();
        let len = now[1].as_u64().unwrap_or(0);
        assert_eq!(now[2], json!(true), "the release page reloaded");
        let done = ["live", "failed"].contains(&status.as_str());
        if !done && len > first_log {
            grew_while_in_flight = true;
            if !shot_mid {
                browser.screenshot("release-log-streaming");
                shot_mid = true;
            }
        }
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "v2 still {status} after 300 s");
        std::thread::sleep(Duration::from_millis(150));
    }
    let ((ok, out), p) = pusher.join().unwrap();
    assert!(ok, "second push rejected:\n{out}");
    browser.wait_for(
        "return document.body.dataset.streamEnded === '1'",
        Duration::from_secs(10),
        "the end of the log stream",
    );
    let status = browser.text("#status");
    assert_eq!(status, "live", "v2 on its release page");
    browser.wait_for(
        "return document.querySelectorAll('#steps .bar-row').length >= 3",
        Duration::from_secs(10),
        "the step timings after the deploy",
    );
    let log = browser.text("#log");
    assert!(
        grew_while_in_flight,
        "the log never grew while v2 was in flight (it started at {first_log} bytes)"
    );
    assert!(
        log.contains("Running migrations"),
        "the streamed log: {log}"
    );
    browser.screenshot("release-live");
    d.assert_serves(&app, "Notes v2");

    // Roll back with the button on the app page; the result comes back on it.
    browser.goto(&format!("{base}/apps/{app}"));
    browser.click("#rollback-v1");
    browser.wait_for(
        "return !!document.getElementById('flash')",
        Duration::from_secs(120),
        "the rollback's result",
    );
    let flash = browser.text("#flash");
    assert!(flash.contains("is live"), "rollback result: {flash}");
    assert_eq!(
        browser.js("return document.getElementById('flash').className"),
        json!("notice"),
        "{flash}"
    );
    browser.screenshot("rolled-back");
    d.assert_serves(&app, "Notes v1");

    // Pictures: the requests above show up in the charts once sampled.
    for _ in 0..5 {
        d.assert_serves(&app, "Notes v1");
    }
    std::thread::sleep(paas::metrics::SAMPLE_EVERY + Duration::from_secs(1));
    browser.goto(&format!("{base}/apps/{app}"));
    let bars = browser.js("return document.querySelectorAll('#rate-chart rect').length");
    assert!(
        bars.as_u64().unwrap_or(0) >= 1,
        "no bar in the request-rate chart"
    );
    let lines = browser.js("return document.querySelectorAll('#latency-chart polyline').length");
    assert!(lines.as_u64().unwrap_or(0) >= 2, "p50 and p99 lines");
    // The containers' memory (under the limit) and CPU, sampled meanwhile.
    let now = browser.text("#usage-now");
    assert!(
        now.starts_with("Now: ") && now.contains(" MB of ") && now.contains("% CPU"),
        "{now}"
    );
    let points = browser.js(
        "return [document.querySelectorAll('#memory-chart circle').length, document.querySelectorAll('#cpu-chart circle').length, document.querySelectorAll('#memory-chart line[stroke-dasharray]').length]",
    );
    assert!(
        points[0].as_u64().unwrap_or(0) >= 1,
        "memory points: {points}"
    );
    assert!(points[1].as_u64().unwrap_or(0) >= 1, "CPU points: {points}");
    assert_eq!(points[2], json!(1), "the memory limit line: {points}");

    // The overview follows a status change without a reload: a config
    // change rolls out as v4 while the page is open.
    browser.goto(&format!("{base}/"));
    browser.js("window.__sameLoad = true; return null");
    let auth = format!("Bearer {}", d.token);
    let r = d.admin_request(
        "PATCH",
        &format!("/api/apps/{app}/config"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(br#"{"SHOWN_ON_CLICK": "s3cret-value"}"#),
    );
    assert_eq!(r.status, 200, "config:set: {}", r.text());
    browser.wait_for(
        &format!(
            "return window.__sameLoad === true && document.querySelector('tr[data-app=\"{app}\"] .live').textContent === 'v4'"
        ),
        Duration::from_secs(15),
        "v4 shown live on the open overview",
    );

    // A config value is revealed on click only.
    browser.goto(&format!("{base}/apps/{app}"));
    let html = browser.js("return document.documentElement.outerHTML");
    assert!(!html.as_str().unwrap().contains("s3cret-value"));
    browser.click("button.reveal[data-key=\"SHOWN_ON_CLICK\"]");
    browser.wait_for(
        "return document.querySelector('code.secret[data-key=\"SHOWN_ON_CLICK\"]').textContent === 's3cret-value'",
        Duration::from_secs(10),
        "the revealed value",
    );

    // The live container's output streams into the runtime-log panel.
    browser.click("#runtime-logs summary");
    std::thread::sleep(Duration::from_millis(500));
    d.assert_serves(&app, "Notes v1");
    browser.wait_for(
        "return document.getElementById('runtime-log').textContent.indexOf('GET / HTTP') >= 0",
        Duration::from_secs(15),
        "gunicorn's access line in the runtime log",
    );
    browser.screenshot("runtime-log");

    // At phone width the page does not scroll sideways.
    browser.resize(390, 844);
    browser.goto(&format!("{base}/apps/{app}"));
    let overflow = browser
        .js("return document.documentElement.scrollWidth - document.documentElement.clientWidth");
    assert!(
        overflow.as_i64().unwrap_or(99) <= 1,
        "the app page is wider than a phone by {overflow} px"
    );
    browser.screenshot("app-phone");
    browser.goto(&format!("{base}/"));
    let overflow = browser
        .js("var t = document.querySelector('.scroll'); return t.scrollWidth - t.clientWidth");
    assert!(
        overflow.as_i64().unwrap_or(99) <= 1,
        "the overview's table is wider than a phone by {overflow} px"
    );
    browser.screenshot("apps-phone");
    drop(p);
}
