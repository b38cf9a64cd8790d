//! The one wrapper over the Docker engine (bollard).
//!
//! Everything the rest of paas does with Docker goes through [`Docker`]. Every
//! container and image created here carries the label `paas.managed=true` on top
//! of the labels the caller asks for, so leftovers can always be found by label.
//!
//! Engine facts this module relies on (Debian 12, engine 20.10, API 1.41):
//! - builds use the classic builder (no BuildKit session);
//! - bollard reports a build's `errorDetail` as a stream error, and a build that
//!   ends without one is double-checked by inspecting the tag it should have made;
//! - bollard's request timeout only covers the wait for response headers, so the
//!   long calls (build, wait, stop) use a clone of the client with a longer one.
//!
//! Nothing here logs environment variables: they hold the apps' secrets.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, EndpointSettings, HostConfig,
    HostConfigLogConfig, NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest,
    RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, BuildImageOptions, BuildImageOptionsBuilder,
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, DownloadFromContainerOptionsBuilder,
    InspectContainerOptions, InspectNetworkOptions, ListContainersOptionsBuilder,
    ListImagesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder, ResizeContainerTTYOptionsBuilder, StatsOptionsBuilder,
    StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::{Stream, StreamExt, TryStreamExt};

use crate::lines::Lines;
use crate::peers::{AppNets, Subnet};

mod image_tar;
pub use image_tar::ImageSettings;

/// The label every object created by paas carries.
pub const MANAGED_LABEL: (&str, &str) = ("paas.managed", "true");

/// Timeout for ordinary requests (time until the engine answers with headers).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Timeout for requests whose answer legitimately takes long (builds, waits).
const LONG_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// How long `ping` waits before calling the engine unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Log rotation of every container paas creates (json-file driver): at most
/// `LOG_MAX_FILE` files of `LOG_MAX_SIZE` each, so no app's output fills the
/// disk, whatever log driver the engine defaults to.
const LOG_MAX_SIZE: &str = "10m";
const LOG_MAX_FILE: &str = "3";
/// CPU weight of a build step against the default 1024 of every container:
/// when the CPU is contended, live apps get twice a build's share.
const BUILD_CPU_SHARES: i32 = 512;
/// The CFS period the build's CPU quota is a share of (100 ms, the kernel's default).
const BUILD_CPU_PERIOD: i32 = 100_000;

/// Errors from the Docker engine, each with a one-sentence `Display`.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine cannot be reached at `addr`, because of `cause`.
    #[error("cannot reach the Docker engine at {addr} ({cause}): is it running? (systemctl start docker)")]
    Unreachable { addr: String, cause: String },
    /// A build step failed; `message` is the engine's message.
    #[error("the Docker build stopped: {message}")]
    Build { message: String },
    /// Something took longer than allowed; the string is the whole sentence.
    #[error("{0}")]
    Timeout(String),
    /// The engine has no such object (container, image, network, path).
    #[error("the Docker engine has no such object: {0}")]
    NotFound(String),
    /// Any other refusal or failure of the engine.
    #[error("the Docker engine reported an error: {0}")]
    Engine(String),
}

/// A build context: a (plain or gzipped) tar archive.
pub enum BuildContext {
    /// Held in memory (small contexts).
    Memory(Vec<u8>),
    /// A file, streamed to the engine as it is read: a push's code is never
    /// held in memory whole.
    File(PathBuf),
}

/// What to build: a tar context and the Dockerfile path inside it.
pub struct BuildRequest<'a> {
    /// The build context.
    pub context: BuildContext,
    /// Path of the Dockerfile inside the context.
    pub dockerfile: &'a str,
    /// The tag to give the image, e.g. `paas/blog:v3`.
    pub tag: &'a str,
    /// Labels for the image (`paas.managed=true` is added). Empty: no labels
    /// and no extra build step.
    pub labels: Vec<(String, String)>,
    /// Network mode for the RUN steps (`host` where pip needs the network).
    pub network_mode: Option<&'a str>,
    /// Memory and CPU of each RUN step.
    pub limits: BuildLimits,
}

/// What each step of a build may use. The classic builder applies these to
/// the container of every RUN step. Its API has no pids limit (and the
/// CLI's `--ulimit nproc` counts a user's processes across the whole host,
/// not per container, so it is no stand-in): a process storm in a build is
/// held only by the memory and CPU limits here.
#[derive(Clone, Copy, Debug, Default)]
pub struct BuildLimits {
    /// Memory of a step, swap included (the build API takes at most 2 GiB).
    pub memory_bytes: Option<i64>,
    /// CPU of a step, in billionths of a CPU (1_000_000_000 = one CPU).
    pub nano_cpus: Option<i64>,
}

/// A push's build step (see [`Docker::run_build_step`]).
pub struct BuildStep<'a> {
    /// The container: the dependency image, the build command; never a
    /// secret in its environment (the image inherits it).
    pub spec: ContainerSpec,
    /// A tar file extracted at `/` before the container starts.
    pub upload: &'a Path,
    /// The folder where the step writes `keep` (the folders, absolute, one
    /// per line, whose contents make the new layer; this folder is always
    /// one of them) and `meta.json` (read back for the caller).
    pub out_dir: &'a str,
    /// The new image's name.
    pub tag: &'a str,
    /// The new image's settings beyond the dependency image's.
    pub image: ImageSettings,
    /// A host folder for the layer's files while it is made.
    pub scratch: &'a Path,
    pub timeout: Duration,
}

/// How a build step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildStepOutcome {
    /// The image is tagged; `meta` is the step's `meta.json`; `kept`, the
    /// folders of the layer as tar files in the step's scratch folder
    /// (empty when the engine keeps none on the host).
    Built {
        meta: Vec<u8>,
        kept: Vec<KeptFolder>,
    },
    /// The step exited with `code`; no image.
    Failed { code: i64 },
}

/// One folder of a build step's layer, downloaded: `tar` holds it as the
/// engine archives a folder (its entries start with the folder's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptFolder {
    pub folder: String,
    pub tar: PathBuf,
}

/// What container to create.
#[derive(Clone, Debug, Default)]
pub struct ContainerSpec {
    pub name: Option<String>,
    pub image: String,
    pub cmd: Option<Vec<String>>,
    /// Environment; may hold secrets, never log it.
    pub env: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    /// `host:container[:opts]` bind mounts.
    pub binds: Vec<String>,
    /// A user-defined network to attach to.
    pub network: Option<String>,
    /// Restart policy `unless-stopped` (otherwise none).
    pub restart_unless_stopped: bool,
    pub memory_bytes: Option<i64>,
    /// Memory plus swap (`MemorySwap`); equal to `memory_bytes` means no
    /// swap on top. `None`: the engine's default (twice the memory).
    pub memory_swap_bytes: Option<i64>,
    /// CPU limit in billionths of a CPU (`NanoCpus`; 1_000_000_000 = one CPU).
    pub nano_cpus: Option<i64>,
    /// CPU weight against other containers (the engine's default is 1024).
    pub cpu_shares: Option<i64>,
    /// Most processes and threads the container may hold at once: a fork
    /// bomb stops there instead of filling the host's process table.
    pub pids_limit: Option<i64>,
    /// Linux capabilities. `None`: the engine's default set. `Some(list)`:
    /// all are dropped and only `list` (e.g. `"CHOWN"`) is added back.
    pub capabilities: Option<Vec<String>>,
    /// `no-new-privileges`: no setuid binary or file capability can raise a
    /// process's privileges inside the container.
    pub no_new_privileges: bool,
    pub user: Option<String>,
    pub working_dir: Option<String>,
}

/// The state of a container as paas cares about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerState {
    Running,
    Restarting,
    Exited {
        code: i64,
    },
    Created,
    /// The engine does not know the container (removed or never existed).
    Missing,
    Other(String),
}

/// A container as listed.
#[derive(Clone, Debug)]
pub struct ContainerInfo {
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    pub labels: HashMap<String, String>,
    /// The engine's state word: `running`, `exited`, `created`, …
    pub state: String,
    pub image: String,
    /// The engine's status phrase: `Up 3 minutes`, `Exited (0) 2 hours ago`, …
    pub status: String,
    /// Unix timestamp (seconds) of its creation.
    pub created: i64,
}

/// The CPU counters of one stats reading (Linux: nanoseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuReading {
    /// CPU time the container used since it started.
    pub total_ns: u64,
    /// CPU time of the whole host (all CPUs) since boot.
    pub system_ns: u64,
    /// CPUs online at the reading.
    pub online_cpus: u32,
}

impl CpuReading {
    /// CPU use between `earlier` and this reading, like `docker stats`:
    /// container delta / host delta × CPUs × 100, so 100 is one busy CPU.
    /// `None` when the host counter did not advance (same or empty reading)
    /// or the container counter went back (another container with the id).
    pub fn percent_since(&self, earlier: &CpuReading) -> Option<f64> {
        let system = self.system_ns.checked_sub(earlier.system_ns)?;
        let total = self.total_ns.checked_sub(earlier.total_ns)?;
        if system == 0 || earlier.system_ns == 0 {
            return None;
        }
        Some(total as f64 / system as f64 * self.online_cpus.max(1) as f64 * 100.0)
    }
}

/// One reading of a container's resource use, from [`Docker::stats_once`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerStats {
    /// Memory in use without the reclaimable page cache (what `docker
    /// stats` shows): usage minus inactive file pages.
    pub memory_bytes: u64,
    /// The container's memory limit; without one the engine reports the
    /// host's memory. 0 when not reported.
    pub memory_limit: u64,
    pub cpu: CpuReading,
    /// The engine's previous reading when it sent one. A one-shot reading
    /// has none (zeros), so CPU use comes from two readings the caller kept.
    pub precpu: Option<CpuReading>,
}

impl ContainerStats {
    /// CPU percent since `earlier` (a reading the caller kept), else since
    /// the engine's own previous reading; `None` without either.
    pub fn cpu_percent(&self, earlier: Option<&CpuReading>) -> Option<f64> {
        earlier
            .or(self.precpu.as_ref())
            .and_then(|e| self.cpu.percent_since(e))
    }
}

/// Memory in use as `docker stats` counts it: usage minus the inactive
/// file cache (cgroup v1 `total_inactive_file`, v2 `inactive_file`), or
/// minus `cache` on older engines.
fn memory_without_cache(usage: u64, stats: &HashMap<String, u64>) -> u64 {
    for key in ["total_inactive_file", "inactive_file", "cache"] {
        if let Some(v) = stats.get(key) {
            if *v <= usage {
                return usage - v;
            }
        }
    }
    usage
}

fn cpu_reading(c: &bollard::models::ContainerCpuStats) -> CpuReading {
    CpuReading {
        total_ns: c
            .cpu_usage
            .as_ref()
            .and_then(|u| u.total_usage)
            .unwrap_or(0),
        system_ns: c.system_cpu_usage.unwrap_or(0),
        online_cpus: c.online_cpus.unwrap_or(0),
    }
}

/// A running container with a terminal, from [`Docker::start_attached`].
/// Dropping it removes the container.
pub struct Attached {
    pub id: String,
    /// What the container writes to its terminal.
    pub output: futures_util::stream::BoxStream<'static, Result<bytes::Bytes, DockerError>>,
    /// The container's terminal input.
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    _guard: RemoveOnDrop,
}

/// An image as listed.
#[derive(Clone, Debug)]
pub struct ImageInfo {
    pub id: String,
    pub tags: Vec<String>,
    pub labels: HashMap<String, String>,
    /// Unix timestamp (seconds).
    pub created: i64,
    /// Bytes of the image with its parent layers (shared layers are
    /// counted in every image that has them).
    pub size: i64,
}

/// Which images to list: every condition must hold.
#[derive(Clone, Debug, Default)]
pub struct ImageFilter<'a> {
    /// Carries every one of these labels (`key=value`, or `key` alone for
    /// any value).
    pub labels: &'a [&'a str],
    /// A repository (`paas/blog`) or a pattern (`paas-deps`), as
    /// `docker images REFERENCE` takes it.
    pub reference: Option<&'a str>,
    /// Untagged images no other image stands on.
    pub dangling: bool,
}

