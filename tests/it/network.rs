//! Attacks by a hostile app (and a hostile network) on paas's control
//! plane and on the other apps, performed from inside real app containers
//! against a daemon whose listeners are bound to 0.0.0.0, as an owner may
//! bind them: each probe that must fail has a twin that must succeed, made
//! by the same code, so a probe cannot pass by being broken.

use crate::harness::{http, Daemon, Project};
use std::path::Path;
use std::process::Command;

/// Opens a TCP connection to each `label=ip:port=host` argument (3 s to
/// connect, 3 s for the answer), sends `GET /` with that Host, and prints
/// `label ANSWERED <status line>` or `label BLOCKED <why>`: dropped
/// (timeout), refused, reset, or closed before a byte of an answer.
const PROBE: &str = r#"
import socket, sys
for arg in sys.argv[1:]:
    label, target, host = arg.split("=")
    ip, port = target.rsplit(":", 1)
    try:
        s = socket.create_connection((ip, int(port)), timeout=3)
        s.settimeout(3)
        s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host).encode())
        got = s.recv(200)
        s.close()
        if got.startswith(b"HTTP/"):
            print(label, "ANSWERED", got.split(b"\r\n")[0].decode())
        else:
            print(label, "BLOCKED closed-without-answer", got[:40])
    except Exception as e:
        print(label, "BLOCKED", type(e).__name__, e)
    sys.stdout.flush()
"#;

/// The verdict line of `label` in a probe's output.
fn verdict<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(label))
        .unwrap_or_else(|| panic!("the probe printed nothing for {label}:\n{out}"))
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The gateway (the host's address) of a Docker network.
fn gateway(network: &str) -> String {
    let gw = docker(&[
        "network",
        "inspect",
        network,
        "-f",
        "{{range .IPAM.Config}}{{.Gateway}} {{end}}",
    ]);
    gw.split_whitespace()
        .find(|g| g.contains('.'))
        .unwrap_or_else(|| panic!("network {network} has no IPv4 gateway: {gw:?}"))
        .to_string()
}

/// The host's first address (its own network's, not a Docker bridge's).
fn host_address() -> String {
    let out = Command::new("hostname").arg("-I").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|a| a.contains('.') && !a.starts_with("127."))
        .expect("hostname -I names an IPv4 address of the host")
        .to_string()
}

/// The IP address of an app's web container on its own network.
fn web_ip(app: &str) -> String {
    let id = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=paas.app={app}"),
        "--filter",
        "label=paas.process=web",
    ]);
    let id = id.lines().next().expect("the app has a web container");
    docker(&[
        "inspect",
        id,
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"paas-{app}\").IPAddress}}}}"),
    ])
}

fn run_probe_in_app(dir: &Path, targets: &[String]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paas"));
    cmd.args(["run", "--no-tty", "--", "python", "-c", PROBE])
        .args(targets)
        .current_dir(dir);
    for k in ["PAAS_URL", "PAAS_TOKEN", "PAAS_CONFIG", "PAAS_DATA_DIR"] {
        cmd.env_remove(k);
    }
    let out = cmd.output().expect("the paas binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "paas run of the probe: {text}");
    text
}

/// Removes a network this test made, even when it fails.
struct OwnNetwork(String);

impl Drop for OwnNetwork {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["network", "rm", &self.0])
            .output();
    }
}

