//! Dependency sources other than requirements.txt, turned into pip
//! requirement lines at detect time so the image's dependency layer stays a
//! cached `pip install -r`.
//!
//! Every reader is pure: text in, lines out. An `Err` is the reason a file
//! could not be used, phrased to follow "Could not use FILE: ".

use std::collections::{BTreeMap, BTreeSet};

/// What a source yields: requirement lines, notes for the push output, and
/// the Python version or constraint it states, with where it came from.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub lines: Vec<String>,
    pub notes: Vec<String>,
    /// An exact `major.minor[.patch]` (Pipfile) or a `requires-python` constraint.
    pub python: Option<PythonHint>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PythonHint {
    /// `3.11` from Pipfile's `python_version`.
    Exact(String),
    /// `>=3.10,<3.13` from `requires-python` (or poetry's `python = "^3.11"`).
    Constraint(String),
}

/// Lower-case, `_`/`.` → `-` (PEP 503).
pub fn normalize_name(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace(['_', '.'], "-")
}

/// The distribution name at the start of a PEP 508 requirement (`Django[argon2]>=4` → `django`).
pub fn requirement_name(line: &str) -> Option<String> {
    let name: String = line
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    (!name.is_empty()).then(|| normalize_name(&name))
}

fn marker_suffix(markers: Option<&str>) -> String {
    match markers.map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => format!(" ; {m}"),
        None => String::new(),
    }
}

fn extras_suffix(extras: &[String]) -> String {
    if extras.is_empty() {
        String::new()
    } else {
        format!("[{}]", extras.join(","))
    }
}

fn str_list(v: Option<&toml::Value>) -> Vec<String> {
    v.and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A Pipfile's version for `name`, as it follows the name on a requirement
/// line: empty for `*`, else a specifier starting with its operator
/// (`==4.2`, `>=1,<2`, `~=3.1`). A bare `4.2` would run into the name
/// (`django4.2`, another package).
fn pipfile_version(name: &str, v: &str) -> Result<String, String> {
    let v = v.trim();
    if v.is_empty() || v == "*" {
        Ok(String::new())
    } else if v.starts_with(['=', '<', '>', '!', '~']) {
        Ok(v.to_string())
    } else {
        Err(format!(
            "the version of {name} is {v:?}, which has no operator: write it like \"=={v}\" (or \"*\" for any)"
        ))
    }
}

fn parse_toml(text: &str) -> Result<toml::Table, String> {
    text.parse::<toml::Table>()
        .map_err(|e| format!("it is not valid TOML ({})", e.message()))
}

// ---- Pipfile.lock ----

/// The `default` section of a Pipfile.lock (the `develop` section is left out).
pub fn pipfile_lock(text: &str) -> Result<Resolved, String> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("it is not valid JSON ({e})"))?;
    let default = json
        .get("default")
        .and_then(|d| d.as_object())
        .ok_or("it has no \"default\" section")?;
    let mut out = Resolved::default();
    if let Some(v) = json
        .pointer("/_meta/requires/python_full_version")
        .or_else(|| json.pointer("/_meta/requires/python_version"))
        .and_then(|v| v.as_str())
    {
        out.python = Some(PythonHint::Exact(v.to_string()));
    }
    for (name, entry) in default {
        let s = |k: &str| entry.get(k).and_then(|v| v.as_str());
        let extras: Vec<String> = entry
            .get("extras")
            .and_then(|e| e.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let head = format!("{name}{}", extras_suffix(&extras));
        let spec = if let Some(git) = s("git") {
            let git = git.strip_prefix("git+").unwrap_or(git);
            match s("ref") {
                Some(r) => format!("{head} @ git+{git}@{r}"),
                None => format!("{head} @ git+{git}"),
            }
        } else if let Some(file) = s("file").filter(|f| f.contains("://")) {
            format!("{head} @ {file}")
        } else if let Some(path) = s("path").or(s("file")) {
            out.notes.push(format!(
                "{name} skipped: local path dependency {path} (the project's own code is on the Python path)"
            ));
            continue;
        } else {
            format!(
                "{head}{}",
                pipfile_version(name, s("version").unwrap_or(""))?
            )
        };
        out.lines
            .push(format!("{spec}{}", marker_suffix(s("markers"))));
    }
    Ok(out)
}

// ---- Pipfile ----

