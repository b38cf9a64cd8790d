//! The one validated configuration of `paas serve`.
//!
//! Sources, lowest first: a TOML file (`--config`, `PAAS_CONFIG`, or
//! `<data-dir>/paas.toml` when present), `PAAS_<NAME>` environment variables,
//! then command-line flags. `main.rs` hands clap's result (flags and env
//! already merged by clap) to [`Config::resolve`]; nothing else in the crate
//! reads environment variables of the daemon.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Let's Encrypt's production ACME directory: the default CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Everything the daemon needs to know, validated once at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where state lives: the SQLite file, repositories, volumes, static files.
    pub data_dir: PathBuf,
    /// The public proxy address.
    pub http: SocketAddr,
    /// The dashboard, API and git address.
    pub admin: SocketAddr,
    /// Apps are served at `<app>.<domain>`; the control plane at `paas.<domain>`.
    pub domain: String,
    /// The HTTPS listener (`--https ADDR`, default 0.0.0.0:443, or `off`).
    /// While it is off, `paas.<domain>` on the public port is refused; when
    /// on, plain HTTP there redirects to it, as it does for every host with
    /// a certificate.
    pub https: Option<SocketAddr>,
    /// The ACME account's contact (`--acme-email`); none: an account without one.
    pub acme_email: Option<String>,
    /// The ACME directory certificates for names outside `localhost` are
    /// ordered from (`--acme-directory`, default Let's Encrypt's production).
    pub acme_directory: String,
    /// An extra root trusted for the ACME server itself (`--acme-ca-file`;
    /// tests point it at Pebble's). When given, it is the only one.
    pub acme_ca_file: Option<PathBuf>,
    /// Docker network mode for image builds (`None`: the engine's default).
    /// Machines whose package index is reachable only from the host's
    /// network namespace set this to `host`.
    pub build_network: Option<String>,
    /// Base image name pattern; `{version}` becomes the Python version.
    pub image_pattern: String,
    /// How long an old release may finish its requests after a swap.
    pub drain_timeout: Duration,
    /// Memory limit of each web container, in MiB (also sets WEB_CONCURRENCY).
    pub memory_mb: u64,
    /// CPU limit of each app container, in CPUs (fractions allowed): one app
    /// busy in a loop leaves the rest of the machine to the others.
    pub cpus: f64,
    /// Most processes (and threads) one app container may hold: a fork bomb
    /// stops there instead of filling the host's process table.
    pub pids_limit: u64,
    /// Memory limit of each step of an image build, in MiB (swap included):
    /// a build on a small VPS cannot push the live apps out of memory.
    pub build_memory_mb: u64,
    /// CPU limit of each step of an image build, in CPUs.
    pub build_cpus: f64,
    /// Failed logins and wrong tokens one address may send within 15
    /// minutes; then it is refused until they age out.
    pub auth_failure_limit: usize,
}

/// Values from the command line or environment, as clap produced them.
/// `None` means "not given": the file or the default applies.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub http: Option<String>,
    pub admin: Option<String>,
    pub domain: Option<String>,
    pub https: Option<String>,
    pub acme_email: Option<String>,
    pub acme_directory: Option<String>,
    pub acme_ca_file: Option<PathBuf>,
    pub build_network: Option<String>,
    pub image_pattern: Option<String>,
    pub drain_timeout_secs: Option<u64>,
    pub memory_mb: Option<u64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<u64>,
    pub build_memory_mb: Option<u64>,
    pub build_cpus: Option<f64>,
    pub auth_failure_limit: Option<usize>,
}

/// The TOML file's shape: the same names as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    data_dir: Option<PathBuf>,
    http: Option<String>,
    admin: Option<String>,
    domain: Option<String>,
    https: Option<String>,
    acme_email: Option<String>,
    acme_directory: Option<String>,
    acme_ca_file: Option<PathBuf>,
    build_network: Option<String>,
    image_pattern: Option<String>,
    drain_timeout_secs: Option<u64>,
    memory_mb: Option<u64>,
    cpus: Option<f64>,
    pids_limit: Option<u64>,
    build_memory_mb: Option<u64>,
    build_cpus: Option<f64>,
    auth_failure_limit: Option<usize>,
}

