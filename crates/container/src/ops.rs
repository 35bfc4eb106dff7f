//! Commands on an existing container: start, state, kill, delete, pause,
//! resume, update, ps, list.

use std::path::Path;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxResources, Spec};
use vessel_sandbox::cgroups::Cgroup;

use crate::create::state_doc;
use crate::hooks;
use crate::state::{ContainerDir, Saved, StateDoc, Status, alive};
use crate::{Error, Result};

/// An opened (locked) container with its saved state.
pub struct Container {
    pub dir: ContainerDir,
    pub saved: Saved,
    pub cgroup: Cgroup,
}

impl Container {
    /// Opens and locks container `id` under `root`.
    pub fn open(root: &Path, id: &str) -> Result<Self> {
        let dir = ContainerDir::open(root, id)?;
        let saved = dir.load()?;
        let cgroup = Cgroup::new(&saved.cgroup_path)?;
        Ok(Container { dir, saved, cgroup })
    }

    pub fn status(&self) -> Status {
        self.saved.status(&self.dir, || self.cgroup.is_frozen())
    }

    pub fn spec(&self) -> Option<Spec> {
        serde_json::from_value(self.saved.config.clone()).ok()
    }

    /// The runtime-spec state.
    pub fn state(&self) -> StateDoc {
        let status = self.status();
        let exit = if status == Status::Stopped {
            self.dir.exit_status()
        } else {
            None
        };
        state_doc(&self.saved, status, exit)
    }

    fn state_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.state()).unwrap_or_default()
    }

    fn pid_alive(&self) -> bool {
        alive(self.saved.pid, self.saved.start_time)
    }
}

fn wrong_state(id: &str, action: &str, status: Status) -> Error {
    Error::State(format!("cannot {action} container {id:?}: it is {status}"))
}

/// `start`: lets the init exec the process.
pub fn start(root: &Path, id: &str) -> Result<()> {
    let c = Container::open(root, id)?;
    let status = c.status();
    if status != Status::Created {
        return Err(wrong_state(id, "start", status));
    }
    let fifo_path = c.dir.fifo();
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&fifo_path)
        .map_err(|source| Error::Io {
            what: "cannot open the exec fifo",
            path: fifo_path.clone(),
            source,
        })?;
    let pidfd = hooks::pidfd_open(c.saved.pid);
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    loop {
        let mut fds = vec![PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        if let Some(p) = &pidfd {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(Error::Sys {
                    what: "wait for the container init".into(),
                    source: e,
                });
            }
            Ok(_) => {}
        }
        let fifo_ready = fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLIN));
        if fifo_ready {
            let mut b = [0u8; 1];
            let n = nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&fifo), &mut b).unwrap_or(0);
            if n == 1 {
                break;
            }
        }
        let died = fds
            .get(1)
            .and_then(|f| f.revents())
            .is_some_and(|r| !r.is_empty());
        if died {
            return Err(Error::State(format!(
                "cannot start container {id:?}: its init exited before start"
            )));
        }
    }
    let _ = std::fs::remove_file(&fifo_path);
    if let Some(spec) = c.spec() {
        let state = c.state_json();
        if let Some(h) = spec.hooks() {
            // runtime-spec (and runc): a failing poststart hook is a
            // warning; the container keeps running.
            c.dir
                .unlocked(|| hooks::run_all_warn("poststart", h.poststart().as_ref(), &state));
        }
    }
    Ok(())
}

/// Parses a signal name or number (`KILL`, `SIGKILL`, `9`).
pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| Error::Usage(format!("unknown signal {s:?}")));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>()
        .map_err(|_| Error::Usage(format!("unknown signal {s:?}")))
}

/// Parses the signal of `kill`: as [`parse_signal`], plus `0` (None), which
/// only checks that the container is not stopped (as runc).
pub fn parse_kill_signal(s: &str) -> Result<Option<Signal>> {
    if s.trim() == "0" {
        return Ok(None);
    }
    parse_signal(s).map(Some)
}

/// `kill [--all]`. `None` is signal 0: nothing is sent, and the call fails
/// only if the container is stopped.
pub fn kill(root: &Path, id: &str, sig: impl Into<Option<Signal>>, all: bool) -> Result<()> {
    let c = Container::open(root, id)?;
    let status = c.status();
    if status == Status::Stopped {
        return Err(Error::State(format!("container {id:?} is not running")));
    }
    let Some(sig) = sig.into() else {
        return Ok(());
    };
    if all {
        signal_all(&c.cgroup, sig);
        return Ok(());
    }
    nix::sys::signal::kill(Pid::from_raw(c.saved.pid), sig).map_err(|e| Error::Sys {
        what: format!("send {sig} to pid {}", c.saved.pid),
        source: e,
    })
}

