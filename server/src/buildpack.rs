//! The Django buildpack: detect a Django project in a pushed tree and render
//! the build for it.
//!
//! Pure: [`detect`] and [`dependency_build`] only read files under the
//! checkout; [`render_dockerfile`], [`code_files`] and [`run_settings`] only
//! format. A release image is two things: a dependency image built from a
//! Dockerfile, keyed by its content and shared ([`dependency_build`]), and
//! one layer deploy.rs makes of the code, the buildpack's files
//! ([`code_files`]) and what the build step wrote. The templates live in
//! `buildpacks/django/` (embedded at compile time, rendered with tera); the
//! rules are documented for users in `buildpacks/django/README.md`, and the
//! rendered Dockerfiles are pinned by golden files in
//! `buildpacks/django/golden/`.

mod deps;
mod native;
mod statements;
pub use statements::Support;

pub use native::Native;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

const DOCKERFILE_TEMPLATE: &str = include_str!("../../buildpacks/django/Dockerfile.tmpl");
const DEPENDENCIES_TEMPLATE: &str = include_str!("../../buildpacks/django/dependencies.tmpl");
const BUILD_STAGE_TEMPLATE: &str = include_str!("../../buildpacks/django/build-stage.tmpl");
const SETTINGS_SHIM: &str = include_str!("../../buildpacks/django/paas_settings.py");
const INSPECT_HELPER: &str = include_str!("../../buildpacks/django/paas_inspect.py");
const ENTRYPOINT: &str = include_str!("../../buildpacks/django/entrypoint.sh");
const MANAGE_PY: &str = include_str!("../../buildpacks/django/manage.py");
const COLLECTSTATIC: &str = include_str!("../../buildpacks/django/collectstatic.sh");

/// The build step prints this line before `manage.py check --deploy`'s
/// output, and [`CHECK_END`] after it (see paas_inspect.py).
pub const CHECK_MARK: &str = "-----> paas: check --deploy";
pub const CHECK_END: &str = "-----> paas: checked";

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
/// Where generated pinned requirements go in the build context (and under /paas/deps/ in the image).
pub const GENERATED_REQUIREMENTS: &str = ".paas/requirements.lock.txt";
/// Where requirements files paas rewrote go in the build context, by their path.
pub const REWRITTEN_REQUIREMENTS: &str = ".paas/requirements";
/// Settings modules of a settings package preferred for deploys, in order.
const PREFERRED_SETTINGS: &[&str] = &["production", "prod"];

/// What the deploy knows before detection: the daemon's config and the app's config vars.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Base image name with a `{version}` placeholder, e.g. `python:{version}-slim`.
    pub image_pattern: String,
    /// The `PYTHON_VERSION` config var, if set; wins over the repository's files.
    pub python_version: Option<String>,
    /// The `DJANGO_SETTINGS_MODULE` config var, if set; wins over manage.py.
    pub settings_module: Option<String>,
    /// Pythons (`3.x`) whose base image is already on this server: when the
    /// project pins none, the newest of them it allows is taken before a
    /// newer one that would be pulled (see [`local_pythons`]).
    pub local_pythons: Vec<String>,
}

/// Further config vars the buildpack reads; `Default` is "none set".
/// Kept apart from [`BuildOptions`] so callers that build it field by field
/// keep compiling; [`BuildVars::from_config_vars`] reads them all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildVars {
    /// `PAAS_DEPENDENCIES`: `requirements`, `pipfile`, `poetry`, `uv` or `pyproject`.
    pub dependencies: Option<String>,
    /// `DISABLE_COLLECTSTATIC` set (to anything but `0`, `false`, `no`, `off`).
    pub disable_collectstatic: bool,
    /// `PAAS_BUILD_PACKAGES`: Debian packages for a build stage (as written;
    /// checked at detection), for native dependencies paas does not know.
    pub build_packages: Option<String>,
    /// `PAAS_RUNTIME_PACKAGES`: Debian packages the app's image gets.
    pub runtime_packages: Option<String>,
    /// `DATABASE_URL` points at PostgreSQL: the image needs a driver.
    pub postgres: bool,
}

impl BuildVars {
    /// The buildpack's config vars from an app's config.
    pub fn from_config_vars(vars: &BTreeMap<String, String>) -> BuildVars {
        let set = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        BuildVars {
            dependencies: set("PAAS_DEPENDENCIES").map(str::to_string),
            disable_collectstatic: set("DISABLE_COLLECTSTATIC").is_some_and(|v| {
                !matches!(
                    v.to_ascii_lowercase().as_str(),
                    "0" | "false" | "no" | "off"
                )
            }),
            build_packages: set("PAAS_BUILD_PACKAGES").map(str::to_string),
            runtime_packages: set("PAAS_RUNTIME_PACKAGES").map(str::to_string),
            postgres: set("DATABASE_URL")
                .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://")),
        }
    }
}

/// The PostgreSQL driver paas adds when DATABASE_URL needs one and the
/// project lists none (a wheel: nothing to compile).
pub const POSTGRES_DRIVER: &str = "psycopg[binary]";

/// The kinds of dependency source, by their `PAAS_DEPENDENCIES` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DependencyKind {
    /// requirements.txt (with its `-r`/`-c` includes).
    Requirements,
    /// Pipfile.lock, else Pipfile.
    Pipfile,
    /// poetry.lock (with pyproject.toml for the main group).
    Poetry,
    /// uv.lock.
    Uv,
    /// `[project].dependencies` of pyproject.toml, without a lock.
    Pyproject,
}

impl DependencyKind {
    pub const ALL: [DependencyKind; 5] = [
        DependencyKind::Requirements,
        DependencyKind::Pipfile,
        DependencyKind::Poetry,
        DependencyKind::Uv,
        DependencyKind::Pyproject,
    ];

    /// The config var value naming this kind.
    pub fn name(self) -> &'static str {
        match self {
            DependencyKind::Requirements => "requirements",
            DependencyKind::Pipfile => "pipfile",
            DependencyKind::Poetry => "poetry",
            DependencyKind::Uv => "uv",
            DependencyKind::Pyproject => "pyproject",
        }
    }

    fn parse(s: &str) -> Option<DependencyKind> {
        let s = s.trim().to_ascii_lowercase();
        DependencyKind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// What the user commits for this kind, for messages.
    fn files(self) -> &'static str {
        match self {
            DependencyKind::Requirements => "requirements.txt",
            DependencyKind::Pipfile => "Pipfile.lock or Pipfile",
            DependencyKind::Poetry => "poetry.lock",
            DependencyKind::Uv => "uv.lock",
            DependencyKind::Pyproject => "pyproject.toml with [project].dependencies",
        }
    }
}

/// Where the project's dependencies come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dependencies {
    /// A pip requirements file, relative to the repository root, plus the
    /// files it pulls in with `-r`/`-c` (also relative to the root).
    /// `rewritten` holds the files whose installed copy differs from the
    /// pushed one (path, content): an index line naming the public index is
    /// commented out so the build's configured index (a mirror) serves it.
    Requirements {
        path: String,
        includes: Vec<String>,
        rewritten: Vec<(String, String)>,
    },
    /// Requirements generated at detect time from `source` (a lock file,
    /// Pipfile or pyproject.toml, relative to the root) and shipped as
    /// [`GENERATED_REQUIREMENTS`]: the dependency layer stays a cached `pip install -r`.
    Generated {
        kind: DependencyKind,
        source: String,
        requirements: String,
    },
}

/// Everything the build needs to know about one pushed Django project.
#[derive(Debug, Clone)]
pub struct BuildPlan {
    /// The project folder, relative to the repository root ("" for the root):
    /// the one holding manage.py, or the one above the package holding wsgi.py.
    pub project_dir: String,
    /// False when the project has no manage.py: the image gets a standard one.
    pub has_manage_py: bool,
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
    /// The Django version the dependencies pin (`4.2.3`) and the Pythons it
    /// supports, when paas knows them: a deploy that cannot pull the base
    /// image names only the local Pythons this Django runs on.
    pub django_support: Option<(String, statements::Support)>,
    pub dependencies: Dependencies,
    /// True when the project does not list gunicorn and the build installs it.
    pub adds_gunicorn: bool,
    /// (module, callable) of the ASGI application, when the project is
    /// served by an ASGI server (gunicorn with uvicorn workers): it sets
    /// ASGI_APPLICATION or depends on channels, daphne or uvicorn.
    pub asgi: Option<(String, String)>,
    /// What the build installs for the ASGI server, beyond the project's
    /// own dependencies (e.g. `uvicorn[standard]`, `uvicorn-worker`).
    pub adds_asgi: Vec<String>,
    /// True when DATABASE_URL is PostgreSQL, the project lists no driver,
    /// and the build installs [`POSTGRES_DRIVER`].
    pub adds_postgres_driver: bool,
    /// False when the `DISABLE_COLLECTSTATIC` config var is set.
    pub collectstatic: bool,
    /// System packages the dependencies need (a build stage when some compile).
    pub native: Native,
    /// One line each, shown in the push output.
    pub notes: Vec<String>,
}

/// Why a pushed tree cannot be built. Each message is one sentence that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("No Django project found: paas looks for manage.py (or, without it, a package's wsgi.py) at the repository root or in a subfolder up to {MAX_DEPTH} levels deep. Push a Django project, or add manage.py.")]
    NoProject,
    #[error("Found several Django projects ({}): paas deploys one project per app, so keep a single manage.py at the shallowest level.", .0.join(", "))]
    SeveralProjects(Vec<String>),
    #[error("Could not tell the settings module: {0} does not set DJANGO_SETTINGS_MODULE and no settings.py was found. Name it with `paas config:set DJANGO_SETTINGS_MODULE=mysite.settings`.")]
    NoSettingsModule(String),
    #[error("Found several settings modules ({}) and {entry} names none: choose one with `paas config:set DJANGO_SETTINGS_MODULE={}`.", .modules.join(", "), .modules[0])]
    SeveralSettings { modules: Vec<String>, entry: String },
    #[error("The settings package {package} has no settings of its own and paas cannot tell which of {} to deploy: choose with `paas config:set DJANGO_SETTINGS_MODULE={}` (or name one production.py).", .modules.join(", "), .modules[0])]
    AmbiguousSettingsPackage {
        package: String,
        modules: Vec<String>,
    },
    #[error("The settings module {0:?} is not a Python module path: set DJANGO_SETTINGS_MODULE to something like mysite.settings.")]
    BadSettingsModule(String),
    #[error("No WSGI application found: the settings do not set WSGI_APPLICATION and there is no wsgi.py next to them ({0}). Add WSGI_APPLICATION = \"mysite.wsgi.application\" to your settings.")]
    NoWsgi(String),
    #[error("WSGI_APPLICATION {0:?} is not a dotted path like mysite.wsgi.application: fix it in your settings.")]
    BadWsgi(String),
    #[error("{0}, so paas serves the project with an ASGI server, but there is no asgi.py next to the settings or wsgi.py: add one (Django's startproject makes mysite/asgi.py) or set ASGI_APPLICATION = \"mysite.asgi.application\" in your settings.")]
    NoAsgi(String),
    #[error("ASGI_APPLICATION {0:?} is not a dotted path like mysite.asgi.application: fix it in your settings.")]
    BadAsgi(String),
    #[error("No dependencies found: list them (at least Django) in requirements.txt, Pipfile.lock, poetry.lock, uv.lock or pyproject.toml [project].dependencies at the repository root or next to manage.py.")]
    NoRequirements,
    #[error("Found {0}, which paas does not read: export your dependencies with `pdm export --prod -o requirements.txt` and commit requirements.txt.")]
    OtherDependencyFile(String),
    #[error("Found {}: paas installs dependencies from one source, so delete the file you no longer use, or pick one with `paas config:set PAAS_DEPENDENCIES={}` (or {}).", join_and(.files), .kinds[0], .kinds[1..].join(" or "))]
    AmbiguousDependencies {
        files: Vec<String>,
        kinds: Vec<String>,
    },
    #[error("The PAAS_DEPENDENCIES config var is {0:?}, which is not one of requirements, pipfile, poetry, uv, pyproject: set one of those, or unset it with `paas config:unset PAAS_DEPENDENCIES`.")]
    BadDependenciesVar(String),
    #[error("The PAAS_DEPENDENCIES config var asks for {kind} dependencies but there is no {files} at the repository root or next to manage.py: commit it, or unset the config var with `paas config:unset PAAS_DEPENDENCIES`.", kind = .0.name(), files = .0.files())]
    MissingDependencySource(DependencyKind),
    #[error("{0} declares poetry dependencies but there is no poetry.lock next to it: run `poetry lock` and commit poetry.lock.")]
    PoetryWithoutLock(String),
    #[error("Could not use {file}: {reason}; fix it or regenerate it with your package manager, then push again.")]
    BadDependencyFile { file: String, reason: String },
    #[error("{file} includes {include}, which is not a file in the repository (paas follows no symlink): commit it as a regular file, or list its packages in {file}.")]
    MissingInclude { file: String, include: String },
    #[error("The {var} config var names {value:?}, which is not a list of Debian package names: list packages like libldap2-dev separated by spaces, or unset it with `paas config:unset {var}`.")]
    BadPackages { var: &'static str, value: String },
    #[error(
        "Unsupported Python version {value:?} (from {source_name}): write a version like 3.11."
    )]
    BadPythonVersion { value: String, source_name: String },
    #[error("Django {django} supports Python {supports} only, older than every Python paas builds with (3.{lo} to 3.{hi}): upgrade Django to 4.2 LTS or later in your dependencies and push again.", lo = KNOWN_MINORS.start(), hi = KNOWN_MINORS.end())]
    DjangoTooOld { django: String, supports: String },
    #[error("{settings} lists {dir} in STATICFILES_DIRS, but {dir} is not in the pushed code: it is built by `npm run build` ({package_json}), and paas does not run Node, so commit the built files, or skip collectstatic with `paas config:set DISABLE_COLLECTSTATIC=1` and serve static files another way.")]
    NodeStaticMissing {
        settings: String,
        dir: String,
        package_json: String,
    },
    /// Every blocker detection found, in the order met; each is printed on its own line.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(" "))]
    Several(Vec<DetectError>),
    #[error("The path {0:?} has characters paas does not accept in build paths: rename it using letters, digits, '.', '_', '-' and '/'.")]
    UnsafePath(String),
    #[error(
        "Could not read {path}: {err}. Check the file is committed and readable, then push again."
    )]
    Io { path: String, err: std::io::Error },
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Detects the Django project in the checkout at `root`, with no [`BuildVars`] set.
pub fn detect(root: &Path, opts: &BuildOptions) -> Result<BuildPlan, DetectError> {
    detect_with(root, opts, &BuildVars::default())
}

/// Detects the Django project in the checkout at `root`.
pub fn detect_with(
    root: &Path,
    opts: &BuildOptions,
    vars: &BuildVars,
) -> Result<BuildPlan, DetectError> {
    let mut notes = Vec::new();
    let found = find_project(root)?;
    let project_dir = found.dir.clone();
    check_safe_path(&project_dir)?;
    let project = root.join(&project_dir);
    // Every blocker detection can see is reported in one push: each step
    // that does not need a failed one still runs.
    let mut errors: Vec<DetectError> = Vec::new();

    let settings = settings_module(root, &found, opts, &mut notes).and_then(|m| {
        let wsgi = find_wsgi(&project, &project_dir, &m, &mut notes)?;
        Ok((m, wsgi))
    });
    let settings = settings.map_err(|e| errors.push(e)).ok();

    let deps = find_dependencies(root, &project_dir, vars, &mut notes)
        .map_err(|e| errors.push(e))
        .ok();
    let lines: &[String] = deps.as_ref().map(|d| d.lines.as_slice()).unwrap_or(&[]);
    let names: Vec<String> = lines
        .iter()
        .filter_map(|l| deps::requirement_name(l))
        .collect();
    if let Some(d) = &deps {
        if !names.iter().any(|n| n == "django") {
            notes.push(format!(
                "warning: {} does not list Django; the build will fail unless another listed package brings it",
                d.shown
            ));
        }
    }
    let django = pinned_version(lines, "django");
    // A range whose every Django is older than every Python paas builds
    // with (`Django>=2.1,<2.2`) is refused as a pin of it would be, before
    // pip spends minutes failing on it.
    if django.is_none() && opts.python_version.is_none() {
        if let Some((spec, newest)) = django_ceiling(lines) {
            if let Some(s) = statements::django_support(&newest) {
                if s.hi < (3, *KNOWN_MINORS.start()) {
                    let shown = newest.strip_suffix(".99").unwrap_or(&newest);
                    errors.push(DetectError::DjangoTooOld {
                        django: format!("{shown} (the newest that {spec} allows)"),
                        supports: s.shown(),
                    });
                }
            }
        }
    }
    let asgi = match &settings {
        Some((module, (wsgi_module, _))) => find_asgi(
            &project,
            &project_dir,
            module,
            wsgi_module,
            &names,
            &mut notes,
        )
        .map_err(|e| errors.push(e))
        .ok()
        .flatten(),
        None => None,
    };
    let mut adds_asgi = Vec::new();
    if asgi.is_some() {
        let has = |n: &str| names.iter().any(|x| x == n);
        // uvicorn's websocket support needs websockets or wsproto, which
        // plain `uvicorn` does not bring; [standard] does (with the
        // project's own uvicorn pin, if any).
        if !(has("uvicorn") && (has("websockets") || has("wsproto"))) {
            adds_asgi.push("uvicorn[standard]".to_string());
        }
        // Newer uvicorn releases moved the gunicorn worker class out
        // (uvicorn.workers is deprecated): the uvicorn-worker package has it.
        if !has("uvicorn-worker") {
            adds_asgi.push("uvicorn-worker".to_string());
        }
        notes.push(format!(
            "{} added for the ASGI server",
            adds_asgi.join(" and ")
        ));
    }

    let python_version = python_version(
        root,
        &project_dir,
        opts,
        deps.as_ref().and_then(|d| d.python.as_ref()),
        django.as_deref(),
        &mut notes,
    )
    .map_err(|e| errors.push(e))
    .ok();

    let mut native = native::needs(lines);
    if let Some(py) = &python_version {
        let minor: u32 = py[2..].parse().unwrap_or(0);
        if let Some(v) = pinned_version(lines, "psycopg2-binary") {
            if statements::psycopg2_binary_newest_wheel(&v).is_some_and(|w| w < minor) {
                native.compile_like("psycopg2", "psycopg2-binary");
                notes.push(format!(
                    "psycopg2-binary {v} has no wheel for Python {py}: pip builds it from source, like psycopg2"
                ));
            }
        }
    }
    for (var, value, build) in [
        ("PAAS_BUILD_PACKAGES", &vars.build_packages, true),
        ("PAAS_RUNTIME_PACKAGES", &vars.runtime_packages, false),
    ] {
        if let Some(v) = value {
            match native::parse_packages(v) {
                Some(packages) => native.configure(&packages, build),
                None => errors.push(DetectError::BadPackages {
                    var,
                    value: v.clone(),
                }),
            }
        }
    }
    let collectstatic = !vars.disable_collectstatic;
    if let (true, Some((module, _))) = (collectstatic, &settings) {
        if let Err(e) = check_node_static(root, &project_dir, module) {
            errors.push(e);
        }
    }
    match errors.len() {
        0 => {}
        1 => return Err(errors.remove(0)),
        _ => return Err(DetectError::Several(errors)),
    }
    let (Some((settings_module, (wsgi_module, wsgi_callable))), Some(deps), Some(python_version)) =
        (settings, deps, python_version)
    else {
        unreachable!("every step without an error has its result");
    };
    let base_image = opts.image_pattern.replace("{version}", &python_version);

    let runtime = if native.runtime_packages.is_empty() {
        "the installed packages".to_string()
    } else {
        native.runtime_packages.join(", ")
    };
    if native.needs_build_stage() {
        notes.push(format!(
            "{} compiled in a build stage (gcc, {}); the app's image gets only {runtime}",
            native.stage_for(),
            if native.build_packages.is_empty() {
                "the Python headers".to_string()
            } else {
                native.build_packages.join(", ")
            },
        ));
    } else if !native.loads.is_empty() {
        notes.push(format!(
            "{} loads a system library at run time: the image gets {runtime}",
            join_and(&native.loads),
        ));
    } else if !native.runtime_packages.is_empty() {
        notes.push(format!(
            "The image gets {runtime} (the PAAS_RUNTIME_PACKAGES config var)"
        ));
    }
    let adds_gunicorn = !names.iter().any(|n| n == "gunicorn");
    if adds_gunicorn {
        notes.push("gunicorn added: the project does not list it".to_string());
    }
    let adds_postgres_driver = vars.postgres
        && !names
            .iter()
            .any(|n| n.starts_with("psycopg") || n == "pg8000");
    if adds_postgres_driver {
        notes.push(format!(
            "{POSTGRES_DRIVER} added: DATABASE_URL points at PostgreSQL and the project lists no driver"
        ));
    }
    if !collectstatic {
        notes.push("collectstatic skipped: the DISABLE_COLLECTSTATIC config var is set".into());
    }
    if !found.has_manage_py {
        notes.push(format!(
            "No manage.py: the image gets a standard one in {} to run migrations",
            workdir_of(&project_dir)
        ));
    }

    Ok(BuildPlan {
        project_dir,
        has_manage_py: found.has_manage_py,
        settings_module,
        wsgi_module,
        wsgi_callable,
        python_version,
        base_image,
        django_support: django
            .as_deref()
            .and_then(|d| Some((d.to_string(), statements::django_support(d)?))),
        dependencies: deps.dependencies,
        adds_gunicorn,
        asgi,
        adds_asgi,
        adds_postgres_driver,
        collectstatic,
        native,
        notes,
    })
}

