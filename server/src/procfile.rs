//! The Procfile: which processes a release runs, Heroku's format.
//!
//! ```text
//! # comments and blank lines are ignored
//! web: gunicorn mysite.wsgi --bind 0.0.0.0:$PORT
//! release: python manage.py loaddata initial
//! worker: python worker.py
//! ```
//!
//! - `web:` replaces the image's default command (gunicorn on `$PORT`); it
//!   must still listen on `$PORT`, which the health check probes.
//! - `release:` runs once per push in a one-off container, after
//!   `migrate`; when it fails the push is rejected.
//! - Every other name is a long-running process of the release: its own
//!   container (same image, env, volume and network as web, restarted
//!   unless stopped, no route), started with the release and retired with it.
//!
//! Where: the Procfile next to manage.py (the project folder) wins, else the
//! one at the repository root. Either way the commands run in the project
//! folder (the image's working directory), through `sh -c`, so `$PORT` and
//! other variables expand.

use std::collections::BTreeMap;
use std::path::Path;

/// Process names paas keeps for itself (container labels of one-off jobs).
const RESERVED: &[&str] = &["run", "data"];
/// Longest process name (it becomes part of a container name).
const MAX_NAME: usize = 30;

/// A parsed Procfile: process name → shell command, in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Procfile {
    pub processes: BTreeMap<String, String>,
}

/// Why a Procfile cannot be used; one sentence that says what to fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProcfileError {
    #[error("{file} line {line} is not `name: command`: write each process on its own line, like `worker: python worker.py`")]
    NoColon { file: String, line: usize },
    #[error("{file} line {line} names the process {name:?}: use letters, digits, - and _ only (at most {MAX_NAME}), like `worker`")]
    BadName {
        file: String,
        line: usize,
        name: String,
    },
    #[error("{file} line {line} names the process {name:?}, which paas keeps for its own one-off containers: choose another name")]
    Reserved {
        file: String,
        line: usize,
        name: String,
    },
    #[error(
        "{file} line {line} gives the process {name:?} no command: write it as `{name}: COMMAND`"
    )]
    Empty {
        file: String,
        line: usize,
        name: String,
    },
    #[error("{file} names the process {name:?} twice (lines {first} and {line}): keep one")]
    Duplicate {
        file: String,
        name: String,
        first: usize,
        line: usize,
    },
    #[error("{file} could not be read ({reason}): make it a UTF-8 text file")]
    Unreadable { file: String, reason: String },
}

impl Procfile {
    /// Parses Procfile text; `file` names it in error messages.
    pub fn parse(text: &str, file: &str) -> Result<Procfile, ProcfileError> {
        let mut processes = BTreeMap::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let file = file.to_string();
            let Some((name, command)) = trimmed.split_once(':') else {
                return Err(ProcfileError::NoColon { file, line });
            };
            let name = name.trim().to_string();
            let valid = !name.is_empty()
                && name.len() <= MAX_NAME
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                return Err(ProcfileError::BadName { file, line, name });
            }
            let name = name.to_ascii_lowercase();
            if RESERVED.contains(&name.as_str()) {
                return Err(ProcfileError::Reserved { file, line, name });
            }
            let command = command.trim();
            if command.is_empty() {
                return Err(ProcfileError::Empty { file, line, name });
            }
            if let Some(&first) = seen.get(&name) {
                return Err(ProcfileError::Duplicate {
                    file,
                    name,
                    first,
                    line,
                });
            }
            seen.insert(name.clone(), line);
            processes.insert(name, command.to_string());
        }
        Ok(Procfile { processes })
    }

    /// The Procfile of a pushed tree: `<project_dir>/Procfile`, else the
    /// root's. `None` when there is none.
    pub fn find(root: &Path, project_dir: &str) -> Result<Option<Procfile>, ProcfileError> {
        let mut candidates = Vec::new();
        if !project_dir.is_empty() {
            candidates.push(format!("{}/Procfile", project_dir.trim_end_matches('/')));
        }
        candidates.push("Procfile".to_string());
        for rel in candidates {
            let path = root.join(&rel);
            // Never through a symlink: a Procfile linked to a host file
            // would otherwise show that file in the push output.
            if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| ProcfileError::Unreadable {
                file: rel.clone(),
                reason: e.to_string(),
            })?;
            return Procfile::parse(&text, &rel).map(Some);
        }
        Ok(None)
    }

    /// The long-running processes besides web (`worker`, `clock`, …).
    pub fn extra(&self) -> impl Iterator<Item = (&str, &str)> {
        self.processes
            .iter()
            .filter(|(n, _)| n.as_str() != "web" && n.as_str() != "release")
            .map(|(n, c)| (n.as_str(), c.as_str()))
    }

    /// The container command of a process, if the Procfile has it.
    pub fn command(&self, name: &str) -> Option<Vec<String>> {
        self.processes.get(name).map(|c| shell_command(c))
    }
}

