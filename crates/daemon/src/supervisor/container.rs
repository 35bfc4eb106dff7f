//! Containers under the supervisor.
//!
//! A container runs under a monitor process of its own, `vessel run
//! --container --bundle DIR --name NAME --control-socket ...`, spawned as
//! a VM's VMM is (its own process group, the console log and exit record
//! written by itself), so that it outlives the daemon and a restarted
//! daemon reattaches to it the same way. The monitor is the container
//! init's parent; it serves the control socket (status, pause and resume
//! with the cgroup freezer, shutdown as SIGTERM, the console: the
//! container's terminal or stdio) and writes `exit.json` with the
//! process's exit code, or `oom` when the memory cgroup OOM-killed it.
//! The runtime state lives under the daemon's runtime root, so
//! `vessel-runtime exec` (see `exec.rs`) enters the container as before.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use vessel_api::{ExitReason, Instance, InstanceState};
use vessel_control::{ExitRecord, RunState};

use super::control::call;
use super::{Supervisor, SupervisorError, last_line, open_log};

/// How long a container's monitor may take to have the container running.
const START_TIMEOUT: Duration = Duration::from_secs(60);

impl Supervisor {
    /// Start the container's monitor and wait until its control socket
    /// answers (the container's process runs); a monitor that ends first
    /// is a start failure, with its reason.
    pub(super) async fn spawn_container(
        &self,
        name: &str,
        bundle: &Path,
        log: &Path,
    ) -> Result<(Child, i32), SupervisorError> {
        let root = self.config.runtime_root();
        // A container left from an earlier run of this instance (a monitor
        // killed with SIGKILL leaves its state behind).
        let _ = self.runtime(&["delete", "--force", name]).await;
        let (out, err) = open_log(name, log)?;
        let exit = self.exit_path(name);
        let control = self.control_path(name);
        for stale in [&exit, &control] {
            if let Err(source) = std::fs::remove_file(stale)
                && source.kind() != std::io::ErrorKind::NotFound
            {
                return Err(SupervisorError::Io {
                    name: name.to_string(),
                    path: stale.clone(),
                    source,
                });
            }
        }
        let program = &self.config.vmm_program;
        let mut child = Command::new(program)
            .arg("run")
            .arg("--container")
            .arg("--bundle")
            .arg(bundle)
            .arg("--name")
            .arg(name)
            .arg("--container-root")
            .arg(&root)
            .arg("--control-socket")
            .arg(&control)
            .arg("--console-log")
            .arg(log)
            .arg("--exit-file")
            .arg(&exit)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|source| SupervisorError::Spawn {
                name: name.to_string(),
                program: program.clone(),
                source,
            })?;
        // Taken now: once the monitor has been waited for, tokio forgets it.
        let pid = child.id().map_or(0, |p| p as i32);
        let failed = |message: String| SupervisorError::StartFailed {
            name: name.to_string(),
            message,
        };
        let began = Instant::now();
        loop {
            if control.exists()
                && call(&control, vessel_control::Request::Status {})
                    .await
                    .is_ok_and(|r| r.ok)
            {
                return Ok((child, pid));
            }
            match child.try_wait() {
                Ok(Some(status)) => {
                    let record = vessel_control::read_exit_record(&exit).ok().flatten();
                    if record.as_ref().is_some_and(|r| r.reason != "error") {
                        // The container ran and already ended: the watcher
                        // records how (tokio keeps the status for it).
                        return Ok((child, pid));
                    }
                    let why = record
                        .and_then(|r| r.message)
                        .or_else(|| last_line(log))
                        .unwrap_or_default();
                    return Err(failed(format!(
                        "the container's monitor ({} run --container) ended ({status}) before the \
                         container ran: {why}",
                        program.display()
                    )));
                }
                Ok(None) => {}
                Err(source) => {
                    return Err(SupervisorError::Spawn {
                        name: name.to_string(),
                        program: program.clone(),
                        source,
                    });
                }
            }
            if began.elapsed() > START_TIMEOUT {
                signal(pid, true, Signal::SIGKILL);
                let _ = child.wait().await;
                let _ = self.runtime(&["delete", "--force", name]).await;
                return Err(failed(format!(
                    "the container did not run within {} s{}",
                    START_TIMEOUT.as_secs(),
                    last_line(log).map(|l| format!(": {l}")).unwrap_or_default()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A running container's control socket and whether it is paused, when
    /// a previous daemon left it (None: no monitor answers, an older
    /// daemon's container supervised by pid).
    pub(super) fn container_control(&self, instance: &Instance) -> (Option<PathBuf>, bool) {
        let path = self.control_path(&instance.name);
        match super::control::status_now(&path) {
            Ok(status) => (Some(path), status.state == RunState::Paused),
            Err(_) => (None, instance.state == InstanceState::Paused),
        }
    }
}

/// The container's process: the monitor's child (None before it runs).
pub(crate) fn container_process(monitor: i32) -> Option<i32> {
    let tasks = std::fs::read_dir(format!("/proc/{monitor}/task")).ok()?;
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        if let Some(pid) = children.split_whitespace().find_map(|p| p.parse().ok()) {
            return Some(pid);
        }
    }
    None
}

/// Signal a container: with a monitor, its process (SIGTERM is also what
/// the monitor passes on), or the monitor's group before the process
/// runs; without one (an older daemon's container), `pid` itself.
pub(super) fn signal(pid: i32, monitored: bool, signal: Signal) {
    // 0 or less would signal a whole process group (the daemon's own).
    if pid <= 1 {
        tracing::warn!(pid, ?signal, "refusing to signal a container without a pid");
        return;
    }
    let result = match (monitored, container_process(pid)) {
        (true, Some(process)) => kill(Pid::from_raw(process), signal),
        (true, None) => killpg(Pid::from_raw(pid), signal),
        (false, _) => kill(Pid::from_raw(pid), signal),
    };
    if let Err(e) = result {
        tracing::debug!(pid, ?signal, error = %e, "signalling a container");
    }
}

/// The reason a container monitor's exit record gives (None for others).
pub(super) fn from_record(record: &ExitRecord) -> Option<(ExitReason, Option<String>)> {
    let reason = match record.reason.as_str() {
        "process_exited" => ExitReason::Exited,
        "process_killed" => ExitReason::Crashed,
        "oom" => ExitReason::Oom,
        _ => return None,
    };
    Some((reason, record.message.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(reason: &str, code: i32) -> ExitRecord {
        ExitRecord {
            code,
            reason: reason.into(),
            message: Some("m".into()),
            pid: 1,
            ended_at: 0,
        }
    }

    #[test]
    fn monitor_records() {
        assert_eq!(
            from_record(&record("process_exited", 3)).map(|r| r.0),
            Some(ExitReason::Exited)
        );
        assert_eq!(
            from_record(&record("oom", 137)),
            Some((ExitReason::Oom, Some("m".into())))
        );
        assert_eq!(from_record(&record("powered_off", 0)), None);
    }

    #[test]
    fn the_process_of_a_monitor_is_its_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        // Other tests' children may be listed too: ours is among them.
        let tasks = std::fs::read_dir(format!("/proc/{me}/task")).unwrap();
        let all: Vec<i32> = tasks
            .flatten()
            .flat_map(|t| {
                std::fs::read_to_string(t.path().join("children"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        assert!(all.contains(&(child.id() as i32)), "{all:?}");
        assert!(container_process(me).is_some());
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(container_process(i32::MAX), None);
    }
}