/// The Dockerfile templates, parsed once. They are not HTML: autoescape is
/// off, values go in verbatim (pip's `'psycopg[binary]'` must stay as is).
static TEMPLATES: LazyLock<tera::Tera> = LazyLock::new(|| {
    let mut tera = tera::Tera::default();
    tera.autoescape_on(Vec::new());
    tera.add_raw_templates([
        ("Dockerfile.tmpl", DOCKERFILE_TEMPLATE),
        ("dependencies.tmpl", DEPENDENCIES_TEMPLATE),
        ("build-stage.tmpl", BUILD_STAGE_TEMPLATE),
    ])
    .expect("the buildpack's templates parse");
    tera
});

/// What the templates in `buildpacks/django/` are rendered with.
#[derive(serde::Serialize)]
struct DockerfileVars<'a> {
    base_image: &'a str,
    /// Requirement files copied into the image before `pip install`.
    requirement_files: Vec<RequirementFile>,
    /// Arguments of `pip install`.
    pip_args: String,
    /// Native dependencies: a build stage makes the virtualenv.
    build_stage: bool,
    /// What the build stage compiles, in words.
    compiles: String,
    /// Debian packages of the build stage, space-separated.
    build_packages: String,
    /// The build stage's apt-get step (for the `$packages` it collects).
    build_apt_install: String,
    /// The app image's apt-get step for run-time libraries, or empty.
    runtime_apt_install: String,
    /// The app image's apt-get step for the libraries the build stage's
    /// compiled code links against (`$missing`).
    runtime_libs_apt_install: String,
}

/// `COPY {from} /paas/deps/{to}`.
#[derive(serde::Serialize)]
struct RequirementFile {
    from: String,
    to: String,
}

/// The dependency image's Dockerfile for `plan` (its context: [`dependency_build`]).
pub fn render_dockerfile(plan: &BuildPlan) -> String {
    let (requirement_files, mut pip_args) = match &plan.dependencies {
        Dependencies::Requirements {
            path,
            includes,
            rewritten,
        } => (
            std::iter::once(path)
                .chain(includes)
                .map(|file| RequirementFile {
                    from: if rewritten.iter().any(|(f, _)| f == file) {
                        format!("{REWRITTEN_REQUIREMENTS}/{file}")
                    } else {
                        file.clone()
                    },
                    to: file.clone(),
                })
                .collect(),
            format!("-r /paas/deps/{path}"),
        ),
        Dependencies::Generated { .. } => {
            let name = GENERATED_REQUIREMENTS.trim_start_matches(".paas/");
            (
                vec![RequirementFile {
                    from: GENERATED_REQUIREMENTS.into(),
                    to: name.into(),
                }],
                format!("-r /paas/deps/{name}"),
            )
        }
    };
    if plan.adds_gunicorn {
        pip_args.push_str(" gunicorn");
    }
    for package in &plan.adds_asgi {
        pip_args.push_str(&format!(" '{package}'"));
    }
    if plan.adds_postgres_driver {
        pip_args.push_str(&format!(" '{POSTGRES_DRIVER}'"));
    }
    let native = &plan.native;
    let vars = DockerfileVars {
        base_image: &plan.base_image,
        requirement_files,
        pip_args,
        build_stage: native.needs_build_stage(),
        compiles: native.stage_for(),
        build_packages: native.build_packages.join(" "),
        build_apt_install: apt_install("$packages"),
        runtime_apt_install: if native.runtime_packages.is_empty() {
            String::new()
        } else {
            apt_install(&native.runtime_packages.join(" "))
        },
        runtime_libs_apt_install: apt_install("$missing"),
    };
    let context = tera::Context::from_serialize(&vars).expect("the template variables serialize");
    // The templates are compiled in and every variable is always set: a
    // failure here is a bug the golden tests catch, not a user's mistake.
    TEMPLATES
        .render("Dockerfile.tmpl", &context)
        .expect("the Dockerfile template renders")
}

/// A shell fragment of a RUN step that installs Debian `packages` (a list, or
/// a shell variable) and goes on with ` && `; a failure names the way out.
fn apt_install(packages: &str) -> String {
    format!(
        "{{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {packages} >/dev/null; }} \\\n \
         || {{ echo \"-----> installing the system packages {packages} failed (apt-get's error is above): check the names in the PAAS_BUILD_PACKAGES and PAAS_RUNTIME_PACKAGES config vars, and that builds reach the Debian mirror of the base image's apt sources\"; exit 1; }} \\\n \
         && rm -rf /var/lib/apt/lists/* \\\n && "
    )
}

/// The project folder in the image.
fn workdir_of(project_dir: &str) -> String {
    if project_dir.is_empty() {
        "/app".to_string()
    } else {
        format!("/app/{project_dir}")
    }
}

/// Bump when what the dependency image holds changes in a way its
/// Dockerfile does not show: every dependency key changes with it.
const DEPENDENCY_IMAGE_VERSION: &str = "paas-deps-v1";

/// The dependency image's build: its context (the Dockerfile under
/// `.paas/Dockerfile`, the requirement files, nothing of the code) and the
/// key naming it.
#[derive(Debug, Clone)]
pub struct DependencyBuild {
    /// `(path in the context, bytes)`.
    pub files: Vec<(String, Vec<u8>)>,
    /// Hex SHA-256 of everything that decides the image's content: the
    /// rendered Dockerfile (base image, system packages, pip's arguments),
    /// every requirement file, and [`DEPENDENCY_IMAGE_VERSION`]. Apps and
    /// releases with the same key share one image.
    pub key: String,
}

impl DependencyBuild {
    /// The image's name: `paas-deps:<first 24 hex digits of the key>`.
    pub fn tag(&self) -> String {
        format!("paas-deps:{}", &self.key[..24])
    }
}

/// The dependency image's context for `plan`, reading the requirement files
/// from the checkout at `root` (regular files only: detection read them).
pub fn dependency_build(plan: &BuildPlan, root: &Path) -> std::io::Result<DependencyBuild> {
    use sha2::{Digest, Sha256};
    let mut files = vec![(
        ".paas/Dockerfile".to_string(),
        render_dockerfile(plan).into_bytes(),
    )];
    match &plan.dependencies {
        Dependencies::Generated { requirements, .. } => files.push((
            GENERATED_REQUIREMENTS.into(),
            requirements.as_bytes().to_vec(),
        )),
        Dependencies::Requirements {
            path,
            includes,
            rewritten,
        } => {
            for file in std::iter::once(path).chain(includes) {
                match rewritten.iter().find(|(f, _)| f == file) {
                    Some((_, text)) => files.push((
                        format!("{REWRITTEN_REQUIREMENTS}/{file}"),
                        text.as_bytes().to_vec(),
                    )),
                    None => {
                        let on_disk = root.join(file);
                        if !std::fs::symlink_metadata(&on_disk)?.is_file() {
                            return Err(std::io::Error::other(format!(
                                "{file} is not a regular file"
                            )));
                        }
                        files.push((file.clone(), std::fs::read(on_disk)?));
                    }
                }
            }
        }
    }
    let mut hash = Sha256::new();
    hash.update(DEPENDENCY_IMAGE_VERSION.as_bytes());
    for (path, bytes) in &files {
        // Lengths first: no two different file lists hash alike.
        hash.update((path.len() as u64).to_le_bytes());
        hash.update(path.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    }
    let key = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(DependencyBuild { files, key })
}

/// Where the build step's files go in the release's code layer (paths
/// without the leading `/`), next to the code under `app/`.
pub fn code_files(plan: &BuildPlan) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        (
            "paas/paas_settings.py".into(),
            SETTINGS_SHIM.as_bytes().to_vec(),
        ),
        (
            "paas/paas_inspect.py".into(),
            INSPECT_HELPER.as_bytes().to_vec(),
        ),
        ("paas/entrypoint.sh".into(), ENTRYPOINT.as_bytes().to_vec()),
        (
            "paas/collectstatic.sh".into(),
            COLLECTSTATIC.as_bytes().to_vec(),
        ),
    ];
    if !plan.has_manage_py {
        let workdir = workdir_of(&plan.project_dir);
        files.push((
            format!("{}/manage.py", workdir.trim_start_matches('/')),
            MANAGE_PY.as_bytes().to_vec(),
        ));
    }
    files
}

/// How the release image runs, beyond what its dependency image sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSettings {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    /// Added to the dependency image's environment (no config var: those
    /// reach containers at run time, never an image).
    pub env: Vec<(String, String)>,
    pub port: u16,
    /// The build step's command, run in the dependency image with the code.
    pub build_cmd: Vec<String>,
}

/// The release image's settings for `plan`.
pub fn run_settings(plan: &BuildPlan) -> RunSettings {
    let workdir = workdir_of(&plan.project_dir);
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut build_cmd = s(&["sh", "/paas/collectstatic.sh"]);
    if !plan.collectstatic {
        build_cmd.push("--skip".into());
    }
    RunSettings {
        entrypoint: s(&["/bin/sh", "/paas/entrypoint.sh"]),
        cmd: match &plan.asgi {
            // uvicorn workers under gunicorn: gunicorn's process management
            // (WEB_CONCURRENCY, graceful stop) with an ASGI server inside.
            Some((module, callable)) => vec![
                "gunicorn".into(),
                format!("{module}:{callable}"),
                "-k".into(),
                ASGI_WORKER.into(),
                "--access-logfile".into(),
                "-".into(),
                "--error-logfile".into(),
                "-".into(),
            ],
            None => vec![
                "gunicorn".into(),
                format!("{}:{}", plan.wsgi_module, plan.wsgi_callable),
                "--access-logfile".into(),
                "-".into(),
                "--error-logfile".into(),
                "-".into(),
            ],
        },
        env: vec![
            ("PYTHONPATH".into(), format!("/paas:{workdir}")),
            ("DJANGO_SETTINGS_MODULE".into(), "paas_settings".into()),
            ("PAAS_PROJECT_SETTINGS".into(), plan.settings_module.clone()),
            // The module the web server loads; the build step imports it
            // first, as the server does (a wsgi.py may extend sys.path).
            (
                "PAAS_APP_MODULE".into(),
                match &plan.asgi {
                    Some((module, _)) => module.clone(),
                    None => plan.wsgi_module.clone(),
                },
            ),
            ("PORT".into(), "8000".into()),
        ],
        working_dir: workdir,
        port: 8000,
        build_cmd,
    }
}

// ---- static files built by Node ----

/// A project whose static files are built by Node (a package.json with a
/// `build` script at the root or in the project folder) and whose
/// STATICFILES_DIRS names a folder missing from the pushed code: the build
/// output was not committed, and collectstatic would fail after a long install.
fn check_node_static(root: &Path, project_dir: &str, settings: &str) -> Result<(), DetectError> {
    let Some(package_json) = dedup_dirs(project_dir)
        .into_iter()
        .map(|d| join_rel(&d, "package.json"))
        .find(|rel| {
            is_file(&root.join(rel))
                && read(&root.join(rel), rel)
                    .ok()
                    .and_then(|t| statements::node_build_script(&t))
                    .is_some()
        })
    else {
        return Ok(());
    };
    let project = root.join(project_dir);
    let module_path = settings.replace('.', "/");
    let file = [
        format!("{module_path}.py"),
        format!("{module_path}/__init__.py"),
    ]
    .into_iter()
    .find(|f| is_file(&project.join(f)));
    let Some(file) = file else { return Ok(()) };
    // The settings file, then its siblings (a settings package's base.py).
    let mut files = vec![project.join(&file)];
    if let Some(Ok(entries)) = project.join(&file).parent().map(std::fs::read_dir) {
        let mut siblings: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                *p != project.join(&file) && p.extension().is_some_and(|e| e == "py") && is_file(p)
            })
            .collect();
        siblings.sort();
        files.extend(siblings);
    }
    for f in files {
        let shown = f.strip_prefix(root).map(rel_string).unwrap_or_default();
        let text = read(&f, &shown)?;
        for dir in statements::staticfiles_dirs(&text) {
            let present = [project.join(&dir), root.join(&dir)]
                .iter()
                .any(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()));
            if !present {
                return Err(DetectError::NodeStaticMissing {
                    settings: shown,
                    dir: join_rel(project_dir, &dir),
                    package_json,
                });
            }
        }
    }
    Ok(())
}

// ---- project folder ----

/// Where the project was found.
#[derive(Debug, Clone)]
struct Found {
    /// The project folder, relative ("" for the root).
    dir: String,
    has_manage_py: bool,
    /// manage.py, or the wsgi.py the project was found through (relative to the root).
    entry: String,
}

/// Folders below `root` by depth (index 0: the root itself), up to `max` levels.
fn dirs_by_level(root: &Path, max: usize) -> Vec<Vec<PathBuf>> {
    let mut levels = vec![vec![PathBuf::new()]];
    for _ in 0..max {
        let mut next = Vec::new();
        for rel in levels.last().into_iter().flatten() {
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
        levels.push(next);
    }
    levels
}

fn rel_string(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The shallowest manage.py; without any, the shallowest Django wsgi.py
/// (its package's parent is the project folder).
fn find_project(root: &Path) -> Result<Found, DetectError> {
    let levels = dirs_by_level(root, MAX_DEPTH + 1);
    for level in levels.iter().take(MAX_DEPTH + 1) {
        let mut found: Vec<String> = level
            .iter()
            .filter(|rel| is_file(&root.join(rel).join("manage.py")))
            .map(|rel| rel_string(rel))
            .collect();
        match found.len() {
            0 => {}
            1 => {
                let dir = found.remove(0);
                return Ok(Found {
                    entry: join_rel(&dir, "manage.py"),
                    dir,
                    has_manage_py: true,
                });
            }
            _ => {
                found.sort();
                return Err(DetectError::SeveralProjects(
                    found.iter().map(|d| join_rel(d, "manage.py")).collect(),
                ));
            }
        }
    }
    for level in levels.iter().skip(1) {
        let mut found: Vec<(String, String)> = Vec::new();
        for rel in level {
            let file = rel.join("wsgi.py");
            if !is_file(&root.join(&file)) {
                continue;
            }
            let text = read(&root.join(&file), &rel_string(&file))?;
            if text.contains("get_wsgi_application") || text.contains("DJANGO_SETTINGS_MODULE") {
                let dir = rel.parent().map(rel_string).unwrap_or_default();
                found.push((dir, rel_string(&file)));
            }
        }
        match found.len() {
            0 => {}
            1 => {
                let (dir, entry) = found.remove(0);
                return Ok(Found {
                    dir,
                    has_manage_py: false,
                    entry,
                });
            }
            _ => {
                return Err(DetectError::SeveralProjects(
                    found.into_iter().map(|(_, e)| e).collect(),
                ))
            }
        }
    }
    Err(DetectError::NoProject)
}

// ---- settings ----

/// The project's settings module: the config var, else what manage.py (or
/// wsgi.py) sets, else the one settings.py (or settings/ package) in the
/// project; a settings package without settings of its own resolves to its
/// production module.
fn settings_module(
    root: &Path,
    found: &Found,
    opts: &BuildOptions,
    notes: &mut Vec<String>,
) -> Result<String, DetectError> {
    if let Some(m) = &opts.settings_module {
        let m = m.trim().to_string();
        notes.push(format!(
            "Settings {m} (from the DJANGO_SETTINGS_MODULE config var)"
        ));
        if !is_dotted_path(&m) {
            return Err(DetectError::BadSettingsModule(m));
        }
        return Ok(m);
    }
    let project = root.join(&found.dir);
    // The entry file first, then the wsgi.py of each package of the project.
    let mut files = vec![found.entry.clone()];
    if found.has_manage_py {
        if let Some(level) = dirs_by_level(&project, 1).get(1) {
            for pkg in level {
                let f = join_rel(&found.dir, &rel_string(&pkg.join("wsgi.py")));
                if is_file(&root.join(&f)) {
                    files.push(f);
                }
            }
        }
    }
    let mut named = None;
    for f in &files {
        let text = read(&root.join(f), f)?;
        if let Some(m) = parse_settings_module(&text) {
            named = Some((m, f.clone()));
            break;
        }
    }
    if let Some((m, _)) = &named {
        if !is_dotted_path(m) {
            return Err(DetectError::BadSettingsModule(m.clone()));
        }
    }
    // What the deploy manifests set, for modules that exist in the project.
    let manifests: Vec<(String, String)> = manifest_settings(root)?
        .into_iter()
        .filter(|(m, _)| module_exists(&project, m))
        .collect();
    let first = |p: statements::Purpose| {
        manifests
            .iter()
            .find(|(m, _)| statements::purpose(m) == p)
            .cloned()
    };
    use statements::Purpose;
    let named_purpose = named.as_ref().map(|(m, _)| statements::purpose(m));
    let from_manifest = |(m, f): (String, String)| {
        let why = match &named {
            Some((n, nf)) if *n != m => {
                format!("DJANGO_SETTINGS_MODULE in {f}, a deploy manifest, over {nf}'s default {n}")
            }
            _ => format!("DJANGO_SETTINGS_MODULE in {f}"),
        };
        (m, why)
    };
    // A manifest naming a module inside manage.py's settings package picks within it.
    let inside_named = manifests
        .iter()
        .find(|(m, _)| {
            named
                .as_ref()
                .is_some_and(|(n, _)| m.starts_with(&format!("{n}.")))
                && statements::purpose(m) == Purpose::Other
        })
        .cloned();
    let decided = if let Some(prod) = first(Purpose::Production) {
        Some(from_manifest(prod))
    } else if let Some(inside) = inside_named {
        Some(from_manifest(inside))
    } else if named.is_some() && named_purpose != Some(Purpose::Development) {
        named.clone()
    } else if let Some(other) = first(Purpose::Other) {
        Some(from_manifest(other))
    } else if let Some((dev, f)) = named.clone() {
        // A development default: its package's production module, when there is one.
        let sibling = dev.rsplit_once('.').and_then(|(pkg, _)| {
            PREFERRED_SETTINGS
                .iter()
                .map(|p| format!("{pkg}.{p}"))
                .find(|m| is_file(&project.join(format!("{}.py", m.replace('.', "/")))))
        });
        Some(match sibling {
            Some(m) => {
                let why = format!("beside {dev}, the development default of {f}");
                (m, why)
            }
            None => (dev, f),
        })
    } else {
        None
    };
    let (module, source) = match decided {
        Some(d) => d,
        None => {
            let m = search_settings(&project, &found.entry)?;
            let how = format!(
                "the only settings in the project; {} names none",
                found.entry
            );
            (m, how)
        }
    };
    let resolved = resolve_settings_package(&project, &found.dir, &module)?;
    if resolved == module {
        notes.push(format!("Settings {module} (from {source})"));
    } else {
        notes.push(format!(
            "Settings {resolved}: {module} (from {source}) is a package without settings of its own; set DJANGO_SETTINGS_MODULE to deploy another of its modules"
        ));
    }
    Ok(resolved)
}

/// Whether `module` is a module or package of the project.
fn module_exists(project: &Path, module: &str) -> bool {
    let path = module.replace('.', "/");
    is_dotted_path(module)
        && (is_file(&project.join(format!("{path}.py")))
            || std::fs::symlink_metadata(project.join(&path)).is_ok_and(|m| m.is_dir()))
}

/// Every `DJANGO_SETTINGS_MODULE` the project's deploy manifests set
/// (Dockerfiles, compose files, app.json, heroku.yml, render.yaml, fly.toml,
/// nixpacks.toml, railway files, Procfile up to three levels deep, and
/// `.do/*.yaml`): (module, file), shallowest files first.
fn manifest_settings(root: &Path) -> Result<Vec<(String, String)>, DetectError> {
    let mut files: Vec<String> = Vec::new();
    let mut dirs: Vec<PathBuf> = dirs_by_level(root, 3).into_iter().flatten().collect();
    dirs.push(PathBuf::from(".do"));
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(root.join(&dir)) else {
            continue;
        };
        let in_do = dir == Path::new(".do");
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| {
                statements::is_manifest_name(n)
                    || (in_do && (n.ends_with(".yaml") || n.ends_with(".yml")))
            })
            .collect();
        names.sort();
        for n in names {
            let rel = join_rel(&rel_string(&dir), &n);
            if is_file(&root.join(&rel)) {
                files.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    for f in files {
        let text = read(&root.join(&f), &f)?;
        for m in statements::manifest_settings(&text) {
            if !out.iter().any(|(o, _): &(String, String)| *o == m) {
                out.push((m, f.clone()));
            }
        }
    }
    Ok(out)
}

/// The one `settings.py` or `settings/` package within two levels of the project folder.
fn search_settings(project: &Path, entry: &str) -> Result<String, DetectError> {
    for level in dirs_by_level(project, 2) {
        let mut found = Vec::new();
        for rel in &level {
            let dotted = rel_string(rel).replace('/', ".");
            if !dotted.is_empty() && !is_dotted_path(&dotted) {
                continue;
            }
            let module = if dotted.is_empty() {
                "settings".to_string()
            } else {
                format!("{dotted}.settings")
            };
            let dir = project.join(rel);
            if is_file(&dir.join("settings.py")) || dir.join("settings").is_dir() {
                found.push(module);
            }
        }
        match found.len() {
            0 => {}
            1 => return Ok(found.remove(0)),
            _ => {
                found.sort();
                return Err(DetectError::SeveralSettings {
                    modules: found,
                    entry: entry.to_string(),
                });
            }
        }
    }
    Err(DetectError::NoSettingsModule(entry.to_string()))
}

/// A settings package whose `__init__.py` is missing or holds no code: one
/// of its modules, preferring production.py, then prod.py, then the only one.
fn resolve_settings_package(
    project: &Path,
    project_dir: &str,
    module: &str,
) -> Result<String, DetectError> {
    let path = module.replace('.', "/");
    let dir = project.join(&path);
    if !dir.is_dir() || is_file(&project.join(format!("{path}.py"))) {
        return Ok(module.to_string());
    }
    let init = dir.join("__init__.py");
    if is_file(&init) {
        let shown = join_rel(project_dir, &format!("{path}/__init__.py"));
        if has_code(&read(&init, &shown)?) {
            return Ok(module.to_string());
        }
    }
    let mut modules: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let stem = name.strip_suffix(".py")?.to_string();
                    (!stem.starts_with('_') && is_dotted_path(&stem)).then_some(stem)
                })
                .collect()
        })
        .unwrap_or_default();
    modules.sort();
    let pick = PREFERRED_SETTINGS
        .iter()
        .find(|p| modules.iter().any(|m| m == *p))
        .map(|p| p.to_string())
        .or_else(|| (modules.len() == 1).then(|| modules[0].clone()));
    match pick {
        Some(m) => Ok(format!("{module}.{m}")),
        None if modules.is_empty() => Ok(module.to_string()),
        None => Err(DetectError::AmbiguousSettingsPackage {
            package: module.to_string(),
            modules: modules.iter().map(|m| format!("{module}.{m}")).collect(),
        }),
    }
}

