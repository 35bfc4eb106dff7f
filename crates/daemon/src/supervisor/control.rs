//! Talking to a VM over its control socket (crates/control), and the
//! lifecycle requests that go through it: pause, resume, restart and the
//! console, for VMs and containers (whose monitor freezes the cgroup);
//! an older daemon's container (no monitor) is paused with the runtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use vessel_api::{Instance, InstanceKind, InstanceState, validate_name};
use vessel_control::client;

use super::{Supervisor, SupervisorError};

/// How long a control request may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request waits for a control socket that is not there yet:
/// a VMM or monitor just started serves it once its machine or container
/// is built (`vessel start X && vessel console X` must work).
const SERVE_WAIT: Duration = Duration::from_secs(10);

/// Wait until `path` exists, at most [`SERVE_WAIT`] (the request that
/// follows then says what is wrong if it still does not). Not for stop,
/// which falls back to SIGTERM at once.
async fn served(path: &Path) {
    let began = tokio::time::Instant::now();
    while !path.exists() && began.elapsed() < SERVE_WAIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request over a control socket (blocking I/O on tokio's blocking pool).
pub(super) async fn call(
    path: &Path,
    request: vessel_control::Request,
) -> Result<vessel_control::Response, String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || client::call(&path, &request, CONTROL_TIMEOUT))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// A process's status over its control socket.
pub(super) fn status_now(path: &Path) -> Result<vessel_control::Status, String> {
    client::status(path, Duration::from_secs(3)).map_err(|e| e.to_string())
}

/// An attached console: raw bytes both ways.
pub async fn attach(
    path: PathBuf,
    write: bool,
    history: u64,
) -> Result<tokio::net::UnixStream, String> {
    served(&path).await;
    let stream = tokio::task::spawn_blocking(move || client::attach(&path, write, history))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    tokio::net::UnixStream::from_std(stream).map_err(|e| e.to_string())
}

impl Supervisor {
    /// The running entry's kind, pid, control socket and paused flag.
    fn entry(
        &self,
        name: &str,
    ) -> Result<(InstanceKind, i32, Option<PathBuf>, bool), SupervisorError> {
        validate_name(name)?;
        let instance = self.store.get(name)?;
        let running = self.running();
        match running.get(name) {
            Some(r) if instance.state != InstanceState::Stopping => {
                Ok((r.kind, r.pid, r.control.clone(), r.paused))
            }
            _ => Err(SupervisorError::Conflict {
                name: name.to_string(),
                state: instance.state.as_str(),
                what: "it does not run",
            }),
        }
    }

    fn set_paused(&self, name: &str, paused: bool) {
        if let Some(r) = self.running().get_mut(name) {
            r.paused = paused;
        }
    }

    /// Stop running the guest: the VM's run loop parks, a container's
    /// processes are frozen. Memory, devices and the console stay.
    pub async fn pause(&self, name: &str) -> Result<Instance, SupervisorError> {
        let _guard = self.lock(name).await;
        let (kind, _, control, paused) = self.entry(name)?;
        if paused {
            return Err(SupervisorError::Conflict {
                name: name.to_string(),
                state: "paused",
                what: "it is already paused; resume it with `vessel resume`",
            });
        }
        self.control_or_runtime(name, kind, control, true).await?;
        self.set_paused(name, true);
        self.store
            .set_state_from(name, &[InstanceState::Running], InstanceState::Paused)?;
        tracing::info!(name, "paused");
        Ok(self.store.get(name)?)
    }

    pub async fn resume(&self, name: &str) -> Result<Instance, SupervisorError> {
        let _guard = self.lock(name).await;
        let (kind, _, control, paused) = self.entry(name)?;
        if !paused {
            return Err(SupervisorError::Conflict {
                name: name.to_string(),
                state: "running",
                what: "it is not paused",
            });
        }
        self.control_or_runtime(name, kind, control, false).await?;
        self.set_paused(name, false);
        self.store
            .set_state_from(name, &[InstanceState::Paused], InstanceState::Running)?;
        tracing::info!(name, "resumed");
        Ok(self.store.get(name)?)
    }

    async fn control_or_runtime(
        &self,
        name: &str,
        kind: InstanceKind,
        control: Option<PathBuf>,
        pause: bool,
    ) -> Result<(), SupervisorError> {
        let failed = |message: String| SupervisorError::Control {
            name: name.to_string(),
            message,
        };
        match (kind, control) {
            (_, Some(path)) => {
                served(&path).await;
                let request = if pause {
                    vessel_control::Request::Pause {}
                } else {
                    vessel_control::Request::Resume {}
                };
                call(&path, request).await.map(|_| ()).map_err(|e| {
                    failed(format!(
                        "{} over the control socket: {e}",
                        if pause { "pause" } else { "resume" }
                    ))
                })
            }
            (InstanceKind::Vm, None) => Err(failed(
                "its VMM serves no control socket, so it cannot be paused".to_string(),
            )),
            (InstanceKind::Container, None) => self
                .runtime(&[if pause { "pause" } else { "resume" }, name])
                .await
                .map_err(failed),
        }
    }

    /// Stop (if it runs) and start again.
    pub async fn restart(
        self: &Arc<Self>,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<Instance, SupervisorError> {
        validate_name(name)?;
        if self.store.get(name)?.state.is_active() {
            match self.stop(name, timeout).await {
                Ok(_) | Err(SupervisorError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.start(name).await
    }

    /// The control socket of a running VM or container, for `vessel console`.
    pub fn console_socket(&self, name: &str) -> Result<PathBuf, SupervisorError> {
        let (kind, _, control, _) = self.entry(name)?;
        match (kind, control) {
            (_, Some(path)) => Ok(path),
            (InstanceKind::Vm, None) => Err(SupervisorError::Control {
                name: name.to_string(),
                message: "its VMM serves no control socket, so it has no console to attach to; \
                          its output is in `vessel logs`"
                    .to_string(),
            }),
            (InstanceKind::Container, None) => Err(SupervisorError::Control {
                name: name.to_string(),
                message: "an older daemon started this container without a monitor, so it has \
                          no console; its output is in `vessel logs NAME -f`, and `vessel exec` \
                          runs commands in it"
                    .to_string(),
            }),
        }
    }
}
