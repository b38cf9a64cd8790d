//! The Procfile: `web:` replaces gunicorn's default command, `release:` runs
//! after migrate, other names run as containers of the release and are
//! replaced with it.

use crate::harness::{last_line, Daemon, Project};
use std::process::Command;
use std::time::{Duration, Instant};

/// `docker ps` of the app's containers of one process: (name, release label, Cmd).
fn process_containers(app: &str, process: &str) -> Vec<(String, String, String)> {
    let out = Command::new("docker")
        .args(["ps", "-q", "--filter", &format!("label=paas.app={app}")])
        .args(["--filter", &format!("label=paas.process={process}")])
        .output()
        .unwrap();
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    ids.iter()
        .map(|id| {
            let out = Command::new("docker")
                .args([
                    "inspect",
                    "--format",
                    "{{.Name}}|{{index .Config.Labels \"paas.release\"}}|{{json .Config.Cmd}}",
                    id,
                ])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let mut parts = text.splitn(3, '|').map(str::to_string);
            (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            )
        })
        .collect()
}

/// Waits until `check` holds, at most `secs`; panics with `what` otherwise.
fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match check() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what} within {secs} s: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

#[test]
fn procfile_web_release_and_worker_run_and_are_replaced_with_the_release() {
    let mut d = Daemon::start();
    let app = d.app("procs");
    let p = Project::from_fixture("procfile-app");
    let heartbeat = d
        .data
        .path()
        .join("apps")
        .join(&app)
        .join("data/worker-heartbeat");

    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "first push rejected:\n{out}");
    assert!(
        out.contains("Procfile processes: release, web, worker"),
        "{out}"
    );
    let migrate = out.find("Running migrations").unwrap();
    let release = out
        .find("Running the Procfile's release command")
        .expect("release step shown");
    assert!(migrate < release, "release runs after migrate:\n{out}");
    // The release command wrote a row the site shows: it ran, after migrate, on the app's database.
    d.assert_serves(&app, "release command ran in v1");

    // web runs the Procfile's command, not the default one.
    let web = process_containers(&app, "web");
    assert_eq!(web.len(), 1, "{web:?}");
    assert!(
        web[0].2.contains("--workers 2"),
        "web's command: {}",
        web[0].2
    );
    // The worker is a container of v1 and writes to the app's volume.
    let workers = process_containers(&app, "worker");
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert_eq!(workers[0].1, "1");
    eventually(20, "the v1 worker writes its heartbeat", || {
        let text = std::fs::read_to_string(&heartbeat).map_err(|e| e.to_string())?;
        text.starts_with("v1 ").then_some(()).ok_or(text)
    });

    // A second push replaces the worker with v2's; v1's stops once v2 is live.
    p.replace("Notes v1", "Notes v2");
    p.commit("v2");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "second push rejected:\n{out}");
    d.assert_serves(&app, "Notes v2");
    d.assert_serves(&app, "release command ran in v2");
    eventually(30, "only v2's worker runs", || {
        let w = process_containers(&app, "worker");
        (w.len() == 1 && w[0].1 == "2")
            .then_some(())
            .ok_or(format!("{w:?}"))
    });
    eventually(20, "the v2 worker writes its heartbeat", || {
        let text = std::fs::read_to_string(&heartbeat).map_err(|e| e.to_string())?;
        text.starts_with("v2 ").then_some(()).ok_or(text)
    });

    // A failing release command rejects the push with its output and one
    // sentence; v2 keeps serving, its worker keeps running.
    std::fs::write(
        p.dir.path().join("Procfile"),
        "web: gunicorn mysite.wsgi --bind 0.0.0.0:$PORT\nrelease: echo release-output-shown && exit 4\nworker: python worker.py\n",
    )
    .unwrap();
    p.commit("failing release command");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(
        !ok,
        "a failing release command must reject the push:\n{out}"
    );
    assert!(out.contains("release-output-shown"), "{out}");
    let last = last_line(&out);
    assert!(
        last.contains("the Procfile's release command failed (exit code 4)"),
        "last line: {last}\n{out}"
    );
    d.assert_serves(&app, "Notes v2");
    let w = process_containers(&app, "worker");
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].1, "2", "{w:?}");

    // A broken Procfile says which line and how to fix it.
    std::fs::write(p.dir.path().join("Procfile"), "web gunicorn mysite.wsgi\n").unwrap();
    p.commit("broken Procfile");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(!ok, "{out}");
    assert!(
        last_line(&out).contains("Procfile line 1 is not `name: command`"),
        "{out}"
    );
    d.assert_serves(&app, "Notes v2");

    // A restart (no build) brings the live release's processes back from
    // what the release stored: v5 runs v2's image, web command and worker.
    let auth = format!("Bearer {}", d.token);
    let r = d.admin_request(
        "POST",
        &format!("/api/apps/{app}/restart"),
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    d.assert_serves(&app, "Notes v2");
    let web = process_containers(&app, "web");
    assert!(
        web.iter()
            .any(|w| w.1 == "5" && w.2.contains("--workers 2")),
        "{web:?}"
    );
    eventually(30, "only the restarted release's worker runs", || {
        let w = process_containers(&app, "worker");
        (w.len() == 1 && w[0].1 == "5")
            .then_some(())
            .ok_or(format!("{w:?}"))
    });
    eventually(20, "the restarted worker writes its heartbeat", || {
        let text = std::fs::read_to_string(&heartbeat).map_err(|e| e.to_string())?;
        text.starts_with("v5 ").then_some(()).ok_or(text)
    });
}