/// True when Python source has more than comments, blank lines and a docstring.
fn has_code(src: &str) -> bool {
    let mut rest = src.trim_start();
    for q in ["\"\"\"", "'''"] {
        if let Some(body) = rest.strip_prefix(q) {
            rest = body.find(q).map(|end| &body[end + 3..]).unwrap_or("");
            break;
        }
    }
    rest.lines().any(|l| {
        let l = l.trim();
        !l.is_empty() && !l.starts_with('#')
    })
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
        // Not the key in quotes (a docstring or a print naming it): read on.
        let Some(rest) = rest.strip_prefix(['"', '\'']) else {
            continue;
        };
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
        let files = settings_files(file);
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
    parse_setting(settings, "WSGI_APPLICATION")
}

/// The value of a top-level `NAME = "…"` line.
fn parse_setting(settings: &str, name: &str) -> Option<String> {
    settings.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.trim_start();
        let rest = rest.strip_prefix('=')?.trim_start();
        quoted(rest).map(str::to_string)
    })
}

// ---- ASGI ----

/// The gunicorn worker class that runs an ASGI application (from the
/// `uvicorn-worker` package; `uvicorn.workers` is its deprecated old home).
pub const ASGI_WORKER: &str = "uvicorn_worker.UvicornWorker";

/// Dependencies that mean the project wants an ASGI server.
const ASGI_PACKAGES: [&str; 3] = ["channels", "daphne", "uvicorn"];

/// (module, callable) of the ASGI application, when the project should be
/// served by an ASGI server: its settings (or a sibling module) set
/// `ASGI_APPLICATION`, or it depends on channels, daphne or uvicorn. The
/// module is ASGI_APPLICATION's, else the `asgi.py` beside the WSGI module,
/// else one in the settings' package or a parent package.
fn find_asgi(
    project: &Path,
    project_dir: &str,
    settings_module: &str,
    wsgi_module: &str,
    names: &[String],
    notes: &mut Vec<String>,
) -> Result<Option<(String, String)>, DetectError> {
    let module_path = settings_module.replace('.', "/");
    let candidates = [
        project.join(format!("{module_path}.py")),
        project.join(&module_path).join("__init__.py"),
    ];
    let mut setting = None;
    if let Some(file) = candidates.iter().find(|p| is_file(p)) {
        let files = settings_files(file);
        for f in files {
            let rel = f
                .strip_prefix(project)
                .map(|r| join_rel(project_dir, &r.to_string_lossy()))
                .unwrap_or_default();
            if let Some(value) = parse_setting(&read(&f, &rel)?, "ASGI_APPLICATION") {
                setting = Some((value, rel));
                break;
            }
        }
    }
    if let Some((value, rel)) = setting {
        let Some((module, callable)) = value.rsplit_once('.').filter(|_| is_dotted_path(&value))
        else {
            return Err(DetectError::BadAsgi(value));
        };
        notes.push(format!(
            "ASGI application {module}:{callable} (from ASGI_APPLICATION in {rel}): served by gunicorn with uvicorn workers"
        ));
        return Ok(Some((module.to_string(), callable.to_string())));
    }
    let Some(package) = ASGI_PACKAGES.iter().find(|p| names.iter().any(|n| n == *p)) else {
        return Ok(None);
    };
    let why = format!("The project depends on {package}");
    let beside_wsgi = wsgi_module
        .rsplit_once('.')
        .map(|(pkg, _)| format!("{pkg}.asgi"))
        .unwrap_or_else(|| "asgi".into());
    let parts: Vec<&str> = settings_module.split('.').collect();
    let mut modules = vec![beside_wsgi];
    modules.extend(
        (1..parts.len())
            .rev()
            .map(|n| format!("{}.asgi", parts[..n].join("."))),
    );
    for module in modules {
        if is_file(&project.join(format!("{}.py", module.replace('.', "/")))) {
            notes.push(format!(
                "ASGI application {module}:application ({}): served by gunicorn with uvicorn workers",
                why.to_lowercase().trim_start_matches("the project ")
            ));
            return Ok(Some((module, "application".to_string())));
        }
    }
    Err(DetectError::NoAsgi(why))
}

// ---- Python version ----

/// Pythons paas builds with (`3.minor`): the official images of these exist.
const KNOWN_MINORS: std::ops::RangeInclusive<u32> = 8..=14;

/// The Python versions (`3.x`) whose base image is among `tags`, newest
/// first, for an image pattern like `python:{version}-slim`.
pub fn local_pythons(tags: &[String], pattern: &str) -> Vec<String> {
    let Some((before, after)) = pattern.split_once("{version}") else {
        return Vec::new();
    };
    let mut found: Vec<(u32, String)> = tags
        .iter()
        .filter_map(|t| t.strip_prefix(before)?.strip_suffix(after))
        .filter_map(|v| {
            let minor: u32 = v.strip_prefix("3.")?.parse().ok()?;
            Some((minor, v.to_string()))
        })
        .collect();
    found.sort();
    found.dedup();
    found.into_iter().rev().map(|(_, v)| v).collect()
}

/// A Python the project states, in the order the buildpack reads them.
struct Stated {
    /// `3.11`, or the value as written when it is no version.
    value: String,
    /// Where it was read, for the push output.
    source: String,
}

/// Files whose version is used as written (after the config var): the
/// project pins its Python there for tools that install exactly that one.
fn pinned_pythons(
    root: &Path,
    project_dir: &str,
    hint: Option<&(deps::PythonHint, String)>,
) -> Result<Vec<Stated>, DetectError> {
    let mut out = Vec::new();
    for file in [".python-version", "runtime.txt", ".tool-versions"] {
        for dir in dedup_dirs(project_dir) {
            let rel = join_rel(&dir, file);
            let path = root.join(&rel);
            if !is_file(&path) {
                continue;
            }
            let text = read(&path, &rel)?;
            let value = if file == ".tool-versions" {
                match statements::tool_versions_python(&text) {
                    Some(v) => v,
                    None => continue,
                }
            } else {
                text.lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty() && !l.starts_with('#'))
                    .unwrap_or("")
                    .to_string()
            };
            out.push(Stated { value, source: rel });
        }
    }
    if let Some((deps::PythonHint::Exact(v), file)) = hint {
        out.push(Stated {
            value: v.clone(),
            source: file.clone(),
        });
    }
    Ok(out)
}

/// Pythons the project runs elsewhere: its Dockerfiles' `FROM python:X.Y`,
/// then its CI configs; used when Django (and requires-python) allow them.
fn running_pythons(root: &Path, project_dir: &str) -> Result<Vec<Stated>, DetectError> {
    let mut out = Vec::new();
    let mut dockerfiles: Vec<String> = Vec::new();
    for level in dirs_by_level(root, 3) {
        for dir in level {
            let Ok(entries) = std::fs::read_dir(root.join(&dir)) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| statements::is_dockerfile_name(n))
                .collect();
            names.sort();
            for n in names {
                let rel = join_rel(&rel_string(&dir), &n);
                if is_file(&root.join(&rel)) {
                    dockerfiles.push(rel);
                }
            }
        }
    }
    // The project folder's own first, then production ones, then the rest (shallowest first).
    let rank = |f: &String| {
        let here = Path::new(f).parent().map(rel_string).unwrap_or_default() == project_dir;
        let prod = statements::purpose(&f.to_ascii_lowercase().replace(['/', '-'], "_"))
            == statements::Purpose::Production
            || f.to_ascii_lowercase().contains("prod");
        (!here && !prod, !prod, f.matches('/').count())
    };
    dockerfiles.sort_by_key(rank);
    for f in dockerfiles {
        let text = read(&root.join(&f), &f)?;
        for v in statements::dockerfile_pythons(&text) {
            out.push(Stated {
                value: v.clone(),
                source: format!("FROM python:{v} in {f}"),
            });
        }
    }
    let mut ci: Vec<String> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root.join(".github/workflows")) {
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yml") || n.ends_with(".yaml"))
            .collect();
        names.sort();
        ci.extend(names.into_iter().map(|n| format!(".github/workflows/{n}")));
    }
    ci.push(".gitlab-ci.yml".into());
    for f in ci {
        if !is_file(&root.join(&f)) {
            continue;
        }
        let text = read(&root.join(&f), &f)?;
        for v in statements::ci_pythons(&text) {
            out.push(Stated {
                value: v.clone(),
                source: format!("python-version {v} in {f}"),
            });
        }
    }
    Ok(out)
}

/// The Python of the build: the project's own statements first (the config
/// var, then pins, then what its Dockerfile and CI run, within Django's
/// support and requires-python), else the newest Python the pinned Django
/// supports, else the default.
fn python_version(
    root: &Path,
    project_dir: &str,
    opts: &BuildOptions,
    hint: Option<&(deps::PythonHint, String)>,
    django: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<String, DetectError> {
    let support = django.and_then(statements::django_support);
    let lowest = *KNOWN_MINORS.start();
    if let (Some(s), Some(d), None) = (support, django, &opts.python_version) {
        if s.hi < (3, lowest) {
            return Err(DetectError::DjangoTooOld {
                django: d.to_string(),
                supports: s.shown(),
            });
        }
    }
    let mut pins = Vec::new();
    if let Some(v) = &opts.python_version {
        pins.push(Stated {
            value: v.clone(),
            source: "the PYTHON_VERSION config var".to_string(),
        });
    }
    pins.extend(pinned_pythons(root, project_dir, hint)?);
    if let Some(pin) = pins.into_iter().next() {
        let v = parse_python_version(&pin.value).ok_or_else(|| DetectError::BadPythonVersion {
            value: pin.value.clone(),
            source_name: pin.source.clone(),
        })?;
        notes.push(format!("Python {v} (from {})", pin.source));
        let minor: u32 = v[2..].parse().unwrap_or(0);
        if let (Some(s), Some(d)) = (support, django) {
            if !s.allows(minor) {
                notes.push(format!(
                    "warning: Django {d} supports Python {}, not {v}: the build may fail (pin a supported Python, or upgrade Django)",
                    s.shown()
                ));
            }
        }
        return Ok(v);
    }
    let constraint = match hint {
        Some((deps::PythonHint::Constraint(c), file)) => Some((c, file)),
        _ => None,
    };
    let allowed: Vec<u32> = KNOWN_MINORS
        .filter(|m| support.is_none_or(|s| s.allows(*m)))
        .filter(|m| constraint.is_none_or(|(c, _)| python_allows(c, *m).unwrap_or(true)))
        .collect();
    if allowed.is_empty() {
        return Err(match (constraint, django) {
            (Some((c, file)), _) => DetectError::BadPythonVersion {
                value: c.clone(),
                source_name: match (support, django) {
                    (Some(s), Some(d)) => format!(
                        "requires-python in {file}, with Django {d}, which supports Python {}",
                        s.shown()
                    ),
                    _ => format!("requires-python in {file}"),
                },
            },
            (None, d) => DetectError::DjangoTooOld {
                django: d.unwrap_or("?").to_string(),
                supports: support.map(|s| s.shown()).unwrap_or_default(),
            },
        });
    }
    let mut ignored = Vec::new();
    for stated in running_pythons(root, project_dir)? {
        let Some(v) = parse_python_version(&stated.value) else {
            continue;
        };
        let minor: u32 = v[2..].parse().unwrap_or(0);
        if allowed.contains(&minor) {
            let why = match (support, django) {
                (Some(s), Some(d)) => format!(", which Django {d} supports ({})", s.shown()),
                _ => String::new(),
            };
            notes.push(format!(
                "Python {v} (from {}{why}; pin another with .python-version)",
                stated.source
            ));
            return Ok(v);
        }
        ignored.push(stated.source);
    }
    if !ignored.is_empty() {
        let why = match (constraint, django) {
            (_, Some(d)) if support.is_some() => format!("Django {d} or requires-python"),
            _ => "requires-python".to_string(),
        };
        notes.push(format!(
            "{} ignored: {why} does not allow it",
            join_and(&ignored)
        ));
    }
    let cap = support.map(|s| s.hi.1.min(*KNOWN_MINORS.end()));
    let default_minor: u32 = DEFAULT_PYTHON[2..].parse().unwrap_or(11);
    let pref_minor = cap.unwrap_or(default_minor);
    let why_preferred = match (cap, django) {
        (Some(_), Some(d)) => format!("the newest Python Django {d} supports"),
        _ => "the default".to_string(),
    };
    let pick = *allowed
        .iter()
        .rev()
        .find(|m| **m <= pref_minor)
        .unwrap_or(&allowed[0]);
    // A Python whose image is on this server already, when the pinned
    // Django is known to support it: no pull, and the layers other apps use
    // are shared. (With no Django pin, the default stands.)
    let here = allowed.iter().rev().find(|m| {
        support.is_some()
            && **m <= pref_minor
            && opts.local_pythons.iter().any(|l| *l == format!("3.{m}"))
    });
    if let Some(local) = here.filter(|m| **m != pick) {
        let v = format!("3.{local}");
        notes.push(format!(
            "Python {v} (the newest Python {} allows whose image is on this server; 3.{pick} would be downloaded first: pin it with .python-version to have it)",
            match (constraint, django) {
                (Some((c, file)), _) => format!("requires-python {c:?} in {file}"),
                (None, Some(d)) if support.is_some() => format!("the pinned Django {d}"),
                _ => "paas".to_string(),
            }
        ));
        return Ok(v);
    }
    let v = format!("3.{pick}");
    if let Some((c, file)) = constraint {
        let how = if pick == pref_minor {
            format!("{why_preferred}, allowed by requires-python {c:?} in {file}")
        } else {
            format!("requires-python {c:?} in {file}")
        };
        notes.push(format!(
            "Python {v} ({how}; pin another with .python-version)"
        ));
    } else if let (Some(_), Some(d)) = (cap, django) {
        notes.push(format!(
            "Python {v} (the newest Python the pinned Django {d} supports; pin another with .python-version)"
        ));
    } else if pick == default_minor {
        notes.push(format!(
            "Python {v} (default; pin another with .python-version)"
        ));
    } else {
        notes.push(format!(
            "Python {v} (the default {DEFAULT_PYTHON} is not one Django supports; pin another with .python-version)"
        ));
    }
    Ok(v)
}

/// Whether Python `3.minor` (any patch release) satisfies a `requires-python`
/// specifier like `>=3.10,<3.13` or `~=3.11`; None when it cannot be read.
fn python_allows(spec: &str, minor: u32) -> Option<bool> {
    let mut ok = true;
    for clause in spec.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let op_len = clause
            .find(|c: char| c.is_ascii_digit())
            .filter(|&i| i <= 3)?;
        let (op, ver) = clause.split_at(op_len);
        let op = op.trim();
        let wildcard = ver.ends_with(".*");
        let nums: Vec<u32> = ver
            .trim_end_matches(".*")
            .split('.')
            .map(|p| p.trim().parse().ok())
            .collect::<Option<_>>()?;
        let (maj, min, patch) = (
            nums[0],
            nums.get(1).copied(),
            nums.get(2).copied().unwrap_or(0),
        );
        let me = (3u32, minor);
        let them = (maj, min.unwrap_or(0));
        let holds = match op {
            ">=" => me >= them,
            ">" if min.is_none() => me.0 > maj,
            ">" => me > them || (me == them && nums.len() > 2),
            "<=" => me <= them || (min.is_none() && me.0 == maj),
            "<" => me < them || (me == them && patch > 0),
            "==" | "===" if min.is_none() => me.0 == maj,
            "==" | "===" => me == them,
            "!=" if wildcard || nums.len() == 2 => me != them,
            "!=" => true,
            "~=" if nums.len() >= 3 => me == them,
            "~=" => me.0 == maj && me >= them,
            _ => return None,
        };
        ok &= holds;
    }
    Some(ok)
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

/// A settings file first, then its siblings (a settings package: base.py,
/// production.py …), in name order: where a setting is looked for.
fn settings_files(file: &Path) -> Vec<PathBuf> {
    let mut files = vec![file.to_path_buf()];
    if let Some(Ok(entries)) = file.parent().map(std::fs::read_dir) {
        let mut siblings: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p != file && p.extension().is_some_and(|e| e == "py") && is_file(p))
            .collect();
        siblings.sort();
        files.extend(siblings);
    }
    files
}

/// The newest Django a requirement line's upper bound allows, as a version
/// to look up (`Django>=2.1,<2.2.0` → `2.1.99`; `<=2.2.4` → `2.2.4`), with
/// the specifier as written; None without an upper bound, or with one
/// whose predecessor is not plain (`<3.0`: some 2.x, unknown which).
fn django_ceiling(lines: &[String]) -> Option<(String, String)> {
    let line = lines
        .iter()
        .find(|l| deps::requirement_name(l).as_deref() == Some("django"))?;
    let spec = line.split(';').next().unwrap_or(line).trim();
    let rest = spec.get("django".len()..)?.trim_start();
    let rest = match rest.strip_prefix('[') {
        Some(r) => r.split_once(']')?.1,
        None => rest,
    };
    let mut newest = None;
    for clause in rest.split(',').map(str::trim) {
        let parts =
            |v: &str| -> Option<Vec<u32>> { v.trim().split('.').map(|p| p.parse().ok()).collect() };
        let n = if let Some(v) = clause.strip_prefix("<=") {
            parts(v)?
        } else if let Some(v) = clause.strip_prefix('<') {
            let mut p = parts(v)?;
            while p.len() > 2 && p.last() == Some(&0) {
                p.pop();
            }
            match p.as_mut_slice() {
                [_, 0] => return None,
                [_, minor] => {
                    *minor -= 1;
                    p.push(99);
                }
                [.., last] => *last -= 1,
                _ => return None,
            }
            p
        } else {
            continue;
        };
        let v: Vec<String> = n.iter().map(u32::to_string).collect();
        newest = Some(v.join("."));
    }
    Some((spec.to_string(), newest?))
}

