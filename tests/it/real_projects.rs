//! What public Django projects do that the tutorial fixtures did not (issue
//! 10): a Procfile that writes into the app's folder at boot, the newest
//! Python, a uwsgi compiled in the build stage, and a push output short
//! enough to read. Each builds on the `blog` fixture and writes its own
//! variation here.

use crate::buildpack::{api, run_in_image};
use crate::harness::{Daemon, Project};

/// The Heroku tutorials' `web:` migrates and collects static files at boot,
/// with a storage that rewrites its manifest every time: the app's folder
/// must be the app's to write. Nothing outside it changes owner, not even
/// through a symlink in the pushed tree.
#[test]
fn a_procfile_that_writes_into_the_app_folder_at_boot_deploys() {
    let mut d = Daemon::start();
    let app = d.app("bootwrite");
    let p = Project::from_fixture("blog");
    p.write(
        "Procfile",
        "web: python manage.py migrate && python manage.py collectstatic --no-input && gunicorn mysite.wsgi --bind 0.0.0.0:$PORT\n",
    );
    // ManifestStaticFilesStorage deletes and rewrites staticfiles.json on
    // every collectstatic, even when no file changed.
    p.append(
        "mysite/settings.py",
        "\nSTORAGES = {\n    'default': {'BACKEND': 'django.core.files.storage.FileSystemStorage'},\n    'staticfiles': {'BACKEND': 'django.contrib.staticfiles.storage.ManifestStaticFilesStorage'},\n}\n",
    );
    std::os::unix::fs::symlink("/etc/passwd", p.dir.path().join("hostfile")).unwrap();
    p.commit("Heroku tutorial Procfile");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    assert!(
        out.contains("collectstatic already ran during the build"),
        "{out}"
    );
    d.assert_serves(&app, "Notes v1");
    // The manifest storage's hashed name: the boot's collectstatic ran.
    let page = d.get(&app, "/").text();
    assert!(page.contains("/static/notes/style."), "{page}");

    let image = format!("paas/{app}:v1");
    let (ok, text) = run_in_image(
        &image,
        "stat -c '%n %u' /app /app/manage.py /app/notes /app/staticfiles /app/staticfiles/staticfiles.json \
         && stat -c '%n %u' /etc/passwd && stat -c 'link %u' /app/hostfile",
    );
    assert!(ok, "{text}");
    for owned in [
        "/app 10001",
        "/app/manage.py 10001",
        "/app/notes 10001",
        "/app/staticfiles 10001",
        "/app/staticfiles/staticfiles.json 10001",
        "link 10001",
    ] {
        assert!(text.contains(owned), "{owned:?} in:\n{text}");
    }
    assert!(
        text.contains("/etc/passwd 0"),
        "the link's target changed owner:\n{text}"
    );
}

/// A uv project pinned to Python 3.14 (`.python-version` and
/// `requires-python`) is built on python:3.14-slim and runs on 3.14.
#[test]
fn a_uv_project_pinned_to_python_3_14_runs_on_it() {
    let mut d = Daemon::start();
    let app = d.app("py314");
    let p = Project::from_fixture("blog");
    p.remove("requirements.txt");
    p.write(".python-version", "3.14\n");
    p.write(
        "pyproject.toml",
        r#"[project]
name = "mysite"
version = "0.1.0"
requires-python = ">=3.14"
dependencies = ["django>=5.2.8,<5.3"]
"#,
    );
    // Fixture: the registry URLs stand in for the real index (paas does not read them).
    p.write(
        "uv.lock",
        r#"version = 1
revision = 2
requires-python = ">=3.14"

[[package]]
name = "asgiref"
version = "3.8.1"
source = { registry = "https://registry.example/simple" }

[[package]]
name = "django"
version = "5.2.8"
source = { registry = "https://registry.example/simple" }
dependencies = [
    { name = "asgiref" },
    { name = "sqlparse" },
    { name = "tzdata", marker = "sys_platform == 'win32'" },
]

[[package]]
name = "mysite"
version = "0.1.0"
source = { virtual = "." }
dependencies = [
    { name = "django" },
]

[package.metadata]
requires-dist = [{ name = "django", specifier = ">=5.2.8,<5.3" }]

[[package]]
name = "sqlparse"
version = "0.5.3"
source = { registry = "https://registry.example/simple" }

[[package]]
name = "tzdata"
version = "2025.2"
source = { registry = "https://registry.example/simple" }
"#,
    );
    p.commit("uv, Python 3.14");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    assert!(out.contains("Python 3.14 (from .python-version)"), "{out}");
    assert!(out.contains("Dependencies from uv.lock"), "{out}");
    d.assert_serves(&app, "Notes v1");
    let (ok, text) = run_in_image(
        &format!("paas/{app}:v1"),
        "python -c 'import sys, django; print(sys.version_info[:2], django.get_version())'",
    );
    assert!(ok, "{text}");
    assert!(text.contains("(3, 14) 5.2.8"), "{text}");
}