/// A configuration that cannot be used, said so the owner can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}; fix the path given with --config or PAAS_CONFIG")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid TOML for paas: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("{name} = {value:?} is not an address like 127.0.0.1:8300; give host:port")]
    Address { name: &'static str, value: String },
    #[error("domain {0:?} is not a host name; give something like example.com or localhost")]
    Domain(String),
    #[error("image-pattern {0:?} must contain {{version}}, as in python:{{version}}-slim")]
    ImagePattern(String),
    #[error("memory-mb {0} is too small for a Django app; give at least 128")]
    Memory(u64),
    #[error("{name} = {value} is not a CPU count paas can use; give a number from 0.1 to 1024, e.g. 1 or 0.5")]
    Cpus { name: &'static str, value: f64 },
    #[error("pids-limit {0} is too small for gunicorn and its workers; give at least 32")]
    Pids(u64),
    #[error("build-memory-mb {0} is out of range; give a number from 256 to 2047 (the engine's build API takes at most 2 GiB)")]
    BuildMemory(u64),
    #[error("auth-failure-limit 0 would lock everyone out; give at least 1 (the default is 10)")]
    AuthFailureLimit,
    #[error("acme-directory {0:?} is not an https:// URL; give the ACME server's directory URL, like {LETS_ENCRYPT}")]
    AcmeDirectory(String),
    #[error("acme-email {0:?} is not an e-mail address; give one like you@example.com (the ACME CA writes there before a certificate expires)")]
    AcmeEmail(String),
    #[error("acme-ca-file {0} does not exist; give the PEM file of the root that signed the ACME server's own certificate")]
    AcmeCaFile(PathBuf),
}

impl Config {
    /// Merge file, env and flags (already merged by clap into `o`) and validate.
    pub fn resolve(o: Overrides) -> Result<Config, ConfigError> {
        let data_dir = o
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/var/lib/paas"));
        let file_path = o.config_file.clone().or_else(|| {
            let p = data_dir.join("paas.toml");
            p.exists().then_some(p)
        });
        let file = match &file_path {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        // A data dir given only in the file applies when no flag/env gave one.
        let data_dir = o.data_dir.or(file.data_dir).unwrap_or(data_dir);
        let http = addr(
            "http",
            o.http.or(file.http).as_deref().unwrap_or("0.0.0.0:80"),
        )?;
        let admin = addr(
            "admin",
            o.admin
                .or(file.admin)
                .as_deref()
                .unwrap_or("127.0.0.1:8300"),
        )?;
        let https = match o.https.or(file.https).as_deref().map(str::trim) {
            None => Some(addr("https", "0.0.0.0:443")?),
            Some("off") | Some("") => None,
            Some(a) => Some(addr("https", a)?),
        };
        let acme_email = o
            .acme_email
            .or(file.acme_email)
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty());
        if let Some(e) = &acme_email {
            let ok = e.split_once('@').is_some_and(|(user, host)| {
                !user.is_empty() && host.contains('.') && !e.contains(char::is_whitespace)
            });
            if !ok {
                return Err(ConfigError::AcmeEmail(e.clone()));
            }
        }
        let acme_directory = o
            .acme_directory
            .or(file.acme_directory)
            .unwrap_or_else(|| LETS_ENCRYPT.to_string());
        if !acme_directory.starts_with("https://") {
            return Err(ConfigError::AcmeDirectory(acme_directory));
        }
        let acme_ca_file = o.acme_ca_file.or(file.acme_ca_file);
        if let Some(f) = &acme_ca_file {
            if !f.is_file() {
                return Err(ConfigError::AcmeCaFile(f.clone()));
            }
        }
        let domain = o
            .domain
            .or(file.domain)
            .unwrap_or_else(|| "localhost".into())
            .to_ascii_lowercase();
        if !valid_domain(&domain) {
            return Err(ConfigError::Domain(domain));
        }
        let image_pattern = o
            .image_pattern
            .or(file.image_pattern)
            .unwrap_or_else(|| "python:{version}-slim".into());
        if !image_pattern.contains("{version}") {
            return Err(ConfigError::ImagePattern(image_pattern));
        }
        let memory_mb = o.memory_mb.or(file.memory_mb).unwrap_or(512);
        if memory_mb < 128 {
            return Err(ConfigError::Memory(memory_mb));
        }
        let cpus = cpu_count("cpus", o.cpus.or(file.cpus).unwrap_or(1.0))?;
        let pids_limit = o.pids_limit.or(file.pids_limit).unwrap_or(256);
        if pids_limit < 32 {
            return Err(ConfigError::Pids(pids_limit));
        }
        let build_memory_mb = o.build_memory_mb.or(file.build_memory_mb).unwrap_or(768);
        if !(256..=2047).contains(&build_memory_mb) {
            return Err(ConfigError::BuildMemory(build_memory_mb));
        }
        let build_cpus = cpu_count(
            "build-cpus",
            o.build_cpus.or(file.build_cpus).unwrap_or(1.0),
        )?;
        let auth_failure_limit = o
            .auth_failure_limit
            .or(file.auth_failure_limit)
            .unwrap_or(10);
        if auth_failure_limit == 0 {
            return Err(ConfigError::AuthFailureLimit);
        }
        let build_network = o
            .build_network
            .or(file.build_network)
            .filter(|s| !s.is_empty());
        Ok(Config {
            data_dir,
            http,
            admin,
            domain,
            https,
            acme_email,
            acme_directory,
            acme_ca_file,
            build_network,
            image_pattern,
            drain_timeout: Duration::from_secs(
                o.drain_timeout_secs
                    .or(file.drain_timeout_secs)
                    .unwrap_or(30),
            ),
            memory_mb,
            cpus,
            pids_limit,
            build_memory_mb,
            build_cpus,
            auth_failure_limit,
        })
    }

    /// The host name the control plane answers to through the proxy.
    pub fn control_host(&self) -> String {
        format!("paas.{}", self.domain)
    }

    /// Where plain HTTP for the control host goes once HTTPS is on:
    /// `https://paas.<domain>`, with the port when it is not 443.
    pub fn control_https_base(&self) -> Option<String> {
        let https = self.https?;
        Some(match https.port() {
            443 => format!("https://{}", self.control_host()),
            port => format!("https://{}:{port}", self.control_host()),
        })
    }

    /// The default host of an app.
    pub fn app_host(&self, app: &str) -> String {
        format!("{app}.{}", self.domain)
    }

    /// Where the daemon itself can be reached from this machine (hooks call it).
    pub fn admin_local_url(&self) -> String {
        let port = self.admin.port();
        let ip = self.admin.ip();
        if ip.is_unspecified() {
            format!("http://127.0.0.1:{port}")
        } else {
            format!("http://{}", self.admin)
        }
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })
}

