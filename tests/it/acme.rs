//! Certificates from a real ACME server: Pebble (Debian's `pebble`), with
//! real validation (no PEBBLE_VA_ALWAYS_VALID). Pebble connects to paas's
//! own listeners for HTTP-01 and TLS-ALPN-01, and resolves the test names
//! through a tiny DNS responder run here (every name → 127.0.0.1, and
//! names starting `alpn-` → 127.0.0.2, where only port 443's twin
//! answers: a name whose port 80 is unreachable, as behind a CDN; names
//! starting `nowhere-` → 127.0.0.3, where nothing answers: every
//! validation fails).

use crate::harness::{free_port, http, Daemon, Project};
use crate::tls::curl;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Answers DNS A queries on 127.0.0.1:port until dropped.
pub struct Dns {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The address a test name resolves to.
fn address_of(name: &str) -> [u8; 4] {
    if name.starts_with("alpn-") {
        [127, 0, 0, 2]
    } else if name.starts_with("nowhere-") {
        [127, 0, 0, 3]
    } else {
        [127, 0, 0, 1]
    }
}

/// The answer to one query: A records get the address, other types an
/// empty NOERROR answer.
fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels, then type and class.
    let mut i = 12;
    let mut labels = Vec::new();
    while i < query.len() && query[i] != 0 {
        let len = query[i] as usize;
        labels.push(String::from_utf8_lossy(query.get(i + 1..i + 1 + len)?).to_lowercase());
        i += 1 + len;
    }
    let end = i + 5;
    let qtype = u16::from_be_bytes([*query.get(i + 1)?, *query.get(i + 2)?]);
    let mut out = query[..2].to_vec();
    out.extend_from_slice(&[0x81, 0x80]); // response, recursion available
    out.extend_from_slice(&[0, 1]); // one question
    out.extend_from_slice(&[0, u8::from(qtype == 1)]); // answers
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(query.get(12..end)?);
    if qtype == 1 {
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        out.extend_from_slice(&address_of(&labels.join(".")));
    }
    Some(out)
}

impl Dns {
    pub fn start() -> Dns {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    if let Some(answer) = dns_answer(&buf[..n]) {
                        let _ = socket.send_to(&answer, from);
                    }
                }
            }
        });
        Dns { port, stop }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Forwards 127.0.0.2:port to 127.0.0.1:port (paas's HTTPS listener), so
/// `alpn-` names reach port 443's twin and nothing else.
fn forward_alpn_twin(port: u16) {
    let listener = TcpListener::bind(("127.0.0.2", port)).unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                    return;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let up = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut s2);
                    let _ = s2.shutdown(std::net::Shutdown::Write);
                });
                let (mut c, mut s) = (client, server);
                let _ = std::io::copy(&mut s, &mut c);
                let _ = c.shutdown(std::net::Shutdown::Write);
                let _ = up.join();
            });
        }
    });
}

/// A Pebble server whose validator checks paas's listeners.
pub struct Pebble {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub acme_port: u16,
    pub mgmt_port: u16,
}

impl Pebble {
    /// Pebble validating HTTP-01 on `http` and TLS-ALPN-01 on `https`,
    /// resolving names through `dns`.
    pub fn start(http: u16, https: u16, dns: &Dns) -> Pebble {
        Pebble::start_with_validity(http, https, dns, None)
    }

    /// As [`Pebble::start`], its certificates valid for `validity` seconds.
    pub fn start_with_validity(http: u16, https: u16, dns: &Dns, validity: Option<u64>) -> Pebble {
        let dir = tempfile::Builder::new()
            .prefix("paas-it-pebble-")
            .tempdir()
            .unwrap();
        // Pebble's own HTTPS certificate, signed by a root paas is told of
        // (--acme-ca-file).
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "paas test: Pebble's API root");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.path().join("api-root.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        let (acme_port, mgmt_port) = (free_port(), free_port());
        let mut config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http,
            "tlsPort": https,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        if let Some(secs) = validity {
            config["pebble"]["certificateValidityPeriod"] = secs.into();
        }
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let mut p = Pebble {
            child: None,
            dir,
            acme_port,
            mgmt_port,
        };
        p.spawn(dns);
        p
    }

