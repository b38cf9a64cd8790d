//! `paas run` (a one-off container of the live release, its output and its
//! exit code; at a terminal, over a WebSocket), `paas ps` and `paas logs
//! [-f]`, through the built binary; then an admin login
//! through the proxy with the superuser `paas run` created, which proves
//! CSRF passes behind paas's proxy.

use crate::harness::{http, CliEnv, Daemon, Project};
use std::path::Path;
use std::process::Command;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `paas ARGS` in `dir` (the app's checkout: the token and the app come
/// from its `paas` remote), in the test's client environment.
fn paas(cli: &CliEnv, dir: &Path, args: &[&str]) -> Out {
    let out = cli
        .command(dir)
        .args(args)
        .output()
        .expect("the paas binary runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The value of `name="NAME" value="..."` in an HTML form.
fn form_value(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\""))
        .unwrap_or_else(|| panic!("no {name} in the page: {html}"));
    let rest = &html[at..];
    let v = &rest[rest.find("value=\"").unwrap() + 7..];
    v[..v.find('"').unwrap()].to_string()
}

fn run_containers(app: &str) -> String {
    let out = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}"])
        .args(["--filter", &format!("label=paas.app={app}")])
        .args(["--filter", "label=paas.process=run"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `paas ARGS` on a pseudo-terminal (util-linux `script`), answering
/// prompts: each (prompt, reply) waits for the prompt in the output since
/// the last reply, then types the reply and Enter. Returns (exit code, output).
fn paas_on_a_terminal(
    cli: &CliEnv,
    dir: &Path,
    args: &str,
    dialogue: &[(&str, &str)],
) -> (i32, String) {
    paas_on_a_terminal_with_env(cli, dir, args, dialogue, &[])
}

/// [`paas_on_a_terminal`] with extra environment variables for the client.
pub fn paas_on_a_terminal_with_env(
    cli: &CliEnv,
    dir: &Path,
    args: &str,
    dialogue: &[(&str, &str)],
    env: &[(&str, &str)],
) -> (i32, String) {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let cmd = format!("{} {args}", env!("CARGO_BIN_EXE_paas"));
    let mut script = Command::new("script");
    cli.apply(&mut script, dir);
    let mut child = script
        .envs(env.iter().copied())
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .env("COLUMNS", "100")
        .env("LINES", "30")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux script runs (apt-get install bsdutils)");
    let seen = Arc::new(Mutex::new(String::new()));
    let mut out = child.stdout.take().unwrap();
    let sink = seen.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    let mut from = 0;
    for (prompt, reply) in dialogue {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let text = seen.lock().unwrap().clone();
            if let Some(i) = text[from..].find(prompt) {
                from += i + prompt.len();
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no prompt {prompt:?} within 120 s; the terminal showed: {text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        stdin.write_all(format!("{reply}\r").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    let status = child.wait().unwrap();
    drop(stdin);
    reader.join().unwrap();
    let text = seen.lock().unwrap().clone();
    (status.code().unwrap_or(-1), text)
}

#[test]
fn paas_run_creates_a_superuser_who_logs_in_and_passes_exit_codes_back() {
    let mut d = Daemon::start();
    let app = d.app("run");
    let p = Project::from_fixture("blog");
    let remote = d.remote(&app);
    assert!(p.git(&["remote", "add", "paas", &remote]).status.success());
    let here = p.dir.path();
    let cli = d.cli();

    // The app exists (a branch push) but has no release: one sentence, exit 1.
    let (ok, out) = p.push_ref("paas", "main:feature");
    assert!(ok, "{out}");
    let r = paas(&cli, here, &["run", "--", "true"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr.contains("has no live release yet") && r.stderr.contains("git push paas main"),
        "{r}"
    );
    // A malformed -e is a usage error (2), before anything is sent.
    let r = paas(&cli, here, &["run", "-e", "NOEQUALS", "--", "true"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("is not KEY=VALUE"), "{r}");

    let (ok, out) = p.push("paas");
    assert!(ok, "push rejected:\n{out}");

    // ps: the web container of v1, running.
    let r = paas(&cli, here, &["ps", "--json"]);
    assert_eq!(r.code, 0, "{r}");
    let ps: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let list = ps.as_array().unwrap();
    assert_eq!(list.len(), 1, "{ps:#}");
    assert_eq!(list[0]["process"], "web");
    assert_eq!(list[0]["release"], 1);
    assert_eq!(list[0]["state"], "running");
    assert!(list[0]["uptime_secs"].as_i64().is_some(), "{ps:#}");
    let r = paas(&cli, here, &["ps"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.starts_with("PROCESS"), "{r}");
    assert!(r.stdout.contains("web") && r.stdout.contains("v1"), "{r}");

    // Output streams back, stdout and stderr; the exit code comes back too.
    let r = paas(
        &cli,
        here,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "echo out-line; echo err-line >&2; exit 3",
        ],
    );
    assert_eq!(r.code, 3, "{r}");
    assert!(
        r.stdout.contains("out-line") && r.stdout.contains("err-line"),
        "{r}"
    );
    let r = paas(&cli, here, &["run", "--", "sh", "-c", "exit 0"]);
    assert_eq!(r.code, 0, "{r}");
    // A client that goes away ends the command: its container is removed.
    let mut gone = cli
        .command(here)
        .args(["run", "--no-tty", "--", "sleep", "300"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while run_containers(&app).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the one-off never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    gone.kill().unwrap();
    gone.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !run_containers(&app).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the one-off outlived its client: {}",
            run_containers(&app)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The app's env, the -e extras, the volume.
    let r = paas(
        &cli,
        here,
        &[
            "run",
            "-e",
            "EXTRA=given",
            "--",
            "sh",
            "-c",
            "echo $PAAS_APP $PAAS_RELEASE $EXTRA; test -w /data",
        ],
    );
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains(&format!("{app} v1 given")), "{r}");

    // createsuperuser --noinput in a one-off container, on the app's database.
    let r = paas(
        &cli,
        here,
        &[
            "run",
            "-e",
            "DJANGO_SUPERUSER_USERNAME=boss",
            "-e",
            "DJANGO_SUPERUSER_PASSWORD=correct-horse-battery",
            "-e",
            "DJANGO_SUPERUSER_EMAIL=boss@example.com",
            "--",
            "python",
            "manage.py",
            "createsuperuser",
            "--noinput",
        ],
    );
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("Superuser created successfully"), "{r}");
    // One-off containers are removed once they end.
    assert_eq!(run_containers(&app), "");

    // At a terminal: an interactive session whose prompts are answered
    // (the password prompt reads the container's own terminal).
    let (code, screen) = paas_on_a_terminal(
        &cli,
        here,
        "run -- python manage.py createsuperuser",
        &[
            ("Username", "typist"),
            ("Email address:", "typist@example.com"),
            ("Password:", "another-long-passphrase-42"),
            ("Password (again):", "another-long-passphrase-42"),
        ],
    );
    assert_eq!(code, 0, "the terminal showed: {screen}");
    assert!(
        screen.contains("Superuser created successfully"),
        "{screen}"
    );
    // The password was not echoed: the container's terminal did that, not a pipe.
    assert!(!screen.contains("another-long-passphrase-42"), "{screen}");
    let (code, screen) = paas_on_a_terminal(&cli, here, "run -- sh -c 'tty; exit 5'", &[]);
    assert_eq!(code, 5, "the terminal showed: {screen}");
    assert!(
        screen.contains("/dev/pts/"),
        "the command has a terminal: {screen}"
    );
    let r = paas(
        &cli,
        here,
        &[
            "run",
            "--",
            "python",
            "manage.py",
            "shell",
            "-c",
            "from django.contrib.auth.models import User; print('users:', sorted(User.objects.values_list('username', flat=True)))",
        ],
    );
    assert!(r.stdout.contains("users: ['boss', 'typist']"), "{r}");
    assert_eq!(run_containers(&app), "");

    // Log in to the admin through the proxy: the CSRF cookie and token from
    // the form, a POST with Origin and Referer of the app's host.
    let host = format!("{app}.localhost");
    let page = http(
        d.http,
        "GET",
        &host,
        "/admin/login/?next=/admin/",
        &[],
        None,
    );
    assert_eq!(page.status, 200, "{}", page.text());
    let cookie = page
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .find_map(|(_, v)| v.strip_prefix("csrftoken="))
        .map(|v| v.split(';').next().unwrap().to_string())
        .expect("a csrftoken cookie");
    let token = form_value(&page.text(), "csrfmiddlewaretoken");
    let form = format!(
        "csrfmiddlewaretoken={token}&username=boss&password=correct-horse-battery&next=%2Fadmin%2F"
    );
    let origin = format!("http://{host}");
    let referer = format!("http://{host}/admin/login/?next=/admin/");
    let login = |form: &str| {
        http(
            d.http,
            "POST",
            &host,
            "/admin/login/?next=/admin/",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Cookie", &format!("csrftoken={cookie}")),
                ("Origin", &origin),
                ("Referer", &referer),
            ],
            Some(form.as_bytes()),
        )
    };
    let r = login(&form);
    assert_eq!(r.status, 302, "login: {} {}", r.status, r.text());
    assert_eq!(r.header("location"), Some("/admin/"), "{:?}", r.headers);
    // The test can fail: a wrong token is refused by Django's CSRF check.
    let r = login(&form.replace(
        &token,
        "wrong-token-wrong-token-wrong-token-wrong-token-wrong-token12",
    ));
    assert_eq!(r.status, 403, "{}", r.text());

    // paas logs: the web container's output (gunicorn's access log).
    let r = paas(&cli, here, &["logs"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("[web] ") && l.contains("/admin/login/")),
        "{r}"
    );
    let r = paas(&cli, here, &["logs", "--ps", "worker"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("has no worker container"), "{r}");
    // paas logs -f: a request made after it started shows up.
    let mut follow = cli
        .command(here)
        .args(["logs", "-f", "-n", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = follow.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(&mut stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    let r = d.get(&app, "/followed-marker-42/");
    assert_eq!(r.status, 404, "{}", r.text());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines_rx.recv_timeout(left) {
            Ok(line) if line.contains("/followed-marker-42/") => break,
            Ok(line) => seen.push(line),
            Err(_) => panic!("paas logs -f did not show the request within 30 s: {seen:?}"),
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
}
