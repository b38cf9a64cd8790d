//! The dashboard over plain HTTP (no browser): what a page shows and what it
//! keeps back, and the action forms' CSRF check and result message. One
//! daemon, a push that fails at detection (no image build): fast.

use crate::harness::{Daemon, HttpResponse, Project};

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// Log in with `secret`: the session cookie (`paas_session=…`).
pub fn login(d: &Daemon, secret: &str) -> String {
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

/// The CSRF token in a page of the session.
pub fn csrf_in(page: &HttpResponse) -> String {
    page.text()
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the page carries a CSRF token")
        .to_string()
}

fn cookie_of(r: &HttpResponse, name: &str) -> Option<String> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.split(';').next().unwrap_or("").to_string())
        .find(|c| c.starts_with(&format!("{name}=")))
}

/// Config var names are listed, their values are not in the page until the
/// owner reveals one (the API answers the session); domains are listed; a
/// form without its CSRF token is refused, one with it ends on the app page
/// with its result shown once.
#[test]
fn app_page_masks_config_and_actions_report_back() {
    let mut d = Daemon::start();
    let app = d.app("dash");
    let p = Project::from_fixture("not-django");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(!ok, "a project without Django must be rejected:\n{out}");

    let secret_value = "hunter2-do-not-show";
    let auth = format!("Bearer {}", d.token);
    let body = format!("{{\"SECRET_THING\": \"{secret_value}\"}}");
    let r = d.admin_request(
        "PATCH",
        &format!("/api/apps/{app}/config"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 200, "config:set: {}", r.text());

    let session = login(&d, &d.token);
    let page = d.admin_request(
        "GET",
        &format!("/apps/{app}"),
        &[("Cookie", &session)],
        None,
    );
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    assert!(html.contains("SECRET_THING"), "the var's name is listed");
    assert!(
        !html.contains(secret_value),
        "a config value is in the page before anyone revealed it"
    );
    assert!(html.contains(&format!("{app}.localhost")), "domains listed");
    assert!(html.contains("status-failed"), "the failed push is listed");
    // What the reveal button fetches: the session is enough to read.
    let r = d.admin_request(
        "GET",
        &format!("/api/apps/{app}/config"),
        &[("Cookie", &session)],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains(secret_value));

    // The live views: a finished release's log stream sends the log, the
    // status and its end, then closes (the page's EventSource stops there).
    let r = d.admin_request(
        "GET",
        &format!("/apps/{app}/releases/1/log?from=0"),
        &[("Cookie", &session)],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let events = r.text();
    let log = events.find("event: log").expect("a log event");
    let status = events.find("event: status").expect("a status event");
    let end = events.find("event: end").expect("an end event");
    assert!(log < status && status < end, "{events}");
    assert!(events.contains("No Django project found"), "{events}");
    // The release page: a failed deploy's reason comes first, before the log.
    let r = d.admin_request(
        "GET",
        &format!("/apps/{app}/releases/1"),
        &[("Cookie", &session)],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let html = r.text();
    let reason = html
        .find("class=\"error\">No Django project found")
        .expect("the reason is shown");
    assert!(
        reason < html.find("<h2>Log").unwrap(),
        "reason before the log"
    );
    assert!(
        !html.contains("new EventSource"),
        "a finished deploy is not streamed"
    );
    let r = d.admin_request("GET", "/status", &[("Cookie", &session)], None);
    assert_eq!(r.status, 200, "{}", r.text());
    let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let me = j["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == app.as_str())
        .expect("the app in /status")
        .clone();
    assert_eq!(me["last_status"], "failed", "{me}");
    assert_eq!(me["live"], serde_json::Value::Null, "{me}");
    let r = d.admin_request(
        "GET",
        &format!("/apps/{app}/logs"),
        &[("Cookie", &session)],
        None,
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("no live release"), "{}", r.text());

    let csrf = csrf_in(&page);
    let with = [("Cookie", session.as_str()), FORM];
    for path in ["backups", "restart", "rollback"] {
        let r = d.admin_request(
            "POST",
            &format!("/apps/{app}/{path}"),
            &with,
            Some(b"version=1"),
        );
        assert_eq!(r.status, 403, "{path} without CSRF: {}", r.text());
        assert!(r.text().contains("CSRF"), "{}", r.text());
    }

    // v1 failed at detection: never live, so no rollback button, and a
    // rollback sent by hand says why it cannot be.
    assert!(
        !html.contains("rollback-v1"),
        "no button for a failed release"
    );
    let r = d.admin_request(
        "POST",
        &format!("/apps/{app}/rollback"),
        &with,
        Some(format!("csrf={csrf}&version=1").as_bytes()),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some(format!("/apps/{app}").as_str()));
    let flash = cookie_of(&r, "paas_flash").expect("a result message");
    let cookies = format!("{session}; {flash}");
    let page = d.admin_request(
        "GET",
        &format!("/apps/{app}"),
        &[("Cookie", &cookies)],
        None,
    );
    let html = page.text();
    let shown = html
        .split("id=\"flash\" class=\"error\">")
        .nth(1)
        .and_then(|s| s.split("</p>").next())
        .unwrap_or_else(|| panic!("the failed rollback is shown as an error: {html}"));
    assert!(
        shown.contains("no live release") && shown.ends_with('.') && !shown.contains("not touched"),
        "one sentence on why: {shown}"
    );
    assert_eq!(
        cookie_of(&page, "paas_flash").as_deref(),
        Some("paas_flash="),
        "the message is cleared after one view"
    );

    // Back up now: an app without a database yet still gets an answer.
    let r = d.admin_request(
        "POST",
        &format!("/apps/{app}/backups"),
        &with,
        Some(format!("csrf={csrf}").as_bytes()),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert!(
        cookie_of(&r, "paas_flash").is_some(),
        "backup result message"
    );
}
