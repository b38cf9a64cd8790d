//! The Django buildpack: detect a Django project in a pushed tree and render
//! the build for it.
//!
//! Pure: [`detect`] only reads files under the checkout, [`render_dockerfile`]
//! and [`context_files`] only format. deploy.rs tars the checkout plus the
//! context files and hands them to the Docker engine. The templates live in
//! `buildpacks/django/` (embedded at compile time); the rules are documented
//! for users in `buildpacks/django/README.md`, and the rendered Dockerfiles
//! are pinned by golden files in `buildpacks/django/golden/`.

use std::path::{Path, PathBuf};

const DOCKERFILE_TEMPLATE: &str = include_str!("../../buildpacks/django/Dockerfile.tmpl");
const SETTINGS_SHIM: &str = include_str!("../../buildpacks/django/paas_settings.py");
const INSPECT_HELPER: &str = include_str!("../../buildpacks/django/paas_inspect.py");
const ENTRYPOINT: &str = include_str!("../../buildpacks/django/entrypoint.sh");

/// Python used when neither the repository nor the config vars pin one.
/// 3.11: supported by every Django from 4.2 LTS on, and the version of the
/// Debian stable python image the test machines build offline.
pub const DEFAULT_PYTHON: &str = "3.11";
/// How deep below the repository root `manage.py` is looked for.
pub const MAX_DEPTH: usize = 3;
/// Folders never searched for `manage.py`: tooling, not the project.
const SKIP_DIRS: &[&str] = &[
    "node_modules",
    "venv",
    "env",
    "__pycache__",
    "site-packages",
];
/// Lock files of other Python package managers; v1 reads requirements.txt only.
const OTHER_DEPENDENCY_FILES: &[&str] = &[
    "Pipfile.lock",
    "Pipfile",
    "poetry.lock",
    "uv.lock",
    "pdm.lock",
    "pyproject.toml",
];

/// What the deploy knows before detection: the daemon's config and the app's config vars.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Base image name with a `{version}` placeholder, e.g. `python:{version}-slim`.
    pub image_pattern: String,
    /// The `PYTHON_VERSION` config var, if set; wins over the repository's files.
    pub python_version: Option<String>,
    /// The `DJANGO_SETTINGS_MODULE` config var, if set; wins over manage.py.
    pub settings_module: Option<String>,
}

/// Where the project's dependencies come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dependencies {
    /// A pip requirements file, relative to the repository root, plus the
    /// files it pulls in with `-r`/`-c` (also relative to the root).
    Requirements { path: String, includes: Vec<String> },
}

/// Everything the build needs to know about one pushed Django project.
#[derive(Debug, Clone)]
pub struct BuildPlan {
    /// Folder holding manage.py, relative to the repository root ("" for the root).
    pub project_dir: String,
    /// The project's own settings module, e.g. `mysite.settings`.
    pub settings_module: String,
    /// Module of the WSGI application, e.g. `mysite.wsgi`.
    pub wsgi_module: String,
    /// Name of the WSGI callable in [`Self::wsgi_module`], usually `application`.
    pub wsgi_callable: String,
    /// `major.minor`, e.g. `3.11`.
    pub python_version: String,
    /// The image the build starts from, e.g. `python:3.11-slim`.
    pub base_image: String,
    pub dependencies: Dependencies,
    /// True when the project does not list gunicorn and the build installs it.
    pub adds_gunicorn: bool,
    /// One line each, shown in the push output.
    pub notes: Vec<String>,
}

