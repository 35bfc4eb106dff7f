//! Taking up, on daemon start, the instances a previous daemon ran.
//!
//! An instance recorded as running is reattached when its pid still names
//! the same process (same start time in /proc, so a reused pid is not
//! mistaken for it); a VM's control socket is asked for its state. The
//! others ended while no daemon watched: their exit record says why, or
//! they are marked `lost`.

use std::sync::Arc;

use vessel_api::{ExitReason, ExitStatus, Instance, InstanceKind, InstanceState};
use vessel_control::{RunState, process_ended, process_start_time};

use super::control::status_now;
use super::{Spawned, Supervisor, SupervisorError, from_record, now};

impl Supervisor {
    pub(super) fn reattach_all(self: &Arc<Self>) -> Result<(), SupervisorError> {
        let in_runtime = tokio::runtime::Handle::try_current().is_ok();
        for instance in self.store.list()? {
            if !instance.state.is_active() {
                if in_runtime {
                    self.resume_restart(&instance);
                }
                continue;
            }
            let start = self.store.pid_start(&instance.name)?;
            let alive = instance.pid.filter(|&pid| {
                pid > 0
                    && !process_ended(pid)
                    && start.is_some()
                    && process_start_time(pid) == start
            });
            match alive {
                Some(pid) if in_runtime => self.reattach(&instance, pid, start)?,
                _ => self.ended_while_away(&instance, alive.is_some())?,
            }
        }
        Ok(())
    }

    fn reattach(
        self: &Arc<Self>,
        instance: &Instance,
        pid: i32,
        start: Option<u64>,
    ) -> Result<(), SupervisorError> {
        let name = &instance.name;
        let (control, paused) = match instance.kind {
            InstanceKind::Vm => {
                let path = self.control_path(name);
                match status_now(&path) {
                    Ok(status) => (Some(path), status.state == RunState::Paused),
                    Err(e) => {
                        tracing::warn!(name = %name, error = %e, "the VMM's control socket does not answer; supervising it by pid only");
                        (None, false)
                    }
                }
            }
            InstanceKind::Container => self.container_control(instance),
        };
        let state = if paused {
            InstanceState::Paused
        } else {
            InstanceState::Running
        };
        self.store.set_state_from(
            name,
            &[
                InstanceState::Running,
                InstanceState::Paused,
                InstanceState::Stopping,
            ],
            state,
        )?;
        self.supervise(
            name,
            instance.kind,
            Spawned::Attached { pid, start },
            control,
            paused,
        );
        tracing::info!(name = %name, pid, state = state.as_str(), "reattached");
        Ok(())
    }

    fn ended_while_away(
        self: &Arc<Self>,
        instance: &Instance,
        still_runs: bool,
    ) -> Result<(), SupervisorError> {
        let name = &instance.name;
        let record = self.exit_record(name);
        let exit = match (&record, instance.pid) {
            (Some(r), _) => {
                let (reason, message) = from_record(r);
                ExitStatus {
                    reason,
                    code: Some(r.code),
                    signal: None,
                    message: Some(format!(
                        "ended while the daemon was not running{}",
                        message.map(|m| format!(": {m}")).unwrap_or_default()
                    )),
                }
            }
            (None, Some(pid)) if still_runs => ExitStatus {
                reason: ExitReason::Lost,
                code: None,
                signal: None,
                message: Some(format!(
                    "process {pid} still runs but cannot be supervised here; end it with `kill {pid}`"
                )),
            },
            (None, _) => ExitStatus {
                reason: ExitReason::Lost,
                code: None,
                signal: None,
                message: Some(
                    "its process ended while the daemon was not running, without an exit record"
                        .to_string(),
                ),
            },
        };
        tracing::warn!(name = %name, reason = exit.reason.as_str(), message = ?exit.message, "ended while the daemon was away");
        self.store.set_stopped(name, &exit, now())?;
        if tokio::runtime::Handle::try_current().is_ok() {
            self.after_exit(name, &exit, std::time::Duration::ZERO);
        }
        Ok(())
    }
}