/// The version pinned with `==` for `name` in requirement lines (`Django==4.2.7` → `4.2.7`).
fn pinned_version(lines: &[String], name: &str) -> Option<String> {
    lines.iter().find_map(|line| {
        if deps::requirement_name(line).as_deref() != Some(name) {
            return None;
        }
        let rest = line.trim()[name.len()..].trim_start();
        let rest = match rest.strip_prefix('[') {
            Some(r) => r.split_once(']')?.1.trim_start(),
            None => rest,
        };
        let v = rest.strip_prefix("==")?.trim_start();
        let v: String = v
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        (!v.is_empty()).then_some(v)
    })
}

// ---- dependencies ----

/// The chosen dependency source, read.
struct Deps {
    dependencies: Dependencies,
    /// Requirement lines (requirements files: every file's; generated: the generated ones).
    lines: Vec<String>,
    /// The file named in messages.
    shown: String,
    /// Python version or constraint the source states, with its file.
    python: Option<(deps::PythonHint, String)>,
}

/// A dependency source found in one folder: (kind, the file read).
fn sources_in(root: &Path, dir: &str) -> Result<Vec<(DependencyKind, String)>, DetectError> {
    let here = |f: &str| {
        let rel = join_rel(dir, f);
        is_file(&root.join(&rel)).then_some(rel)
    };
    let mut out = Vec::new();
    // No requirements.txt, but a requirements/ folder split by environment
    // (cookiecutter-django and many others): its production list.
    let split = || {
        ["production.txt", "prod.txt", "base.txt"]
            .iter()
            .find_map(|f| here(&format!("requirements/{f}")))
    };
    if let Some(f) = here("requirements.txt").or_else(split) {
        out.push((DependencyKind::Requirements, f));
    }
    if let Some(f) = here("Pipfile.lock").or_else(|| here("Pipfile")) {
        out.push((DependencyKind::Pipfile, f));
    }
    let poetry_lock = here("poetry.lock");
    let uv_lock = here("uv.lock");
    if let Some(f) = &poetry_lock {
        out.push((DependencyKind::Poetry, f.clone()));
    }
    if let Some(f) = &uv_lock {
        out.push((DependencyKind::Uv, f.clone()));
    }
    if let Some(f) = here("pyproject.toml") {
        if poetry_lock.is_none() && uv_lock.is_none() {
            // A pyproject.toml that only configures tools is no source; an unreadable one is noted, not fatal here.
            match deps::pyproject(&read(&root.join(&f), &f)?) {
                Ok(p) if !p.dependencies.is_empty() => out.push((DependencyKind::Pyproject, f)),
                Ok(p) if p.has_poetry_dependencies => out.push((DependencyKind::Poetry, f)),
                Ok(_) => {}
                // Unreadable and nothing else here: say what is wrong with it.
                Err(_) if out.is_empty() => out.push((DependencyKind::Pyproject, f)),
                Err(_) => {}
            }
        }
    }
    Ok(out)
}

fn find_dependencies(
    root: &Path,
    project_dir: &str,
    vars: &BuildVars,
    notes: &mut Vec<String>,
) -> Result<Deps, DetectError> {
    let wanted = match &vars.dependencies {
        Some(v) => Some(
            DependencyKind::parse(v).ok_or_else(|| DetectError::BadDependenciesVar(v.clone()))?,
        ),
        None => None,
    };
    let dirs = dedup_dirs(project_dir);
    let mut chosen = None;
    let mut seen: Vec<String> = Vec::new();
    for d in &dirs {
        let found = sources_in(root, d)?;
        match wanted {
            Some(k) => {
                if let Some(c) = found.iter().find(|(kind, _)| *kind == k) {
                    chosen = Some(c.clone());
                    seen.extend(found.iter().filter(|f| f.0 != k).map(|f| f.1.clone()));
                    break;
                }
                seen.extend(found.into_iter().map(|f| f.1));
            }
            None if found.len() > 1 => {
                if let Some((lock, req, n, extra)) = sources_agree(root, &found)? {
                    let more = match extra.len() {
                        0 => String::new(),
                        _ => format!(" (the lock adds {})", join_and(&extra)),
                    };
                    notes.push(format!(
                        "{req} and {} name the same {n} pinned packages{more}: installing from {}",
                        lock.1, lock.1
                    ));
                    chosen = Some(lock);
                    break;
                }
                return Err(DetectError::AmbiguousDependencies {
                    kinds: found.iter().map(|f| f.0.name().to_string()).collect(),
                    files: found.into_iter().map(|f| f.1).collect(),
                });
            }
            None => {
                if let Some(c) = found.into_iter().next() {
                    chosen = Some(c);
                    break;
                }
            }
        }
    }
    let Some((kind, file)) = chosen else {
        if let Some(k) = wanted {
            return Err(DetectError::MissingDependencySource(k));
        }
        let pdm = dirs
            .iter()
            .map(|d| join_rel(d, "pdm.lock"))
            .find(|rel| is_file(&root.join(rel)));
        return Err(match pdm {
            Some(f) => DetectError::OtherDependencyFile(f),
            None => DetectError::NoRequirements,
        });
    };
    check_safe_path(&file)?;
    for other in seen {
        notes.push(format!(
            "{other} ignored: the PAAS_DEPENDENCIES config var picks {file}"
        ));
    }
    // Files of the chosen kind next to manage.py when the root has its own.
    for d in dirs.iter().skip(1) {
        for (_, other) in sources_in(root, d)? {
            if other != file {
                notes.push(format!("{other} ignored: dependencies come from {file}"));
            }
        }
    }
    let how = match wanted {
        Some(_) => " (picked by the PAAS_DEPENDENCIES config var)",
        None => "",
    };
    if kind == DependencyKind::Requirements {
        let (includes, lines, rewritten) = read_requirements(root, &file, notes)?;
        notes.push(format!("Dependencies from {file}{how}"));
        return Ok(Deps {
            dependencies: Dependencies::Requirements {
                path: file.clone(),
                includes,
                rewritten,
            },
            lines,
            shown: file,
            python: None,
        });
    }
    let text = read(&root.join(&file), &file)?;
    let bad = |reason: String| DetectError::BadDependencyFile {
        file: file.clone(),
        reason,
    };
    let dir = Path::new(&file)
        .parent()
        .map(rel_string)
        .unwrap_or_default();
    let pyproject_rel = join_rel(&dir, "pyproject.toml");
    let read_pyproject = || -> Result<Option<deps::Pyproject>, DetectError> {
        if !is_file(&root.join(&pyproject_rel)) {
            return Ok(None);
        }
        let t = read(&root.join(&pyproject_rel), &pyproject_rel)?;
        deps::pyproject(&t)
            .map(Some)
            .map_err(|reason| DetectError::BadDependencyFile {
                file: pyproject_rel.clone(),
                reason,
            })
    };
    let (resolved, python_file) = match kind {
        DependencyKind::Pipfile if file.ends_with(".lock") => {
            (deps::pipfile_lock(&text).map_err(bad)?, file.clone())
        }
        DependencyKind::Pipfile => {
            notes.push(format!(
                "{file} has no Pipfile.lock: installing its version ranges (commit Pipfile.lock for repeatable builds)"
            ));
            (deps::pipfile(&text).map_err(bad)?, file.clone())
        }
        DependencyKind::Poetry if !file.ends_with(".lock") => {
            return Err(DetectError::PoetryWithoutLock(file));
        }
        DependencyKind::Poetry => {
            let py = read_pyproject()?;
            (
                deps::poetry_lock(&text, py.as_ref()).map_err(bad)?,
                pyproject_rel.clone(),
            )
        }
        DependencyKind::Uv => (deps::uv_lock(&text).map_err(bad)?, file.clone()),
        DependencyKind::Pyproject | DependencyKind::Requirements => {
            let py = deps::pyproject(&text).map_err(bad)?;
            notes.push(format!(
                "{file} has no lock file: installing its [project].dependencies ranges (commit a lock for repeatable builds)"
            ));
            let resolved = deps::Resolved {
                lines: py.dependencies,
                notes: vec![],
                python: py.requires_python.map(deps::PythonHint::Constraint),
            };
            (resolved, file.clone())
        }
    };
    if resolved.lines.is_empty() {
        return Err(bad("it lists no packages to install".to_string()));
    }
    let resolved = one_line_each(resolved).map_err(bad)?;
    notes.push(format!(
        "Dependencies from {file}{how}: {} packages, installed with pip from {GENERATED_REQUIREMENTS}",
        resolved.lines.len()
    ));
    notes.extend(resolved.notes);
    let mut requirements =
        format!("# Generated by paas from {file}: the packages the image installs.\n");
    for line in &resolved.lines {
        requirements.push_str(line);
        requirements.push('\n');
    }
    Ok(Deps {
        dependencies: Dependencies::Generated {
            kind,
            source: file.clone(),
            requirements,
        },
        lines: resolved.lines,
        shown: file,
        python: resolved.python.map(|h| (h, python_file)),
    })
}

/// Pinned versions by package name (`name==1.2`), or None when a line is not pinned.
fn pins(lines: &[String]) -> Option<BTreeMap<String, String>> {
    lines
        .iter()
        .map(|l| {
            let name = deps::requirement_name(l)?;
            let version = pinned_version(std::slice::from_ref(l), &name)?;
            Some((name, version))
        })
        .collect()
}

/// A lock and the requirements file that agrees with it: ((kind, lock
/// file), requirements file, how many packages both pin, the packages only
/// the lock pins).
type Agreement = ((DependencyKind, String), String, usize, Vec<String>);

/// requirements.txt beside one lock file (Pipfile.lock, poetry.lock,
/// uv.lock) that pins every one of its packages at the lock's version (the
/// file was exported from the lock, perhaps without some extras or groups):
/// they agree, and the lock, the project's own truth, is used. None when a
/// package differs or the requirements name one the lock lacks.
fn sources_agree(
    root: &Path,
    found: &[(DependencyKind, String)],
) -> Result<Option<Agreement>, DetectError> {
    let [a, b] = found else { return Ok(None) };
    let (req, lock) = match (a.0, b.0) {
        (DependencyKind::Requirements, _) => (a, b),
        (_, DependencyKind::Requirements) => (b, a),
        _ => return Ok(None),
    };
    if !lock.1.ends_with(".lock") {
        return Ok(None);
    }
    let text = read(&root.join(&lock.1), &lock.1)?;
    let resolved = match lock.0 {
        DependencyKind::Pipfile => deps::pipfile_lock(&text),
        DependencyKind::Uv => deps::uv_lock(&text),
        DependencyKind::Poetry => {
            let dir = Path::new(&lock.1)
                .parent()
                .map(rel_string)
                .unwrap_or_default();
            let py = join_rel(&dir, "pyproject.toml");
            let pyproject = if is_file(&root.join(&py)) {
                deps::pyproject(&read(&root.join(&py), &py)?).ok()
            } else {
                None
            };
            deps::poetry_lock(&text, pyproject.as_ref())
        }
        _ => return Ok(None),
    };
    // An unreadable lock is no agreement: the refusal names both files.
    let Ok(resolved) = resolved else {
        return Ok(None);
    };
    let (_, req_lines, _) = read_requirements(root, &req.1, &mut Vec::new())?;
    match (pins(&req_lines), pins(&resolved.lines)) {
        (Some(r), Some(l)) if !r.is_empty() && r.iter().all(|(k, v)| l.get(k) == Some(v)) => {
            let extra: Vec<String> = l.keys().filter(|k| !r.contains_key(*k)).cloned().collect();
            Ok(Some((lock.clone(), req.1.clone(), r.len(), extra)))
        }
        _ => Ok(None),
    }
}

/// Each requirement goes on its own line of the generated requirements
/// file: a value with a line break in it would add lines (a pip option, or
/// another package) that the file it came from does not list.
fn one_line_each(resolved: deps::Resolved) -> Result<deps::Resolved, String> {
    match resolved.lines.iter().find(|l| l.contains(['\n', '\r'])) {
        Some(l) => Err(format!(
            "the requirement {l:?} spans several lines: write each package and its version on one line"
        )),
        None => Ok(resolved),
    }
}

// ---- requirements ----

/// Requirement files read: (included files, requirement lines of every
/// file, files rewritten for the build), paths relative to the root.
type ReadRequirements = (Vec<String>, Vec<String>, Vec<(String, String)>);

/// Reads `req` and its includes. An `-i`/`--index-url`/`--extra-index-url`
/// line naming the public index is commented out in the installed copy:
/// the build's configured index (the operator's mirror, or the public
/// index itself) serves those packages. A private index stays as written.
fn read_requirements(
    root: &Path,
    req: &str,
    notes: &mut Vec<String>,
) -> Result<ReadRequirements, DetectError> {
    let req = req.to_string();
    let mut lines = Vec::new();
    let mut includes: Vec<String> = Vec::new();
    let mut rewritten = Vec::new();
    let mut queue = vec![req.clone()];
    while let Some(file) = queue.pop() {
        let text = read(&root.join(&file), &file)?;
        let mut copy = String::new();
        let mut changed = Vec::new();
        for raw in text.lines() {
            let option = statements::index_option(raw.trim());
            match option {
                Some((flag, url)) if statements::is_public_index(url) => {
                    copy.push_str("# paas: the build's package index serves the public index: ");
                    changed.push(format!("{flag} {url}"));
                }
                Some((flag, url)) => notes.push(format!(
                    "{file} names the package index {}: pip uses it as written ({flag})",
                    shown_url(url)
                )),
                None => {}
            }
            copy.push_str(raw);
            copy.push('\n');
        }
        if !changed.is_empty() {
            notes.push(format!(
                "{file} names the public package index ({}): installing from the build's configured index instead, which serves the same packages",
                changed.join(", ")
            ));
            rewritten.push((file.clone(), copy));
        }
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
                let ok = rel.as_deref().is_some_and(|r| is_file_below(root, r));
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
            lines.push(line.to_string());
        }
    }
    includes.sort();
    rewritten.sort();
    Ok((includes, lines, rewritten))
}

/// A URL without its password, for the push output.
fn shown_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((auth, host)) if !auth.contains('/') => {
                let user = auth.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            _ => url.to_string(),
        },
        None => url.to_string(),
    }
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

/// A regular file, not a symlink (whatever it points at is never read).
fn is_file(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file())
}

/// `rel` is a regular file below `root` reached through no symlink, not even
/// a symlinked folder: for paths the pushed files name (`-r other.txt`).
fn is_file_below(root: &Path, rel: &str) -> bool {
    let mut path = root.to_path_buf();
    let mut parts = rel.split('/').peekable();
    while let Some(part) = parts.next() {
        path.push(part);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return false;
        };
        let last = parts.peek().is_none();
        if (last && !meta.is_file()) || (!last && !meta.is_dir()) {
            return false;
        }
    }
    true
}

