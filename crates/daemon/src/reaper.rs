//! Reaping orphans.
//!
//! The daemon is a child subreaper (so that a container's init, orphaned
//! when the runtime's `create` exits, becomes its child and its exit status
//! can be read). Every other process orphaned below the daemon (the
//! runtime's double-forked helpers, a container's leftovers) becomes its
//! child too, and without a `wait` stays a zombie for ever.
//!
//! The reaper must not take the exit status of the children the daemon
//! waits for itself: the supervised processes (their pids come from the
//! supervisor) and the short-lived commands tokio waits for (the runtime's
//! `create`, `start`, `delete`...). So it only reaps a zombie that is not
//! supervised and has stayed a zombie for `GRACE`: tokio reaps its own
//! children as soon as they end, so a child still unreaped after that long
//! is one that nobody waits for. The children are found in
//! /proc/self/task/*/children and their state in /proc/PID/stat.

use std::collections::{HashMap, HashSet};
use std::sync::Weak;
use std::time::{Duration, Instant};

use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

use crate::supervisor::Supervisor;

/// How long a zombie must stay unreaped before the reaper takes it.
pub const GRACE: Duration = Duration::from_secs(5);
/// A scan at least this often, and on every SIGCHLD.
const SCAN: Duration = Duration::from_secs(1);

/// Reap orphans until the supervisor is gone or detached.
pub fn spawn(supervisor: Weak<Supervisor>) {
    tokio::spawn(async move {
        let mut sigchld = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGCHLD stream; scanning for orphans every second");
                None
            }
        };
        let mut seen: HashMap<i32, Instant> = HashMap::new();
        loop {
            match sigchld.as_mut() {
                Some(s) => {
                    let _ = tokio::time::timeout(SCAN, s.recv()).await;
                }
                None => tokio::time::sleep(SCAN).await,
            }
            let Some(sup) = supervisor.upgrade() else {
                return;
            };
            if sup.is_detached() {
                return;
            }
            let supervised = sup.supervised_pids();
            drop(sup);
            let reaped = reap_orphans(&mut seen, &supervised, Instant::now());
            if reaped > 0 {
                tracing::debug!(reaped, "reaped orphaned zombies");
            }
        }
    });
}

/// One scan: reap the zombie children that are not in `supervised` and
/// were already zombies `GRACE` before `now`. Returns how many were reaped.
pub fn reap_orphans(
    seen: &mut HashMap<i32, Instant>,
    supervised: &HashSet<i32>,
    now: Instant,
) -> usize {
    let zombies: HashSet<i32> = zombie_children(std::process::id() as i32)
        .into_iter()
        .filter(|pid| !supervised.contains(pid))
        .collect();
    seen.retain(|pid, _| zombies.contains(pid));
    let mut reaped = 0;
    for pid in zombies {
        let first = *seen.entry(pid).or_insert(now);
        if now.duration_since(first) < GRACE {
            continue;
        }
        // WNOHANG on one pid: a zombie is collected at once; anything else
        // (already reaped by its owner meanwhile) is left.
        if let Ok(status) = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG))
            && status.pid().is_some()
        {
            reaped += 1;
        }
        seen.remove(&pid);
    }
    reaped
}

/// The children of process `pid` (all its threads) that are zombies.
pub fn zombie_children(pid: i32) -> Vec<i32> {
    children(pid)
        .into_iter()
        .filter(|&child| process_state(child) == Some('Z'))
        .collect()
}

/// The children of every thread of `pid`.
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The state letter of /proc/PID/stat (after the parenthesised command,
/// which may itself hold spaces and parentheses).
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_state(&stat)
}

fn parse_state(stat: &str) -> Option<char> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_after_an_awkward_command_name() {
        assert_eq!(parse_state("42 (a) b (c) Z 1 42 42 0"), Some('Z'));
        assert_eq!(parse_state("7 (sleep) S 1"), Some('S'));
        assert_eq!(parse_state("garbage"), None);
    }

    /// An orphan-like zombie (a child nobody waits for) is reaped once it
    /// has been a zombie for GRACE; a supervised one is left for its owner.
    #[test]
    fn reaps_unwaited_zombies_but_not_supervised_ones() {
        // `sh -c 'exit 3'` as two direct children that nobody waits for.
        let spawn = || {
            std::process::Command::new("sh")
                .args(["-c", "exit 3"])
                .spawn()
                .expect("sh")
        };
        let mut orphan = spawn();
        let mut kept = spawn();
        let (o, k) = (orphan.id() as i32, kept.id() as i32);
        // Until both are zombies (they exit at once).
        while process_state(o) != Some('Z') || process_state(k) != Some('Z') {
            std::thread::sleep(Duration::from_millis(10));
        }
        let supervised: HashSet<i32> = [k].into();
        let mut seen = HashMap::new();
        let t0 = Instant::now();
        reap_orphans(&mut seen, &supervised, t0);
        assert_eq!(process_state(o), Some('Z'), "reaped before the grace");
        reap_orphans(&mut seen, &supervised, t0 + GRACE);
        assert_eq!(process_state(o), None, "the unwaited zombie was reaped");
        assert_eq!(process_state(k), Some('Z'), "the supervised one is kept");
        // Its owner still gets its status; the orphan's is gone.
        assert_eq!(kept.wait().unwrap().code(), Some(3));
        assert!(orphan.wait().is_err());
    }
}