/// Why a pushed tree cannot be built. Each message is one sentence that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("No Django project found: paas looks for manage.py at the repository root or in a subfolder up to {MAX_DEPTH} levels deep. Push a Django project, or add manage.py.")]
    NoProject,
    #[error("Found several Django projects ({}): paas deploys one project per app, so keep a single manage.py at the shallowest level.", .0.join(", "))]
    SeveralProjects(Vec<String>),
    #[error("Could not tell the settings module: {0} does not set DJANGO_SETTINGS_MODULE. Name it with `paas config:set DJANGO_SETTINGS_MODULE=mysite.settings`.")]
    NoSettingsModule(String),
    #[error("The settings module {0:?} is not a Python module path: set DJANGO_SETTINGS_MODULE to something like mysite.settings.")]
    BadSettingsModule(String),
    #[error("No WSGI application found: the settings do not set WSGI_APPLICATION and there is no wsgi.py next to them ({0}). Add WSGI_APPLICATION = \"mysite.wsgi.application\" to your settings.")]
    NoWsgi(String),
    #[error("WSGI_APPLICATION {0:?} is not a dotted path like mysite.wsgi.application: fix it in your settings.")]
    BadWsgi(String),
    #[error("No requirements.txt found: list your dependencies (at least Django) in requirements.txt at the repository root or next to manage.py.")]
    NoRequirements,
    #[error("Found {0} but no requirements.txt: paas v1 installs dependencies from requirements.txt only, so export one (e.g. `poetry export -o requirements.txt` or `pip freeze > requirements.txt`) and commit it.")]
    OtherDependencyFile(String),
    #[error("{file} includes {include}, which is not in the repository: commit it, or list its packages in {file}.")]
    MissingInclude { file: String, include: String },
    #[error(
        "Unsupported Python version {value:?} (from {source_name}): write a version like 3.11."
    )]
    BadPythonVersion { value: String, source_name: String },
    #[error("The path {0:?} has characters paas does not accept in build paths: rename it using letters, digits, '.', '_', '-' and '/'.")]
    UnsafePath(String),
    #[error(
        "Could not read {path}: {err}. Check the file is committed and readable, then push again."
    )]
    Io { path: String, err: std::io::Error },
}

/// Detects the Django project in the checkout at `root`.
pub fn detect(root: &Path, opts: &BuildOptions) -> Result<BuildPlan, DetectError> {
    let mut notes = Vec::new();
    let project_dir = find_project_dir(root)?;
    check_safe_path(&project_dir)?;
    let project = root.join(&project_dir);
    let manage_py = join_rel(&project_dir, "manage.py");

    // Settings module: config var first, then manage.py.
    let settings_module = match &opts.settings_module {
        Some(m) => {
            notes.push(format!(
                "Settings {m} (from the DJANGO_SETTINGS_MODULE config var)"
            ));
            m.trim().to_string()
        }
        None => {
            let text = read(&project.join("manage.py"), &manage_py)?;
            let m = parse_settings_module(&text)
                .ok_or_else(|| DetectError::NoSettingsModule(manage_py.clone()))?;
            notes.push(format!("Settings {m} (from {manage_py})"));
            m
        }
    };
    if !is_dotted_path(&settings_module) {
        return Err(DetectError::BadSettingsModule(settings_module));
    }

    let (wsgi_module, wsgi_callable) =
        find_wsgi(&project, &project_dir, &settings_module, &mut notes)?;

    let python_version = python_version(root, &project_dir, opts, &mut notes)?;
    let base_image = opts.image_pattern.replace("{version}", &python_version);

    let (req_path, includes, names) = find_requirements(root, &project_dir, &mut notes)?;
    if !names.iter().any(|n| n == "django") {
        notes.push(format!(
            "warning: {req_path} does not list Django; the build will fail unless another listed package brings it"
        ));
    }
    let adds_gunicorn = !names.iter().any(|n| n == "gunicorn");
    if adds_gunicorn {
        notes.push("gunicorn added: the project does not list it".to_string());
    }

    Ok(BuildPlan {
        project_dir,
        settings_module,
        wsgi_module,
        wsgi_callable,
        python_version,
        base_image,
        dependencies: Dependencies::Requirements {
            path: req_path,
            includes,
        },
        adds_gunicorn,
        notes,
    })
}

/// The Dockerfile for `plan` (build context: the checkout plus [`context_files`]).
pub fn render_dockerfile(plan: &BuildPlan) -> String {
    let Dependencies::Requirements { path, includes } = &plan.dependencies;
    let mut copy = String::new();
    for file in std::iter::once(path).chain(includes) {
        copy.push_str(&format!("COPY {file} /paas/deps/{file}\n"));
    }
    let mut pip_args = format!("-r /paas/deps/{path}");
    if plan.adds_gunicorn {
        pip_args.push_str(" gunicorn");
    }
    let workdir = if plan.project_dir.is_empty() {
        "/app".to_string()
    } else {
        format!("/app/{}", plan.project_dir)
    };
    DOCKERFILE_TEMPLATE
        .replace("{{base_image}}", &plan.base_image)
        .replace("{{copy_requirements}}", copy.trim_end())
        .replace("{{pip_args}}", &pip_args)
        .replace("{{workdir}}", &workdir)
        .replace("{{settings_module}}", &plan.settings_module)
        .replace(
            "{{wsgi_app}}",
            &format!("{}:{}", plan.wsgi_module, plan.wsgi_callable),
        )
}

