//! Builds made of two parts: a dependency image named by what went into it
//! (`paas-deps:<key>`), shared by every release and app with the same
//! requirements, and one layer paas makes of the code. What a user sees:
//! a code push installs nothing, another app with the same requirements
//! installs nothing, a changed requirement installs once; rollbacks run the
//! layered images; the build step runs inside the build's limits.

use crate::harness::{Daemon, Project};
use std::process::Command;
use std::time::{Duration, Instant};

fn inspect(object: &str, format: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "-f", format, object])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The layer digests of an image, bottom first.
fn layers(image: &str) -> Vec<String> {
    inspect(image, "{{json .RootFS.Layers}}")
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|s| s.trim_matches('"').to_string())
        .collect()
}

fn deps_tag(out: &str) -> String {
    let at = out.find("paas-deps:").expect("a dependency image named");
    out[at..]
        .split(|c: char| c.is_whitespace() || c == ')')
        .next()
        .unwrap()
        .to_string()
}

/// Watches, while a push runs, for the app's build-step container and
/// reads its limits from the engine: `Memory NanoCpus CpuShares PidsLimit`.
fn watch_build_limits(app: &str) -> std::thread::JoinHandle<Option<String>> {
    let app = app.to_string();
    std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(180) {
            let out = Command::new("docker")
                .args([
                    "ps",
                    "-q",
                    "--filter",
                    &format!("label=paas.app={app}"),
                    "--filter",
                    "label=paas.process=build",
                ])
                .output()
                .unwrap();
            let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if let Some(id) = id.lines().next().filter(|l| !l.is_empty()) {
                let seen = inspect(
                    id,
                    "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}} {{.HostConfig.PidsLimit}}",
                );
                if !seen.is_empty() {
                    return Some(seen);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    })
}

/// Builds `tag` the way paas built every release before dependency images
/// (one Dockerfile: plan steps, the helpers, `COPY . /app`), on `deps` so
/// nothing is installed, from the project's tree with a marker of its own.
fn old_way_image(p: &Project, deps: &str, tag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("ctx");
    let out = p.git(&[
        "archive",
        "--format=tar",
        "-o",
        dir.path().join("t.tar").to_str().unwrap(),
        "HEAD",
    ]);
    assert!(out.status.success());
    std::fs::create_dir_all(tree.join(".paas")).unwrap();
    let untar = Command::new("tar")
        .args([
            "-xf",
            dir.path().join("t.tar").to_str().unwrap(),
            "-C",
            tree.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(untar.success());
    let index = tree.join("notes/templates/notes/index.html");
    let page = std::fs::read_to_string(&index).unwrap();
    std::fs::write(&index, page.replace("Notes v3", "Notes built the old way")).unwrap();
    let buildpack = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("buildpacks/django");
    for f in [
        "paas_settings.py",
        "paas_inspect.py",
        "entrypoint.sh",
        "collectstatic.sh",
    ] {
        std::fs::copy(buildpack.join(f), tree.join(".paas").join(f)).unwrap();
    }
    let dockerfile = format!(
        "FROM {deps}\n\
         ENV PYTHONPATH=/paas:/app DJANGO_SETTINGS_MODULE=paas_settings PAAS_PROJECT_SETTINGS=mysite.settings PORT=8000\n\
         EXPOSE 8000\n\
         ENTRYPOINT [\"/bin/sh\", \"/paas/entrypoint.sh\"]\n\
         CMD [\"gunicorn\", \"mysite.wsgi:application\", \"--access-logfile\", \"-\", \"--error-logfile\", \"-\"]\n\
         COPY .paas/paas_settings.py .paas/paas_inspect.py .paas/entrypoint.sh .paas/collectstatic.sh /paas/\n\
         WORKDIR /app\n\
         COPY --chown=10001:10001 . /app\n"
    );
    std::fs::write(tree.join(".paas/Dockerfile"), dockerfile).unwrap();
    let built = Command::new("docker")
        .args(["build", "-q", "-f", ".paas/Dockerfile", "-t", tag, "."])
        .current_dir(&tree)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
}

#[test]
fn code_pushes_and_other_apps_reuse_one_dependency_image_and_a_requirement_change_builds_one() {
    let mut d = Daemon::start();
    let a = d.app("deps-a");
    let b = d.app("deps-b");
    let p = Project::from_fixture("blog");
    // The build step (paas_inspect.py build) lingers, so the test sees its
    // container; the app itself starts as fast as ever.
    p.append(
        "mysite/settings.py",
        "\nimport sys as _sys, time as _time\nif _sys.argv[1:2] == ['build']:\n    _time.sleep(3)\n",
    );
    p.commit("a build step that lingers");
    let (ok, out) = p.push(&d.remote(&a));
    assert!(ok, "first push rejected:\n{out}");
    let deps = deps_tag(&out);

    // A code-only push: nothing installed, the same dependency image, and
    // the release image is that image plus exactly one layer.
    p.replace("Notes v1", "Notes v2");
    p.append("notes/views.py", "\nVERSION = 2\n");
    p.commit("code only");
    let limits = watch_build_limits(&a);
    let (ok, out) = p.push(&d.remote(&a));
    assert!(ok, "code push rejected:\n{out}");
    assert!(
        out.contains(&format!(
            "Dependencies unchanged: reusing {deps} (no install)"
        )),
        "{out}"
    );
    assert!(!out.contains("Installing dependencies"), "{out}");
    d.assert_serves(&a, "Notes v2");
    let image = format!("paas/{a}:v2");
    let (base, release) = (layers(&deps), layers(&image));
    assert_eq!(release.len(), base.len() + 1, "{release:?}");
    assert_eq!(release[..base.len()], base[..]);
    assert_eq!(
        inspect(&image, "{{index .Config.Labels \"paas.deps\"}}"),
        inspect(&deps, "{{index .Config.Labels \"paas.deps\"}}")
    );

    // The build step ran inside the build's limits, below the apps' CPU weight.
    let seen = limits
        .join()
        .unwrap()
        .expect("the build step's container was seen");
    let f: Vec<i64> = seen.split(' ').map(|v| v.parse().unwrap()).collect();
    assert_eq!(f[0], 768 * 1024 * 1024, "memory: {seen}");
    assert!(f[1] > 0, "NanoCpus: {seen}");
    assert_eq!(f[2], 512, "CpuShares: {seen}");
    assert!(f[3] > 0, "PidsLimit: {seen}");

    // Another app with the same requirements installs nothing either.
    let (ok, out) = p.push(&d.remote(&b));
    assert!(ok, "push to the second app rejected:\n{out}");
    assert_eq!(deps_tag(&out), deps, "{out}");
    assert!(!out.contains("Installing dependencies"), "{out}");
    d.assert_serves(&b, "Notes v2");

    // A changed requirement builds a dependency image of its own (unique
    // to this run: no cache of an earlier run answers for it).
    let run = format!("{:?}", Instant::now());
    p.append("requirements.txt", &format!("\n# pinned for run {run}\n"));
    p.replace("Notes v2", "Notes v3");
    p.commit("requirements change");
    let (ok, out) = p.push(&d.remote(&a));
    assert!(ok, "requirements push rejected:\n{out}");
    assert!(
        out.contains("Installing dependencies into paas-deps:"),
        "{out}"
    );
    let new_deps = deps_tag(&out);
    assert_ne!(new_deps, deps);
    d.assert_serves(&a, "Notes v3");

    // Rollbacks: to v1 as a server upgraded from an earlier paas holds it
    // (an image the builder made of the whole Dockerfile, code included),
    // and to v2, a layered image.
    old_way_image(&p, &deps, &format!("paas/{a}:v1"));
    let auth = format!("Bearer {}", d.token);
    let rollback = |v: i64| {
        let r = d.admin_request(
            "POST",
            &format!("/api/apps/{a}/rollback"),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            Some(format!(r#"{{"version": {v}}}"#).as_bytes()),
        );
        assert!(
            r.status < 300,
            "rollback to v{v}: {} {}",
            r.status,
            r.text()
        );
    };
    rollback(1);
    d.assert_serves(&a, "Notes built the old way");
    rollback(2);
    d.assert_serves(&a, "Notes v2");
    let _ = Command::new("docker").args(["rmi", &new_deps]).output();
}

/// Config vars reach the build step (collectstatic may need them, as
/// Heroku's builds get them), and never the image: not its environment,
/// not its layer.
#[test]
fn config_vars_reach_the_build_step_and_never_the_image() {
    let mut d = Daemon::start();
    let app = d.app("buildvars");
    let auth = format!("Bearer {}", d.token);
    let r = d.admin_request(
        "POST",
        "/api/apps",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(format!(r#"{{"name": "{app}"}}"#).as_bytes()),
    );
    assert!(r.status < 300, "create: {} {}", r.status, r.text());
    let r = d.admin_request(
        "PATCH",
        &format!("/api/apps/{app}/config"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(br#"{"REQUIRED_AT_BUILD": "sekr1t-build-value"}"#),
    );
    assert!(r.status < 300, "config: {} {}", r.status, r.text());
    let p = Project::from_fixture("blog");
    // Settings that refuse to load without the variable (as projects that
    // read AWS keys or ALLOWED_HOSTS from the environment do).
    p.append(
        "mysite/settings.py",
        "\nimport os as _os\nif 'REQUIRED_AT_BUILD' not in _os.environ:\n    raise RuntimeError('REQUIRED_AT_BUILD is not set')\n",
    );
    p.commit("settings need a config var");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    d.assert_serves(&app, "Notes v1");
    let image = format!("paas/{app}:v1");
    let env = inspect(&image, "{{json .Config.Env}}");
    assert!(!env.contains("REQUIRED_AT_BUILD"), "{env}");
    let save = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker save {image} | grep -a -c sekr1t-build-value"
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&save.stdout).trim(),
        "0",
        "the value is in the image's layers"
    );
}