/// A cheap-to-clone handle on the Docker engine.
#[derive(Clone)]
pub struct Docker {
    inner: bollard::Docker,
    /// Where the engine is expected, for error messages.
    addr: Arc<str>,
    /// Serialises `ensure_network`: engine 20.10 happily creates two networks
    /// with the same name when asked concurrently.
    network_lock: Arc<tokio::sync::Mutex<()>>,
    /// The address ranges of paas's networks: a network's ranges are added
    /// before `ensure_network` returns, so before any container runs on it.
    app_nets: AppNets,
}

impl std::fmt::Debug for Docker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Docker").field("addr", &self.addr).finish()
    }
}

fn engine_addr() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.trim().is_empty() => h,
        _ => "unix:///var/run/docker.sock".to_string(),
    }
}

fn unreachable(addr: &str, cause: &str) -> DockerError {
    DockerError::Unreachable {
        addr: addr.to_string(),
        cause: cause.to_string(),
    }
}

fn is_status(e: &BollardError, code: u16) -> bool {
    matches!(e, BollardError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

fn managed_labels(labels: impl IntoIterator<Item = (String, String)>) -> HashMap<String, String> {
    let mut map: HashMap<String, String> = labels.into_iter().collect();
    map.insert(MANAGED_LABEL.0.to_string(), MANAGED_LABEL.1.to_string());
    map
}

/// Every address range (IPv4 and IPv6) of a network's IPAM configuration.
fn ipam_subnets(ipam: Option<bollard::models::Ipam>) -> Vec<Subnet> {
    ipam.and_then(|i| i.config)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.subnet)
        .filter_map(|s| Subnet::parse(&s))
        .collect()
}

fn label_filters(labels: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    let mut filters = HashMap::new();
    if !labels.is_empty() {
        filters.insert(
            "label".to_string(),
            labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        );
    }
    filters
}

/// Removes a container when dropped, unless disarmed: cleans up after a caller
/// that gave up on (dropped) one of our futures half-way.
struct RemoveOnDrop {
    docker: bollard::Docker,
    id: Option<String>,
}

impl RemoveOnDrop {
    fn disarm(&mut self) {
        self.id = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let docker = self.docker.clone();
                rt.spawn(async move {
                    let opts = RemoveContainerOptionsBuilder::new().force(true).build();
                    let _ = docker.remove_container(&id, Some(opts)).await;
                });
            }
        }
    }
}

impl Docker {
    /// Connects with the local defaults (`DOCKER_HOST`, else the unix socket).
    /// Nothing is sent yet: call [`Docker::ping`] to check the engine is there.
    pub fn connect() -> Result<Docker, DockerError> {
        Self::wrap(bollard::Docker::connect_with_defaults(), engine_addr())
    }

    /// A handle on no engine: an address that refuses connections. For unit
    /// tests whose story runs on an in-memory engine, so that a call which
    /// strays to this handle fails instead of touching a real engine.
    #[cfg(test)]
    pub(crate) fn nowhere() -> Docker {
        let addr = "http://127.0.0.1:1";
        Self::wrap(
            bollard::Docker::connect_with_http(addr, 1, bollard::API_DEFAULT_VERSION),
            addr.to_string(),
        )
        .expect("an HTTP client is made without connecting")
    }

    fn wrap(
        client: Result<bollard::Docker, BollardError>,
        addr: String,
    ) -> Result<Docker, DockerError> {
        let inner = client
            .map_err(|e| {
                let cause = match e {
                    BollardError::SocketNotFoundError(_) => "no socket there".to_string(),
                    other => other.to_string(),
                };
                unreachable(&addr, &cause)
            })?
            .with_timeout(REQUEST_TIMEOUT);
        Ok(Docker {
            inner,
            addr: addr.into(),
            network_lock: Arc::new(tokio::sync::Mutex::new(())),
            app_nets: AppNets::default(),
        })
    }

    /// A client for calls whose answer may take long (builds, waits, stops).
    fn patient(&self) -> bollard::Docker {
        self.inner.clone().with_timeout(LONG_TIMEOUT)
    }

