//! Native dependencies: Python packages that compile C code against system
//! libraries at install time, or load a system library at run time.
//!
//! A project that lists one gets a build stage (a C compiler, the Python
//! headers and the `-dev` packages) where its virtualenv is built; the app's
//! image copies the virtualenv and installs only the run-time libraries, so no
//! compiler ships. Projects without one keep the single-stage build: the build
//! stage costs an apt-get install of the compiler (tens of seconds on a cold
//! build), which pure-Python projects should not pay.

use super::deps;

/// What one known package needs from Debian.
struct Known {
    /// Normalised project name (`psycopg2`, `mysqlclient`).
    name: &'static str,
    /// Compiled from source at install time (needs the build stage).
    compiles: bool,
    /// `-dev` packages for the build stage (the compiler is always there).
    build: &'static [&'static str],
    /// Libraries the installed package loads at run time.
    runtime: &'static [&'static str],
}

/// Packages without wheels (or whose wheels users avoid) that need Debian
/// packages. The names exist both in Debian 12 and 13, the bases of the
/// official `python:3.x-slim` images.
const KNOWN: &[Known] = &[
    Known {
        name: "psycopg2",
        compiles: true,
        build: &["libpq-dev"],
        runtime: &["libpq5"],
    },
    Known {
        name: "psycopg-c",
        compiles: true,
        build: &["libpq-dev"],
        runtime: &["libpq5"],
    },
    Known {
        name: "mysqlclient",
        compiles: true,
        build: &["default-libmysqlclient-dev", "pkg-config"],
        runtime: &["libmariadb3"],
    },
    Known {
        name: "uwsgi",
        compiles: true,
        build: &[],
        runtime: &[],
    },
];

/// The system packages a project's dependencies need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Native {
    /// Debian packages of the build stage besides the compiler; the stage
    /// exists when [`Native::compiles`] is non-empty.
    pub build_packages: Vec<String>,
    /// Debian packages installed in the app's image.
    pub runtime_packages: Vec<String>,
    /// Requirements compiled from source (their names), for messages.
    pub compiles: Vec<String>,
    /// Requirements that only load a library at run time, for messages.
    pub loads: Vec<String>,
    /// The `PAAS_BUILD_PACKAGES` config var asks for a build stage.
    pub configured_build: bool,
}

impl Native {
    /// Whether the image needs a build stage.
    pub fn needs_build_stage(&self) -> bool {
        !self.compiles.is_empty() || self.configured_build
    }

    /// Whether any system package is installed at all.
    pub fn is_empty(&self) -> bool {
        !self.needs_build_stage() && self.runtime_packages.is_empty()
    }

    /// What the build stage is for, in messages: `psycopg2 and uwsgi`.
    pub fn stage_for(&self) -> String {
        let mut what = self.compiles.clone();
        if self.configured_build {
            what.push("the packages needing the PAAS_BUILD_PACKAGES config var's libraries".into());
        }
        super::join_and(&what)
    }

    /// Adds packages a config var names: for the build stage (`build`) or the app's image.
    pub fn configure(&mut self, packages: &[String], build: bool) {
        let list = if build {
            self.configured_build |= !packages.is_empty();
            &mut self.build_packages
        } else {
            &mut self.runtime_packages
        };
        for p in packages {
            if !list.contains(p) {
                list.push(p.clone());
            }
        }
    }
}

impl Native {
    /// `shown` (a `*-binary` package without a wheel for the build's
    /// Python) compiles from source: it needs what its source twin `twin` needs.
    pub fn compile_like(&mut self, twin: &str, shown: &str) {
        let Some(k) = KNOWN.iter().find(|k| k.name == twin) else {
            return;
        };
        for p in k.build {
            if !self.build_packages.iter().any(|b| b == p) {
                self.build_packages.push(p.to_string());
            }
        }
        for p in k.runtime {
            if !self.runtime_packages.iter().any(|r| r == p) {
                self.runtime_packages.push(p.to_string());
            }
        }
        if !self.compiles.iter().any(|c| c == shown) {
            self.compiles.push(shown.to_string());
        }
    }
}

/// Debian package names from a config var (separated by spaces or commas);
/// None when one is not a package name (which also keeps shell out of the RUN step).
pub fn parse_packages(value: &str) -> Option<Vec<String>> {
    let names: Vec<String> = value
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let valid = |n: &str| {
        n.len() >= 2
            && n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
    };
    names.iter().all(|n| valid(n)).then_some(names)
}

/// The extras of a requirement line (`psycopg[binary,pool]>=3` → binary, pool).
fn extras(line: &str) -> Vec<String> {
    let line = line.split(';').next().unwrap_or("");
    let Some((_, rest)) = line.split_once('[') else {
        return Vec::new();
    };
    let Some((inside, _)) = rest.split_once(']') else {
        return Vec::new();
    };
    inside
        .split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .collect()
}

