//! The Django buildpack beyond requirements.txt: projects as Pipenv, Poetry
//! and uv leave them, pushed unmodified, each live with its static files.

use crate::harness::{http, Daemon, HttpResponse, Project};

fn assert_live(d: &Daemon, app: &str, heading: &str) {
    let r = d.get(app, "/");
    assert_eq!(r.status, 200, "GET / of {app}: {} {}", r.status, r.text());
    assert!(
        r.text().contains(heading),
        "GET / of {app} lacks {heading:?}: {}",
        r.text()
    );
    let css = d.get(app, "/static/notes/style.css");
    assert_eq!(css.status, 200, "CSS of {app}: {}", css.text());
}

/// One daemon, three projects: Pipfile.lock with a settings package (the
/// production module is chosen; importing dev.py would fail the build),
/// poetry.lock (Python chosen from the pinned Django), and uv.lock without
/// manage.py (found through wsgi.py; migrations use the image's manage.py).
#[test]
fn pipenv_poetry_and_uv_projects_deploy_unmodified() {
    let mut d = Daemon::start();
    let cases = [
        (
            "pipenv-settings-package",
            "Pipenv settings package works",
            &[
                "Settings mysite.settings.production",
                "Dependencies from Pipfile.lock: 3 packages",
                "Python 3.11 (from Pipfile.lock)",
            ][..],
        ),
        (
            "poetry-project",
            "Poetry project works",
            &[
                "Dependencies from poetry.lock: 4 packages",
                "Python 3.13 (the newest Python Django 5.1.3 supports",
            ][..],
        ),
        (
            "uv-no-manage-py",
            "uv project without manage.py works",
            &[
                "Settings mysite.settings (from mysite/wsgi.py)",
                "Dependencies from uv.lock: 4 packages",
                "No manage.py: the image gets a standard one in /app",
            ][..],
        ),
    ];
    for (fixture, heading, notes) in cases {
        let app = d.app(&fixture[..fixture.find('-').unwrap_or(fixture.len())]);
        let p = Project::from_fixture(fixture);
        let (ok, out) = p.push(&d.remote(&app));
        assert!(ok, "{fixture}: push rejected:\n{out}");
        for note in notes {
            assert!(out.contains(note), "{fixture}: no {note:?} in:\n{out}");
        }
        // Development dependencies stay out of the image.
        assert!(!out.contains("ruff") && !out.contains("pytest"), "{out}");
        assert_live(&d, &app, heading);
    }
}

