//! The image build's output as the pusher sees it: Heroku-like headings and
//! one line per group of pip's packages, without Docker's plumbing (step
//! numbers, layer ids, cache notices, intermediate containers). The release
//! log in the store keeps every raw line; this only decides what reaches the
//! pusher's terminal. Anything not recognised (errors, warnings, the app's
//! own output at build time) is shown as it is.

/// What kind of build step a Dockerfile instruction is, by what it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepKind {
    /// `pip install` of the requirements (the dependency layer).
    Dependencies,
    /// apt-get of system packages (build stage or run-time libraries).
    SystemPackages,
    /// The collectstatic step after the code.
    Static,
    /// Anything else: plan-only steps, the code copy.
    Other,
}

fn step_kind(instruction: &str) -> StepKind {
    if !instruction.starts_with("RUN ") || instruction.contains("dpkg-query") {
        // The app image's check of the compiled packages' libraries says
        // something only when it fails.
        StepKind::Other
    } else if instruction.contains("pip install") {
        StepKind::Dependencies
    } else if instruction.contains("apt-get") {
        StepKind::SystemPackages
    } else if instruction.contains("/paas/collectstatic.sh") {
        StepKind::Static
    } else {
        StepKind::Other
    }
}

/// Turns the raw build output into the lines shown to the pusher.
#[derive(Debug, Default)]
pub struct Condenser {
    step: Option<StepKind>,
    /// Packages pip is fetching, in order (names as requested).
    collecting: Vec<String>,
    /// Packages pip compiles, in order.
    compiling: Vec<String>,
    /// Each heading is said once per build (a native build has two pip steps).
    said_deps_cached: bool,
    said_deps_heading: bool,
}

/// A line for the pusher: a step heading (`-----> `) or a detail under one.
#[derive(Debug, PartialEq, Eq)]
pub enum Shown {
    Step(String),
    Info(String),
}

/// How many names a grouped line lists before "and N more".
const LISTED: usize = 8;

fn list(names: &[String]) -> String {
    if names.len() <= LISTED {
        names.join(", ")
    } else {
        format!(
            "{} and {} more",
            names[..LISTED].join(", "),
            names.len() - LISTED
        )
    }
}

/// `Django<5.0,>=4.2` → `Django`; `psycopg[binary]==3.2` → `psycopg`.
fn requirement_name(spec: &str) -> String {
    let spec = spec.trim();
    let end = spec
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .unwrap_or(spec.len());
    spec[..end].to_string()
}

/// Docker's own lines: never shown.
fn plumbing(t: &str) -> bool {
    t.starts_with("---> ")
        // paas_inspect's record of what it wrote to /paas/meta.json
        || t.starts_with("-----> paas metadata: ")
        || t.starts_with("Removing intermediate container")
        || t.starts_with("Successfully built ")
        || t.starts_with("Successfully tagged ")
        || t.starts_with("Sending build context")
        || t.starts_with("debconf: ")
}

/// pip's progress: folded into the grouped lines.
fn pip_chatter(t: &str) -> bool {
    [
        "Downloading ",
        "Using cached ",
        "Obtaining ",
        "Requirement already satisfied",
        "Preparing metadata",
        "Getting requirements to build",
        "Installing build dependencies",
        "Installing backend dependencies",
        "Building wheel for ",
        "Created wheel for ",
        "Stored in directory",
        "Installing collected packages",
        "Attempting uninstall",
        "Found existing installation",
        "Uninstalling ",
        "Looking in indexes",
        "Saved ",
        "DEPRECATION: ",
    ]
    .iter()
    .any(|p| t.starts_with(p))
        || (t.starts_with('━') || t.starts_with('|'))
}

impl Condenser {
    pub fn new() -> Condenser {
        Condenser::default()
    }