    /// Maps a bollard error to ours.
    fn err(&self, e: BollardError) -> DockerError {
        match e {
            BollardError::DockerResponseServerError {
                status_code: 404,
                message,
            } => DockerError::NotFound(message),
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => DockerError::Engine(format!("{message} (HTTP {status_code})")),
            BollardError::DockerStreamError { error } => DockerError::Engine(error),
            BollardError::RequestTimeoutError => DockerError::Timeout(format!(
                "the Docker engine at {} did not answer within {} s",
                self.addr,
                self.inner.timeout().as_secs()
            )),
            BollardError::SocketNotFoundError(_) => unreachable(&self.addr, "no socket"),
            BollardError::HyperLegacyError { ref err } if err.is_connect() => {
                let cause = std::error::Error::source(err)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| err.to_string());
                unreachable(&self.addr, &cause)
            }
            other => DockerError::Engine(other.to_string()),
        }
    }

    /// Checks the engine answers.
    pub async fn ping(&self) -> Result<(), DockerError> {
        match tokio::time::timeout(PING_TIMEOUT, self.inner.ping()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => match self.err(e) {
                e @ DockerError::Unreachable { .. } => Err(e),
                other => Err(unreachable(&self.addr, &other.to_string())),
            },
            Err(_) => Err(unreachable(
                &self.addr,
                &format!("no answer within {} s", PING_TIMEOUT.as_secs()),
            )),
        }
    }

    /// Builds an image with the classic builder, streaming each output line to
    /// `on_line`. A failing step becomes [`DockerError::Build`] with the engine's
    /// message (and the last output line, usually the tool's own complaint).
    pub async fn build_image(
        &self,
        req: BuildRequest<'_>,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), DockerError> {
        // The classic builder turns every build-option label into a step of its
        // own (seconds each); one LABEL line appended to the Dockerfile is one.
        // With no labels asked for, no step at all: the tag names the image,
        // and on a slow storage driver a step is seconds of a redeploy.
        // A context on disk is not rewritten: its labels go as build options.
        let (context, option_labels) = match req.context {
            context if req.labels.is_empty() => (context, HashMap::new()),
            BuildContext::Memory(bytes) => {
                let labels = managed_labels(req.labels);
                match label_dockerfile(&bytes, req.dockerfile, &labels) {
                    Some(bytes) => (BuildContext::Memory(bytes), HashMap::new()),
                    None => (BuildContext::Memory(bytes), labels),
                }
            }
            context @ BuildContext::File(_) => (context, managed_labels(req.labels)),
        };
        let opts = build_options(
            req.dockerfile,
            req.tag,
            &option_labels,
            req.network_mode,
            req.limits,
        );
        let client = self.patient();
        let body = match context {
            BuildContext::Memory(bytes) => bollard::body_full(bytes::Bytes::from(bytes)),
            BuildContext::File(path) => bollard::body_try_stream(file_stream(&path).await?),
        };
        let mut stream = client.build_image(opts, None, Some(body));
        let mut splitter = Lines::default();
        let mut last_line = String::new();
        // Remembers the last line a build step printed (not the builder's own
        // chatter): for pip that is its ERROR line, worth repeating in the error.
        fn emit(line: String, last: &mut String, on_line: &mut (dyn FnMut(&str) + Send)) {
            let line = strip_ansi(&line);
            let t = line.trim();
            let chatter = t.is_empty()
                || t.starts_with("Step ")
                || t.starts_with("---> ")
                || t.starts_with("Removing intermediate container")
                || t.starts_with("Successfully ");
            if !chatter {
                last.clone_from(&line);
            }
            on_line(&line);
        }
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(text) = info.stream.as_deref() {
                        for line in splitter.push(text.as_bytes()) {
                            emit(line, &mut last_line, on_line);
                        }
                    } else if let Some(status) = info.status.as_deref() {
                        emit(status.to_string(), &mut last_line, on_line);
                    }
                }
                Err(e) => {
                    if let Some(line) = splitter.finish() {
                        emit(line, &mut last_line, on_line);
                    }
                    return Err(match e {
                        BollardError::DockerStreamError { error } => {
                            let error = error.trim().to_string();
                            let message = if last_line.is_empty() || error.contains(&last_line) {
                                error
                            } else {
                                format!("{error} (last output: {})", last_line.trim())
                            };
                            DockerError::Build { message }
                        }
                        // Refused up front: Dockerfile syntax, missing Dockerfile, …
                        BollardError::DockerResponseServerError { message, .. } => {
                            DockerError::Build {
                                message: message.trim().to_string(),
                            }
                        }
                        other => match self.err(other) {
                            e @ DockerError::Unreachable { .. } => e,
                            // The output broke off (e.g. a frame bollard cannot
                            // decode): still a failed build, say what we know.
                            e => DockerError::Build {
                                message: format!(
                                    "the build output broke off ({e}){}",
                                    if last_line.is_empty() {
                                        String::new()
                                    } else {
                                        format!("; last output: {}", last_line.trim())
                                    }
                                ),
                            },
                        },
                    });
                }
            }
        }
        if let Some(line) = splitter.finish() {
            emit(line, &mut last_line, on_line);
        }
        // The stream can end without an error on some engine/bollard pairs even
        // though nothing was built: trust only the tag.
        if !self.image_exists(req.tag).await? {
            return Err(DockerError::Build {
                message: format!(
                    "the build ended without producing the image {}{}",
                    req.tag,
                    if last_line.is_empty() {
                        String::new()
                    } else {
                        format!(" (last output: {})", last_line.trim())
                    }
                ),
            });
        }
        Ok(())
    }

    /// Whether an image (name, tag or id) exists locally.
    pub async fn image_exists(&self, image: &str) -> Result<bool, DockerError> {
        match self.inner.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_status(&e, 404) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Removes an image (untagging it; the layers go when nothing else uses
    /// them). A missing image is fine.
    pub async fn remove_image(&self, image: &str) -> Result<(), DockerError> {
        let opts = RemoveImageOptionsBuilder::new().force(true).build();
        match self.inner.remove_image(image, Some(opts), None).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Makes sure a bridge network with this name exists (creating it with the
    /// given labels plus `paas.managed=true`). Idempotent. Its address ranges
    /// join [`Docker::app_nets`] before this returns: a network whose ranges
    /// cannot be read is an error, so no container runs on an unlisted one.
    pub async fn ensure_network(
        &self,
        name: &str,
        labels: &[(String, String)],
    ) -> Result<(), DockerError> {
        let _guard = self.network_lock.lock().await;
        match self
            .inner
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
        {
            Ok(info) => {
                self.app_nets.add(ipam_subnets(info.ipam));
                return Ok(());
            }
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(self.err(e)),
        }
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".to_string()),
            labels: Some(managed_labels(labels.iter().cloned())),
            ..Default::default()
        };
        match self.inner.create_network(req).await {
            Ok(_) => {}
            // Created meanwhile by someone else: fine.
            Err(e) if is_status(&e, 409) => {}
            Err(e) => return Err(self.err(e)),
        }
        let info = self
            .inner
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
            .map_err(|e| self.err(e))?;
        let subnets = ipam_subnets(info.ipam);
        if subnets.is_empty() {
            return Err(DockerError::Engine(format!(
                "the engine gave the network {name} no address range paas can read; remove it (docker network rm {name}) and try again"
            )));
        }
        self.app_nets.add(subnets);
        Ok(())
    }

    /// The address ranges of the networks app code runs on (a handle; the
    /// engine wrapper keeps it up to date).
    pub fn app_nets(&self) -> AppNets {
        self.app_nets.clone()
    }

    /// Reads the ranges of every network paas made (label `paas.managed`),
    /// plus those of `extra` networks (the one image builds run on), and
    /// makes them the whole of [`Docker::app_nets`]: ranges of networks
    /// removed since drop out. A network in `extra` that does not exist is
    /// skipped.
    pub async fn refresh_app_nets(&self, extra: &[String]) -> Result<(), DockerError> {
        let _guard = self.network_lock.lock().await;
        let opts = bollard::query_parameters::ListNetworksOptionsBuilder::new()
            .filters(&label_filters(&[MANAGED_LABEL]))
            .build();
        let mut subnets = Vec::new();
        for n in self
            .inner
            .list_networks(Some(opts))
            .await
            .map_err(|e| self.err(e))?
        {
            subnets.extend(ipam_subnets(n.ipam));
        }
        for name in extra {
            match self
                .inner
                .inspect_network(name, None::<InspectNetworkOptions>)
                .await
            {
                Ok(info) => subnets.extend(ipam_subnets(info.ipam)),
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(self.err(e)),
            }
        }
        self.app_nets.set(subnets);
        Ok(())
    }

    /// Pulls an image unless it is already here (`name:tag`). Where no
    /// registry is reachable the error says so; tests build their images offline.
    pub async fn ensure_image(&self, image: &str) -> Result<(), DockerError> {
        if self.image_exists(image).await? {
            return Ok(());
        }
        let (name, tag) = match image.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, t),
            _ => (image, "latest"),
        };
        let opts = CreateImageOptionsBuilder::new()
            .from_image(name)
            .tag(tag)
            .build();
        let client = self.patient();
        let mut stream = client.create_image(Some(opts), None, None);
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                return Err(DockerError::Engine(format!(
                    "cannot pull the image {image} ({}); pull it by hand (docker pull {image}) and try again",
                    self.err(e)
                )));
            }
        }
        Ok(())
    }

    /// Connects a container to a network under extra DNS `aliases`.
    /// Already connected is fine.
    pub async fn connect_network(
        &self,
        container: &str,
        network: &str,
        aliases: &[&str],
    ) -> Result<(), DockerError> {
        let info = self
            .inner
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.err(e))?;
        let connected = info
            .network_settings
            .and_then(|n| n.networks)
            .is_some_and(|nets| nets.contains_key(network));
        if connected {
            return Ok(());
        }
        let req = NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: Some(EndpointSettings {
                aliases: Some(aliases.iter().map(|a| a.to_string()).collect()),
                ..Default::default()
            }),
        };
        self.inner
            .connect_network(network, req)
            .await
            .map_err(|e| self.err(e))
    }

    /// Disconnects a container from a network. Not connected, or either one
    /// missing, is fine.
    pub async fn disconnect_network(
        &self,
        container: &str,
        network: &str,
    ) -> Result<(), DockerError> {
        let req = NetworkDisconnectRequest {
            container: container.to_string(),
            force: Some(true),
        };
        match self.inner.disconnect_network(network, req).await {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 404) || is_status(&e, 403) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
        let host_config = HostConfig {
            binds: (!spec.binds.is_empty()).then(|| spec.binds.clone()),
            network_mode: spec.network.clone(),
            restart_policy: spec.restart_unless_stopped.then_some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            memory: spec.memory_bytes,
            memory_swap: spec.memory_swap_bytes,
            nano_cpus: spec.nano_cpus,
            cpu_shares: spec.cpu_shares,
            pids_limit: spec.pids_limit,
            cap_drop: spec.capabilities.as_ref().map(|_| vec!["ALL".to_string()]),
            cap_add: spec
                .capabilities
                .as_ref()
                .filter(|keep| !keep.is_empty())
                .cloned(),
            security_opt: spec
                .no_new_privileges
                .then(|| vec!["no-new-privileges:true".to_string()]),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".to_string(), LOG_MAX_SIZE.to_string()),
                    ("max-file".to_string(), LOG_MAX_FILE.to_string()),
                ])),
            }),
            ..Default::default()
        };
        ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: spec.cmd.clone(),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(managed_labels(spec.labels.iter().cloned())),
            user: spec.user.clone(),
            working_dir: spec.working_dir.clone(),
            host_config: Some(host_config),
            ..Default::default()
        }
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        let mut opts = CreateContainerOptionsBuilder::new();
        if let Some(name) = &spec.name {
            opts = opts.name(name);
        }
        let created = self
            .inner
            .create_container(Some(opts.build()), Self::create_body(spec))
            .await
            .map_err(|e| self.err(e))?;
        Ok(created.id)
    }

    async fn force_remove(&self, id: &str) -> Result<(), DockerError> {
        // v: also the anonymous volumes an image's VOLUME line made (the
        // official postgres image has one), or every one-off leaves one behind.
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.patient().remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            // "removal of container … is already in progress"
            Err(e) if is_status(&e, 409) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Creates and starts a container; returns its id. If it cannot be started,
    /// the created container is removed again.
    pub async fn start_container(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        let id = self.create(spec).await?;
        let mut guard = RemoveOnDrop {
            docker: self.inner.clone(),
            id: Some(id.clone()),
        };
        if let Err(e) = self.inner.start_container(&id, None).await {
            let err = self.err(e);
            guard.disarm();
            let _ = self.force_remove(&id).await;
            return Err(err);
        }
        guard.disarm();
        Ok(id)
    }

    /// Runs a one-off container: create, start, stream its output line by line
    /// to `on_line`, wait for it, and remove it — always, also on error or
    /// timeout. Returns the exit code.
    pub async fn run_to_completion(
        &self,
        spec: &ContainerSpec,
        timeout: Duration,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<i64, DockerError> {
        let id = self.create(spec).await?;
        let mut guard = RemoveOnDrop {
            docker: self.inner.clone(),
            id: Some(id.clone()),
        };
        let outcome = tokio::time::timeout(timeout, self.run_created(&id, on_line)).await;
        let removed = self.force_remove(&id).await;
        guard.disarm();
        match outcome {
            Err(_) => Err(DockerError::Timeout(format!(
                "the one-off container ({}) did not finish within {} s and was removed",
                spec.cmd
                    .as_ref()
                    .map(|c| c.join(" "))
                    .unwrap_or_else(|| spec.image.clone()),
                timeout.as_secs()
            ))),
            Ok(Err(e)) => Err(e),
            Ok(Ok(code)) => {
                if let Err(e) = removed {
                    tracing::warn!(container = %id, "removing a finished one-off container failed: {e}");
                }
                Ok(code)
            }
        }
    }

    /// A push's build step: a container of `step.spec` (the dependency
    /// image) gets `step.upload` extracted at `/` before it starts, runs to
    /// its end (output to `on_line`), and when it exits 0 the folders it
    /// names in `step.keep_list` become one layer on top of its image,
    /// loaded as `step.tag`. The container is removed in every case.
    pub async fn run_build_step(
        &self,
        step: &BuildStep<'_>,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<BuildStepOutcome, DockerError> {
        let lap = std::time::Instant::now();
        let id = self.create(&step.spec).await?;
        tracing::debug!(ms = lap.elapsed().as_millis() as u64, "build step: created");
        let mut guard = RemoveOnDrop {
            docker: self.inner.clone(),
            id: Some(id.clone()),
        };
        let outcome = async {
            self.upload(&id, step.upload).await?;
            tracing::debug!(
                ms = lap.elapsed().as_millis() as u64,
                "build step: uploaded"
            );
            let code = tokio::time::timeout(step.timeout, self.run_created(&id, on_line))
                .await
                .map_err(|_| {
                    DockerError::Timeout(format!(
                        "the build step did not finish within {} s",
                        step.timeout.as_secs()
                    ))
                })??;
            tracing::debug!(ms = lap.elapsed().as_millis() as u64, "build step: ran");
            if code != 0 {
                return Ok(BuildStepOutcome::Failed { code });
            }
            // The step's folder: its two files and a part of the layer.
            let out_tar = step.scratch.join("keep0.tar");
            self.download_to(&id, step.out_dir, &out_tar).await?;
            let tar = out_tar.clone();
            let mut files =
                tokio::task::spawn_blocking(move || files_in_tar(&tar, &["meta.json", "keep"]))
                    .await
                    .map_err(|e| {
                        DockerError::Engine(format!(
                            "reading the step's files was interrupted: {e}"
                        ))
                    })?
                    .map_err(|e| DockerError::Engine(format!("reading {}: {e}", step.out_dir)))?;
            let (Some(keep), Some(meta)) = (files.pop().flatten(), files.pop().flatten()) else {
                return Err(DockerError::NotFound(format!(
                    "{0}/meta.json or {0}/keep (the build step did not write them)",
                    step.out_dir
                )));
            };
            tracing::debug!(
                ms = lap.elapsed().as_millis() as u64,
                "build step: read meta"
            );
            let kept = self
                .commit_layer(&id, step, &String::from_utf8_lossy(&keep), out_tar)
                .await?;
            tracing::debug!(
                ms = lap.elapsed().as_millis() as u64,
                "build step: committed"
            );
            Ok(BuildStepOutcome::Built { meta, kept })
        }
        .await;
        let _ = self.force_remove(&id).await;
        guard.disarm();
        outcome
    }

    /// Extracts the tar file `tar` at `/` in container `id`.
    async fn upload(&self, id: &str, tar: &Path) -> Result<(), DockerError> {
        let body = bollard::body_try_stream(file_stream(tar).await?);
        let opts = bollard::query_parameters::UploadToContainerOptionsBuilder::new()
            .path("/")
            .build();
        self.patient()
            .upload_to_container(id, Some(opts), body)
            .await
            .map_err(|e| self.err(e))
    }

    /// Streams `path` of container `id` as a tar archive into the file `out`.
    async fn download_to(&self, id: &str, path: &str, out: &Path) -> Result<(), DockerError> {
        use tokio::io::AsyncWriteExt;
        let io = |e: std::io::Error| DockerError::Engine(format!("writing {}: {e}", out.display()));
        let mut file = tokio::fs::File::create(out).await.map_err(io)?;
        let opts = DownloadFromContainerOptionsBuilder::new()
            .path(path)
            .build();
        let mut stream = self.patient().download_from_container(id, Some(opts));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.err(e))?;
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)
    }

    /// Makes the layer of the `keep` folders (one absolute path per line)
    /// of container `id` and loads it on top of the container's image as
    /// `step.tag`.
    async fn commit_layer(
        &self,
        id: &str,
        step: &BuildStep<'_>,
        keep: &str,
        out_tar: PathBuf,
    ) -> Result<Vec<KeptFolder>, DockerError> {
        let mut folders: Vec<&str> = keep
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && *l != step.out_dir)
            .collect();
        folders.insert(0, step.out_dir);
        let mut downloads = Vec::new();
        for (i, folder) in folders.iter().enumerate() {
            let p = Path::new(folder);
            let parent = p.parent().map(|p| p.to_string_lossy().into_owned());
            let plain = p.is_absolute()
                && p.components()
                    .skip(1)
                    .all(|c| matches!(c, Component::Normal(_)));
            let (Some(parent), true) = (parent, plain) else {
                return Err(DockerError::Engine(format!(
                    "the build step named {folder:?} for the image: only absolute folders below / can be kept"
                )));
            };
            let out = if i == 0 {
                out_tar.clone()
            } else {
                let out = step.scratch.join(format!("keep{i}.tar"));
                self.download_to(id, folder, &out).await?;
                out
            };
            downloads.push((out, parent));
        }
        tracing::debug!("build step: downloaded the kept folders");
        let parent = self.parent_facts(&step.spec.image).await?;
        let layer = step.scratch.join("layer.tar");
        let archive = step.scratch.join("image.tar");
        let (settings, tag) = (step.image.clone(), step.tag.to_string());
        let (layer_file, archive_file) = (layer.clone(), archive.clone());
        let kept = folders
            .iter()
            .zip(&downloads)
            .map(|(folder, (tar, _))| KeptFolder {
                folder: folder.to_string(),
                tar: tar.clone(),
            })
            .collect();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let pairs: Vec<(&Path, &str)> = downloads
                .iter()
                .map(|(f, p)| (f.as_path(), p.as_str()))
                .collect();
            let digest = image_tar::write_layer(&pairs, &layer_file)?;
            let config = image_tar::config_json(&parent, &digest, &settings);
            image_tar::write_load_archive(
                &config,
                &parent.diff_ids,
                &layer_file,
                &tag,
                &archive_file,
            )
        })
        .await
        .map_err(|e| DockerError::Engine(format!("making the image was interrupted: {e}")))?
        .map_err(|e| DockerError::Engine(format!("making the image's layer failed: {e}")))?;
        let _ = tokio::fs::remove_file(&layer).await;
        tracing::debug!("build step: wrote the layer");
        self.load(&archive).await?;
        tracing::debug!("build step: loaded");
        let _ = tokio::fs::remove_file(&archive).await;
        if !self.image_exists(step.tag).await? {
            return Err(DockerError::Engine(format!(
                "the engine loaded the image but has no {}",
                step.tag
            )));
        }
        Ok(kept)
    }

    /// What a new image on top of `image` takes from it.
    async fn parent_facts(&self, image: &str) -> Result<image_tar::Parent, DockerError> {
        let i = self
            .inner
            .inspect_image(image)
            .await
            .map_err(|e| self.err(e))?;
        let config = i.config.unwrap_or_default();
        Ok(image_tar::Parent {
            diff_ids: i.root_fs.and_then(|r| r.layers).unwrap_or_default(),
            env: config.env.unwrap_or_default(),
            labels: config.labels.unwrap_or_default().into_iter().collect(),
            architecture: i.architecture.unwrap_or_else(|| "amd64".into()),
            os: i.os.unwrap_or_else(|| "linux".into()),
        })
    }

    /// `docker load` of the archive file `archive`.
    async fn load(&self, archive: &Path) -> Result<(), DockerError> {
        let body = bollard::body_try_stream(file_stream(archive).await?);
        let opts = bollard::query_parameters::ImportImageOptionsBuilder::new()
            .quiet(true)
            .build();
        let mut stream = self.patient().import_image(opts, body, None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| self.err(e))?;
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                return Err(DockerError::Engine(format!(
                    "loading the image failed: {detail}"
                )));
            }
        }
        Ok(())
    }

    async fn run_created(
        &self,
        id: &str,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<i64, DockerError> {
        self.inner
            .start_container(id, None)
            .await
            .map_err(|e| self.err(e))?;
        let client = self.patient();
        // Logs are kept until the container is removed, so following them after
        // the start loses nothing; the stream ends when the container stops.
        let opts = LogsOptionsBuilder::new()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .build();
        let mut logs = client.logs(id, Some(opts));
        let mut out = Lines::default();
        let mut err = Lines::default();
        while let Some(item) = logs.next().await {
            let item = item.map_err(|e| self.err(e))?;
            let lines = match item {
                bollard::container::LogOutput::StdErr { message } => err.push(&message),
                other => out.push(&other.into_bytes()),
            };
            for line in lines {
                on_line(&line);
            }
        }
        for line in [out.finish(), err.finish()].into_iter().flatten() {
            on_line(&line);
        }
        self.wait_exit(&client, id).await
    }

    /// Waits until the container is not running and returns its exit code.
    async fn wait_exit(&self, client: &bollard::Docker, id: &str) -> Result<i64, DockerError> {
        let opts = WaitContainerOptionsBuilder::new()
            .condition("not-running")
            .build();
        let mut wait = client.wait_container(id, Some(opts));
        match wait.next().await {
            Some(Ok(resp)) => Ok(resp.status_code),
            // bollard turns non-zero exit codes into errors.
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(self.err(e)),
            None => Err(DockerError::Engine(format!(
                "waiting for container {id} ended without an exit code"
            ))),
        }
    }

    /// Creates a container with a terminal and open stdin, attaches to it,
    /// starts it and sizes its terminal (`cols` × `rows`). The container is
    /// removed when the returned [`Attached`] is dropped; [`Self::finish_attached`]
    /// waits for its exit code first.
    pub async fn start_attached(
        &self,
        spec: &ContainerSpec,
        cols: u16,
        rows: u16,
    ) -> Result<Attached, DockerError> {
        let mut body = Self::create_body(spec);
        body.tty = Some(true);
        body.open_stdin = Some(true);
        body.stdin_once = Some(true);
        body.attach_stdin = Some(true);
        body.attach_stdout = Some(true);
        body.attach_stderr = Some(true);
        let mut opts = CreateContainerOptionsBuilder::new();
        if let Some(name) = &spec.name {
            opts = opts.name(name);
        }
        let id = self
            .inner
            .create_container(Some(opts.build()), body)
            .await
            .map_err(|e| self.err(e))?
            .id;
        let guard = RemoveOnDrop {
            docker: self.inner.clone(),
            id: Some(id.clone()),
        };
        // Attached before the start, so no early output is lost.
        let attach = AttachContainerOptionsBuilder::new()
            .stream(true)
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .build();
        let results = self
            .patient()
            .attach_container(&id, Some(attach))
            .await
            .map_err(|e| self.err(e))?;
        self.inner
            .start_container(&id, None)
            .await
            .map_err(|e| self.err(e))?;
        if let Err(e) = self.resize_tty(&id, cols, rows).await {
            tracing::debug!(container = %id, "sizing the terminal: {e}");
        }
        let this = self.clone();
        let output = results
            .output
            .map(move |item| item.map(|o| o.into_bytes()).map_err(|e| this.err(e)))
            .boxed();
        Ok(Attached {
            id,
            output,
            input: results.input,
            _guard: guard,
        })
    }

    /// Resizes the terminal of a container started by [`Self::start_attached`].
    pub async fn resize_tty(&self, id: &str, cols: u16, rows: u16) -> Result<(), DockerError> {
        let opts = ResizeContainerTTYOptionsBuilder::new()
            .w(cols.max(1) as i32)
            .h(rows.max(1) as i32)
            .build();
        self.inner
            .resize_container_tty(id, opts)
            .await
            .map_err(|e| self.err(e))
    }

    /// Waits for an attached container's exit code, then removes it.
    pub async fn finish_attached(&self, attached: Attached) -> Result<i64, DockerError> {
        let code = self.wait_exit(&self.patient(), &attached.id).await;
        let _ = self.force_remove(&attached.id).await;
        code
    }

    /// The container's IP address on a network.
    pub async fn container_ip(&self, id: &str, network: &str) -> Result<IpAddr, DockerError> {
        let info = self
            .inner
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.err(e))?;
        let ip = info
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut nets| nets.remove(network))
            .and_then(|ep| ep.ip_address)
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| {
                DockerError::NotFound(format!(
                    "container {id} has no IP address on network {network}"
                ))
            })?;
        ip.parse().map_err(|_| {
            DockerError::Engine(format!(
                "container {id} has an unreadable IP address on network {network}: {ip}"
            ))
        })
    }

    /// The container's state; a container the engine does not know is `Missing`.
    pub async fn container_state(&self, id: &str) -> Result<ContainerState, DockerError> {
        let info = match self
            .inner
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(info) => info,
            Err(e) if is_status(&e, 404) => return Ok(ContainerState::Missing),
            Err(e) => return Err(self.err(e)),
        };
        let Some(state) = info.state else {
            return Ok(ContainerState::Other("unknown".into()));
        };
        Ok(match state.status {
            Some(ContainerStateStatusEnum::RUNNING) => ContainerState::Running,
            Some(ContainerStateStatusEnum::RESTARTING) => ContainerState::Restarting,
            Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
            Some(ContainerStateStatusEnum::EXITED) => ContainerState::Exited {
                code: state.exit_code.unwrap_or(-1),
            },
            Some(other) => ContainerState::Other(other.to_string()),
            None => ContainerState::Other("unknown".into()),
        })
    }

    /// How often the engine has restarted the container (its restart
    /// policy after a crash); 0 for a missing container.
    pub async fn restart_count(&self, id: &str) -> Result<i64, DockerError> {
        match self
            .inner
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(info) => Ok(info.restart_count.unwrap_or(0)),
            Err(e) if is_status(&e, 404) => Ok(0),
            Err(e) => Err(self.err(e)),
        }
    }

    /// One reading of the container's memory and CPU counters, without
    /// waiting for the engine's second sample (`one-shot`: answers at once,
    /// so `precpu` is empty; see [`ContainerStats::cpu_percent`]).
    pub async fn stats_once(&self, id: &str) -> Result<ContainerStats, DockerError> {
        let opts = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let mut s = self.inner.stats(id, Some(opts));
        let r = match s.next().await {
            Some(Ok(r)) => r,
            Some(Err(e)) => return Err(self.err(e)),
            None => return Err(DockerError::Engine(format!("no stats for container {id}"))),
        };
        let mem = r.memory_stats.unwrap_or_default();
        let usage = mem.usage.unwrap_or(0);
        let memory_bytes = match &mem.stats {
            Some(stats) => memory_without_cache(usage, stats),
            None => usage,
        };
        let precpu = r
            .precpu_stats
            .as_ref()
            .map(cpu_reading)
            .filter(|p| p.system_ns > 0);
        Ok(ContainerStats {
            memory_bytes,
            memory_limit: mem.limit.unwrap_or(0),
            cpu: r.cpu_stats.as_ref().map(cpu_reading).unwrap_or_default(),
            precpu,
        })
    }

    /// The last `n` lines of the container's output (stdout and stderr).
    pub async fn logs_tail(&self, id: &str, n: usize) -> Result<Vec<String>, DockerError> {
        let lines: Vec<String> = self.follow_or_tail(id, n, false).try_collect().await?;
        // The engine counts lines per stream record; trim to what was asked for.
        let skip = lines.len().saturating_sub(n);
        Ok(lines.into_iter().skip(skip).collect())
    }

    /// The last `tail` lines of the container's output, then every new line as
    /// it comes, until the container stops.
    pub fn follow_logs(
        &self,
        id: &str,
        tail: usize,
    ) -> impl Stream<Item = Result<String, DockerError>> + Send + 'static {
        self.follow_or_tail(id, tail, true)
    }

    fn follow_or_tail(
        &self,
        id: &str,
        tail: usize,
        follow: bool,
    ) -> impl Stream<Item = Result<String, DockerError>> + Send + 'static {
        let opts = LogsOptionsBuilder::new()
            .follow(follow)
            .stdout(true)
            .stderr(true)
            .tail(&tail.to_string())
            .build();
        let client = if follow {
            self.patient()
        } else {
            self.inner.clone()
        };
        let logs = client.logs(id, Some(opts)).boxed();
        let this = self.clone();
        struct State<S> {
            logs: S,
            out: Lines,
            err: Lines,
            queue: VecDeque<Result<String, DockerError>>,
            done: bool,
        }
        let state = State {
            logs,
            out: Lines::default(),
            err: Lines::default(),
            queue: VecDeque::new(),
            done: false,
        };
        futures_util::stream::unfold(state, move |mut st| {
            let this = this.clone();
            async move {
                loop {
                    if let Some(item) = st.queue.pop_front() {
                        return Some((item, st));
                    }
                    if st.done {
                        return None;
                    }
                    match st.logs.next().await {
                        Some(Ok(bollard::container::LogOutput::StdErr { message })) => {
                            st.queue.extend(st.err.push(&message).into_iter().map(Ok));
                        }
                        Some(Ok(other)) => {
                            st.queue
                                .extend(st.out.push(&other.into_bytes()).into_iter().map(Ok));
                        }
                        Some(Err(e)) => {
                            st.done = true;
                            st.queue.push_back(Err(this.err(e)));
                        }
                        None => {
                            st.done = true;
                            st.queue.extend(
                                [st.out.finish(), st.err.finish()]
                                    .into_iter()
                                    .flatten()
                                    .map(Ok),
                            );
                        }
                    }
                }
            }
        })
    }

    /// The IPv4 subnets of a network, e.g. `172.18.0.0/16`.
    pub async fn network_subnets(&self, name: &str) -> Result<Vec<String>, DockerError> {
        let info = self
            .inner
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(info
            .ipam
            .and_then(|i| i.config)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| c.subnet)
            .filter(|s| s.contains('.'))
            .collect())
    }

    /// Sends a signal (e.g. `SIGHUP`) to a running container's main process.
    pub async fn signal(&self, container: &str, signal: &str) -> Result<(), DockerError> {
        let opts = bollard::query_parameters::KillContainerOptionsBuilder::new()
            .signal(signal)
            .build();
        self.inner
            .kill_container(container, Some(opts))
            .await
            .map_err(|e| self.err(e))
    }

    /// Removes a network by name; one that is gone already is fine.
    pub async fn remove_network(&self, name: &str) -> Result<(), DockerError> {
        match self.inner.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Stops a container (SIGTERM, up to `grace`, then SIGKILL) and keeps it,
    /// logs included. Stopped or gone already is fine.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        let secs = grace.as_secs().min(i32::MAX as u64) as i32;
        let opts = StopContainerOptionsBuilder::new().t(secs).build();
        match self.patient().stop_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 404) || is_status(&e, 304) => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Stops a container (SIGTERM, up to `grace`, then SIGKILL) and removes it.
    /// A container that is already gone is fine.
    pub async fn stop_and_remove(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        let secs = grace.as_secs().min(i32::MAX as u64) as i32;
        let opts = StopContainerOptionsBuilder::new().t(secs).build();
        match self.patient().stop_container(id, Some(opts)).await {
            Ok(()) => {}
            Err(e) if is_status(&e, 404) => return Ok(()),
            // 304: already stopped; anything else: removal with force still kills it.
            Err(e) => match self.err(e) {
                e @ DockerError::Unreachable { .. } => return Err(e),
                other => {
                    tracing::debug!(container = %id, "stop before remove: {other}");
                }
            },
        }
        self.force_remove(id).await
    }

    /// Creates (without starting) a throw-away container from `image`.
    async fn scratch_container(&self, image: &str) -> Result<(String, RemoveOnDrop), DockerError> {
        let spec = ContainerSpec {
            image: image.to_string(),
            // Never started; a command only keeps images without CMD creatable.
            cmd: Some(vec!["true".to_string()]),
            labels: vec![("paas.scratch".to_string(), "true".to_string())],
            ..Default::default()
        };
        let id = self.create(&spec).await?;
        let guard = RemoveOnDrop {
            docker: self.inner.clone(),
            id: Some(id.clone()),
        };
        Ok((id, guard))
    }

    /// Downloads `path` of the image as a tar archive (in memory).
    async fn download(&self, image: &str, path: &str) -> Result<Vec<u8>, DockerError> {
        let (id, mut guard) = self.scratch_container(image).await?;
        let opts = DownloadFromContainerOptionsBuilder::new()
            .path(path)
            .build();
        let result: Result<Vec<u8>, DockerError> = async {
            let mut tar = Vec::new();
            let mut stream = self.patient().download_from_container(&id, Some(opts));
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| match self.err(e) {
                    DockerError::NotFound(m) => {
                        DockerError::NotFound(format!("{path} in image {image} ({m})"))
                    }
                    other => other,
                })?;
                tar.extend_from_slice(&chunk);
            }
            Ok(tar)
        }
        .await;
        let _ = self.force_remove(&id).await;
        guard.disarm();
        result
    }

    /// Copies the CONTENTS of directory `path` in `image` into `dest` (which is
    /// created if needed). Absolute or escaping symlinks are skipped.
    pub async fn copy_from_image(
        &self,
        image: &str,
        path: &str,
        dest: &Path,
    ) -> Result<(), DockerError> {
        let tar = self.download(image, path).await?;
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || unpack_stripped(&tar, &dest))
            .await
            .map_err(|e| DockerError::Engine(format!("unpacking was interrupted: {e}")))?
            .map_err(|e| DockerError::Engine(format!("unpacking {path} from {image} failed: {e}")))
    }

    /// The contents of one regular file in `image`.
    pub async fn read_file_from_image(
        &self,
        image: &str,
        path: &str,
    ) -> Result<Vec<u8>, DockerError> {
        let tar = self.download(image, path).await?;
        first_file(&tar).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                DockerError::NotFound(format!("{path} in image {image}"))
            }
            _ => DockerError::Engine(format!("reading {path} from image {image} failed: {e}")),
        })
    }

    /// Containers in any state carrying all the given labels.
    pub async fn list_containers(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<ContainerInfo>, DockerError> {
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&label_filters(labels))
            .build();
        let list = self
            .inner
            .list_containers(Some(opts))
            .await
            .map_err(|e| self.err(e))?;
        Ok(list
            .into_iter()
            .map(|c| ContainerInfo {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                labels: c.labels.unwrap_or_default(),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                image: c.image.unwrap_or_default(),
                status: c.status.unwrap_or_default(),
                created: c.created.unwrap_or_default(),
            })
            .collect())
    }

    /// Images carrying all the given labels.
    pub async fn list_images(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<ImageInfo>, DockerError> {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        self.list_images_where(&ImageFilter {
            labels: &labels,
            ..Default::default()
        })
        .await
    }

    /// Images matching every condition of `filter`.
    pub async fn list_images_where(
        &self,
        filter: &ImageFilter<'_>,
    ) -> Result<Vec<ImageInfo>, DockerError> {
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        if !filter.labels.is_empty() {
            filters.insert(
                "label".into(),
                filter.labels.iter().map(|l| l.to_string()).collect(),
            );
        }
        if let Some(reference) = filter.reference {
            filters.insert("reference".into(), vec![reference.to_string()]);
        }
        if filter.dangling {
            filters.insert("dangling".into(), vec!["true".into()]);
        }
        let opts = ListImagesOptionsBuilder::new().filters(&filters).build();
        let list = self
            .inner
            .list_images(Some(opts))
            .await
            .map_err(|e| self.err(e))?;
        Ok(list
            .into_iter()
            .map(|i| ImageInfo {
                id: i.id,
                tags: i
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .collect(),
                labels: i.labels,
                created: i.created,
                size: i.size,
            })
            .collect())
    }

    /// Removes an image (a tag, or an untagged image by id) unless a
    /// container uses it: `Ok(false)` then. Gone already counts as removed.
    pub async fn remove_image_if_unused(&self, image: &str) -> Result<bool, DockerError> {
        let opts = RemoveImageOptionsBuilder::new().force(false).build();
        match self.inner.remove_image(image, Some(opts), None).await {
            Ok(_) => Ok(true),
            Err(e) if is_status(&e, 404) => Ok(true),
            Err(e) if is_status(&e, 409) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Bytes of a container's log files on the host (the json-file log and
    /// its rotated copies beside it); 0 when its driver keeps none.
    pub async fn container_log_bytes(&self, id: &str) -> Result<u64, DockerError> {
        let c = self
            .inner
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.err(e))?;
        let Some(path) = c.log_path.filter(|p| !p.is_empty()) else {
            return Ok(0);
        };
        Ok(
            tokio::task::spawn_blocking(move || rotated_files_bytes(Path::new(&path)))
                .await
                .unwrap_or(0),
        )
    }
}

/// Bytes of a log file and its rotated copies (`x.log`, `x.log.1`, …).
fn rotated_files_bytes(path: &Path) -> u64 {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return 0;
    };
    let name = name.to_string_lossy().to_string();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n == name
                || n.strip_prefix(&name)
                    .is_some_and(|rest| rest.starts_with('.'))
        })
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Returns the build context with `LABEL` appended to its Dockerfile, or
/// `None` when that is not safe (gzipped context, no such Dockerfile, label
/// text that would need escaping): the caller then passes the labels as build
/// options. The new Dockerfile is appended as a later archive entry of the same
/// path, which wins when the engine unpacks the context.
/// The classic builder's options for one build: tag, labels, network and
/// the limits of every RUN step.
fn build_options(
    dockerfile: &str,
    tag: &str,
    labels: &HashMap<String, String>,
    network_mode: Option<&str>,
    limits: BuildLimits,
) -> BuildImageOptions {
    let mut opts = BuildImageOptionsBuilder::new()
        .dockerfile(dockerfile)
        .t(tag)
        .rm(true)
        .forcerm(true)
        .cpushares(BUILD_CPU_SHARES);
    if !labels.is_empty() {
        opts = opts.labels(labels);
    }
    if let Some(mode) = network_mode {
        opts = opts.networkmode(mode);
    }
    if let Some(bytes) = limits.memory_bytes {
        // memswap = memory: no swap on top, a step that needs more fails.
        let bytes = i32::try_from(bytes).unwrap_or(i32::MAX);
        opts = opts.memory(bytes).memswap(bytes);
    }
    if let Some(nano) = limits.nano_cpus {
        let quota = i32::try_from(nano / 10_000).unwrap_or(i32::MAX).max(1_000);
        opts = opts.cpuperiod(BUILD_CPU_PERIOD).cpuquota(quota);
    }
    opts.build()
}

