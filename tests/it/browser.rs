//! The dashboard in a real browser: headless Chromium driven over WebDriver
//! (chromedriver) with the fantoccini crate. Screenshots are kept as PNG
//! files in `<target dir>/browser-screenshots/` for a person to look at.
//!
//! Needs Debian's `chromium` and `chromium-driver` (bash tests/setup.sh);
//! without them the test fails and says so, it never skips.

use crate::harness::{Daemon, Project};
use fantoccini::{elements::Element, error::CmdError, Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's chromium package puts the browser.
const CHROMIUM: &str = "/usr/bin/chromium";

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

/// Fails with what to install when Chromium or chromedriver is missing.
fn require_browser() {
    let runs = |cmd: &str| {
        Command::new(cmd)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut missing = Vec::new();
    if !std::path::Path::new(CHROMIUM).exists() {
        missing.push("chromium");
    }
    if !runs("chromedriver") {
        missing.push("chromium-driver");
    }
    assert!(
        missing.is_empty(),
        "the browser tests drive Debian's Chromium through chromedriver, and this machine lacks the package(s) {}: install them (apt-get install chromium chromium-driver), or run bash tests/setup.sh as root",
        missing.join(" and ")
    );
}

/// A chromedriver process and one browser session in it. WebDriver is
/// asynchronous in fantoccini; the test is not, so each call runs to its
/// end on a runtime of the browser's own.
struct Browser {
    rt: tokio::runtime::Runtime,
    /// None once the session is closed.
    client: Option<Client>,
    driver: Child,
    shots: PathBuf,
    /// Screenshot names start with it (the test's name).
    prefix: String,
    shot_no: usize,
}

impl Browser {
    /// A headless browser for test `prefix`; its old screenshots are removed.
    fn start(prefix: &str) -> Browser {
        require_browser();
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
            .unwrap_or_else(|e| panic!("chromedriver did not start ({e})"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--disable-gpu", "--window-size=1200,900"]
            }
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt
            .block_on(
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps.as_object().unwrap().clone())
                    .connect(&format!("http://127.0.0.1:{port}")),
            )
            .unwrap_or_else(|e| panic!("no browser session: {e}"));
        let shots = screenshot_dir();
        for e in std::fs::read_dir(&shots).into_iter().flatten().flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{prefix}-"))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Browser {
            rt,
            client: Some(client),
            driver,
            shots,
            prefix: prefix.to_string(),
            shot_no: 0,
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("an open browser session")
    }

    /// Runs one WebDriver command to its end; a failure fails the test.
    fn run<T>(&self, what: &str, command: impl Future<Output = Result<T, CmdError>>) -> T {
        self.rt
            .block_on(command)
            .unwrap_or_else(|e| panic!("WebDriver {what}: {e}"))
    }

    fn goto(&self, url: &str) {
        self.run(&format!("go to {url}"), self.client().goto(url));
    }

    /// The element, waiting up to 10 s for it to appear.
    fn find(&self, css: &str) -> Element {
        let found = self.rt.block_on(
            self.client()
                .wait()
                .at_most(Duration::from_secs(10))
                .every(Duration::from_millis(100))
                .for_element(Locator::Css(css)),
        );
        found.unwrap_or_else(|e| {
            panic!(
                "no element {css} on {} ({e}): {}",
                self.url(),
                self.js("return document.body.innerText")
                    .as_str()
                    .unwrap_or("")
            )
        })
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.run(&format!("click {css}"), e.click());
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.run(&format!("type into {css}"), e.send_keys(text));
    }

    fn text(&self, css: &str) -> String {
        let e = self.find(css);
        self.run(&format!("text of {css}"), e.text())
    }

    fn js(&self, script: &str) -> Value {
        self.run(script, self.client().execute(script, Vec::new()))
    }

    fn url(&self) -> String {
        self.run("current URL", self.client().current_url())
            .to_string()
    }

    fn resize(&self, width: u32, height: u32) {
        self.run(
            "resize the window",
            self.client().set_window_size(width, height),
        );
    }

    /// A PNG of the window, numbered in the order taken.
    fn screenshot(&mut self, name: &str) {
        let png = self.run("screenshot", self.client().screenshot());
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
        if let Some(client) = self.client.take() {
            let _ = self.rt.block_on(client.close());
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