    /// The lines to show for one raw line of the build output.
    pub fn line(&mut self, raw: &str) -> Vec<Shown> {
        let t = raw.trim();
        let mut out = Vec::new();
        if t.is_empty() {
            return out;
        }
        if let Some(rest) = t.strip_prefix("Step ") {
            // `Step 5/14 : RUN …`
            if let Some((_, instruction)) = rest.split_once(" : ") {
                self.step = Some(step_kind(instruction.trim()));
            }
            return out;
        }
        if t == "---> Using cache" {
            if self.step == Some(StepKind::Dependencies) && !self.said_deps_cached {
                self.said_deps_cached = true;
                out.push(Shown::Info(
                    "Dependencies unchanged: reusing the installed packages".into(),
                ));
            }
            return out;
        }
        if t.starts_with("---> Running in ") {
            match self.step {
                Some(StepKind::Dependencies) if !self.said_deps_heading => {
                    self.said_deps_heading = true;
                    out.push(Shown::Step("Installing dependencies with pip".into()));
                }
                Some(StepKind::SystemPackages) => {
                    out.push(Shown::Step("Installing system packages".into()))
                }
                _ => {}
            }
            return out;
        }
        if plumbing(t) {
            return out;
        }
        if let Some(spec) = t.strip_prefix("Collecting ") {
            self.collecting.push(requirement_name(spec));
            return out;
        }
        if let Some(names) = t.strip_prefix("Building wheels for collected packages:") {
            out.extend(self.flush_downloads());
            self.compiling = names
                .split(',')
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect();
            return out;
        }
        // Older pips build a package without a wheel in place.
        if let Some(rest) = t.strip_prefix("Running setup.py install for ") {
            let name = rest.split(':').next().unwrap_or(rest).trim().to_string();
            if !self.compiling.contains(&name) {
                self.compiling.push(name);
            }
            return out;
        }
        if let Some(done) = t.strip_prefix("Successfully installed ") {
            out.extend(self.flush_downloads());
            out.extend(self.flush_compiled());
            let installed: Vec<String> = done.split_whitespace().map(String::from).collect();
            out.push(Shown::Info(format!(
                "Installed {} package{}: {}",
                installed.len(),
                if installed.len() == 1 { "" } else { "s" },
                list(&installed)
            )));
            return out;
        }
        if pip_chatter(t) {
            return out;
        }
        // Whatever else a step prints: errors, warnings, collectstatic's
        // summary, paas's own messages from the build scripts.
        out.extend(self.flush_downloads());
        out.extend(self.flush_compiled());
        match t.strip_prefix("-----> ") {
            Some(heading) => out.push(Shown::Step(heading.to_string())),
            None => out.push(Shown::Info(raw.trim_end().to_string())),
        }
        out
    }

    /// What was gathered but not yet said (the build ended or failed).
    pub fn finish(&mut self) -> Vec<Shown> {
        let mut out = self.flush_downloads();
        out.extend(self.flush_compiled());
        out
    }

    fn flush_downloads(&mut self) -> Vec<Shown> {
        if self.collecting.is_empty() {
            return Vec::new();
        }
        let names = std::mem::take(&mut self.collecting);
        vec![Shown::Info(format!(
            "Fetched {} package{}: {}",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            list(&names)
        ))]
    }

    fn flush_compiled(&mut self) -> Vec<Shown> {
        if self.compiling.is_empty() {
            return Vec::new();
        }
        let names = std::mem::take(&mut self.compiling);
        vec![Shown::Info(format!(
            "Compiled from source: {}",
            names.join(", ")
        ))]
    }
}

/// Why the dependency image's build failed, told by what pip and the
/// compiler printed: the push's one sentence names the way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailedBuild {
    /// The kernel's OOM killer ended a compiler inside the step's memory
    /// limit (gcc says "Killed signal terminated program").
    OutOfMemory,
    /// A package compiles C code and the image has no compiler (no build
    /// stage): the package, when pip said which.
    NoCompiler { package: Option<String> },
    /// These packages failed to build (no wheel for this Python, so pip
    /// compiled them, and that failed), in pip's order.
    Compile { packages: Vec<String> },
}