/// Files added to the build context next to the checkout, by path in the context.
pub fn context_files(plan: &BuildPlan) -> Vec<(String, Vec<u8>)> {
    vec![
        (
            ".paas/Dockerfile".into(),
            render_dockerfile(plan).into_bytes(),
        ),
        (
            ".paas/paas_settings.py".into(),
            SETTINGS_SHIM.as_bytes().to_vec(),
        ),
        (
            ".paas/paas_inspect.py".into(),
            INSPECT_HELPER.as_bytes().to_vec(),
        ),
        (".paas/entrypoint.sh".into(), ENTRYPOINT.as_bytes().to_vec()),
    ]
}

// ---- project folder ----

/// The folder (relative, "" for the root) of the shallowest manage.py.
fn find_project_dir(root: &Path) -> Result<String, DetectError> {
    let mut level: Vec<PathBuf> = vec![PathBuf::new()];
    for _depth in 0..=MAX_DEPTH {
        let mut found: Vec<String> = level
            .iter()
            .filter(|rel| is_file(&root.join(rel).join("manage.py")))
            .map(|rel| rel.to_string_lossy().into_owned())
            .collect();
        match found.len() {
            0 => {}
            1 => return Ok(found.remove(0)),
            _ => {
                found.sort();
                return Err(DetectError::SeveralProjects(
                    found.iter().map(|d| join_rel(d, "manage.py")).collect(),
                ));
            }
        }
        let mut next = Vec::new();
        for rel in &level {
            let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                // file_type() does not follow symlinks: a link never leads the search out of the checkout.
                let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
                if is_dir && !name.starts_with('.') && !SKIP_DIRS.contains(&name.as_str()) {
                    next.push(rel.join(name));
                }
            }
        }
        next.sort();
        level = next;
    }
    Err(DetectError::NoProject)
}

/// `DJANGO_SETTINGS_MODULE` from manage.py: `os.environ.setdefault("DJANGO_SETTINGS_MODULE", "x.settings")`
/// or `os.environ["DJANGO_SETTINGS_MODULE"] = 'x.settings'`.
fn parse_settings_module(manage_py: &str) -> Option<String> {
    const KEY: &str = "DJANGO_SETTINGS_MODULE";
    for line in manage_py.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some(at) = line.find(KEY) else { continue };
        let rest = &line[at + KEY.len()..];
        // The key's closing quote, then `, ` or `] = `, then the quoted value.
        let rest = rest.strip_prefix(['"', '\''])?;
        let rest = rest
            .trim_start_matches(|c: char| c.is_whitespace() || c == ',' || c == ']' || c == '=');
        if let Some(value) = quoted(rest) {
            return Some(value.to_string());
        }
    }
    None
}

/// The content of a leading '…' or "…" string.
fn quoted(s: &str) -> Option<&str> {
    let q = s.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let body = &s[1..];
    body.find(q).map(|end| &body[..end])
}

fn is_dotted_path(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

// ---- WSGI ----

/// (module, callable) of the WSGI application.
fn find_wsgi(
    project: &Path,
    project_dir: &str,
    settings_module: &str,
    notes: &mut Vec<String>,
) -> Result<(String, String), DetectError> {
    let module_path = settings_module.replace('.', "/");
    let candidates = [
        project.join(format!("{module_path}.py")),
        project.join(&module_path).join("__init__.py"),
    ];
    if let Some(file) = candidates.iter().find(|p| is_file(p)) {
        // The settings file first, then its siblings (a settings package: base.py, production.py …).
        let mut files = vec![file.clone()];
        if let Some(Ok(entries)) = file.parent().map(std::fs::read_dir) {
            let mut siblings: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p != file && p.extension().is_some_and(|e| e == "py") && is_file(p))
                .collect();
            siblings.sort();
            files.extend(siblings);
        }
        for f in files {
            let rel = f
                .strip_prefix(project)
                .map(|r| join_rel(project_dir, &r.to_string_lossy()))
                .unwrap_or_default();
            let text = read(&f, &rel)?;
            if let Some(value) = parse_wsgi_application(&text) {
                let Some((module, callable)) =
                    value.rsplit_once('.').filter(|_| is_dotted_path(&value))
                else {
                    return Err(DetectError::BadWsgi(value));
                };
                notes.push(format!(
                    "WSGI application {module}:{callable} (from WSGI_APPLICATION in {rel})"
                ));
                return Ok((module.to_string(), callable.to_string()));
            }
        }
    }
    // No WSGI_APPLICATION: the wsgi.py of the settings' package or of a parent package.
    let parts: Vec<&str> = settings_module.split('.').collect();
    for n in (1..parts.len()).rev() {
        let module = format!("{}.wsgi", parts[..n].join("."));
        if is_file(&project.join(format!("{}.py", module.replace('.', "/")))) {
            notes.push(format!(
                "WSGI application {module}:application (no WSGI_APPLICATION in the settings)"
            ));
            return Ok((module, "application".to_string()));
        }
    }
    Err(DetectError::NoWsgi(settings_module.to_string()))
}

