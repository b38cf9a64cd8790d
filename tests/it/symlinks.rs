//! Symlinks in a pushed tree: the image gets them as they are, but the
//! daemon never reads a file through one. A Procfile, paas.toml or
//! requirements include committed as a link to a host file (the admin token,
//! /etc/shadow) must not show that file in the push output.

use crate::harness::{Daemon, Project};
use std::process::Command;

/// A host file holding a unique secret, in a folder of its own: (folder, secret).
fn host_secret() -> (tempfile::TempDir, String) {
    let dir = tempfile::Builder::new()
        .prefix("paas-host-")
        .tempdir()
        .unwrap();
    let secret = format!("hostsecret{:x}", rand_u32());
    (dir, secret)
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish() as u32
}

/// A Procfile and a paas.toml linked to a host file are not read: had they
/// been, the process name or the TOML error would quote the secret. The
/// deploy goes on without them, and the image holds the links as links.
#[test]
fn a_procfile_and_paas_toml_linked_to_a_host_file_are_never_read() {
    let (host, secret) = host_secret();
    let file = host.path().join("token");
    // A valid Procfile line (its process name would be listed) and bad TOML
    // (whose parse error would quote it).
    std::fs::write(&file, format!("{secret}: sleep 1000\n")).unwrap();
    let mut d = Daemon::start();
    let app = d.app("symlinked");
    let p = Project::from_fixture("blog");
    std::os::unix::fs::symlink(&file, p.dir.path().join("Procfile")).unwrap();
    std::os::unix::fs::symlink(&file, p.dir.path().join("paas.toml")).unwrap();
    p.commit("Procfile and paas.toml as links to a host file");

    let (ok, out) = p.push(&d.remote(&app));
    assert!(!out.contains(&secret), "the host file leaked:\n{out}");
    assert!(
        !d.log_text().contains(&secret),
        "the host file leaked into the daemon's log"
    );
    assert!(ok, "push rejected:\n{out}");
    assert!(
        out.contains("paas reads no file through one") && out.contains("Procfile"),
        "the push says the links were not read:\n{out}"
    );
    assert!(!out.contains("Procfile processes"), "{out}");
    d.assert_serves(&app, "Notes v1");

    // In the image the links are links, dangling there.
    let out = Command::new("docker")
        .args(["run", "--rm", "--entrypoint", "readlink"])
        .arg(format!("paas/{app}:v1"))
        .arg("/app/Procfile")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        file.display().to_string(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `-r` includes reached through a symlink (a linked file, or a file below a
/// linked folder) are refused before the build, without reading the target:
/// the host file's own `-r` line would otherwise be quoted in the error.
#[test]
fn requirements_includes_through_a_symlink_are_refused_unread() {
    let (host, secret) = host_secret();
    std::fs::write(
        host.path().join("extra.txt"),
        format!("-r {secret}.txt\nDjango>=4.2,<5.0\n"),
    )
    .unwrap();
    let mut d = Daemon::start();
    let app = d.app("symlinkreq");
    let p = Project::from_fixture("blog");
    let cases = [
        ("extra.txt", "extra.txt", host.path().join("extra.txt")),
        ("reqs/extra.txt", "reqs", host.path().to_path_buf()),
    ];
    for (include, link, target) in cases {
        std::fs::write(
            p.dir.path().join("requirements.txt"),
            format!("-r {include}\n"),
        )
        .unwrap();
        let _ = std::fs::remove_file(p.dir.path().join("extra.txt"));
        let _ = std::fs::remove_file(p.dir.path().join("reqs"));
        std::os::unix::fs::symlink(&target, p.dir.path().join(link)).unwrap();
        p.commit(&format!("-r {include} through a symlink"));
        let (ok, out) = p.push(&d.remote(&app));
        assert!(!ok, "push accepted:\n{out}");
        assert!(!out.contains(&secret), "the host file leaked:\n{out}");
        assert!(
            out.contains(&format!("includes {include}, which is not a file in the repository (paas follows no symlink)")),
            "{out}"
        );
    }
    assert!(!d.log_text().contains(&secret));
}