/// Reads every raw line of a dependency build and tells, at the end, why it
/// failed ([`FailureWatch::verdict`]), when pip or the compiler said so.
#[derive(Debug, Default)]
pub struct FailureWatch {
    /// The package pip is fetching or preparing (`Collecting X`).
    collecting: Option<String>,
    /// The package whose wheel pip is building, until it is built.
    building: Option<String>,
    /// Packages pip says failed to build, in order, once each.
    failed: Vec<String>,
    /// pip's "Failed to build installable wheels" heading: names follow.
    names_follow: bool,
    killed: bool,
    no_compiler: Option<Option<String>>,
}

impl FailureWatch {
    pub fn new() -> FailureWatch {
        FailureWatch::default()
    }

    fn failed(&mut self, name: &str) {
        let name = name.trim().trim_end_matches(['.', ',']).trim();
        if !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !self.failed.iter().any(|f| f.eq_ignore_ascii_case(name))
        {
            self.failed.push(name.to_string());
        }
    }

    /// The package pip is working on now: the wheel it builds, else the
    /// one it prepares.
    fn current(&self) -> Option<String> {
        self.building.clone().or_else(|| self.collecting.clone())
    }

    pub fn line(&mut self, raw: &str) {
        if raw.contains("Killed signal terminated program") {
            self.killed = true;
        }
        if self.no_compiler.is_none()
            && (raw.contains("No such file or directory: 'x86_64-linux-gnu-gcc'")
                || raw.contains("No such file or directory: 'gcc'")
                || raw.contains("error: command 'gcc' failed")
                || raw.contains("error: command 'x86_64-linux-gnu-gcc' failed"))
        {
            self.no_compiler = Some(self.current());
        }
        // pip's boxed error output (`× …`, `│ …`, `╰─> …`) and its
        // `ERROR: ` prefix (doubled by some releases).
        let mut t = raw
            .trim()
            .trim_start_matches(['×', '│', '╰', '─', '>'])
            .trim();
        if t.is_empty() {
            return;
        }
        while let Some(rest) = t.strip_prefix("ERROR: ") {
            t = rest;
        }
        let names_follow = std::mem::take(&mut self.names_follow);
        // `a, b` or `a b`, as pip lists packages.
        let names = |list: &str| -> Vec<String> {
            list.split([',', ' '])
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect()
        };
        let mut failed = Vec::new();
        if let Some(spec) = t.strip_prefix("Collecting ") {
            self.collecting = Some(requirement_name(spec));
        } else if let Some(rest) = t
            .strip_prefix("Building wheel for ")
            .or_else(|| t.strip_prefix("Running setup.py install for "))
        {
            let name = rest.split([' ', ':']).next().unwrap_or("").to_string();
            if rest.contains("did not run successfully") || rest.contains("status 'error'") {
                failed.push(name);
            } else if rest.contains("status 'done'") {
                self.building = None;
            } else {
                self.building = Some(name);
            }
        } else if let Some(name) = t.strip_prefix("Failed building wheel for ") {
            failed.push(name.to_string());
        } else if let Some(rest) = t.strip_prefix("Failed to build installable wheels") {
            // pip 24 names them in parentheses, pip 25 on the next line (`╰─> a, b`).
            match rest.split_once("projects (") {
                Some((_, inside)) => failed = names(inside.trim_end_matches(')')),
                None => self.names_follow = true,
            }
        } else if let Some(list) = t.strip_prefix("Failed to build ") {
            failed = names(list);
        } else if let Some(rest) = t.strip_prefix("Could not build wheels for ") {
            failed = names(rest.split(", which ").next().unwrap_or(""));
        } else if names_follow && !t.starts_with('[') {
            failed = names(t);
        } else if t == "error: subprocess-exited-with-error" && self.failed.is_empty() {
            // Preparing a package's metadata or its wheel failed: the one
            // pip was on (the lines after it name it too, when they do).
            failed.extend(self.current());
        }
        for name in failed {
            self.failed(&name);
        }
    }

