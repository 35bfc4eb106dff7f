//! The instance registry and the supervisor of instance processes.
//!
//! Each instance runs as a child process: a VM is `vessel run ARGS` in its
//! own process group, a container is `vessel run --container`, its
//! monitor, spawned the same way (`container.rs`). The
//! daemon never runs a guest in-process, so a crashed VMM or container ends
//! one instance, never the daemon. Console output goes straight from the
//! process to `console.log` (O_APPEND), bounded by copy-and-truncate.
//!
//! A VM process serves a control socket of its own (`vessel run
//! --control-socket`, crates/control) and writes an exit record when it
//! ends; both outlive the daemon, so a restarted daemon reattaches to the
//! instances that still run (`reattach.rs`) and learns why the others
//! ended. Restart policies are applied here too (`policy.rs`).

mod container;
pub(crate) use container::container_process;
pub mod control;
mod policy;
mod reattach;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use thiserror::Error;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use vessel_api::{
    ContainerSpec, CreateInstance, ExitReason, ExitStatus, Instance, InstanceKind, InstanceSpec,
    InstanceState, SpecError, validate_name,
};
use vessel_control::ExitRecord;

use crate::admission::{self, AdmissionError};
use crate::config::Config;
use crate::store::{Store, StoreError};

#[derive(Debug, Error)]
pub enum SupervisorError {
    #[error("{0}")]
    Invalid(#[from] SpecError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A path outside the allowed dirs, bad resources, or no room on the host.
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    #[error("instance {name:?} is {state}: {what}")]
    Conflict {
        name: String,
        state: &'static str,
        what: &'static str,
    },
    #[error("spec.bundle {0}: no config.json there; give the directory of an OCI bundle")]
    NoBundle(PathBuf),
    #[error("cannot start {program} for instance {name:?}: {source}")]
    Spawn {
        name: String,
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("instance {name:?}: {path}: {source}")]
    Io {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("instance {name:?} failed to start: {message}")]
    StartFailed { name: String, message: String },
    #[error(
        "instance {name:?} did not end within {secs} s of SIGKILL (process {pid} is stuck in the kernel?)"
    )]
    Unkillable { name: String, pid: i32, secs: u64 },
    #[error("instance {name:?}: {message}")]
    Control { name: String, message: String },
}

/// What a stop/kill request asked for, so the exit is reported as such.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Stop,
    Kill,
}

/// A process the daemon supervises.
struct Running {
    pid: i32,
    kind: InstanceKind,
    request: Arc<Mutex<Option<Request>>>,
    done: watch::Receiver<bool>,
    /// Which start of the instance this is: only its own watcher removes
    /// the entry.
    generation: u64,
    /// The VM's control socket (None for containers).
    control: Option<PathBuf>,
    paused: bool,
}

