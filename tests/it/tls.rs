//! HTTPS: the proxy's TLS listener with certificates by SNI, HTTP/2 by
//! ALPN, plain HTTP redirected once a name has a certificate, Django told
//! the request was secure, and the control plane at `paas.<domain>` over
//! HTTPS only. Driven by curl (OpenSSL, nghttp2): a client paas did not write.

use crate::harness::{http, Daemon, Project};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One curl exchange over HTTPS.
pub struct Curl {
    /// The status line's protocol, e.g. "HTTP/2".
    pub version: String,
    pub status: u16,
    /// The header block, as sent.
    pub head: String,
    pub body: String,
}

/// `curl` to `https://host:port/path`, the name resolved to 127.0.0.1 and
/// the server checked against `root` (and nothing else).
pub fn curl(root: &Path, port: u16, host: &str, path: &str, extra: &[&str]) -> Curl {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "60", "--cacert"])
        .arg(root)
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args(extra)
        .arg(format!("https://{host}:{port}{path}"))
        .env_remove("SSL_CERT_FILE")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .output()
        .expect("curl runs (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl https://{host}:{port}{path} failed: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The last header block (a 100 Continue may come first).
    let mut rest = text.as_str();
    loop {
        let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
        if head.starts_with("HTTP/") && head.contains(" 100") && body.starts_with("HTTP/") {
            rest = body;
            continue;
        }
        let first = head.lines().next().unwrap_or("");
        let mut words = first.split_whitespace();
        return Curl {
            version: words.next().unwrap_or("").to_string(),
            status: words.next().and_then(|s| s.parse().ok()).unwrap_or(0),
            head: head.to_string(),
            body: body.to_string(),
        };
    }
}

/// The local CA's root as `paas certs:ca` prints it, in a file for curl.
pub fn fetch_root(d: &Daemon, dir: &Path) -> PathBuf {
    let out = d
        .cli()
        .command(dir)
        .env("PAAS_TOKEN", &d.token)
        .arg("certs:ca")
        .output()
        .unwrap();
    let pem = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && pem.starts_with("-----BEGIN CERTIFICATE-----"),
        "paas certs:ca: {pem}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join("paas-root.pem");
    std::fs::write(&path, pem).unwrap();
    path
}

/// A view that says what Django thinks of the request.
const SECURE_VIEW: &str = "
from django.http import HttpResponse as _Plain
urlpatterns.append(path('secure/', lambda r: _Plain('secure=%s scheme=%s' % (r.is_secure(), r.scheme))))
";

