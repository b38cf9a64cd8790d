//! Files below a root folder, reached without following any symbolic link.
//!
//! An app's volume (`/data` in its containers) is written by code paas does
//! not trust, while the daemon runs as root: a link planted there
//! (`/data/media/x -> /var/lib/paas/admin.token`) must never make the daemon
//! read, write or chown the host file it names. So every walk here opens one
//! name at a time from the folder above it with `O_NOFOLLOW`: a symlink
//! anywhere on the way is an error, never a detour, and swapping a folder for
//! a link halfway through a walk changes nothing (the walk holds the folder
//! itself, not its name). Names that could climb (`..`, `/`) are refused
//! before anything is opened.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{openat, statat, AtFlags, FileType, Mode, OFlags, CWD};

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opening a FIFO or a device must neither block nor take a terminal.
const FILE_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

/// Opens `path` as a folder. Only its last name is checked: the folders
/// above it are the daemon's own.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(openat(CWD, path, DIR_FLAGS, Mode::empty())?)
}

/// Opens the folder `name` inside `dir`, refusing a symlink.
pub fn open_subdir(dir: impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(openat(dir, name, DIR_FLAGS, Mode::empty())?)
}

/// The names of a relative path; `..`, a leading `/` or an empty path are refused.
pub fn plain_names(rel: &Path) -> io::Result<Vec<&OsStr>> {
    let mut names = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => names.push(n),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} leaves its folder", rel.display()),
                ))
            }
        }
    }
    if names.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "an empty path"));
    }
    Ok(names)
}

/// Opens the regular file `rel` below the folder `root` for reading. A
/// symlink on the way, a folder, a FIFO or a device is `NotFound`.
pub fn open_file(root: &Path, rel: &Path) -> io::Result<File> {
    let names = plain_names(rel)?;
    let (last, parents) = names.split_last().expect("plain_names is never empty");
    let mut dir = open_dir(root)?;
    for name in parents {
        dir = open_subdir(&dir, name)?;
    }
    let not_found = || io::Error::new(io::ErrorKind::NotFound, "not a regular file");
    // Look before opening: opening some devices has effects of its own.
    let st = statat(&dir, *last, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(not_found());
    }
    let file = File::from(openat(&dir, *last, FILE_FLAGS, Mode::empty())?);
    // And again after: the name may have been swapped in between.
    if !file.metadata()?.is_file() {
        return Err(not_found());
    }
    Ok(file)
}