/// Two apps on a daemon bound to 0.0.0.0. From a one-off container of app
/// A: the admin port is reset on its network's gateway and on another
/// address of the host, app B's container is out of reach, and the control
/// host on the public port is refused to it; the public port on the same
/// gateway and A's own web container answer. A container on a network paas
/// did not make reaches the admin port with the same code.
#[test]
fn apps_reach_neither_the_admin_port_nor_each_other() {
    let mut d = Daemon::start_bound(&[], "0.0.0.0");
    let a = d.app("neta");
    let b = d.app("netb");
    let pa = Project::from_fixture("blog");
    let pb = Project::from_fixture("blog");
    for (p, app) in [(&pa, &a), (&pb, &b)] {
        let (ok, out) = p.push(&d.remote(app));
        assert!(ok, "push of {app} rejected:\n{out}");
        assert!(p
            .git(&["remote", "add", "paas", &d.remote(app)])
            .status
            .success());
    }
    d.assert_serves(&a, "");
    d.assert_serves(&b, "");

    let gw = gateway(&format!("paas-{a}"));
    let other_host_addr = host_address();
    let (admin, public) = (d.admin, d.http);
    let targets = vec![
        format!("admin-gateway={gw}:{admin}=127.0.0.1"),
        format!("admin-other-host-address={other_host_addr}:{admin}=127.0.0.1"),
        format!("control-host={gw}:{public}=paas.localhost"),
        format!("public-own-site={gw}:{public}={a}.localhost"),
        format!("app-b={}:8000={b}.localhost", web_ip(&b)),
        format!("app-a={}:8000={a}.localhost", web_ip(&a)),
    ];
    let out = run_probe_in_app(pa.dir.path(), &targets);

    for label in ["admin-gateway", "admin-other-host-address", "app-b"] {
        let v = verdict(&out, label);
        assert!(v.contains("BLOCKED"), "{label} was reached: {v}\n{out}");
    }
    // The same code reaching what an app may reach: its own site through
    // the public port on the same gateway, its own container directly.
    let v = verdict(&out, "public-own-site");
    assert!(v.contains("ANSWERED HTTP/1.1 200"), "{v}\n{out}");
    let v = verdict(&out, "app-a");
    assert!(v.contains("ANSWERED HTTP/1.1 200"), "{v}\n{out}");
    // The public port answers the control host, with a refusal.
    let v = verdict(&out, "control-host");
    assert!(v.contains("ANSWERED HTTP/1.1 403"), "{v}\n{out}");

    // A container on a network paas did not make is no app: the admin
    // port answers it (the refusal is by network, not by "any container").
    let outsider = OwnNetwork(format!("paas-it-outsider-{}", &a[5..]));
    docker(&["network", "create", &outsider.0]);
    let target = format!("admin={}:{admin}=127.0.0.1", gateway(&outsider.0));
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        &outsider.0,
        "python:3.11-slim",
        "python",
        "-c",
        PROBE,
        &target,
    ]);
    let v = verdict(&out, "admin");
    assert!(v.contains("ANSWERED HTTP/1.1"), "{v}\n{out}");
    assert!(
        d.log_text()
            .contains("refused a connection to the control plane from an app's network"),
        "the refusal is in the daemon's log"
    );
}

/// `Host: paas.<domain>` on the public port would carry tokens in clear:
/// it is refused with where to go instead, for every path, while the admin
/// listener serves the same request (with `--https off`; with HTTPS on,
/// plain HTTP there redirects: `tls::https_serves_apps_over_http2_and_django_knows_it`).
#[test]
fn public_port_refuses_the_control_plane() {
    let d = Daemon::start();
    let bearer = format!("Bearer {}", d.token);
    let auth = [("Authorization", bearer.as_str())];
    for host in ["paas.localhost", "PAAS.localhost:80"] {
        for path in [
            "/",
            "/api/apps",
            "/login",
            "/x.git/info/refs?service=git-receive-pack",
        ] {
            let r = http(d.http, "GET", host, path, &auth, None);
            assert_eq!(r.status, 421, "{host}{path}: {}", r.text());
            assert!(
                r.text().contains("use the admin address")
                    && r.text().contains("ssh -N -L 8300:127.0.0.1:8300"),
                "{host}{path}: {}",
                r.text()
            );
        }
    }
    let r = d.admin_request("GET", "/api/apps", &auth, None);
    assert_eq!(r.status, 200, "{}", r.text());
}