/// `docker run --rm IMAGE sh -c SCRIPT`: (exit success, output).
pub(crate) fn run_in_image(image: &str, script: &str) -> (bool, String) {
    let out = std::process::Command::new("docker")
        .args(["run", "--rm", image, "sh", "-c", script])
        .output()
        .expect("docker runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// psycopg2 (not -binary) compiles from source in a build stage: the app
/// imports it (libpq is in the image) but the image has no compiler, and a
/// code-only push reuses the compiled layer.
#[test]
fn psycopg2_from_source_builds_without_a_compiler_in_the_image() {
    let mut d = Daemon::start();
    let app = d.app("pg2src");
    let p = Project::from_fixture("psycopg2-source");
    let t = std::time::Instant::now();
    let (ok, out) = p.push(&d.remote(&app));
    let cold = t.elapsed();
    assert!(ok, "push rejected:\n{out}");
    assert!(
        out.contains(
            "psycopg2 compiled in a build stage (gcc, libpq-dev); the app's image gets only libpq5"
        ),
        "{out}"
    );
    // Compiled now, or by an earlier run whose build stage the engine cached.
    assert!(
        out.contains("Compiled from source: psycopg2")
            || out.contains("Dependencies unchanged: reusing paas-deps:"),
        "{out}"
    );
    let r = d.get(&app, "/driver/");
    assert_eq!(r.status, 200, "GET /driver/: {}", r.text());
    assert!(r.text().starts_with("psycopg2 2.9.10 "), "{}", r.text());
    assert_live(&d, &app, "Notes v1");
    let image = format!("paas/{app}:v1");
    let (found, text) = run_in_image(&image, "command -v gcc || command -v cc");
    assert!(!found, "the app's image has a compiler: {text}");
    let (found, text) = run_in_image(&image, "command -v pg_config");
    assert!(!found, "the app's image has libpq-dev: {text}");
    let (ok, text) = run_in_image(&image, "pip show psycopg2 && ! pip show psycopg2-binary");
    assert!(ok, "psycopg2 is not the source build: {text}");

    p.replace("Notes v1", "Notes v2");
    p.commit("second version");
    let t = std::time::Instant::now();
    let (ok, out) = p.push(&d.remote(&app));
    let warm = t.elapsed();
    assert!(ok, "second push rejected:\n{out}");
    assert!(
        !out.contains("Compiled from source: psycopg2"),
        "a code-only push compiled again:\n{out}"
    );
    assert_live(&d, &app, "Notes v2");
    eprintln!("psycopg2 from source: first push {cold:?}, code-only push {warm:?}");
}

/// A request to the control-plane API with the admin token: (status, JSON).
pub(crate) fn api(
    d: &Daemon,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {}", d.token);
    let mut headers = vec![("Authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let r = d.admin_request(method, path, &headers, body.map(str::as_bytes));
    let v = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
    (r.status, v)
}

/// POSTs `file` through the app's own upload form, with the CSRF cookie and
/// token Django handed out on GET.
pub fn upload(d: &Daemon, app: &str, name: &str, content: &str) -> HttpResponse {
    let host = format!("{app}.localhost");
    let form = d.get(app, "/upload/");
    assert_eq!(form.status, 200, "GET /upload/: {}", form.text());
    let cookie = form
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .find_map(|(_, v)| v.strip_prefix("csrftoken="))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no csrftoken cookie: {:?}", form.headers))
        .to_string();
    let page = form.text();
    let token = page
        .split("name=\"csrfmiddlewaretoken\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no CSRF token in the form: {page}"))
        .to_string();
    let boundary = "paas-test-boundary-7d1f";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"csrfmiddlewaretoken\"\r\n\r\n{token}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: text/plain\r\n\r\n{content}\r\n\
         --{boundary}--\r\n"
    );
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let cookie = format!("csrftoken={cookie}");
    http(
        d.http,
        "POST",
        &host,
        "/upload/",
        &[("Content-Type", &content_type), ("Cookie", &cookie)],
        Some(body.as_bytes()),
    )
}

/// A file uploaded through a CSRF-protected form with DEBUG=False (a config
/// var over the project's DEBUG = True) is served by the proxy at the app's
/// MEDIA_URL (/files/), and again after a redeploy: MEDIA_ROOT = BASE_DIR /
/// "media" (inside the code, replaced by each deploy) is moved to the volume. `check --deploy` runs at
/// release with the app's config vars: its DEBUG warning shows on the first
/// push, not once the config var says DEBUG=False, and never stops a push.
#[test]
fn uploads_with_debug_off_survive_a_redeploy_and_check_deploy_warns() {
    let mut d = Daemon::start();
    let app = d.app("uploads");
    let p = Project::from_fixture("uploads");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    assert!(
        out.contains(
            "Checking the deployment (manage.py check --deploy; warnings do not stop the push)"
        ),
        "{out}"
    );
    assert!(
        out.contains("(security.W018) You should not have DEBUG set to True"),
        "{out}"
    );
    // No Python pinned anywhere: the newest the pinned Django supports.
    assert!(
        out.contains("Python 3.13 (the newest Python the pinned Django 5.1.3 supports; pin another with .python-version)"),
        "{out}"
    );
    let (status, v) = api(
        &d,
        "PATCH",
        &format!("/api/apps/{app}/config"),
        Some(r#"{"DEBUG": "False"}"#),
    );
    assert_eq!(status, 200, "{v:#}");
    d.assert_serves(&app, "Notes v1");

    let r = upload(&d, &app, "hello.txt", "hello from an upload");
    assert_eq!(r.status, 201, "upload: {}", r.text());
    assert_eq!(r.text().trim(), "uploaded /files/attachments/hello.txt");
    // DEBUG is off, so Django serves no media: this is the proxy.
    let r = d.get(&app, "/files/attachments/hello.txt");
    assert_eq!(r.status, 200, "GET the upload: {}", r.text());
    assert_eq!(r.text().trim_end(), "hello from an upload");
    let r = d.get(&app, "/nonexistent-page/");
    assert_eq!(r.status, 404);
    assert!(
        !r.text().contains("URLconf"),
        "DEBUG is still on: {}",
        r.text()
    );

    p.replace("Notes v1", "Notes v2");
    p.commit("second version");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "redeploy rejected:\n{out}");
    assert!(out.contains("manage.py check --deploy"), "{out}");
    assert!(
        !out.contains("security.W018"),
        "check --deploy did not see DEBUG=False:\n{out}"
    );
    d.assert_serves(&app, "Notes v2");
    d.assert_serves(&app, "attachments/hello.txt");
    let r = d.get(&app, "/files/attachments/hello.txt");
    assert_eq!(
        r.status,
        200,
        "GET the upload after a redeploy: {}",
        r.text()
    );
    assert_eq!(r.text().trim_end(), "hello from an upload");
}

/// PEP 621 dependencies without a lock, and a pyproject.toml that only
/// configures tools beside requirements.txt (no ambiguity): both deploy.
#[test]
fn pep621_only_and_tool_only_pyproject_deploy() {
    let mut d = Daemon::start();
    let cases = [
        (
            "pep621-only",
            "PEP 621 project works",
            &[
                "pyproject.toml has no lock file: installing its [project].dependencies ranges",
                "Dependencies from pyproject.toml: 1 packages",
                "Python 3.11 (the default, allowed by requires-python \">=3.11\" in pyproject.toml",
            ][..],
        ),
        (
            "tool-pyproject",
            "Tool-only pyproject works",
            &["Dependencies from requirements.txt"][..],
        ),
    ];
    for (fixture, heading, notes) in cases {
        let app = d.app(&fixture[..fixture.find('-').unwrap_or(fixture.len())]);
        let p = Project::from_fixture(fixture);
        let (ok, out) = p.push(&d.remote(&app));
        assert!(ok, "{fixture}: push rejected:\n{out}");
        for note in notes {
            assert!(out.contains(note), "{fixture}: no {note:?} in:\n{out}");
        }
        // Development dependencies stay out of the image.
        assert!(!out.contains("pytest"), "{fixture}: {out}");
        assert_live(&d, &app, heading);
    }
}

/// Projects paas cannot build unambiguously are rejected before any build,
/// with one sentence naming the file to remove or the config var to set.
#[test]
fn ambiguous_projects_are_rejected_with_the_fix() {
    let mut d = Daemon::start();
    let app = d.app("ambig");
    type Change = fn(&std::path::Path);
    let cases: [(&str, Change, &str); 3] = [
        (
            "blog",
            |dir| std::fs::write(dir.join("poetry.lock"), "").unwrap(),
            "Found requirements.txt and poetry.lock: paas installs dependencies from one source, so delete the file you no longer use, or pick one with `paas config:set PAAS_DEPENDENCIES=requirements` (or poetry).",
        ),
        (
            "pipenv-settings-package",
            |dir| {
                let s = dir.join("mysite/settings");
                std::fs::rename(s.join("production.py"), s.join("staging.py")).unwrap();
            },
            "The settings package mysite.settings has no settings of its own and paas cannot tell which of mysite.settings.base, mysite.settings.dev, mysite.settings.staging to deploy: choose with `paas config:set DJANGO_SETTINGS_MODULE=mysite.settings.base` (or name one production.py).",
        ),
        (
            "poetry-project",
            |dir| std::fs::remove_file(dir.join("poetry.lock")).unwrap(),
            "pyproject.toml declares poetry dependencies but there is no poetry.lock next to it: run `poetry lock` and commit poetry.lock.",
        ),
    ];
    for (fixture, change, message) in cases {
        let p = Project::from_fixture(fixture);
        change(p.dir.path());
        p.commit("make it ambiguous");
        let (ok, out) = p.push_ref(&d.remote(&app), "+main:main");
        assert!(!ok, "{fixture}: push accepted:\n{out}");
        let last = crate::harness::last_line(&out);
        assert!(
            last.contains(message),
            "{fixture}: last line {last:?} should say {message:?}; output:\n{out}"
        );
        assert!(!out.contains("Building image"), "{fixture}: built:\n{out}");
    }
    // Config vars the buildpack reads, set wrong.
    let p = Project::from_fixture("blog");
    let cases = [
        (
            r#"{"PAAS_DEPENDENCIES": "conda"}"#,
            "The PAAS_DEPENDENCIES config var is \"conda\", which is not one of requirements, pipfile, poetry, uv, pyproject: set one of those, or unset it with `paas config:unset PAAS_DEPENDENCIES`.",
        ),
        (
            r#"{"PAAS_DEPENDENCIES": null, "PAAS_RUNTIME_PACKAGES": "libpq5; curl x"}"#,
            "The PAAS_RUNTIME_PACKAGES config var names \"libpq5; curl x\", which is not a list of Debian package names: list packages like libldap2-dev separated by spaces, or unset it with `paas config:unset PAAS_RUNTIME_PACKAGES`.",
        ),
        // A package apt-get cannot find: the build stage fails and says what to check.
        (
            r#"{"PAAS_RUNTIME_PACKAGES": null, "PAAS_BUILD_PACKAGES": "paas-no-such-package"}"#,
            "failed (apt-get's error is above): check the names in the PAAS_BUILD_PACKAGES and PAAS_RUNTIME_PACKAGES config vars, and that builds reach the Debian mirror of the base image's apt sources",
        ),
    ];
    for (config, message) in cases {
        let (status, v) = api(
            &d,
            "PATCH",
            &format!("/api/apps/{app}/config"),
            Some(config),
        );
        assert_eq!(status, 200, "{config}: {v:#}");
        let (ok, out) = p.push_ref(&d.remote(&app), "+main:main");
        assert!(!ok, "{config}: push accepted:\n{out}");
        let last = crate::harness::last_line(&out);
        assert!(
            last.contains(message),
            "{config}: last line {last:?} should say {message:?}; output:\n{out}"
        );
    }
}

// ---- issue 10: real projects pushed unmodified (each on the blog base) ----

/// The blog fixture with `files` written over it, committed.
fn blog_with(files: &[(&str, &str)]) -> Project {
    let p = Project::from_fixture("blog");
    for (path, content) in files {
        p.write(path, content);
    }
    p.commit("the project's own files");
    p
}

/// Pushes `p` and expects a refusal before any install: the last line says
/// `sentence`, and nothing was built or installed.
fn assert_refused_before_install(d: &Daemon, app: &str, p: &Project, sentence: &str) {
    let (ok, out) = p.push(&d.remote(app));
    assert!(!ok, "push accepted:\n{out}");
    let last = crate::harness::last_line(&out);
    assert!(
        last.contains(sentence),
        "last line {last:?} should say {sentence:?}; output:\n{out}"
    );
    for step in ["Building image", "pip install", "Collecting "] {
        assert!(!out.contains(step), "{step:?} ran:\n{out}");
    }
}

/// Django 4.2.3 supports Python up to 3.11 (3.12 only from 4.2.8) and the
/// project's own Dockerfile runs 3.11: the build uses 3.11, where
/// psycopg2-binary 2.9.6 has a wheel (no compiler needed).
#[test]
fn python_follows_the_projects_dockerfile_within_djangos_support() {
    let mut d = Daemon::start();
    let app = d.app("pyown");
    let p = blog_with(&[
        (
            "requirements.txt",
            "Django==4.2.3\npsycopg2-binary==2.9.6\n",
        ),
        (
            "Dockerfile",
            "FROM python:3.11-slim-bookworm\nCOPY . /srv\nCMD [\"gunicorn\"]\n",
        ),
    ]);
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    assert!(
        out.contains("Python 3.11 (from FROM python:3.11 in Dockerfile, which Django 4.2.3 supports (3.8 to 3.11)"),
        "{out}"
    );
    assert!(!out.contains("compiled in a build stage"), "{out}");
    assert_live(&d, &app, "Notes v1");
}

/// manage.py defaults to development settings that cannot even load here;
/// the project's Dockerfile sets the production ones, which are deployed.
#[test]
fn production_settings_named_by_the_projects_dockerfile_win_over_a_dev_default() {
    let mut d = Daemon::start();
    let app = d.app("prodset");
    let p = Project::from_fixture("blog");
    let manage = std::fs::read_to_string(p.dir.path().join("manage.py")).unwrap();
    p.write(
        "manage.py",
        &manage.replace("'mysite.settings'", "'mysite.settings_dev'"),
    );
    p.write(
        "mysite/settings_dev.py",
        "from mysite.settings import *  # noqa\nimport debug_toolbar  # development only: not installed\n",
    );
    p.write(
        "mysite/settings_production.py",
        "from mysite.settings import *  # noqa\nDEBUG = False\n",
    );
    p.write(
        "Dockerfile",
        "FROM python:3.11-slim\nENV PYTHONUNBUFFERED=1 \\\n    DJANGO_SETTINGS_MODULE=mysite.settings_production\n",
    );
    p.commit("development and production settings");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    assert!(
        out.contains("Settings mysite.settings_production (from DJANGO_SETTINGS_MODULE in Dockerfile, a deploy manifest, over manage.py's default mysite.settings_dev)"),
        "{out}"
    );
    assert_live(&d, &app, "Notes v1");
}

/// Django 1.11 runs on no Python paas builds with: refused in one sentence
/// before anything is installed (it used to install for a minute, then die
/// in collectstatic on `cannot import name 'Iterator' from 'collections'`).
#[test]
fn a_django_too_old_for_every_python_is_refused_before_any_install() {
    let mut d = Daemon::start();
    let app = d.app("oldjango");
    let p = blog_with(&[("requirements.txt", "Django==1.11.29\n")]);
    assert_refused_before_install(
        &d,
        &app,
        &p,
        "Django 1.11.29 supports Python 2.7 to 3.7 only, older than every Python paas builds with (3.8 to 3.14): upgrade Django to 4.2 LTS or later in your dependencies and push again.",
    );
}

/// Static files built by Node whose output is not committed: refused before
/// any install, naming both ways out.
#[test]
fn static_files_built_by_node_but_not_committed_are_refused_before_any_install() {
    let mut d = Daemon::start();
    let app = d.app("nodestatic");
    let p = Project::from_fixture("blog");
    let settings = std::fs::read_to_string(p.dir.path().join("mysite/settings.py")).unwrap();
    p.write(
        "mysite/settings.py",
        &format!("{settings}\nSTATICFILES_DIRS = [BASE_DIR / 'frontend' / 'dist']\n"),
    );
    p.write(
        "package.json",
        r#"{"name": "blog", "scripts": {"build": "vite build --outDir frontend/dist"}}"#,
    );
    p.write("frontend/src/main.js", "console.log('notes')\n");
    p.commit("a Node build for the static files");
    assert_refused_before_install(
        &d,
        &app,
        &p,
        "mysite/settings.py lists frontend/dist in STATICFILES_DIRS, but frontend/dist is not in the pushed code: it is built by `npm run build` (package.json), and paas does not run Node, so commit the built files, or skip collectstatic with `paas config:set DISABLE_COLLECTSTATIC=1` and serve static files another way.",
    );
}

const PIPFILE_LOCK: &str = r#"{
    "_meta": {"requires": {"python_version": "3.11"}, "sources": [{"name": "pypi", "url": "https://pypi.org/simple", "verify_ssl": true}]},
    "default": {
        "asgiref": {"hashes": [], "version": "==3.8.1"},
        "django": {"hashes": [], "index": "pypi", "version": "==4.2.16"},
        "sqlparse": {"hashes": [], "version": "==0.5.1"}
    },
    "develop": {"pytest": {"hashes": [], "version": "==8.3.3"}}
}
"#;

/// Pipfile, its lock and a requirements.txt exported from it: they agree,
/// the lock is used. Before that, one push shows every blocker at once.
#[test]
fn agreeing_dependency_sources_deploy_and_every_blocker_shows_in_one_push() {
    let mut d = Daemon::start();
    let app = d.app("agree");
    let p = blog_with(&[
        (
            "Pipfile",
            "[packages]\ndjango = \"~=4.2\"\n\n[requires]\npython_version = \"3.11\"\n",
        ),
        ("Pipfile.lock", PIPFILE_LOCK),
        // Exported from another lock: not the same pins.
        (
            "requirements.txt",
            "-i https://pypi.org/simple\nasgiref==3.8.1\ndjango==4.2.15\nsqlparse==0.5.1\n",
        ),
        ("package.json", r#"{"scripts": {"build": "webpack"}}"#),
        (
            "mysite/settings.py",
            &format!(
                "{}\nSTATICFILES_DIRS = [BASE_DIR / 'assets' / 'bundles']\n",
                std::fs::read_to_string(
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("tests/fixtures/blog/mysite/settings.py")
                )
                .unwrap()
            ),
        ),
    ]);
    let (ok, out) = p.push(&d.remote(&app));
    assert!(!ok, "push accepted:\n{out}");
    assert!(
        out.contains("2 problems stop this push before the build"),
        "{out}"
    );
    assert!(out.contains("1. Found requirements.txt and Pipfile.lock: paas installs dependencies from one source"), "{out}");
    assert!(
        out.contains("2. mysite/settings.py lists assets/bundles in STATICFILES_DIRS"),
        "{out}"
    );
    assert!(
        crate::harness::last_line(&out).contains("2 problems stop this push (each is on its own line above): fix them all, then push again"),
        "{out}"
    );
    assert!(!out.contains("Building image"), "{out}");

    // Both fixed: the export matches the lock, the bundles are committed.
    p.write(
        "requirements.txt",
        "-i https://pypi.org/simple\nasgiref==3.8.1\ndjango==4.2.16\nsqlparse==0.5.1\n",
    );
    p.write("assets/bundles/app.js", "console.log('built')\n");
    p.commit("export again and commit the bundles");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    assert!(
        out.contains("requirements.txt and Pipfile.lock name the same 3 pinned packages: installing from Pipfile.lock"),
        "{out}"
    );
    assert_live(&d, &app, "Notes v1");
}

/// A requirements file naming the public index by its old host name (which
/// this machine cannot resolve: builds reach packages only through the
/// operator's index) installs from the build's configured index instead.
#[test]
fn the_public_index_named_by_requirements_gives_way_to_the_builds_index() {
    let mut d = Daemon::start();
    let app = d.app("pubindex");
    let p = blog_with(&[(
        "requirements.txt",
        "-i https://pypi.python.org/simple\nDjango>=4.2,<5.0\n",
    )]);
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    assert!(
        out.contains("requirements.txt names the public package index (--index-url https://pypi.python.org/simple): installing from the build's configured index instead"),
        "{out}"
    );
    assert_live(&d, &app, "Notes v1");
}