/// What is at `path`, without following a symlink: `Ok(true)` for a real
/// folder, `Ok(false)` when nothing is there, an error naming what to do
/// for anything else (a symlink, a file).
pub fn real_dir(path: &Path) -> io::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(m) => Err(io::Error::other(format!(
            "{} is a {} where paas expects a folder (the app's code put it there); \
             move it away on the server (mv {0} {0}.moved) and try again",
            path.display(),
            if m.file_type().is_symlink() {
                "symbolic link"
            } else {
                "file"
            },
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Appends the tree below the folder `root` to a tar: folders, regular
/// files, and symlinks stored as symlinks (never followed); FIFOs, sockets
/// and devices are left out. Entry names are relative (`a/b.png`).
pub fn tar_tree<W: Write>(root: &Path, builder: &mut tar::Builder<W>) -> io::Result<()> {
    let dir = open_dir(root)?;
    tar_dir(&dir, Path::new(""), builder)
}

fn tar_dir<W: Write>(
    dir: &OwnedFd,
    prefix: &Path,
    builder: &mut tar::Builder<W>,
) -> io::Result<()> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    names.sort();
    for name in names {
        let name = OsStr::from_bytes(&name);
        let path = prefix.join(name);
        // Gone since the listing (the app keeps running): leave it out.
        let Ok(st) = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        let mut header = tar::Header::new_gnu();
        header.set_mtime(st.st_mtime.max(0) as u64);
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let Ok(sub) = open_subdir(dir, name) else {
                    continue;
                };
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, &path, io::empty())?;
                tar_dir(&sub, &path, builder)?;
            }
            FileType::RegularFile => {
                let Ok(fd) = openat(dir, name, FILE_FLAGS, Mode::empty()) else {
                    continue;
                };
                let file = File::from(fd);
                let meta = file.metadata()?;
                if !meta.is_file() {
                    continue;
                }
                let size = meta.size();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(meta.permissions().mode() & 0o755 | 0o644);
                header.set_mtime(meta.mtime().max(0) as u64);
                header.set_size(size);
                // Exactly `size` bytes even if the file changes meanwhile.
                let body = file.take(size).chain(io::repeat(0)).take(size);
                builder.append_data(&mut header, &path, body)?;
            }
            FileType::Symlink => {
                let Ok(target) = rustix::fs::readlinkat(dir, name, Vec::new()) else {
                    continue;
                };
                let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, &path, &target)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Unpacks a tar into the folder `dest` (opened by the caller, so a rename
/// of its name changes nothing), creating everything with `O_NOFOLLOW` /
/// `mkdirat` / `symlinkat` relative to folders held open. Every entry is
/// owned by `owner` (uid = gid) whatever the archive says, modes keep at
/// most `rwxr-xr-x`; hard links, devices and FIFOs are left out. An entry
/// whose name climbs out (`..`, `/…`) fails the whole unpack.
pub fn untar_into(archive: impl Read, dest: &OwnedFd, owner: u32) -> io::Result<()> {
    let owner = Some(rustix::fs::Uid::from_raw(owner));
    let group = owner.map(|u| rustix::fs::Gid::from_raw(u.as_raw()));
    let mut archive = tar::Archive::new(archive);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        if path.components().all(|c| c == Component::CurDir) {
            continue; // the root itself
        }
        let names = plain_names(&path).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the archive holds {}, which leaves its folder",
                    path.display()
                ),
            )
        })?;
        let (last, parents) = names.split_last().expect("plain_names is never empty");
        let mut dir = dest.try_clone()?;
        for name in parents {
            dir = make_dir(&dir, name, owner, group)?;
        }
        let mode = entry.header().mode().unwrap_or(0o644) & 0o755;
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                let sub = make_dir(&dir, last, owner, group)?;
                rustix::fs::fchmod(&sub, Mode::from_raw_mode(mode | 0o700))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let flags = OFlags::WRONLY
                    .union(OFlags::CREATE)
                    .union(OFlags::EXCL)
                    .union(OFlags::NOFOLLOW)
                    .union(OFlags::CLOEXEC);
                let mut file = File::from(openat(&dir, *last, flags, Mode::from_raw_mode(0o600))?);
                io::copy(&mut entry, &mut file)?;
                rustix::fs::fchown(&file, owner, group)?;
                rustix::fs::fchmod(&file, Mode::from_raw_mode(mode | 0o600))?;
                if let Ok(mtime) = entry.header().mtime() {
                    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
                    let _ = file.set_modified(when);
                }
            }
            tar::EntryType::Symlink => {
                let Some(target) = entry.link_name()? else {
                    continue;
                };
                rustix::fs::symlinkat(&*target, &dir, *last)?;
                rustix::fs::chownat(&dir, *last, owner, group, AtFlags::SYMLINK_NOFOLLOW)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Opens the folder `name` in `dir`, making it (owned by `owner`) when missing.
fn make_dir(
    dir: &OwnedFd,
    name: &OsStr,
    owner: Option<rustix::fs::Uid>,
    group: Option<rustix::fs::Gid>,
) -> io::Result<OwnedFd> {
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755)) {
        Ok(()) => {}
        Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let sub = open_subdir(dir, name)?;
    rustix::fs::fchown(&sub, owner, group)?;
    Ok(sub)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn open_file_refuses_symlinks_anywhere_on_the_way() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(t.path().join("secret"), "TOP-SECRET").unwrap();
        std::fs::write(root.join("sub/ok.txt"), "ok").unwrap();
        symlink(t.path().join("secret"), root.join("x")).unwrap();
        symlink(t.path(), root.join("d")).unwrap();
        symlink("ok.txt", root.join("sub/rel")).unwrap();

        let mut s = String::new();
        open_file(&root, Path::new("sub/ok.txt"))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "ok");
        for bad in [
            "x",
            "d/secret",
            "sub/rel",
            "../secret",
            "/etc/passwd",
            "sub",
            "",
        ] {
            assert!(open_file(&root, Path::new(bad)).is_err(), "{bad} opened");
        }
        // The root itself as a link: refused too.
        let link_root = t.path().join("link-root");
        symlink(&root, &link_root).unwrap();
        assert!(open_file(&link_root, Path::new("sub/ok.txt")).is_err());
    }

    #[test]
    fn open_file_does_not_block_on_a_fifo() {
        let t = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(t.path().join("fifo"))
            .status()
            .unwrap();
        assert!(status.success());
        let err = open_file(t.path(), Path::new("fifo")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn real_dir_tells_folders_from_links_and_files() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("dir")).unwrap();
        std::fs::write(t.path().join("file"), "").unwrap();
        symlink(t.path().join("dir"), t.path().join("link")).unwrap();
        assert!(real_dir(&t.path().join("dir")).unwrap());
        assert!(!real_dir(&t.path().join("missing")).unwrap());
        let e = real_dir(&t.path().join("link")).unwrap_err().to_string();
        assert!(
            e.contains("is a symbolic link where paas expects a folder"),
            "{e}"
        );
        assert!(real_dir(&t.path().join("file")).is_err());
    }

    #[test]
    fn tar_keeps_links_as_links_and_untar_owns_and_contains_everything() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("uploads")).unwrap();
        std::fs::write(src.join("uploads/a.png"), "png").unwrap();
        std::fs::write(t.path().join("secret"), "TOP-SECRET").unwrap();
        symlink(t.path().join("secret"), src.join("x")).unwrap();
        symlink(t.path(), src.join("d")).unwrap();
        std::fs::set_permissions(
            src.join("uploads/a.png"),
            std::fs::Permissions::from_mode(0o4777),
        )
        .unwrap();
        let mut b = tar::Builder::new(Vec::new());
        tar_tree(&src, &mut b).unwrap();
        let bytes = b.into_inner().unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("TOP-SECRET"), "a link was followed");

        let dest = t.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        let uid = std::fs::metadata(t.path()).unwrap().uid();
        untar_into(bytes.as_slice(), &open_dir(&dest).unwrap(), uid).unwrap();
        assert_eq!(std::fs::read(dest.join("uploads/a.png")).unwrap(), b"png");
        let mode = std::fs::metadata(dest.join("uploads/a.png"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755, "no setuid, no world write");
        assert_eq!(
            std::fs::read_link(dest.join("x")).unwrap(),
            t.path().join("secret")
        );
        assert_eq!(std::fs::read_link(dest.join("d")).unwrap(), t.path());
    }

    #[test]
    fn untar_refuses_climbing_names() {
        for bad in ["../escaped", "a/../../escaped"] {
            let mut data = Vec::new();
            {
                let mut b = tar::Builder::new(&mut data);
                let mut h = tar::Header::new_gnu();
                h.set_size(1);
                h.set_mode(0o644);
                // set_path refuses "..": write the name bytes directly.
                h.as_old_mut().name[..bad.len()].copy_from_slice(bad.as_bytes());
                h.set_cksum();
                b.append(&h, &b"x"[..]).unwrap();
                b.finish().unwrap();
            }
            let t = tempfile::tempdir().unwrap();
            let dest = t.path().join("a/b");
            std::fs::create_dir_all(&dest).unwrap();
            let uid = std::fs::metadata(t.path()).unwrap().uid();
            let err = untar_into(data.as_slice(), &open_dir(&dest).unwrap(), uid).unwrap_err();
            assert!(
                err.to_string().contains("leaves its folder"),
                "{bad}: {err}"
            );
            assert!(!t.path().join("a/escaped").exists());
            assert!(!t.path().join("escaped").exists());
        }
    }
}
