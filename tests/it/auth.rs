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

    // The list: name and dates, used now, never the secret nor its hash.
    let r = d.admin_request("GET", "/api/tokens", &[("Authorization", &admin)], None);
    assert_eq!(r.status, 200);
    let list = json(&r);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list:#}");
    assert_eq!(list[0]["name"], "laptop");
    assert!(list[0]["created_at"].as_i64().unwrap() > 0);
    assert!(list[0]["last_used_at"].as_i64().is_some(), "{list:#}");
    let keys: Vec<&String> = list[0].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
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

/// Every route in `paas::api::ROUTES` (which a unit test keeps complete):
/// no credentials, a wrong token, a revoked token → 401 or the login page;
/// the right one gets through; a state change on a session without its
/// CSRF token → 403; 20 bad logins from one address → 429.
#[test]
fn auth_matrix() {
    let d = Daemon::start();
    let admin = bearer(&d.token);
    let live = create_token(&d, "live");
    let gone = create_token(&d, "gone");
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
            let ok = match guard {
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

    // Logins: a wrong and a revoked token are refused; then 20 bad tries
    // from one address end in 429, and then even the right token waits.
    for secret in [wrong, gone.as_str()] {
        let r = d.admin_request(
            "POST",
            "/login",
            &[FORM],
            Some(format!("token={secret}").as_bytes()),
        );
        assert_eq!(r.status, 401, "login with {secret}: {}", r.text());
    }
    let statuses: Vec<u16> = (0..20)
        .map(|_| {
            d.admin_request("POST", "/login", &[FORM], Some(b"token=guess"))
                .status
        })
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429) && statuses[19] == 429,
        "{statuses:?}"
    );
    let first_429 = statuses.iter().position(|s| *s == 429).unwrap();
    assert!(
        statuses[first_429..].iter().all(|s| *s == 429),
        "{statuses:?}"
    );
    let r = d.admin_request(
        "POST",
        "/login",
        &[FORM],
        Some(format!("token={live}").as_bytes()),
    );
    assert_eq!(r.status, 429, "even the right token waits out the window");
    assert!(r.text().contains("wait 15 minutes"), "{}", r.text());
}