fn label_dockerfile(
    context: &[u8],
    dockerfile: &str,
    labels: &HashMap<String, String>,
) -> Option<Vec<u8>> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| {
                c.is_ascii_alphanumeric()
                    || matches!(c, '.' | '-' | '_' | '/' | ':' | '@' | '+' | '=' | ',' | ' ')
            })
    };
    if labels.is_empty()
        || !labels
            .iter()
            .all(|(k, v)| plain(k) && (v.is_empty() || plain(v)))
        || context.starts_with(&[0x1f, 0x8b])
    {
        return None;
    }
    let want = normalise(Path::new(dockerfile));
    let mut archive = tar::Archive::new(context);
    let mut end = 0u64;
    let mut found: Option<(Vec<u8>, tar::Header)> = None;
    for entry in archive.entries().ok()? {
        let mut entry = entry.ok()?;
        let size = entry.header().entry_size().ok()?;
        end = entry.raw_file_position() + size.div_ceil(512) * 512;
        if entry.header().entry_type().is_file() && normalise(&entry.path().ok()?) == want {
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut body).ok()?;
            found = Some((body, entry.header().clone()));
        }
    }
    let (mut body, old_header) = found?;
    let mut keys: Vec<_> = labels.iter().collect();
    keys.sort();
    if !body.is_empty() && !body.ends_with(b"\n") {
        body.push(b'\n');
    }
    body.extend_from_slice(b"LABEL");
    for (k, v) in keys {
        body.extend_from_slice(format!(" \"{k}\"=\"{v}\"").as_bytes());
    }
    body.push(b'\n');
    let mut header = tar::Header::new_gnu();
    header.set_mode(old_header.mode().unwrap_or(0o644));
    header.set_mtime(old_header.mtime().unwrap_or(0));
    header.set_size(body.len() as u64);
    let mut out = tar::Builder::new(context.get(..end as usize)?.to_vec());
    out.append_data(&mut header, &want, body.as_slice()).ok()?;
    out.into_inner().ok()
}