    /// Why the build failed, when the lines said.
    pub fn verdict(&self) -> Option<FailedBuild> {
        if self.killed {
            Some(FailedBuild::OutOfMemory)
        } else if let Some(package) = &self.no_compiler {
            Some(FailedBuild::NoCompiler {
                package: package.clone().or_else(|| self.failed.first().cloned()),
            })
        } else if !self.failed.is_empty() {
            Some(FailedBuild::Compile {
                packages: self.failed.clone(),
            })
        } else {
            None
        }
    }
}

/// The push's sentence for packages that failed to compile on `python`
/// (`3.12`): pip compiles a package only when no wheel of the pinned release
/// fits that Python, so the way out is a release with one, or another Python.
pub fn failed_to_compile(packages: &[String], python: &str) -> String {
    let (names, pin) = match packages {
        [init @ .., last] if !init.is_empty() => (
            format!("{} and {last}", init.join(", ")),
            format!("pin releases of them that ship wheels for Python {python}"),
        ),
        [one] => (
            one.clone(),
            format!("pin a release of {one} that ships a wheel for Python {python}"),
        ),
        _ => (
            "a dependency".to_string(),
            format!("pin a release of it that ships a wheel for Python {python}"),
        ),
    };
    let older = python
        .strip_prefix("3.")
        .and_then(|m| m.parse::<u32>().ok())
        .filter(|m| *m > 8)
        .map(|m| format!("3.{}", m - 1))
        .unwrap_or_else(|| "3.11".into());
    format!(
        "{names} failed to compile for Python {python} (pip's error is above): {pin}, or set the Python the project was written for (e.g. `paas config:set PYTHON_VERSION={older}`), and push again"
    )
}

/// The variable a settings module stopped on, from the error it raised:
/// django-environ's `ImproperlyConfigured: Set the X environment variable`,
/// or `KeyError: 'X'` (settings reading `os.environ["X"]`).
pub fn missing_env_var(line: &str) -> Option<String> {
    let t = line.trim();
    let name = if let Some(rest) = t.split("ImproperlyConfigured: Set the ").nth(1) {
        rest.strip_suffix(" environment variable")?
    } else {
        t.strip_prefix("KeyError: '")?.strip_suffix('\'')?
    };
    let ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    ok.then(|| name.to_string())
}

/// A line of `manage.py check --deploy` as the pusher sees it: Django's
/// headers and hints stay in the release log, each issue keeps its id and
/// first sentence. None: not shown.
pub fn check_line(raw: &str) -> Option<String> {
    let t = raw.trim();
    if t.is_empty()
        || t == "WARNINGS:"
        || t == "ERRORS:"
        || t.starts_with("HINT:")
        || t == "System check identified some issues:"
        || (t.starts_with("System check identified ")
            && t.contains(" issue")
            && !t.contains("no issues"))
    {
        return None;
    }
    // `?: (security.W004) You have not set …. If your entire site …`
    if is_check_issue(t) {
        if let Some(end) = t.find(". ") {
            return Some(t[..=end].trim_end().to_string());
        }
    }
    Some(raw.trim_end().to_string())
}

