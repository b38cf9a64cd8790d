//! Disk use: where the space went, per app, and a warning before the disk
//! of the data dir fills.
//!
//! Per app: its release images (the distinct images tagged `paas/<app>:*`,
//! each counted with its base layers, as `docker images` shows them), its
//! volume (`apps/<app>/` on the host: the data volume and the static files
//! of its releases, hard links counted once), its backups, and its logs
//! (its containers' json-file logs with their rotated copies, and its
//! release logs in the store). Then the file system the data dir is on.

use crate::ctx::Ctx;
use crate::docker::ImageFilter;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// At this share of the data dir's file system in use, paas warns.
pub const FULL_PERCENT: f64 = 90.0;

/// One app's disk use, in bytes.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct AppDisk {
    pub app: String,
    /// Its release images (base layers counted in each).
    pub images: u64,
    /// `apps/<app>/` on the host: its volume and its releases' static files.
    pub volume: u64,
    /// Its backups.
    pub backups: u64,
    /// Its containers' logs on the host and its release logs in the store.
    pub logs: u64,
}

impl AppDisk {
    /// All of it.
    pub fn total(&self) -> u64 {
        self.images + self.volume + self.backups + self.logs
    }
}

/// A file system's size and use, in bytes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FsUse {
    /// The path it was measured at (the data dir).
    pub path: PathBuf,
    pub total: u64,
    pub used: u64,
    /// What an unprivileged process may still write.
    pub available: u64,
    /// `used` in percent of what can be used (`used + available`), as `df` counts it.
    pub percent: f64,
}

/// `paas system:df`.
#[derive(Debug, Clone, Serialize)]
pub struct DiskReport {
    pub apps: Vec<AppDisk>,
    /// The file system of the data dir.
    pub filesystem: FsUse,
    /// The warning when it is [`FULL_PERCENT`] full or more.
    pub warning: Option<String>,
}

/// The use of the file system `path` is on.
pub fn fs_use(path: &Path) -> std::io::Result<FsUse> {
    let s = rustix::fs::statvfs(path)?;
    let block = s.f_frsize;
    let total = s.f_blocks * block;
    let free = s.f_bfree * block;
    let available = s.f_bavail * block;
    let used = total.saturating_sub(free);
    let usable = used + available;
    let percent = if usable == 0 {
        0.0
    } else {
        used as f64 * 100.0 / usable as f64
    };
    Ok(FsUse {
        path: path.to_path_buf(),
        total,
        used,
        available,
        percent,
    })
}

/// The warning for a file system this full, if it is [`FULL_PERCENT`] full or more.
pub fn warning_for(fs: &FsUse) -> Option<String> {
    (fs.percent >= FULL_PERCENT).then(|| {
        format!(
            "warning: the disk of paas's data dir ({}) is {:.0} % full ({} free): builds and backups fail when it fills; `paas system:df` shows what each app uses, and `paas system:prune` removes what paas no longer needs",
            fs.path.display(),
            fs.percent.floor(),
            human_bytes(fs.available)
        )
    })
}

/// The warning when the data dir's disk is [`FULL_PERCENT`] full or more
/// (shown in push output and on the dashboard); `None` below that or when
/// it cannot be measured.
pub fn full_warning(data_dir: &Path) -> Option<String> {
    fs_use(data_dir).ok().as_ref().and_then(warning_for)
}

/// Bytes in powers of 1000, as `df -H` and the dashboard show them.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Bytes of the files under `dir` (a hard-linked file once, symlinks not
/// followed); 0 when it does not exist.
pub fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && seen.insert((m.dev(), m.ino())) {
                total += m.len();
            }
        }
    }
    total
}