/// `./a//b` → `a/b`.
fn normalise(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

/// Drops ANSI escape sequences (the classic builder paints a step's stderr red).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, then one final byte in @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Unpacks a tar archive into `dest`, dropping each entry's first path
/// component (the directory that was asked for).
/// The file at `path` as a stream for a request body, read as it is sent:
/// an archive is never held in memory whole.
async fn file_stream(
    path: &Path,
) -> Result<tokio_util::io::ReaderStream<tokio::fs::File>, DockerError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| DockerError::Engine(format!("cannot open {}: {e}", path.display())))?;
    Ok(tokio_util::io::ReaderStream::with_capacity(
        file,
        256 * 1024,
    ))
}

/// The contents of the first entry of `tar`, which must be a regular file
/// (a download of one file); NotFound when the archive is empty.
fn first_file(tar: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut archive = tar::Archive::new(tar);
    let mut entries = archive.entries()?;
    let Some(entry) = entries.next() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the archive is empty",
        ));
    };
    let mut entry = entry?;
    if !entry.header().entry_type().is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut data)?;
    Ok(data)
}

fn unpack_stripped(tar: &[u8], dest: &Path) -> std::io::Result<()> {
    unpack_below(tar, None, dest)
}

/// Unpacks the entries of the archive `tar` found below `top` (a folder
/// inside the archive, as `app/static`; `None`: whatever its first
/// component is) into `dest`. Entries with unsafe paths, and symlinks
/// pointing out of the folder, are left out.
pub fn unpack_below(
    tar: impl std::io::Read,
    top: Option<&Path>,
    dest: &Path,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dest)?;
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let Some(rel) = strip_top(&path, top) else {
            continue;
        };
        let target = dest.join(&rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match entry.header().entry_type() {
            tar::EntryType::Symlink => {
                let link = entry.link_name()?.map(|l| l.into_owned());
                let safe = link.as_deref().is_some_and(|l| {
                    l.components()
                        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
                });
                if !safe {
                    tracing::warn!(path = %path.display(), "skipping a symlink that points outside the copied directory");
                    continue;
                }
                let _ = std::fs::remove_file(&target);
                entry.unpack(&target)?;
            }
            tar::EntryType::Link => {
                // Hard link to an earlier entry of the same archive.
                let Some(src) = entry.link_name()?.and_then(|l| strip_top(&l, top)) else {
                    continue;
                };
                let _ = std::fs::remove_file(&target);
                let src = dest.join(src);
                if std::fs::hard_link(&src, &target).is_err() {
                    std::fs::copy(&src, &target)?;
                }
            }
            _ => {
                entry.unpack(&target)?;
            }
        }
    }
    Ok(())
}