fn addr(name: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| ConfigError::Address {
        name,
        value: value.to_string(),
    })
}

fn cpu_count(name: &'static str, value: f64) -> Result<f64, ConfigError> {
    if (0.1..=1024.0).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Cpus { name, value })
    }
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 200
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_product_contract() {
        let c = Config::resolve(Overrides {
            data_dir: Some("/nonexistent-paas".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.http.to_string(), "0.0.0.0:80");
        assert_eq!(c.admin.to_string(), "127.0.0.1:8300");
        assert_eq!(c.domain, "localhost");
        assert_eq!(c.https.unwrap().to_string(), "0.0.0.0:443");
        assert_eq!(c.acme_directory, LETS_ENCRYPT);
        assert_eq!((&c.acme_email, &c.acme_ca_file), (&None, &None));
        assert_eq!(c.app_host("blog"), "blog.localhost");
        assert_eq!(c.control_host(), "paas.localhost");
        assert_eq!((c.memory_mb, c.cpus, c.pids_limit), (512, 1.0, 256));
        assert_eq!((c.build_memory_mb, c.build_cpus), (768, 1.0));
    }

    #[test]
    fn container_limits_come_from_the_file_and_flags_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "cpus = 0.5\npids-limit = 100\nbuild-memory-mb = 1024\nbuild-cpus = 2\n",
        )
        .unwrap();
        let c = Config::resolve(Overrides {
            config_file: Some(f),
            data_dir: Some(dir.path().into()),
            pids_limit: Some(64),
            ..Default::default()
        })
        .unwrap();
        assert_eq!((c.cpus, c.pids_limit), (0.5, 64));
        assert_eq!((c.build_memory_mb, c.build_cpus), (1024, 2.0));
        let bad = |o: Overrides| {
            Config::resolve(Overrides {
                data_dir: Some("/nonexistent-paas".into()),
                ..o
            })
            .unwrap_err()
            .to_string()
        };
        let e = bad(Overrides {
            cpus: Some(0.0),
            ..Default::default()
        });
        assert!(e.contains("cpus = 0") && e.contains("give a number"), "{e}");
        let e = bad(Overrides {
            build_cpus: Some(f64::NAN),
            ..Default::default()
        });
        assert!(e.contains("build-cpus"), "{e}");
        let e = bad(Overrides {
            pids_limit: Some(5),
            ..Default::default()
        });
        assert!(e.contains("at least 32"), "{e}");
        let e = bad(Overrides {
            build_memory_mb: Some(4096),
            ..Default::default()
        });
        assert!(e.contains("from 256 to 2047"), "{e}");
    }

    #[test]
    fn file_is_overridden_by_flags() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "domain = \"example.com\"\nhttp = \"127.0.0.1:8080\"\n").unwrap();
        let c = Config::resolve(Overrides {
            config_file: Some(f),
            data_dir: Some(dir.path().into()),
            http: Some("127.0.0.1:9090".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.domain, "example.com");
        assert_eq!(c.http.to_string(), "127.0.0.1:9090");
    }

    #[test]
    fn bad_values_say_what_to_do() {
        let e = Config::resolve(Overrides {
            data_dir: Some("/nonexistent-paas".into()),
            admin: Some("8300".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("give host:port"), "{e}");
        let e = Config::resolve(Overrides {
            data_dir: Some("/nonexistent-paas".into()),
            domain: Some("bad domain".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("not a host name"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "colour = \"blue\"\n").unwrap();
        let e = Config::resolve(Overrides {
            config_file: Some(f),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("not valid TOML for paas"), "{e}");
        let bad = |o: Overrides| {
            Config::resolve(Overrides {
                data_dir: Some("/nonexistent-paas".into()),
                ..o
            })
            .unwrap_err()
            .to_string()
        };
        let e = bad(Overrides {
            acme_directory: Some("http://ca.test/dir".into()),
            ..Default::default()
        });
        assert!(e.contains("not an https:// URL"), "{e}");
        let e = bad(Overrides {
            acme_email: Some("owner".into()),
            ..Default::default()
        });
        assert!(e.contains("not an e-mail address"), "{e}");
        let e = bad(Overrides {
            acme_ca_file: Some("/nonexistent/root.pem".into()),
            ..Default::default()
        });
        assert!(e.contains("does not exist"), "{e}");
    }
}
