//! Scheduled jobs (`[cron.NAME]` in paas.toml): checked at push time, run
//! on their schedule as one-off containers of the live release, at most one
//! run at a time, killed at their timeout, shown by `paas cron`; and they
//! follow the release on a rollback.

use crate::dashboard::login;
use crate::harness::{last_line, Daemon, Project};
use std::time::{Duration, Instant};

/// `paas ARGS --json` against the test's daemon; its parsed output.
fn paas_json(d: &Daemon, dir: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = paas_text(d, dir, &[args, &["--json"]].concat());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn paas_text(d: &Daemon, dir: &std::path::Path, args: &[&str]) -> String {
    let out = d
        .cli()
        .command(dir)
        .args(args)
        .env("PAAS_TOKEN", &d.token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "paas {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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

fn job<'a>(jobs: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    jobs.as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("no job {name}: {jobs:#}"))
}

const JOBS: &str = r#"
[cron.tick]
schedule = "*/2 * * * * *"
command = "echo tick in $PAAS_RELEASE; date +%s >> /data/ticks"

[cron.broken]
schedule = "*/3 * * * * *"
command = "echo about to fail; exit 3"

[cron.slow]
schedule = "* * * * * *"
command = "echo slow started; sleep 30"
timeout = 3
"#;

#[test]
fn cron_jobs_run_on_schedule_fail_loudly_skip_overlaps_and_follow_the_release() {
    let mut d = Daemon::start();
    let app = d.app("cron");
    let p = Project::from_fixture("uploads");
    let a = app.as_str();
    let here = p.dir.path();

    // A bad schedule fails the push before the build, with what to fix.
    p.write(
        "paas.toml",
        "[cron.digest]\nschedule = \"0 25 * * *\"\ncommand = \"python manage.py digest\"\n",
    );
    p.commit("a bad schedule");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(!ok, "push accepted:\n{out}");
    let last = last_line(&out);
    assert!(
        last.contains("paas.toml [cron.digest] schedule = \"0 25 * * *\" is not a cron schedule")
            && last.contains("push again"),
        "{last}"
    );

    p.write("paas.toml", JOBS);
    p.commit("jobs");
    // So does a TZ config var that is not a time zone, when there are jobs.
    paas_text(&d, here, &["config:set", "-a", a, "TZ=Mars/Olympus"]);
    let (ok, out) = p.push(&d.remote(&app));
    assert!(!ok, "push accepted:\n{out}");
    let last = last_line(&out);
    assert!(
        last.contains("config var TZ = \"Mars/Olympus\" is not a time zone")
            && last.contains("paas config:set TZ=Europe/Paris"),
        "{last}"
    );
    paas_text(&d, here, &["config:unset", "-a", a, "TZ"]);
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    let remote = d.remote(&app);
    p.git(&["remote", "add", "paas", &remote]);

    // On schedule: runs fall due at the seconds the schedule names, in a
    // container of the live release with the app's volume.
    let ticks = d.data.path().join(format!("apps/{app}/data/ticks"));
    eventually(40, "three runs of tick", || {
        let n = std::fs::read_to_string(&ticks)
            .unwrap_or_default()
            .lines()
            .count();
        (n >= 3).then_some(()).ok_or(format!("{n} runs"))
    });
    let mut jobs = serde_json::Value::Null;
    eventually(40, "broken failing and slow skipped and timed out", || {
        jobs = paas_json(&d, here, &["cron", "-a", a]);
        let b = job(&jobs, "broken");
        let s = job(&jobs, "slow");
        let outcomes: Vec<&str> = s["recent"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["outcome"].as_str())
            .collect();
        (b["failing"] == true && outcomes.contains(&"skipped") && outcomes.contains(&"timed_out"))
            .then_some(())
            .ok_or(format!("{jobs:#}"))
    });
    // One run at a time in the engine too: one-off containers, each removed
    // when its run ends (at the timeout for slow).
    for _ in 0..6 {
        let out = std::process::Command::new("docker")
            .args([
                "ps",
                "-a",
                "-q",
                "--filter",
                &format!("label=paas.app={app}"),
            ])
            .args(["--filter", "label=paas.cron=slow"])
            .output()
            .unwrap();
        let n = String::from_utf8_lossy(&out.stdout).lines().count();
        assert!(n <= 1, "{n} containers of slow at once");
        std::thread::sleep(Duration::from_millis(500));
    }
    let releases = paas_json(&d, here, &["releases", "-a", a]);
    let live = releases[0]["version"].as_i64().unwrap();
    assert_eq!(releases[0]["status"], "live", "{releases:#}");
    let tick = job(&jobs, "tick");
    assert_eq!(tick["schedule"], "*/2 * * * * *");
    assert_eq!(tick["time_zone"], "UTC");
    assert!(tick["next_run_at"].as_i64().unwrap() % 2 == 0, "{tick:#}");
    for r in tick["recent"].as_array().unwrap() {
        let due = r["due_at_ms"].as_i64().unwrap();
        assert_eq!(due % 2000, 0, "due on an even second: {r:#}");
        if r["outcome"] == "ok" {
            assert_eq!(r["release"], live, "{r:#}");
        }
    }
    assert!(
        tick["last"]["output"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("tick in v{live}"))
            || tick["last"]["outcome"] == "skipped",
        "{tick:#}"
    );
    let broken = job(&jobs, "broken");
    let failed = broken["recent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["outcome"] == "failed")
        .expect("a failed run");
    assert_eq!(failed["exit_code"], 3, "{broken:#}");
    assert!(failed["message"]
        .as_str()
        .unwrap()
        .contains("exited with code 3"));
    assert_eq!(
        failed["due_at_ms"].as_i64().unwrap() % 3000,
        0,
        "{failed:#}"
    );
    let slow = job(&jobs, "slow");
    let skipped = slow["recent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["outcome"] == "skipped")
        .unwrap();
    assert!(
        skipped["message"]
            .as_str()
            .unwrap()
            .contains("was still going"),
        "{skipped:#}"
    );
    let timed_out = slow["recent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["outcome"] == "timed_out")
        .unwrap();
    let ms = timed_out["duration_ms"].as_u64().unwrap();
    assert!((3000..15_000).contains(&ms), "killed at 3 s: {timed_out:#}");

    // Loud: the table, the dashboard and the daemon's log say it fails.
    let text = paas_text(&d, here, &["cron", "-a", a]);
    assert!(
        text.contains("FAILING: broken") && text.contains("about to fail"),
        "{text}"
    );
    let cookie = login(&d, &d.token);
    let page = d.admin_request("GET", &format!("/apps/{app}"), &[("Cookie", &cookie)], None);
    assert!(
        page.text()
            .contains("Job broken is failing: exited with code 3"),
        "{}",
        page.text()
    );
    assert!(d.log_text().contains("cron job failed"));

    // Jobs follow the release: a push that drops them stops them, a
    // rollback brings them back.
    p.write(
        "paas.toml",
        "[cron.tick]\nschedule = \"0 3 * * *\"\ncommand = \"true\"\n",
    );
    p.commit("one daily job");
    let (ok, out) = p.push(&remote);
    assert!(ok, "push rejected:\n{out}");
    let jobs = paas_json(&d, here, &["cron", "-a", a]);
    let names: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tick"], "{jobs:#}");
    assert_eq!(job(&jobs, "tick")["schedule"], "0 3 * * *");
    paas_text(&d, here, &["rollback", "-a", a]);
    let jobs = paas_json(&d, here, &["cron", "-a", a]);
    assert_eq!(jobs.as_array().unwrap().len(), 3, "{jobs:#}");
    assert_eq!(job(&jobs, "tick")["schedule"], "*/2 * * * * *");
}