/// The regular files `names` (relative to the archive's top folder) of the
/// tar file `tar`, in that order; `None` for those it lacks.
fn files_in_tar(tar: &Path, names: &[&str]) -> std::io::Result<Vec<Option<Vec<u8>>>> {
    use std::io::Read;
    let mut found = vec![None; names.len()];
    let mut archive = tar::Archive::new(std::io::BufReader::new(std::fs::File::open(tar)?));
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let Some(rel) = strip_first(&entry.path()?) else {
            continue;
        };
        if let Some(i) = names.iter().position(|n| rel == Path::new(n)) {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            found[i] = Some(bytes);
        }
    }
    Ok(found)
}

/// `top/a/b` → `a/b`; `None` for the top entry itself or unsafe paths.
fn strip_first(path: &Path) -> Option<PathBuf> {
    strip_top(path, None)
}

/// `path` below the folder `top` of an archive (`None`: its first
/// component), relative to it; `None` for `top` itself, paths elsewhere
/// and unsafe paths.
fn strip_top(path: &Path, top: Option<&Path>) -> Option<PathBuf> {
    let mut comps = path
        .components()
        .filter(|c| !matches!(c, Component::CurDir));
    match top {
        None => {
            comps.next()?;
        }
        Some(top) => {
            for want in top.components().filter(|c| !matches!(c, Component::CurDir)) {
                if !matches!(want, Component::Normal(_)) || comps.next()? != want {
                    return None;
                }
            }
        }
    }
    let mut rel = PathBuf::new();
    for c in comps {
        match c {
            Component::Normal(p) => rel.push(p),
            _ => return None,
        }
    }
    (!rel.as_os_str().is_empty()).then_some(rel)
}

#[cfg(test)]
mod tests {
    //! These talk to the real engine and need the offline base image
    //! `python:3.11-slim` (made by `sudo bash tests/setup.sh`).
    use super::*;
    use std::io::{Read, Write};

    const BASE: &str = "python:3.11-slim";
    const TEST_LABEL: &str = "paas.test";

    /// A unique id for one test; everything it creates carries
    /// `paas.test=<id>` and is removed by label when this is dropped.
    struct Scope {
        id: String,
    }

    impl Scope {
        fn new(what: &str) -> Scope {
            Scope {
                id: format!("{what}-{:08x}", rand::random::<u32>()),
            }
        }

        fn labels(&self) -> Vec<(String, String)> {
            vec![(TEST_LABEL.to_string(), self.id.clone())]
        }
    }