/// uwsgi compiles in the build stage against libpython and, with the
/// PAAS_BUILD_PACKAGES config var's libxml2-dev, against libxml2: the app's
/// image gets the shared libraries it links against (libxml2 added by the
/// buildpack, found with ldd in the build stage), and the Procfile's uwsgi
/// serves the page. Pillow rides along: its wheel ships its own libraries
/// (pillow.libs/, found through the extension's RPATH, "not found" to ldd
/// of the library alone), which the image's library check must accept — it
/// refused every project with Pillow and a native build once.
#[test]
fn uwsgi_compiled_in_the_build_stage_serves_the_page() {
    let mut d = Daemon::start();
    let app = d.app("uwsgi");
    let (status, v) = api(
        &d,
        "POST",
        "/api/apps",
        Some(&format!(r#"{{"name": "{app}"}}"#)),
    );
    assert_eq!(status, 201, "{v:#}");
    let (status, v) = api(
        &d,
        "PATCH",
        &format!("/api/apps/{app}/config"),
        Some(r#"{"PAAS_BUILD_PACKAGES": "libxml2-dev"}"#),
    );
    assert_eq!(status, 200, "{v:#}");
    let p = Project::from_fixture("blog");
    p.append("requirements.txt", "uwsgi==2.0.28\nPillow==11.0.0\n");
    p.write(
        "Procfile",
        "web: uwsgi --http-socket 0.0.0.0:$PORT --module mysite.wsgi:application --master --processes 2 --need-app --die-on-term\n",
    );
    p.commit("served by uwsgi");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    assert!(
        out.contains("compiled in a build stage (gcc, libxml2-dev)"),
        "{out}"
    );
    // Compiled now, or by an earlier run whose build stage the engine cached.
    assert!(
        out.contains("Compiled from source: uwsgi")
            || out.contains("Dependencies unchanged: reusing paas-deps:"),
        "{out}"
    );
    d.assert_serves(&app, "Notes v1");
    let r = d.get(&app, "/");
    assert!(
        r.header("server").is_none_or(|s| !s.contains("gunicorn")),
        "{:?}",
        r.headers
    );
    let image = format!("paas/{app}:v1");
    let (ok, text) = run_in_image(&image, "ldd /opt/venv/bin/uwsgi");
    assert!(ok, "{text}");
    assert!(text.contains("libpython3."), "{text}");
    assert!(text.contains("libxml2.so"), "{text}");
    assert!(!text.contains("not found"), "{text}");
    let (ok, text) = run_in_image(
        &image,
        "python -c 'from PIL import Image; print(Image.new(\"RGB\", (2, 2)).size)'",
    );
    assert!(ok && text.contains("(2, 2)"), "Pillow in the image: {text}");
    let (found, text) = run_in_image(&image, "command -v gcc || command -v xml2-config");
    assert!(!found, "the app's image has build tools: {text}");
}

/// A code-only redeploy is a short read: Docker's plumbing and pip's
/// chatter stay in the release log, the pusher sees at most 25 lines,
/// "is live" once, then the timings.
#[test]
fn a_warm_redeploy_prints_at_most_25_lines() {
    let mut d = Daemon::start();
    let app = d.app("short");
    let p = Project::from_fixture("blog");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "first push rejected:\n{out}");
    p.replace("Notes v1", "Notes v2");
    p.commit("template change");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "second push rejected:\n{out}");
    d.assert_serves(&app, "Notes v2");
    eprintln!("warm redeploy output:\n{out}");
    let lines = out.lines().count();
    assert!(lines <= 25, "{lines} lines:\n{out}");
    for plumbing in [
        "Step ",
        " ---> ",
        "Removing intermediate container",
        "Successfully built",
        "Successfully tagged",
        "Collecting ",
    ] {
        assert!(!out.contains(plumbing), "{plumbing:?} in:\n{out}");
    }
    assert_eq!(out.matches("is live").count(), 1, "{out}");
    assert!(
        out.contains("Dependencies unchanged: reusing paas-deps:"),
        "{out}"
    );
    let live = out.find("v2 is live at").expect("the live line");
    let done = out.find("Done in ").expect("the timings");
    assert!(live < done, "{out}");
    assert!(
        out[done..].contains("code ") && out[done..].contains("start "),
        "{out}"
    );
    // The release page keeps the raw log (the build step's own lines too).
    let (status, v) = api(&d, "GET", &format!("/api/apps/{app}/releases/2"), None);
    assert_eq!(status, 200, "{v:#}");
    let log = v["log"].as_str().unwrap_or_default();
    assert!(log.contains("-----> paas metadata: "), "raw log: {log}");
}

/// A Django 4 project locked by poetry 1.x: the lock keeps the backport
/// Django needs on old Pythons only (`backports.zoneinfo`, no wheel for
/// any Python paas builds with) as a dependency of every category `main`
/// package, its `python_version < "3.9"` marker on the edge alone. The
/// requirement keeps that marker: pip skips the backport on Python 3.11
/// instead of compiling it (which fails: the image has no compiler).
#[test]
fn a_poetry_1_lock_keeps_a_backport_to_the_old_pythons_its_edge_names() {
    let mut d = Daemon::start();
    let app = d.app("poetry1");
    let p = Project::from_fixture("poetry-project");
    p.write(
        "pyproject.toml",
        r#"[tool.poetry]
name = "mysite"
version = "0.1.0"
description = "A Django 4 site locked by poetry 1.x"
authors = ["Fixture <fixture@example.com>"]

[tool.poetry.dependencies]
python = "~3.11"
django = "4.2.16"

[tool.poetry.group.dev.dependencies]
ruff = "^0.7"

[build-system]
requires = ["poetry-core"]
build-backend = "poetry.core.masonry.api"
"#,
    );
    // Fixture: lock-version 1.1 as poetry 1.1 to 1.4 write it (no hashes
    // needed: paas pins the versions, pip fetches them).
    p.write(
        "poetry.lock",
        r#"[[package]]
name = "asgiref"
version = "3.8.1"
description = "ASGI specs, helper code, and adapters"
category = "main"
optional = false
python-versions = ">=3.8"

[package.dependencies]
typing-extensions = {version = ">=4", markers = "python_version < \"3.11\""}

[[package]]
name = "backports.zoneinfo"
version = "0.2.1"
description = "Backport of the standard library zoneinfo module"
category = "main"
optional = false
python-versions = ">=3.6"

[package.extras]
tzdata = ["tzdata"]

[[package]]
name = "django"
version = "4.2.16"
description = "A high-level Python web framework that encourages rapid development and clean, pragmatic design."
category = "main"
optional = false
python-versions = ">=3.8"

[package.dependencies]
asgiref = ">=3.6.0,<4"
"backports.zoneinfo" = {version = "*", markers = "python_version < \"3.9\""}
sqlparse = ">=0.3.1"
tzdata = {version = "*", markers = "sys_platform == \"win32\""}

[[package]]
name = "ruff"
version = "0.7.4"
description = "An extremely fast Python linter and code formatter, written in Rust."
category = "dev"
optional = false
python-versions = ">=3.7"

[[package]]
name = "sqlparse"
version = "0.5.1"
description = "A non-validating SQL parser."
category = "main"
optional = false
python-versions = ">=3.8"

[[package]]
name = "typing-extensions"
version = "4.12.2"
description = "Backported and Experimental Type Hints for Python 3.8+"
category = "main"
optional = false
python-versions = ">=3.8"

[[package]]
name = "tzdata"
version = "2024.2"
description = "Provider of IANA time zone data"
category = "main"
optional = false
python-versions = ">=2"

[metadata]
lock-version = "1.1"
python-versions = "~3.11"
content-hash = "0000000000000000000000000000000000000000000000000000000000000000"

[metadata.files]
asgiref = []
"backports.zoneinfo" = []
django = []
ruff = []
sqlparse = []
typing-extensions = []
tzdata = []
"#,
    );
    p.commit("poetry 1.x lock, Django 4.2");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    assert!(out.contains("Dependencies from poetry.lock"), "{out}");
    assert!(out.contains("Python 3.11"), "{out}");
    d.assert_serves(&app, "Poetry project works");
    let (ok, text) = run_in_image(
        &format!("paas/{app}:v1"),
        "pip show django && ! pip show backports.zoneinfo && ! pip show typing-extensions && ! pip show ruff",
    );
    assert!(ok, "{text}");
    assert!(text.contains("Version: 4.2.16"), "{text}");
}

/// psycopg[c] compiles in the build stage (libpq-dev, gcc) within the
/// default build memory limit (768 MiB): with the debug information
/// Python's compiler flags ask for, it needed ~914 MB and the OOM killer
/// stopped gcc; the build stage compiles without it (CFLAGS=-g0).
#[test]
fn psycopg_c_compiles_within_the_default_build_memory_limit() {
    let mut d = Daemon::start();
    let app = d.app("psycopgc");
    let p = Project::from_fixture("blog");
    p.append("requirements.txt", "psycopg[c]==3.2.4\n");
    p.commit("psycopg compiled against libpq");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    assert!(
        out.contains("psycopg[c] compiled in a build stage (gcc, libpq-dev)"),
        "{out}"
    );
    // Compiled now, or by an earlier run whose build stage the engine cached.
    assert!(
        out.contains("Compiled from source: psycopg-c")
            || out.contains("Dependencies unchanged: reusing paas-deps:"),
        "{out}"
    );
    d.assert_serves(&app, "Notes v1");
    let (ok, text) = run_in_image(
        &format!("paas/{app}:v1"),
        "python -c 'import psycopg; print(\"impl\", psycopg.pq.__impl__)'",
    );
    assert!(ok, "{text}");
    assert!(text.contains("impl c"), "{text}");
}

/// cookiecutter-django's layout: the apps live in a folder that wsgi.py
/// (and manage.py) append to `sys.path`; INSTALLED_APPS names them as
/// top-level packages. The build step imports the WSGI module first, as
/// gunicorn does, so Django finds them at build time too.
#[test]
fn apps_found_through_the_sys_path_that_wsgi_py_extends_deploy() {
    let mut d = Daemon::start();
    let app = d.app("syspath");
    let p = Project::from_fixture("blog");
    let root = p.dir.path();
    std::fs::create_dir(root.join("apps")).unwrap();
    std::fs::rename(root.join("notes"), root.join("apps/notes")).unwrap();
    let extend = "import sys\nfrom pathlib import Path\n\nsys.path.append(str(Path(__file__).resolve().parent.parent / 'apps'))\n";
    p.write(
        "mysite/wsgi.py",
        &format!(
            "import os\n{extend}\nfrom django.core.wsgi import get_wsgi_application\n\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')\n\napplication = get_wsgi_application()\n"
        ),
    );
    p.replace(
        "import os\nimport sys\n",
        "import os\nimport sys\nfrom pathlib import Path\n\nsys.path.append(str(Path(__file__).resolve().parent / 'apps'))\n",
    );
    p.commit("apps in apps/, on the path wsgi.py extends");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    d.assert_serves(&app, "Notes v1");
    let r = d.post_form(&app, "/add/", "text=found");
    assert_eq!(r.status, 201, "{}", r.text());
    d.assert_serves(&app, "found");
}

/// A package with no wheel for the build's Python compiles, and fails to:
/// the push's one sentence names it and both ways out (a release with a
/// wheel, or the project's own Python).
#[test]
fn a_package_without_a_wheel_that_fails_to_compile_is_named() {
    let mut d = Daemon::start();
    let app = d.app("nowheel");
    let p = Project::from_fixture("blog");
    // psycopg2 makes the build stage (gcc, libpq-dev); backports.zoneinfo
    // 0.2.1 ships wheels up to Python 3.8 only and its C code does not
    // compile against 3.13.
    p.write(".python-version", "3.13\n");
    p.write(
        "requirements.txt",
        "Django>=5.1.3,<5.2\npsycopg2==2.9.10\nbackports.zoneinfo==0.2.1\n",
    );
    p.commit("an old backport");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(!ok, "push accepted:\n{out}");
    assert!(
        out.contains("backports.zoneinfo failed to compile for Python 3.13 (pip's error is above): pin a release of backports.zoneinfo that ships a wheel for Python 3.13, or set the Python the project was written for (e.g. `paas config:set PYTHON_VERSION=3.12`), and push again"),
        "{out}"
    );
}