/// The value of a top-level `WSGI_APPLICATION = "…"` line.
fn parse_wsgi_application(settings: &str) -> Option<String> {
    settings.lines().find_map(|line| {
        let rest = line.strip_prefix("WSGI_APPLICATION")?.trim_start();
        let rest = rest.strip_prefix('=')?.trim_start();
        quoted(rest).map(str::to_string)
    })
}

// ---- Python version ----

fn python_version(
    root: &Path,
    project_dir: &str,
    opts: &BuildOptions,
    notes: &mut Vec<String>,
) -> Result<String, DetectError> {
    let mut sources: Vec<(String, String)> = Vec::new();
    if let Some(v) = &opts.python_version {
        sources.push((v.clone(), "the PYTHON_VERSION config var".to_string()));
    }
    for file in [".python-version", "runtime.txt"] {
        for dir in dedup_dirs(project_dir) {
            let rel = join_rel(&dir, file);
            let path = root.join(&rel);
            if is_file(&path) {
                let text = read(&path, &rel)?;
                let first = text
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty() && !l.starts_with('#'))
                    .unwrap_or("")
                    .to_string();
                sources.push((first, rel));
            }
        }
    }
    match sources.into_iter().next() {
        Some((value, source_name)) => {
            let v = parse_python_version(&value).ok_or_else(|| DetectError::BadPythonVersion {
                value: value.clone(),
                source_name: source_name.clone(),
            })?;
            notes.push(format!("Python {v} (from {source_name})"));
            Ok(v)
        }
        None => {
            notes.push(format!(
                "Python {DEFAULT_PYTHON} (default; pin another with .python-version)"
            ));
            Ok(DEFAULT_PYTHON.to_string())
        }
    }
}

/// `3.11`, `3.11.4`, `python-3.11.4`, `python3.12` → `3.x`.
fn parse_python_version(value: &str) -> Option<String> {
    let v = value.trim();
    let v = v
        .strip_prefix("python-")
        .or_else(|| v.strip_prefix("python"))
        .unwrap_or(v);
    let mut parts = v.split('.');
    let major = parts.next()?;
    let minor = parts.next()?;
    let patch_ok = parts.all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    (major == "3" && digits(minor) && patch_ok).then(|| format!("{major}.{minor}"))
}

// ---- requirements ----

