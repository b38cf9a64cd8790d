//! Integration tests: a real `git push` to a real `paas serve`, images built
//! by the real Docker engine, and HTTP through paas's own proxy.
//!
//! Prepare the machine once with `bash tests/setup.sh` (as root).

mod asgi;
mod attacks;
mod auth;
mod browser;
mod buildpack;
mod builds;
mod cli;
mod containers;
mod cron;
mod dashboard;
mod data;
mod disk;
mod edge;
mod harness;
mod network;
mod offsite;
mod procfile;
mod real_projects;
mod run;
mod symlinks;
mod zero_downtime;

use harness::{engine_objects, last_line, Daemon, Project};

/// The backbone: push an unmodified tutorial project, see it live with its
/// static files, push a template change, see the new page and the old rows.
#[test]
fn push_deploys_then_redeploys_keeping_data() {
    let mut d = Daemon::start();
    let app = d.app("blog");
    let p = Project::from_fixture("blog");

    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "first push rejected:\n{out}");
    // The steps, in order, in the pusher's terminal.
    let build = out.find("Building image").expect("build step shown");
    let migrate = out.find("Running migrations").expect("migrate step shown");
    let live = out.find("is live at").expect("live line shown");
    assert!(build < migrate && migrate < live, "{out}");
    assert!(out.contains("remote:"), "progress comes as remote: lines");

    d.assert_serves(&app, "Notes v1");
    let css = d.get(&app, "/static/notes/style.css");
    assert_eq!(css.status, 200, "CSS: {}", css.text());
    assert!(
        css.header("content-type")
            .unwrap_or("")
            .starts_with("text/css"),
        "{:?}",
        css.headers
    );
    // Static files come from disk, not from Django: gunicorn would say so.
    assert!(css.header("server").is_none_or(|s| !s.contains("gunicorn")));

    // A row written between the two deploys survives the second.
    let r = d.post_form(&app, "/add/", "text=kept+across+deploys");
    assert!(r.status < 400, "POST /add/: {} {}", r.status, r.text());
    d.assert_serves(&app, "kept across deploys");

    p.replace("Notes v1", "Notes v2");
    p.commit("template change");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "second push rejected:\n{out}");
    assert!(out.contains("v2 is live"), "{out}");
    d.assert_serves(&app, "Notes v2");
    d.assert_serves(&app, "kept across deploys");

    // The API tells the same story.
    let auth = format!("Bearer {}", d.token);
    let r = d.admin_request(
        "GET",
        &format!("/api/apps/{app}/releases"),
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let rels: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let statuses: Vec<&str> = rels
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["live", "retired"], "{rels:#}");
    assert!(rels[0]["timings"].as_array().unwrap().len() >= 3);

    // Metrics count what the proxy served for the app.
    let r = d.admin_request("GET", "/metrics", &[("Authorization", &auth)], None);
    assert_eq!(r.status, 200);
    let line = format!("paas_http_requests_total{{app=\"{app}\",status=\"2xx\"}} ");
    let served: u64 = r
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(&line).map(|n| n.parse().unwrap()))
        .expect("a 2xx counter for the app");
    assert!(served >= 4, "{}", r.text());
    assert!(r
        .text()
        .contains(&format!("paas_live_release{{app=\"{app}\"}} 2")));

    // The dashboard: a wrong token is refused, the right one gives a
    // session that shows the app, its releases and a release's log.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = d.admin_request("POST", "/login", &form, Some(b"token=wrong"));
    assert_eq!(r.status, 401, "{}", r.text());
    let body = format!("token={}", d.token);
    let r = d.admin_request("POST", "/login", &form, Some(body.as_bytes()));
    assert_eq!(r.status, 303, "{}", r.text());
    let cookie = r
        .header("set-cookie")
        .expect("a session cookie")
        .to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let cookie = cookie.split(';').next().unwrap().to_string();
    let with_cookie = [("Cookie", cookie.as_str())];
    let page = d.admin_request("GET", "/", &with_cookie, None);
    assert_eq!(page.status, 200);
    assert!(page.text().contains(&app), "{}", page.text());
    let page = d.admin_request("GET", &format!("/apps/{app}"), &with_cookie, None);
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.contains("v2") && html.contains("status-live") && html.contains("status-retired"));
    let page = d.admin_request(
        "GET",
        &format!("/apps/{app}/releases/2"),
        &with_cookie,
        None,
    );
    assert_eq!(page.status, 200);
    assert!(page.text().contains("Building image"), "{}", page.text());
    assert!(
        !page.text().contains(&d.token),
        "the token never reaches a page"
    );

    // Only the live release runs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (containers, _) = engine_objects(&app);
        let running: Vec<_> = containers.iter().filter(|c| c.contains(" Up ")).collect();
        if running.len() == 1 && running[0].contains("-v2-web") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "old release still running: {containers:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    // A custom domain: routed and allowed by Django after a rollout, gone
    // after removal; names paas cannot serve are refused with the reason.
    let json = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let domains = format!("/api/apps/{app}/domains");
    let r = d.admin_request(
        "POST",
        &domains,
        &json,
        Some(br#"{"domain": "www.notes.test"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(
        r.text().contains("is live and answers to it"),
        "{}",
        r.text()
    );
    let page = harness::http(d.http, "GET", "www.notes.test", "/", &[], None);
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.text().contains("kept across deploys"));
    d.assert_serves(&app, "Notes v2");
    for (bad, why) in [
        ("other.localhost", "paas's own domain"),
        ("not_a_host", "not a domain name"),
    ] {
        let body = format!(r#"{{"domain": "{bad}"}}"#);
        let r = d.admin_request("POST", &domains, &json, Some(body.as_bytes()));
        assert_eq!(r.status, 422, "{}", r.text());
        assert!(r.text().contains(why), "{}", r.text());
    }
    let r = d.admin_request("GET", &domains, &json, None);
    assert!(r.text().contains("www.notes.test"), "{}", r.text());
    let r = d.admin_request("DELETE", &format!("{domains}/www.notes.test"), &json, None);
    assert_eq!(r.status, 200, "{}", r.text());
    let page = harness::http(d.http, "GET", "www.notes.test", "/", &[], None);
    assert_eq!(page.status, 404, "{}", page.text());
    let r = d.admin_request("DELETE", &format!("{domains}/www.notes.test"), &json, None);
    assert_eq!(r.status, 404, "{}", r.text());
}