pub struct Supervisor {
    config: Config,
    store: Store,
    running: Mutex<HashMap<String, Running>>,
    /// One lock per instance name, serializing its state transitions
    /// (create, start, the first step of stop/kill, pause, resume, delete,
    /// and the recording of its process's exit) so that two clients cannot
    /// start one instance twice or delete a half-made one, and an exit is
    /// never recorded in the middle of a transition. Never held while
    /// waiting for a process to end.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Held by a start from the admission check until its record is
    /// running, so that two starts cannot both take the last of the host.
    admission: tokio::sync::Mutex<()>,
    /// Restarts the policy has scheduled, by name: a token that a user's
    /// start, stop, kill or delete removes to cancel it.
    pending_restarts: Mutex<HashMap<String, u64>>,
    next_token: AtomicU64,
    /// Set when the daemon shuts down in-process (tests): watchers stop
    /// recording, as they would if the daemon process had exited.
    detached: AtomicBool,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Supervisor {
    /// Open the store and take up the instances a previous daemon ran:
    /// reattach to those whose process still runs, record why the others
    /// ended (see `reattach.rs`).
    pub fn new(config: Config) -> Result<Arc<Supervisor>, SupervisorError> {
        let store = Store::open(&config.state_dir)?;
        let sup = Arc::new(Supervisor {
            config,
            store,
            running: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            admission: tokio::sync::Mutex::new(()),
            pending_restarts: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            detached: AtomicBool::new(false),
        });
        sup.reattach_all()?;
        Ok(sup)
    }

    /// Stop recording anything: instance processes go on unwatched, for
    /// the next daemon to reattach (what a daemon exit does).
    pub fn detach(&self) {
        self.detached
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.lock_pending().clear();
    }

    /// Whether `detach` was called (the daemon is shutting down).
    pub fn is_detached(&self) -> bool {
        self.detached.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lifecycle lock of one instance.
    async fn lock(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(locks.entry(name.to_string()).or_default())
        };
        lock.lock_owned().await
    }

    /// The pids of the processes the supervisor waits for itself (the
    /// orphan reaper leaves them alone).
    pub fn supervised_pids(&self) -> std::collections::HashSet<i32> {
        self.running().values().map(|r| r.pid).collect()
    }

    pub fn list(&self) -> Result<Vec<Instance>, SupervisorError> {
        Ok(self.store.list()?)
    }

    pub fn get(&self, name: &str) -> Result<Instance, SupervisorError> {
        validate_name(name)?;
        Ok(self.store.get(name)?)
    }

    pub async fn create(&self, mut request: CreateInstance) -> Result<Instance, SupervisorError> {
        validate_name(&request.name)?;
        request.spec.validate()?;
        let _guard = self.lock(&request.name).await;
        let dir = self.config.instance_dir(&request.name);
        // A rootfs container: its bundle is written under the instance's
        // directory (and removed again if the create fails).
        let mut written = false;
        if let InstanceSpec::Container(c) = &request.spec
            && let Some(rootfs) = &c.rootfs
        {
            if self.store.get(&request.name).is_ok() {
                return Err(StoreError::Exists(request.name).into());
            }
            let bundle = self.write_rootfs_bundle(&request.name, &dir, rootfs, &c.command)?;
            written = true;
            request.spec = InstanceSpec::Container(ContainerSpec {
                bundle,
                ..c.clone()
            });
        }
        let created = self.insert_created(request, &dir);
        if created.is_err() && written {
            let _ = std::fs::remove_dir_all(&dir);
        }
        created
    }

    /// Write the default bundle of a container that gives a rootfs and a
    /// command (as `vessel run --container --rootfs` does, on a terminal
    /// for `vessel console`); returns the bundle's path.
    fn write_rootfs_bundle(
        &self,
        name: &str,
        dir: &Path,
        rootfs: &str,
        command: &[String],
    ) -> Result<String, SupervisorError> {
        let allowed = crate::allowed::AllowedDirs::new(&self.config.allow_dirs);
        let rootfs = allowed
            .check("spec.rootfs", rootfs)
            .map_err(AdmissionError::from)?;
        let bundle = dir.join("bundle");
        let run = vessel_container::ContainerRun {
            args: command.to_vec(),
            terminal: Some(true),
            ..Default::default()
        };
        vessel_container::foreground::write_default_bundle(&run, &rootfs, name, &bundle)
            .map_err(|e| SupervisorError::Invalid(SpecError::RootfsUnusable(e.to_string())))?;
        Ok(bundle.to_string_lossy().into_owned())
    }

    /// Check the spec's paths and resources and record the instance.
    fn insert_created(
        &self,
        request: CreateInstance,
        dir: &Path,
    ) -> Result<Instance, SupervisorError> {
        // Paths first, so that nothing is told about files outside the
        // allowed dirs.
        let (spec, resources) = admission::prepare(&self.config, &request.spec)?;
        if let InstanceSpec::Container(c) = &request.spec {
            let config = Path::new(&c.bundle).join("config.json");
            if !config.is_file() {
                return Err(SupervisorError::NoBundle(PathBuf::from(&c.bundle)));
            }
        }
        let dir = dir.to_path_buf();
        let instance = Instance {
            kind: spec.kind(),
            spec,
            state: InstanceState::Created,
            pid: None,
            exit: None,
            created_at: now(),
            started_at: None,
            finished_at: None,
            log_path: dir.join("console.log").to_string_lossy().into_owned(),
            resources,
            restart_policy: request.restart,
            restart_count: 0,
            name: request.name,
        };
        self.store.insert(&instance)?;
        if let Err(source) = std::fs::create_dir_all(&dir) {
            let _ = self.store.delete(&instance.name);
            return Err(SupervisorError::Io {
                name: instance.name,
                path: dir,
                source,
            });
        }
        tracing::info!(name = %instance.name, kind = instance.kind.as_str(), "created");
        Ok(instance)
    }

    pub async fn start(self: &Arc<Self>, name: &str) -> Result<Instance, SupervisorError> {
        validate_name(name)?;
        self.cancel_restart(name);
        self.start_locked(name).await
    }

    async fn start_locked(self: &Arc<Self>, name: &str) -> Result<Instance, SupervisorError> {
        let _guard = self.lock(name).await;
        self.start_held(name).await
    }

    /// Start `name`; the caller holds its lock.
    async fn start_held(self: &Arc<Self>, name: &str) -> Result<Instance, SupervisorError> {
        let instance = self.store.get(name)?;
        if instance.state.is_active() {
            return Err(SupervisorError::Conflict {
                name: name.to_string(),
                state: instance.state.as_str(),
                what: "it already runs; stop it first",
            });
        }
        let _admission = self.admission.lock().await;
        // Paths and limits are checked again (files may have changed since
        // create), then the host's room, under the admission lock so that
        // two starts cannot both take the last of it.
        let (spec, resources) = admission::prepare(&self.config, &instance.spec)?;
        let active: Vec<Instance> = self
            .store
            .list()?
            .into_iter()
            .filter(|i| i.state.is_active())
            .collect();
        admission::admit(
            name,
            &resources,
            &active,
            admission::Host::probe(),
            self.config.overcommit,
        )?;
        if resources != instance.resources {
            self.store.set_resources(name, &resources)?;
        }
        let instance = Instance {
            spec,
            resources,
            ..instance
        };
        let log_path = PathBuf::from(&instance.log_path);
        let spawned = match &instance.spec {
            InstanceSpec::Vm(vm) => self.spawn_vm(name, &vm.args, &log_path).map(|child| {
                let pid = child.id().map_or(0, |p| p as i32);
                Spawned::Child { child, pid }
            }),
            InstanceSpec::Container(c) => self
                .spawn_container(name, Path::new(&c.bundle), &log_path)
                .await
                .map(|(child, pid)| Spawned::Child { child, pid }),
        };
        let spawned = match spawned {
            Ok(s) => s,
            Err(err) => {
                let exit = ExitStatus {
                    reason: ExitReason::StartFailed,
                    code: None,
                    signal: None,
                    message: Some(err.to_string()),
                };
                self.store.set_stopped(name, &exit, now())?;
                return Err(err);
            }
        };
        let pid = spawned.pid();
        if let Err(e) = self.store.set_running(name, pid, now()) {
            // Cannot happen under the instance lock; never leave a process
            // that no record names.
            self.kill_unsupervised(instance.kind, pid);
            return Err(e.into());
        }
        drop(_admission);
        self.store
            .set_pid_start(name, vessel_control::process_start_time(pid))?;
        let control = Some(self.control_path(name));
        self.supervise(name, instance.kind, spawned, control, false);
        tracing::info!(name, pid, "started");
        Ok(self.store.get(name)?)
    }

    /// Where a VM's control socket and exit record are.
    fn control_path(&self, name: &str) -> PathBuf {
        self.config.instance_dir(name).join("control.sock")
    }

    fn exit_path(&self, name: &str) -> PathBuf {
        self.config.instance_dir(name).join("exit.json")
    }

    /// Record a running process and watch it until it ends.
    fn supervise(
        self: &Arc<Self>,
        name: &str,
        kind: InstanceKind,
        spawned: Spawned,
        control: Option<PathBuf>,
        paused: bool,
    ) {
        let (done_tx, done_rx) = watch::channel(false);
        let request = Arc::new(Mutex::new(None));
        let generation = self
            .next_token
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.running().insert(
            name.to_string(),
            Running {
                pid: spawned.pid(),
                kind,
                request: request.clone(),
                done: done_rx,
                generation,
                control,
                paused,
            },
        );
        let sup = Arc::clone(self);
        let name = name.to_string();
        let log = PathBuf::from(
            self.store
                .get(&name)
                .map(|i| i.log_path)
                .unwrap_or_default(),
        );
        tokio::spawn(async move {
            let ended = Ended {
                generation,
                request,
                done: done_tx,
            };
            sup.watch(name, kind, spawned, log, ended).await;
        });
    }

    fn spawn_vm(&self, name: &str, args: &[String], log: &Path) -> Result<Child, SupervisorError> {
        let (out, err) = open_log(name, log)?;
        let exit = self.exit_path(name);
        if let Err(source) = std::fs::remove_file(&exit)
            && source.kind() != std::io::ErrorKind::NotFound
        {
            return Err(SupervisorError::Io {
                name: name.to_string(),
                path: exit,
                source,
            });
        }
        // The VMM serves its control socket and writes the console log and
        // its exit record itself, so that it outlives the daemon.
        Command::new(&self.config.vmm_program)
            .arg("run")
            .arg("--control-socket")
            .arg(self.control_path(name))
            .arg("--console-log")
            .arg(log)
            .arg("--exit-file")
            .arg(&exit)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|source| SupervisorError::Spawn {
                name: name.to_string(),
                program: self.config.vmm_program.clone(),
                source,
            })
    }

