//! How app containers are confined: no capability, no new privileges, a
//! pids, CPU and memory limit, rotated logs — read back from the engine and
//! from inside the processes — and a real fork bomb in one app while another
//! app and the daemon keep answering.

use crate::harness::{CliEnv, Daemon, Project};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `paas ARGS` in the app's checkout; (exit code, stdout + stderr).
fn paas(cli: &CliEnv, dir: &Path, args: &[&str]) -> (i32, String) {
    let out = cli
        .command(dir)
        .args(args)
        .output()
        .expect("the paas binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Names of the app's containers running `process` (web, worker, run, …).
fn containers(app: &str, process: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}"])
        .args(["--filter", &format!("label=paas.app={app}")])
        .args(["--filter", &format!("label=paas.process={process}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn inspect(container: &str) -> serde_json::Value {
    let out = Command::new("docker")
        .args(["inspect", container])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker inspect {container}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0].clone()
}

/// Processes in a container right now, as the engine counts them.
fn pids(container: &str) -> Option<u64> {
    let out = Command::new("docker")
        .args(["stats", "--no-stream", "--format", "{{.PIDs}}", container])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Checks one container's confinement as the engine reports it.
fn assert_confined(container: &str) {
    let c = inspect(container);
    let h = &c["HostConfig"];
    assert_eq!(
        h["CapDrop"],
        serde_json::json!(["ALL"]),
        "{container}: {h:#}"
    );
    assert!(
        h["CapAdd"].is_null() || h["CapAdd"] == serde_json::json!([]),
        "{container}: nothing is added back: {h:#}"
    );
    let opts = h["SecurityOpt"].as_array().cloned().unwrap_or_default();
    assert!(
        opts.iter().any(|o| o
            .as_str()
            .is_some_and(|o| o.starts_with("no-new-privileges"))),
        "{container}: {h:#}"
    );
    assert_eq!(h["PidsLimit"], 256, "{container}: {h:#}");
    assert_eq!(h["NanoCpus"], 1_000_000_000i64, "{container}: {h:#}");
    assert_eq!(h["Memory"], 512i64 << 20, "{container}: {h:#}");
    assert_eq!(h["LogConfig"]["Type"], "json-file", "{container}: {h:#}");
    assert_eq!(h["LogConfig"]["Config"]["max-size"], "10m", "{h:#}");
    assert_eq!(h["LogConfig"]["Config"]["max-file"], "3", "{h:#}");
    assert_eq!(c["Config"]["User"], "10001:10001", "{container}");
}

/// After a push, every container of the app (gunicorn from the Procfile,
/// a worker, the release command that had to run for the push to pass, a
/// `paas run`) holds no capability, cannot gain privileges and is capped.
#[test]
fn app_containers_drop_capabilities_and_are_capped() {
    let mut d = Daemon::start();
    let app = d.app("caps");
    let p = Project::from_fixture("procfile-app");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(
        ok,
        "push rejected (release command or web under the limits):\n{out}"
    );
    assert!(
        out.contains("Running the Procfile's release command"),
        "{out}"
    );
    d.assert_serves(&app, "Notes v1");

    for process in ["web", "worker"] {
        let names = containers(&app, process);
        assert_eq!(names.len(), 1, "{process}: {names:?}");
        assert_confined(&names[0]);
    }
    // gunicorn itself (PID 1 of web), as the kernel sees it.
    let web = &containers(&app, "web")[0];
    let out = Command::new("docker")
        .args([
            "exec",
            web,
            "grep",
            "-E",
            "^(Uid|CapEff|CapBnd|NoNewPrivs)",
            "/proc/1/status",
        ])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout).to_string();
    for want in [
        "CapEff:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Uid:\t10001",
    ] {
        assert!(status.contains(want), "gunicorn lacks {want:?}:\n{status}");
    }

    // A one-off: the same limits, seen from inside.
    let remote = d.remote(&app);
    assert!(p.git(&["remote", "add", "paas", &remote]).status.success());
    let (code, text) = paas(
        &d.cli(),
        p.dir.path(),
        &[
            "run",
            "--no-tty",
            "--",
            "sh",
            "-c",
            "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; \
             echo pids $(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)",
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("CapEff:\t0000000000000000"), "{text}");
    assert!(text.contains("NoNewPrivs:\t1"), "{text}");
    assert!(text.contains("pids 256"), "{text}");
}

/// Kills the bomb's client and removes the bomb's containers, also when
/// the test fails half-way.
struct Bomb {
    client: Option<Child>,
    app: String,
}

impl Drop for Bomb {
    fn drop(&mut self) {
        if let Some(mut c) = self.client.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let left = containers(&self.app, "run");
        if !left.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&left)
                .output();
        }
    }
}

/// A fork bomb in one app fills its container to the pids limit and holds
/// it there: every child sleeps and the parent keeps forking through the
/// failures, so the count stays pinned at the limit. (A shell bomb does not:
/// `f|f&` collapsed to 5 processes mid-check in CI, and dash exits at its
/// first failed fork.) `timeout` ends the parent after 40 s and the
/// container's end kills the sleepers. Meanwhile another app answers through the proxy and the
/// daemon's API answers; the bomb's container is gone afterwards.
#[test]
fn a_fork_bomb_in_one_app_leaves_another_answering() {
    let mut d = Daemon::start();
    let bomb_app = d.app("bomb");
    let calm_app = d.app("calm");
    let bomber = Project::from_fixture("blog");
    let calm = Project::from_fixture("blog");
    calm.replace("Notes v1", "Calm v1");
    calm.commit("a page of its own");
    for (p, app) in [(&bomber, &bomb_app), (&calm, &calm_app)] {
        let (ok, out) = p.push(&d.remote(app));
        assert!(ok, "push of {app} rejected:\n{out}");
    }
    d.assert_serves(&calm_app, "Calm v1");
    let remote = d.remote(&bomb_app);
    assert!(bomber
        .git(&["remote", "add", "paas", &remote])
        .status
        .success());
    let here = bomber.dir.path();
    let cli = d.cli();

    // Never set a bomb off on a host whose limit is not in place: this
    // machine is shared.
    let (code, text) = paas(
        &cli,
        here,
        &[
            "run",
            "--no-tty",
            "--",
            "sh",
            "-c",
            "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
        ],
    );
    assert_eq!((code, text.trim()), (0, "256"), "{text}");

    let client = cli
        .command(here)
        .args([
            "run",
            "--no-tty",
            "--",
            "sh",
            "-c",
            "timeout 40 python -c 'import os, time\nwhile True:\n    try:\n        os.fork() or (time.sleep(60), os._exit(0))\n    except OSError:\n        time.sleep(0.01)' 2>/dev/null; echo bomb-over",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut bomb = Bomb {
        client: Some(client),
        app: bomb_app.clone(),
    };

    // Wait until the bomb has filled its container.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (container, peak) = loop {
        let names = containers(&bomb_app, "run");
        let fullest = names
            .iter()
            .filter_map(|n| pids(n).map(|p| (n.clone(), p)))
            .max_by_key(|(_, p)| *p);
        if let Some(found) = fullest.clone().filter(|(_, p)| *p >= 200) {
            break found;
        }
        if let Some(status) = bomb.client.as_mut().unwrap().try_wait().unwrap() {
            let out = bomb.client.take().unwrap().wait_with_output().unwrap();
            panic!(
                "the bomb's `paas run` ended early ({status}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            Instant::now() < deadline,
            "the bomb never reached 200 processes; its containers {names:?}, the fullest {fullest:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("fork bomb at {peak} processes (limit 256)");
    assert!(peak <= 256, "{peak} processes: the limit did not hold");

    // While it runs: the other app and the daemon's API answer.
    let auth = format!("Bearer {}", d.token);
    let mut slowest = Duration::ZERO;
    for _ in 0..4 {
        let t = Instant::now();
        d.assert_serves(&calm_app, "Calm v1");
        let r = d.admin_request("GET", "/api/apps", &[("Authorization", &auth)], None);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains(&calm_app), "{}", r.text());
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("slowest app + API round during the bomb: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(30),
        "the other app or the API took {slowest:?}"
    );
    // The sleepers hold the container at its limit while the checks ran.
    let still = pids(&container).unwrap_or(0);
    assert!(
        still >= 50,
        "the bomb ended before the checks did ({still} processes): the checks proved nothing"
    );

    // The bomb ends with its timeout, and so does its container.
    let out = bomb.client.take().unwrap().wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bomb-over"), "{text}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !containers(&bomb_app, "run").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the bomb's container is still there"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(bomb);
    // The bombed app itself is back to normal.
    d.assert_serves(&bomb_app, "Notes v1");
}

/// A build container, made with `paas::deploy::build_container_limits` as
/// every build container is, runs under the owner's build memory (no swap
/// on top) and CPU limits, with a lower CPU weight than the live apps'
/// default 1024, and with compiler parallelism that follows the limits —
/// as the engine reports it and as the kernel applies it.
#[test]
fn a_build_container_runs_with_its_limits_and_below_the_apps_cpu_weight() {
    let data = tempfile::tempdir().unwrap();
    let config = paas::config::Config::resolve(paas::config::Overrides {
        data_dir: Some(data.path().to_path_buf()),
        build_memory_mb: Some(512),
        build_cpus: Some(0.5),
        ..Default::default()
    })
    .unwrap();
    let mut spec = paas::deploy::build_container_limits(&config);
    let name = format!(
        "paas-it-build-limits-{}",
        data.path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_lowercase()
    );
    spec.name = Some(name.clone());
    spec.image = "python:3.11-slim".into();
    spec.cmd = Some(vec!["sleep".into(), "60".into()]);
    spec.labels = vec![("paas.test".into(), name.clone())];
    let rt = tokio::runtime::Runtime::new().unwrap();
    let docker = paas::docker::Docker::connect().unwrap();
    let id = rt.block_on(docker.start_container(&spec)).unwrap();
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
        }
    }
    let _remove = Remove(id.clone());

    let c = inspect(&id);
    let h = &c["HostConfig"];
    assert_eq!(h["Memory"], 512i64 << 20, "{h:#}");
    assert_eq!(h["MemorySwap"], 512i64 << 20, "no swap on top: {h:#}");
    assert_eq!(h["NanoCpus"], 500_000_000i64, "{h:#}");
    let shares = h["CpuShares"].as_i64().unwrap();
    assert!(shares > 0 && shares < 1024, "below the apps' 1024: {h:#}");
    assert!(h["PidsLimit"].as_i64().unwrap() > 0, "{h:#}");
    assert_eq!(h["LogConfig"]["Config"]["max-size"], "10m", "{h:#}");
    let env: Vec<String> = c["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    for want in ["MAX_JOBS=1", "MAKEFLAGS=-j1", "UV_CONCURRENT_BUILDS=1"] {
        assert!(env.iter().any(|e| e == want), "{want} in {env:?}");
    }
    // The kernel's view: the CPU weight (cgroup v2) or shares (v1).
    let out = Command::new("docker")
        .args([
            "exec",
            &id,
            "sh",
            "-c",
            "cat /sys/fs/cgroup/cpu.weight 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.shares",
        ])
        .output()
        .unwrap();
    let weight: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // cgroup v2 maps 1024 shares to weight 39 (and 512 to 20); v1 keeps shares.
    assert!(
        weight == shares || (1..39).contains(&weight),
        "the kernel's weight {weight} for {shares} shares"
    );
}
