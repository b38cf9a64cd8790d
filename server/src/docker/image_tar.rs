//! A release image made without a builder: one layer on top of an image the
//! engine holds, handed to it as a `docker load` archive.
//!
//! Why: on this engine's storage driver (fuse-overlayfs, a "naive diff"
//! driver) every builder step and every `docker commit` walks the whole
//! image to find what changed — about 3 s for a slim Python image, more with
//! a virtualenv. A layer paas writes itself is loaded in about 0.1 s: the
//! engine already has every parent layer (it skips those it holds, so the
//! archive carries the new layer only) and unpacks just this one.
//!
//! The layer is made of folders downloaded from the finished build
//! container (each download is a tar whose entries start at the folder's
//! own name), re-rooted at their place in the image. Its digest (the
//! `diff_id`) is the SHA-256 of the uncompressed layer tar.

use std::io::{Read, Seek, Write};
use std::path::{Component, Path};

use sha2::{Digest, Sha256};

/// What the new image's config says beyond its parent's.
#[derive(Debug, Clone, Default)]
pub struct ImageSettings {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// Set on top of the parent's environment (same name: replaced).
    pub env: Vec<(String, String)>,
    pub working_dir: String,
    pub labels: Vec<(String, String)>,
    pub exposed_port: Option<u16>,
}