    impl Drop for Scope {
        fn drop(&mut self) {
            let id = self.id.clone();
            // Runs on its own runtime: Drop cannot await.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let Ok(d) = Docker::connect() else { return };
                    let by = [(TEST_LABEL, id.as_str())];
                    for c in d.list_containers(&by).await.unwrap_or_default() {
                        let _ = d.force_remove(&c.id).await;
                    }
                    for i in d.list_images(&by).await.unwrap_or_default() {
                        let opts = RemoveImageOptionsBuilder::new().force(true).build();
                        let _ = d.inner.remove_image(&i.id, Some(opts), None).await;
                    }
                    let opts = bollard::query_parameters::ListNetworksOptionsBuilder::new()
                        .filters(&label_filters(&by))
                        .build();
                    for n in d.inner.list_networks(Some(opts)).await.unwrap_or_default() {
                        if let Some(nid) = n.id {
                            let _ = d.inner.remove_network(&nid).await;
                        }
                    }
                });
            })
            .join();
        }
    }

    async fn engine() -> Docker {
        let d = Docker::connect().expect("connect to Docker");
        if let Err(e) = d.ping().await {
            panic!("these tests need the Docker engine: {e}");
        }
        assert!(
            d.image_exists(BASE).await.expect("inspect base image"),
            "the offline base image {BASE} is missing: run sudo bash tests/setup.sh"
        );
        d
    }

    fn context(files: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, body) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, body.as_bytes()).expect("tar");
        }
        b.into_inner().expect("tar")
    }

    fn sh(script: &str) -> Option<Vec<String>> {
        Some(vec!["sh".into(), "-c".into(), script.into()])
    }

    #[test]
    fn confinement_maps_to_the_engines_host_config() {
        let spec = ContainerSpec {
            image: BASE.into(),
            memory_bytes: Some(512 << 20),
            nano_cpus: Some(1_500_000_000),
            pids_limit: Some(256),
            capabilities: Some(Vec::new()),
            no_new_privileges: true,
            user: Some("10001:10001".into()),
            ..Default::default()
        };
        let body = Docker::create_body(&spec);
        assert_eq!(body.user.as_deref(), Some("10001:10001"));
        let h = body.host_config.unwrap();
        assert_eq!(h.memory, Some(512 << 20));
        assert_eq!(h.nano_cpus, Some(1_500_000_000));
        assert_eq!(h.pids_limit, Some(256));
        assert_eq!(h.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(h.cap_add, None, "nothing added back");
        assert_eq!(
            h.security_opt,
            Some(vec!["no-new-privileges:true".to_string()])
        );
        let log = h.log_config.unwrap();
        assert_eq!(log.typ.as_deref(), Some("json-file"));
        let opts = log.config.unwrap();
        assert_eq!(opts.get("max-size").map(String::as_str), Some("10m"));
        assert_eq!(opts.get("max-file").map(String::as_str), Some("3"));

        // Some capabilities back (the PostgreSQL server's way).
        let h = Docker::create_body(&ContainerSpec {
            capabilities: Some(vec!["CHOWN".into(), "SETUID".into()]),
            ..spec.clone()
        })
        .host_config
        .unwrap();
        assert_eq!(h.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(h.cap_add, Some(vec!["CHOWN".to_string(), "SETUID".into()]));

        // Nothing asked: the engine's defaults, but logs still rotate.
        let h = Docker::create_body(&ContainerSpec {
            image: BASE.into(),
            ..Default::default()
        })
        .host_config
        .unwrap();
        assert_eq!((h.cap_drop, h.cap_add, h.security_opt), (None, None, None));
        assert_eq!((h.pids_limit, h.nano_cpus, h.memory), (None, None, None));
        assert!(h
            .log_config
            .unwrap()
            .config
            .unwrap()
            .contains_key("max-size"));
    }

    #[test]
    fn build_limits_map_to_the_classic_builders_options() {
        let limits = BuildLimits {
            memory_bytes: Some(768 << 20),
            nano_cpus: Some(500_000_000),
        };
        let o = build_options("Dockerfile", "paas/x:v1", &HashMap::new(), None, limits);
        assert_eq!(o.memory, Some(768 << 20));
        assert_eq!(o.memswap, Some(768 << 20), "no swap on top");
        assert_eq!(o.cpuperiod, Some(100_000));
        assert_eq!(o.cpuquota, Some(50_000), "half a CPU");
        assert_eq!(o.cpushares, Some(512), "live apps weigh more");
        assert!(o.rm && o.forcerm);
        assert_eq!(o.t.as_deref(), Some("paas/x:v1"));

        let o = build_options("D", "t", &HashMap::new(), Some("host"), Default::default());
        assert_eq!((o.memory, o.memswap, o.cpuquota), (None, None, None));
        assert_eq!(o.networkmode.as_deref(), Some("host"));
        // Past the API's 2 GiB: clamped, never wrapped to a negative number.
        let o = build_options(
            "D",
            "t",
            &HashMap::new(),
            None,
            BuildLimits {
                memory_bytes: Some(8 << 30),
                nano_cpus: None,
            },
        );
        assert_eq!(o.memory, Some(i32::MAX));
    }

    /// The limits hold in a real container: no capability, no new
    /// privileges, and a fork loop stops at the pids limit.
    #[tokio::test]
    async fn a_confined_container_has_no_capabilities_and_stops_forking_at_its_limit() {
        let d = engine().await;
        let scope = Scope::new("confined");
        let script = [
            "import os, time",
            "for l in open('/proc/self/status'):",
            "    if l.startswith(('CapEff', 'CapBnd', 'NoNewPrivs')): print(' '.join(l.split()))",
            "n = 0",
            "try:",
            "    while n < 500:",
            "        if os.fork() == 0:",
            "            time.sleep(5); os._exit(0)",
            "        n += 1",
            "except OSError as e:",
            "    print('fork refused after', n, 'children:', e.strerror)",
        ]
        .join("\n");
        let spec = ContainerSpec {
            image: BASE.into(),
            cmd: Some(vec!["python3".into(), "-c".into(), script]),
            labels: scope.labels(),
            pids_limit: Some(40),
            nano_cpus: Some(500_000_000),
            capabilities: Some(Vec::new()),
            no_new_privileges: true,
            user: Some("10001:10001".into()),
            ..Default::default()
        };
        let mut lines = Vec::new();
        let code = d
            .run_to_completion(&spec, Duration::from_secs(120), &mut |l| {
                lines.push(l.trim_end().to_string())
            })
            .await
            .unwrap();
        assert_eq!(code, 0, "{lines:?}");
        assert!(
            lines.contains(&"CapEff: 0000000000000000".into()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"CapBnd: 0000000000000000".into()),
            "{lines:?}"
        );
        assert!(lines.contains(&"NoNewPrivs: 1".into()), "{lines:?}");
        let refused = lines
            .iter()
            .find_map(|l| l.strip_prefix("fork refused after "))
            .unwrap_or_else(|| panic!("the fork loop was never stopped: {lines:?}"));
        let n: u32 = refused.split(' ').next().unwrap().parse().unwrap();
        assert!((30..40).contains(&n), "{refused}");
    }

    /// Every RUN step of a build sees the build's memory and CPU limits.
    #[tokio::test]
    async fn build_steps_run_under_the_build_limits() {
        let d = engine().await;
        let scope = Scope::new("buildlimits");
        let tag = format!("paas-test/{}:v1", scope.id);
        // The scope's id keeps the step out of the build cache.
        let dockerfile = format!(
            "FROM {BASE}\nRUN echo {id}; \
             echo mem $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max); \
             echo cpu $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max)\n",
            id = scope.id
        );
        let mut lines = Vec::new();
        d.build_image(
            BuildRequest {
                context: BuildContext::Memory(context(&[("Dockerfile", &dockerfile)])),
                dockerfile: "Dockerfile",
                tag: &tag,
                labels: scope.labels(),
                network_mode: None,
                limits: BuildLimits {
                    memory_bytes: Some(300 << 20),
                    nano_cpus: Some(500_000_000),
                },
            },
            &mut |l| lines.push(l.trim_end().to_string()),
        )
        .await
        .unwrap();
        let _ = d.remove_image(&tag).await;
        assert!(lines.contains(&format!("mem {}", 300 << 20)), "{lines:?}");
        assert!(lines.contains(&"cpu 50000".to_string()), "{lines:?}");
    }

    #[test]
    fn strips_ansi_colours() {
        assert_eq!(strip_ansi("\u{1b}[91mERROR: x"), "ERROR: x");
        assert_eq!(strip_ansi("\u{1b}[0mok\u{1b}[1;31m!"), "ok!");
        assert_eq!(strip_ansi("plain ✓"), "plain ✓");
    }

    #[test]
    fn appends_one_label_line_to_the_dockerfile() {
        let ctx = context(&[("./Dockerfile", "FROM x\nRUN y"), ("app.py", "print()\n")]);
        let labels = managed_labels([("paas.app".to_string(), "blog".to_string())]);
        let out = label_dockerfile(&ctx, "Dockerfile", &labels).expect("labelled");
        let mut archive = tar::Archive::new(out.as_slice());
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let mut body = String::new();
            e.read_to_string(&mut body).unwrap();
            seen.push((normalise(&e.path().unwrap()), body));
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert_eq!(seen[1].1, "print()\n");
        // The later entry of the same path wins when the engine unpacks it.
        assert_eq!(seen[2].0, PathBuf::from("Dockerfile"));
        assert_eq!(
            seen[2].1,
            "FROM x\nRUN y\nLABEL \"paas.app\"=\"blog\" \"paas.managed\"=\"true\"\n"
        );

        // Anything needing escapes, gzip, or a missing Dockerfile: build options instead.
        let odd = managed_labels([("k".to_string(), "a\"b$c".to_string())]);
        assert!(label_dockerfile(&ctx, "Dockerfile", &odd).is_none());
        assert!(label_dockerfile(&ctx, "other/Dockerfile", &labels).is_none());
        assert!(label_dockerfile(&[0x1f, 0x8b, 0, 0], "Dockerfile", &labels).is_none());
    }

    #[test]
    fn strips_the_top_directory() {
        assert_eq!(strip_first(Path::new("static/")), None);
        assert_eq!(
            strip_first(Path::new("static/css/a.css")),
            Some(PathBuf::from("css/a.css"))
        );
        assert_eq!(strip_first(Path::new("static/../x")), None);
    }

    #[test]
    fn unpack_below_takes_one_folder_of_an_archive_and_nothing_around_it() {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: &str, body: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append_data(&mut h, path, body).unwrap();
        };
        add("app/manage.py", b"code");
        add("app/static/css/site.css", b"css");
        add("app/staticfiles.json", b"{}");
        add("app/static2/x.css", b"no");
        let tar = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("static");
        unpack_below(tar.as_slice(), Some(Path::new("app/static")), &dest).unwrap();
        assert_eq!(std::fs::read(dest.join("css/site.css")).unwrap(), b"css");
        let mut names: Vec<_> = walk(&dest);
        names.sort();
        assert_eq!(names, ["css", "css/site.css"]);
        assert_eq!(
            strip_top(Path::new("app/static"), Some(Path::new("app/static"))),
            None
        );
        assert_eq!(
            strip_top(
                Path::new("app/static/../../etc"),
                Some(Path::new("app/static"))
            ),
            None
        );
    }

    fn walk(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![root.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                if p.is_dir() {
                    todo.push(p);
                }
            }
        }
        out
    }

    fn unix_client(path: &Path) -> Result<Docker, DockerError> {
        let client = bollard::Docker::connect_with_unix(
            path.to_str().unwrap(),
            5,
            bollard::API_DEFAULT_VERSION,
        );
        Docker::wrap(client, format!("unix://{}", path.display()))
    }

    fn assert_unreachable(err: DockerError, path: &Path) {
        let msg = err.to_string();
        assert!(matches!(err, DockerError::Unreachable { .. }), "{err:?}");
        let want = format!(
            "cannot reach the Docker engine at unix://{}",
            path.display()
        );
        assert!(msg.starts_with(&want), "{msg}");
        assert!(
            msg.ends_with("is it running? (systemctl start docker)"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn unreachable_engine_is_one_clear_sentence() {
        let dir = tempfile::tempdir().unwrap();
        // No socket at all: bollard notices at connect time.
        let missing = dir.path().join("missing.sock");
        assert_unreachable(unix_client(&missing).expect_err("no socket"), &missing);
        // A socket nobody listens on: ping notices.
        let dead = dir.path().join("dead.sock");
        drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
        let d = unix_client(&dead).expect("the socket file exists");
        assert_unreachable(d.ping().await.expect_err("nobody listens"), &dead);
        eprintln!("{}", d.ping().await.unwrap_err());
    }

    #[tokio::test]
    async fn builds_streams_labels_lists_and_copies_out() {
        let d = engine().await;
        let scope = Scope::new("build");
        let tag = format!("paas-test/{}:v1", scope.id);
        let dockerfile = format!(
            "FROM {BASE}\n\
             RUN echo build-marker-{id} \
                 && mkdir -p /app/static/css \
                 && echo body > /app/static/css/site.css \
                 && ln -s site.css /app/static/css/link.css \
                 && ln /app/static/css/site.css /app/static/css/hard.css \
                 && ln -s /etc/passwd /app/static/evil \
                 && mkdir -p /paas && echo '{{\"static_root\": \"/app/static\"}}' > /paas/meta.json\n",
            id = scope.id
        );
        let mut lines = Vec::new();
        let mut on_line = |l: &str| lines.push(l.to_string());
        d.build_image(
            BuildRequest {
                context: BuildContext::Memory(context(&[(".paas/Dockerfile", &dockerfile)])),
                dockerfile: ".paas/Dockerfile",
                tag: &tag,
                labels: [
                    scope.labels(),
                    vec![("paas.test.extra".into(), "yes".into())],
                ]
                .concat(),
                network_mode: Some("host"),
                limits: BuildLimits::default(),
            },
            &mut on_line,
        )
        .await
        .expect("build");
        let marker = format!("build-marker-{}", scope.id);
        assert!(
            lines.iter().any(|l| l == &marker),
            "the RUN output was not streamed line by line: {lines:?}"
        );
        // FROM, RUN and the one appended LABEL: no extra step per label.
        assert!(
            lines.iter().any(|l| l.starts_with("Step 1/3 : FROM")),
            "{lines:?}"
        );
        assert!(d.image_exists(&tag).await.unwrap());

        let images = d.list_images(&[(TEST_LABEL, &scope.id)]).await.unwrap();
        assert_eq!(images.len(), 1, "{images:?}");
        let img = &images[0];
        assert_eq!(img.tags, vec![tag.clone()]);
        assert_eq!(
            img.labels.get("paas.managed").map(String::as_str),
            Some("true")
        );
        assert_eq!(
            img.labels.get("paas.test.extra").map(String::as_str),
            Some("yes")
        );
        assert!(img.created > 0);

        // read_file_from_image
        let meta = d
            .read_file_from_image(&tag, "/paas/meta.json")
            .await
            .unwrap();
        assert_eq!(meta, b"{\"static_root\": \"/app/static\"}\n");
        let missing = d.read_file_from_image(&tag, "/nope.txt").await;
        assert!(
            matches!(missing, Err(DockerError::NotFound(_))),
            "{missing:?}"
        );

        // copy_from_image: the directory's contents, not the directory.
        let dest = tempfile::tempdir().unwrap();
        let out = dest.path().join("static");
        d.copy_from_image(&tag, "/app/static", &out).await.unwrap();
        let mut css = String::new();
        std::fs::File::open(out.join("css/site.css"))
            .unwrap()
            .read_to_string(&mut css)
            .unwrap();
        assert_eq!(css, "body\n");
        assert_eq!(
            std::fs::read_to_string(out.join("css/hard.css")).unwrap(),
            "body\n"
        );
        assert_eq!(
            std::fs::read_link(out.join("css/link.css")).unwrap(),
            PathBuf::from("site.css")
        );
        assert!(
            std::fs::symlink_metadata(out.join("evil")).is_err(),
            "an absolute symlink was copied out"
        );
        assert!(!out.join("static").exists());
        let gone = d.copy_from_image(&tag, "/no/such/dir", &out).await;
        assert!(matches!(gone, Err(DockerError::NotFound(_))), "{gone:?}");

        // The throw-away containers are gone.
        let scratch = d
            .list_containers(&[("paas.scratch", "true")])
            .await
            .unwrap();
        assert!(
            scratch.iter().all(|c| c.image != tag),
            "scratch containers left behind: {scratch:?}"
        );

        d.remove_image(&tag).await.unwrap();
        assert!(!d.image_exists(&tag).await.unwrap());
        d.remove_image(&tag)
            .await
            .expect("removing a missing image is fine");
    }

    #[tokio::test]
    async fn failing_build_reports_the_engine_message() {
        let d = engine().await;
        let scope = Scope::new("badbuild");
        let tag = format!("paas-test/{}:v1", scope.id);
        let dockerfile = format!(
            "FROM {BASE}\nRUN echo about-to-fail && sleep 0.3 && echo \"ERROR: no such package $((40+2))\" >&2 && exit 3\n"
        );
        let mut lines = Vec::new();
        let mut on_line = |l: &str| lines.push(l.to_string());
        let err = d
            .build_image(
                BuildRequest {
                    context: BuildContext::Memory(context(&[("Dockerfile", &dockerfile)])),
                    dockerfile: "Dockerfile",
                    tag: &tag,
                    labels: scope.labels(),
                    network_mode: None,
                    limits: BuildLimits::default(),
                },
                &mut on_line,
            )
            .await
            .expect_err("the build must fail");
        let DockerError::Build { message } = &err else {
            panic!("expected a Build error, got {err:?}");
        };
        assert!(message.contains("returned a non-zero code: 3"), "{message}");
        assert!(
            message.contains("(last output: ERROR: no such package 42)"),
            "{message}"
        );
        assert!(lines.iter().any(|l| l == "about-to-fail"), "{lines:?}");
        eprintln!("build error: {err}");
        assert!(!d.image_exists(&tag).await.unwrap());

        // A Dockerfile the engine refuses outright is a build error too.
        for (dockerfile, want) in [
            (
                format!("FROM {BASE}\nFROBNICATE now\n"),
                "unknown instruction",
            ),
            (format!("FROM {BASE}\n"), "Dockerfile"),
        ] {
            let path = if want == "Dockerfile" {
                "missing/Dockerfile"
            } else {
                "Dockerfile"
            };
            let err = d
                .build_image(
                    BuildRequest {
                        context: BuildContext::Memory(context(&[("Dockerfile", &dockerfile)])),
                        dockerfile: path,
                        tag: &tag,
                        labels: scope.labels(),
                        network_mode: None,
                        limits: BuildLimits::default(),
                    },
                    &mut |_| {},
                )
                .await
                .expect_err("the engine refuses it");
            let DockerError::Build { message } = &err else {
                panic!("expected a Build error, got {err:?}");
            };
            assert!(message.contains(want), "{message}");
            eprintln!("build error: {err}");
        }
        // forcerm: no intermediate container of the failed step stays behind.
        let left = d.list_containers(&[(TEST_LABEL, &scope.id)]).await.unwrap();
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test]
    async fn run_to_completion_streams_returns_the_code_and_removes() {
        let d = engine().await;
        let scope = Scope::new("run");
        let name = format!("paas-test-{}", scope.id);
        let spec = ContainerSpec {
            name: Some(name.clone()),
            image: BASE.into(),
            cmd: sh("echo hi; echo \"secret=$SECRET\"; echo oops >&2; exit 3"),
            env: vec![("SECRET".into(), "s3cr3t".into())],
            labels: scope.labels(),
            working_dir: Some("/tmp".into()),
            user: Some("nobody".into()),
            ..Default::default()
        };
        let mut lines = Vec::new();
        let mut on_line = |l: &str| lines.push(l.to_string());
        let code = d
            .run_to_completion(&spec, Duration::from_secs(30), &mut on_line)
            .await
            .unwrap();
        assert_eq!(code, 3);
        for want in ["hi", "secret=s3cr3t", "oops"] {
            assert!(lines.iter().any(|l| l == want), "{want} missing: {lines:?}");
        }
        assert_eq!(
            d.container_state(&name).await.unwrap(),
            ContainerState::Missing
        );

        // Exit code 0 is a code, not an error.
        let ok = ContainerSpec {
            name: None,
            cmd: sh("pwd; id -un"),
            ..spec.clone()
        };
        let mut lines = Vec::new();
        let mut on_line = |l: &str| lines.push(l.to_string());
        let code = d
            .run_to_completion(&ok, Duration::from_secs(30), &mut on_line)
            .await
            .unwrap();
        assert_eq!(code, 0);
        assert_eq!(lines, vec!["/tmp", "nobody"]);

        // Timeout: the container is removed all the same.
        let slow = ContainerSpec {
            name: Some(format!("{name}-slow")),
            cmd: sh("echo started; sleep 60"),
            ..spec.clone()
        };
        let mut lines = Vec::new();
        let mut on_line = |l: &str| lines.push(l.to_string());
        let err = d
            .run_to_completion(&slow, Duration::from_secs(2), &mut on_line)
            .await
            .expect_err("must time out");
        assert!(matches!(err, DockerError::Timeout(_)), "{err:?}");
        assert!(
            err.to_string().contains("did not finish within 2 s"),
            "{err}"
        );
        assert_eq!(lines, vec!["started"]);
        let left = d.list_containers(&[(TEST_LABEL, &scope.id)]).await.unwrap();
        assert!(left.is_empty(), "containers left behind: {left:?}");

        // A command that cannot start: an error, and nothing left behind.
        let broken = ContainerSpec {
            name: None,
            cmd: Some(vec!["/no/such/binary".into()]),
            ..spec.clone()
        };
        let err = d
            .run_to_completion(&broken, Duration::from_secs(30), &mut |_| {})
            .await
            .expect_err("cannot start");
        assert!(matches!(err, DockerError::Engine(_)), "{err:?}");
        let left = d.list_containers(&[(TEST_LABEL, &scope.id)]).await.unwrap();
        assert!(left.is_empty(), "containers left behind: {left:?}");
    }

    #[tokio::test]
    async fn web_container_on_a_network() {
        let d = engine().await;
        let scope = Scope::new("web");
        let net = format!("paas-test-{}", scope.id);
        d.ensure_network(&net, &scope.labels()).await.unwrap();
        d.ensure_network(&net, &scope.labels())
            .await
            .expect("idempotent");
        let inspected = d
            .inner
            .inspect_network(&net, None::<InspectNetworkOptions>)
            .await
            .unwrap();
        assert_eq!(inspected.driver.as_deref(), Some("bridge"));
        let labels = inspected.labels.unwrap_or_default();
        assert_eq!(labels.get("paas.managed").map(String::as_str), Some("true"));
        assert_eq!(labels.get(TEST_LABEL), Some(&scope.id));

        let name = format!("paas-test-{}", scope.id);
        let spec = ContainerSpec {
            name: Some(name.clone()),
            image: BASE.into(),
            cmd: Some(
                ["python3", "-m", "http.server", "8000"]
                    .map(String::from)
                    .to_vec(),
            ),
            env: vec![("PYTHONUNBUFFERED".into(), "1".into())],
            labels: scope.labels(),
            network: Some(net.clone()),
            restart_unless_stopped: true,
            memory_bytes: Some(256 * 1024 * 1024),
            working_dir: Some("/tmp".into()),
            ..Default::default()
        };
        let id = d.start_container(&spec).await.unwrap();
        assert_eq!(
            d.container_state(&id).await.unwrap(),
            ContainerState::Running
        );

        let listed = d.list_containers(&[(TEST_LABEL, &scope.id)]).await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].id, id);
        assert_eq!(listed[0].name, name);
        assert_eq!(listed[0].state, "running");
        assert_eq!(listed[0].image, BASE);
        assert_eq!(
            listed[0].labels.get("paas.managed").map(String::as_str),
            Some("true")
        );

        let ip = d.container_ip(&id, &net).await.unwrap();
        let addr = std::net::SocketAddr::new(ip, 8000);
        let mut response = String::new();
        for attempt in 0.. {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(mut s) => {
                    s.write_all(b"GET /probe HTTP/1.0\r\n\r\n").unwrap();
                    s.read_to_string(&mut response).unwrap();
                    break;
                }
                Err(e) if attempt < 50 => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{addr} never accepted a connection: {e}"),
            }
        }
        assert!(response.starts_with("HTTP/1.0 404"), "{response}");

        // The access log line goes to stderr; give it a moment.
        let mut tail = Vec::new();
        for _ in 0..50 {
            tail = d.logs_tail(&id, 2).await.unwrap();
            if tail.iter().any(|l| l.contains("GET /probe")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(tail.len() <= 2, "{tail:?}");
        assert!(tail.iter().any(|l| l.contains("GET /probe")), "{tail:?}");

        let mut follow = Box::pin(d.follow_logs(&id, 1));
        let first = tokio::time::timeout(Duration::from_secs(5), follow.next())
            .await
            .expect("follow_logs yields the tail at once")
            .expect("a line")
            .unwrap();
        assert!(first.contains("GET /probe"), "{first}");

        d.stop_and_remove(&id, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(
            d.container_state(&id).await.unwrap(),
            ContainerState::Missing
        );
        // The follower ends with the container.
        let rest = tokio::time::timeout(Duration::from_secs(5), follow.next()).await;
        assert!(
            matches!(rest, Ok(None) | Ok(Some(Err(_)))),
            "follow_logs did not end: {rest:?}"
        );
        d.stop_and_remove(&id, Duration::from_secs(1))
            .await
            .expect("stopping a missing container is fine");
        let err = d.container_ip(&id, &net).await.expect_err("gone");
        assert!(matches!(err, DockerError::NotFound(_)), "{err:?}");
    }

    #[test]
    fn cpu_percent_is_the_share_of_host_cpu_time_times_cpus() {
        let a = CpuReading {
            total_ns: 1_000,
            system_ns: 10_000,
            online_cpus: 4,
        };
        // Half a CPU: the container used 1/8 of all 4 CPUs' time.
        let b = CpuReading {
            total_ns: 1_000 + 500,
            system_ns: 10_000 + 4_000,
            online_cpus: 4,
        };
        assert_eq!(b.percent_since(&a), Some(50.0));
        assert_eq!(b.percent_since(&b), None, "no host time passed");
        assert_eq!(a.percent_since(&b), None, "counters went back");
        assert_eq!(b.percent_since(&CpuReading::default()), None, "no earlier");
        let s = ContainerStats {
            cpu: b,
            precpu: None,
            ..Default::default()
        };
        assert_eq!(s.cpu_percent(None), None, "one-shot without a kept reading");
        assert_eq!(s.cpu_percent(Some(&a)), Some(50.0));
        let with_pre = ContainerStats {
            precpu: Some(a),
            ..s
        };
        assert_eq!(with_pre.cpu_percent(None), Some(50.0));
    }

    #[test]
    fn memory_leaves_out_the_inactive_file_cache() {
        let m = |kv: &[(&str, u64)]| -> HashMap<String, u64> {
            kv.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        assert_eq!(
            memory_without_cache(100, &m(&[("total_inactive_file", 30)])),
            70
        );
        assert_eq!(memory_without_cache(100, &m(&[("inactive_file", 40)])), 60);
        assert_eq!(memory_without_cache(100, &m(&[("cache", 10)])), 90);
        assert_eq!(
            memory_without_cache(100, &m(&[("inactive_file", 400)])),
            100
        );
        assert_eq!(memory_without_cache(100, &m(&[])), 100);
    }

    #[tokio::test]
    async fn stats_once_reads_memory_limit_and_cpu_counters() {
        let d = engine().await;
        let scope = Scope::new("stats");
        let limit = 64 * 1024 * 1024;
        let id = d
            .start_container(&ContainerSpec {
                image: BASE.into(),
                // Busy for a while, holding a few MB.
                cmd: sh("python3 -c 'b = bytearray(8 << 20)\nwhile True: pass'"),
                labels: scope.labels(),
                memory_bytes: Some(limit),
                ..Default::default()
            })
            .await
            .expect("start");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let first = d.stats_once(&id).await.expect("stats");
        assert_eq!(first.memory_limit, limit as u64);
        assert!(
            first.memory_bytes > 4 << 20 && first.memory_bytes < limit as u64,
            "{first:?}"
        );
        assert!(
            first.cpu.total_ns > 0 && first.cpu.system_ns > 0,
            "{first:?}"
        );
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let second = d.stats_once(&id).await.expect("stats");
        let cpu = second.cpu_percent(Some(&first.cpu)).expect("a CPU share");
        // A busy loop: about one CPU (some slack for a shared host).
        assert!(cpu > 20.0 && cpu < 150.0, "{cpu} %");
        let err = d
            .stats_once("paas-no-such-container")
            .await
            .expect_err("missing");
        assert!(matches!(err, DockerError::NotFound(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_dropped_run_still_removes_its_container() {
        let d = engine().await;
        let scope = Scope::new("cancel");
        let spec = ContainerSpec {
            image: BASE.into(),
            cmd: sh("sleep 60"),
            labels: scope.labels(),
            ..Default::default()
        };
        // The caller gives up (its own timeout drops our future mid-run).
        let gave_up = tokio::time::timeout(
            Duration::from_secs(2),
            d.run_to_completion(&spec, Duration::from_secs(60), &mut |_| {}),
        )
        .await;
        assert!(gave_up.is_err());
        let by = [(TEST_LABEL, scope.id.as_str())];
        let mut left = Vec::new();
        for _ in 0..50 {
            left = d.list_containers(&by).await.unwrap();
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(left.is_empty(), "containers left behind: {left:?}");
    }
}

#[cfg(test)]
mod props {
    //! Property tests: the tar an app's image hands back for its static
    //! files (the app built that image: its entries are hostile input).

    use super::*;
    use crate::fuzz::{check, ensure, raw_tar, walk, TarEntry as Entry};
    use proptest::prelude::*;
    use std::os::unix::fs::MetadataExt;

    fn entry() -> impl Strategy<Value = Entry> {
        let name = (
            prop::sample::select(vec![
                "static/",
                "static/",
                "static/",
                "",
                "/",
                "./static/",
                "../",
            ]),
            prop::sample::select(vec![
                "a",
                "b/c",
                "../escape",
                "l",
                "l/x",
                "l/l/y",
                "d/",
                "..",
                ".",
                "up/pwn",
                "OUTSIDE_ABS/z",
            ]),
        )
            .prop_map(|(top, rest)| format!("{top}{rest}"));
        let target = prop::sample::select(vec![
            "/",
            "../outside",
            ".",
            "a",
            "OUTSIDE_ABS",
            "b/../..",
            "static/a",
            "static/../outside/secret",
            "OUTSIDE_ABS/secret",
            "x/../../outside/secret",
            "",
        ]);
        prop_oneof![
            3 => (name.clone(), "[a-z]{0,6}").prop_map(|(n, c)| Entry::File(n, c.into_bytes())),
            1 => name.clone().prop_map(Entry::Dir),
            2 => (name.clone(), target.clone()).prop_map(|(n, t)| Entry::Symlink(n, t)),
            2 => (name.clone(), target).prop_map(|(n, t)| Entry::Hardlink(n, t)),
            1 => name.prop_map(Entry::Fifo),
        ]
    }

    #[test]
    fn fuzz_unpack_stripped() {
        check(
            "unpack_stripped",
            128,
            prop::collection::vec(entry(), 0..8),
            |entries| {
                let sandbox = tempfile::tempdir().unwrap();
                let s = sandbox.path();
                std::fs::create_dir(s.join("outside")).unwrap();
                std::fs::write(s.join("outside/secret"), "SECRET").unwrap();
                let dest = s.join("release/static");
                let outside = s.join("outside").display().to_string();
                let tar = raw_tar(&entries, &outside);
                let got = unpack_stripped(&tar, &dest);

                let secret = std::fs::symlink_metadata(s.join("outside/secret")).unwrap();
                let listing = std::fs::read_dir(s.join("outside")).unwrap().count();
                ensure(
                    listing == 1
                        && secret.nlink() == 1
                        && std::fs::read(s.join("outside/secret")).unwrap() == b"SECRET",
                    || format!("unpacking {entries:?} reached the folder outside (result {got:?})"),
                )?;
                let mut top: Vec<String> = std::fs::read_dir(s)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect();
                top.sort();
                ensure(top == ["outside", "release"], || {
                    format!("unpacking {entries:?} wrote beside its folder: {top:?}")
                })?;
                let beside: Vec<_> = std::fs::read_dir(s.join("release")).unwrap().collect();
                ensure(beside.len() == 1, || {
                    format!("unpacking {entries:?} wrote beside static/")
                })?;
                let root = dest.canonicalize().unwrap();
                let mut all = Vec::new();
                walk(&dest, &mut all);
                for (p, m) in &all {
                    let t = m.file_type();
                    ensure(t.is_dir() || t.is_file() || t.is_symlink(), || {
                        format!("unpacking {entries:?} made the special file {p:?}")
                    })?;
                    ensure(m.mode() & 0o7000 == 0 || t.is_symlink(), || {
                        format!("unpacking {entries:?} left {p:?} with mode {:o}", m.mode())
                    })?;
                    // A link that resolves at all resolves inside the folder.
                    if let Ok(real) = p.canonicalize() {
                        ensure(real.starts_with(&root), || {
                            format!("unpacking {entries:?} left {p:?} leading to {real:?}")
                        })?;
                    }
                }
                Ok(())
            },
        );
    }
}
