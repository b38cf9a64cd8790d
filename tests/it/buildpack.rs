//! The Django buildpack beyond requirements.txt: projects as Pipenv, Poetry
//! and uv leave them, pushed unmodified, each live with its static files.

use crate::harness::{Daemon, Project};

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