/// `sh -c COMMAND`; a plain command gets `exec` so it is the container's
/// main process and receives the engine's SIGTERM (a shell in between would
/// swallow it and every stop would wait out the grace period).
pub fn shell_command(command: &str) -> Vec<String> {
    let compound = command.contains(['&', ';', '|', '\n', '(', '`', '<', '>'])
        || command.trim_start().starts_with("exec ");
    let script = if compound {
        command.to_string()
    } else {
        format!("exec {command}")
    };
    vec!["sh".into(), "-c".into(), script]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_processes_skipping_comments_and_blank_lines() {
        let p = Procfile::parse(
            "# the site\n\nweb: gunicorn mysite.wsgi --bind 0.0.0.0:$PORT\n  \nrelease: python manage.py shell -c \"print('a: b')\"\r\nworker:python worker.py\n",
            "Procfile",
        )
        .unwrap();
        assert_eq!(p.processes.len(), 3);
        assert_eq!(
            p.processes["web"],
            "gunicorn mysite.wsgi --bind 0.0.0.0:$PORT"
        );
        // Only the first colon separates: the command keeps its own.
        assert_eq!(
            p.processes["release"],
            "python manage.py shell -c \"print('a: b')\""
        );
        assert_eq!(p.processes["worker"], "python worker.py");
        assert_eq!(
            p.extra().collect::<Vec<_>>(),
            [("worker", "python worker.py")]
        );
    }

    #[test]
    fn broken_lines_say_which_and_how_to_fix() {
        let e = Procfile::parse("web: gunicorn x\njust a command\n", "Procfile").unwrap_err();
        assert_eq!(
            e,
            ProcfileError::NoColon {
                file: "Procfile".into(),
                line: 2
            }
        );
        assert!(e
            .to_string()
            .contains("Procfile line 2 is not `name: command`"));

        let e = Procfile::parse("my worker: python w.py", "app/Procfile").unwrap_err();
        assert!(
            matches!(&e, ProcfileError::BadName { name, line: 1, .. } if name == "my worker"),
            "{e:?}"
        );
        assert!(e
            .to_string()
            .starts_with("app/Procfile line 1 names the process \"my worker\""));

        let e = Procfile::parse(": python w.py", "Procfile").unwrap_err();
        assert!(matches!(e, ProcfileError::BadName { .. }), "{e:?}");

        let e = Procfile::parse("worker:   \n", "Procfile").unwrap_err();
        assert!(e.to_string().contains("`worker: COMMAND`"), "{e}");

        let e = Procfile::parse("run: python x.py", "Procfile").unwrap_err();
        assert!(matches!(e, ProcfileError::Reserved { .. }), "{e:?}");

        let e = Procfile::parse("worker: a\n#\nworker: b\n", "Procfile").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Procfile names the process \"worker\" twice (lines 1 and 3): keep one"
        );
    }

    #[test]
    fn an_empty_procfile_has_no_processes() {
        assert_eq!(
            Procfile::parse("", "Procfile").unwrap(),
            Procfile::default()
        );
        assert_eq!(
            Procfile::parse("# nothing\n\n", "Procfile")
                .unwrap()
                .processes
                .len(),
            0
        );
    }

    #[test]
    fn the_project_folders_procfile_wins_over_the_roots() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Procfile::find(dir.path(), "").unwrap(), None);
        std::fs::write(dir.path().join("Procfile"), "worker: root\n").unwrap();
        std::fs::create_dir(dir.path().join("site")).unwrap();
        let found = Procfile::find(dir.path(), "site").unwrap().unwrap();
        assert_eq!(found.processes["worker"], "root");
        std::fs::write(dir.path().join("site/Procfile"), "worker: sub\n").unwrap();
        let found = Procfile::find(dir.path(), "site").unwrap().unwrap();
        assert_eq!(found.processes["worker"], "sub");
        std::fs::write(dir.path().join("site/Procfile"), "oops\n").unwrap();
        let e = Procfile::find(dir.path(), "site").unwrap_err();
        assert!(e.to_string().starts_with("site/Procfile line 1"), "{e}");
    }

    #[test]
    fn a_procfile_that_is_a_symlink_is_never_read() {
        let host = tempfile::tempdir().unwrap();
        let secret = host.path().join("secret");
        std::fs::write(&secret, "host-secret-line\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(&secret, dir.path().join("Procfile")).unwrap();
        // Unread: a parse error would have quoted the host file's line.
        assert_eq!(Procfile::find(dir.path(), "").unwrap(), None);
    }

    #[test]
    fn release_facts_round_trip_and_shell_commands() {
        let p = Procfile::parse(
            "web: gunicorn x --bind 0.0.0.0:$PORT\nworker: a && b",
            "Procfile",
        )
        .unwrap();
        // The processes travel with the release, in its stored facts.
        let meta = crate::store::ReleaseMeta {
            processes: p.processes.clone(),
            ..Default::default()
        };
        let json = serde_json::to_string(&meta).unwrap();
        let back = Procfile {
            processes: serde_json::from_str::<crate::store::ReleaseMeta>(&json)
                .unwrap()
                .processes,
        };
        assert_eq!(back, p);
        assert_eq!(
            back.command("web").unwrap(),
            ["sh", "-c", "exec gunicorn x --bind 0.0.0.0:$PORT"]
        );
        assert_eq!(back.command("worker").unwrap(), ["sh", "-c", "a && b"]);
        assert_eq!(back.command("clock"), None);
    }
}

