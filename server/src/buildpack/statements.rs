//! What a project says about itself outside its Python code: the Python its
//! own Dockerfile or CI runs, the settings module its deploy manifests set,
//! the Node build its static files come from, the package index its
//! requirements name. Plus the product's knowledge these are weighed
//! against: which Pythons each Django release supports, which psycopg2-binary
//! releases ship wheels for which Python.
//!
//! Pure: text in, facts out; the callers in `buildpack.rs` read the files.

/// The Pythons a Django release supports, as `(major, minor)` bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Support {
    pub lo: (u32, u32),
    pub hi: (u32, u32),
}

impl Support {
    pub fn allows(&self, minor: u32) -> bool {
        (3, minor) >= self.lo && (3, minor) <= self.hi
    }

    /// `3.8 to 3.11`, for messages.
    pub fn shown(&self) -> String {
        format!("{}.{} to {}.{}", self.lo.0, self.lo.1, self.hi.0, self.hi.1)
    }
}

/// `4.2.3` → (4, 2, 3); pre-releases (`5.1rc1`, `5.1a1`) count as patch 0.
fn version_parts(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.trim().split('.').map(|p| {
        p.chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse::<u32>()
            .ok()
    });
    let major = it.next()??;
    let minor = it.next().flatten().unwrap_or(0);
    let patch = it.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// The Pythons a Django version supports, at patch level (Django's own
/// "What Python version can I use with Django?" table and release notes:
/// support for a new Python often arrives in a patch release, e.g. 3.12 in
/// 4.2.8). None for a version paas does not know (a future release).
pub fn django_support(django: &str) -> Option<Support> {
    let (major, minor, patch) = version_parts(django)?;
    let s = |lo: (u32, u32), hi: (u32, u32)| Some(Support { lo, hi });
    let from = |p: u32, newer: u32, older: u32| if patch >= p { newer } else { older };
    match (major, minor) {
        (1, 0..=3) => s((2, 4), (2, 7)),
        (1, 4) => s((2, 5), (2, 7)),
        (1, 5 | 6) => s((2, 6), (3, 3)),
        (1, 7) => s((2, 7), (3, 4)),
        (1, 8..=10) => s((2, 7), (3, 5)),
        (1, 11) => s((2, 7), (3, from(17, 7, 6))),
        (2, 0) => s((3, 4), (3, 7)),
        (2, 1) => s((3, 5), (3, 7)),
        (2, 2) => s((3, 5), (3, from(17, 9, from(8, 8, 7)))),
        (3, 0) => s((3, 6), (3, from(11, 9, 8))),
        (3, 1) => s((3, 6), (3, from(3, 9, 8))),
        (3, 2) => s((3, 6), (3, from(9, 10, 9))),
        (4, 0) => s((3, 8), (3, 10)),
        (4, 1) => s((3, 8), (3, from(3, 11, 10))),
        (4, 2) => s((3, 8), (3, from(8, 12, 11))),
        (5, 0) => s((3, 10), (3, 12)),
        (5, 1) => s((3, 10), (3, from(3, 13, 12))),
        (5, 2) => s((3, 10), (3, from(8, 14, 13))),
        (6, 0) => s((3, 12), (3, 14)),
        _ => None,
    }
}

/// The newest Python minor psycopg2-binary `version` ships wheels for; a
/// newer Python makes pip build it from source (it then needs libpq-dev
/// and a compiler, like psycopg2). None for a version paas does not know.
pub fn psycopg2_binary_newest_wheel(version: &str) -> Option<u32> {
    let (major, minor, patch) = version_parts(version)?;
    match (major, minor) {
        (2, 0..=8) => Some(9),
        (2, 9) => Some(match patch {
            0 | 1 => 9,
            2..=4 => 10,
            5..=8 => 11,
            9 => 12,
            10 => 13,
            _ => 14,
        }),
        _ => None,
    }
}

// ---- Python versions ----

/// `python 3.11.4` in `.tool-versions` (asdf, mise): the first version listed.
pub fn tool_versions_python(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let l = l.split('#').next().unwrap_or("").trim();
        let mut words = l.split_whitespace();
        (words.next() == Some("python"))
            .then(|| words.next().map(str::to_string))
            .flatten()
    })
}