/// (requirements path, included files, normalized package names), paths relative to the root.
fn find_requirements(
    root: &Path,
    project_dir: &str,
    notes: &mut Vec<String>,
) -> Result<(String, Vec<String>, Vec<String>), DetectError> {
    let dirs = dedup_dirs(project_dir);
    let Some(req) = dirs
        .iter()
        .map(|d| join_rel(d, "requirements.txt"))
        .find(|rel| is_file(&root.join(rel)))
    else {
        let other = dirs.iter().find_map(|d| {
            OTHER_DEPENDENCY_FILES
                .iter()
                .map(|f| join_rel(d, f))
                .find(|rel| is_file(&root.join(rel)))
        });
        return Err(match other {
            Some(f) => DetectError::OtherDependencyFile(f),
            None => DetectError::NoRequirements,
        });
    };
    check_safe_path(&req)?;
    for d in &dirs {
        for f in OTHER_DEPENDENCY_FILES.iter().take(5) {
            let rel = join_rel(d, f);
            if is_file(&root.join(&rel)) {
                notes.push(format!("{rel} ignored: dependencies come from {req}"));
            }
        }
    }
    notes.push(format!("Dependencies from {req}"));

    let mut names = Vec::new();
    let mut includes: Vec<String> = Vec::new();
    let mut queue = vec![req.clone()];
    while let Some(file) = queue.pop() {
        let text = read(&root.join(&file), &file)?;
        let base = Path::new(&file).parent().unwrap_or(Path::new(""));
        for line in text.lines() {
            let line = match line.find(" #") {
                Some(i) => &line[..i],
                None => line,
            }
            .trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(target) = include_target(line) {
                if target.contains("://") {
                    continue; // fetched by pip itself
                }
                let rel = normalize(&base.join(target));
                let ok = rel.as_deref().is_some_and(|r| is_file(&root.join(r)));
                let Some(rel) = rel.filter(|_| ok) else {
                    return Err(DetectError::MissingInclude {
                        file: file.clone(),
                        include: target.to_string(),
                    });
                };
                check_safe_path(&rel)?;
                if rel != req && !includes.contains(&rel) {
                    includes.push(rel.clone());
                    queue.push(rel);
                }
                continue;
            }
            if line.starts_with('-') {
                continue;
            }
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect();
            if !name.is_empty() {
                names.push(name.to_ascii_lowercase().replace(['_', '.'], "-"));
            }
        }
    }
    includes.sort();
    Ok((req, includes, names))
}

/// The file named by `-r FILE`, `-rFILE`, `--requirement=FILE`, `-c FILE`, `--constraint FILE`.
fn include_target(line: &str) -> Option<&str> {
    for flag in ["--requirement", "--constraint", "-r", "-c"] {
        let Some(rest) = line.strip_prefix(flag) else {
            continue;
        };
        let value = match rest.strip_prefix(['=', ' ', '\t']) {
            Some(v) => v.trim(),
            // `-rbase.txt`: short flags take their value attached too.
            None if flag.len() == 2 && !rest.starts_with('-') => rest.trim(),
            None => continue,
        };
        if !value.is_empty() {
            return Some(value);
        }
    }
    None
}

/// A relative path without `.`/`..`, or None when it leaves the root.
fn normalize(p: &Path) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop()?;
            }
            _ => return None,
        }
    }
    Some(out.join("/"))
}

// ---- helpers ----

/// The repository root, then the project folder when it differs.
fn dedup_dirs(project_dir: &str) -> Vec<String> {
    let mut dirs = vec![String::new()];
    if !project_dir.is_empty() {
        dirs.push(project_dir.to_string());
    }
    dirs
}

fn join_rel(dir: &str, file: &str) -> String {
    if dir.is_empty() {
        file.to_string()
    } else {
        format!("{dir}/{file}")
    }
}

/// Paths go into the Dockerfile unquoted: keep them to a plain character set.
fn check_safe_path(p: &str) -> Result<(), DetectError> {
    let ok = p
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if ok {
        Ok(())
    } else {
        Err(DetectError::UnsafePath(p.to_string()))
    }
}

fn is_file(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file())
}