    fn spawn(&mut self, dns: &Dns) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new("pebble")
            .arg("-config")
            .arg(self.dir.path().join("config.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{}", dns.port)])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env_remove("PEBBLE_VA_ALWAYS_VALID")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("pebble runs: apt-get install pebble (bash tests/setup.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.acme_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pebble did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("pebble.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn directory(&self) -> String {
        format!("https://localhost:{}/dir", self.acme_port)
    }

    pub fn api_root(&self) -> PathBuf {
        self.dir.path().join("api-root.pem")
    }

    /// New orders Pebble has received (its log has a line per request).
    pub fn orders(&self) -> usize {
        self.log().matches("POST /order-plz").count()
    }

    /// The root Pebble issues under, in a file for curl.
    pub fn issuing_root(&self) -> PathBuf {
        let out = Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(self.api_root())
            .arg(format!("https://localhost:{}/roots/0", self.mgmt_port))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = self.dir.path().join("issuing-root.pem");
        std::fs::write(&path, &out.stdout).unwrap();
        path
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "---- pebble log (its end) ----\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// `paas certs -a APP --json`.
fn certs_of(d: &Daemon, dir: &Path, app: &str) -> serde_json::Value {
    let out = d
        .cli()
        .command(dir)
        .env("PAAS_TOKEN", &d.token)
        .args(["certs", "-a", app, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn row<'a>(v: &'a serde_json::Value, domain: &str) -> &'a serde_json::Value {
    v.as_array()
        .unwrap()
        .iter()
        .find(|r| r["domain"] == domain)
        .unwrap_or_else(|| panic!("no row for {domain}: {v:#}"))
}

/// Waits until `domain`'s certificate is valid, failing on a recorded error.
fn wait_valid(d: &Daemon, dir: &Path, app: &str, domain: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = certs_of(d, dir, app);
        let r = row(&v, domain).clone();
        if r["state"] == "valid" {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "no certificate for {domain} within 120 s: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn cli_ok(d: &Daemon, dir: &Path, args: &[&str]) -> String {
    let out = d
        .cli()
        .command(dir)
        .env("PAAS_TOKEN", &d.token)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "paas {args:?}: {text}");
    text
}

/// A pushed app's custom domains get certificates from Pebble: one by
/// HTTP-01, one (port 80 unreachable) by TLS-ALPN-01 after HTTP-01 fails.
/// Then: HTTP/2 with Pebble's root, HTTP redirected, a stranger's SNI name
/// orders nothing, restarts of the app and of the daemon order nothing,
/// and with Pebble stopped the sites keep serving.
#[test]
fn acme_certificates_by_http01_and_tls_alpn01_are_kept_and_never_reordered() {
    let dns = Dns::start();
    let (http_port, https_port) = (free_port(), free_port());
    forward_alpn_twin(https_port);
    let mut pebble = Pebble::start(http_port, https_port, &dns);
    let directory = pebble.directory();
    let ca_file = pebble.api_root();
    let mut d = Daemon::start_https_on(
        &[
            ("PAAS_ACME_DIRECTORY", directory.as_str()),
            ("PAAS_ACME_CA_FILE", ca_file.to_str().unwrap()),
            ("PAAS_ACME_EMAIL", "owner@example.com"),
        ],
        http_port,
        https_port,
    );
    let app = d.app("acme");
    let p = Project::from_fixture("blog");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    // Names under localhost come from the local CA: Pebble saw no order.
    assert_eq!(pebble.orders(), 0, "{}", pebble.log());

    let www = format!("www.{app}.test");
    let alpn = format!("alpn-{app}.test");
    cli_ok(&d, p.dir.path(), &["domains:add", &www, "-a", &app]);
    let r = wait_valid(&d, p.dir.path(), &app, &www);
    assert!(
        r["issuer"]
            .as_str()
            .unwrap()
            .starts_with("Pebble Intermediate CA"),
        "{r:#}"
    );
    assert_eq!(r["challenge"], "http-01", "{r:#}");
    cli_ok(&d, p.dir.path(), &["domains:add", &alpn, "-a", &app]);
    let r = wait_valid(&d, p.dir.path(), &app, &alpn);
    assert!(r["last_error"].is_null(), "{r:#}");
    assert_eq!(r["challenge"], "tls-alpn-01", "{r:#}");
    let log = pebble.log();
    assert!(
        log.contains(&format!("Attempting to validate w/ HTTP: http://{alpn}:")),
        "HTTP-01 was tried first: {log}"
    );
    let orders = pebble.orders();
    // One order for www; for alpn-, the failed HTTP-01 one and the TLS-ALPN-01 one.
    assert_eq!(orders, 3, "{log}");

    // Served over HTTP/2 with Pebble's certificate; plain HTTP redirects.
    let root = pebble.issuing_root();
    for name in [&www, &alpn] {
        let r = curl(&root, https_port, name, "/", &["--http2"]);
        assert_eq!(
            (r.version.as_str(), r.status),
            ("HTTP/2", 200),
            "{name}: {}",
            r.head
        );
        assert!(r.body.contains("Notes v1"), "{}", r.body);
    }
    let r = http(http_port, "GET", &www, "/", &[], None);
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(format!("https://{www}:{https_port}/").as_str())
    );

    // A stranger's name: no certificate, no order.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&root)
        .args([
            "--resolve",
            &format!("stranger.test:{https_port}:127.0.0.1"),
        ])
        .arg(format!("https://stranger.test:{https_port}/"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "a stranger's name got a certificate");

    // Five restarts (each a new container and a route swap) and a daemon
    // restart: the stored certificates are kept, nothing is ordered.
    let before = row(&certs_of(&d, p.dir.path(), &app), &www).clone();
    for _ in 0..5 {
        cli_ok(&d, p.dir.path(), &["restart", "-a", &app]);
    }
    if let Some(mut c) = d.child.take() {
        let _ = Command::new("kill").arg(c.id().to_string()).status();
        let _ = c.wait();
    }
    d.spawn();
    let r = curl(&root, https_port, &www, "/", &["--http2"]);
    assert_eq!(r.status, 200, "{}", r.head);
    std::thread::sleep(Duration::from_secs(2));
    let after = row(&certs_of(&d, p.dir.path(), &app), &www).clone();
    assert_eq!(before["not_after"], after["not_after"], "{after:#}");
    assert_eq!(pebble.orders(), orders, "{}", pebble.log());

    // Pebble stopped: the sites keep serving on their stored certificates,
    // and a name added now shows the failure and the next try, loud.
    pebble.stop();
    let r = curl(&root, https_port, &alpn, "/", &[]);
    assert_eq!(r.status, 200, "{}", r.head);
    let late = format!("late.{app}.test");
    cli_ok(&d, p.dir.path(), &["domains:add", &late, "-a", &app]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let failed = loop {
        let v = certs_of(&d, p.dir.path(), &app);
        let r = row(&v, &late).clone();
        if r["last_error"].is_string() {
            break r;
        }
        assert!(Instant::now() < deadline, "no error shown: {v:#}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(failed["state"], "missing", "{failed:#}");
    assert!(failed["next_try"].is_string(), "{failed:#}");
    let e = failed["last_error"].as_str().unwrap();
    assert!(
        e.contains("could not be obtained") && e.contains("DNS"),
        "{e}"
    );
    let table = cli_ok(&d, p.dir.path(), &["certs", "-a", &app]);
    assert!(
        table.contains(&format!("ERROR: the certificate for {late}")),
        "{table}"
    );
    let r = curl(&root, https_port, &www, "/", &[]);
    assert_eq!(r.status, 200, "{}", r.head);

    // The account is stored once, 0600.
    let account = d.data.path().join("certs/acme-account.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&account).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    drop(dns);
}

/// With Pebble issuing 45-second certificates, the certificate renews by
/// itself (a third of its lifetime before expiry) while clients keep
/// sending requests, over kept-alive connections and new handshakes alike:
/// none fails, and `paas certs` shows the new expiry.
#[test]
fn acme_certificate_renews_by_itself_under_load_with_no_failed_request() {
    let dns = Dns::start();
    let (http_port, https_port) = (free_port(), free_port());
    let pebble = Pebble::start_with_validity(http_port, https_port, &dns, Some(45));
    let directory = pebble.directory();
    let ca_file = pebble.api_root();
    let mut d = Daemon::start_https_on(
        &[
            ("PAAS_ACME_DIRECTORY", directory.as_str()),
            ("PAAS_ACME_CA_FILE", ca_file.to_str().unwrap()),
        ],
        http_port,
        https_port,
    );
    let app = d.app("renew");
    let p = Project::from_fixture("blog");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    let www = format!("www.{app}.test");
    cli_ok(&d, p.dir.path(), &["domains:add", &www, "-a", &app]);
    let first = wait_valid(&d, p.dir.path(), &app, &www);
    let root = std::fs::read(pebble.issuing_root()).unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for fresh_connections in [false, false, true, true] {
        let (root, www, stop) = (root.clone(), www.clone(), stop.clone());
        workers.push(std::thread::spawn(move || {
            let mut builder = reqwest::blocking::Client::builder()
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
                .resolve(&www, ([127, 0, 0, 1], https_port).into())
                .no_proxy()
                .timeout(Duration::from_secs(30));
            if fresh_connections {
                builder = builder.pool_max_idle_per_host(0);
            }
            let client = builder.build().unwrap();
            let (mut ok, mut failed) = (0u64, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match client.get(format!("https://{www}:{https_port}/")).send() {
                    Ok(r) => {
                        let status = r.status();
                        match r.text() {
                            Ok(_) if status == 200 => ok += 1,
                            Ok(_) => failed.push(format!("status {status}")),
                            Err(e) => failed.push(format!("body: {e}")),
                        }
                    }
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let renewed = loop {
        let r = row(&certs_of(&d, p.dir.path(), &app), &www).clone();
        if r["not_after"] != first["not_after"] && r["state"] == "valid" {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "not renewed within 120 s: {r:#}\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    // Keep the load on a little after the swap.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for w in workers {
        let (o, f) = w.join().unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        ok + failed.len() as u64,
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 10, "only {ok} requests");
    assert!(
        renewed["not_after"].as_str() > first["not_after"].as_str(),
        "{renewed:#}"
    );
    assert!(renewed["last_error"].is_null(), "{renewed:#}");
    drop(dns);
}

/// `paas certs --json` (every name paas serves).
fn all_certs(d: &Daemon, dir: &Path) -> serde_json::Value {
    let out = d
        .cli()
        .command(dir)
        .env("PAAS_TOKEN", &d.token)
        .args(["certs", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Unix seconds of an RFC 3339 time `paas certs` shows.
fn unix(v: &serde_json::Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    s.parse::<jiff::Timestamp>().unwrap().as_second()
}

/// Waits until `path` is gone.
fn wait_gone(d: &Daemon, path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} was kept: {}",
            path.display(),
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How many times the daemon's log says `what`.
fn said(d: &Daemon, what: &str) -> usize {
    d.log_text().matches(what).count()
}

/// Restarts the daemon and waits for its certificate keeper's first look.
fn restart(d: &mut Daemon) {
    let looks = said(d, "certificates looked at");
    if let Some(mut c) = d.child.take() {
        let _ = Command::new("kill").arg(c.id().to_string()).status();
        let _ = c.wait();
    }
    d.spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    while said(d, "certificates looked at") <= looks {
        assert!(
            Instant::now() < deadline,
            "the keeper did not look after the restart: {}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A removed domain's certificate and a destroyed app's certificates are
/// forgotten: their files leave `<data>/certs/live`, `paas certs` no
/// longer lists them, and they are never renewed (Pebble issues
/// 40-second certificates: once a forgotten one's renewal would have been
/// due, the keeper's next looks order nothing for it, counted at Pebble).
#[test]
fn certificates_of_removed_domains_and_destroyed_apps_are_forgotten() {
    let dns = Dns::start();
    let (http_port, https_port) = (free_port(), free_port());
    let pebble = Pebble::start_with_validity(http_port, https_port, &dns, Some(40));
    let directory = pebble.directory();
    let ca_file = pebble.api_root();
    let mut d = Daemon::start_https_on(
        &[
            ("PAAS_ACME_DIRECTORY", directory.as_str()),
            ("PAAS_ACME_CA_FILE", ca_file.to_str().unwrap()),
        ],
        http_port,
        https_port,
    );
    let app = d.app("forget");
    let p = Project::from_fixture("blog");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    let www = format!("www.{app}.test");
    cli_ok(&d, p.dir.path(), &["domains:add", &www, "-a", &app]);
    let first = wait_valid(&d, p.dir.path(), &app, &www);
    let live = d.data.path().join("certs/live");
    for f in [
        format!("{www}.crt"),
        format!("{www}.key"),
        format!("{app}.localhost.crt"),
    ] {
        assert!(live.join(&f).exists(), "{f}");
    }
    let orders = pebble.orders();
    assert_eq!(orders, 1, "{}", pebble.log());

    // The domain removed: its certificate goes, files and all.
    cli_ok(&d, p.dir.path(), &["domains:remove", &www, "-a", &app]);
    wait_gone(&d, &live.join(format!("{www}.crt")));
    assert!(!live.join(format!("{www}.key")).exists());
    let v = all_certs(&d, p.dir.path());
    assert!(!v.to_string().contains(&www), "{v:#}");
    assert!(
        d.log_text()
            .lines()
            .any(|l| l.contains("certificate forgotten") && l.contains(&format!("domain={www}"))),
        "{}",
        d.log_text()
    );
    // Once its renewal would have been due, the keeper's next look (a new
    // name added) orders the new name only.
    let renew_at = unix(&first["renew_at"]);
    while jiff::Timestamp::now().as_second() <= renew_at {
        std::thread::sleep(Duration::from_millis(200));
    }
    let again = format!("again.{app}.test");
    cli_ok(&d, p.dir.path(), &["domains:add", &again, "-a", &app]);
    let second = wait_valid(&d, p.dir.path(), &app, &again);
    assert_eq!(pebble.orders(), orders + 1, "{}", pebble.log());
    assert!(!live.join(format!("{www}.crt")).exists());

    // The app destroyed: every certificate of its names goes.
    cli_ok(
        &d,
        p.dir.path(),
        &["apps:destroy", "-a", &app, "--confirm", &app, "--no-backup"],
    );
    for name in [again.clone(), format!("{app}.localhost")] {
        wait_gone(&d, &live.join(format!("{name}.crt")));
        assert!(!live.join(format!("{name}.key")).exists(), "{name}");
    }
    let v = all_certs(&d, p.dir.path());
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["domain"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["paas.localhost"], "{v:#}");
    let states = std::fs::read_to_string(d.data.path().join("certs/orders.json")).unwrap();
    assert!(!states.contains(&app), "{states}");

    // Past the destroyed app's renewal time, a daemon restart (which loads
    // what is stored, then looks) orders nothing and brings nothing back.
    let renew_at = unix(&second["renew_at"]);
    while jiff::Timestamp::now().as_second() <= renew_at {
        std::thread::sleep(Duration::from_millis(200));
    }
    restart(&mut d);
    assert_eq!(pebble.orders(), orders + 1, "{}", pebble.log());
    let mut files: Vec<String> = std::fs::read_dir(&live)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["paas.localhost.crt", "paas.localhost.key"]);
    drop(dns);
}

/// An order that fails (Pebble cannot reach the name: every validation
/// fails) waits before the next, and the wait survives a daemon restart:
/// the restarted daemon orders nothing at once (counted at Pebble), and
/// `paas certs` still shows the error and the next try, from
/// `<data>/certs/orders.json` (0600). When the wait is over the next order
/// fails too, and waits twice as long: the count of failures was kept.
#[test]
fn a_failed_orders_backoff_survives_a_daemon_restart() {
    let dns = Dns::start();
    let (http_port, https_port) = (free_port(), free_port());
    let pebble = Pebble::start(http_port, https_port, &dns);
    let directory = pebble.directory();
    let ca_file = pebble.api_root();
    let mut d = Daemon::start_https_on(
        &[
            ("PAAS_ACME_DIRECTORY", directory.as_str()),
            ("PAAS_ACME_CA_FILE", ca_file.to_str().unwrap()),
        ],
        http_port,
        https_port,
    );
    let app = d.app("backoff");
    let p = Project::from_fixture("blog");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    let name = format!("nowhere-{app}.test");
    cli_ok(&d, p.dir.path(), &["domains:add", &name, "-a", &app]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let failed = loop {
        let v = certs_of(&d, p.dir.path(), &app);
        let r = row(&v, &name).clone();
        if r["last_error"].is_string() {
            break r;
        }
        assert!(Instant::now() < deadline, "no error shown: {v:#}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(failed["failures"], 1, "{failed:#}");
    assert_eq!(failed["state"], "missing", "{failed:#}");
    let next_try = unix(&failed["next_try"]);
    assert!(next_try >= unix(&failed["requested_at"]) + 60, "{failed:#}");
    // One order per challenge (HTTP-01, then TLS-ALPN-01), both refused.
    let orders = pebble.orders();
    assert_eq!(orders, 2, "{}", pebble.log());
    let path = d.data.path().join("certs/orders.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let stored = std::fs::read_to_string(&path).unwrap();
    assert!(stored.contains(&name), "{stored}");

    // A daemon restart well before the next try: the keeper looks, holds
    // the order back, and Pebble sees nothing new.
    let held = format!("domain={name}");
    let held_before = d
        .log_text()
        .lines()
        .filter(|l| l.contains("held back") && l.contains(&held))
        .count();
    restart(&mut d);
    assert!(
        jiff::Timestamp::now().as_second() < next_try,
        "the restart took past the next try; nothing was shown"
    );
    let held_after = d
        .log_text()
        .lines()
        .filter(|l| l.contains("held back") && l.contains(&held))
        .count();
    assert!(held_after > held_before, "{}", d.log_text());
    assert_eq!(pebble.orders(), orders, "{}", pebble.log());
    let r = row(&certs_of(&d, p.dir.path(), &app), &name).clone();
    assert_eq!(r["last_error"], failed["last_error"], "{r:#}");
    assert_eq!(r["next_try"], failed["next_try"], "{r:#}");
    assert_eq!(r["failures"], 1, "{r:#}");
    let table = cli_ok(&d, p.dir.path(), &["certs", "-a", &app]);
    let next = failed["next_try"].as_str().unwrap();
    assert!(
        table.contains(&format!("ERROR: the certificate for {name}"))
            && table.contains(&format!("next try {next}")),
        "{table}"
    );

    // At the next try the order runs again, fails again, and the wait
    // doubles: the failure count came through the restart.
    let deadline = Instant::now() + Duration::from_secs(240);
    let again = loop {
        let r = row(&certs_of(&d, p.dir.path(), &app), &name).clone();
        if r["failures"] == 2 {
            break r;
        }
        assert!(Instant::now() < deadline, "no second order: {r:#}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(unix(&again["requested_at"]) >= next_try, "{again:#}");
    assert!(
        unix(&again["next_try"]) >= unix(&again["requested_at"]) + 120,
        "{again:#}"
    );
    assert_eq!(pebble.orders(), orders + 2, "{}", pebble.log());
    let table = cli_ok(&d, p.dir.path(), &["certs", "-a", &app]);
    assert!(table.contains("failed 2 times in a row"), "{table}");
    drop(dns);
}