/// `3.11` from the leading `3.11…` of a tag or value (`3.11-slim-bookworm`, `"3.12"`).
fn leading_minor(s: &str) -> Option<String> {
    let s = s.trim().trim_matches(['"', '\'']);
    let v: String = s
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = v.split('.');
    let (major, minor) = (parts.next()?, parts.next()?);
    (major == "3" && !minor.is_empty()).then(|| format!("3.{minor}"))
}

/// The Pythons a Dockerfile's `FROM python:X.Y…` lines name (`docker.io/`
/// and `library/` prefixes allowed, `ARG` defaults substituted), in order.
pub fn dockerfile_pythons(text: &str) -> Vec<String> {
    let mut args: Vec<(String, String)> = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let mut words = line.split_whitespace();
        let Some(instr) = words.next() else { continue };
        if instr.eq_ignore_ascii_case("ARG") {
            if let Some((k, v)) = words.next().and_then(|a| a.split_once('=')) {
                args.push((k.to_string(), v.trim_matches(['"', '\'']).to_string()));
            }
            continue;
        }
        if !instr.eq_ignore_ascii_case("FROM") {
            continue;
        }
        let Some(image) = words.find(|w| !w.starts_with("--")) else {
            continue;
        };
        let mut image = image.to_string();
        for (k, v) in &args {
            image = image
                .replace(&format!("${{{k}}}"), v)
                .replace(&format!("${k}"), v);
        }
        let image = image
            .trim_start_matches("docker.io/")
            .trim_start_matches("library/");
        if let Some(tag) = image.strip_prefix("python:") {
            if let Some(v) = leading_minor(tag) {
                out.push(v);
            }
        }
    }
    out
}

/// Whether a file name is a Dockerfile (`Dockerfile`, `Dockerfile.prod`, `web.Dockerfile`).
pub fn is_dockerfile_name(name: &str) -> bool {
    name == "Dockerfile"
        || name.starts_with("Dockerfile.")
        || name.ends_with(".Dockerfile")
        || name.ends_with(".dockerfile")
}

/// The Pythons a CI config names: `python-version: "3.11"`, a list
/// (`[3.10, "3.11"]` or one `- 3.12` per line) in GitHub Actions, or an
/// `image: python:3.11` (GitLab CI). Newest first; expressions
/// (`${{ matrix.python-version }}`) are skipped.
pub fn ci_pythons(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        let value = if let Some(v) = trimmed
            .strip_prefix("python-version:")
            .or_else(|| trimmed.strip_prefix("python:"))
        {
            v.trim()
        } else if let Some(v) = trimmed.strip_prefix("image:") {
            match v.trim().trim_matches(['"', '\'']).strip_prefix("python:") {
                Some(tag) => tag,
                None => continue,
            }
        } else {
            continue;
        };
        let value = value.split(" #").next().unwrap_or("").trim();
        if let Some(list) = value.strip_prefix('[') {
            out.extend(
                list.trim_end_matches(']')
                    .split(',')
                    .filter_map(leading_minor),
            );
        } else if value.is_empty() {
            // A block list on the following, deeper lines.
            let indent = line.len() - line.trim_start().len();
            for next in &lines[i + 1..] {
                let t = next.trim_start();
                if t.is_empty() {
                    continue;
                }
                if next.len() - t.len() < indent || !t.starts_with('-') {
                    break;
                }
                if let Some(v) = leading_minor(t.trim_start_matches('-')) {
                    out.push(v);
                }
            }
        } else if let Some(v) = leading_minor(value) {
            out.push(v);
        }
    }
    let minor = |v: &String| v[2..].parse::<u32>().unwrap_or(0);
    out.sort_by_key(|v| std::cmp::Reverse(minor(v)));
    out.dedup();
    out
}