fn read(p: &Path, shown: &str) -> Result<String, DetectError> {
    std::fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|err| DetectError::Io {
            path: shown.to_string(),
            err,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> BuildOptions {
        BuildOptions {
            image_pattern: "python:{version}-slim".into(),
            python_version: None,
            settings_module: None,
        }
    }

    const MANAGE: &str =
        "import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')\n";

    /// A temp tree from (path, content) pairs.
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        dir
    }

    /// A minimal startproject-shaped project under `prefix`.
    fn project(prefix: &str, extra: &[(&str, &str)]) -> tempfile::TempDir {
        let p = |f: &str| join_rel(prefix, f);
        let mut files = vec![
            (p("manage.py"), MANAGE.to_string()),
            (p("mysite/__init__.py"), String::new()),
            (
                p("mysite/settings.py"),
                "WSGI_APPLICATION = 'mysite.wsgi.application'\n".into(),
            ),
            (p("mysite/wsgi.py"), "application = None\n".into()),
            ("requirements.txt".to_string(), "Django>=4.2,<5.0\n".into()),
        ];
        for (f, c) in extra {
            files.retain(|(g, _)| g != f);
            files.push((f.to_string(), c.to_string()));
        }
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        tree(&refs)
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn detects_a_project_at_the_root() {
        let d = project("", &[]);
        let plan = detect(d.path(), &opts()).unwrap();
        assert_eq!(plan.project_dir, "");
        assert_eq!(plan.settings_module, "mysite.settings");
        assert_eq!(plan.wsgi_module, "mysite.wsgi");
        assert_eq!(plan.wsgi_callable, "application");
        assert_eq!(plan.python_version, "3.11");
        assert_eq!(plan.base_image, "python:3.11-slim");
        assert!(plan.adds_gunicorn);
        assert_eq!(
            plan.dependencies,
            Dependencies::Requirements {
                path: "requirements.txt".into(),
                includes: vec![]
            }
        );
        assert!(plan
            .notes
            .iter()
            .any(|n| n == "gunicorn added: the project does not list it"));
    }

    #[test]
    fn detects_a_project_in_a_subfolder_up_to_three_levels() {
        for prefix in ["site", "src/site", "a/b/c"] {
            let d = project(prefix, &[]);
            let plan = detect(d.path(), &opts()).unwrap();
            assert_eq!(plan.project_dir, prefix);
        }
    }

    #[test]
    fn refuses_a_manage_py_four_levels_deep() {
        let d = project("a/b/c/d", &[]);
        let err = detect(d.path(), &opts()).unwrap_err();
        assert!(matches!(err, DetectError::NoProject), "{err}");
    }

    #[test]
    fn skips_virtualenvs_and_node_modules() {
        let d = project(
            "",
            &[
                ("node_modules/x/manage.py", MANAGE),
                (".venv/manage.py", MANAGE),
            ],
        );
        assert_eq!(detect(d.path(), &opts()).unwrap().project_dir, "");
        let d = tree(&[
            ("node_modules/x/manage.py", MANAGE),
            ("venv/manage.py", MANAGE),
        ]);
        assert!(matches!(
            detect(d.path(), &opts()),
            Err(DetectError::NoProject)
        ));
    }

    #[test]
    fn the_shallowest_manage_py_wins_and_ties_are_refused() {
        let d = project("", &[("tools/demo/manage.py", MANAGE)]);
        assert_eq!(detect(d.path(), &opts()).unwrap().project_dir, "");
        let d = tree(&[("one/manage.py", MANAGE), ("two/manage.py", MANAGE)]);
        let err = detect(d.path(), &opts()).unwrap_err();
        assert!(
            err.to_string().contains("one/manage.py, two/manage.py"),
            "{err}"
        );
    }

    #[test]
    fn reads_the_settings_module_in_both_quote_styles() {
        let cases = [
            "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'a.settings')",
            "os.environ.setdefault(\"DJANGO_SETTINGS_MODULE\", \"a.settings\")",
            "    os.environ.setdefault(\n# x\n\"DJANGO_SETTINGS_MODULE\",\"a.settings\")",
            "os.environ['DJANGO_SETTINGS_MODULE'] = 'a.settings'",
        ];
        for c in cases {
            assert_eq!(
                parse_settings_module(c).as_deref(),
                Some("a.settings"),
                "{c}"
            );
        }
        assert_eq!(
            parse_settings_module("# DJANGO_SETTINGS_MODULE 'x'\nimport os"),
            None
        );
    }

    #[test]
    fn the_settings_config_var_wins_over_manage_py() {
        let d = project(
            "",
            &[("mysite/prod.py", "WSGI_APPLICATION = \"mysite.wsgi.app\"\n")],
        );
        let o = BuildOptions {
            settings_module: Some("mysite.prod".into()),
            ..opts()
        };
        let plan = detect(d.path(), &o).unwrap();
        assert_eq!(plan.settings_module, "mysite.prod");
        assert_eq!(
            (plan.wsgi_module.as_str(), plan.wsgi_callable.as_str()),
            ("mysite.wsgi", "app")
        );
        let o = BuildOptions {
            settings_module: Some("my site".into()),
            ..opts()
        };
        assert!(matches!(
            detect(d.path(), &o),
            Err(DetectError::BadSettingsModule(_))
        ));
    }

    #[test]
    fn manage_py_without_settings_is_explained() {
        let d = project("", &[("manage.py", "print('hi')\n")]);
        let err = detect(d.path(), &opts()).unwrap_err();
        assert!(
            err.to_string()
                .contains("paas config:set DJANGO_SETTINGS_MODULE"),
            "{err}"
        );
    }

    #[test]
    fn parses_wsgi_application() {
        assert_eq!(
            parse_wsgi_application("X = 1\nWSGI_APPLICATION = \"conf.wsgi.application\"\n")
                .as_deref(),
            Some("conf.wsgi.application")
        );
        assert_eq!(
            parse_wsgi_application("WSGI_APPLICATION='a.b.c'").as_deref(),
            Some("a.b.c")
        );
        assert_eq!(parse_wsgi_application("# WSGI_APPLICATION = 'x.y'"), None);
    }

    #[test]
    fn wsgi_comes_from_a_settings_package_or_falls_back_to_wsgi_py() {
        // Settings package: WSGI_APPLICATION in a sibling base.py.
        let d = tree(&[
            (
                "manage.py",
                "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'conf.settings.prod')",
            ),
            ("conf/settings/__init__.py", ""),
            (
                "conf/settings/base.py",
                "WSGI_APPLICATION = 'conf.wsgi.application'\n",
            ),
            ("conf/settings/prod.py", "from .base import *\n"),
            ("requirements.txt", "django\n"),
        ]);
        assert_eq!(detect(d.path(), &opts()).unwrap().wsgi_module, "conf.wsgi");
        // No WSGI_APPLICATION anywhere: the settings package's wsgi.py.
        let d = project("", &[("mysite/settings.py", "DEBUG = False\n")]);
        let plan = detect(d.path(), &opts()).unwrap();
        assert_eq!(plan.wsgi_module, "mysite.wsgi");
        // Neither: a clear error.
        let d = tree(&[
            ("manage.py", MANAGE),
            ("mysite/settings.py", ""),
            ("requirements.txt", "django"),
        ]);
        assert!(matches!(
            detect(d.path(), &opts()),
            Err(DetectError::NoWsgi(_))
        ));
    }

    #[test]
    fn python_version_from_each_source() {
        let d = project("", &[]);
        assert_eq!(
            detect(d.path(), &opts()).unwrap().python_version,
            DEFAULT_PYTHON
        );
        let d = project("", &[(".python-version", "3.13.1\n")]);
        let plan = detect(d.path(), &opts()).unwrap();
        assert_eq!(plan.python_version, "3.13");
        assert_eq!(plan.base_image, "python:3.13-slim");
        assert!(plan
            .notes
            .iter()
            .any(|n| n == "Python 3.13 (from .python-version)"));
        let d = project("src", &[("src/runtime.txt", "python-3.12.4\n")]);
        let plan = detect(d.path(), &opts()).unwrap();
        assert_eq!(plan.python_version, "3.12");
        assert!(plan
            .notes
            .iter()
            .any(|n| n == "Python 3.12 (from src/runtime.txt)"));
        // .python-version wins over runtime.txt; the config var wins over both.
        let d = project(
            "",
            &[
                (".python-version", "3.13"),
                ("runtime.txt", "python-3.12.1"),
            ],
        );
        assert_eq!(detect(d.path(), &opts()).unwrap().python_version, "3.13");
        let o = BuildOptions {
            python_version: Some("3.11".into()),
            ..opts()
        };
        assert_eq!(detect(d.path(), &o).unwrap().python_version, "3.11");
        let d = project("", &[(".python-version", "pypy3.10")]);
        let err = detect(d.path(), &opts()).unwrap_err();
        assert!(err.to_string().contains("from .python-version"), "{err}");
    }

    #[test]
    fn gunicorn_is_added_only_when_missing() {
        for listed in [
            "gunicorn",
            "Gunicorn==22.0.0",
            "gunicorn[gevent]>=21 # web",
            "GUNICORN ; python_version>'3'",
        ] {
            let d = project("", &[("requirements.txt", &format!("Django\n{listed}\n"))]);
            assert!(
                !detect(d.path(), &opts()).unwrap().adds_gunicorn,
                "{listed}"
            );
        }
        let d = project(
            "",
            &[("requirements.txt", "Django\ngunicorn-extras\n# gunicorn\n")],
        );
        assert!(detect(d.path(), &opts()).unwrap().adds_gunicorn);
    }

    #[test]
    fn requirements_includes_are_followed_and_copied() {
        let d = project(
            "app",
            &[
                ("requirements.txt", "-r requirements/base.txt\n"),
                (
                    "requirements/base.txt",
                    "Django\n-c constraints.txt\ngunicorn\n",
                ),
                ("requirements/constraints.txt", "django<5\n"),
            ],
        );
        let plan = detect(d.path(), &opts()).unwrap();
        assert!(!plan.adds_gunicorn);
        assert_eq!(
            plan.dependencies,
            Dependencies::Requirements {
                path: "requirements.txt".into(),
                includes: vec![
                    "requirements/base.txt".into(),
                    "requirements/constraints.txt".into()
                ],
            }
        );
        let d = project("", &[("requirements.txt", "-r ../outside.txt\n")]);
        assert!(matches!(
            detect(d.path(), &opts()),
            Err(DetectError::MissingInclude { .. })
        ));
    }

    #[test]
    fn requirements_next_to_manage_py_are_found() {
        let d = project("src", &[]);
        std::fs::rename(
            d.path().join("requirements.txt"),
            d.path().join("src/requirements.txt"),
        )
        .unwrap();
        let plan = detect(d.path(), &opts()).unwrap();
        let Dependencies::Requirements { path, .. } = plan.dependencies;
        assert_eq!(path, "src/requirements.txt");
    }

    #[test]
    fn no_requirements_is_explained() {
        let d = project("", &[]);
        std::fs::remove_file(d.path().join("requirements.txt")).unwrap();
        let err = detect(d.path(), &opts()).unwrap_err();
        assert!(matches!(err, DetectError::NoRequirements));
        assert!(err.to_string().starts_with("No requirements.txt found: list your dependencies (at least Django) in requirements.txt"));
        std::fs::write(d.path().join("poetry.lock"), "").unwrap();
        let err = detect(d.path(), &opts()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Found poetry.lock but no requirements.txt"),
            "{err}"
        );
    }

    #[test]
    fn fixtures_are_detected_as_the_tests_expect() {
        let blog = detect(&fixture("blog"), &opts()).unwrap();
        assert_eq!(
            (blog.project_dir.as_str(), blog.settings_module.as_str()),
            ("", "mysite.settings")
        );
        assert!(blog.adds_gunicorn);
        let sub = detect(&fixture("subdir"), &opts()).unwrap();
        assert_eq!(sub.project_dir, "src/site");
        for ok in ["broken-migration", "bad-requirement"] {
            detect(&fixture(ok), &opts()).unwrap();
        }
        let err = detect(&fixture("not-django"), &opts()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "No Django project found: paas looks for manage.py at the repository root or in a subfolder up to 3 levels deep. Push a Django project, or add manage.py."
        );
    }

    #[test]
    fn context_files_carry_the_dockerfile_and_helpers() {
        let plan = detect(&fixture("blog"), &opts()).unwrap();
        let names: Vec<String> = context_files(&plan).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                ".paas/Dockerfile",
                ".paas/paas_settings.py",
                ".paas/paas_inspect.py",
                ".paas/entrypoint.sh"
            ]
        );
    }

    /// Rendered Dockerfiles are pinned in buildpacks/django/golden/.
    /// `PAAS_UPDATE_GOLDEN=1 cargo test` rewrites them after a deliberate change.
    #[test]
    fn rendered_dockerfiles_match_the_golden_files() {
        let sub_opts = BuildOptions {
            python_version: Some("3.13".into()),
            ..opts()
        };
        let with_includes = project(
            "",
            &[
                (
                    "requirements.txt",
                    "-r requirements/base.txt\ngunicorn==23.0.0\n",
                ),
                ("requirements/base.txt", "Django\n"),
            ],
        );
        let cases = [
            ("blog", detect(&fixture("blog"), &opts()).unwrap()),
            (
                "subdir-py313",
                detect(&fixture("subdir"), &sub_opts).unwrap(),
            ),
            (
                "includes-with-gunicorn",
                detect(with_includes.path(), &opts()).unwrap(),
            ),
        ];
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("buildpacks/django/golden");
        let update = std::env::var("PAAS_UPDATE_GOLDEN").is_ok_and(|v| v == "1");
        for (name, plan) in cases {
            let path = dir.join(format!("{name}.Dockerfile"));
            let got = render_dockerfile(&plan);
            if update {
                std::fs::write(&path, &got).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&path).unwrap_or_default();
            assert_eq!(
                got,
                want,
                "{} differs; run with PAAS_UPDATE_GOLDEN=1 to accept",
                path.display()
            );
        }
    }
}
