//! The narrow boundary between the deploy story and the container engine.
//!
//! [`Engine`] has exactly the calls a deploy makes: build an image and read
//! what the build learnt, run the release phase, start and watch containers,
//! probe the new release's health, and remove what a deploy leaves behind.
//! Two implementations: the real engine ([`Docker`], bollard) below, and an
//! in-memory engine the unit tests drive every state and failure with.
//!
//! The health probe is part of the boundary because it addresses a
//! container: in-memory containers do not listen, so their engine answers
//! for them.

use crate::docker::{
    BuildRequest, BuildStep, BuildStepOutcome, ContainerInfo, ContainerSpec, ContainerState,
    Docker, DockerError,
};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// What a deploy needs from the container engine. Every future is `Send`:
/// deploys run in spawned tasks, and retiring an old release is one too.
pub trait Engine: Clone + Send + Sync + 'static {
    /// Checks the engine answers; [`DockerError::Unreachable`] when not.
    fn ping(&self) -> impl Future<Output = Result<(), DockerError>> + Send;

    /// Builds `req.tag`, each output line to `on_line`.
    fn build_image(
        &self,
        req: BuildRequest<'_>,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> impl Future<Output = Result<(), DockerError>> + Send;

    /// A push's build step: the code uploaded into a container of the
    /// dependency image, run, and made the release image's one new layer.
    fn run_build_step(
        &self,
        step: &BuildStep<'_>,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> impl Future<Output = Result<BuildStepOutcome, DockerError>> + Send;

    fn image_exists(&self, image: &str) -> impl Future<Output = Result<bool, DockerError>> + Send;

    /// Pulls `image` (`name:tag`) unless it is here.
    fn ensure_image(&self, image: &str) -> impl Future<Output = Result<(), DockerError>> + Send;

    /// Every `name:tag` the engine holds.
    fn image_tags(&self) -> impl Future<Output = Result<Vec<String>, DockerError>> + Send;

    /// Removes an image by name; gone already is fine.
    fn remove_image(&self, image: &str) -> impl Future<Output = Result<(), DockerError>> + Send;

    /// The contents of one regular file in `image`.
    fn read_file_from_image(
        &self,
        image: &str,
        path: &str,
    ) -> impl Future<Output = Result<Vec<u8>, DockerError>> + Send;

    /// Copies the contents of directory `path` in `image` into `dest`.
    fn copy_from_image(
        &self,
        image: &str,
        path: &str,
        dest: &Path,
    ) -> impl Future<Output = Result<(), DockerError>> + Send;

    fn ensure_network(
        &self,
        name: &str,
        labels: &[(String, String)],
    ) -> impl Future<Output = Result<(), DockerError>> + Send;

    /// Runs a one-off container to its end (removing it); its exit code.
    fn run_to_completion(
        &self,
        spec: &ContainerSpec,
        timeout: Duration,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> impl Future<Output = Result<i64, DockerError>> + Send;

    /// Creates and starts a container; its id.
    fn start_container(
        &self,
        spec: &ContainerSpec,
    ) -> impl Future<Output = Result<String, DockerError>> + Send;

    fn container_ip(
        &self,
        id: &str,
        network: &str,
    ) -> impl Future<Output = Result<IpAddr, DockerError>> + Send;

    fn container_state(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<ContainerState, DockerError>> + Send;

    fn restart_count(&self, id: &str) -> impl Future<Output = Result<i64, DockerError>> + Send;

    /// Stops a container and keeps it (its logs stay readable).
    fn stop(
        &self,
        id: &str,
        grace: Duration,
    ) -> impl Future<Output = Result<(), DockerError>> + Send;

    fn logs_tail(
        &self,
        id: &str,
        n: usize,
    ) -> impl Future<Output = Result<Vec<String>, DockerError>> + Send;

    /// Stops and removes a container; gone already is fine.
    fn stop_and_remove(
        &self,
        id: &str,
        grace: Duration,
    ) -> impl Future<Output = Result<(), DockerError>> + Send;

    /// Containers in any state carrying all the given labels.
    fn list_containers(
        &self,
        labels: &[(&str, &str)],
    ) -> impl Future<Output = Result<Vec<ContainerInfo>, DockerError>> + Send;

    /// One health probe: `GET path` with `Host: host` to a container's
    /// address; the HTTP status, or why there was none.
    fn probe(
        &self,
        addr: SocketAddr,
        host: &str,
        path: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<u16, String>> + Send;
}

/// The real engine: each call is the [`Docker`] method of the same name,
/// and the probe is a real HTTP request.
impl Engine for Docker {
    async fn ping(&self) -> Result<(), DockerError> {
        Docker::ping(self).await
    }

    async fn build_image(
        &self,
        req: BuildRequest<'_>,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), DockerError> {
        Docker::build_image(self, req, on_line).await
    }

    async fn run_build_step(
        &self,
        step: &BuildStep<'_>,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<BuildStepOutcome, DockerError> {
        Docker::run_build_step(self, step, on_line).await
    }

    async fn image_exists(&self, image: &str) -> Result<bool, DockerError> {
        Docker::image_exists(self, image).await
    }

    async fn ensure_image(&self, image: &str) -> Result<(), DockerError> {
        Docker::ensure_image(self, image).await
    }

    async fn image_tags(&self) -> Result<Vec<String>, DockerError> {
        Ok(Docker::list_images(self, &[])
            .await?
            .into_iter()
            .flat_map(|i| i.tags)
            .collect())
    }

    async fn remove_image(&self, image: &str) -> Result<(), DockerError> {
        Docker::remove_image(self, image).await
    }

    async fn read_file_from_image(&self, image: &str, path: &str) -> Result<Vec<u8>, DockerError> {
        Docker::read_file_from_image(self, image, path).await
    }

    async fn copy_from_image(
        &self,
        image: &str,
        path: &str,
        dest: &Path,
    ) -> Result<(), DockerError> {
        Docker::copy_from_image(self, image, path, dest).await
    }

    async fn ensure_network(
        &self,
        name: &str,
        labels: &[(String, String)],
    ) -> Result<(), DockerError> {
        Docker::ensure_network(self, name, labels).await
    }

    async fn run_to_completion(
        &self,
        spec: &ContainerSpec,
        timeout: Duration,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> Result<i64, DockerError> {
        Docker::run_to_completion(self, spec, timeout, on_line).await
    }

    async fn start_container(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        Docker::start_container(self, spec).await
    }

    async fn container_ip(&self, id: &str, network: &str) -> Result<IpAddr, DockerError> {
        Docker::container_ip(self, id, network).await
    }

    async fn container_state(&self, id: &str) -> Result<ContainerState, DockerError> {
        Docker::container_state(self, id).await
    }

    async fn restart_count(&self, id: &str) -> Result<i64, DockerError> {
        Docker::restart_count(self, id).await
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        Docker::stop(self, id, grace).await
    }

    async fn logs_tail(&self, id: &str, n: usize) -> Result<Vec<String>, DockerError> {
        Docker::logs_tail(self, id, n).await
    }

    async fn stop_and_remove(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        Docker::stop_and_remove(self, id, grace).await
    }

    async fn list_containers(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<ContainerInfo>, DockerError> {
        Docker::list_containers(self, labels).await
    }

    async fn probe(
        &self,
        addr: SocketAddr,
        host: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<u16, String> {
        crate::health::probe_once(addr, host, path, timeout).await
    }
}