// ---- settings modules in deploy manifests ----

/// Files (by name) that deploy a project and may set `DJANGO_SETTINGS_MODULE`.
pub fn is_manifest_name(name: &str) -> bool {
    let yaml = name.ends_with(".yml") || name.ends_with(".yaml");
    is_dockerfile_name(name)
        || (yaml && (name.starts_with("docker-compose") || name.starts_with("compose")))
        || matches!(
            name,
            "app.json"
                | "heroku.yml"
                | "render.yaml"
                | "render.yml"
                | "fly.toml"
                | "nixpacks.toml"
                | "Procfile"
                | "railway.json"
                | "railway.toml"
        )
}

/// Every `DJANGO_SETTINGS_MODULE` value a manifest sets, in order:
/// `ENV DJANGO_SETTINGS_MODULE=x` or `ENV DJANGO_SETTINGS_MODULE x`,
/// `DJANGO_SETTINGS_MODULE: x`, `- DJANGO_SETTINGS_MODULE=x`,
/// `"DJANGO_SETTINGS_MODULE": "x"` or `{"value": "x"}`,
/// `DJANGO_SETTINGS_MODULE = "x"`, `- key: DJANGO_SETTINGS_MODULE` then
/// `value: x`, and a Procfile's `--settings=x`. References
/// (`${DJANGO_SETTINGS_MODULE}`) are no values.
pub fn manifest_settings(text: &str) -> Vec<String> {
    const KEY: &str = "DJANGO_SETTINGS_MODULE";
    let mut out = Vec::new();
    let mut push = |v: String| {
        if !v.is_empty() && !out.contains(&v) {
            out.push(v);
        }
    };
    for (at, _) in text.match_indices(KEY) {
        if text[..at].ends_with(['{', '$']) {
            continue;
        }
        let mut rest = &text[at + KEY.len()..];
        loop {
            let before = rest.len();
            rest = rest.trim_start_matches(|c: char| {
                c.is_whitespace() || matches!(c, '"' | '\'' | '=' | ':' | '{' | ',' | '-')
            });
            for word in ["value", "key"] {
                if let Some(r) = rest.strip_prefix(word) {
                    if r.starts_with(['"', '\'', ':', ' ']) {
                        rest = r;
                    }
                }
            }
            if rest.len() == before {
                break;
            }
        }
        push(dotted_token(rest));
    }
    for (at, _) in text.match_indices("--settings") {
        let rest = text[at + "--settings".len()..].trim_start_matches(['=', ' ', '"', '\'']);
        push(dotted_token(rest));
    }
    out.retain(|v| v.contains('.') || v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    out
}

fn dotted_token(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'))
        .collect::<String>()
        .trim_end_matches('.')
        .to_string()
}

/// What a settings module is for, by its last name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Purpose {
    Production,
    Other,
    Development,
}

pub fn purpose(module: &str) -> Purpose {
    let last = module
        .rsplit('.')
        .next()
        .unwrap_or(module)
        .to_ascii_lowercase();
    let words: Vec<&str> = last.split('_').collect();
    let has = |set: &[&str]| words.iter().any(|w| set.contains(w));
    if has(&["production", "prod", "live", "deploy", "deployment"]) {
        Purpose::Production
    } else if has(&[
        "dev",
        "develop",
        "development",
        "local",
        "test",
        "tests",
        "testing",
        "ci",
        "debug",
    ]) {
        Purpose::Development
    } else {
        Purpose::Other
    }
}

// ---- static files built by Node ----

/// The `build` script of a package.json, when it has one.
pub fn node_build_script(package_json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(package_json).ok()?;
    v.get("scripts")?.get("build")?.as_str().map(str::to_string)
}