/// `<object>: (<tag>.<W|E|C|I><digits>) <message>`, Django's way of naming
/// a check's issue; anything else (a traceback, a driver's error) is not cut.
fn is_check_issue(t: &str) -> bool {
    let Some((object, rest)) = t.split_once(": (") else {
        return false;
    };
    let Some((id, _)) = rest.split_once(") ") else {
        return false;
    };
    let Some((tag, code)) = id.rsplit_once('.') else {
        return false;
    };
    !object.is_empty()
        && !object.contains(' ')
        && !tag.is_empty()
        && tag
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
        && code.len() >= 2
        && code.starts_with(['W', 'E', 'C', 'I'])
        && code[1..].chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_environment_variable_is_named() {
        assert_eq!(
            missing_env_var("django.core.exceptions.ImproperlyConfigured: Set the DJANGO_AZURE_ACCOUNT_KEY environment variable"),
            Some("DJANGO_AZURE_ACCOUNT_KEY".into())
        );
        assert_eq!(
            missing_env_var("KeyError: 'SECRET_KEY'"),
            Some("SECRET_KEY".into())
        );
        assert_eq!(missing_env_var("KeyError: 'a b'"), None);
        assert_eq!(missing_env_var("KeyError: 3"), None);
        assert_eq!(missing_env_var("collected 3 files"), None);
    }

    fn shown(raw: &str) -> Vec<String> {
        let mut c = Condenser::new();
        let mut out = Vec::new();
        for l in raw.lines() {
            out.extend(c.line(l));
        }
        out.extend(c.finish());
        out.into_iter()
            .map(|s| match s {
                Shown::Step(t) => format!("-----> {t}"),
                Shown::Info(t) => format!("       {t}"),
            })
            .collect()
    }

    #[test]
    fn docker_plumbing_is_hidden_and_pip_is_grouped() {
        let raw = "Step 1/4 : FROM python:3.11-slim
 ---> d66f656bd892
Step 2/4 : RUN if [ -n \"$PIP_INDEX_URL\" ]; then export PIP_INDEX_URL; fi  && pip install --no-cache-dir -r /paas/deps/requirements.txt gunicorn
 ---> Running in 5c1d2e3f4a5b
Collecting Django<5.0,>=4.2
  Downloading Django-4.2.16-py3-none-any.whl (8.0 MB)
Collecting gunicorn
  Using cached gunicorn-23.0.0-py3-none-any.whl (85 kB)
Collecting uwsgi
  Downloading uwsgi-2.0.28.tar.gz (816 kB)
  Preparing metadata (setup.py): started
Building wheels for collected packages: uwsgi
  Building wheel for uwsgi (setup.py): started
  Building wheel for uwsgi (setup.py): finished with status 'done'
  Created wheel for uwsgi: filename=uWSGI-2.0.28-cp311-cp311-linux_x86_64.whl
  Stored in directory: /tmp/pip-ephem-wheel-cache
Successfully built uwsgi
Installing collected packages: uwsgi, gunicorn, Django
  DEPRECATION: psycopg2 is being installed using the legacy 'setup.py install' method
  Running setup.py install for psycopg2: started
  Running setup.py install for psycopg2: finished with status 'done'
Successfully installed Django-4.2.16 gunicorn-23.0.0 uwsgi-2.0.28
Removing intermediate container 5c1d2e3f4a5b
 ---> 7d9c0a1b2c3d
Step 3/4 : COPY . /app
 ---> 2b3f4c5d6e7f
Step 4/4 : RUN sh /paas/collectstatic.sh
 ---> Running in 0a1b2c3d4e5f

130 static files copied to '/app/staticfiles'.
Removing intermediate container 0a1b2c3d4e5f
 ---> 9f8e7d6c5b4a
Successfully built 9f8e7d6c5b4a
Successfully tagged paas/blog:v1";
        assert_eq!(
            shown(raw),
            [
                "-----> Installing dependencies with pip",
                "       Fetched 3 packages: Django, gunicorn, uwsgi",
                "       Compiled from source: uwsgi, psycopg2",
                "       Installed 3 packages: Django-4.2.16, gunicorn-23.0.0, uwsgi-2.0.28",
                "       130 static files copied to '/app/staticfiles'.",
            ]
        );
    }

    #[test]
    fn a_cached_dependency_layer_is_said_once() {
        let raw = "Step 5/14 : RUN pip install --no-cache-dir -r /paas/deps/requirements.txt  && mkdir -p /opt/venv/.paas  && for lib in $(find /opt/venv -exec ldd {} +); do echo; done | xargs -r dpkg -S >/opt/venv/.paas/runtime-packages
 ---> Using cache
 ---> 7d9c0a1b2c3d
Step 7/14 : RUN missing=$(for p in $(cat /opt/venv/.paas/runtime-packages); do dpkg-query -W \"$p\"; done)  && if [ -n \"$missing\" ]; then apt-get update -qq; fi
 ---> Running in 0a1b2c3d4e5f
Removing intermediate container 0a1b2c3d4e5f
Step 9/14 : RUN pip install --no-cache-dir -r /paas/deps/requirements.txt
 ---> Using cache
 ---> 7d9c0a1b2c3d
Step 10/14 : ENV PORT=8000
 ---> Using cache
 ---> 1a2b3c4d5e6f";
        assert_eq!(
            shown(raw),
            ["       Dependencies unchanged: reusing the installed packages"]
        );
    }

    #[test]
    fn errors_and_paas_headings_pass_through() {
        let raw = "Step 2/4 : RUN pip install --no-cache-dir -r /paas/deps/requirements.txt
 ---> Running in 5c1d2e3f4a5b
Collecting nonexistent-package-xyz
ERROR: Could not find a version that satisfies the requirement nonexistent-package-xyz (from versions: none)
Step 4/4 : RUN sh /paas/collectstatic.sh
 ---> Running in 0a1b2c3d4e5f
-----> collectstatic failed (the error is above): fix it";
        assert_eq!(
            shown(raw),
            [
                "-----> Installing dependencies with pip",
                "       Fetched 1 package: nonexistent-package-xyz",
                "       ERROR: Could not find a version that satisfies the requirement nonexistent-package-xyz (from versions: none)",
                "-----> collectstatic failed (the error is above): fix it",
            ]
        );
    }

    #[test]
    fn check_deploy_keeps_one_line_per_issue() {
        let raw = "System check identified some issues:

WARNINGS:
?: (security.W004) You have not set a value for the SECURE_HSTS_SECONDS setting. If your entire site is served only over SSL, you may want to consider it.
?: (security.W018) You should not have DEBUG set to True in deployment.
\tHINT: Set it in the environment.
notes.Note: (models.W042) Auto-created primary key used when not defining a primary key type.

System check identified 3 issues (0 silenced).";
        let shown: Vec<String> = raw.lines().filter_map(check_line).collect();
        assert_eq!(
            shown,
            [
                "?: (security.W004) You have not set a value for the SECURE_HSTS_SECONDS setting.",
                "?: (security.W018) You should not have DEBUG set to True in deployment.",
                "notes.Note: (models.W042) Auto-created primary key used when not defining a primary key type.",
            ]
        );
        // Not an issue line: shown whole.
        let error = "django.db.utils.OperationalError: connection to server at \"db\" (172.18.0.2), port 5432 failed. FATAL: no pg_hba.conf entry";
        assert_eq!(check_line(error), Some(error.to_string()));
        assert_eq!(
            check_line("System check identified no issues (0 silenced)."),
            Some("System check identified no issues (0 silenced).".into())
        );
    }

    fn verdict(raw: &str) -> Option<FailedBuild> {
        let mut w = FailureWatch::new();
        for l in raw.lines() {
            w.line(l);
        }
        w.verdict()
    }

    #[test]
    fn a_wheel_that_fails_to_compile_names_its_package() {
        // pip 24: the box, then its summary lines.
        let raw = "Collecting Django==4.2.16
Collecting backports.zoneinfo==0.2.1 (from -r /paas/deps/requirements.txt (line 2))
  Downloading backports.zoneinfo-0.2.1.tar.gz (74 kB)
Building wheels for collected packages: backports.zoneinfo
  Building wheel for backports.zoneinfo (pyproject.toml): started
  Building wheel for backports.zoneinfo (pyproject.toml): finished with status 'error'
  error: subprocess-exited-with-error

  × Building wheel for backports.zoneinfo (pyproject.toml) did not run successfully.
  │ exit code: 1
  ╰─> [40 lines of output]
      lib/zoneinfo_module.c:1:10: error: '_PyLong_One' undeclared
      error: command '/usr/bin/gcc' failed with exit code 1
      [end of output]

  note: This error originates from a subprocess, and is likely not a problem with pip.
  ERROR: Failed building wheel for backports.zoneinfo
Failed to build backports.zoneinfo
ERROR: ERROR: Failed to build installable wheels for some pyproject.toml based projects (backports.zoneinfo)";
        assert_eq!(
            verdict(raw),
            Some(FailedBuild::Compile {
                packages: vec!["backports.zoneinfo".into()]
            })
        );
        // pip 25: the names under the heading, in a box of their own.
        let raw = "Building wheels for collected packages: uwsgi, pyyaml
  Building wheel for uwsgi (pyproject.toml): finished with status 'done'
  Building wheel for pyyaml (pyproject.toml): started
  error: subprocess-exited-with-error
error: failed-wheel-build-for-install

× Failed to build installable wheels for some pyproject.toml based projects
╰─> pyyaml";
        assert_eq!(
            verdict(raw),
            Some(FailedBuild::Compile {
                packages: vec!["pyyaml".into()]
            })
        );
        // Older pips: `Could not build wheels for a, b, which is required …`.
        let raw = "ERROR: Could not build wheels for cffi, cryptography, which is required to install pyproject.toml-based projects";
        assert_eq!(
            verdict(raw),
            Some(FailedBuild::Compile {
                packages: vec!["cffi".into(), "cryptography".into()]
            })
        );
        // Metadata that cannot be prepared: the package being collected.
        let raw = "Collecting Django==4.2.16
Collecting oldthing==0.1 (from -r /paas/deps/requirements.txt (line 3))
  Getting requirements to build wheel: finished with status 'error'
  error: subprocess-exited-with-error

  × Getting requirements to build wheel did not run successfully.
  │ exit code: 1
  ╰─> [3 lines of output]
      ModuleNotFoundError: No module named 'distutils'
      [end of output]";
        assert_eq!(
            verdict(raw),
            Some(FailedBuild::Compile {
                packages: vec!["oldthing".into()]
            })
        );
        // A build that failed otherwise is not blamed on a package.
        assert_eq!(
            verdict("Collecting nothing-such\nERROR: Could not find a version that satisfies the requirement nothing-such"),
            None
        );
    }

    #[test]
    fn memory_and_a_missing_compiler_come_before_the_package() {
        let raw = "Building wheel for psycopg-c (pyproject.toml): started
gcc: fatal error: Killed signal terminated program cc1
Failed to build psycopg-c";
        assert_eq!(verdict(raw), Some(FailedBuild::OutOfMemory));
        let raw = "Collecting backports.zoneinfo==0.2.1
Building wheel for backports.zoneinfo (pyproject.toml): started
error: command 'x86_64-linux-gnu-gcc' failed: No such file or directory
Failed to build backports.zoneinfo";
        assert_eq!(
            verdict(raw),
            Some(FailedBuild::NoCompiler {
                package: Some("backports.zoneinfo".into())
            })
        );
    }

    #[test]
    fn the_compile_sentence_names_the_package_and_both_ways_out() {
        assert_eq!(
            failed_to_compile(&["backports.zoneinfo".into()], "3.12"),
            "backports.zoneinfo failed to compile for Python 3.12 (pip's error is above): pin a release of backports.zoneinfo that ships a wheel for Python 3.12, or set the Python the project was written for (e.g. `paas config:set PYTHON_VERSION=3.11`), and push again"
        );
        assert!(failed_to_compile(&["cffi".into(), "cryptography".into()], "3.13")
            .starts_with("cffi and cryptography failed to compile for Python 3.13 (pip's error is above): pin releases of them that ship"));
    }

    #[test]
    fn long_groups_are_cut() {
        let mut c = Condenser::new();
        for i in 0..12 {
            c.line(&format!("Collecting pkg{i}"));
        }
        let out = c.finish();
        assert_eq!(
            out,
            [Shown::Info(
                "Fetched 12 packages: pkg0, pkg1, pkg2, pkg3, pkg4, pkg5, pkg6, pkg7 and 4 more"
                    .into()
            )]
        );
    }
}
