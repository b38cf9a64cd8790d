//! The runner of the property tests (`mod props` at the end of the modules
//! that parse outside input): each property is checked on `default_cases`
//! generated inputs, or `PROPTEST_CASES` when set, with a fresh random seed
//! per run. `bench/fuzz.sh` runs them for a fixed time and reads the
//! executions each run adds to the file named by `PAAS_FUZZ_COUNTS`.

#![cfg(test)]

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use std::cell::Cell;
use std::io::Write;

/// Checks `property` on inputs drawn from `strategy`; a failure panics with
/// the smallest failing input proptest shrank it to.
pub fn check<S: Strategy>(
    target: &str,
    default_cases: u32,
    strategy: S,
    property: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let runs = Cell::new(0u64);
    let result = TestRunner::new(config).run(&strategy, |input| {
        runs.set(runs.get() + 1);
        property(input)
    });
    let outcome = match &result {
        Ok(()) => "ok",
        Err(_) => "failed",
    };
    if let Ok(file) = std::env::var("PAAS_FUZZ_COUNTS") {
        let line = format!("{target}\t{}\t{outcome}\n", runs.get());
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, input)) => {
            panic!("{target}: {why}\nminimal failing input: {input:?}")
        }
        Err(TestError::Abort(why)) => panic!("{target}: gave up: {why}"),
    }
}

/// `Err` with `what` unless `cond`: `prop_assert!` for plain functions.
pub fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if cond {
        Ok(())
    } else {
        Err(TestCaseError::fail(what()))
    }
}

/// One tar entry, written byte for byte as a hostile archive would: names
/// with `..`, absolute ones, links anywhere. `OUTSIDE_ABS` in a name or a
/// link target stands for a folder outside the one unpacked into.
#[derive(Debug, Clone)]
pub enum TarEntry {
    File(String, Vec<u8>),
    Dir(String),
    Symlink(String, &'static str),
    Hardlink(String, &'static str),
    Fifo(String),
    CharDevice(String),
}

/// The archive of `entries`, headers written raw (the `tar` crate's checks
/// bypassed), owned by root with every mode bit set; `outside` replaces
/// `OUTSIDE_ABS`.
pub fn raw_tar(entries: &[TarEntry], outside: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (name, kind, link, data): (&str, tar::EntryType, Option<&str>, &[u8]) = match e {
            TarEntry::File(n, c) => (n, tar::EntryType::Regular, None, c),
            TarEntry::Dir(n) => (n, tar::EntryType::Directory, None, b""),
            TarEntry::Symlink(n, t) => (n, tar::EntryType::Symlink, Some(t), b""),
            TarEntry::Hardlink(n, t) => (n, tar::EntryType::Link, Some(t), b""),
            TarEntry::Fifo(n) => (n, tar::EntryType::Fifo, None, b""),
            TarEntry::CharDevice(n) => (n, tar::EntryType::Char, None, b""),
        };
        let name = name.replace("OUTSIDE_ABS", outside);
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            let l = l.replace("OUTSIDE_ABS", outside);
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o6777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Every path below `dir` (not following links): (path, metadata).
pub fn walk(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, std::fs::Metadata)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        let is_dir = m.is_dir();
        out.push((p.clone(), m));
        if is_dir {
            walk(&p, out);
        }
    }
}