fn read(p: &Path, shown: &str) -> Result<String, DetectError> {
    // Never through a symlink: its target could be any file of the host.
    if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(DetectError::Io {
            path: shown.to_string(),
            err: std::io::Error::other("it is a symlink, and paas does not follow symlinks"),
        });
    }
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

    #[test]
    fn local_pythons_are_read_off_the_engines_tags_newest_first() {
        let tags: Vec<String> = [
            "python:3.11-slim",
            "python:3.13-slim",
            "python:3.11-slim",
            "python:3.12",
            "python:3.9-slim-bookworm",
            "postgres:17",
            "paas/blog:v3",
            "python:latest-slim",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            local_pythons(&tags, "python:{version}-slim"),
            vec!["3.13", "3.11"]
        );
        assert_eq!(local_pythons(&tags, "python:{version}"), vec!["3.12"]);
        assert!(local_pythons(&tags, "no-placeholder").is_empty());
    }

    fn opts() -> BuildOptions {
        BuildOptions {
            image_pattern: "python:{version}-slim".into(),
            python_version: None,
            settings_module: None,
            local_pythons: Vec::new(),
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
    fn asgi_projects_get_uvicorn_workers_and_wsgi_ones_keep_gunicorn() {
        let wsgi = detect(project("", &[]).path(), &opts()).unwrap();
        assert_eq!(wsgi.asgi, None);
        assert!(wsgi.adds_asgi.is_empty());
        let cmd = run_settings(&wsgi).cmd;
        assert_eq!(cmd[..2], ["gunicorn", "mysite.wsgi:application"]);
        assert!(!cmd.contains(&"-k".to_string()));

        // ASGI_APPLICATION in the settings.
        let set = project(
            "",
            &[(
                "mysite/settings.py",
                "WSGI_APPLICATION = 'mysite.wsgi.application'\nASGI_APPLICATION = \"mysite.routing.app\"\n",
            )],
        );
        let plan = detect(set.path(), &opts()).unwrap();
        assert_eq!(plan.asgi, Some(("mysite.routing".into(), "app".into())));
        assert_eq!(plan.adds_asgi, ["uvicorn[standard]", "uvicorn-worker"]);
        let cmd = run_settings(&plan).cmd;
        assert_eq!(
            cmd[..4],
            ["gunicorn", "mysite.routing:app", "-k", ASGI_WORKER]
        );
        assert!(render_dockerfile(&plan).contains(" gunicorn 'uvicorn[standard]' 'uvicorn-worker'"));

        // A dependency on uvicorn (with websockets): asgi.py beside wsgi.py;
        // only the worker class is added.
        let dep = project(
            "",
            &[
                (
                    "requirements.txt",
                    "Django>=4.2,<5.0\nuvicorn==0.32.0\nwebsockets\ngunicorn\n",
                ),
                ("mysite/asgi.py", "application = None\n"),
            ],
        );
        let plan = detect(dep.path(), &opts()).unwrap();
        assert_eq!(
            plan.asgi,
            Some(("mysite.asgi".into(), "application".into()))
        );
        assert_eq!(plan.adds_asgi, ["uvicorn-worker"]);
        assert!(plan
            .notes
            .iter()
            .any(|n| n == "ASGI application mysite.asgi:application (depends on uvicorn): served by gunicorn with uvicorn workers"), "{:?}", plan.notes);

        // channels without an asgi.py: what to add.
        let missing = project("", &[("requirements.txt", "Django>=4.2,<5.0\nchannels\n")]);
        let e = detect(missing.path(), &opts()).unwrap_err().to_string();
        assert!(
            e.starts_with("The project depends on channels, so paas serves the project with an ASGI server, but there is no asgi.py"),
            "{e}"
        );
        let bad = project("", &[("mysite/settings.py", "ASGI_APPLICATION = 'asgi'\n")]);
        let e = detect(bad.path(), &opts()).unwrap_err().to_string();
        assert!(
            e.contains("is not a dotted path like mysite.asgi.application"),
            "{e}"
        );
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
                includes: vec![],
                rewritten: vec![],
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
        // Found by `props::fuzz_settings_module`: a docstring naming the
        // key above the real line hid it.
        assert_eq!(
            parse_settings_module(
                "\"\"\"Sets DJANGO_SETTINGS_MODULE below.\"\"\"\nprint(DJANGO_SETTINGS_MODULE)\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'a.settings')"
            )
            .as_deref(),
            Some("a.settings")
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
        // The only settings.py of the project is used.
        let d = project("", &[("manage.py", "print('hi')\n")]);
        let plan = detect(d.path(), &opts()).unwrap();
        assert_eq!(plan.settings_module, "mysite.settings");
        assert!(
            plan.notes[0].contains("the only settings in the project"),
            "{:?}",
            plan.notes
        );
        // None at all.
        let d = tree(&[
            ("manage.py", "print('hi')\n"),
            ("requirements.txt", "django\n"),
        ]);
        let err = detect(d.path(), &opts()).unwrap_err();
        assert!(
            err.to_string()
                .contains("paas config:set DJANGO_SETTINGS_MODULE"),
            "{err}"
        );
        // Several.
        let d = project(
            "",
            &[("manage.py", "print('hi')\n"), ("other/settings.py", "")],
        );
        let err = detect(d.path(), &opts()).unwrap_err();
        assert_eq!(err.to_string(), "Found several settings modules (mysite.settings, other.settings) and manage.py names none: choose one with `paas config:set DJANGO_SETTINGS_MODULE=mysite.settings`.");
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
    fn a_python_whose_image_is_here_is_taken_before_one_to_download_unless_pinned() {
        let d = project("", &[("requirements.txt", "Django==5.0.1\n")]);
        let with = |local: &[&str]| BuildOptions {
            local_pythons: local.iter().map(|s| s.to_string()).collect(),
            ..opts()
        };
        // Nothing here, or the newest it allows is here: the newest.
        assert_eq!(detect(d.path(), &with(&[])).unwrap().python_version, "3.12");
        assert_eq!(
            detect(d.path(), &with(&["3.13", "3.12"]))
                .unwrap()
                .python_version,
            "3.12"
        );
        // 3.13 is too new for Django 5.0; 3.11 is here: no download.
        let plan = detect(d.path(), &with(&["3.13", "3.11"])).unwrap();
        assert_eq!(plan.python_version, "3.11");
        assert!(
            plan.notes.iter().any(|n| n.starts_with("Python 3.11 (the newest Python the pinned Django 5.0.1 allows whose image is on this server; 3.12 would be downloaded first")),
            "{:?}",
            plan.notes
        );
        // Too old for it (Django 5.0 needs 3.10+): the newest allowed, pulled.
        assert_eq!(
            detect(d.path(), &with(&["3.9", "3.8"]))
                .unwrap()
                .python_version,
            "3.12"
        );
        // What the project pins is used as written.
        let d = project(
            "",
            &[
                ("requirements.txt", "Django==5.0.1\n"),
                (".python-version", "3.12\n"),
            ],
        );
        assert_eq!(
            detect(d.path(), &with(&["3.11"])).unwrap().python_version,
            "3.12"
        );
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
    fn a_postgres_driver_is_added_only_when_database_url_needs_one() {
        let pg = BuildVars::from_config_vars(&BTreeMap::from([(
            "DATABASE_URL".to_string(),
            "postgres://blog:pw@paas-postgres:5432/blog".to_string(),
        )]));
        assert!(pg.postgres);
        let d = project(
            "",
            &[(
                "requirements.txt",
                "Django
",
            )],
        );
        let plan = detect_with(d.path(), &opts(), &pg).unwrap();
        assert!(plan.adds_postgres_driver);
        assert!(plan
            .notes
            .iter()
            .any(|n| n.contains("psycopg[binary] added")));
        assert!(render_dockerfile(&plan).contains(" 'psycopg[binary]'"));
        assert!(!detect(d.path(), &opts()).unwrap().adds_postgres_driver);
        for listed in ["psycopg2==2.9.10", "psycopg[binary]", "psycopg2-binary"] {
            let d = project(
                "",
                &[(
                    "requirements.txt",
                    &format!(
                        "Django
{listed}
"
                    ),
                )],
            );
            assert!(
                !detect_with(d.path(), &opts(), &pg)
                    .unwrap()
                    .adds_postgres_driver,
                "{listed}"
            );
        }
        let sqlite = BuildVars::from_config_vars(&BTreeMap::from([(
            "DATABASE_URL".to_string(),
            "sqlite:////data/db.sqlite3".to_string(),
        )]));
        assert!(!sqlite.postgres);
    }

    #[test]
    fn requirements_reached_through_a_symlink_are_never_read() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("token.txt"), "host-secret-7f3a==1.0\n").unwrap();
        // An included file that is a symlink, and one below a symlinked folder.
        for (include, link, target) in [
            ("base.txt", "base.txt", host.path().join("token.txt")),
            ("reqs/token.txt", "reqs", host.path().to_path_buf()),
        ] {
            let d = project("", &[("requirements.txt", &format!("-r {include}\n"))]);
            std::os::unix::fs::symlink(&target, d.path().join(link)).unwrap();
            let err = detect(d.path(), &opts()).unwrap_err();
            assert!(matches!(err, DetectError::MissingInclude { .. }), "{err}");
            assert!(err.to_string().contains("follows no symlink"), "{err}");
            assert!(!err.to_string().contains("host-secret"), "{err}");
        }
        // requirements.txt itself as a symlink: no source at all.
        let d = project("", &[]);
        std::fs::remove_file(d.path().join("requirements.txt")).unwrap();
        std::os::unix::fs::symlink(
            host.path().join("token.txt"),
            d.path().join("requirements.txt"),
        )
        .unwrap();
        let err = detect(d.path(), &opts()).unwrap_err();
        assert!(matches!(err, DetectError::NoRequirements), "{err}");
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
                rewritten: vec![],
            }
        );
        let d = project("", &[("requirements.txt", "-r ../outside.txt\n")]);
        assert!(matches!(
            detect(d.path(), &opts()),
            Err(DetectError::MissingInclude { .. })
        ));
    }

    #[test]
    fn a_requirements_folder_split_by_environment_installs_its_production_list() {
        let d = project(
            "",
            &[
                ("requirements/base.txt", "Django==5.1.8\n"),
                (
                    "requirements/local.txt",
                    "-r base.txt\ndjango-debug-toolbar\n",
                ),
                (
                    "requirements/production.txt",
                    "-r base.txt\ngunicorn==23.0.0\n",
                ),
            ],
        );
        std::fs::remove_file(d.path().join("requirements.txt")).unwrap();
        let plan = detect(d.path(), &opts()).unwrap();
        assert_eq!(
            plan.dependencies,
            Dependencies::Requirements {
                path: "requirements/production.txt".into(),
                includes: vec!["requirements/base.txt".into()],
                rewritten: vec![],
            }
        );
        assert!(!plan.adds_gunicorn);
        // Without a production list, the base one; a root requirements.txt wins.
        std::fs::remove_file(d.path().join("requirements/production.txt")).unwrap();
        let plan = detect(d.path(), &opts()).unwrap();
        assert!(
            matches!(&plan.dependencies, Dependencies::Requirements { path, .. } if path == "requirements/base.txt")
        );
        std::fs::write(d.path().join("requirements.txt"), "Django\n").unwrap();
        let plan = detect(d.path(), &opts()).unwrap();
        assert!(
            matches!(&plan.dependencies, Dependencies::Requirements { path, .. } if path == "requirements.txt")
        );
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
        let Dependencies::Requirements { path, .. } = plan.dependencies else {
            panic!("requirements expected")
        };
        assert_eq!(path, "src/requirements.txt");
    }

    #[test]
    fn no_requirements_is_explained() {
        let d = project("", &[]);
        std::fs::remove_file(d.path().join("requirements.txt")).unwrap();
        let err = detect(d.path(), &opts()).unwrap_err();
        assert!(matches!(err, DetectError::NoRequirements));
        assert!(err.to_string().starts_with("No dependencies found: list them (at least Django) in requirements.txt, Pipfile.lock, poetry.lock, uv.lock or pyproject.toml"), "{err}");
        std::fs::write(d.path().join("pdm.lock"), "").unwrap();
        let err = detect(d.path(), &opts()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Found pdm.lock, which paas does not read: export your dependencies with `pdm export --prod -o requirements.txt`"),
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
        // The uploads fixture pins Django 5.1: Python 3.13, an image the tests have.
        assert_eq!(
            detect(&fixture("uploads"), &opts()).unwrap().python_version,
            "3.13"
        );
        let pep621 = detect(&fixture("pep621-only"), &opts()).unwrap();
        assert_eq!(generated(&pep621).0, DependencyKind::Pyproject);
        assert_eq!(pep621.python_version, "3.11");
        let tools = detect(&fixture("tool-pyproject"), &opts()).unwrap();
        assert!(
            matches!(&tools.dependencies, Dependencies::Requirements { path, .. } if path == "requirements.txt"),
            "{:?}",
            tools.dependencies
        );
        let err = detect(&fixture("not-django"), &opts()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "No Django project found: paas looks for manage.py (or, without it, a package's wsgi.py) at the repository root or in a subfolder up to 3 levels deep. Push a Django project, or add manage.py."
        );
    }

    #[test]
    fn a_django_range_older_than_every_python_is_refused_like_a_pin() {
        let lines = |l: &str| vec![l.to_string()];
        assert_eq!(
            django_ceiling(&lines("Django>=2.1.3,<2.2.0")),
            Some(("Django>=2.1.3,<2.2.0".into(), "2.1.99".into()))
        );
        assert_eq!(
            django_ceiling(&lines("django<=2.2.4 ; python_version > '3'")),
            Some(("django<=2.2.4".into(), "2.2.4".into()))
        );
        assert_eq!(
            django_ceiling(&lines("Django>=2.2,<2.2.5")),
            Some(("Django>=2.2,<2.2.5".into(), "2.2.4".into()))
        );
        assert_eq!(django_ceiling(&lines("Django<3.0")), None);
        assert_eq!(django_ceiling(&lines("Django>=4.2")), None);
        let d = project("", &[("requirements.txt", "Django>=2.1.3,<2.2.0\n")]);
        let err = detect(d.path(), &opts()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Django 2.1 (the newest that Django>=2.1.3,<2.2.0 allows) supports Python 3.5 to 3.7 only, older than every Python paas builds with (3.8 to 3.14): upgrade Django to 4.2 LTS or later in your dependencies and push again."
        );
        let d = project("", &[("requirements.txt", "Django>=3.2,<3.3\n")]);
        assert!(detect(d.path(), &opts()).is_ok());
    }

    /// The names in a plan's dependency context.
    fn dependency_files(plan: &BuildPlan, root: &Path) -> Vec<String> {
        dependency_build(plan, root)
            .unwrap()
            .files
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    #[test]
    fn the_dependency_context_holds_no_code_and_the_layer_the_helpers() {
        let plan = detect(&fixture("blog"), &opts()).unwrap();
        assert_eq!(
            dependency_files(&plan, &fixture("blog")),
            [".paas/Dockerfile", "requirements.txt"]
        );
        let names: Vec<String> = code_files(&plan).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "paas/paas_settings.py",
                "paas/paas_inspect.py",
                "paas/entrypoint.sh",
                "paas/collectstatic.sh",
            ]
        );
        assert!(INSPECT_HELPER.contains(&format!("CHECK_MARK = \"{CHECK_MARK}\"")));
        assert!(INSPECT_HELPER.contains(&format!("CHECK_END = \"{CHECK_END}\"")));
        let run = run_settings(&plan);
        assert_eq!(run.working_dir, "/app");
        assert_eq!(run.build_cmd, ["sh", "/paas/collectstatic.sh"]);
        assert_eq!(run.cmd[..2], ["gunicorn", "mysite.wsgi:application"]);
    }

    /// Same requirements, same key (whatever the code); a changed
    /// requirement or Python, another key.
    #[test]
    fn the_dependency_key_follows_the_requirements_not_the_code() {
        let key = |files: &[(&str, &str)], python: Option<&str>| {
            let d = project("", files);
            let o = BuildOptions {
                python_version: python.map(String::from),
                ..opts()
            };
            let plan = detect(d.path(), &o).unwrap();
            dependency_build(&plan, d.path()).unwrap().key
        };
        let base = key(&[("requirements.txt", "Django==5.1.3\n")], None);
        assert_eq!(base.len(), 64);
        assert_eq!(
            key(
                &[
                    ("requirements.txt", "Django==5.1.3\n"),
                    ("mysite/views.py", "changed = True\n")
                ],
                None
            ),
            base
        );
        assert_ne!(key(&[("requirements.txt", "Django==5.1.4\n")], None), base);
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
        let pep621 = pyproject_project(PEP621);
        let psycopg3 = project(
            "",
            &[("requirements.txt", "Django==5.1.3\npsycopg==3.2.3\n")],
        );
        let no_static = BuildVars {
            disable_collectstatic: true,
            ..BuildVars::default()
        };
        let binary_no_wheel = project(
            "",
            &[
                (
                    "requirements.txt",
                    "Django==4.2.8\npsycopg2-binary==2.9.6\n",
                ),
                (".python-version", "3.12\n"),
            ],
        );
        let public_index = project(
            "",
            &[(
                "requirements.txt",
                "-i https://pypi.org/simple\nDjango==5.1.3\n",
            )],
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
            (
                "pipenv-settings-package",
                detect(&fixture("pipenv-settings-package"), &opts()).unwrap(),
            ),
            (
                "poetry-project",
                detect(&fixture("poetry-project"), &opts()).unwrap(),
            ),
            (
                "uv-no-manage-py",
                detect(&fixture("uv-no-manage-py"), &opts()).unwrap(),
            ),
            (
                "pyproject-no-collectstatic",
                detect_with(pep621.path(), &opts(), &no_static).unwrap(),
            ),
            (
                "psycopg2-source",
                detect(&fixture("psycopg2-source"), &opts()).unwrap(),
            ),
            (
                "psycopg3-runtime-libpq",
                detect(psycopg3.path(), &opts()).unwrap(),
            ),
            (
                "pep621-only",
                detect(&fixture("pep621-only"), &opts()).unwrap(),
            ),
            (
                "tool-pyproject",
                detect(&fixture("tool-pyproject"), &opts()).unwrap(),
            ),
            ("uploads", detect(&fixture("uploads"), &opts()).unwrap()),
            (
                "channels-echo",
                detect(&fixture("channels-echo"), &opts()).unwrap(),
            ),
            (
                "psycopg2-binary-without-wheel",
                detect(binary_no_wheel.path(), &opts()).unwrap(),
            ),
            (
                "public-index-requirements",
                detect(public_index.path(), &opts()).unwrap(),
            ),
        ];
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("buildpacks/django/golden");
        let update = std::env::var("PAAS_UPDATE_GOLDEN").is_ok_and(|v| v == "1");
        // Generated requirements are pinned next to their Dockerfile.
        let mut pinned: Vec<(String, String)> = Vec::new();
        for (name, plan) in &cases {
            pinned.push((format!("{name}.Dockerfile"), render_dockerfile(plan)));
            if let Dependencies::Generated { requirements, .. } = &plan.dependencies {
                pinned.push((
                    format!("{name}.requirements.lock.txt"),
                    requirements.clone(),
                ));
            }
        }
        for (file, got) in pinned {
            let path = dir.join(file);
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

    // ---- v2: dependency sources, Python from Django, settings packages, collectstatic ----

    const PEP621: &str = "[project]\nname = \"site\"\nversion = \"1\"\nrequires-python = \">=3.10\"\ndependencies = [\"Django>=5.1,<5.2\", \"whitenoise[brotli]>=6\"]\n\n[tool.ruff]\nline-length = 100\n";

    /// A startproject-shaped project whose dependencies are in `files` instead of requirements.txt.
    fn with_deps(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = project("", files);
        if !files.iter().any(|(f, _)| *f == "requirements.txt") {
            std::fs::remove_file(d.path().join("requirements.txt")).unwrap();
        }
        d
    }

    fn pyproject_project(text: &str) -> tempfile::TempDir {
        with_deps(&[("pyproject.toml", text)])
    }

    fn generated(plan: &BuildPlan) -> (DependencyKind, String, String) {
        match &plan.dependencies {
            Dependencies::Generated {
                kind,
                source,
                requirements,
            } => (*kind, source.clone(), requirements.clone()),
            other => panic!("generated requirements expected, got {other:?}"),
        }
    }

    fn vars(deps: Option<&str>) -> BuildVars {
        BuildVars {
            dependencies: deps.map(str::to_string),
            ..BuildVars::default()
        }
    }

    #[test]
    fn pipfile_lock_gives_pinned_default_packages_and_python() {
        let plan = detect(&fixture("pipenv-settings-package"), &opts()).unwrap();
        let (kind, source, req) = generated(&plan);
        assert_eq!(
            (kind, source.as_str()),
            (DependencyKind::Pipfile, "Pipfile.lock")
        );
        assert_eq!(
            req,
            "# Generated by paas from Pipfile.lock: the packages the image installs.\n\
             asgiref==3.8.1 ; python_version >= '3.8'\n\
             django==4.2.16 ; python_version >= '3.8'\n\
             sqlparse==0.5.1 ; python_version >= '3.8'\n"
        );
        assert_eq!(plan.python_version, "3.11");
        assert!(
            plan.notes
                .iter()
                .any(|n| n == "Python 3.11 (from Pipfile.lock)"),
            "{:?}",
            plan.notes
        );
        assert!(plan.adds_gunicorn);
        let files = dependency_files(&plan, &fixture("pipenv-settings-package"));
        assert!(
            files.contains(&GENERATED_REQUIREMENTS.to_string()),
            "{files:?}"
        );
        // Extras, git and local paths.
        let lock = r#"{"_meta": {"requires": {"python_version": "3.12"}}, "default": {
            "psycopg": {"extras": ["binary"], "version": "==3.2.1"},
            "mylib": {"git": "https://git.example/mylib.git", "ref": "abc123"},
            "site": {"editable": true, "path": "."}}, "develop": {}}"#;
        let r = deps::pipfile_lock(lock).unwrap();
        assert_eq!(
            r.lines,
            [
                "mylib @ git+https://git.example/mylib.git@abc123",
                "psycopg[binary]==3.2.1"
            ]
        );
        assert!(
            r.notes[0].starts_with("site skipped: local path dependency ."),
            "{:?}",
            r.notes
        );
        // Found by `props::fuzz_pipfile`: a version without its operator
        // ran into the name and named another package (`django4.2`).
        let err = deps::pipfile("[packages]\ndjango = \"4.2\"\n").unwrap_err();
        assert!(err.contains("write it like \"==4.2\""), "{err}");
        let err = deps::pipfile("[packages]\ndjango = { version = \"4.2\" }\n").unwrap_err();
        assert!(err.contains("has no operator"), "{err}");
        let err = deps::pipfile_lock(r#"{"default": {"django": {"version": "4.2"}}}"#).unwrap_err();
        assert!(err.contains("has no operator"), "{err}");
        // And one with a line break in it would add lines to the generated file.
        let d = with_deps(&[(
            "Pipfile",
            "[packages]\ndjango = \"==4.2\\n--extra-index-url http://x\"\n",
        )]);
        let err = detect(d.path(), &opts()).unwrap_err();
        assert!(err.to_string().contains("spans several lines"), "{err}");
        let d = with_deps(&[("Pipfile.lock", "{not json")]);
        let err = detect(d.path(), &opts()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Could not use Pipfile.lock: it is not valid JSON"),
            "{err}"
        );
        assert!(err
            .to_string()
            .ends_with("fix it or regenerate it with your package manager, then push again."));
    }

    #[test]
    fn a_pipfile_without_lock_installs_its_ranges() {
        let d = with_deps(&[(
            "Pipfile",
            "[packages]\ndjango = \"~=4.2\"\nrequests = \"*\"\npsycopg = {version = \">=3\", extras = [\"binary\"]}\n\n[dev-packages]\npytest = \"*\"\n\n[requires]\npython_version = \"3.13\"\n",
        )]);
        let plan = detect(d.path(), &opts()).unwrap();
        let (kind, source, req) = generated(&plan);
        assert_eq!(
            (kind, source.as_str()),
            (DependencyKind::Pipfile, "Pipfile")
        );
        assert!(
            req.ends_with("django~=4.2\npsycopg[binary]>=3\nrequests\n"),
            "{req}"
        );
        assert_eq!(plan.python_version, "3.13");
        assert!(plan
            .notes
            .iter()
            .any(|n| n.starts_with("Pipfile has no Pipfile.lock")));
    }

    #[test]
    fn poetry_lock_keeps_the_main_group_only() {
        // Lock 2.0 (no groups): followed from pyproject's main dependencies.
        let plan = detect(&fixture("poetry-project"), &opts()).unwrap();
        let (kind, source, req) = generated(&plan);
        assert_eq!(
            (kind, source.as_str()),
            (DependencyKind::Poetry, "poetry.lock")
        );
        assert_eq!(
            req.lines().skip(1).collect::<Vec<_>>(),
            [
                "asgiref==3.8.1",
                "django==5.1.3",
                "sqlparse==0.5.1",
                "tzdata==2024.2 ; sys_platform == \"win32\""
            ]
        );
        // No Python pinned: the newest Django 5.1 supports, within ^3.11.
        assert_eq!(plan.python_version, "3.13");
        assert!(
            plan.notes.iter().any(|n| n.starts_with("Python 3.13 (the newest Python Django 5.1.3 supports, allowed by requires-python \">=3.11,<4\" in pyproject.toml")),
            "{:?}",
            plan.notes
        );
        // Lock 2.1 names the groups; 1.x the category.
        let lock21 = "[[package]]\nname = \"Django\"\nversion = \"4.2.1\"\ngroups = [\"main\"]\nmarkers = {main = \"python_version >= '3.8'\"}\n\n[[package]]\nname = \"pytest\"\nversion = \"8.0\"\ngroups = [\"dev\"]\n\n[[package]]\nname = \"dep\"\nversion = \"1.0\"\ngroups = [\"main\", \"dev\"]\nsource = {type = \"git\", url = \"https://git.example/dep.git\", reference = \"main\", resolved_reference = \"0abc\"}\n";
        let r = deps::poetry_lock(lock21, None).unwrap();
        assert_eq!(
            r.lines,
            [
                "django==4.2.1 ; python_version >= '3.8'",
                "dep @ git+https://git.example/dep.git@0abc"
            ]
        );
        let lock1 = "[[package]]\nname = \"django\"\nversion = \"3.2.25\"\ncategory = \"main\"\n\n[[package]]\nname = \"black\"\nversion = \"24.1\"\ncategory = \"dev\"\n";
        assert_eq!(
            deps::poetry_lock(lock1, None).unwrap().lines,
            ["django==3.2.25"]
        );
        // Lock 1.x keeps a backport's markers on the edge that needs it
        // only: the line gets them (and what the backport alone needs
        // inherits them); 1.0's `python = "<3.8"` on an edge counts too.
        let lock1 = r#"[[package]]
name = "django"
version = "4.2.16"
category = "main"

[package.dependencies]
asgiref = ">=3.6.0,<4"
"backports.zoneinfo" = {version = "*", markers = "python_version < \"3.9\""}
tzdata = {version = "*", markers = "sys_platform == \"win32\""}

[[package]]
name = "asgiref"
version = "3.8.1"
category = "main"

[package.dependencies]
typing-extensions = {version = ">=4", python = "<3.11"}

[[package]]
name = "backports.zoneinfo"
version = "0.2.1"
category = "main"

[package.dependencies]
shim = "*"

[[package]]
name = "shim"
version = "1.0"
category = "main"

[[package]]
name = "tzdata"
version = "2024.2"
category = "main"

[[package]]
name = "typing-extensions"
version = "4.12.2"
category = "main"
"#;
        assert_eq!(
            deps::poetry_lock(lock1, None).unwrap().lines,
            [
                "django==4.2.16",
                "asgiref==3.8.1",
                "backports-zoneinfo==0.2.1 ; python_version < \"3.9\"",
                "shim==1.0 ; python_version < \"3.9\"",
                "tzdata==2024.2 ; sys_platform == \"win32\"",
                "typing-extensions==4.12.2 ; python_version < \"3.11\""
            ]
        );
        // A poetry project without its lock.
        let d = pyproject_project(
            "[tool.poetry.dependencies]\npython = \"^3.11\"\ndjango = \"^5.0\"\n",
        );
        let err = detect(d.path(), &opts()).unwrap_err();
        assert_eq!(err.to_string(), "pyproject.toml declares poetry dependencies but there is no poetry.lock next to it: run `poetry lock` and commit poetry.lock.");
    }

    #[test]
    fn uv_lock_follows_the_project_without_dev_dependencies() {
        let plan = detect(&fixture("uv-no-manage-py"), &opts()).unwrap();
        let (kind, source, req) = generated(&plan);
        assert_eq!((kind, source.as_str()), (DependencyKind::Uv, "uv.lock"));
        assert_eq!(
            req.lines().skip(1).collect::<Vec<_>>(),
            [
                "asgiref==3.8.1",
                "django==5.2.1",
                "sqlparse==0.5.3",
                "tzdata==2025.2 ; sys_platform == 'win32'"
            ]
        );
        assert_eq!(plan.python_version, "3.13");
        // Extras requested on an edge, git sources, a missing root.
        let lock = "version = 1\n[[package]]\nname = \"app\"\nversion = \"0\"\nsource = { editable = \".\" }\ndependencies = [{ name = \"psycopg\", extra = [\"binary\"] }, { name = \"lib\" }]\n\n[[package]]\nname = \"psycopg\"\nversion = \"3.2.1\"\nsource = { registry = \"https://registry.example/simple\" }\n[package.optional-dependencies]\nbinary = [{ name = \"psycopg-binary\", marker = \"implementation_name != 'pypy'\" }]\n\n[[package]]\nname = \"psycopg-binary\"\nversion = \"3.2.1\"\nsource = { registry = \"https://registry.example/simple\" }\n\n[[package]]\nname = \"lib\"\nversion = \"0.1\"\nsource = { git = \"https://git.example/lib?rev=main#0abc\" }\n";
        assert_eq!(
            deps::uv_lock(lock).unwrap().lines,
            [
                "psycopg==3.2.1",
                "psycopg-binary==3.2.1 ; implementation_name != 'pypy'",
                "lib @ git+https://git.example/lib@0abc"
            ]
        );
        let d = with_deps(&[(
            "uv.lock",
            "version = 1\n[[package]]\nname = \"django\"\nversion = \"5.0\"\n",
        )]);
        let err = detect(d.path(), &opts()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Could not use uv.lock: it has no entry for the project itself"),
            "{err}"
        );
    }

    #[test]
    fn pep621_dependencies_without_a_lock() {
        let d = pyproject_project(PEP621);
        let plan = detect(d.path(), &opts()).unwrap();
        let (kind, _, req) = generated(&plan);
        assert_eq!(kind, DependencyKind::Pyproject);
        assert!(
            req.ends_with("\nDjango>=5.1,<5.2\nwhitenoise[brotli]>=6\n"),
            "{req}"
        );
        // Not pinned: the default, which requires-python allows.
        assert_eq!(plan.python_version, DEFAULT_PYTHON);
        // A pyproject.toml that only configures tools is no source.
        let d = project(
            "",
            &[(
                "pyproject.toml",
                "[tool.black]\nline-length = 100\n[project]\nname = \"x\"\n",
            )],
        );
        let plan = detect(d.path(), &opts()).unwrap();
        assert!(matches!(
            plan.dependencies,
            Dependencies::Requirements { .. }
        ));
        let d = pyproject_project("[project\ndependencies = [\"django\"]\n");
        let err = detect(d.path(), &opts()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Could not use pyproject.toml: it is not valid TOML"),
            "{err}"
        );
        let d = project("", &[("pyproject.toml", "[project\n")]);
        assert!(detect(d.path(), &opts()).is_ok());
        let d = pyproject_project("[tool.ruff]\nline-length = 100\n");
        assert!(matches!(
            detect(d.path(), &opts()),
            Err(DetectError::NoRequirements)
        ));
    }

    #[test]
    fn two_dependency_sources_are_refused_unless_one_is_picked() {
        let d = project("", &[("poetry.lock", "")]);
        let err = detect(d.path(), &opts()).unwrap_err();
        assert_eq!(err.to_string(), "Found requirements.txt and poetry.lock: paas installs dependencies from one source, so delete the file you no longer use, or pick one with `paas config:set PAAS_DEPENDENCIES=requirements` (or poetry).");
        let d = project(
            "",
            &[
                ("Pipfile.lock", "{}"),
                ("uv.lock", ""),
                ("pyproject.toml", PEP621),
            ],
        );
        let err = detect(d.path(), &opts()).unwrap_err();
        assert_eq!(err.to_string(), "Found requirements.txt, Pipfile.lock and uv.lock: paas installs dependencies from one source, so delete the file you no longer use, or pick one with `paas config:set PAAS_DEPENDENCIES=requirements` (or pipfile or uv).");
        // The config var picks one; the others are noted.
        let d = project("", &[("pyproject.toml", PEP621)]);
        let plan = detect_with(d.path(), &opts(), &vars(Some("pyproject"))).unwrap();
        assert_eq!(generated(&plan).0, DependencyKind::Pyproject);
        assert!(plan.notes.iter().any(|n| n == "requirements.txt ignored: the PAAS_DEPENDENCIES config var picks pyproject.toml"), "{:?}", plan.notes);
        let plan = detect_with(d.path(), &opts(), &vars(Some("Requirements"))).unwrap();
        assert!(matches!(
            plan.dependencies,
            Dependencies::Requirements { .. }
        ));
        let err = detect_with(d.path(), &opts(), &vars(Some("conda"))).unwrap_err();
        assert_eq!(err.to_string(), "The PAAS_DEPENDENCIES config var is \"conda\", which is not one of requirements, pipfile, poetry, uv, pyproject: set one of those, or unset it with `paas config:unset PAAS_DEPENDENCIES`.");
        let err = detect_with(d.path(), &opts(), &vars(Some("uv"))).unwrap_err();
        assert_eq!(err.to_string(), "The PAAS_DEPENDENCIES config var asks for uv dependencies but there is no uv.lock at the repository root or next to manage.py: commit it, or unset the config var with `paas config:unset PAAS_DEPENDENCIES`.");
        // Sources at the root win over those next to manage.py.
        let d = project("src", &[("src/Pipfile.lock", "{}")]);
        let plan = detect(d.path(), &opts()).unwrap();
        assert!(matches!(
            plan.dependencies,
            Dependencies::Requirements { .. }
        ));
        assert!(plan
            .notes
            .iter()
            .any(|n| n == "src/Pipfile.lock ignored: dependencies come from requirements.txt"));
    }

    #[test]
    fn python_follows_the_pinned_django() {
        for (req, want) in [
            ("Django==3.2.25", "3.10"),
            ("django[argon2]==4.2.7", "3.11"),
            ("Django==5.0.1", "3.12"),
            ("Django==5.2", "3.13"),
            ("Django>=4.2,<5.0", DEFAULT_PYTHON),
            ("Django==9.0", DEFAULT_PYTHON),
        ] {
            let d = project("", &[("requirements.txt", req)]);
            let plan = detect(d.path(), &opts()).unwrap();
            assert_eq!(plan.python_version, want, "{req}");
        }
        let d = project("", &[("requirements.txt", "Django==4.2.8")]);
        let plan = detect(d.path(), &opts()).unwrap();
        assert!(plan.notes.iter().any(|n| n == "Python 3.12 (the newest Python the pinned Django 4.2.8 supports; pin another with .python-version)"), "{:?}", plan.notes);
        // A pin in the repository wins.
        let d = project(
            "",
            &[
                ("requirements.txt", "Django==4.2.7"),
                (".python-version", "3.11"),
            ],
        );
        assert_eq!(detect(d.path(), &opts()).unwrap().python_version, "3.11");
        // requires-python caps it; and it can rule out every version.
        let d = pyproject_project(
            "[project]\nrequires-python = \">=3.10,<3.12\"\ndependencies = [\"django==5.1.2\"]\n",
        );
        assert_eq!(detect(d.path(), &opts()).unwrap().python_version, "3.11");
        let d = pyproject_project(
            "[project]\nrequires-python = \">=3.12\"\ndependencies = [\"django\"]\n",
        );
        assert_eq!(detect(d.path(), &opts()).unwrap().python_version, "3.12");
        let d =
            pyproject_project("[project]\nrequires-python = \"<3\"\ndependencies = [\"django\"]\n");
        let err = detect(d.path(), &opts()).unwrap_err();
        assert!(
            err.to_string()
                .contains("(from requires-python in pyproject.toml)"),
            "{err}"
        );
    }

    #[test]
    fn native_dependencies_get_a_build_stage_without_a_compiler_in_the_image() {
        let plan = detect(&fixture("psycopg2-source"), &opts()).unwrap();
        assert!(plan.native.needs_build_stage());
        assert!(
            plan.notes.iter().any(|n| n
                == "psycopg2 compiled in a build stage (gcc, libpq-dev); the app's image gets only libpq5"),
            "{:?}",
            plan.notes
        );
        let file = render_dockerfile(&plan);
        let (build, app) = file.split_once("FROM python:3.13-slim\n").unwrap();
        assert!(build.contains("FROM python:3.13-slim AS build\n"), "{file}");
        assert!(
            build.contains("packages=\"gcc libc6-dev libpq-dev\""),
            "{file}"
        );
        assert!(
            build.contains("pip install --no-cache-dir -r /paas/deps/requirements.txt gunicorn")
        );
        assert!(
            app.contains("COPY --from=build /opt/venv /opt/venv\n"),
            "{file}"
        );
        assert!(
            app.contains("--no-install-recommends libpq5 >/dev/null"),
            "{file}"
        );
        assert!(
            !app.contains("gcc") && !app.contains("pip install"),
            "{file}"
        );
        // A pure-Python project keeps one stage and no apt-get.
        let plan = detect(&fixture("blog"), &opts()).unwrap();
        let file = render_dockerfile(&plan);
        assert!(
            !file.contains(" AS build") && !file.contains("apt-get"),
            "{file}"
        );
        assert!(
            file.contains("RUN python3 -m venv /opt/venv \\\n && groupadd"),
            "{file}"
        );
        // Packages paas does not know: two config vars.
        let config: BTreeMap<String, String> = [
            ("PAAS_BUILD_PACKAGES", "libldap2-dev libsasl2-dev"),
            ("PAAS_RUNTIME_PACKAGES", "libldap-2.5-0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let v = BuildVars::from_config_vars(&config);
        let plan = detect_with(&fixture("blog"), &opts(), &v).unwrap();
        assert!(plan.notes.iter().any(|n| n == "the packages needing the PAAS_BUILD_PACKAGES config var's libraries compiled in a build stage (gcc, libldap2-dev, libsasl2-dev); the app's image gets only libldap-2.5-0"), "{:?}", plan.notes);
        let file = render_dockerfile(&plan);
        assert!(
            file.contains("packages=\"gcc libc6-dev libldap2-dev libsasl2-dev\""),
            "{file}"
        );
        assert!(
            file.contains("--no-install-recommends libldap-2.5-0 >/dev/null"),
            "{file}"
        );
        let bad = BuildVars {
            runtime_packages: Some("libpq5; curl evil".into()),
            ..BuildVars::default()
        };
        let err = detect_with(&fixture("blog"), &opts(), &bad).unwrap_err();
        assert_eq!(err.to_string(), "The PAAS_RUNTIME_PACKAGES config var names \"libpq5; curl evil\", which is not a list of Debian package names: list packages like libldap2-dev separated by spaces, or unset it with `paas config:unset PAAS_RUNTIME_PACKAGES`.");
    }

    #[test]
    fn requires_python_specifiers() {
        let allows = |spec: &str, minor: u32| python_allows(spec, minor).unwrap();
        assert!(allows(">=3.10", 10) && !allows(">=3.10", 9));
        assert!(allows(">=3.10,<3.13", 12) && !allows(">=3.10,<3.13", 13));
        assert!(allows("~=3.11", 13) && !allows("~=3.11", 10));
        assert!(allows("~=3.11.2", 11) && !allows("~=3.11.2", 12));
        assert!(allows("==3.12.*", 12) && !allows("==3.12.*", 11));
        assert!(allows("!=3.12.*", 11) && !allows("!=3.12.*", 12));
        assert!(allows(">3.10", 11) && !allows(">3.10", 10) && allows(">3.10.2", 10));
        assert!(allows("<3.11.4", 11) && allows(">=3,<4", 14));
        assert!(python_allows("^3.11", 11).is_none());
        assert_eq!(
            deps::pyproject("[tool.poetry.dependencies]\npython = \"~3.11\"\n")
                .unwrap()
                .requires_python
                .as_deref(),
            Some(">=3.11,<3.12")
        );
    }

    #[test]
    fn a_settings_package_resolves_to_its_production_module() {
        let plan = detect(&fixture("pipenv-settings-package"), &opts()).unwrap();
        assert_eq!(plan.settings_module, "mysite.settings.production");
        assert_eq!(plan.wsgi_module, "mysite.wsgi");
        assert!(plan.notes[0].starts_with("Settings mysite.settings.production: mysite.settings (from manage.py) is a package without settings of its own"), "{:?}", plan.notes);
        let base = (
            "mysite/settings/base.py",
            "WSGI_APPLICATION = 'mysite.wsgi.application'\n",
        );
        let pkg = |extra: &[(&'static str, &'static str)]| {
            let mut files = vec![("mysite/settings/__init__.py", "# settings\n"), base];
            files.extend_from_slice(extra);
            let d = project("", &files);
            std::fs::remove_file(d.path().join("mysite/settings.py")).unwrap();
            d
        };
        let d = pkg(&[
            ("mysite/settings/prod.py", "from .base import *\n"),
            ("mysite/settings/local.py", ""),
        ]);
        assert_eq!(
            detect(d.path(), &opts()).unwrap().settings_module,
            "mysite.settings.prod"
        );
        let d = pkg(&[]);
        assert_eq!(
            detect(d.path(), &opts()).unwrap().settings_module,
            "mysite.settings.base"
        );
        let d = pkg(&[
            ("mysite/settings/dev.py", ""),
            ("mysite/settings/staging.py", ""),
        ]);
        let err = detect(d.path(), &opts()).unwrap_err();
        assert_eq!(err.to_string(), "The settings package mysite.settings has no settings of its own and paas cannot tell which of mysite.settings.base, mysite.settings.dev, mysite.settings.staging to deploy: choose with `paas config:set DJANGO_SETTINGS_MODULE=mysite.settings.base` (or name one production.py).");
        // The config var wins; an __init__.py with code is the settings.
        let o = BuildOptions {
            settings_module: Some("mysite.settings.dev".into()),
            ..opts()
        };
        assert_eq!(
            detect(d.path(), &o).unwrap().settings_module,
            "mysite.settings.dev"
        );
        let d = pkg(&[
            (
                "mysite/settings/__init__.py",
                "\"\"\"Doc.\"\"\"\nfrom .base import *\n",
            ),
            ("mysite/settings/dev.py", ""),
        ]);
        assert_eq!(
            detect(d.path(), &opts()).unwrap().settings_module,
            "mysite.settings"
        );
        assert!(!has_code(
            "\"\"\"Only a\ndocstring.\"\"\"\n# and a comment\n"
        ));
    }

    #[test]
    fn a_project_without_manage_py_is_found_through_wsgi_py() {
        let plan = detect(&fixture("uv-no-manage-py"), &opts()).unwrap();
        assert_eq!(plan.project_dir, "");
        assert!(!plan.has_manage_py);
        assert_eq!(plan.settings_module, "mysite.settings");
        assert!(
            plan.notes
                .iter()
                .any(|n| n == "Settings mysite.settings (from mysite/wsgi.py)"),
            "{:?}",
            plan.notes
        );
        let files = code_files(&plan);
        let manage = files
            .iter()
            .find(|f| f.0 == "app/manage.py")
            .expect("manage.py shipped");
        assert!(String::from_utf8_lossy(&manage.1).contains("execute_from_command_line"));
        // In a subfolder; two at the same depth are refused; a wsgi.py that is not Django's is no project.
        let wsgi = "from django.core.wsgi import get_wsgi_application\napplication = get_wsgi_application()\n";
        let d = tree(&[
            ("src/site/wsgi.py", wsgi),
            ("src/site/settings.py", ""),
            ("requirements.txt", "django"),
        ]);
        let plan = detect(d.path(), &opts()).unwrap();
        assert_eq!(
            (plan.project_dir.as_str(), plan.settings_module.as_str()),
            ("src", "site.settings")
        );
        assert!(code_files(&plan).iter().any(|f| f.0 == "app/src/manage.py"));
        let d = tree(&[("a/x/wsgi.py", wsgi), ("b/y/wsgi.py", wsgi)]);
        let err = detect(d.path(), &opts()).unwrap_err();
        assert!(
            err.to_string().contains("a/x/wsgi.py, b/y/wsgi.py"),
            "{err}"
        );
        let d = tree(&[("tools/wsgi.py", "print('not django')\n")]);
        assert!(matches!(
            detect(d.path(), &opts()),
            Err(DetectError::NoProject)
        ));
    }

    #[test]
    fn collectstatic_can_be_disabled_and_its_failure_names_the_way_out() {
        let d = project("", &[]);
        let plan = detect(d.path(), &opts()).unwrap();
        assert_eq!(
            run_settings(&plan).build_cmd,
            ["sh", "/paas/collectstatic.sh"]
        );
        assert!(INSPECT_HELPER.contains("print(\"-----> collectstatic failed (the error is above): fix it, or skip the step with 'paas config:set DISABLE_COLLECTSTATIC=1'"));
        let config: BTreeMap<String, String> = [
            ("DISABLE_COLLECTSTATIC", "1"),
            ("PAAS_DEPENDENCIES", " poetry "),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let v = BuildVars::from_config_vars(&config);
        assert_eq!(
            v,
            BuildVars {
                dependencies: Some("poetry".into()),
                disable_collectstatic: true,
                ..BuildVars::default()
            }
        );
        for off in ["0", "false", "OFF", ""] {
            let c: BTreeMap<String, String> =
                [("DISABLE_COLLECTSTATIC".to_string(), off.to_string())].into();
            assert!(
                !BuildVars::from_config_vars(&c).disable_collectstatic,
                "{off}"
            );
        }
        let plan = detect_with(
            d.path(),
            &opts(),
            &BuildVars {
                disable_collectstatic: true,
                ..BuildVars::default()
            },
        )
        .unwrap();
        assert_eq!(
            run_settings(&plan).build_cmd,
            ["sh", "/paas/collectstatic.sh", "--skip"]
        );
        assert!(COLLECTSTATIC.contains("python /paas/paas_inspect.py build /paas ${1:+\"$1\"}"));
        assert!(plan
            .notes
            .iter()
            .any(|n| n == "collectstatic skipped: the DISABLE_COLLECTSTATIC config var is set"));
    }

    // ---- v4: what the project says about itself (issue 10) ----

    fn notes_have(plan: &BuildPlan, want: &str) {
        assert!(
            plan.notes.iter().any(|n| n == want),
            "no note {want:?} in {:#?}",
            plan.notes
        );
    }

    #[test]
    fn python_comes_from_the_projects_own_dockerfile_and_ci_within_djangos_support() {
        // Django 4.2.3 supports 3.8–3.11 (3.12 only from 4.2.8); the project's Dockerfile runs 3.11.
        let d = project(
            "",
            &[
                (
                    "requirements.txt",
                    "Django==4.2.3\npsycopg2-binary==2.9.6\n",
                ),
                (
                    "Dockerfile",
                    "FROM python:3.11-slim-bookworm\nENV PYTHONUNBUFFERED=1\n",
                ),
            ],
        );
        let plan = detect(d.path(), &opts()).unwrap();
        assert_eq!(plan.python_version, "3.11");
        notes_have(&plan, "Python 3.11 (from FROM python:3.11 in Dockerfile, which Django 4.2.3 supports (3.8 to 3.11); pin another with .python-version)");
        assert!(!plan.native.needs_build_stage(), "{:?}", plan.native);
        // Without the Dockerfile: the newest Python 4.2.3 supports, not 4.2's newest.
        std::fs::remove_file(d.path().join("Dockerfile")).unwrap();
        let plan = detect(d.path(), &opts()).unwrap();
        assert_eq!(plan.python_version, "3.11");
        for (django, want) in [
            ("4.2.8", "3.12"),
            ("5.1.2", "3.12"),
            ("5.1.3", "3.13"),
            ("5.2.8", "3.14"),
            ("2.2.28", "3.9"),
        ] {
            let d = project("", &[("requirements.txt", &format!("Django=={django}\n"))]);
            assert_eq!(
                detect(d.path(), &opts()).unwrap().python_version,
                want,
                "{django}"
            );
        }
        // A Dockerfile Python that Django does not support is ignored, and said so.
        let d = project(
            "",
            &[
                ("requirements.txt", "Django==5.0.4\n"),
                ("docker/Dockerfile", "FROM python:3.8\n"),
            ],
        );
        let plan = detect(d.path(), &opts()).unwrap();
        assert_eq!(plan.python_version, "3.12");
        notes_have(&plan, "FROM python:3.8 in docker/Dockerfile ignored: Django 5.0.4 or requires-python does not allow it");
        // CI: the newest of a matrix Django supports.
        let d = project(
            "",
            &[
                ("requirements.txt", "Django==5.0.4\n"),
                (".github/workflows/test.yml", "jobs:\n  t:\n    strategy:\n      matrix:\n        python-version: ['3.10', '3.11', '3.12', '3.13']\n"),
            ],
        );
        let plan = detect(d.path(), &opts()).unwrap();
        assert_eq!(plan.python_version, "3.12");
        notes_have(&plan, "Python 3.12 (from python-version 3.12 in .github/workflows/test.yml, which Django 5.0.4 supports (3.10 to 3.12); pin another with .python-version)");
        // The documented order: .tool-versions before the Dockerfile; .python-version before both.
        let d = project(
            "",
            &[
                ("requirements.txt", "Django==4.2.3\n"),
                (".tool-versions", "nodejs 20.1.0\npython 3.10.4\n"),
                ("Dockerfile", "FROM python:3.11\n"),
            ],
        );
        let plan = detect(d.path(), &opts()).unwrap();
        assert_eq!(plan.python_version, "3.10");
        notes_have(&plan, "Python 3.10 (from .tool-versions)");
        std::fs::write(d.path().join(".python-version"), "3.12\n").unwrap();
        let plan = detect(d.path(), &opts()).unwrap();
        assert_eq!(plan.python_version, "3.12");
        notes_have(&plan, "warning: Django 4.2.3 supports Python 3.8 to 3.11, not 3.12: the build may fail (pin a supported Python, or upgrade Django)");
        // …and then psycopg2-binary 2.9.6 has no 3.12 wheel: it compiles like psycopg2.
        std::fs::write(
            d.path().join("requirements.txt"),
            "Django==4.2.3\npsycopg2-binary==2.9.6\n",
        )
        .unwrap();
        let plan = detect(d.path(), &opts()).unwrap();
        assert!(plan.native.needs_build_stage());
        assert_eq!(plan.native.build_packages, ["libpq-dev"]);
        assert_eq!(plan.native.runtime_packages, ["libpq5"]);
        notes_have(&plan, "psycopg2-binary 2.9.6 has no wheel for Python 3.12: pip builds it from source, like psycopg2");
        notes_have(&plan, "psycopg2-binary compiled in a build stage (gcc, libpq-dev); the app's image gets only libpq5");
        assert!(render_dockerfile(&plan).contains(" AS build\n"));
    }

    #[test]
    fn a_django_too_old_for_every_python_is_refused_before_any_install() {
        for (req, shown) in [
            ("Django==1.11.29\n", "1.11.29"),
            ("django==2.1.15 ; python_version < '3.8'\n", "2.1.15"),
        ] {
            let d = project("", &[("requirements.txt", req)]);
            let err = detect(d.path(), &opts()).unwrap_err();
            let supports = statements::django_support(shown).unwrap().shown();
            assert_eq!(
                err.to_string(),
                format!("Django {shown} supports Python {supports} only, older than every Python paas builds with (3.8 to 3.14): upgrade Django to 4.2 LTS or later in your dependencies and push again.")
            );
        }
        // The PYTHON_VERSION config var is the way around it.
        let d = project("", &[("requirements.txt", "Django==1.11.29\n")]);
        let o = BuildOptions {
            python_version: Some("3.7".into()),
            ..opts()
        };
        assert_eq!(detect(d.path(), &o).unwrap().python_version, "3.7");
        // Django 2.2.28 runs on 3.9: built.
        let d = project("", &[("requirements.txt", "Django==2.2.28\n")]);
        detect(d.path(), &opts()).unwrap();
    }

    /// manage.py defaults to development settings; the deploy manifests say production.
    fn settings_package_project(manage_default: &str, extra: &[(&str, &str)]) -> tempfile::TempDir {
        let manage = format!(
            "import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', '{manage_default}')\n"
        );
        let mut files: Vec<(&str, &str)> = vec![
            ("manage.py", &manage),
            ("mysite/settings.py", ""),
            ("mysite/settings/__init__.py", ""),
            (
                "mysite/settings/base.py",
                "WSGI_APPLICATION = 'mysite.wsgi.application'\n",
            ),
            ("mysite/settings/dev.py", "from .base import *\n"),
            ("mysite/settings/production.py", "from .base import *\n"),
            ("mysite/settings/staging.py", "from .base import *\n"),
        ];
        files.extend_from_slice(extra);
        let d = project("", &files);
        std::fs::remove_file(d.path().join("mysite/settings.py")).unwrap();
        d
    }

    #[test]
    fn deploy_manifests_choose_production_settings_over_a_development_default() {
        let d = settings_package_project(
            "mysite.settings.dev",
            &[(
                "Dockerfile",
                "FROM python:3.11\nENV DJANGO_SETTINGS_MODULE=mysite.settings.production\n",
            )],
        );
        let plan = detect(d.path(), &opts()).unwrap();
        assert_eq!(plan.settings_module, "mysite.settings.production");
        notes_have(&plan, "Settings mysite.settings.production (from DJANGO_SETTINGS_MODULE in Dockerfile, a deploy manifest, over manage.py's default mysite.settings.dev)");
        // The config var still wins.
        let o = BuildOptions {
            settings_module: Some("mysite.settings.staging".into()),
            ..opts()
        };
        assert_eq!(
            detect(d.path(), &o).unwrap().settings_module,
            "mysite.settings.staging"
        );
        // A manifest naming a module the project does not have is no decision.
        let d = settings_package_project(
            "mysite.settings",
            &[
                ("mysite/settings/production.py", ""),
                ("fly.toml", "[env]\n  DJANGO_SETTINGS_MODULE = 'other.settings.prod'\n"),
                ("render.yaml", "services:\n  - envVars:\n      - key: DJANGO_SETTINGS_MODULE\n        value: mysite.settings.staging\n"),
                ("docker-compose.yml", "services:\n  web:\n    environment:\n      - DJANGO_SETTINGS_MODULE=mysite.settings.dev\n"),
            ],
        );
        std::fs::remove_file(d.path().join("mysite/settings/production.py")).unwrap();
        let plan = detect(d.path(), &opts()).unwrap();
        assert_eq!(plan.settings_module, "mysite.settings.staging");
        notes_have(&plan, "Settings mysite.settings.staging (from DJANGO_SETTINGS_MODULE in render.yaml, a deploy manifest, over manage.py's default mysite.settings)");
        // A development default without manifests: its package's production module.
        let d = settings_package_project("mysite.settings.dev", &[]);
        let plan = detect(d.path(), &opts()).unwrap();
        assert_eq!(plan.settings_module, "mysite.settings.production");
        notes_have(&plan, "Settings mysite.settings.production (from beside mysite.settings.dev, the development default of manage.py)");
        // Nothing decides: the one-line fix.
        let d = settings_package_project(
            "mysite.settings",
            &[(
                ".do/app.yaml",
                "envs:\n  - key: DJANGO_SETTINGS_MODULE\n    value: mysite.settings.dev\n",
            )],
        );
        std::fs::remove_file(d.path().join("mysite/settings/production.py")).unwrap();
        let err = detect(d.path(), &opts()).unwrap_err();
        assert!(
            matches!(err, DetectError::AmbiguousSettingsPackage { .. }),
            "{err}"
        );
        std::fs::write(
            d.path().join(".do/app.yaml"),
            "envs:\n  - key: DJANGO_SETTINGS_MODULE\n    value: mysite.settings.staging\n",
        )
        .unwrap();
        assert_eq!(
            detect(d.path(), &opts()).unwrap().settings_module,
            "mysite.settings.staging"
        );
    }

    #[test]
    fn static_files_built_by_node_but_not_pushed_are_refused() {
        let settings = "from pathlib import Path\nBASE_DIR = Path(__file__).resolve().parent.parent\nWSGI_APPLICATION = 'mysite.wsgi.application'\nSTATICFILES_DIRS = [BASE_DIR / 'frontend' / 'dist']\n";
        let d = project(
            "",
            &[
                ("mysite/settings.py", settings),
                ("package.json", r#"{"scripts": {"build": "vite build"}}"#),
                ("frontend/src/main.js", "console.log(1)\n"),
            ],
        );
        let err = detect(d.path(), &opts()).unwrap_err();
        assert_eq!(err.to_string(), "mysite/settings.py lists frontend/dist in STATICFILES_DIRS, but frontend/dist is not in the pushed code: it is built by `npm run build` (package.json), and paas does not run Node, so commit the built files, or skip collectstatic with `paas config:set DISABLE_COLLECTSTATIC=1` and serve static files another way.");
        // The documented way out, and committed build output, both pass.
        let off = BuildVars {
            disable_collectstatic: true,
            ..BuildVars::default()
        };
        detect_with(d.path(), &opts(), &off).unwrap();
        std::fs::create_dir_all(d.path().join("frontend/dist")).unwrap();
        detect(d.path(), &opts()).unwrap();
        // Without a Node build, a missing folder is Django's business (a warning).
        std::fs::remove_dir(d.path().join("frontend/dist")).unwrap();
        std::fs::write(
            d.path().join("package.json"),
            r#"{"scripts": {"lint": "eslint ."}}"#,
        )
        .unwrap();
        detect(d.path(), &opts()).unwrap();
    }

    #[test]
    fn an_exported_requirements_txt_that_agrees_with_its_lock_is_no_conflict() {
        let lock = r#"{"_meta": {"requires": {"python_version": "3.11"}}, "default": {
            "django": {"version": "==4.2.16", "markers": "python_version >= '3.8'"},
            "asgiref": {"version": "==3.8.1"}}, "develop": {"pytest": {"version": "==8.3.3"}}}"#;
        let exported = "-i https://pypi.org/simple\nasgiref==3.8.1\ndjango==4.2.16 ; python_version >= '3.8'\n";
        let d = with_deps(&[
            ("Pipfile", "[packages]\ndjango = \"*\"\n"),
            ("Pipfile.lock", lock),
            ("requirements.txt", exported),
        ]);
        let plan = detect(d.path(), &opts()).unwrap();
        assert_eq!(generated(&plan).1, "Pipfile.lock");
        notes_have(&plan, "requirements.txt and Pipfile.lock name the same 2 pinned packages: installing from Pipfile.lock");
        // An export that left a package of the lock out (an extra, a
        // group) still agrees: the lock is installed, and says what it adds.
        std::fs::write(d.path().join("requirements.txt"), "django==4.2.16\n").unwrap();
        let plan = detect(d.path(), &opts()).unwrap();
        assert_eq!(generated(&plan).1, "Pipfile.lock");
        notes_have(&plan, "requirements.txt and Pipfile.lock name the same 1 pinned packages (the lock adds asgiref): installing from Pipfile.lock");
        // Different pins, or a package the lock lacks, are still two sources.
        for other in [
            "asgiref==3.8.1\ndjango==4.2.15\n",
            "asgiref==3.8.1\ndjango==4.2.16\nwhitenoise==6.8.2\n",
        ] {
            std::fs::write(d.path().join("requirements.txt"), other).unwrap();
            let err = detect(d.path(), &opts()).unwrap_err();
            assert!(
                matches!(err, DetectError::AmbiguousDependencies { .. }),
                "{other}: {err}"
            );
        }
    }

    #[test]
    fn every_blocker_detection_sees_is_reported_at_once() {
        let d = with_deps(&[
            ("manage.py", "import os\n"),
            (
                "mysite/settings.py",
                "WSGI_APPLICATION = 'mysite.wsgi.application'\n",
            ),
            ("other/settings.py", ""),
            ("requirements.txt", "Django==4.2.16\n"),
            ("poetry.lock", ""),
        ]);
        let bad = BuildVars {
            runtime_packages: Some("libpq5; x".into()),
            ..BuildVars::default()
        };
        let err = detect_with(d.path(), &opts(), &bad).unwrap_err();
        let DetectError::Several(all) = &err else {
            panic!("several blockers expected: {err}")
        };
        let kinds: Vec<String> = all.iter().map(|e| e.to_string()).collect();
        assert_eq!(kinds.len(), 3, "{kinds:#?}");
        assert!(
            kinds[0]
                .starts_with("Found several settings modules (mysite.settings, other.settings)"),
            "{kinds:#?}"
        );
        assert!(
            kinds[1].starts_with("Found requirements.txt and poetry.lock"),
            "{kinds:#?}"
        );
        assert!(
            kinds[2].starts_with("The PAAS_RUNTIME_PACKAGES config var"),
            "{kinds:#?}"
        );
        // Without the config var: the other two.
        let err = detect(d.path(), &opts()).unwrap_err();
        assert!(
            matches!(err, DetectError::Several(ref v) if v.len() == 2),
            "{err}"
        );
    }

    #[test]
    fn the_public_index_named_by_requirements_gives_way_to_the_builds_index() {
        let d = project(
            "",
            &[
                ("requirements.txt", "-i https://pypi.python.org/simple\n-r requirements/base.txt\n"),
                ("requirements/base.txt", "--index-url=https://pypi.org/simple/\n--extra-index-url https://deploy:s3cret@pkgs.example.com/simple\nDjango==5.1.3\n"),
            ],
        );
        let plan = detect(d.path(), &opts()).unwrap();
        let Dependencies::Requirements {
            rewritten,
            includes,
            ..
        } = &plan.dependencies
        else {
            panic!("{:?}", plan.dependencies)
        };
        assert_eq!(includes, &["requirements/base.txt"]);
        let files: Vec<&str> = rewritten.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(files, ["requirements.txt", "requirements/base.txt"]);
        assert_eq!(
            rewritten[1].1,
            "# paas: the build's package index serves the public index: --index-url=https://pypi.org/simple/\n--extra-index-url https://deploy:s3cret@pkgs.example.com/simple\nDjango==5.1.3\n"
        );
        notes_have(&plan, "requirements.txt names the public package index (--index-url https://pypi.python.org/simple): installing from the build's configured index instead, which serves the same packages");
        notes_have(&plan, "requirements/base.txt names the package index https://deploy:***@pkgs.example.com/simple: pip uses it as written (--extra-index-url)");
        let file = render_dockerfile(&plan);
        assert!(
            file.contains("COPY .paas/requirements/requirements.txt /paas/deps/requirements.txt\n"),
            "{file}"
        );
        assert!(
            file.contains(
                "COPY .paas/requirements/requirements/base.txt /paas/deps/requirements/base.txt\n"
            ),
            "{file}"
        );
        let ctx = dependency_files(&plan, d.path());
        assert!(
            ctx.contains(&".paas/requirements/requirements/base.txt".to_string()),
            "{ctx:?}"
        );
        // A private index alone: nothing rewritten.
        let d = project(
            "",
            &[(
                "requirements.txt",
                "-i https://pkgs.example.com/simple\nDjango\n",
            )],
        );
        let plan = detect(d.path(), &opts()).unwrap();
        assert!(
            matches!(&plan.dependencies, Dependencies::Requirements { rewritten, .. } if rewritten.is_empty())
        );
        assert!(render_dockerfile(&plan)
            .contains("COPY requirements.txt /paas/deps/requirements.txt\n"));
    }
}

#[cfg(test)]
mod props {
    //! Property tests: what a push's files say to the buildpack —
    //! requirement lines and includes, Pipfile / pyproject / lock files,
    //! Python versions, manage.py — and the Dockerfile they end up in.

    use super::*;
    use crate::fuzz::{check, ensure};
    use proptest::prelude::*;

    fn pkg_name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9]([A-Za-z0-9._-]{0,8}[A-Za-z0-9])?"
    }

    fn requirement_line() -> impl Strategy<Value = String> {
        prop_oneof![
            (
                "[ \t]{0,2}",
                pkg_name(),
                "(\\[[a-z,]{1,8}\\])?",
                "( ?(==|>=|<|~=|!=) ?[0-9][0-9.]{0,5})?",
                "( ; python_version [<>]= \"3\\.[0-9]+\")?",
                "( #.{0,6})?"
            )
                .prop_map(|(a, n, e, v, m, c)| format!("{a}{n}{e}{v}{m}{c}")),
            any::<String>(),
        ]
    }

    #[test]
    fn fuzz_requirement_name() {
        check("requirement_name", 1024, requirement_line(), |line| {
            let Some(name) = deps::requirement_name(&line) else {
                return Ok(());
            };
            ensure(
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                || format!("{line:?} names the package {name:?}"),
            )?;
            ensure(
                deps::requirement_name(&name).as_deref() == Some(name.as_str()),
                || format!("{name:?} is not its own name"),
            )?;
            ensure(deps::normalize_name(&name) == name, || {
                format!("{name:?} is not normalised")
            })?;
            // The name is the line's own, as written, in another case or spelling.
            let start = line.trim_start();
            ensure(
                start.len() >= name.len() && deps::normalize_name(&start[..name.len()]) == name,
                || format!("{line:?} does not start with {name:?}"),
            )?;
            // The pin of the name, if any, is read without a panic and is a version.
            if let Some(v) = pinned_version(std::slice::from_ref(&line), &name) {
                ensure(
                    !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'),
                    || format!("{line:?} pins {name} to {v:?}"),
                )?;
            }
            Ok(())
        });
    }

    #[test]
    fn fuzz_include_target() {
        let line = prop_oneof![
            (
                prop::sample::select(vec![
                    "-r",
                    "-c",
                    "--requirement",
                    "--constraint",
                    "-e",
                    "--r",
                    "-rr"
                ]),
                prop::sample::select(vec!["", " ", "=", "\t", "  "]),
                "[a-z./ -]{0,12}",
            )
                .prop_map(|(f, sep, v)| format!("{f}{sep}{v}")),
            any::<String>(),
        ];
        check("include_target", 1024, line, |line| {
            let Some(target) = include_target(&line) else {
                return Ok(());
            };
            ensure(!target.is_empty() && target.trim() == target, || {
                format!("{line:?} includes {target:?}")
            })?;
            ensure(line.trim_end().ends_with(target), || {
                format!("{line:?} does not end in {target:?}")
            })?;
            ensure(
                ["-r", "-c", "--requirement", "--constraint"]
                    .iter()
                    .any(|f| line.starts_with(f)),
                || format!("{line:?} is no include, yet names {target:?}"),
            )
        });
    }

    #[test]
    fn fuzz_normalize_path() {
        let part = prop::sample::select(vec!["a", "b", "..", ".", "", "/", "c.txt", "é"]);
        let path = prop::collection::vec(part, 0..7).prop_map(|p| p.join("/"));
        check("normalize_path", 1024, path, |p| {
            let Some(n) = normalize(Path::new(&p)) else {
                return Ok(());
            };
            let root = Path::new("/srv/checkout");
            let joined = root.join(&n);
            ensure(
                !p.starts_with('/')
                    && joined.starts_with(root)
                    && Path::new(&n)
                        .components()
                        .all(|c| matches!(c, std::path::Component::Normal(_))),
                || format!("{p:?} normalises to {n:?}, which leaves the checkout"),
            )
        });
    }

    /// A checkout with requirement files that include each other, files
    /// outside it, links and odd names.
    #[test]
    fn fuzz_read_requirements() {
        let line = prop_oneof![
            prop::sample::select(vec![
                "-r base.txt",
                "-r ../outside.txt",
                "-r OUTSIDE_ABS",
                "-r link.txt",
                "-r linkdir/x.txt",
                "-r sub/../base.txt",
                "-rsub/dev.txt",
                "--requirement=sub/dev.txt",
                "-c sub/../../outside.txt",
                "-r requirements.txt",
                "-r a b.txt",
                "-r sub",
                "-r .",
                "-r https://example.com/r.txt",
                "-e .",
                "django==4.2",
                "requests # note",
                "# comment",
                "",
            ])
            .prop_map(str::to_string),
            requirement_line(),
        ];
        let files = prop::collection::vec(prop::collection::vec(line, 0..5), 3);
        check("read_requirements", 128, files, |files| {
            let sandbox = tempfile::tempdir().unwrap();
            let s = sandbox.path();
            let root = s.join("checkout");
            std::fs::create_dir_all(root.join("sub")).unwrap();
            std::fs::write(s.join("outside.txt"), "OUTSIDE==1\n").unwrap();
            std::fs::create_dir(s.join("dir")).unwrap();
            std::fs::write(s.join("dir/x.txt"), "OUTSIDE==2\n").unwrap();
            std::fs::write(root.join("a b.txt"), "spaced==1\n").unwrap();
            std::os::unix::fs::symlink(s.join("outside.txt"), root.join("link.txt")).unwrap();
            std::os::unix::fs::symlink(s.join("dir"), root.join("linkdir")).unwrap();
            let abs = s.join("outside.txt").display().to_string();
            for (name, lines) in ["requirements.txt", "base.txt", "sub/dev.txt"]
                .iter()
                .zip(&files)
            {
                let text = lines.join("\n").replace("OUTSIDE_ABS", &abs);
                std::fs::write(root.join(name), text).unwrap();
            }
            let Ok((includes, lines, _)) =
                read_requirements(&root, "requirements.txt", &mut Vec::new())
            else {
                return Ok(());
            };
            ensure(!lines.iter().any(|l| l.contains("OUTSIDE")), || {
                format!("lines from outside the checkout were read: {lines:?}")
            })?;
            for inc in &includes {
                ensure(
                    check_safe_path(inc).is_ok()
                        && is_file_below(&root, inc)
                        && Path::new(inc)
                            .components()
                            .all(|c| matches!(c, std::path::Component::Normal(_))),
                    || format!("{inc:?} was included"),
                )?;
            }
            Ok(())
        });
    }

    fn version_spec() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_string()),
            Just("".to_string()),
            "(==|>=|~=)[0-9]\\.[0-9]{1,2}",
            Just("==1.0\n--extra-index-url http://x".to_string()),
            Just(">=1 ; os_name == 'nt'\r\nother".to_string()),
            any::<String>(),
        ]
    }

    /// Every line is one requirement, of one of the packages the file names.
    fn one_per_package(
        lines: &[String],
        names: &[String],
        what: &str,
    ) -> Result<(), TestCaseError> {
        for l in lines {
            ensure(!l.contains(['\n', '\r']), || {
                format!("{what}: the requirement {l:?} spans lines")
            })?;
            let n = deps::requirement_name(l);
            ensure(n.as_ref().is_some_and(|n| names.contains(n)), || {
                format!("{what}: {l:?} is not one of the packages {names:?}")
            })?;
        }
        Ok(())
    }

    #[test]
    fn fuzz_pipfile() {
        let input = prop::collection::btree_map(pkg_name(), (version_spec(), any::<bool>()), 0..5);
        check("pipfile", 256, input, |packages| {
            let mut table = toml::Table::new();
            for (name, (spec, as_table)) in &packages {
                let v = if *as_table {
                    let mut t = toml::Table::new();
                    t.insert("version".into(), spec.clone().into());
                    t.insert("markers".into(), "python_version >= '3.8'".into());
                    toml::Value::Table(t)
                } else {
                    spec.clone().into()
                };
                table.insert(name.clone(), v);
            }
            let mut doc = toml::Table::new();
            doc.insert("packages".into(), toml::Value::Table(table));
            let text = toml::to_string(&doc).unwrap();
            let names: Vec<String> = packages.keys().map(|n| deps::normalize_name(n)).collect();
            if let Ok(r) = deps::pipfile(&text).and_then(one_line_each) {
                one_per_package(&r.lines, &names, "Pipfile")?;
            }
            // The same packages as a Pipfile.lock.
            let lock = serde_json::json!({
                "default": packages.iter().map(|(n, (spec, _))| (n.clone(), serde_json::json!({"version": spec, "markers": "os_name == 'posix'"}))).collect::<serde_json::Map<_, _>>(),
            });
            if let Ok(r) = deps::pipfile_lock(&lock.to_string()).and_then(one_line_each) {
                one_per_package(&r.lines, &names, "Pipfile.lock")?;
            }
            Ok(())
        });
    }

    #[test]
    fn fuzz_pyproject_and_locks() {
        let input = prop::collection::vec((pkg_name(), version_spec()), 1..5);
        check("pyproject_and_locks", 256, input, |packages| {
            let names: Vec<String> = packages
                .iter()
                .map(|(n, _)| deps::normalize_name(n))
                .collect();
            // A PEP 508 string names its package itself (`a` + `A` is `aA`).
            let pep508: Vec<String> = packages
                .iter()
                .filter_map(|(n, v)| deps::requirement_name(&format!("{n}{v}")))
                .collect();
            // pyproject.toml: [project].dependencies, as the generated file's lines.
            let mut project = toml::Table::new();
            let list: Vec<toml::Value> = packages
                .iter()
                .map(|(n, v)| format!("{n}{v}").into())
                .collect();
            project.insert("dependencies".into(), toml::Value::Array(list));
            let mut doc = toml::Table::new();
            doc.insert("project".into(), toml::Value::Table(project));
            let py = deps::pyproject(&toml::to_string(&doc).unwrap());
            if let Ok(py) = &py {
                let lines = deps::Resolved {
                    lines: py.dependencies.clone(),
                    ..deps::Resolved::default()
                };
                if let Ok(r) = one_line_each(lines) {
                    one_per_package(&r.lines, &pep508, "pyproject.toml")?;
                }
            }
            // poetry.lock (format 2.1: groups) and uv.lock.
            let mut poetry = String::new();
            let mut uv = String::from(
                "version = 1\n[[package]]\nname = \"site\"\nversion = \"0\"\nsource = { virtual = \".\" }\ndependencies = [",
            );
            for (n, _) in &packages {
                uv.push_str(&format!("{{ name = {:?} }}, ", n));
            }
            uv.push_str("]\n");
            for (n, v) in &packages {
                let v = toml::Value::String(v.clone());
                poetry.push_str(&format!(
                    "[[package]]\nname = {n:?}\nversion = {v}\ngroups = [\"main\"]\n"
                ));
                uv.push_str(&format!("[[package]]\nname = {n:?}\nversion = {v}\nsource = {{ registry = \"https://pypi.example\" }}\n"));
            }
            if let Ok(r) = deps::poetry_lock(&poetry, py.as_ref().ok()).and_then(one_line_each) {
                one_per_package(&r.lines, &names, "poetry.lock")?;
            }
            if let Ok(r) = deps::uv_lock(&uv).and_then(one_line_each) {
                one_per_package(&r.lines, &names, "uv.lock")?;
            }
            Ok(())
        });
    }

    #[test]
    fn fuzz_dependency_files_text() {
        let text = prop_oneof![
            any::<String>(),
            "\\[\\[package\\]\\]\nname = \"[a-z]{1,4}\"\n(version = \"[0-9.]{1,4}\"\n)?(source = \\{ (editable|virtual|git|url) = \"[.a-z:/#?=]{0,10}\" \\}\n)?(dependencies = \\[\\{ name = \"[a-z]{1,4}\"( , extra = \\[\"[a-z]\"\\])? \\}\\]\n)?(groups = \\[\"main\"\\]\n)?",
            "\\[(packages|requires|project|tool\\.poetry\\.dependencies)\\]\n[a-z]{1,4} = (\"[^\"\n]{0,6}\"|\\{ version = \"[0-9]\" \\}|\\[\\]|1)\n",
        ];
        check("dependency_files_text", 512, text, |text| {
            // Whatever a push holds: an answer or a reason, never a panic.
            let py = deps::pyproject(&text).ok();
            let _ = deps::pipfile(&text);
            let _ = deps::pipfile_lock(&text);
            let _ = deps::poetry_lock(&text, py.as_ref());
            let _ = deps::uv_lock(&text);
            Ok(())
        });
    }

    #[test]
    fn fuzz_python_version() {
        let value = prop_oneof![
            (
                0u32..40,
                prop::option::of(0u32..30),
                "(python-|python|)",
                "[ \t]{0,2}"
            )
                .prop_map(|(m, p, pre, pad)| match p {
                    Some(p) => format!("{pad}{pre}3.{m}.{p}{pad}"),
                    None => format!("{pad}{pre}3.{m}{pad}"),
                }),
            any::<String>(),
            "[0-9.a-z-]{0,12}",
        ];
        check("python_version", 1024, value, |value| {
            let Some(v) = parse_python_version(&value) else {
                return Ok(());
            };
            let minor = v.strip_prefix("3.");
            ensure(
                minor.is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit())),
                || format!("{value:?} reads as Python {v:?}"),
            )?;
            // It names an image tag.
            let image = "python:{version}-slim".replace("{version}", &v);
            ensure(
                image
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b":.-".contains(&b)),
                || format!("{value:?} makes the image {image:?}"),
            )?;
            ensure(value.contains(&v), || {
                format!("{value:?} reads as {v:?}, which it does not say")
            })
        });
    }

    #[test]
    fn fuzz_python_allows() {
        let clause = (
            prop::sample::select(vec![">=", "<", "==", "!=", "~=", "<=", ">"]),
            3u32..4,
            prop::option::of(5u32..16),
            prop::sample::select(vec!["", ".*", ".0", ".4"]),
            "[ ]{0,1}",
        );
        let spec = (prop::collection::vec(clause, 1..4), 8u32..15);
        check("python_allows", 1024, spec, |(clauses, minor)| {
            let texts: Vec<String> = clauses
                .iter()
                .map(|(op, maj, min, tail, sp)| match min {
                    Some(m) => format!("{op}{sp}{maj}.{m}{tail}"),
                    None => format!("{op}{sp}{maj}"),
                })
                .collect();
            let spec = texts.join(",");
            let all = python_allows(&spec, minor);
            // A conjunction holds when each clause does.
            let each: Option<Vec<bool>> = texts.iter().map(|c| python_allows(c, minor)).collect();
            ensure(all == each.as_ref().map(|e| e.iter().all(|b| *b)), || {
                format!("{spec:?} for 3.{minor}: {all:?}, clause by clause {each:?}")
            })?;
            // The clauses whose meaning is plain, with `3.M` or `3.M.*`.
            for ((op, _, min, tail, _), text) in clauses.iter().zip(&texts) {
                let (Some(m), "" | ".*") = (min, *tail) else {
                    continue;
                };
                let want = match (*op, *tail) {
                    (">=", "") => minor >= *m,
                    ("<", "") => minor < *m,
                    ("<=", _) => minor <= *m,
                    ("==", _) => minor == *m,
                    ("!=", _) => minor != *m,
                    ("~=", "") => minor >= *m,
                    _ => continue,
                };
                let got = python_allows(text, minor);
                ensure(got == Some(want), || {
                    format!("{text:?} for 3.{minor}: {got:?}, not {want}")
                })?;
            }
            Ok(())
        });
        check("python_allows_text", 1024, any::<String>(), |spec| {
            let _ = python_allows(&spec, 11);
            Ok(())
        });
    }

    #[test]
    fn fuzz_settings_module() {
        let noise = prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec![
                    "#!/usr/bin/env python",
                    "\"\"\"Django's command-line utility; sets DJANGO_SETTINGS_MODULE below.\"\"\"",
                    "import os, sys",
                    "# DJANGO_SETTINGS_MODULE 'commented.out'",
                    "print(DJANGO_SETTINGS_MODULE)",
                    "def main():",
                    "    from django.core.management import execute_from_command_line",
                    "",
                ])
                .prop_map(str::to_string),
                "[^\n]{0,20}".prop_filter("not the key", |l| !l.contains("DJANGO_SETTINGS_MODULE")),
            ],
            0..5,
        );
        let module = "[a-z_][a-z0-9_]{0,6}(\\.[a-z_][a-z0-9_]{0,6}){0,2}";
        let style = prop::sample::select(vec![
            "os.environ.setdefault(\"DJANGO_SETTINGS_MODULE\", \"{}\")",
            "    os.environ.setdefault('DJANGO_SETTINGS_MODULE', '{}')",
            "os.environ['DJANGO_SETTINGS_MODULE'] = '{}'",
            "os.environ[\"DJANGO_SETTINGS_MODULE\"]=\"{}\"",
        ]);
        check(
            "settings_module",
            512,
            (noise, module, style),
            |(noise, module, style)| {
                let text = format!("{}\n{}\n", noise.join("\n"), style.replace("{}", &module));
                let got = parse_settings_module(&text);
                ensure(got.as_deref() == Some(module.as_str()), || {
                    format!("manage.py {text:?} names the settings {got:?}, not {module:?}")
                })
            },
        );
        check("settings_module_text", 512, any::<String>(), |text| {
            if let Some(m) = parse_settings_module(&text) {
                ensure(!m.contains(['\n', '"', '\'']) && text.contains(&m), || {
                    format!("{text:?} names the settings {m:?}")
                })?;
            }
            Ok(())
        });
    }

    #[test]
    fn fuzz_dotted_paths_and_packages() {
        check("dotted_paths", 1024, any::<String>(), |s| {
            if is_dotted_path(&s) {
                ensure(
                    s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
                        && !s.starts_with('.')
                        && !s.ends_with('.')
                        && !s.contains(".."),
                    || format!("{s:?} passed as a dotted Python path"),
                )?;
            }
            if let Some(pkgs) = native::parse_packages(&s) {
                for p in pkgs {
                    ensure(
                        p.len() >= 2
                            && p.starts_with(|c: char| {
                                c.is_ascii_lowercase() || c.is_ascii_digit()
                            })
                            && p.bytes().all(|b| {
                                b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b)
                            }),
                        || format!("{s:?} passed the Debian package {p:?}"),
                    )?;
                }
            }
            Ok(())
        });
    }

    /// A push's project with names and values a hostile push could pick.
    #[test]
    fn fuzz_dockerfile_from_a_push() {
        let dir = prop::sample::select(vec![
            "", "site", "my site", "a\nRUN x", "src/app", "-x", "é", "a.b",
        ]);
        let module = prop::sample::select(vec!["mysite", "my-site", "a b", "x\nRUN y", "_m"]);
        let wsgi = prop::option::of(prop::sample::select(vec![
            "mysite.wsgi.application",
            "x.y\", \"--bind",
            "a.b c",
            "mysite.wsgi.app\nRUN z",
            "wsgi",
        ]));
        let python = prop::option::of(prop::sample::select(vec![
            "3.12",
            "3.12\nRUN a",
            "python-3.11.4",
            "3.x",
            " 3.13 ",
        ]));
        let req = prop::collection::vec(
            prop::sample::select(vec![
                "django==4.2",
                "-r base.txt",
                "-r a b.txt",
                "-r sub/../base.txt",
                "psycopg[binary]>=3",
                "gunicorn",
                "-r x$(id).txt",
            ]),
            0..4,
        );
        let packages = prop::option::of(prop::sample::select(vec![
            "libpq-dev",
            "a;rm -rf /",
            "gcc, make",
            "$(id)",
        ]));
        let input = (dir, module, wsgi, python, req, packages, any::<bool>());
        check(
            "dockerfile_from_a_push",
            128,
            input,
            |(dir, module, wsgi, python, req, packages, postgres)| {
                let sandbox = tempfile::tempdir().unwrap();
                let root = sandbox.path();
                let put = |rel: String, text: &str| {
                    let p = root.join(rel);
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(p, text).unwrap();
                };
                let at = |f: &str| join_rel(dir, f);
                put(at("manage.py"), &format!("import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', '{module}.settings')\n"));
                let settings = match wsgi {
                    Some(w) => format!("WSGI_APPLICATION = '{w}'\n"),
                    None => String::new(),
                };
                put(at(&format!("{module}/settings.py")), &settings);
                put(
                    at(&format!("{module}/wsgi.py")),
                    "from django.core.wsgi import get_wsgi_application\n",
                );
                put(at(&format!("{module}/__init__.py")), "");
                put("requirements.txt".into(), &req.join("\n"));
                put("base.txt".into(), "django==5.0\n");
                put("a b.txt".into(), "x==1\n");
                put("x$(id).txt".into(), "x==1\n");
                if let Some(v) = python {
                    put(".python-version".into(), v);
                }
                let vars = BuildVars {
                    build_packages: packages.map(str::to_string),
                    postgres,
                    ..BuildVars::default()
                };
                let opts = BuildOptions {
                    image_pattern: "python:{version}-slim".into(),
                    ..BuildOptions::default()
                };
                let Ok(plan) = detect_with(root, &opts, &vars) else {
                    return Ok(());
                };
                let dockerfile = render_dockerfile(&plan);
                const INSTRUCTIONS: &[&str] = &[
                    "FROM",
                    "ENV",
                    "RUN",
                    "COPY",
                    "WORKDIR",
                    "EXPOSE",
                    "ENTRYPOINT",
                    "CMD",
                    "ARG",
                ];
                let mut continued = false;
                for line in dockerfile.lines() {
                    let t = line.trim_start();
                    let ok = continued
                        || t.is_empty()
                        || t.starts_with('#')
                        || INSTRUCTIONS.iter().any(|i| t.starts_with(&format!("{i} ")));
                    ensure(ok, || {
                        format!("the Dockerfile has the line {line:?}:\n{dockerfile}")
                    })?;
                    continued = t.ends_with('\\');
                }
                ensure(
                    !dockerfile.contains('\r')
                        && !dockerfile.contains("$(id)")
                        && !dockerfile.contains("a;rm"),
                    || format!("the push's values reach the Dockerfile:\n{dockerfile}"),
                )?;
                for line in dockerfile.lines() {
                    if let Some(json) = line.strip_prefix("CMD ") {
                        let argv: Result<Vec<String>, _> = serde_json::from_str(json);
                        ensure(argv.as_ref().is_ok_and(|a| a.len() == 6), || {
                            format!("CMD is not the one gunicorn command: {line:?}")
                        })?;
                    }
                }
                Ok(())
            },
        );
    }
}
