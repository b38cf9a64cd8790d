//! The `paas` client, the built binary, against a running daemon: the app
//! and the daemon inferred from the `paas` git remote, `--json`, tokens,
//! and exit codes (0 done, 1 the server said no, 2 usage).

use crate::harness::{Daemon, Project};
use std::path::Path;
use std::process::Command;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Run `paas ARGS` in `dir` with only the given PAAS_* variables.
fn paas(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paas"));
    cmd.args(args).current_dir(dir);
    for k in ["PAAS_URL", "PAAS_TOKEN", "PAAS_CONFIG", "PAAS_DATA_DIR"] {
        cmd.env_remove(k);
    }
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

    // No PAAS_URL, no PAAS_TOKEN, no --app: all from the remote.
    let r = paas(here, &[], &["config:set", "GREETING=hello world"]).ok("config:set");
    assert!(r.stdout.contains("config saved"), "{}", r.stdout);
    let r = paas(here, &[], &["config", "--json"]).ok("config --json");
    assert_eq!(r.json(), serde_json::json!({ "GREETING": "hello world" }));
    let r = paas(here, &[], &["config"]).ok("config");
    assert_eq!(r.stdout.trim(), "GREETING=hello world");
    let r = paas(here, &[], &["releases", "--json"]).ok("releases --json");
    assert_eq!(r.json(), serde_json::json!([]));
    let r = paas(here, &[], &["releases"]).ok("releases");
    assert!(r.stdout.contains("no releases yet"), "{}", r.stdout);
    let r = paas(here, &[], &["apps", "--json"]).ok("apps --json");
    let apps = r.json();
    let names: Vec<&str> = apps
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [app.as_str()]);
    let r = paas(here, &[], &["config:unset", "GREETING"]).ok("config:unset");
    assert!(r.stdout.contains("config saved"), "{}", r.stdout);

    // Elsewhere: no remote, so --app is needed (usage: 2).
    let elsewhere = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", d.admin);
    let env = [("PAAS_URL", url.as_str()), ("PAAS_TOKEN", d.token.as_str())];
    paas(elsewhere.path(), &env, &["config"]).fails(
        2,
        "no --app given and no `paas` git remote here: pass --app NAME or run inside the app's git checkout",
    );
    let r = paas(elsewhere.path(), &env, &["config", "--app", &app, "--json"]).ok("--app");
    assert_eq!(r.json(), serde_json::json!({}));
    paas(elsewhere.path(), &env, &["releases", "--app", "nosuch"]).fails(1, "no app named");
    paas(here, &[], &["config:set", "NOEQUALS"]).fails(2, "is not KEY=VALUE");
    paas(here, &[], &["rollback", "latest"]).fails(2, "is not a release like v3");
    paas(elsewhere.path(), &[("PAAS_URL", url.as_str())], &["apps"])
        .fails(2, "no token: set PAAS_TOKEN");
    paas(
        elsewhere.path(),
        &[("PAAS_URL", "http://127.0.0.1:1"), ("PAAS_TOKEN", "x")],
        &["apps"],
    )
    .fails(1, "cannot reach paas at http://127.0.0.1:1");
    assert_eq!(paas(here, &[], &["no-such-command"]).code, 2);

    // Tokens: created (the secret alone on stdout), listed, used, revoked.
    let r = paas(here, &[], &["tokens:create", "--name", "laptop"]).ok("tokens:create");
    let secret = r.stdout.trim().to_string();
    assert!(secret.starts_with("paas_"), "{}", r.stdout);
    assert!(r.stderr.contains("shown only now"), "{}", r.stderr);
    paas(here, &[], &["tokens:create", "--name", "laptop"]).fails(1, "exists already");
    paas(here, &[], &["tokens:create", "--name", "my laptop"]).fails(2, "is not a token name");
    let with = [("PAAS_URL", url.as_str()), ("PAAS_TOKEN", secret.as_str())];
    paas(elsewhere.path(), &with, &["apps"]).ok("apps with the new token");
    let r = paas(here, &[], &["tokens", "--json"]).ok("tokens --json");
    let list = r.json();
    assert_eq!(list[0]["name"], "laptop");
    assert!(list[0]["last_used_at"].as_i64().is_some(), "{list:#}");
    let r = paas(here, &[], &["tokens"]).ok("tokens");
    assert!(
        r.stdout.contains("laptop") && r.stdout.contains("UTC"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains(&secret));
    paas(here, &[], &["tokens:revoke", "laptop"]).ok("tokens:revoke");
    paas(here, &[], &["tokens:revoke", "laptop"]).fails(1, "no token named \"laptop\"");
    paas(elsewhere.path(), &with, &["apps"]).fails(
        1,
        "the daemon refused the token (HTTP 401): it is wrong or was revoked",
    );
    let r = paas(here, &[], &["tokens", "--json"]).ok("tokens after revoke");
    assert_eq!(r.json(), serde_json::json!([]));
}