/// One pushed app, served at `<app>.localhost` by the local CA's
/// certificate: HTTP/2 through curl, plain HTTP redirected (ACME's
/// challenge path excepted), Django knowing the request is secure, the
/// admin's login form passing CSRF over HTTPS, Secure cookies, `check
/// --deploy` quiet about what paas handles, and the control host served
/// over HTTPS only.
#[test]
fn https_serves_apps_over_http2_and_django_knows_it() {
    let mut d = Daemon::start_https(&[]);
    let port = d.https.unwrap();
    let app = d.app("tls");
    let host = format!("{app}.localhost");
    let p = Project::from_fixture("blog");
    p.append("mysite/urls.py", SECURE_VIEW);
    p.commit("a view telling whether the request is secure");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    // The push says where the site is, over HTTPS, and whence its certificate.
    assert!(
        out.contains(&format!("is live at https://{host}:{port}/")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "certificate for {host} obtained from paas local CA root"
        )),
        "{out}"
    );

    let root = fetch_root(&d, p.dir.path());
    let r = curl(&root, port, &host, "/", &["--http2"]);
    assert_eq!(
        (r.version.as_str(), r.status),
        ("HTTP/2", 200),
        "{}",
        r.head
    );
    assert!(r.body.contains("Notes v1"), "{}", r.body);
    let r = curl(
        &root,
        port,
        &host,
        "/static/notes/style.css",
        &["--http1.1"],
    );
    assert_eq!(
        (r.version.as_str(), r.status),
        ("HTTP/1.1", 200),
        "{}",
        r.head
    );

    // Plain HTTP now redirects, path and query kept; ACME's path does not.
    let r = http(d.http, "GET", &host, "/add/?x=1", &[], None);
    assert_eq!(r.status, 308, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("https://{host}:{port}/add/?x=1").as_str())
    );
    let r = http(
        d.http,
        "GET",
        &host,
        "/.well-known/acme-challenge/no-such-token",
        &[],
        None,
    );
    assert_eq!(r.status, 404, "{}", r.text());

    // Django sees a secure request (X-Forwarded-Proto: https from the
    // TLS listener only: the plain one says http whatever a client sends).
    let r = curl(&root, port, &host, "/secure/", &[]);
    assert_eq!(r.body, "secure=True scheme=https", "{}", r.head);

    // The admin's login over HTTPS: the CSRF cookie is Secure, and the
    // POST passes the CSRF check (a wrong password, not a 403).
    let jar = p.dir.path().join("cookies.txt");
    let jar_s = jar.to_str().unwrap();
    let r = curl(&root, port, &host, "/admin/login/", &["-c", jar_s]);
    assert_eq!(r.status, 200, "{}", r.head);
    let cookie = r
        .head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie: csrftoken="))
        .unwrap_or_else(|| panic!("a CSRF cookie: {}", r.head));
    assert!(cookie.contains("Secure"), "{cookie}");
    let token = r
        .body
        .split("name=\"csrfmiddlewaretoken\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the login form's CSRF token")
        .to_string();
    let form = format!("csrfmiddlewaretoken={token}&username=nobody&password=wrong&next=/admin/");
    let referer = format!("https://{host}:{port}/admin/login/");
    let r = curl(
        &root,
        port,
        &host,
        "/admin/login/",
        &["-b", jar_s, "-e", &referer, "--data", &form],
    );
    assert_eq!(
        r.status, 200,
        "CSRF refused the login over HTTPS: {}",
        r.body
    );
    assert!(
        r.body.contains("Please enter the correct username"),
        "{}",
        r.body
    );

    // `paas certs`: the app's name, valid, from the local CA.
    let out = d
        .cli()
        .command(p.dir.path())
        .env("PAAS_TOKEN", &d.token)
        .args(["certs", "-a", &app, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["domain"], host.as_str(), "{v:#}");
    assert_eq!(v[0]["state"], "valid", "{v:#}");
    assert_eq!(v[0]["issuer"], "paas local CA root", "{v:#}");
    assert!(v[0]["renew_at"].as_str().is_some(), "{v:#}");

    // The control plane over HTTPS; plain HTTP for it redirects.
    let bearer = format!("Authorization: Bearer {}", d.token);
    let r = curl(&root, port, "paas.localhost", "/api/apps", &["-H", &bearer]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(&app), "{}", r.body);
    let r = http(d.http, "GET", "paas.localhost", "/api/apps", &[], None);
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(format!("https://paas.localhost:{port}/api/apps").as_str())
    );

    // The dashboard over HTTPS: a __Host- session cookie, Secure, and the
    // app's page lists its certificates.
    let login = format!("token={}", d.token);
    let r = curl(&root, port, "paas.localhost", "/login", &["--data", &login]);
    assert_eq!(r.status, 303, "{}", r.body);
    let set = r
        .head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("a session cookie: {}", r.head));
    assert!(
        set.contains("__Host-paas_session=") && set.contains("Secure") && set.contains("Path=/"),
        "{set}"
    );
    let pair = set["set-cookie:".len()..]
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let cookie = format!("Cookie: {pair}");
    let r = curl(
        &root,
        port,
        "paas.localhost",
        &format!("/apps/{app}"),
        &["-H", &cookie],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("id=\"certs\"") && r.body.contains(&host),
        "{}",
        r.body
    );
    // The plain cookie name is not a session over HTTPS.
    let plain = cookie.replace("__Host-paas_session", "paas_session");
    let r = curl(
        &root,
        port,
        "paas.localhost",
        &format!("/apps/{app}"),
        &["-H", &plain],
    );
    assert_ne!(r.status, 200, "{}", r.body);

    // `check --deploy` no longer asks for what paas does.
    let out = d
        .cli()
        .command(p.dir.path())
        .env("PAAS_TOKEN", &d.token)
        .args(["run", "-a", &app, "--no-tty", "--"])
        .args(["python", "manage.py", "check", "--deploy"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for handled in ["security.W008", "security.W012", "security.W016"] {
        assert!(!text.contains(handled), "{handled} still warned:\n{text}");
    }
    assert!(text.contains("System check identified"), "{text}");

    // git over HTTPS at paas.<domain>: `paas login` (trusting the local
    // root through SSL_CERT_FILE) sets paas as git's credential helper, so
    // the remote carries no token.
    let cli = d.cli();
    let login_url = format!("https://paas.localhost:{port}");
    let out = cli
        .command(p.dir.path())
        .env("SSL_CERT_FILE", &root)
        .args(["login", &login_url, "--token", &d.token])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "paas login {login_url}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let remote = format!("{login_url}/{app}.git");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .current_dir(p.dir.path())
            .env("HOME", cli.home.path())
            .env("XDG_CONFIG_HOME", cli.home.path().join(".config"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_SSL_CAINFO", &root)
            .env_remove("GIT_CONFIG_GLOBAL")
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, text) = git(&["remote", "add", "paas", &remote]);
    assert!(ok, "{text}");
    p.replace("Notes v1", "Notes over TLS");
    p.commit("pushed over https");
    let (ok, text) = git(&["push", "paas", "main"]);
    assert!(ok, "git push over https rejected:\n{text}");
    assert!(text.contains("is live"), "{text}");
    let r = curl(&root, port, &host, "/", &[]);
    assert!(r.body.contains("Notes over TLS"), "{}", r.body);
    let config = std::fs::read_to_string(p.dir.path().join(".git/config")).unwrap();
    assert!(
        !config.contains(&d.token),
        "a token in .git/config:\n{config}"
    );
}

/// `openssl s_client` to 127.0.0.1:`port` sending no SNI name, the
/// certificate checked against `root` and the name `paas.localhost`,
/// `request` written once the handshake is done: (handshake and
/// verification passed, what it printed of the session, the answer).
fn without_sni(port: u16, root: &Path, alpn: &str, request: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args([
            "-noservername",
            "-brief",
            "-ign_eof",
            "-verify_return_error",
        ])
        .args([
            "-verify_hostname",
            "paas.localhost",
            "-alpn",
            alpn,
            "-CAfile",
        ])
        .arg(root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs (apt-get install openssl)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(request.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A client that sends no SNI name (one that connects by address) gets
/// the control host's certificate, `paas.<domain>`, which it can verify,
/// and the control plane answers it; a Host header naming a stranger
/// gets a 404, and nothing is ordered from the ACME server (counted at
/// Pebble), nor is any name added. A TLS-ALPN-01 handshake without a
/// name gets no certificate at all.
#[test]
fn a_client_without_sni_gets_the_control_plane_certificate_and_orders_nothing() {
    use crate::acme::{Dns, Pebble};
    let dns = Dns::start();
    let (http_port, https_port) = (crate::harness::free_port(), crate::harness::free_port());
    let pebble = Pebble::start(http_port, https_port, &dns);
    let directory = pebble.directory();
    let ca_file = pebble.api_root();
    let d = Daemon::start_https_on(
        &[
            ("PAAS_ACME_DIRECTORY", directory.as_str()),
            ("PAAS_ACME_CA_FILE", ca_file.to_str().unwrap()),
        ],
        http_port,
        https_port,
    );
    let dir = tempfile::tempdir().unwrap();
    let root = fetch_root(&d, dir.path());
    let certs = || {
        let out = d
            .cli()
            .command(dir.path())
            .env("PAAS_TOKEN", &d.token)
            .args(["certs", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    // The control host's certificate comes from the keeper's first look.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while certs()[0]["state"] != "valid" {
        assert!(
            std::time::Instant::now() < deadline,
            "no control certificate: {:#}",
            certs()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    let api = format!(
        "GET /api/apps HTTP/1.1\r\nHost: paas.localhost\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        d.token
    );
    let (ok, session, answer) = without_sni(https_port, &root, "http/1.1", &api);
    assert!(ok, "no verified handshake without SNI: {session}{answer}");
    assert!(
        session.contains("Verification: OK") && session.contains("CN = paas.localhost"),
        "{session}"
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let stranger = "GET / HTTP/1.1\r\nHost: stranger.example.test\r\nConnection: close\r\n\r\n";
    let (ok, session, answer) = without_sni(https_port, &root, "http/1.1", stranger);
    assert!(ok, "{session}{answer}");
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    // The ACME validator's protocol without a name: no certificate.
    let (ok, session, _) = without_sni(https_port, &root, "acme-tls/1", "");
    assert!(!ok, "a certificate for acme-tls/1 without SNI: {session}");

    // Nothing was ordered, nor is any name but the control host's kept.
    let v = certs();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["domain"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["paas.localhost"], "{v:#}");
    assert_eq!(pebble.orders(), 0, "{}", pebble.log());
    assert!(
        !d.log_text().contains("requested from the ACME CA"),
        "{}",
        d.log_text()
    );
    let files: Vec<String> = std::fs::read_dir(d.data.path().join("certs/live"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    drop(dns);
}
