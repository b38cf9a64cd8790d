//! Locks on every door: API tokens, and every route of the API, the
//! dashboard and git tried without, with a wrong and with a revoked
//! credential. One daemon each, no deploy: fast.

use crate::harness::{Daemon, HttpResponse, Project};
use paas::router::{Guard, ROUTES};

const JSON: (&str, &str) = ("Content-Type", "application/json");
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

fn json(r: &HttpResponse) -> serde_json::Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", r.status, r.text()))
}

/// `POST /api/tokens`: the new token's secret.
pub fn create_token(d: &Daemon, name: &str) -> String {
    let auth = bearer(&d.token);
    let body = serde_json::json!({ "name": name }).to_string();
    let r = d.admin_request(
        "POST",
        "/api/tokens",
        &[("Authorization", &auth), JSON],
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    json(&r)["token"].as_str().unwrap().to_string()
}

fn revoke(d: &Daemon, name: &str) -> HttpResponse {
    let auth = bearer(&d.token);
    d.admin_request(
        "DELETE",
        &format!("/api/tokens/{name}"),
        &[("Authorization", &auth)],
        None,
    )
}

/// Log in to the dashboard: the session cookie (`paas_session=…`).
fn login(d: &Daemon, secret: &str) -> String {
    let body = format!("token={secret}");
    let r = d.admin_request("POST", "/login", &[FORM], Some(body.as_bytes()));
    assert_eq!(r.status, 303, "login: {}", r.text());
    r.header("set-cookie")
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// The CSRF token the dashboard put in the session's pages.
fn csrf_of(d: &Daemon, cookie: &str) -> String {
    let page = d.admin_request("GET", "/", &[("Cookie", cookie)], None);
    assert_eq!(page.status, 200, "{}", page.text());
    page.text()
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the page carries a CSRF token")
        .to_string()
}

/// A route made concrete: placeholders filled with names that do not exist
/// (so that nothing changes when a request gets through), and the query
/// git and the hook send.
fn concrete(route: &str) -> String {
    let p = route
        .replace("{app}", "nosuch")
        .replace("{version}", "1")
        .replace("{id}", "20260101T000000Z")
        .replace("{name}", "nosuch");
    if p.ends_with("/info/refs") {
        format!("{p}?service=git-upload-pack")
    } else if p == "/internal/deploy" {
        format!("{p}?app=nosuch&rev=0000000")
    } else {
        p
    }
}

fn to_login(r: &HttpResponse) -> bool {
    r.status == 303 && r.header("location") == Some("/login")
}

/// API tokens: created (secret shown once), listed without secrets, used for
/// the API, git and the dashboard, refused by name twice, and dead the
/// moment they are revoked.
#[test]
fn api_tokens_work_everywhere_until_revoked() {
    let mut d = Daemon::start();
    let admin = bearer(&d.token);
    let secret = create_token(&d, "laptop");
    assert!(secret.starts_with("paas_") && secret.len() > 40, "{secret}");

    // Same name twice, an unknown name, a bad name: one sentence each.
    let body = br#"{"name": "laptop"}"#;
    let r = d.admin_request(
        "POST",
        "/api/tokens",
        &[("Authorization", &admin), JSON],
        Some(body),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        json(&r)["error"],
        "a token named \"laptop\" exists already: pick another --name, or revoke it first with `paas tokens:revoke laptop`"
    );
    let r = revoke(&d, "desktop");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(
        json(&r)["error"],
        "no token named \"desktop\": `paas tokens` lists them"
    );
    let r = d.admin_request(
        "POST",
        "/api/tokens",
        &[("Authorization", &admin), JSON],
        Some(br#"{"name": "my laptop"}"#),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        json(&r)["error"]
            .as_str()
            .unwrap()
            .contains("is not a token name"),
        "{}",
        r.text()
    );

    // The API, with the token.
    let with = bearer(&secret);
    let r = d.admin_request("GET", "/api/apps", &[("Authorization", &with)], None);
    assert_eq!(r.status, 200, "{}", r.text());

    // The list: name, scope, maker and dates, used now, never the secret
    // nor its hash.
    let r = d.admin_request("GET", "/api/tokens", &[("Authorization", &admin)], None);
    assert_eq!(r.status, 200);
    let list = json(&r);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list:#}");
    assert_eq!(list[0]["name"], "laptop");
    assert!(list[0]["created_at"].as_i64().unwrap() > 0);
    assert!(list[0]["last_used_at"].as_i64().is_some(), "{list:#}");
    let keys: Vec<&String> = list[0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["app", "created_at", "created_by", "last_used_at", "name"],
        "names, scope, maker and dates only"
    );
    assert_eq!(
        (&list[0]["app"], &list[0]["created_by"]),
        (&serde_json::Value::Null, &serde_json::Value::Null)
    );
    assert!(!r.text().contains(&secret));

    // Git, with the token as the password.
    let app = d.app("tok");
    let p = Project::from_fixture("not-django");
    let remote = format!("http://paas:{secret}@127.0.0.1:{}/{app}.git", d.admin);
    let (ok, out) = p.push_ref(&remote, "main:feature");
    assert!(ok, "push with an API token: {out}");

    // The dashboard, with the token.
    let cookie = login(&d, &secret);
    let page = d.admin_request("GET", "/", &[("Cookie", &cookie)], None);
    assert_eq!(page.status, 200);
    assert!(page.text().contains(&app), "{}", page.text());

    // Revoked: dead everywhere at once, the session it opened too.
    let r = revoke(&d, "laptop");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = d.admin_request("GET", "/api/apps", &[("Authorization", &with)], None);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(json(&r)["error"].as_str().unwrap().contains("revoked"));
    let (ok, out) = p.push_ref(&remote, "main:feature2");
    assert!(!ok, "push with a revoked token accepted: {out}");
    assert!(
        out.contains("Authentication failed") || out.contains("401"),
        "{out}"
    );
    let page = d.admin_request("GET", "/", &[("Cookie", &cookie)], None);
    assert!(
        to_login(&page),
        "the token's session ended: {}",
        page.status
    );
    let r = d.admin_request(
        "POST",
        "/login",
        &[FORM],
        Some(format!("token={secret}").as_bytes()),
    );
    assert_eq!(r.status, 401);

    // Secrets never reach the log (the admin token is printed once, on
    // first start, to the terminal: stdout shares the log file here).
    let log: String = d
        .log_text()
        .lines()
        .filter(|l| !l.starts_with("paas: your admin token"))
        .collect();
    assert!(!log.contains(&secret), "the token is in the daemon log");
    assert!(
        !log.contains(&d.token),
        "the admin token is in the daemon log"
    );
}

/// `POST /api/tokens` with `body`, sent with the `Authorization` value `by`.
fn mint(d: &Daemon, by: &str, body: serde_json::Value) -> HttpResponse {
    d.admin_request(
        "POST",
        "/api/tokens",
        &[("Authorization", by), JSON],
        Some(body.to_string().as_bytes()),
    )
}

/// `POST /api/apps`: an empty app.
fn create_app(d: &Daemon, name: &str) {
    let auth = bearer(&d.token);
    let body = serde_json::json!({ "name": name }).to_string();
    let r = d.admin_request(
        "POST",
        "/api/apps",
        &[("Authorization", &auth), JSON],
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
}

/// Every route in `paas::api::ROUTES` (which a unit test keeps complete):
/// no credentials, a wrong token, a revoked token → 401 or the login page;
/// a deploy-only token of another app → 403 (pages ignore it: login page);
/// the right one gets through; a state change on a session without its
/// CSRF token → 403. (The rate limit on wrong tokens is lifted here: this
/// test sends a hundred on purpose. `wrong_tokens_and_failed_logins_…`
/// checks it.)
#[test]
fn auth_matrix() {
    let d = Daemon::start_with_env(&[("PAAS_AUTH_FAILURE_LIMIT", "100000")]);
    let admin = bearer(&d.token);
    let live = create_token(&d, "live");
    let gone = create_token(&d, "gone");
    create_app(&d, "scoped");
    let r = mint(
        &d,
        &admin,
        serde_json::json!({ "name": "ci", "app": "scoped" }),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let deploy_only = json(&r)["token"].as_str().unwrap().to_string();
    let session = login(&d, &d.token);
    let gone_session = login(&d, &gone);
    assert_eq!(revoke(&d, "gone").status, 200);
    let csrf = csrf_of(&d, &session);

    let basic = |secret: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("paas:{secret}"))
        )
    };
    let live_basic = basic(&live);
    let wrong = "paas_wrongwrongwrongwrongwrongwrongwrongwrong";
    let bad_credentials: Vec<(String, Vec<(&str, String)>)> = vec![
        ("no credentials".into(), vec![]),
        (
            "a wrong bearer token".into(),
            vec![("Authorization", bearer(wrong))],
        ),
        (
            "a wrong basic password".into(),
            vec![("Authorization", basic(wrong))],
        ),
        (
            "a revoked bearer token".into(),
            vec![("Authorization", bearer(&gone))],
        ),
        (
            "a revoked basic password".into(),
            vec![("Authorization", basic(&gone))],
        ),
        (
            "the revoked token's session".into(),
            vec![("Cookie", gone_session.clone())],
        ),
        (
            "a made-up session".into(),
            vec![("Cookie", "paas_session=forged".into())],
        ),
        (
            "a deploy-only token of another app (bearer)".into(),
            vec![("Authorization", bearer(&deploy_only))],
        ),
        (
            "a deploy-only token of another app (basic)".into(),
            vec![("Authorization", basic(&deploy_only))],
        ),
    ];

    let mut failures = Vec::new();
    let mut checked = 0;
    for &(method, route, guard) in ROUTES {
        let path = concrete(route);
        if guard == Guard::LoginPage {
            let r = d.admin_request(method, &path, &[], None);
            assert_eq!(r.status, 200, "{method} {path} is open to all");
            continue;
        }
        if guard == Guard::Login {
            continue; // below: wrong and revoked tokens, then the rate limit
        }
        for (what, headers) in &bad_credentials {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = d.admin_request(method, &path, &h, None);
            checked += 1;
            let scoped = what.starts_with("a deploy-only token");
            let ok = match guard {
                Guard::Api | Guard::Token | Guard::Git if scoped => r.status == 403,
                Guard::Api | Guard::Token | Guard::Git | Guard::Hook => r.status == 401,
                Guard::Page | Guard::Form => to_login(&r),
                Guard::LoginPage | Guard::Login => unreachable!(),
            };
            if !ok {
                failures.push(format!(
                    "{method} {path} with {what}: {} {}",
                    r.status,
                    r.text().chars().take(200).collect::<String>()
                ));
            }
        }
        // The right credential gets through (so the refusals above are not
        // just a broken route). Git's push would create the app: skip it.
        // The hook's secret is known only to hooks; a form needs a session.
        let through: &[(&str, &str)] = match guard {
            Guard::Api | Guard::Token => &[("Authorization", admin.as_str())],
            Guard::Git if route.ends_with("receive-pack") => &[],
            Guard::Git => &[("Authorization", live_basic.as_str())],
            Guard::Page => &[("Cookie", session.as_str())],
            Guard::Form | Guard::Hook => &[],
            Guard::LoginPage | Guard::Login => unreachable!(),
        };
        let r = d.admin_request(method, &path, through, None);
        if !through.is_empty() && (matches!(r.status, 401 | 403) || to_login(&r)) {
            failures.push(format!(
                "{method} {path} refused the right credential: {} {}",
                r.status,
                r.text()
            ));
        }
        // A state change riding on the session alone needs the CSRF token.
        if guard == Guard::Api && method != "GET" {
            let r = d.admin_request(method, &path, &[("Cookie", session.as_str())], None);
            if r.status != 403 {
                failures.push(format!(
                    "{method} {path} on a session without X-CSRF-Token: {} {}",
                    r.status,
                    r.text()
                ));
            }
            let r = d.admin_request(
                method,
                &path,
                &[
                    ("Cookie", session.as_str()),
                    ("X-CSRF-Token", csrf.as_str()),
                ],
                None,
            );
            if matches!(r.status, 401 | 403) {
                failures.push(format!(
                    "{method} {path} on a session with its CSRF token: {} {}",
                    r.status,
                    r.text()
                ));
            }
        }
        if guard == Guard::Form {
            let with = [("Cookie", session.as_str()), FORM];
            for body in [&b""[..], b"csrf=forged"] {
                let r = d.admin_request(method, &path, &with, Some(body));
                if r.status != 403 {
                    failures.push(format!(
                        "{method} {path} on a session with csrf body {:?}: {}",
                        String::from_utf8_lossy(body),
                        r.status
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The session survived all that, and logging out with its token works.
    let r = d.admin_request(
        "POST",
        "/logout",
        &[("Cookie", session.as_str()), FORM],
        Some(format!("csrf={csrf}").as_bytes()),
    );
    assert!(to_login(&r), "logout: {}", r.status);

    // Logins: a wrong and a revoked token are refused, a deploy-only token
    // cannot open the dashboard.
    for secret in [wrong, gone.as_str()] {
        let r = d.admin_request(
            "POST",
            "/login",
            &[FORM],
            Some(format!("token={secret}").as_bytes()),
        );
        assert_eq!(r.status, 401, "login with {secret}: {}", r.text());
    }
    let r = d.admin_request(
        "POST",
        "/login",
        &[FORM],
        Some(format!("token={deploy_only}").as_bytes()),
    );
    assert_eq!(
        r.status,
        403,
        "login with a deploy-only token: {}",
        r.text()
    );
    assert!(r.text().contains("may only deploy"), "{}", r.text());
}

/// Wrong tokens count like failed logins, per address, whatever the door:
/// bearer on the API, basic on git, the login form. After 10 the address
/// waits out the window, even with the right token; requests that carry no
/// credential at all count nothing.
#[test]
fn wrong_tokens_and_failed_logins_from_one_address_are_rate_limited() {
    let d = Daemon::start();
    let admin = bearer(&d.token);
    let basic = |secret: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("paas:{secret}"))
        )
    };
    for _ in 0..20 {
        let r = d.admin_request("GET", "/api/apps", &[], None);
        assert_eq!(r.status, 401, "{}", r.text());
    }
    let r = d.admin_request("GET", "/api/apps", &[("Authorization", &admin)], None);
    assert_eq!(r.status, 200, "no credential counted: {}", r.text());

    let wrong = "paas_wrongwrongwrongwrongwrongwrongwrongwrong";
    let mut statuses = Vec::new();
    for i in 0..12 {
        let r = match i % 3 {
            0 => d.admin_request(
                "GET",
                "/api/apps",
                &[("Authorization", &bearer(wrong))],
                None,
            ),
            1 => d.admin_request(
                "GET",
                "/blog.git/info/refs?service=git-upload-pack",
                &[("Authorization", &basic(wrong))],
                None,
            ),
            _ => d.admin_request(
                "POST",
                "/login",
                &[FORM],
                Some(format!("token={wrong}").as_bytes()),
            ),
        };
        statuses.push(r.status);
    }
    assert_eq!(
        statuses,
        [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 429, 429],
        "ten wrong secrets pass as 401s, then the address is refused"
    );
    for (what, r) in [
        (
            "the admin token",
            d.admin_request("GET", "/api/apps", &[("Authorization", &admin)], None),
        ),
        (
            "a login with the admin token",
            d.admin_request(
                "POST",
                "/login",
                &[FORM],
                Some(format!("token={}", d.token).as_bytes()),
            ),
        ),
    ] {
        assert_eq!(r.status, 429, "{what} waits out the window: {}", r.text());
        assert!(r.text().contains("wait 15 minutes"), "{}", r.text());
    }
}

/// A deploy-only token (`paas tokens:create --app`) pushes to its app and
/// reads its state, and nothing else: not another app, not the list of
/// apps, not config (secrets), not a one-off command, not tokens. Revoking
/// the token that minted it revokes it; destroying its app revokes it.
#[test]
fn deploy_only_tokens_push_and_read_their_app_and_nothing_else() {
    let mut d = Daemon::start();
    let admin = bearer(&d.token);
    let app = d.app("ci");
    let other = d.app("other");
    create_app(&d, &app);
    create_app(&d, &other);
    // An admin-scoped token mints the deploy token: revoking it cascades.
    let ops = create_token(&d, "ops");
    let r = mint(
        &d,
        &bearer(&ops),
        serde_json::json!({ "name": "ci", "app": app }),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(json(&r)["created_by"], "ops");
    let ci = json(&r)["token"].as_str().unwrap().to_string();
    let ci_auth = bearer(&ci);
    let r = mint(
        &d,
        &admin,
        serde_json::json!({ "name": "x", "app": "nosuch" }),
    );
    assert_eq!(r.status, 404, "a deploy token for no app: {}", r.text());

    // It pushes its app, which goes live.
    let p = Project::from_fixture("blog");
    let remote = |app: &str| format!("http://paas:{ci}@127.0.0.1:{}/{app}.git", d.admin);
    let (ok, out) = p.push(&remote(&app));
    assert!(ok, "push with the deploy token rejected:\n{out}");
    d.assert_serves(&app, "Notes");
    // Not another app's repository, either way.
    let (ok, out) = p.push(&remote(&other));
    assert!(!ok && out.contains("403"), "push to another app: {out}");
    let out = std::process::Command::new("git")
        .args(["ls-remote", &remote(&other)])
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap();
    assert!(!out.status.success(), "fetch of another app's repository");

    // It reads its app.
    for path in [
        format!("/api/apps/{app}"),
        format!("/api/apps/{app}/releases"),
        format!("/api/apps/{app}/releases/1"),
        format!("/api/apps/{app}/ps"),
        format!("/api/apps/{app}/domains"),
    ] {
        let r = d.admin_request("GET", &path, &[("Authorization", &ci_auth)], None);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    }
    // And nothing else.
    let refused: Vec<(&str, String, Option<&str>)> = vec![
        ("GET", "/api/apps".into(), None),
        ("GET", format!("/api/apps/{other}"), None),
        ("GET", format!("/api/apps/{app}/config"), None),
        (
            "PATCH",
            format!("/api/apps/{app}/config"),
            Some(r#"{"A":"1"}"#),
        ),
        ("POST", format!("/api/apps/{app}/restart"), None),
        ("POST", format!("/api/apps/{app}/rollback"), Some("{}")),
        (
            "POST",
            format!("/api/apps/{app}/run"),
            Some(r#"{"command":["true"]}"#),
        ),
        ("GET", format!("/api/apps/{app}/run/tty"), None),
        ("GET", format!("/api/apps/{app}/backups"), None),
        ("DELETE", format!("/api/apps/{app}"), None),
        ("GET", "/api/tokens".into(), None),
        ("POST", "/api/tokens".into(), Some(r#"{"name":"more"}"#)),
        ("DELETE", "/api/tokens/ops".into(), None),
        ("GET", "/metrics".into(), None),
    ];
    for (method, path, body) in &refused {
        let r = d.admin_request(
            method,
            path,
            &[("Authorization", &ci_auth), JSON],
            body.map(str::as_bytes),
        );
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
        assert!(
            r.text().contains("may only deploy and read the app"),
            "{method} {path}: {}",
            r.text()
        );
    }
    assert!(!d.get(&app, "/").text().is_empty(), "the app still serves");

    // The token list shows its scope and maker.
    let r = d.admin_request("GET", "/api/tokens", &[("Authorization", &admin)], None);
    let list = json(&r);
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ci")
        .unwrap()
        .clone();
    assert_eq!(
        (row["app"].as_str(), row["created_by"].as_str()),
        (Some(app.as_str()), Some("ops"))
    );

    // Revoking its maker revokes it.
    let r = revoke(&d, "ops");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(json(&r)["revoked"], serde_json::json!(["ops", "ci"]));
    let r = d.admin_request(
        "GET",
        &format!("/api/apps/{app}"),
        &[("Authorization", &ci_auth)],
        None,
    );
    assert_eq!(
        r.status,
        401,
        "the minted token outlived its maker: {}",
        r.text()
    );

    // Destroying an app revokes its deploy tokens.
    let r = mint(
        &d,
        &admin,
        serde_json::json!({ "name": "ci2", "app": other }),
    );
    let ci2 = json(&r)["token"].as_str().unwrap().to_string();
    let confirm = serde_json::json!({ "confirm": other }).to_string();
    let r = d.admin_request(
        "DELETE",
        &format!("/api/apps/{other}"),
        &[("Authorization", &admin), JSON],
        Some(confirm.as_bytes()),
    );
    assert!(r.status < 300, "destroy: {} {}", r.status, r.text());
    let r = d.admin_request("GET", "/api/tokens", &[("Authorization", &admin)], None);
    assert!(!r.text().contains("\"ci2\""), "{}", r.text());
    let r = d.admin_request(
        "GET",
        &format!("/api/apps/{other}"),
        &[("Authorization", &bearer(&ci2))],
        None,
    );
    assert_eq!(r.status, 401, "{}", r.text());
}