#[cfg(test)]
mod props {
    //! Property tests: the Procfile of a push.

    use super::*;
    use crate::fuzz::{check, ensure};
    use proptest::prelude::*;

    fn render(p: &Procfile) -> String {
        p.processes
            .iter()
            .map(|(n, c)| format!("{n}: {c}\n"))
            .collect()
    }

    fn processes() -> impl Strategy<Value = BTreeMap<String, String>> {
        prop::collection::btree_map(
            "[a-z0-9_-]{1,30}".prop_filter("not reserved", |n| !RESERVED.contains(&n.as_str())),
            "[^\n\r]{0,40}".prop_filter_map("a command", |c| {
                let c = c.trim().to_string();
                (!c.is_empty()).then_some(c)
            }),
            0..6,
        )
    }

    #[test]
    fn fuzz_procfile_round_trip() {
        check("procfile_round_trip", 256, processes(), |processes| {
            let p = Procfile { processes };
            let text = render(&p);
            let back = Procfile::parse(&text, "Procfile");
            ensure(back.as_ref() == Ok(&p), || {
                format!("{text:?} parsed as {back:?}")
            })
        });
    }

    fn procfile_text() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            "[a-zA-Z0-9_-]{1,8}:[ \t]?[a-z $:;&|#]{0,16}",
            "[ \t]*#[^\n]{0,10}",
            "[ \t]*",
            "(run|data|RUN|web|Web|worker)\\s*:\\s*[a-z]{0,4}",
            "[^\n]{0,24}",
        ];
        (
            prop::collection::vec(line, 0..8),
            prop::sample::select(vec!["\n", "\r\n", "\r"]),
        )
            .prop_map(|(lines, eol)| lines.join(eol))
    }

    #[test]
    fn fuzz_procfile_parse() {
        check("procfile_parse", 512, procfile_text(), |text| {
            let Ok(p) = Procfile::parse(&text, "Procfile") else {
                return Ok(());
            };
            for (name, command) in &p.processes {
                ensure(
                    !name.is_empty()
                        && name.len() <= MAX_NAME
                        && name.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                        }),
                    || format!("{text:?} names a process {name:?}"),
                )?;
                ensure(!RESERVED.contains(&name.as_str()), || {
                    format!("{text:?} takes the reserved name {name:?}")
                })?;
                ensure(
                    !command.is_empty() && command.trim() == command && !command.contains('\n'),
                    || format!("{text:?} gives {name:?} the command {command:?}"),
                )?;
                // The command runs as one shell script, verbatim.
                let argv = shell_command(command);
                ensure(
                    argv.len() == 3 && argv[2].ends_with(command.as_str()),
                    || format!("{command:?} runs as {argv:?}"),
                )?;
            }
            // What was read is what a Procfile of those lines says.
            let again = Procfile::parse(&render(&p), "Procfile");
            ensure(again.as_ref() == Ok(&p), || {
                format!("{text:?} read as {p:?}, written back and read as {again:?}")
            })
        });
    }
}