/// The folders a settings file lists in `STATICFILES_DIRS`, relative to the
/// project folder: `BASE_DIR / "frontend" / "dist"`,
/// `os.path.join(BASE_DIR, "static")`, `str(BASE_DIR.joinpath("x"))`,
/// `("prefix", BASE_DIR / "x")`. Entries that are not built from string
/// literals on top of a base folder (absolute paths, computed names) are
/// left out: paas cannot tell where they point.
pub fn staticfiles_dirs(settings: &str) -> Vec<String> {
    let Some(at) = settings
        .match_indices("STATICFILES_DIRS")
        .map(|(i, _)| i)
        .find(|&i| {
            let line_start = settings[..i].rfind('\n').map(|n| n + 1).unwrap_or(0);
            settings[line_start..i].trim().is_empty()
                && settings[i + 16..].trim_start().starts_with(['=', '+'])
        })
    else {
        return Vec::new();
    };
    let rest = &settings[at..];
    let Some(open) = rest.find(['[', '(']) else {
        return Vec::new();
    };
    // The bracketed value, up to its matching close.
    let mut depth = 0;
    let mut end = rest.len();
    for (i, c) in rest[open..].char_indices() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => {
                depth -= 1;
                if depth == 0 {
                    end = open + i;
                    break;
                }
            }
            _ => {}
        }
    }
    // Comments out (a `#` inside a string literal is rare in paths).
    let body: String = rest[open + 1..end]
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let body = body.as_str();
    // One entry per top-level comma.
    let mut entries = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in body.char_indices() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth -= 1,
            ',' if depth == 0 => {
                entries.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    entries.push(&body[start..]);
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        // `("prefix", path)`: the path is the last part.
        let entry = match entry.strip_prefix('(') {
            Some(inner) => {
                let inner = inner.trim_end_matches(')');
                inner
                    .rsplit_once(',')
                    .map(|(_, p)| p)
                    .unwrap_or(inner)
                    .trim()
            }
            None => entry,
        };
        // Only paths built on a base folder name (BASE_DIR, PROJECT_ROOT, …).
        if !entry.contains("DIR") && !entry.contains("ROOT") && !entry.contains("PATH") {
            continue;
        }
        let parts = string_literals(entry);
        if parts.is_empty() || parts.iter().any(|p| p.starts_with('/') || p.contains("..")) {
            continue;
        }
        let path = parts
            .iter()
            .flat_map(|p| p.split('/'))
            .filter(|p| !p.is_empty() && *p != ".")
            .collect::<Vec<_>>()
            .join("/");
        if !path.is_empty() {
            out.push(path);
        }
    }
    out
}

/// The contents of the '…' and "…" literals in a Python expression.
fn string_literals(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        if c == '"' || c == '\'' {
            let s: String = chars.by_ref().take_while(|d| *d != c).collect();
            out.push(s);
        }
    }
    out
}

// ---- package indexes ----

/// Whether an index URL names the public Python Package Index (its simple
/// API, under either of its host names), which a build's configured index
/// (the operator's mirror) stands in for.
pub fn is_public_index(url: &str) -> bool {
    let url = url.trim().trim_matches(['"', '\'']);
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix(":443").unwrap_or(&host);
    matches!(host, "pypi.org" | "www.pypi.org" | "pypi.python.org")
        && matches!(path.trim_end_matches('/'), "" | "simple" | "pypi")
}