/// What the requirement `lines` need from the system.
pub fn needs(lines: &[String]) -> Native {
    let reqs: Vec<(String, Vec<String>)> = lines
        .iter()
        .filter_map(|l| deps::requirement_name(l).map(|n| (n, extras(l))))
        .collect();
    let listed = |name: &str| reqs.iter().any(|(n, _)| n == name);
    let mut out = Native::default();
    let add = |k: &Known, shown: &str, out: &mut Native| {
        for p in k.build {
            if !out.build_packages.iter().any(|b| b == p) {
                out.build_packages.push(p.to_string());
            }
        }
        for p in k.runtime {
            if !out.runtime_packages.iter().any(|r| r == p) {
                out.runtime_packages.push(p.to_string());
            }
        }
        if k.compiles {
            out.compiles.push(shown.to_string());
        } else {
            out.loads.push(shown.to_string());
        }
    };
    for (name, extras) in &reqs {
        if let Some(k) = KNOWN.iter().find(|k| k.name == name) {
            add(k, name, &mut out);
        } else if name == "psycopg" {
            // psycopg 3: `[c]` compiles against libpq; `[binary]` (or
            // psycopg-binary listed beside it) brings its own; plain psycopg
            // loads the system's libpq at run time.
            if extras.iter().any(|e| e == "c") {
                add(&KNOWN[1], "psycopg[c]", &mut out);
            } else if !extras.iter().any(|e| e == "binary")
                && !listed("psycopg-binary")
                && !listed("psycopg-c")
            {
                let runtime_only = Known {
                    name: "psycopg",
                    compiles: false,
                    build: &[],
                    runtime: &["libpq5"],
                };
                add(&runtime_only, "psycopg", &mut out);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn known_native_packages_get_their_system_packages() {
        let n = needs(&lines(&["Django==5.1.3", "psycopg2==2.9.10"]));
        assert!(n.needs_build_stage());
        assert_eq!(n.build_packages, ["libpq-dev"]);
        assert_eq!(n.runtime_packages, ["libpq5"]);
        assert_eq!(n.compiles, ["psycopg2"]);
        // The binary wheel needs nothing; neither does a pure-Python project.
        assert!(needs(&lines(&["psycopg2-binary==2.9.10", "Django"])).is_empty());
        assert!(needs(&lines(&["Django", "requests>=2"])).is_empty());
        // psycopg 3: plain loads libpq, [binary] does not, [c] compiles.
        let n = needs(&lines(&["psycopg>=3.2"]));
        assert!(!n.needs_build_stage());
        assert_eq!(n.runtime_packages, ["libpq5"]);
        assert!(needs(&lines(&["psycopg[binary,pool]>=3.2"])).is_empty());
        assert!(needs(&lines(&["psycopg==3.2.1", "psycopg-binary==3.2.1 ; x"])).is_empty());
        let n = needs(&lines(&["psycopg[c]==3.2.1"]));
        assert_eq!(n.compiles, ["psycopg[c]"]);
        // Several: packages are listed once each.
        // Config vars add packages; a build package alone makes the build stage.
        let mut n = needs(&lines(&["Django"]));
        n.configure(&parse_packages("libldap2-dev, libsasl2-dev").unwrap(), true);
        n.configure(&parse_packages("libldap-2.5-0").unwrap(), false);
        assert!(n.needs_build_stage());
        assert_eq!(n.build_packages, ["libldap2-dev", "libsasl2-dev"]);
        assert_eq!(n.runtime_packages, ["libldap-2.5-0"]);
        assert_eq!(parse_packages("libpq5 g++ libxml2-dev").unwrap().len(), 3);
        for bad in ["libpq5;rm -rf /", "$(id)", "LibPQ", "a", "-y"] {
            assert!(parse_packages(bad).is_none(), "{bad}");
        }
        // A -binary package that must compile gets its source twin's packages.
        let mut n = needs(&lines(&["psycopg2-binary==2.9.6"]));
        assert!(n.is_empty());
        n.compile_like("psycopg2", "psycopg2-binary");
        assert!(n.needs_build_stage());
        assert_eq!(n.build_packages, ["libpq-dev"]);
        assert_eq!(n.runtime_packages, ["libpq5"]);
        assert_eq!(n.stage_for(), "psycopg2-binary");
        let n = needs(&lines(&["mysqlclient==2.2", "uWSGI==2.0.28", "psycopg2"]));
        assert_eq!(n.compiles, ["mysqlclient", "uwsgi", "psycopg2"]);
        assert_eq!(
            n.build_packages,
            ["default-libmysqlclient-dev", "pkg-config", "libpq-dev"]
        );
        assert_eq!(n.runtime_packages, ["libmariadb3", "libpq5"]);
    }
}