    /// Run one runtime subcommand to completion; Err carries its stderr.
    async fn runtime(&self, args: &[&str]) -> Result<(), String> {
        let output = Command::new(&self.config.runtime_program)
            .arg("--root")
            .arg(self.config.runtime_root())
            .args(args)
            .stdin(Stdio::null())
            .output();
        match tokio::time::timeout(Duration::from_secs(60), output).await {
            Err(_) => Err(format!("runtime {} took over 60 s", args.join(" "))),
            Ok(Err(e)) => Err(format!("runtime {}: {e}", args.join(" "))),
            Ok(Ok(o)) if o.status.success() => Ok(()),
            Ok(Ok(o)) => Err(format!(
                "runtime {}: {}: {}",
                args.join(" "),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
        }
    }

    /// Wait for the process to end, keep its log bounded meanwhile, and
    /// record why it ended.
    async fn watch(
        self: &Arc<Self>,
        name: String,
        kind: InstanceKind,
        spawned: Spawned,
        log: PathBuf,
        ended: Ended,
    ) {
        let pid = spawned.pid();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let (code, signal) = match spawned {
            Spawned::Child { mut child, .. } => loop {
                tokio::select! {
                    status = child.wait() => {
                        use std::os::unix::process::ExitStatusExt;
                        match status {
                            Ok(s) => break (s.code(), s.signal()),
                            Err(e) => {
                                tracing::error!(%name, error = %e, "waiting for the VMM");
                                break (None, None);
                            }
                        }
                    }
                    _ = tick.tick() => bound_log(&log, self.config.log_limit),
                }
            },
            Spawned::Attached { pid, start } => loop {
                tick.tick().await;
                bound_log(&log, self.config.log_limit);
                if vessel_control::process_ended(pid)
                    || vessel_control::process_start_time(pid) != start
                {
                    break (None, None);
                }
            },
        };
        // The exit is recorded under the instance's lock, so that it never
        // lands in the middle of a stop, pause or delete.
        let _guard = self.lock(&name).await;
        if self.detached.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let current = self.store.get(&name).ok();
        // Still this process's record (not deleted or reconciled meanwhile)?
        let ours = current
            .as_ref()
            .is_some_and(|i| i.state.is_active() && i.pid == Some(pid));
        let started_at = current.and_then(|i| i.started_at);
        bound_log(&log, self.config.log_limit);
        if kind == InstanceKind::Container && ours {
            let _ = self.runtime(&["delete", "--force", &name]).await;
        }
        let requested = *ended.request.lock().unwrap_or_else(|e| e.into_inner());
        let record = self.exit_record(&name);
        let exit = exit_status(kind, requested, code, signal, &log, record.as_ref());
        tracing::info!(%name, reason = exit.reason.as_str(), ?code, ?signal, "ended");
        let recorded = self.store.set_stopped_for(&name, pid, &exit, now());
        if let Err(e) = &recorded {
            // Deleted or reconciled meanwhile (rm -f): nothing to record.
            tracing::debug!(%name, error = %e, "recording the exit");
        }
        {
            let mut running = self.running();
            if running
                .get(&name)
                .is_some_and(|r| r.generation == ended.generation)
            {
                running.remove(&name);
            }
        }
        let _ = ended.done.send(true);
        if recorded.is_ok() {
            let ran = started_at.map(|t| now().saturating_sub(t)).unwrap_or(0);
            self.after_exit(&name, &exit, Duration::from_secs(ran.max(0) as u64));
        }
    }

    /// The VM's exit record, if it wrote one.
    fn exit_record(&self, name: &str) -> Option<ExitRecord> {
        match vessel_control::read_exit_record(&self.exit_path(name)) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(name, error = %e, "reading the exit record");
                None
            }
        }
    }

