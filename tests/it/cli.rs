//! The `paas` client, the built binary, against a running daemon: the app
//! and the daemon inferred from the `paas` git remote, `--json`, tokens,
//! and exit codes (0 done, 1 the server said no, 2 usage).

use crate::harness::{CliEnv, Daemon, Project};
use std::path::Path;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Run `paas ARGS` in `dir` in the test's client environment (its
/// PAAS_URL and home, no other PAAS_* variable) plus `env`.
fn paas(cli: &CliEnv, dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = cli.command(dir);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the paas binary runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Run {
    fn ok(self, what: &str) -> Run {
        assert_eq!(
            self.code, 0,
            "{what}: exit {}\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        self
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
    /// Failed with `code` and one line on stderr containing `sentence`.
    fn fails(&self, code: i32, sentence: &str) {
        assert_eq!(
            self.code, code,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(
            self.stderr.contains(sentence),
            "stderr lacks {sentence:?}: {}",
            self.stderr
        );
    }
}

#[test]
fn cli_infers_the_app_speaks_json_and_manages_tokens() {
    let mut d = Daemon::start();
    let app = d.app("cli");
    // The app exists once pushed to; a branch push stores it, no deploy.
    let p = Project::from_fixture("not-django");
    let (ok, out) = p.push_ref(&d.remote(&app), "main:feature");
    assert!(ok, "{out}");
    let out = p.git(&["remote", "add", "paas", &d.remote(&app)]);
    assert!(out.status.success());
    let here = p.dir.path();
    let cli = d.cli();

    // No PAAS_TOKEN, no --app: both from the remote (PAAS_URL is always
    // given, so a daemon installed on this machine is never reached).
    let r = paas(&cli, here, &[], &["config:set", "GREETING=hello world"]).ok("config:set");
    assert!(r.stdout.contains("config saved"), "{}", r.stdout);
    let r = paas(&cli, here, &[], &["config", "--json"]).ok("config --json");
    assert_eq!(r.json(), serde_json::json!({ "GREETING": "hello world" }));
    let r = paas(&cli, here, &[], &["config"]).ok("config");
    assert_eq!(r.stdout.trim(), "GREETING=hello world");
    let r = paas(&cli, here, &[], &["releases", "--json"]).ok("releases --json");
    assert_eq!(r.json(), serde_json::json!([]));
    let r = paas(&cli, here, &[], &["releases"]).ok("releases");
    assert!(r.stdout.contains("no releases yet"), "{}", r.stdout);
    let r = paas(&cli, here, &[], &["apps", "--json"]).ok("apps --json");
    let apps = r.json();
    let names: Vec<&str> = apps
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [app.as_str()]);
    let r = paas(&cli, here, &[], &["config:unset", "GREETING"]).ok("config:unset");
    assert!(r.stdout.contains("config saved"), "{}", r.stdout);

    // Elsewhere: no remote, so --app is needed (usage: 2).
    let elsewhere = tempfile::tempdir().unwrap();
    let env = [("PAAS_TOKEN", d.token.as_str())];
    paas(&cli, elsewhere.path(), &env, &["config"]).fails(
        2,
        "no --app given and no `paas` git remote here: pass --app NAME or run inside the app's git checkout",
    );
    let r = paas(
        &cli,
        elsewhere.path(),
        &env,
        &["config", "--app", &app, "--json"],
    )
    .ok("--app");
    assert_eq!(r.json(), serde_json::json!({}));
    paas(
        &cli,
        elsewhere.path(),
        &env,
        &["releases", "--app", "nosuch"],
    )
    .fails(1, "no app named");
    paas(&cli, here, &[], &["config:set", "NOEQUALS"]).fails(2, "is not KEY=VALUE");
    paas(&cli, here, &[], &["rollback", "latest"]).fails(2, "is not a release like v3");
    paas(&cli, elsewhere.path(), &[], &["apps"]).fails(2, "no token: set PAAS_TOKEN");
    paas(
        &cli,
        elsewhere.path(),
        &[("PAAS_URL", "http://127.0.0.1:1"), ("PAAS_TOKEN", "x")],
        &["apps"],
    )
    .fails(1, "cannot reach paas at http://127.0.0.1:1");
    assert_eq!(paas(&cli, here, &[], &["no-such-command"]).code, 2);

    // Tokens: created (the secret alone on stdout), listed, used, revoked.
    let r = paas(&cli, here, &[], &["tokens:create", "--name", "laptop"]).ok("tokens:create");
    let secret = r.stdout.trim().to_string();
    assert!(secret.starts_with("paas_"), "{}", r.stdout);
    assert!(r.stderr.contains("shown only now"), "{}", r.stderr);
    paas(&cli, here, &[], &["tokens:create", "--name", "laptop"]).fails(1, "exists already");
    paas(&cli, here, &[], &["tokens:create", "--name", "my laptop"])
        .fails(2, "is not a token name");
    let with = [("PAAS_TOKEN", secret.as_str())];
    paas(&cli, elsewhere.path(), &with, &["apps"]).ok("apps with the new token");
    let r = paas(&cli, here, &[], &["tokens", "--json"]).ok("tokens --json");
    let list = r.json();
    assert_eq!(list[0]["name"], "laptop");
    assert!(list[0]["last_used_at"].as_i64().is_some(), "{list:#}");
    let r = paas(&cli, here, &[], &["tokens"]).ok("tokens");
    assert!(
        r.stdout.contains("laptop") && r.stdout.contains("UTC"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains(&secret));
    // A deploy-only token: its scope shows, and past it, it is refused.
    let r = paas(
        &cli,
        here,
        &[],
        &["tokens:create", "--name", "ci", "--app", &app],
    )
    .ok("tokens:create --app");
    assert!(
        r.stderr
            .contains(&format!("may only push to and read the app {app}")),
        "{}",
        r.stderr
    );
    let ci = r.stdout.trim().to_string();
    let with_ci = [("PAAS_TOKEN", ci.as_str())];
    paas(&cli, here, &with_ci, &["releases"]).ok("releases with the deploy token");
    paas(&cli, here, &with_ci, &["config"]).fails(1, "may only deploy and read the app");
    paas(&cli, here, &with_ci, &["tokens:create", "--name", "more"])
        .fails(1, "may only deploy and read the app");
    let r = paas(&cli, here, &[], &["tokens"]).ok("tokens");
    assert!(r.stdout.contains(&format!("deploy {app}")), "{}", r.stdout);
    paas(&cli, here, &[], &["tokens:revoke", "ci"]).ok("tokens:revoke ci");
    paas(&cli, here, &[], &["tokens:revoke", "laptop"]).ok("tokens:revoke");
    paas(&cli, here, &[], &["tokens:revoke", "laptop"]).fails(1, "no token named \"laptop\"");
    paas(&cli, elsewhere.path(), &with, &["apps"]).fails(
        1,
        "the daemon refused the token (HTTP 401): it is wrong or was revoked",
    );
    let r = paas(&cli, here, &[], &["tokens", "--json"]).ok("tokens after revoke");
    assert_eq!(r.json(), serde_json::json!([]));
}

/// Shell completions name the commands, colons and all.
#[test]
fn cli_completions() {
    let cli = CliEnv::no_daemon();
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let r = paas(&cli, dir.path(), &[], &["completions", shell]).ok(shell);
        assert!(
            r.stdout.contains("tokens:create") && r.stdout.contains("config:set"),
            "{shell}: {}",
            r.stdout.chars().take(500).collect::<String>()
        );
    }
    assert_eq!(
        paas(&cli, dir.path(), &[], &["completions", "tcsh"]).code,
        2
    );
}

/// `paas login` checks and saves the URL and token (0600) for later
/// commands; `apps:create` and `apps:destroy` bracket an app's life.
#[test]
fn cli_login_then_apps_create_and_destroy() {
    let d = Daemon::start();
    let cli = d.cli();
    let here = cli.home.path();
    let url = cli.url.clone();
    // Without XDG_CONFIG_HOME the login goes to $HOME/.config.
    let env = [("XDG_CONFIG_HOME", "")];

    paas(&cli, here, &env, &["login", &url, "--token", "wrong"]).fails(1, "HTTP 401");
    paas(
        &cli,
        here,
        &env,
        &["login", "localhost:8300", "--token", "x"],
    )
    .fails(2, "is not a URL");
    paas(&cli, here, &env, &["apps"]).fails(2, "paas login URL");
    let r = paas(&cli, here, &env, &["login", &url, "--token", &d.token]).ok("login");
    assert!(r.stdout.contains("Logged in"), "{}", r.stdout);
    let saved = here.join(".config/paas/login.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", saved.display());

    // From now on no token is needed (the URL is the saved one).
    let name = format!("made-{:x}", std::process::id());
    let r = paas(&cli, here, &env, &["apps:create", &name]).ok("apps:create");
    assert!(
        r.stdout
            .contains(&format!("git remote add paas {url}/{name}.git")),
        "{}",
        r.stdout
    );
    paas(&cli, here, &env, &["apps:create", &name]).fails(1, "exists already");
    paas(&cli, here, &env, &["apps:create", "Bad_Name"]).fails(1, "Bad_Name");
    let r = paas(&cli, here, &env, &["apps", "--json"]).ok("apps");
    assert!(r.stdout.contains(&name), "{}", r.stdout);

    // Domains of an app with nothing live yet: kept for its first deploy.
    let r = paas(
        &cli,
        here,
        &env,
        &["domains:add", "www.made.test", "-a", &name],
    )
    .ok("domains:add");
    assert!(
        r.stdout.contains("served from the next deploy"),
        "{}",
        r.stdout
    );
    paas(
        &cli,
        here,
        &env,
        &["domains:add", "made.localhost", "-a", &name],
    )
    .fails(1, "paas's own domain");
    let r = paas(&cli, here, &env, &["domains", "-a", &name, "--json"]).ok("domains");
    assert_eq!(r.json()["domains"], serde_json::json!(["www.made.test"]));
    let r = paas(&cli, here, &env, &["domains", "-a", &name]).ok("domains");
    assert!(
        r.stdout.contains(&format!("{name}.localhost (default)")),
        "{}",
        r.stdout
    );
    paas(
        &cli,
        here,
        &env,
        &["domains:remove", "www.made.test", "-a", &name],
    )
    .ok("domains:remove");
    paas(
        &cli,
        here,
        &env,
        &["domains:remove", "www.made.test", "-a", &name],
    )
    .fails(1, "is not a domain of");

    paas(
        &cli,
        here,
        &env,
        &["apps:destroy", "-a", &name, "--confirm", "other"],
    )
    .fails(1, "confirm");
    let r = paas(
        &cli,
        here,
        &env,
        &["apps:destroy", "-a", &name, "--confirm", &name],
    )
    .ok("destroy");
    assert!(r.stdout.contains("no data to back up"), "{}", r.stdout);
    let r = paas(&cli, here, &env, &["apps", "--json"]).ok("apps");
    assert!(!r.stdout.contains(&name), "{}", r.stdout);
}

/// `git` in `dir` as the test's client user: its own home (the global git
/// config `paas login` writes), no system config, never a prompt.
fn user_git(cli: &CliEnv, dir: &Path, args: &[&str]) -> (bool, String) {
    let mut cmd = std::process::Command::new("git");
    cli.apply(&mut cmd, dir);
    let mut child = cmd
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("git runs");
    // A credential exchange that hangs is a failure of its own: bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("git {args:?} still runs after 300 s: a credential prompt or a hang");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// After `paas login`, git gets the token from `paas git-credential`: a
/// remote without a token pushes and deploys, and neither the repository's
/// nor the user's git config holds the token; a wrong saved token is git's
/// authentication failure at once, not a prompt or a hang.
#[test]
fn git_remotes_carry_no_token_after_paas_login() {
    let mut d = Daemon::start();
    let app = d.app("cred");
    let cli = d.cli();
    let p = Project::from_fixture("blog");
    let here = p.dir.path();
    let url = cli.url.clone();

    let r = paas(&cli, here, &[], &["login", &url, "--token", &d.token]).ok("login");
    assert!(r.stdout.contains("credential helper"), "{}", r.stdout);
    assert!(!r.stdout.contains(&d.token), "{}", r.stdout);
    let remote = format!("{url}/{app}.git");
    assert!(user_git(&cli, here, &["remote", "add", "paas", &remote]).0);
    let (ok, out) = user_git(&cli, here, &["push", "paas", "main"]);
    assert!(ok, "push through the credential helper:\n{out}");
    assert!(out.contains("v1 is live"), "{out}");
    d.assert_serves(&app, "");

    // The helper is there, the token is not, in any git config.
    let global = std::fs::read_to_string(cli.home.path().join(".gitconfig"))
        .expect("paas login wrote the user's global git config");
    assert!(global.contains("git-credential"), "{global}");
    assert!(global.contains("username = paas"), "{global}");
    let local = std::fs::read_to_string(here.join(".git/config")).unwrap();
    for (name, text) in [("global", &global), (".git/config", &local)] {
        assert!(
            !text.contains(&d.token),
            "the token is in the {name} git config"
        );
    }
    assert!(!cli.home.path().join(".git-credentials").exists());
    // The CLI takes the app from the remote and the token from the login.
    let r = paas(&cli, here, &[], &["releases", "--json"]).ok("releases");
    assert_eq!(r.json()[0]["version"], 1, "{}", r.stdout);

    // The helper answers for the saved URL only.
    let helper = |request: &str| {
        use std::io::Write;
        let mut child = cli
            .command(here)
            .args(["git-credential", "get"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(request.as_bytes())
            .unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    };
    let host = url.trim_start_matches("http://");
    let answer = helper(&format!("protocol=http\nhost={host}\n\n"));
    assert_eq!(answer, format!("username=paas\npassword={}\n", d.token));
    assert_eq!(helper("protocol=http\nhost=203.0.113.9:8300\n\n"), "");

    // A wrong saved token: git's own authentication failure, no hang.
    let login = cli.home.path().join(".config/paas/login.json");
    let json = serde_json::json!({ "url": url, "token": "not-the-token" }).to_string();
    std::fs::write(&login, json).unwrap();
    p.replace("Notes v1", "Notes v2");
    p.commit("second");
    let (ok, out) = user_git(&cli, here, &["push", "paas", "main"]);
    assert!(!ok, "{out}");
    assert!(out.contains("Authentication failed"), "{out}");
}

/// The subcommands `paas help` lists (visible aliases left out).
fn subcommands(cli: &CliEnv, dir: &Path) -> Vec<String> {
    let r = paas(cli, dir, &[], &["help"]).ok("help");
    r.stdout
        .split("Commands:")
        .nth(1)
        .expect("help lists commands")
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.strip_prefix("  ")?.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// Every command that offers `--json` (found from clap's own help, so a new
/// command is covered the day it is added) prints JSON a script can parse:
/// listings, actions, streams (one object a line) and one-off runs.
#[test]
fn every_command_offering_json_prints_json() {
    // With HTTPS on, so `certs` has certificates to list.
    let mut d = Daemon::start_https(&[]);
    let app = d.app("json");
    let made = d.app("made");
    let p = Project::from_fixture("uploads");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    let cli = d.cli();
    let here = p.dir.path();
    let env = [
        ("PAAS_TOKEN", d.token.as_str()),
        ("PAAS_BACKUP_PASSPHRASE", "cli json passphrase"),
    ];
    // The offsite commands need storage: moto's S3 server, as in offsite::.
    let s3 = crate::harness::S3Server::start("paas-cli-json");
    let (offsite_url, s3_endpoint) = ("s3://paas-cli-json/cli".to_string(), s3.endpoint());

    let offering: Vec<String> = subcommands(&cli, here)
        .into_iter()
        .filter(|c| {
            paas(&cli, here, &[], &[c, "--help"])
                .ok(c)
                .stdout
                .contains("--json")
        })
        .collect();
    assert!(offering.len() > 20, "{offering:?}");

    let a = app.as_str();
    let token_name = format!("t{:x}", std::process::id());
    // In an order that works: each command's precondition is made by an
    // earlier one (a backup to restore, two releases to roll back between).
    let mut backup_id = String::new();
    let steps: Vec<Vec<String>> = [
        vec!["apps"],
        vec!["apps:create", &made],
        vec!["releases", "-a", a],
        vec!["config", "-a", a],
        vec!["config:set", "-a", a, "GREETING=hi"],
        vec!["config:unset", "-a", a, "GREETING"],
        vec!["restart", "-a", a],
        vec!["rollback", "-a", a],
        vec!["ps", "-a", a],
        vec!["logs", "-a", a, "-n", "5"],
        vec!["run", "-a", a, "--", "echo", "one-off"],
        vec!["domains", "-a", a],
        vec!["domains:add", "-a", a, "www.json.test"],
        vec!["domains:remove", "-a", a, "www.json.test"],
        vec![
            "backups:offsite:set",
            &offsite_url,
            "--endpoint",
            &s3_endpoint,
            "--access-key-id",
            "moto-id",
            "--secret-access-key",
            "moto-secret",
        ],
        vec!["backups:offsite"],
        vec!["backups:offsite:key"],
        vec!["backups:create", "-a", a],
        vec!["backups", "-a", a],
        vec!["backups:drill", "-a", a],
        vec!["server:backup"],
        vec!["backups:restore", "-a", a, "ID", "--confirm", a],
        vec!["pg:create", "-a", a],
        vec!["pg:info", "-a", a],
        vec!["pg:destroy", "-a", a, "--confirm", a],
        vec!["cron", "-a", a],
        vec!["system:df"],
        vec!["system:prune"],
        vec!["certs", "-a", a],
        vec!["certs:ca"],
        vec!["tokens:create", "--name", &token_name],
        vec!["tokens"],
        vec!["tokens:revoke", &token_name],
        vec!["apps:destroy", "-a", &made, "--confirm", &made],
    ]
    .into_iter()
    .map(|s| s.into_iter().map(str::to_string).collect())
    .collect();
    // server:restore runs on a fresh install only (it refuses a daemon that
    // has apps); offsite::a_fresh_install_comes_back_from_a_server_backup runs it.
    let fresh_install_only = ["server:restore"];
    for c in offering
        .iter()
        .filter(|c| !fresh_install_only.contains(&c.as_str()))
    {
        assert!(
            steps.iter().any(|s| &s[0] == c),
            "`paas {c}` offers --json but this test does not run it: add it to the steps"
        );
    }
    for step in steps {
        let mut args: Vec<&str> = step
            .iter()
            .map(|s| if s == "ID" { backup_id.as_str() } else { s })
            .collect();
        // Before a `--` (after it, words are the one-off command's own).
        let at = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        args.insert(at, "--json");
        let what = args.join(" ");
        let r = paas(&cli, here, &env, &args).ok(&what);
        let values: Vec<serde_json::Value> = if step[0] == "logs" {
            // A stream: one object a line.
            r.stdout
                .lines()
                .map(|l| {
                    serde_json::from_str(l)
                        .unwrap_or_else(|e| panic!("{what}: a line is not JSON ({e}): {l}"))
                })
                .collect()
        } else {
            vec![r.json()]
        };
        assert!(!values.is_empty(), "{what}: no output");
        match step[0].as_str() {
            "backups:create" => {
                backup_id = values[0]["id"].as_str().expect("a backup id").to_string()
            }
            "backups" => assert_eq!(values[0][0]["id"], backup_id.as_str(), "{what}"),
            "run" => {
                assert_eq!(values[0]["exit_code"], 0, "{what}");
                assert!(values[0]["output"].as_str().unwrap().contains("one-off"));
            }
            "logs" => assert!(values.iter().all(|v| v["line"].is_string()), "{what}"),
            _ => {}
        }
    }
}
