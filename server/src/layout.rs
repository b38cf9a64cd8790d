//! Names and paths: what paas calls things on the host and in the engine.
//!
//! Every name a container, network, image, label or folder gets is made
//! here, so two parts never spell the same thing two ways.
//!
//! Under the data dir:
//! - `apps/<app>/data/` the app's volume, mounted at /data (SQLite, `media/`);
//! - `apps/<app>/releases/v<N>/` a release's static files;
//! - `backups/<app>/<id>/` backups with their manifest;
//! - `postgres/` the shared PostgreSQL server's data and per-app records;
//! - `repos/<app>.git` the bare repositories.

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The port every web container listens on (its `PORT`).
pub const APP_PORT: u16 = 8000;
/// Uid:gid the buildpack's images run as; owns the app's persistent volume.
pub const APP_UID: u32 = 10001;
/// What every app container runs as (the buildpack's `app` user). Set at
/// run time rather than by a `USER` step, which would cost a build step per push.
pub const APP_USER: &str = "10001:10001";

/// The Docker network of an app's containers.
pub fn network_name(app: &str) -> String {
    format!("paas-{app}")
}

/// The label every container of an app carries.
pub fn labels_app(app: &str) -> Vec<(String, String)> {
    vec![("paas.app".to_string(), app.to_string())]
}

/// The labels of a release's container (`process`: web, worker, run, …).
pub fn labels(app: &str, version: i64, process: Option<&str>) -> Vec<(String, String)> {
    let mut l = labels_app(app);
    l.push(("paas.release".into(), version.to_string()));
    if let Some(p) = process {
        l.push(("paas.process".into(), p.into()));
    }
    l
}

/// A config var name: a letter or `_`, then letters, digits and `_`.
pub fn valid_var_name(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The tag a push's build gives its image.
pub fn built_tag(app: &str, version: i64) -> String {
    format!("paas/{app}:v{version}")
}

/// `apps/<app>/releases/v<N>`: a release's files on the host (static files).
pub fn release_dir(data_dir: &Path, app: &str, version: i64) -> PathBuf {
    data_dir
        .join("apps")
        .join(app)
        .join("releases")
        .join(format!("v{version}"))
}

/// The app's volume on the host, mounted at /data.
pub fn volume_dir(data_dir: &Path, app: &str) -> PathBuf {
    data_dir.join("apps").join(app).join("data")
}

/// The app's SQLite database inside its volume.
pub fn sqlite_path(data_dir: &Path, app: &str) -> PathBuf {
    volume_dir(data_dir, app).join("db.sqlite3")
}

/// The app's uploads inside its volume.
pub fn media_path(data_dir: &Path, app: &str) -> PathBuf {
    volume_dir(data_dir, app).join("media")
}

/// Where the records of an app's scheduled job runs live.
pub fn cron_dir(data_dir: &Path, app: &str) -> PathBuf {
    data_dir.join("apps").join(app).join("cron")
}

/// Where an app's backups live.
pub fn backups_dir(data_dir: &Path, app: &str) -> PathBuf {
    data_dir.join("backups").join(app)
}

/// The PostgreSQL server's state: its data dir, superuser password, app records.
pub fn pg_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("postgres")
}

/// One app's database record (0600 JSON).
pub fn pg_app_file(data_dir: &Path, app: &str) -> PathBuf {
    pg_dir(data_dir).join("apps").join(format!("{app}.json"))
}

/// Short stable tag of a data dir: two daemons on one engine (tests, a
/// staging copy) never share a PostgreSQL server.
fn data_dir_tag(data_dir: &Path) -> String {
    let digest = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    hex(&digest[..4])
}

/// The name of this daemon's PostgreSQL server container.
pub fn server_name(data_dir: &Path) -> String {
    format!("paas-postgres-{}", data_dir_tag(data_dir))
}

/// The server's own network (underscores: no app network can be named so).
pub fn server_network(data_dir: &Path) -> String {
    format!("paas_postgres_{}", data_dir_tag(data_dir))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a file readable by root only, atomically (temp file + rename).
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_data_dirs_never_share_a_server() {
        assert_ne!(server_name(Path::new("/a")), server_name(Path::new("/b")));
        assert!(server_network(Path::new("/a")).contains('_'));
        assert_eq!(network_name("blog"), "paas-blog");
    }
}