/// `[packages]` of a Pipfile without its lock: the ranges as written.
pub fn pipfile(text: &str) -> Result<Resolved, String> {
    let t = parse_toml(text)?;
    let mut out = Resolved::default();
    if let Some(v) = t
        .get("requires")
        .and_then(|r| r.get("python_full_version").or(r.get("python_version")))
        .and_then(|v| v.as_str())
    {
        out.python = Some(PythonHint::Exact(v.to_string()));
    }
    let Some(packages) = t.get("packages").and_then(|p| p.as_table()) else {
        return Ok(out);
    };
    for (name, spec) in packages {
        let line = match spec {
            toml::Value::String(v) => format!("{name}{}", pipfile_version(name, v)?),
            toml::Value::Table(tb) => {
                let s = |k: &str| tb.get(k).and_then(|v| v.as_str());
                let head = format!("{name}{}", extras_suffix(&str_list(tb.get("extras"))));
                let body = if let Some(git) = s("git") {
                    let git = git.strip_prefix("git+").unwrap_or(git);
                    match s("ref") {
                        Some(r) => format!("{head} @ git+{git}@{r}"),
                        None => format!("{head} @ git+{git}"),
                    }
                } else if let Some(path) = s("path").or(s("file")) {
                    out.notes.push(format!(
                        "{name} skipped: local path dependency {path} (the project's own code is on the Python path)"
                    ));
                    continue;
                } else {
                    format!(
                        "{head}{}",
                        pipfile_version(name, s("version").unwrap_or(""))?
                    )
                };
                format!("{body}{}", marker_suffix(s("markers")))
            }
            _ => {
                return Err(format!(
                    "the entry for {name} in [packages] is not a version or table"
                ))
            }
        };
        out.lines.push(line);
    }
    Ok(out)
}

// ---- pyproject.toml ----

/// What pyproject.toml says about dependencies.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pyproject {
    /// `[project].dependencies`, verbatim PEP 508 strings.
    pub dependencies: Vec<String>,
    /// True when `[project]` has a `dependencies` key (even empty).
    pub has_project_dependencies: bool,
    /// True when `[tool.poetry.dependencies]` exists (a poetry project).
    pub has_poetry_dependencies: bool,
    /// `[project].requires-python`, else poetry's `python` dependency.
    pub requires_python: Option<String>,
    /// Top-level names (and requested extras) of the main group: `[project]`
    /// dependencies plus `[tool.poetry.dependencies]` without `python`.
    pub main_roots: Vec<(String, Vec<String>)>,
}

pub fn pyproject(text: &str) -> Result<Pyproject, String> {
    let t = parse_toml(text)?;
    let mut out = Pyproject::default();
    if let Some(project) = t.get("project").and_then(|p| p.as_table()) {
        if let Some(deps) = project.get("dependencies") {
            out.has_project_dependencies = true;
            out.dependencies = deps
                .as_array()
                .ok_or("[project].dependencies is not a list")?
                .iter()
                .map(|d| {
                    d.as_str()
                        .map(str::to_string)
                        .ok_or("[project].dependencies holds a non-string entry")
                })
                .collect::<Result<_, _>>()?;
        }
        out.requires_python = project
            .get("requires-python")
            .and_then(|v| v.as_str())
            .map(str::to_string);
    }
    for dep in &out.dependencies {
        if let Some(name) = requirement_name(dep) {
            out.main_roots.push((name, pep508_extras(dep)));
        }
    }
    if let Some(deps) = t
        .get("tool")
        .and_then(|t| t.get("poetry"))
        .and_then(|p| p.get("dependencies"))
        .and_then(|d| d.as_table())
    {
        out.has_poetry_dependencies = true;
        for (name, spec) in deps {
            if name == "python" {
                if out.requires_python.is_none() {
                    out.requires_python = spec.as_str().map(poetry_constraint);
                }
                continue;
            }
            let extras = match spec {
                toml::Value::Table(tb) => str_list(tb.get("extras")),
                _ => vec![],
            };
            out.main_roots.push((normalize_name(name), extras));
        }
    }
    Ok(out)
}

/// `^3.11` → `>=3.11,<4`, `~3.11` → `>=3.11,<3.12`; PEP 440 text unchanged.
fn poetry_constraint(c: &str) -> String {
    let c = c.trim();
    if let Some(v) = c.strip_prefix('^') {
        return format!(">={v},<4");
    }
    if let Some(v) = c.strip_prefix('~').filter(|v| !v.starts_with('=')) {
        let mut parts = v.split('.');
        if let (Some(ma), Some(mi)) = (parts.next(), parts.next()) {
            if let Ok(mi) = mi.parse::<u32>() {
                return format!(">={v},<{ma}.{}", mi + 1);
            }
        }
    }
    c.to_string()
}