/// Sends `sig` to every process of the cgroup (frozen meanwhile, so that
/// none escapes by forking).
pub fn signal_all(cg: &Cgroup, sig: Signal) {
    let froze = cg.set_frozen(true).is_ok();
    for p in cg.pids().unwrap_or_default() {
        let _ = nix::sys::signal::kill(Pid::from_raw(p), sig);
    }
    if froze {
        let _ = cg.set_frozen(false);
    }
}

/// Kills what is left in a cgroup and removes it.
pub fn destroy_cgroup(cg: &Cgroup) {
    for _ in 0..100 {
        let pids = cg.pids().unwrap_or_default();
        if pids.is_empty() {
            break;
        }
        signal_all(cg, Signal::SIGKILL);
        for p in pids {
            if let Some(fd) = hooks::pidfd_open(p) {
                hooks::wait_pidfd(&fd, 1000);
            }
        }
    }
    for _ in 0..100 {
        if cg.destroy().is_ok() {
            return;
        }
        std::thread::yield_now();
    }
}

/// `delete [--force]`.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let c = match Container::open(root, id) {
        Ok(c) => c,
        // As runc and crun: forcing the delete of a missing container (say,
        // one whose create failed and cleaned up) is not an error.
        // A directory without state.json (a crashed create) goes too.
        Err(Error::Store(crate::state::StateError::NotFound(_))) if force => {
            if let Ok(dir) = ContainerDir::open(root, id)
                && !dir.state_file().exists()
            {
                let _ = dir.remove();
            }
            return Ok(());
        }
        Err(Error::Store(crate::state::StateError::Corrupt { .. })) if force => {
            let dir = ContainerDir::open(root, id)?;
            return Ok(dir.remove()?);
        }
        Err(e) => return Err(e),
    };
    let status = c.status();
    match status {
        Status::Stopped | Status::Created | Status::Creating => {}
        _ if force => {}
        _ => {
            return Err(Error::State(format!(
                "cannot delete container {id:?} that is not stopped: {status}; stop it or use --force"
            )));
        }
    }
    if c.pid_alive() {
        let pidfd = hooks::pidfd_open(c.saved.pid);
        let _ = nix::sys::signal::kill(Pid::from_raw(c.saved.pid), Signal::SIGKILL);
        if status == Status::Paused {
            let _ = c.cgroup.set_frozen(false);
        }
        if let Some(fd) = pidfd {
            hooks::wait_pidfd(&fd, 10_000);
        }
    }
    destroy_cgroup(&c.cgroup);
    let state = c.state_json();
    // Poststop hooks run while the state directory still exists (so they
    // can still query it); a failure is a warning and the delete goes on.
    if let Some(h) = c.spec().as_ref().and_then(|s| s.hooks().clone()) {
        c.dir
            .unlocked(|| hooks::run_all_warn("poststop", h.poststop().as_ref(), &state));
    }
    let Container { dir, .. } = c;
    dir.remove()?;
    Ok(())
}

/// `state`.
pub fn state(root: &Path, id: &str) -> Result<StateDoc> {
    Ok(Container::open(root, id)?.state())
}

/// `pause` / `resume`.
pub fn set_paused(root: &Path, id: &str, paused: bool) -> Result<()> {
    let c = Container::open(root, id)?;
    let status = c.status();
    let ok = if paused {
        status == Status::Running
    } else {
        status == Status::Paused
    };
    if !ok {
        return Err(wrong_state(
            id,
            if paused { "pause" } else { "resume" },
            status,
        ));
    }
    Ok(c.cgroup.set_frozen(paused)?)
}

/// `update --resources`: applies new limits to a live container.
pub fn update(root: &Path, id: &str, res: &LinuxResources) -> Result<()> {
    let c = Container::open(root, id)?;
    let status = c.status();
    if status == Status::Stopped {
        return Err(wrong_state(id, "update", status));
    }
    Ok(c.cgroup.apply(res)?)
}

/// `ps`: the host pids of the container's processes.
pub fn ps(root: &Path, id: &str) -> Result<Vec<i32>> {
    let c = Container::open(root, id)?;
    Ok(c.cgroup.pids()?)
}

/// `list`: the state of every container under `root`.
pub fn list(root: &Path) -> Result<Vec<StateDoc>> {
    let mut out = Vec::new();
    for id in crate::state::list_ids(root)? {
        if let Ok(c) = Container::open(root, &id) {
            out.push(c.state());
        }
    }
    Ok(out)
}

use std::os::unix::fs::OpenOptionsExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("KILL").expect("KILL"), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").expect("sigterm"), Signal::SIGTERM);
        assert_eq!(parse_signal("9").expect("9"), Signal::SIGKILL);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
        assert_eq!(parse_kill_signal("0").expect("0"), None);
        assert_eq!(
            parse_kill_signal("TERM").expect("TERM"),
            Some(Signal::SIGTERM)
        );
    }
}
