//! `vessel run --control-socket PATH`: the guest process serves its own
//! control socket (crates/control), so that the daemon can supervise it,
//! and reattach to it after the daemon restarts.
//!
//! On the riscv64 board, pause parks the run loop between slices (guest
//! time, which follows the host clock, goes on), and shutdown ends the run
//! loop as SIGTERM does: the VMM exits cleanly with code 0 and reason
//! `shutdown`. The virt board has no power button a guest listens to (the
//! SiFive test device only lets the guest power itself off), so this is
//! a clean VMM exit, not a guest shutdown.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use vessel_boards::riscv64::{Events, StopReason};
use vessel_control::{ConsoleHub, ControlServer, Controlled, RunState};

/// A console log is copied to `LOG.1` and emptied past this size.
pub const LOG_LIMIT: u64 = 1 << 20;

/// The riscv64 machine as the control socket sees it.
pub struct RiscvControl {
    pub events: Arc<Events>,
}

impl Controlled for RiscvControl {
    fn pause(&self) -> Result<(), String> {
        if self.events.stop_reason().is_some() {
            return Err("the guest is stopping".to_string());
        }
        if self.events.pause() {
            Ok(())
        } else {
            Err("the guest is already paused".to_string())
        }
    }

    fn resume(&self) -> Result<(), String> {
        if self.events.resume() {
            Ok(())
        } else {
            Err("the guest is not paused".to_string())
        }
    }

    fn shutdown(&self) -> Result<(), String> {
        self.events.stop(StopReason::Shutdown);
        Ok(())
    }

    fn state(&self) -> RunState {
        if self.events.stop_reason().is_some() {
            RunState::Stopping
        } else if self.events.is_paused() {
            RunState::Paused
        } else {
            RunState::Running
        }
    }
}

/// The console hub for `--console-log`.
pub fn hub(log: Option<&Path>) -> anyhow::Result<Arc<ConsoleHub>> {
    ConsoleHub::new(log, LOG_LIMIT).context("cannot open the console log")
}

/// Serve the control socket at `path`.
pub fn serve(
    path: &Path,
    controlled: Arc<dyn Controlled>,
    hub: Arc<ConsoleHub>,
) -> anyhow::Result<ControlServer> {
    ControlServer::start(path, controlled, hub).context("cannot serve the control socket")
}