/// What the new image takes from its parent.
#[derive(Debug, Clone, Default)]
pub struct Parent {
    /// `sha256:…` of each layer, bottom first.
    pub diff_ids: Vec<String>,
    /// `NAME=value`.
    pub env: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub architecture: String,
    pub os: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A relative path of plain names only (no `..`, no root, not empty).
fn plain(path: &Path) -> bool {
    path.components().count() > 0 && path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Writes the layer to `out` from `(download tar, parent folder in the
/// image)` pairs: an entry `static/app.css` of a download of `/srv/static`
/// becomes `srv/static/app.css`. Entries keep their type, mode, owner and
/// time; hard links are re-rooted like paths, symlink targets are kept as
/// they are (they resolve inside the container). An entry whose path is not
/// plain (absolute, or climbing with `..`) is refused. Returns the layer's
/// `sha256:…` digest.
pub fn write_layer(downloads: &[(&Path, &str)], out: &Path) -> std::io::Result<String> {
    let file = std::fs::File::create(out)?;
    let hashing = Hashing {
        inner: std::io::BufWriter::new(file),
        hash: Sha256::new(),
    };
    let mut b = tar::Builder::new(hashing);
    b.follow_symlinks(false);
    for (tar_file, parent) in downloads {
        let parent = Path::new(parent.trim_start_matches('/'));
        if parent.components().count() > 0 && !plain(parent) {
            return Err(std::io::Error::other(format!(
                "the layer's folder {} is not a plain path",
                parent.display()
            )));
        }
        let mut archive =
            tar::Archive::new(std::io::BufReader::new(std::fs::File::open(tar_file)?));
        for entry in archive.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.into_owned();
            let path = path.strip_prefix("./").unwrap_or(&path).to_path_buf();
            if !plain(&path) {
                return Err(std::io::Error::other(format!(
                    "the build left an entry with an unsafe path: {}",
                    path.display()
                )));
            }
            let dest = parent.join(&path);
            let mut h = entry.header().clone();
            let kind = h.entry_type();
            if kind.is_symlink() {
                let target = entry
                    .link_name()?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                h.set_size(0);
                b.append_link(&mut h, &dest, &target)?;
            } else if kind.is_hard_link() {
                let target = entry
                    .link_name()?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if !plain(&target) {
                    return Err(std::io::Error::other(format!(
                        "the build left a hard link with an unsafe target: {}",
                        target.display()
                    )));
                }
                h.set_size(0);
                b.append_link(&mut h, &dest, parent.join(target))?;
            } else if kind.is_file() || kind.is_dir() {
                b.append_data(&mut h, &dest, &mut entry)?;
            }
            // Devices, fifos and the like: a build has no business leaving
            // them in an app's image; they are left out.
        }
    }
    let mut hashing = b.into_inner()?;
    hashing.flush()?;
    let Hashing { inner, hash } = hashing;
    inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(format!("sha256:{}", hex(&hash.finalize())))
}

/// The image config (the JSON the engine stores per image).
pub fn config_json(parent: &Parent, layer: &str, settings: &ImageSettings) -> Vec<u8> {
    let mut env: Vec<String> = parent.env.clone();
    for (k, v) in &settings.env {
        env.retain(|e| e.split('=').next() != Some(k.as_str()));
        env.push(format!("{k}={v}"));
    }
    let mut labels = serde_json::Map::new();
    for (k, v) in parent.labels.iter().chain(&settings.labels) {
        labels.insert(k.clone(), v.clone().into());
    }
    let mut diff_ids = parent.diff_ids.clone();
    diff_ids.push(layer.to_string());
    let mut config = serde_json::json!({
        "Env": env,
        "Entrypoint": settings.entrypoint,
        "Cmd": settings.cmd,
        "WorkingDir": settings.working_dir,
        "Labels": labels,
    });
    if let Some(port) = settings.exposed_port {
        config["ExposedPorts"] = serde_json::json!({ format!("{port}/tcp"): {} });
    }
    let created = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    serde_json::to_vec(&serde_json::json!({
        "architecture": parent.architecture,
        "os": parent.os,
        "created": created,
        "config": config,
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .expect("an image config serializes")
}

/// Writes the `docker load` archive for `tag`: the manifest, the config, and
/// the new layer only (the parent's layers are named but absent: the engine
/// holds them and loads only what it lacks).
pub fn write_load_archive(
    config: &[u8],
    parent_diff_ids: &[String],
    layer_file: &Path,
    tag: &str,
    out: &Path,
) -> std::io::Result<()> {
    let config_name = format!("{}.json", hex(&Sha256::digest(config)));
    let layers: Vec<String> = (0..=parent_diff_ids.len())
        .map(|i| format!("layer{i}/layer.tar"))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": layers,
    }]))
    .expect("a manifest serializes");
    let mut b = tar::Builder::new(std::io::BufWriter::new(std::fs::File::create(out)?));
    let mut add = |name: &str, size: u64, data: &mut dyn Read| {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, name, data)
    };
    add(
        "manifest.json",
        manifest.len() as u64,
        &mut manifest.as_slice(),
    )?;
    add(&config_name, config.len() as u64, &mut &config[..])?;
    let mut layer = std::fs::File::open(layer_file)?;
    let size = layer.seek(std::io::SeekFrom::End(0))?;
    layer.rewind()?;
    add(layers.last().expect("one layer at least"), size, &mut layer)?;
    b.into_inner()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            if path.ends_with('/') {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
                h.set_uid(10001);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            } else {
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_uid(10001);
                b.append_data(&mut h, path, data.as_bytes()).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    fn paths(tar_file: &Path) -> Vec<(String, u64)> {
        let mut a = tar::Archive::new(std::fs::File::open(tar_file).unwrap());
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path()
                        .unwrap()
                        .display()
                        .to_string()
                        .trim_end_matches('/')
                        .to_string(),
                    e.header().uid().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn downloads_are_rerooted_and_the_digest_is_the_layers_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app.tar");
        std::fs::write(&app, tar_of(&[("app/", ""), ("app/manage.py", "x")])).unwrap();
        let st = dir.path().join("static.tar");
        std::fs::write(&st, tar_of(&[("static/", ""), ("static/a.css", "body{}")])).unwrap();
        let out = dir.path().join("layer.tar");
        let digest = write_layer(&[(&app, "/"), (&st, "/srv/www")], &out).unwrap();
        assert_eq!(
            paths(&out),
            [
                ("app".to_string(), 10001),
                ("app/manage.py".to_string(), 10001),
                ("srv/www/static".to_string(), 10001),
                ("srv/www/static/a.css".to_string(), 10001)
            ]
        );
        let want = format!(
            "sha256:{}",
            hex(&Sha256::digest(std::fs::read(&out).unwrap()))
        );
        assert_eq!(digest, want);
    }

    #[test]
    fn an_entry_climbing_out_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.tar");
        // The tar crate refuses to write `..`: write the name by hand.
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..9].copy_from_slice(b"../etc/pw");
        h.set_size(0);
        h.set_mode(0o644);
        h.set_cksum();
        let mut bytes = h.as_bytes().to_vec();
        bytes.extend([0u8; 1024]);
        std::fs::write(&bad, bytes).unwrap();
        let err = write_layer(&[(&bad, "/")], &dir.path().join("l.tar")).unwrap_err();
        assert!(err.to_string().contains("unsafe path"), "{err}");
        assert!(write_layer(&[(&bad, "/a/../b")], &dir.path().join("l.tar")).is_err());
    }

    #[test]
    fn the_config_adds_the_layer_and_overrides_env_by_name() {
        let parent = Parent {
            diff_ids: vec!["sha256:aa".into()],
            env: vec!["PATH=/opt/venv/bin:/usr/bin".into(), "PORT=1".into()],
            labels: vec![("paas.deps".into(), "k".into())],
            architecture: "amd64".into(),
            os: "linux".into(),
        };
        let settings = ImageSettings {
            entrypoint: vec!["/bin/sh".into()],
            cmd: vec!["gunicorn".into()],
            env: vec![("PORT".into(), "8000".into())],
            working_dir: "/app".into(),
            labels: vec![],
            exposed_port: Some(8000),
        };
        let v: serde_json::Value =
            serde_json::from_slice(&config_json(&parent, "sha256:bb", &settings)).unwrap();
        assert_eq!(
            v["rootfs"]["diff_ids"],
            serde_json::json!(["sha256:aa", "sha256:bb"])
        );
        assert_eq!(
            v["config"]["Env"],
            serde_json::json!(["PATH=/opt/venv/bin:/usr/bin", "PORT=8000"])
        );
        assert_eq!(v["config"]["Labels"]["paas.deps"], "k");
        assert!(v["config"]["ExposedPorts"]["8000/tcp"].is_object());
    }
}