    /// Ask the process to end (SIGTERM), SIGKILL after `timeout`; returns
    /// once it has ended.
    pub async fn stop(
        &self,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<Instance, SupervisorError> {
        let timeout = timeout.unwrap_or(self.config.stop_timeout);
        if self.cancel_restart(name) && !self.store.get(name)?.state.is_active() {
            // Waiting for the restart policy: that restart is off.
            return Ok(self.store.get(name)?);
        }
        let (done, generation) = match self.signal(name, Request::Stop, Signal::SIGTERM).await {
            // It ended while this request waited for its lock, and the
            // policy scheduled a restart meanwhile: that restart is off.
            Err(SupervisorError::Conflict { .. }) if self.cancel_restart(name) => {
                return Ok(self.store.get(name)?);
            }
            result => result?,
        };
        if !wait_done(done.clone(), timeout).await {
            tracing::info!(name, "did not stop in time; killing");
            self.send(name, Some(generation), Signal::SIGKILL);
            self.wait_killed(name, done).await?;
        }
        Ok(self.store.get(name)?)
    }

    /// SIGKILL; returns once the process has ended.
    pub async fn kill(&self, name: &str) -> Result<Instance, SupervisorError> {
        if self.cancel_restart(name) && !self.store.get(name)?.state.is_active() {
            return Ok(self.store.get(name)?);
        }
        let (done, _) = match self.signal(name, Request::Kill, Signal::SIGKILL).await {
            Err(SupervisorError::Conflict { .. }) if self.cancel_restart(name) => {
                return Ok(self.store.get(name)?);
            }
            result => result?,
        };
        self.wait_killed(name, done).await?;
        Ok(self.store.get(name)?)
    }

    /// Delete the record and the instance's directory. With `force`, an
    /// instance that runs is killed first; if another client starts it
    /// again each time, this gives up after a few rounds instead of
    /// looping.
    pub async fn delete(&self, name: &str, force: bool) -> Result<Instance, SupervisorError> {
        const ROUNDS: usize = 5;
        validate_name(name)?;
        self.cancel_restart(name);
        for _ in 0..ROUNDS {
            let instance = self.store.get(name)?;
            if instance.state.is_active() {
                if !force {
                    return Err(SupervisorError::Conflict {
                        name: name.to_string(),
                        state: instance.state.as_str(),
                        what: "stop it first, or delete with force (`vessel rm -f`)",
                    });
                }
                match self.kill(name).await {
                    Ok(_) | Err(SupervisorError::Conflict { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            let _guard = self.lock(name).await;
            let mut instance = self.store.get(name)?;
            if instance.state.is_active() {
                if self.running().contains_key(name) {
                    // Started again between the kill and the lock.
                    if !force {
                        return Err(SupervisorError::Conflict {
                            name: name.to_string(),
                            state: instance.state.as_str(),
                            what: "stop it first, or delete with force (`vessel rm -f`)",
                        });
                    }
                    continue;
                }
                // Active, but no process is supervised for it.
                self.reconcile(&instance).await?;
                instance = self.store.get(name)?;
            }
            self.store.delete(name)?;
            let dir = self.config.instance_dir(name);
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(name, path = %dir.display(), error = %e, "removing the instance directory");
            }
            tracing::info!(name, "deleted");
            return Ok(instance);
        }
        let state = self.store.get(name)?.state.as_str();
        Err(SupervisorError::Conflict {
            name: name.to_string(),
            state,
            what: "it was started again each time it was killed; try again",
        })
    }

    /// A record marked active with no process under supervision (never
    /// expected: it would mean an exit was lost): end the process if it
    /// still runs, and record the instance as stopped (`lost`). Called with
    /// the instance's lock held.
    async fn reconcile(&self, instance: &Instance) -> Result<(), SupervisorError> {
        let name = &instance.name;
        let mut message = "marked stopped: no supervised process was found for it".to_string();
        if let Some(pid) = instance.pid.filter(|&p| p > 0) {
            let start = self.store.pid_start(name)?;
            if !vessel_control::process_ended(pid)
                && start.is_some()
                && vessel_control::process_start_time(pid) == start
            {
                self.kill_unsupervised(instance.kind, pid);
                message = format!("process {pid} ran unsupervised and was killed");
            }
        }
        if instance.kind == InstanceKind::Container {
            let _ = self.runtime(&["delete", "--force", name]).await;
        }
        tracing::warn!(name = %name, %message, "reconciled an active record without a process");
        let exit = ExitStatus {
            reason: ExitReason::Lost,
            code: None,
            signal: None,
            message: Some(message),
        };
        self.store.set_stopped(name, &exit, now())?;
        Ok(())
    }

    fn kill_unsupervised(&self, kind: InstanceKind, pid: i32) {
        // 0 or less would reach a whole process group (the daemon's own).
        if pid <= 1 {
            return;
        }
        let pid = Pid::from_raw(pid);
        let _ = match kind {
            InstanceKind::Vm => killpg(pid, Signal::SIGKILL),
            InstanceKind::Container => {
                container::signal(pid.as_raw(), true, Signal::SIGKILL);
                Ok(())
            }
        };
    }

    /// Record the request, mark `stopping` for a stop, and send the signal;
    /// the receiver turns true once the process has ended, and the start
    /// it belongs to.
    async fn signal(
        &self,
        name: &str,
        request: Request,
        signal: Signal,
    ) -> Result<(watch::Receiver<bool>, u64), SupervisorError> {
        validate_name(name)?;
        let _guard = self.lock(name).await;
        let instance = self.store.get(name)?;
        let entry = {
            let running = self.running();
            running.get(name).map(|entry| {
                let mut req = entry.request.lock().unwrap_or_else(|e| e.into_inner());
                // A kill after a stop is reported as a kill.
                if *req != Some(Request::Kill) {
                    *req = Some(request);
                }
                (
                    entry.done.clone(),
                    entry.generation,
                    entry.control.clone(),
                    entry.kind,
                    entry.paused,
                )
            })
        };
        let Some((done, generation, control, kind, paused)) = entry else {
            if instance.state.is_active() {
                // An active record whose process is gone: settle it, and
                // the request is done.
                self.reconcile(&instance).await?;
                return Ok((watch::channel(true).1, 0));
            }
            return Err(SupervisorError::Conflict {
                name: name.to_string(),
                state: instance.state.as_str(),
                what: "it does not run",
            });
        };
        if request == Request::Stop {
            // Under the lock the process's exit cannot be recorded before
            // this, so the record is active; checked all the same.
            self.store
                .set_state_from(
                    name,
                    &[InstanceState::Running, InstanceState::Paused],
                    InstanceState::Stopping,
                )
                .or_else(|e| match e {
                    StoreError::WrongState {
                        found: "stopping", ..
                    } => Ok(()),
                    e => Err(e),
                })?;
        }
        // A VM is asked over its control socket (a clean VMM exit, also
        // when paused); a signal if that fails.
        if request == Request::Stop
            && let Some(path) = control
        {
            match control::call(&path, vessel_control::Request::Shutdown {}).await {
                Ok(_) => return Ok((done, generation)),
                Err(e) => {
                    tracing::info!(name, error = %e, "no shutdown over the control socket; signalling")
                }
            }
        }
        self.send(name, Some(generation), signal);
        // A frozen container takes its signal once thawed.
        if paused && kind == InstanceKind::Container {
            let _ = self.runtime(&["resume", name]).await;
        }
        Ok((done, generation))
    }

    /// Signal the supervised process of `name` (of that start, if given).
    /// Signal the supervised process of `name` (of that start, if given).
    fn send(&self, name: &str, generation: Option<u64>, signal: Signal) {
        let running = self.running();
        let Some(entry) = running
            .get(name)
            .filter(|e| generation.is_none_or(|g| g == e.generation))
        else {
            return;
        };
        // 0 or less would reach a whole process group (the daemon's own).
        if entry.pid <= 1 {
            tracing::warn!(name, pid = entry.pid, ?signal, "no pid to signal");
            return;
        }
        let pid = Pid::from_raw(entry.pid);
        let result = match entry.kind {
            InstanceKind::Vm => killpg(pid, signal),
            InstanceKind::Container => {
                container::signal(entry.pid, entry.control.is_some(), signal);
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::debug!(name, pid = entry.pid, ?signal, error = %e, "signal");
        }
    }

    async fn wait_killed(
        &self,
        name: &str,
        done: watch::Receiver<bool>,
    ) -> Result<(), SupervisorError> {
        const SECS: u64 = 30;
        if wait_done(done, Duration::from_secs(SECS)).await {
            return Ok(());
        }
        let pid = self.running().get(name).map(|r| r.pid).unwrap_or(0);
        Err(SupervisorError::Unkillable {
            name: name.to_string(),
            pid,
            secs: SECS,
        })
    }
}

/// What a watcher reports when its process ends.
struct Ended {
    generation: u64,
    request: Arc<Mutex<Option<Request>>>,
    done: watch::Sender<bool>,
}

enum Spawned {
    /// A VMM or container monitor: our child, waited for by tokio. Its
    /// pid is kept apart: tokio forgets it once the child has been waited
    /// for, which a monitor that ended at once already was.
    Child { child: Child, pid: i32 },
    /// A process a previous daemon started, taken up again: not our child,
    /// watched through /proc (the start time tells a reused pid).
    Attached { pid: i32, start: Option<u64> },
}

impl Spawned {
    fn pid(&self) -> i32 {
        match self {
            Spawned::Child { pid, .. } => *pid,
            Spawned::Attached { pid, .. } => *pid,
        }
    }
}

/// True once `done` turns true, false after `timeout`.
async fn wait_done(mut done: watch::Receiver<bool>, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, done.wait_for(|d| *d))
        .await
        .is_ok()
}

fn exit_status(
    kind: InstanceKind,
    requested: Option<Request>,
    code: Option<i32>,
    signal: Option<i32>,
    log: &Path,
    record: Option<&ExitRecord>,
) -> ExitStatus {
    let (reason, message) = match (requested, code, signal) {
        (Some(Request::Kill), ..) => (ExitReason::Killed, None),
        (Some(Request::Stop), ..) => (ExitReason::Stopped, None),
        (None, ..) if record.is_some() => {
            let r = record
                .map(from_record)
                .unwrap_or((ExitReason::Crashed, None));
            return ExitStatus {
                reason: r.0,
                code: code.or(record.map(|r| r.code)),
                signal,
                message: r.1,
            };
        }
        (None, None, None) if kind == InstanceKind::Vm => (
            ExitReason::Crashed,
            Some(format!(
                "the VMM ended without an exit record (killed by a signal?){}",
                tail_suffix(log)
            )),
        ),
        (None, Some(0), _) if kind == InstanceKind::Vm => (ExitReason::PoweredOff, None),
        (None, Some(_), _) if kind == InstanceKind::Container => (ExitReason::Exited, None),
        (None, None, None) => (
            ExitReason::Exited,
            Some("the process ended; its exit status is unknown".to_string()),
        ),
        (None, _, Some(sig)) => (
            ExitReason::Crashed,
            Some(format!("ended by signal {sig}{}", tail_suffix(log))),
        ),
        (None, Some(code), None) => (
            ExitReason::Crashed,
            Some(format!("exit code {code}{}", tail_suffix(log))),
        ),
    };
    ExitStatus {
        reason,
        code,
        signal,
        message,
    }
}

/// The reason and message an exit record gives.
fn from_record(record: &ExitRecord) -> (ExitReason, Option<String>) {
    if let Some(r) = container::from_record(record) {
        return r;
    }
    let reason = match record.reason.as_str() {
        "powered_off" | "reset" => ExitReason::PoweredOff,
        // Written by x86_64 VMMs of earlier versions, still running when
        // this daemon took over.
        "exited" if record.code == 0 => ExitReason::PoweredOff,
        "shutdown" | "signal" | "quit" => ExitReason::Stopped,
        _ => ExitReason::Crashed,
    };
    (reason, record.message.clone())
}

fn tail_suffix(log: &Path) -> String {
    last_line(log).map(|l| format!(": {l}")).unwrap_or_default()
}

/// The last non-empty line of a log (reading at most its last 4 KiB).
fn last_line(path: &Path) -> Option<String> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(|l| l.chars().take(512).collect())
}

/// The log opened for appending, twice (stdout and stderr).
fn open_log(name: &str, path: &Path) -> Result<(File, File), SupervisorError> {
    let io = |source| SupervisorError::Io {
        name: name.to_string(),
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    let err = out.try_clone().map_err(io)?;
    Ok((out, err))
}

/// Past `limit` bytes, copy the log to `NAME.1` and empty it (the writer
/// appends, so it goes on at the new end): at most about twice the limit
/// is kept.
fn bound_log(path: &Path, limit: u64) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.len() <= limit {
        return;
    }
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    if let Err(e) = std::fs::copy(path, &old) {
        tracing::warn!(path = %path.display(), error = %e, "rotating the console log");
    }
    if let Ok(file) = OpenOptions::new().write(true).open(path) {
        let _ = file.set_len(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reasons() {
        let log = Path::new("/nonexistent/log");
        let vm = InstanceKind::Vm;
        let c = InstanceKind::Container;
        assert_eq!(
            exit_status(vm, None, Some(0), None, log, None).reason,
            ExitReason::PoweredOff
        );
        assert_eq!(
            exit_status(vm, None, Some(3), None, log, None).reason,
            ExitReason::Crashed
        );
        assert_eq!(
            exit_status(vm, None, None, Some(11), log, None).reason,
            ExitReason::Crashed
        );
        assert_eq!(
            exit_status(c, None, Some(1), None, log, None).reason,
            ExitReason::Exited
        );
        assert_eq!(
            exit_status(vm, Some(Request::Stop), None, Some(15), log, None).reason,
            ExitReason::Stopped
        );
        assert_eq!(
            exit_status(c, Some(Request::Kill), None, Some(9), log, None).reason,
            ExitReason::Killed
        );
    }

    #[test]
    fn log_is_bounded_and_last_line_found() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        std::fs::write(&log, "first\n".repeat(100) + "last words\n\n").unwrap();
        assert_eq!(last_line(&log).as_deref(), Some("last words"));
        bound_log(&log, 10_000);
        assert!(
            std::fs::metadata(&log).unwrap().len() > 0,
            "under the limit: kept"
        );
        bound_log(&log, 100);
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
        let old = std::fs::read_to_string(dir.path().join("console.log.1")).unwrap();
        assert!(old.ends_with("last words\n\n"));
    }
}