/// Measures every app's disk use and the data dir's file system.
pub async fn disk_report(ctx: &Ctx) -> std::io::Result<DiskReport> {
    let data_dir = ctx.config.data_dir.clone();
    let filesystem = {
        let d = data_dir.clone();
        tokio::task::spawn_blocking(move || fs_use(&d))
            .await
            .map_err(std::io::Error::other)??
    };
    let apps = ctx.store.apps().map_err(std::io::Error::other)?;
    let store_logs: HashMap<String, u64> = ctx
        .store
        .release_log_bytes()
        .map_err(std::io::Error::other)?
        .into_iter()
        .collect();
    let mut out = Vec::new();
    for app in apps {
        let name = app.name;
        let mut disk = AppDisk {
            logs: store_logs.get(&name).copied().unwrap_or(0),
            ..Default::default()
        };
        let repo = format!("paas/{name}");
        let filter = ImageFilter {
            reference: Some(&repo),
            ..Default::default()
        };
        match ctx.docker.list_images_where(&filter).await {
            Ok(images) => {
                let mut ids = HashSet::new();
                disk.images = images
                    .iter()
                    .filter(|i| ids.insert(i.id.clone()))
                    .map(|i| i.size.max(0) as u64)
                    .sum();
            }
            Err(e) => tracing::warn!(app = %name, "disk use: cannot list the images: {e}"),
        }
        match ctx.docker.list_containers(&[("paas.app", &name)]).await {
            Ok(list) => {
                for c in list {
                    disk.logs += ctx.docker.container_log_bytes(&c.id).await.unwrap_or(0);
                }
            }
            Err(e) => tracing::warn!(app = %name, "disk use: cannot list the containers: {e}"),
        }
        let (app_dir, backups) = (
            data_dir.join("apps").join(&name),
            crate::layout::backups_dir(&data_dir, &name),
        );
        let (volume, backup_bytes) =
            tokio::task::spawn_blocking(move || (dir_bytes(&app_dir), dir_bytes(&backups)))
                .await
                .unwrap_or((0, 0));
        disk.volume = volume;
        disk.backups = backup_bytes;
        disk.app = name;
        out.push(disk);
    }
    let warning = warning_for(&filesystem);
    Ok(DiskReport {
        apps: out,
        filesystem,
        warning,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs(used: u64, available: u64) -> FsUse {
        FsUse {
            path: "/var/lib/paas".into(),
            total: used + available,
            used,
            available,
            percent: used as f64 * 100.0 / (used + available) as f64,
        }
    }

    #[test]
    fn the_warning_starts_at_ninety_percent() {
        assert_eq!(warning_for(&fs(89, 11)), None);
        let w = warning_for(&fs(90_000_000_000, 10_000_000_000)).unwrap();
        assert!(w.contains("is 90 % full (10.0 GB free)"), "{w}");
        assert!(w.contains("paas system:df"), "{w}");
        assert!(warning_for(&fs(100, 0)).is_some());
    }

    #[test]
    fn the_data_dirs_file_system_is_measured() {
        let dir = tempfile::tempdir().unwrap();
        let f = fs_use(dir.path()).unwrap();
        assert!(f.total > 0 && f.used <= f.total && f.available <= f.total);
        assert!((0.0..=100.0).contains(&f.percent));
        // The same figure `df` prints (rounded up to a whole percent).
        let out = std::process::Command::new("df")
            .args(["--output=pcent"])
            .arg(dir.path())
            .output()
            .unwrap();
        let df: f64 = String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .trim_end_matches('%')
            .parse()
            .unwrap();
        assert!((f.percent - df).abs() <= 1.5, "{} vs df {df}", f.percent);
    }

    #[test]
    fn a_hard_linked_file_counts_once_and_symlinks_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("apps/blog");
        std::fs::create_dir_all(d.join("releases/v1")).unwrap();
        std::fs::create_dir_all(d.join("releases/v2")).unwrap();
        std::fs::write(d.join("releases/v1/app.css"), vec![b'x'; 1000]).unwrap();
        std::fs::hard_link(d.join("releases/v1/app.css"), d.join("releases/v2/app.css")).unwrap();
        std::fs::write(d.join("db.sqlite3"), vec![b'y'; 234]).unwrap();
        std::os::unix::fs::symlink("/usr", d.join("usr")).unwrap();
        assert_eq!(dir_bytes(&d), 1234);
        assert_eq!(dir_bytes(&dir.path().join("missing")), 0);
    }

    #[test]
    fn sizes_read_as_df_h_prints_them() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_bytes(12_300_000_000), "12.3 GB");
    }
}