/// An index option of a requirements line: (`-i`/`--index-url` or
/// `--extra-index-url`, the URL).
pub fn index_option(line: &str) -> Option<(&'static str, &str)> {
    for (flag, kind) in [
        ("--extra-index-url", "--extra-index-url"),
        ("--index-url", "--index-url"),
        ("-i", "--index-url"),
    ] {
        if let Some(rest) = line.strip_prefix(flag) {
            let value = rest.trim_start_matches(['=', ' ', '\t']).trim();
            if rest.starts_with(['=', ' ', '\t']) && !value.is_empty() {
                return Some((kind, value));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn django_support_at_patch_level() {
        let hi = |v: &str| django_support(v).map(|s| s.hi);
        assert_eq!(hi("4.2.3"), Some((3, 11)));
        assert_eq!(hi("4.2.8"), Some((3, 12)));
        assert_eq!(hi("4.2"), Some((3, 11)));
        assert_eq!(hi("5.0.4"), Some((3, 12)));
        assert_eq!(hi("5.1.2"), Some((3, 12)));
        assert_eq!(hi("5.1.3"), Some((3, 13)));
        assert_eq!(hi("5.2.7"), Some((3, 13)));
        assert_eq!(hi("5.2.8"), Some((3, 14)));
        assert_eq!(hi("6.0"), Some((3, 14)));
        assert_eq!(hi("5.1rc1"), Some((3, 12)));
        assert_eq!(hi("2.2.7"), Some((3, 7)));
        assert_eq!(hi("2.2.28"), Some((3, 9)));
        assert_eq!(hi("1.11.29"), Some((3, 7)));
        assert_eq!(hi("1.8"), Some((3, 5)));
        assert_eq!(hi("9.0"), None);
        let s = django_support("5.0").unwrap();
        assert!(s.allows(10) && s.allows(12) && !s.allows(9) && !s.allows(13));
        assert_eq!(s.shown(), "3.10 to 3.12");
        assert_eq!(django_support("1.4.22").unwrap().shown(), "2.5 to 2.7");
    }

    #[test]
    fn psycopg2_binary_wheels() {
        assert_eq!(psycopg2_binary_newest_wheel("2.9.6"), Some(11));
        assert_eq!(psycopg2_binary_newest_wheel("2.9.9"), Some(12));
        assert_eq!(psycopg2_binary_newest_wheel("2.9.10"), Some(13));
        assert_eq!(psycopg2_binary_newest_wheel("2.8.6"), Some(9));
        assert_eq!(psycopg2_binary_newest_wheel("3.0"), None);
    }

    #[test]
    fn pythons_named_by_dockerfiles_ci_and_tool_versions() {
        assert_eq!(
            dockerfile_pythons("FROM python:3.11-slim-bookworm AS base\nFROM base\n"),
            ["3.11"]
        );
        assert_eq!(
            dockerfile_pythons(
                "ARG PYTHON_VERSION=3.12-slim\nFROM --platform=linux/amd64 docker.io/python:${PYTHON_VERSION} AS python\n"
            ),
            ["3.12"]
        );
        assert!(dockerfile_pythons("FROM node:20 AS assets\nFROM ubuntu:24.04\n").is_empty());
        assert!(dockerfile_pythons("FROM python:latest\n").is_empty());
        let gha = "jobs:\n  test:\n    strategy:\n      matrix:\n        python-version: [\"3.10\", 3.11, '3.12']\n    steps:\n      - uses: actions/setup-python@v5\n        with:\n          python-version: ${{ matrix.python-version }}\n";
        assert_eq!(ci_pythons(gha), ["3.12", "3.11", "3.10"]);
        let block = "    strategy:\n      matrix:\n        python-version:\n          - \"3.9\"\n          - \"3.11\"\n        os: [ubuntu]\n";
        assert_eq!(ci_pythons(block), ["3.11", "3.9"]);
        assert_eq!(
            ci_pythons("        with:\n          python-version: '3.11'\n"),
            ["3.11"]
        );
        assert_eq!(ci_pythons("test:\n  image: python:3.12-slim\n"), ["3.12"]);
        assert_eq!(
            tool_versions_python("nodejs 20.1.0\npython 3.11.4 3.10.2\n").as_deref(),
            Some("3.11.4")
        );
        assert_eq!(tool_versions_python("nodejs 20\n"), None);
    }

    #[test]
    fn settings_named_by_manifests() {
        assert_eq!(
            manifest_settings(
                "ENV DJANGO_SETTINGS_MODULE=proj.settings.production \\\n    PORT=8000\n"
            ),
            ["proj.settings.production"]
        );
        assert_eq!(
            manifest_settings("ENV DJANGO_SETTINGS_MODULE proj.settings.prod\n"),
            ["proj.settings.prod"]
        );
        assert_eq!(
            manifest_settings("services:\n  web:\n    environment:\n      - DJANGO_SETTINGS_MODULE=proj.settings.local\n  worker:\n    environment:\n      DJANGO_SETTINGS_MODULE: \"proj.settings.staging\"\n"),
            ["proj.settings.local", "proj.settings.staging"]
        );
        assert_eq!(
            manifest_settings(
                "{\"env\": {\"DJANGO_SETTINGS_MODULE\": {\"value\": \"proj.settings.heroku\"}}}"
            ),
            ["proj.settings.heroku"]
        );
        assert_eq!(
            manifest_settings(
                "envVars:\n  - key: DJANGO_SETTINGS_MODULE\n    value: proj.settings.production\n"
            ),
            ["proj.settings.production"]
        );
        assert_eq!(
            manifest_settings("[env]\n  DJANGO_SETTINGS_MODULE = 'proj.settings.fly'\n"),
            ["proj.settings.fly"]
        );
        assert_eq!(
            manifest_settings("web: gunicorn proj.wsgi --env DJANGO_SETTINGS_MODULE=proj.settings.prod\nrelease: python manage.py migrate --settings=proj.settings.prod\n"),
            ["proj.settings.prod"]
        );
        assert!(
            manifest_settings("ENV DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE}\n").is_empty()
        );
        assert_eq!(purpose("proj.settings.production"), Purpose::Production);
        assert_eq!(purpose("config.settings.prod"), Purpose::Production);
        assert_eq!(purpose("proj.settings.dev"), Purpose::Development);
        assert_eq!(purpose("proj.settings_local"), Purpose::Development);
        assert_eq!(purpose("proj.settings_staging"), Purpose::Other);
        assert_eq!(purpose("proj.settings.test_ci"), Purpose::Development);
        assert_eq!(purpose("proj.settings"), Purpose::Other);
    }

    #[test]
    fn staticfiles_dirs_and_node_builds() {
        let s = "from pathlib import Path\nBASE_DIR = Path(__file__).resolve().parent.parent\nSTATICFILES_DIRS = [\n    BASE_DIR / \"frontend\" / \"dist\",  # built by npm\n    os.path.join(BASE_DIR, 'static'),\n    (\"vendor\", BASE_DIR / 'vendor/js'),\n    \"/srv/absolute\",\n]\n";
        assert_eq!(
            staticfiles_dirs(s),
            ["frontend/dist", "static", "vendor/js"]
        );
        assert_eq!(
            staticfiles_dirs("STATICFILES_DIRS = (str(BASE_DIR.joinpath('assets')),)\n"),
            ["assets"]
        );
        assert!(staticfiles_dirs("# STATICFILES_DIRS = [BASE_DIR / 'x']\n").is_empty());
        assert!(staticfiles_dirs("STATIC_URL = '/static/'\n").is_empty());
        assert_eq!(
            node_build_script(r#"{"scripts": {"build": "vite build", "dev": "vite"}}"#).as_deref(),
            Some("vite build")
        );
        assert_eq!(node_build_script(r#"{"scripts": {"dev": "vite"}}"#), None);
        assert_eq!(node_build_script("not json"), None);
    }

    #[test]
    fn public_index_urls() {
        for url in [
            "https://pypi.org/simple",
            "https://pypi.org/simple/",
            "https://pypi.python.org/simple",
            "http://pypi.python.org/pypi",
            "https://PyPI.org:443/simple",
        ] {
            assert!(is_public_index(url), "{url}");
        }
        for url in [
            "https://pypi.example.com/simple",
            "https://user:pw@pypi.org.evil.test/simple",
            "https://pypi.org/project/django",
            "file:///wheels",
        ] {
            assert!(!is_public_index(url), "{url}");
        }
        assert_eq!(
            index_option("-i https://pypi.org/simple"),
            Some(("--index-url", "https://pypi.org/simple"))
        );
        assert_eq!(
            index_option("--extra-index-url=https://x.test/simple"),
            Some(("--extra-index-url", "https://x.test/simple"))
        );
        assert_eq!(index_option("-r base.txt"), None);
        assert_eq!(index_option("--index-url"), None);
    }
}