/// manage.py in a subfolder deploys like any other project.
#[test]
fn project_in_a_subfolder_deploys() {
    let mut d = Daemon::start();
    let app = d.app("sub");
    let p = Project::from_fixture("subdir");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    d.assert_serves(&app, "Subdir works");
}

/// Every way a push can fail: rejected with a clear last line, the live
/// release untouched, nothing left behind in the engine.
#[test]
fn failed_pushes_are_rejected_and_leave_the_live_release() {
    let mut d = Daemon::start();
    let app = d.app("fail");
    let good = Project::from_fixture("blog");
    let (ok, out) = good.push(&d.remote(&app));
    assert!(ok, "first push rejected:\n{out}");
    d.assert_serves(&app, "Notes v1");
    let (_, images_before) = engine_objects(&app);

    let cases = [
        ("not-django", "No Django project found"),
        ("bad-requirement", "image build failed"),
        ("broken-migration", "migrate failed"),
    ];
    for (fixture, expected) in cases {
        let p = Project::from_fixture(fixture);
        let (ok, out) = p.push_ref(&d.remote(&app), "+main:main");
        assert!(!ok, "{fixture}: push accepted:\n{out}");
        let last = last_line(&out);
        assert!(
            last.contains("Deploy failed:") && last.contains(expected),
            "{fixture}: last line {last:?} should say {expected:?}; output:\n{out}"
        );
        d.assert_serves(&app, "Notes v1");
        let (containers, images) = engine_objects(&app);
        let up: Vec<_> = containers.iter().filter(|c| c.contains(" Up ")).collect();
        assert_eq!(up.len(), 1, "{fixture}: containers {containers:?}");
        assert_eq!(images, images_before, "{fixture}: images left behind");
    }
    if let Ok(d) = d.data.path().join("tmp").read_dir() {
        assert_eq!(d.count(), 0, "build dirs left behind");
    }
}

/// Wrong token → 401 (git says authentication failed); a bad app name is
/// refused with the rule; other branches are stored, not deployed.
#[test]
fn git_auth_and_names() {
    let d = Daemon::start();
    let p = Project::from_fixture("not-django");

    let bad = format!("http://paas:wrong@127.0.0.1:{}/blog.git", d.admin);
    let (ok, out) = p.push(&bad);
    assert!(!ok);
    assert!(
        out.contains("Authentication failed") || out.contains("401"),
        "{out}"
    );

    let r = d.admin_request(
        "GET",
        "/blog.git/info/refs?service=git-receive-pack",
        &[],
        None,
    );
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .unwrap_or("")
        .starts_with("Basic"));
    for path in [
        "/api/apps",
        "/",
        "/apps/blog",
        "/metrics",
        "/apps/blog/releases/1",
    ] {
        let r = d.admin_request("GET", path, &[], None);
        assert!(
            r.status == 401 || (r.status == 303 && r.header("location") == Some("/login")),
            "{path} without credentials: {}",
            r.status
        );
    }

    // Dashboard: logging out is a state change and needs the CSRF token of
    // the session; repeated bad logins from one address are refused.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let body = format!("token={}", d.token);
    let r = d.admin_request("POST", "/login", &form, Some(body.as_bytes()));
    assert_eq!(r.status, 303);
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = d.admin_request("GET", "/", &[("Cookie", cookie.as_str())], None);
    let html = page.text();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the page carries a CSRF token")
        .to_string();
    let with = [
        ("Cookie", cookie.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let r = d.admin_request("POST", "/logout", &with, Some(b"csrf=forged"));
    assert_eq!(r.status, 403, "logout without the CSRF token");
    let r = d.admin_request(
        "POST",
        "/logout",
        &with,
        Some(format!("csrf={csrf}").as_bytes()),
    );
    assert_eq!(r.status, 303);
    let r = d.admin_request("GET", "/", &[("Cookie", cookie.as_str())], None);
    assert_eq!(r.status, 303, "the session ended");

    let (ok, out) = p.push(&d.remote("Bad_Name"));
    assert!(!ok);
    assert!(out.contains("lower-case letter"), "{out}");

    // A branch other than main/master is stored, not deployed.
    let name = "branchy";
    let (ok, out) = p.push_ref(&d.remote(name), "main:feature");
    assert!(ok, "{out}");
    assert!(out.contains("stored, not deployed"), "{out}");

    // Last, as it locks this address out of git too: bad logins.
    let statuses: Vec<u16> = (0..20)
        .map(|_| {
            d.admin_request("POST", "/login", &form, Some(b"token=guess"))
                .status
        })
        .collect();
    // The wrong git password above counted too: nine more tries, then 429.
    assert!(statuses[..9].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[9..].iter().all(|s| *s == 429), "{statuses:?}");
    let r = d.admin_request("POST", "/login", &form, Some(body.as_bytes()));
    assert_eq!(r.status, 429, "even the right token waits out the window");
    let (ok, out) = p.push(&d.remote(name));
    assert!(
        !ok && out.contains("429"),
        "git waits out the window too: {out}"
    );
}