/// Shell completions name the commands, colons and all.
#[test]
fn cli_completions() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let r = paas(dir.path(), &[], &["completions", shell]).ok(shell);
        assert!(
            r.stdout.contains("tokens:create") && r.stdout.contains("config:set"),
            "{shell}: {}",
            r.stdout.chars().take(500).collect::<String>()
        );
    }
    assert_eq!(paas(dir.path(), &[], &["completions", "tcsh"]).code, 2);
}

/// `paas login` checks and saves the URL and token (0600) for later
/// commands; `apps:create` and `apps:destroy` bracket an app's life.
#[test]
fn cli_login_then_apps_create_and_destroy() {
    let d = Daemon::start();
    let home = tempfile::tempdir().unwrap();
    let here = home.path();
    let home_env = here.to_str().unwrap();
    let url = format!("http://127.0.0.1:{}", d.admin);
    let env = [("HOME", home_env), ("XDG_CONFIG_HOME", "")];

    paas(here, &env, &["login", &url, "--token", "wrong"]).fails(1, "HTTP 401");
    paas(here, &env, &["login", "localhost:8300", "--token", "x"]).fails(2, "is not a URL");
    paas(here, &env, &["apps"]).fails(2, "paas login URL");
    let r = paas(here, &env, &["login", &url, "--token", &d.token]).ok("login");
    assert!(r.stdout.contains("Logged in"), "{}", r.stdout);
    let saved = here.join(".config/paas/login.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", saved.display());

    // From now on no URL and no token are needed.
    let name = format!("made-{:x}", std::process::id());
    let r = paas(here, &env, &["apps:create", &name]).ok("apps:create");
    assert!(
        r.stdout
            .contains(&format!("git remote add paas {url}/{name}.git")),
        "{}",
        r.stdout
    );
    paas(here, &env, &["apps:create", &name]).fails(1, "exists already");
    paas(here, &env, &["apps:create", "Bad_Name"]).fails(1, "Bad_Name");
    let r = paas(here, &env, &["apps", "--json"]).ok("apps");
    assert!(r.stdout.contains(&name), "{}", r.stdout);

    // Domains of an app with nothing live yet: kept for its first deploy.
    let r = paas(here, &env, &["domains:add", "www.made.test", "-a", &name]).ok("domains:add");
    assert!(
        r.stdout.contains("served from the next deploy"),
        "{}",
        r.stdout
    );
    paas(here, &env, &["domains:add", "made.localhost", "-a", &name]).fails(1, "paas's own domain");
    let r = paas(here, &env, &["domains", "-a", &name, "--json"]).ok("domains");
    assert_eq!(r.json()["domains"], serde_json::json!(["www.made.test"]));
    let r = paas(here, &env, &["domains", "-a", &name]).ok("domains");
    assert!(
        r.stdout.contains(&format!("{name}.localhost (default)")),
        "{}",
        r.stdout
    );
    paas(
        here,
        &env,
        &["domains:remove", "www.made.test", "-a", &name],
    )
    .ok("domains:remove");
    paas(
        here,
        &env,
        &["domains:remove", "www.made.test", "-a", &name],
    )
    .fails(1, "is not a domain of");

    paas(
        here,
        &env,
        &["apps:destroy", "-a", &name, "--confirm", "other"],
    )
    .fails(1, "confirm");
    let r = paas(
        here,
        &env,
        &["apps:destroy", "-a", &name, "--confirm", &name],
    )
    .ok("destroy");
    assert!(r.stdout.contains("no data to back up"), "{}", r.stdout);
    let r = paas(here, &env, &["apps", "--json"]).ok("apps");
    assert!(!r.stdout.contains(&name), "{}", r.stdout);
}
