//! An in-memory container engine, for the deploy story's unit tests.
//!
//! It keeps images (tag → files), containers (spec, state, address, output)
//! and networks, and records every call in order. A test can make a named
//! call fail, give a one-off command its exit code, or make an image's
//! containers crash at start.
//! Containers do not listen: the engine answers the probe for them, from
//! the state of the container at that address.

use super::Engine;
use crate::docker::{BuildRequest, ContainerInfo, ContainerSpec, ContainerState, DockerError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The in-memory engine; clones share one state.
#[derive(Clone, Default)]
pub struct MemoryEngine {
    state: Arc<Mutex<State>>,
}

/// One container the engine knows.
#[derive(Clone, Debug)]
pub struct Container {
    pub id: String,
    pub spec: ContainerSpec,
    pub state: ContainerState,
    pub ip: IpAddr,
    pub restarts: i64,
    /// What it printed.
    pub logs: Vec<String>,
}

impl Container {
    fn label(&self, key: &str) -> Option<&str> {
        self.spec
            .labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Sees each call's name as it is made.
type Watch = Arc<dyn Fn(&str) + Send + Sync>;

/// Everything the engine holds; tests read it through [`MemoryEngine::state`].
#[derive(Default)]
pub struct State {
    /// Every call, in order: its name and main argument (`start_container paas/blog:v1`).
    pub calls: Vec<String>,
    /// Tag → the image's files (absolute path → bytes).
    pub images: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Id → container, in creation order of their ids (`c001`, `c002`, …).
    pub containers: BTreeMap<String, Container>,
    pub networks: BTreeSet<String>,
    /// One-off containers run to completion (and removed), in order.
    pub one_offs: Vec<ContainerSpec>,
    /// Build steps run (the code on a dependency image), in order.
    pub build_steps: Vec<ContainerSpec>,
    /// The files of each build context, by tag.
    pub contexts: BTreeMap<String, Vec<String>>,
    /// Lines every build prints before it ends (or fails), as pip would.
    pub build_output: Vec<String>,
    /// Lines every build step prints before it ends (or fails).
    pub step_output: Vec<String>,
    /// Calls that fail, by name (`build_image`, `start_container`, …),
    /// after letting the given number through.
    failing: HashMap<&'static str, (usize, DockerError)>,
    /// Calls that fail once, then behave.
    fail_once: HashMap<&'static str, DockerError>,
    /// Exit codes of one-off containers whose command contains the key.
    exit_codes: Vec<(String, i64)>,
    /// Images whose web containers exit at start with this output.
    crashing: HashMap<String, Vec<String>>,
    /// Files every build puts into its image (the buildpack's output).
    build_files: BTreeMap<String, Vec<u8>>,
    /// Called with each call's name before it runs (outside the lock).
    watch: Option<Watch>,
    next: u32,
}

impl MemoryEngine {
    /// An engine whose builds produce what the Django buildpack does:
    /// `/paas/meta.json` and collected static files.
    pub fn new() -> MemoryEngine {
        let engine = MemoryEngine::default();
        engine.state().build_files = BTreeMap::from([
            (
                "/paas/meta.json".to_string(),
                br#"{"static_url": "/static/", "static_root": "/app/staticfiles", "media_url": "/media/", "media_root": "/data/media", "migrations_pending": false}"#.to_vec(),
            ),
            ("/app/staticfiles/site.css".to_string(), b"body {}".to_vec()),
        ]);
        engine
    }

    /// The engine's state, to read or arrange.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on, `call` fails with `error`.
    pub fn fail(&self, call: &'static str, error: DockerError) {
        self.fail_after(call, 0, error);
    }

    /// `call` succeeds `n` more times, then fails with `error`.
    pub fn fail_after(&self, call: &'static str, n: usize, error: DockerError) {
        self.state().failing.insert(call, (n, error));
    }

    /// The next `call` fails with `error`; later ones behave.
    pub fn fail_once(&self, call: &'static str, error: DockerError) {
        self.state().fail_once.insert(call, error);
    }

    /// Whether the build steps from now on find migrations to apply.
    pub fn migrations_pending(&self, pending: bool) {
        let mut s = self.state();
        let meta = s.build_files.entry("/paas/meta.json".into()).or_default();
        let text = String::from_utf8_lossy(meta).replace(
            &format!("\"migrations_pending\": {}", !pending),
            &format!("\"migrations_pending\": {pending}"),
        );
        *meta = text.into_bytes();
    }

    /// One-off containers whose command contains `needle` exit with `code`.
    pub fn exit_code(&self, needle: &str, code: i64) {
        self.state().exit_codes.push((needle.to_string(), code));
    }

    /// Web containers of `image` exit with code 1 right after they start,
    /// having printed `output`.
    pub fn crash_at_start(&self, image: &str, output: &[&str]) {
        let lines = output.iter().map(|l| l.to_string()).collect();
        self.state().crashing.insert(image.to_string(), lines);
    }

    /// Containers carrying `key=value`.
    pub fn containers_labelled(&self, key: &str, value: &str) -> Vec<Container> {
        self.state()
            .containers
            .values()
            .filter(|c| c.label(key) == Some(value))
            .cloned()
            .collect()
    }

    /// The calls so far whose name is `name`.
    pub fn calls_to(&self, name: &str) -> Vec<String> {
        self.state()
            .calls
            .iter()
            .filter(|c| c.split(' ').next() == Some(name))
            .cloned()
            .collect()
    }

    /// `watch` sees the name of every call from now on, as it is made.
    pub fn watch(&self, watch: impl Fn(&str) + Send + Sync + 'static) {
        self.state().watch = Some(Arc::new(watch));
    }

    /// Records the call; its arranged failure, if any.
    fn call(&self, name: &'static str, arg: &str) -> Result<MutexGuard<'_, State>, DockerError> {
        let watch = {
            let mut s = self.state();
            s.calls.push(format!("{name} {arg}").trim_end().to_string());
            s.watch.clone()
        };
        if let Some(watch) = watch {
            watch(name);
        }
        let mut s = self.state();
        if let Some(e) = s.fail_once.remove(name) {
            return Err(e);
        }
        match s.failing.get_mut(name) {
            Some((0, e)) => Err(copy(e)),
            Some((n, _)) => {
                *n -= 1;
                Ok(s)
            }
            None => Ok(s),
        }
    }
}

/// DockerError is not Clone; an arranged failure is handed out again and again.
fn copy(e: &DockerError) -> DockerError {
    match e {
        DockerError::Unreachable { addr, cause } => DockerError::Unreachable {
            addr: addr.clone(),
            cause: cause.clone(),
        },
        DockerError::Build { message } => DockerError::Build {
            message: message.clone(),
        },
        DockerError::Timeout(m) => DockerError::Timeout(m.clone()),
        DockerError::NotFound(m) => DockerError::NotFound(m.clone()),
        DockerError::Engine(m) => DockerError::Engine(m.clone()),
    }
}

fn info(c: &Container) -> ContainerInfo {
    ContainerInfo {
        id: c.id.clone(),
        name: c.spec.name.clone().unwrap_or_default(),
        labels: c.spec.labels.iter().cloned().collect(),
        state: match c.state {
            ContainerState::Running => "running".into(),
            ContainerState::Exited { .. } => "exited".into(),
            _ => "created".into(),
        },
        image: c.spec.image.clone(),
        status: String::new(),
        created: 0,
    }
}

impl Engine for MemoryEngine {
    async fn ping(&self) -> Result<(), DockerError> {
        self.call("ping", "").map(drop)
    }

    async fn build_image(
        &self,
        req: BuildRequest<'_>,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), DockerError> {
        // Read the context as the engine would: a tar holding the Dockerfile.
        let mut names = Vec::new();
        let bytes = match &req.context {
            crate::docker::BuildContext::Memory(b) => b.clone(),
            crate::docker::BuildContext::File(p) => {
                std::fs::read(p).map_err(|e| DockerError::Build {
                    message: e.to_string(),
                })?
            }
        };
        let mut archive = tar::Archive::new(bytes.as_slice());
        for entry in archive.entries().map_err(|e| DockerError::Build {
            message: e.to_string(),
        })? {
            let entry = entry.map_err(|e| DockerError::Build {
                message: e.to_string(),
            })?;
            let path = entry.path().map_err(|e| DockerError::Build {
                message: e.to_string(),
            })?;
            names.push(path.to_string_lossy().trim_start_matches("./").to_string());
        }
        if !names.iter().any(|n| n == req.dockerfile) {
            return Err(DockerError::Build {
                message: format!("no {} in the build context", req.dockerfile),
            });
        }
        let output = self.state().build_output.clone();
        for line in &output {
            on_line(line);
        }
        let mut s = self.call("build_image", req.tag)?;
        s.contexts.insert(req.tag.to_string(), names);
        s.images.insert(req.tag.to_string(), BTreeMap::new());
        drop(s);
        on_line("Step 1/1 : FROM python:3.11-slim");
        on_line(&format!("Successfully tagged {}", req.tag));
        Ok(())
    }

    /// The step "runs" (its exit code arranged with [`MemoryEngine::exit_code`]
    /// on its command), its upload's entries are kept as the tag's context,
    /// and the image gets the buildpack's output files.
    async fn run_build_step(
        &self,
        step: &crate::docker::BuildStep<'_>,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<crate::docker::BuildStepOutcome, DockerError> {
        let bytes = std::fs::read(step.upload).map_err(|e| DockerError::Engine(e.to_string()))?;
        let mut names = Vec::new();
        let mut archive = tar::Archive::new(bytes.as_slice());
        for entry in archive
            .entries()
            .map_err(|e| DockerError::Engine(e.to_string()))?
        {
            let entry = entry.map_err(|e| DockerError::Engine(e.to_string()))?;
            let path = entry
                .path()
                .map_err(|e| DockerError::Engine(e.to_string()))?;
            names.push(path.to_string_lossy().to_string());
        }
        let mut s = self.call("run_build_step", step.tag)?;
        if !s.images.contains_key(&step.spec.image) {
            return Err(DockerError::NotFound(format!("image {}", step.spec.image)));
        }
        let cmd = step.spec.cmd.clone().unwrap_or_default().join(" ");
        let code = s
            .exit_codes
            .iter()
            .find(|(needle, _)| cmd.contains(needle.as_str()))
            .map(|(_, c)| *c)
            .unwrap_or(0);
        s.build_steps.push(step.spec.clone());
        s.contexts.insert(step.tag.to_string(), names);
        let output = s.step_output.clone();
        if code != 0 {
            drop(s);
            for line in &output {
                on_line(line);
            }
            on_line("collectstatic failed");
            return Ok(crate::docker::BuildStepOutcome::Failed { code });
        }
        let files = s.build_files.clone();
        let meta = files.get("/paas/meta.json").cloned().unwrap_or_default();
        s.images.insert(step.tag.to_string(), files);
        Ok(crate::docker::BuildStepOutcome::Built { meta, kept: vec![] })
    }

    async fn image_exists(&self, image: &str) -> Result<bool, DockerError> {
        Ok(self.call("image_exists", image)?.images.contains_key(image))
    }

    /// A "pull" that always finds the image (arrange a failure to model an
    /// unreachable registry).
    async fn ensure_image(&self, image: &str) -> Result<(), DockerError> {
        self.call("ensure_image", image)?
            .images
            .entry(image.to_string())
            .or_default();
        Ok(())
    }

    async fn image_tags(&self) -> Result<Vec<String>, DockerError> {
        Ok(self
            .call("image_tags", "")?
            .images
            .keys()
            .cloned()
            .collect())
    }

    async fn remove_image(&self, image: &str) -> Result<(), DockerError> {
        self.call("remove_image", image)?.images.remove(image);
        Ok(())
    }

    async fn read_file_from_image(&self, image: &str, path: &str) -> Result<Vec<u8>, DockerError> {
        let s = self.call("read_file_from_image", image)?;
        s.images
            .get(image)
            .and_then(|files| files.get(path))
            .cloned()
            .ok_or_else(|| DockerError::NotFound(format!("{path} in image {image}")))
    }

    async fn copy_from_image(
        &self,
        image: &str,
        path: &str,
        dest: &Path,
    ) -> Result<(), DockerError> {
        let s = self.call("copy_from_image", image)?;
        let files = s
            .images
            .get(image)
            .ok_or_else(|| DockerError::NotFound(format!("image {image}")))?
            .clone();
        drop(s);
        let prefix = format!("{}/", path.trim_end_matches('/'));
        for (name, bytes) in files {
            if let Some(rest) = name.strip_prefix(&prefix) {
                let to = dest.join(rest);
                let io = |e: std::io::Error| DockerError::Engine(e.to_string());
                std::fs::create_dir_all(to.parent().unwrap_or(dest)).map_err(io)?;
                std::fs::write(&to, bytes).map_err(io)?;
            }
        }
        Ok(())
    }

    async fn ensure_network(
        &self,
        name: &str,
        _labels: &[(String, String)],
    ) -> Result<(), DockerError> {
        self.call("ensure_network", name)?
            .networks
            .insert(name.to_string());
        Ok(())
    }

    async fn run_to_completion(
        &self,
        spec: &ContainerSpec,
        _timeout: Duration,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<i64, DockerError> {
        let command = spec.cmd.clone().unwrap_or_default().join(" ");
        let mut s = self.call("run_to_completion", &command)?;
        if !s.images.contains_key(&spec.image) {
            return Err(DockerError::NotFound(format!("image {}", spec.image)));
        }
        s.one_offs.push(spec.clone());
        let code = s
            .exit_codes
            .iter()
            .rev()
            .find(|(needle, _)| command.contains(needle.as_str()))
            .map_or(0, |(_, code)| *code);
        drop(s);
        on_line(&format!("ran {command}"));
        Ok(code)
    }

    async fn start_container(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        let mut s = self.call("start_container", &spec.image)?;
        if !s.images.contains_key(&spec.image) {
            return Err(DockerError::NotFound(format!("image {}", spec.image)));
        }
        s.next += 1;
        let n = s.next;
        let id = format!("c{n:03}");
        let (state, logs) = match s.crashing.get(&spec.image) {
            Some(output) => (ContainerState::Exited { code: 1 }, output.clone()),
            None => (ContainerState::Running, Vec::new()),
        };
        let ip = IpAddr::V4(Ipv4Addr::new(10, 9, (n / 250) as u8, (n % 250) as u8 + 2));
        s.containers.insert(
            id.clone(),
            Container {
                id: id.clone(),
                spec: spec.clone(),
                state,
                ip,
                restarts: 0,
                logs,
            },
        );
        Ok(id)
    }

    async fn container_ip(&self, id: &str, _network: &str) -> Result<IpAddr, DockerError> {
        let s = self.call("container_ip", id)?;
        s.containers
            .get(id)
            .map(|c| c.ip)
            .ok_or_else(|| DockerError::NotFound(format!("container {id}")))
    }

    async fn container_state(&self, id: &str) -> Result<ContainerState, DockerError> {
        let s = self.call("container_state", id)?;
        Ok(s.containers
            .get(id)
            .map_or(ContainerState::Missing, |c| c.state.clone()))
    }

    async fn restart_count(&self, id: &str) -> Result<i64, DockerError> {
        let s = self.call("restart_count", id)?;
        s.containers
            .get(id)
            .map(|c| c.restarts)
            .ok_or_else(|| DockerError::NotFound(format!("container {id}")))
    }

    async fn stop(&self, id: &str, _grace: Duration) -> Result<(), DockerError> {
        let mut s = self.call("stop", id)?;
        if let Some(c) = s.containers.get_mut(id) {
            if c.state == ContainerState::Running {
                c.state = ContainerState::Exited { code: 0 };
            }
        }
        Ok(())
    }

    async fn logs_tail(&self, id: &str, n: usize) -> Result<Vec<String>, DockerError> {
        let s = self.call("logs_tail", id)?;
        let logs = s
            .containers
            .get(id)
            .map(|c| c.logs.clone())
            .unwrap_or_default();
        Ok(logs[logs.len().saturating_sub(n)..].to_vec())
    }

    async fn stop_and_remove(&self, id: &str, _grace: Duration) -> Result<(), DockerError> {
        self.call("stop_and_remove", id)?.containers.remove(id);
        Ok(())
    }

    async fn list_containers(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<ContainerInfo>, DockerError> {
        let s = self.call("list_containers", "")?;
        Ok(s.containers
            .values()
            .filter(|c| labels.iter().all(|(k, v)| c.label(k) == Some(v)))
            .map(info)
            .collect())
    }

    async fn probe(
        &self,
        addr: SocketAddr,
        host: &str,
        path: &str,
        _timeout: Duration,
    ) -> Result<u16, String> {
        let s = self
            .call("probe", &format!("{addr} {host} {path}"))
            .map_err(|e| e.to_string())?;
        let Some(c) = s.containers.values().find(|c| c.ip == addr.ip()) else {
            return Err("connect: connection refused".into());
        };
        if c.state != ContainerState::Running {
            return Err("connect: connection refused".into());
        }
        // A running container of a release that did not crash is healthy.
        Ok(200)
    }
}