/// The extras of a PEP 508 requirement: `django[argon2, bcrypt]>=4` → [argon2, bcrypt].
fn pep508_extras(req: &str) -> Vec<String> {
    let Some(open) = req.find('[') else {
        return vec![];
    };
    // Only when the bracket follows the name directly (not inside a marker).
    let before = req[..open].trim();
    if before.contains([' ', ';', '<', '>', '=', '@']) {
        return vec![];
    }
    let Some(close) = req[open..].find(']') else {
        return vec![];
    };
    req[open + 1..open + close]
        .split(',')
        .map(normalize_name)
        .filter(|e| !e.is_empty())
        .collect()
}

// ---- poetry.lock ----

/// The main group of a poetry.lock. Lock format 2.1 names the groups of each
/// package, 1.x the category; otherwise the main dependencies of
/// pyproject.toml are followed through the lock's dependency graph.
pub fn poetry_lock(text: &str, pyproject: Option<&Pyproject>) -> Result<Resolved, String> {
    let t = parse_toml(text)?;
    let packages = t
        .get("package")
        .and_then(|p| p.as_array())
        .ok_or("it lists no [[package]]")?;
    let pkgs: Vec<&toml::Table> = packages.iter().filter_map(|p| p.as_table()).collect();
    let name_of = |p: &toml::Table| {
        p.get("name")
            .and_then(|n| n.as_str())
            .map(normalize_name)
            .unwrap_or_default()
    };
    let has_groups = pkgs.iter().any(|p| p.contains_key("groups"));
    let has_category = pkgs.iter().any(|p| p.contains_key("category"));
    let mut out = Resolved::default();
    let mut edge_markers: BTreeMap<String, String> = BTreeMap::new();
    let selected: Vec<&toml::Table> = if has_groups {
        pkgs.iter()
            .copied()
            .filter(|p| str_list(p.get("groups")).iter().any(|g| g == "main"))
            .collect()
    } else if has_category {
        pkgs.iter()
            .copied()
            .filter(|p| p.get("category").and_then(|c| c.as_str()) == Some("main"))
            .collect()
    } else if let Some(py) = pyproject.filter(|p| !p.main_roots.is_empty()) {
        let by_name: BTreeMap<String, &toml::Table> =
            pkgs.iter().map(|p| (name_of(p), *p)).collect();
        // name → None: needed everywhere; Some(markers): needed when one of them holds.
        let mut needed: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
        let mut queue: Vec<(String, Vec<String>, Option<String>)> = py
            .main_roots
            .iter()
            .map(|(n, e)| (n.clone(), e.clone(), None))
            .collect();
        let mut expanded: BTreeSet<(String, String)> = BTreeSet::new();
        while let Some((name, extras, marker)) = queue.pop() {
            let Some(p) = by_name.get(&name) else {
                continue;
            };
            let entry = needed
                .entry(name.clone())
                .or_insert_with(|| Some(BTreeSet::new()));
            match (entry.as_mut(), marker) {
                (Some(set), Some(m)) => {
                    set.insert(m);
                }
                (Some(_), None) => *entry = None,
                (None, _) => {}
            }
            if expanded.insert((name.clone(), String::new())) {
                if let Some(deps) = p.get("dependencies").and_then(|d| d.as_table()) {
                    for (dep, spec) in deps {
                        let tb = spec.as_table();
                        let optional = tb.and_then(|t| t.get("optional")).and_then(|o| o.as_bool());
                        if optional == Some(true) {
                            continue;
                        }
                        let dep_extras = str_list(tb.and_then(|t| t.get("extras")));
                        let m = tb
                            .and_then(|t| t.get("markers"))
                            .and_then(|m| m.as_str())
                            .map(str::to_string);
                        queue.push((normalize_name(dep), dep_extras, m));
                    }
                }
            }
            let pkg_extras = p.get("extras").and_then(|e| e.as_table());
            for extra in &extras {
                if !expanded.insert((name.clone(), extra.clone())) {
                    continue;
                }
                let wanted = pkg_extras
                    .and_then(|e| e.get(extra.as_str()))
                    .map(|v| str_list(Some(v)))
                    .unwrap_or_default();
                for req in wanted {
                    if let Some(n) = requirement_name(&req) {
                        queue.push((n, pep508_extras(&req), None));
                    }
                }
            }
        }
        edge_markers = needed
            .iter()
            .filter_map(|(n, m)| Some((n.clone(), join_markers(m.clone()?))))
            .collect();
        pkgs.iter()
            .copied()
            .filter(|p| needed.contains_key(&name_of(p)))
            .collect()
    } else {
        out.notes.push(
            "poetry.lock does not tell main from dev dependencies and pyproject.toml names none: installing every locked package".into(),
        );
        pkgs.clone()
    };
    if has_groups || has_category {
        // Formats before 2.1 keep no markers of their own on a package: a
        // backport that only old Pythons need (`backports.zoneinfo` under
        // Django 4, `python_version < "3.9"` on the edge) would be
        // installed, and compiled, on every Python.
        let roots: BTreeSet<String> = pyproject
            .map(|p| p.main_roots.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default();
        edge_markers = edge_conditions(&selected, &roots);
    }
    for p in selected {
        let name = name_of(p);
        let version = p.get("version").and_then(|v| v.as_str()).unwrap_or("");
        // `marker`: poetry 1.0's name for it.
        let markers = match p.get("markers").or_else(|| p.get("marker")) {
            Some(toml::Value::String(m)) => Some(m.clone()),
            Some(toml::Value::Table(tb)) => {
                tb.get("main").and_then(|m| m.as_str()).map(str::to_string)
            }
            _ => None,
        }
        .or_else(|| edge_markers.get(&name).cloned());
        let source = p.get("source").and_then(|s| s.as_table());
        let s = |k: &str| source.and_then(|s| s.get(k)).and_then(|v| v.as_str());
        let spec = match s("type") {
            Some("git") => {
                let url = s("url").unwrap_or("");
                let rev = s("resolved_reference").or(s("reference"));
                let mut spec = format!("{name} @ git+{url}");
                if let Some(r) = rev {
                    spec.push_str(&format!("@{r}"));
                }
                if let Some(sub) = s("subdirectory") {
                    spec.push_str(&format!("#subdirectory={sub}"));
                }
                spec
            }
            Some("url") => format!("{name} @ {}", s("url").unwrap_or("")),
            Some("directory") | Some("file") => {
                out.notes.push(format!(
                    "{name} skipped: local path dependency {} (the project's own code is on the Python path)",
                    s("url").unwrap_or("?")
                ));
                continue;
            }
            _ => format!("{name}=={version}"),
        };
        out.lines
            .push(format!("{spec}{}", marker_suffix(markers.as_deref())));
    }
    out.python = pyproject
        .and_then(|p| p.requires_python.clone())
        .map(PythonHint::Constraint);
    Ok(out)
}

/// The markers under which each of `selected` (a lock's packages without
/// markers of their own) is needed, from the markers on the lock's edges
/// between them: a package every path reaches only through marked edges is
/// needed when one of those markers holds. Packages needed everywhere (the
/// project's own dependencies, `roots`, those no other package needs, and
/// those an unmarked edge reaches from one needed everywhere) are left out.
/// A marked edge from a package itself needed under a marker counts with
/// its own marker only (a superset: never less than needed).
fn edge_conditions(
    selected: &[&toml::Table],
    roots: &BTreeSet<String>,
) -> BTreeMap<String, String> {
    let name_of = |p: &toml::Table| {
        p.get("name")
            .and_then(|n| n.as_str())
            .map(normalize_name)
            .unwrap_or_default()
    };
    let names: BTreeSet<String> = selected.iter().map(|p| name_of(p)).collect();
    // (from, to, marker of the edge)
    let mut edges: Vec<(String, String, Option<String>)> = Vec::new();
    for p in selected {
        let Some(deps) = p.get("dependencies").and_then(|d| d.as_table()) else {
            continue;
        };
        for (dep, spec) in deps {
            let dep = normalize_name(dep);
            if !names.contains(&dep) {
                continue;
            }
            // A list: one entry per Python range (poetry's multiple constraints).
            let specs: Vec<&toml::Value> = match spec {
                toml::Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            for spec in specs {
                let tb = spec.as_table();
                if tb.and_then(|t| t.get("optional")).and_then(|o| o.as_bool()) == Some(true) {
                    continue;
                }
                edges.push((name_of(p), dep.clone(), tb.and_then(edge_marker)));
            }
        }
    }
    // name → None: needed everywhere; Some(markers): when one of them holds.
    let mut needed: BTreeMap<String, Option<BTreeSet<String>>> = names
        .iter()
        .map(|n| {
            let reached = edges.iter().any(|(_, to, _)| to == n);
            let everywhere = roots.contains(n) || !reached;
            (n.clone(), (!everywhere).then(BTreeSet::new))
        })
        .collect();
    loop {
        let mut changed = false;
        for (from, to, marker) in &edges {
            let Some(Some(have)) = needed.get(to) else {
                continue;
            };
            let add: Option<BTreeSet<String>> = match (needed.get(from), marker) {
                (Some(None), None) => None,
                (Some(None), Some(m)) | (Some(Some(_)), Some(m)) => Some([m.clone()].into()),
                (Some(Some(from_set)), None) => Some(from_set.clone()),
                (None, _) => continue,
            };
            let next = match add {
                None => None,
                Some(add) if add.is_subset(have) => continue,
                Some(add) => Some(have.union(&add).cloned().collect()),
            };
            needed.insert(to.clone(), next);
            changed = true;
        }
        if !changed {
            break;
        }
    }
    needed
        .into_iter()
        .filter_map(|(n, m)| {
            let m = m.filter(|m| !m.is_empty())?;
            Some((n, join_markers(m)))
        })
        .collect()
}

/// The marker of a poetry.lock edge: its `markers`, and its `python`
/// constraint (poetry 1.0's way, `python = "<3.8"`) as a marker.
fn edge_marker(spec: &toml::Table) -> Option<String> {
    let markers = spec
        .get("markers")
        .and_then(|m| m.as_str())
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    let python = spec
        .get("python")
        .and_then(|p| p.as_str())
        .and_then(python_marker);
    match (markers, python) {
        (Some(m), Some(p)) => Some(format!("({m}) and ({p})")),
        (m, p) => m.or(p),
    }
}

/// A poetry Python constraint as a PEP 508 marker: `<3.8` →
/// `python_version < "3.8"`, `>=3.6,<3.8 || >=3.9` → each side joined with
/// `or`. None for `*` (every Python) or what is not a constraint.
fn python_marker(constraint: &str) -> Option<String> {
    let alternatives: Vec<String> = constraint
        .split("||")
        .map(|alt| {
            let clauses: Vec<String> = poetry_constraint(alt)
                .split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty() && *c != "*")
                .map(|c| {
                    let op_len = c.find(|ch: char| ch.is_ascii_digit()).unwrap_or(c.len());
                    let (op, v) = c.split_at(op_len);
                    let op = match op.trim() {
                        "" => "==",
                        op => op,
                    };
                    let v = v.trim();
                    let var = if v.trim_end_matches(".*").split('.').count() > 2 {
                        "python_full_version"
                    } else {
                        "python_version"
                    };
                    format!("{var} {op} \"{v}\"")
                })
                .collect();
            clauses.join(" and ")
        })
        .collect();
    if alternatives.iter().any(|a| a.is_empty()) {
        return None;
    }
    Some(match alternatives.as_slice() {
        [one] => one.clone(),
        many => many
            .iter()
            .map(|a| format!("({a})"))
            .collect::<Vec<_>>()
            .join(" or "),
    })
}

// ---- uv.lock ----

/// The packages the project needs at run time: from the project's own
/// entry (source `editable` or `virtual`), its `dependencies` and the extras
/// they request, never `dev-dependencies`.
pub fn uv_lock(text: &str) -> Result<Resolved, String> {
    let t = parse_toml(text)?;
    let packages: Vec<&toml::Table> = t
        .get("package")
        .and_then(|p| p.as_array())
        .ok_or("it lists no [[package]]")?
        .iter()
        .filter_map(|p| p.as_table())
        .collect();
    let name_of = |p: &toml::Table| {
        p.get("name")
            .and_then(|n| n.as_str())
            .map(normalize_name)
            .unwrap_or_default()
    };
    let version_of = |p: &toml::Table| {
        p.get("version")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let source_kind = |p: &toml::Table| -> Option<(String, String)> {
        let s = p.get("source")?.as_table()?;
        s.iter()
            .next()
            .and_then(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
    };
    let is_local = |p: &toml::Table| matches!(source_kind(p), Some((k, _)) if matches!(k.as_str(), "editable" | "virtual" | "directory" | "path"));
    let roots: Vec<usize> = (0..packages.len())
        .filter(|&i| {
            matches!(source_kind(packages[i]), Some((k, v)) if (k == "editable" || k == "virtual") && v == ".")
        })
        .collect();
    if roots.is_empty() {
        return Err("it has no entry for the project itself (a package with source = { editable = \".\" } or { virtual = \".\" })".into());
    }
    // index → markers: None = needed everywhere, Some(set) = needed when any marker holds.
    let mut needed: BTreeMap<usize, Option<BTreeSet<String>>> = BTreeMap::new();
    let mut queue: Vec<(usize, Vec<String>)> = roots.iter().map(|&i| (i, vec![])).collect();
    let mut expanded: BTreeSet<(usize, String)> = BTreeSet::new();
    let find = |name: &str, version: Option<&str>| -> Option<usize> {
        (0..packages.len()).find(|&i| {
            name_of(packages[i]) == name && version.is_none_or(|v| version_of(packages[i]) == v)
        })
    };
    while let Some((i, extras)) = queue.pop() {
        let p = packages[i];
        let mut edges: Vec<&toml::Value> = Vec::new();
        if expanded.insert((i, String::new())) {
            if let Some(deps) = p.get("dependencies").and_then(|d| d.as_array()) {
                edges.extend(deps);
            }
        }
        for extra in &extras {
            if expanded.insert((i, extra.clone())) {
                if let Some(deps) = p
                    .get("optional-dependencies")
                    .and_then(|o| o.get(extra.as_str()))
                    .and_then(|d| d.as_array())
                {
                    edges.extend(deps);
                }
            }
        }
        for e in edges {
            let Some(e) = e.as_table() else { continue };
            let Some(name) = e.get("name").and_then(|n| n.as_str()).map(normalize_name) else {
                continue;
            };
            let version = e.get("version").and_then(|v| v.as_str());
            let Some(j) = find(&name, version) else {
                return Err(format!(
                    "{name} is a dependency but has no [[package]] entry"
                ));
            };
            let marker = e.get("marker").and_then(|m| m.as_str()).map(str::to_string);
            let entry = needed.entry(j).or_insert_with(|| Some(BTreeSet::new()));
            match (entry.as_mut(), marker) {
                (Some(set), Some(m)) => {
                    set.insert(m);
                }
                (Some(_), None) => *entry = None,
                (None, _) => {}
            }
            queue.push((j, str_list(e.get("extra"))));
        }
    }
    let mut out = Resolved::default();
    if let Some(rp) = t.get("requires-python").and_then(|v| v.as_str()) {
        out.python = Some(PythonHint::Constraint(rp.to_string()));
    }
    for (j, markers) in needed {
        if roots.contains(&j) {
            continue;
        }
        let p = packages[j];
        let name = name_of(p);
        if is_local(p) {
            out.notes.push(format!(
                "{name} skipped: local path dependency (the project's own code is on the Python path)"
            ));
            continue;
        }
        let spec = match source_kind(p) {
            Some((k, url)) if k == "git" => {
                // git = "https://host/repo?rev=main#<commit>"
                let (base, commit) = url.split_once('#').unwrap_or((url.as_str(), ""));
                let (base, query) = base.split_once('?').unwrap_or((base, ""));
                let sub = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("subdirectory="));
                let mut spec = format!("{name} @ git+{base}");
                if !commit.is_empty() {
                    spec.push_str(&format!("@{commit}"));
                }
                if let Some(sub) = sub {
                    spec.push_str(&format!("#subdirectory={sub}"));
                }
                spec
            }
            Some((k, url)) if k == "url" => format!("{name} @ {url}"),
            _ => format!("{name}=={}", version_of(p)),
        };
        let marker = markers.map(join_markers);
        out.lines
            .push(format!("{spec}{}", marker_suffix(marker.as_deref())));
    }
    Ok(out)
}

/// One marker that holds when any of `set` holds.
fn join_markers(set: BTreeSet<String>) -> String {
    if set.len() == 1 {
        set.into_iter().next().unwrap_or_default()
    } else {
        set.into_iter()
            .map(|m| format!("({m})"))
            .collect::<Vec<_>>()
            .join(" or ")
    }
}
