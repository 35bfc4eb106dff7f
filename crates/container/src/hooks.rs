//! OCI hooks: run a program with the container state on stdin, with an
//! optional timeout (waited for with a pidfd, not a sleep loop).

use std::io::Write;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use oci_spec::runtime::Hook;

/// Errors from running a hook.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{kind} hook {path}: cannot start: {source}")]
    Spawn {
        kind: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{kind} hook {path} failed: {status}{stderr}")]
    Failed {
        kind: &'static str,
        path: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("{kind} hook {path} timed out after {secs} s and was killed")]
    Timeout {
        kind: &'static str,
        path: PathBuf,
        secs: i64,
    },
}

/// Opens a pidfd for `pid` (None if the kernel lacks pidfd_open).
pub fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits until the process behind `pidfd` exits or `timeout_ms` passes
/// (-1: forever). Returns false on timeout.
pub fn wait_pidfd(pidfd: &OwnedFd, timeout_ms: i32) -> bool {
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let t = if timeout_ms < 0 {
        PollTimeout::NONE
    } else {
        PollTimeout::try_from(timeout_ms).unwrap_or(PollTimeout::MAX)
    };
    loop {
        match poll(&mut fds, t) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return true,
        }
    }
}

/// Runs one hook with `state` (the state JSON) on its stdin.
pub fn run(kind: &'static str, hook: &Hook, state: &[u8]) -> Result<(), HookError> {
    let path = hook.path().clone();
    let mut cmd = Command::new(&path);
    if let Some(args) = hook.args()
        && let Some((first, rest)) = args.split_first()
    {
        cmd.arg0(first);
        cmd.args(rest);
    }
    cmd.env_clear();
    for e in hook.env().iter().flatten() {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        kind,
        path: path.clone(),
        source,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine.
        let _ = stdin.write_all(state);
    }
    if let Some(secs) = hook.timeout() {
        let done = match pidfd_open(child.id() as i32) {
            Some(fd) => wait_pidfd(
                &fd,
                i32::try_from(secs.saturating_mul(1000)).unwrap_or(i32::MAX),
            ),
            None => true,
        };
        if !done {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HookError::Timeout { kind, path, secs });
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|source| HookError::Spawn {
            kind,
            path: path.clone(),
            source,
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(HookError::Failed {
            kind,
            path,
            status: out.status.to_string(),
            stderr: if err.is_empty() {
                String::new()
            } else {
                format!(": {err}")
            },
        });
    }
    Ok(())
}

/// Runs a list of hooks in order, stopping at the first failure.
pub fn run_all(
    kind: &'static str,
    hooks: Option<&Vec<Hook>>,
    state: &[u8],
) -> Result<(), HookError> {
    for h in hooks.into_iter().flatten() {
        run(kind, h, state)?;
    }
    Ok(())
}

/// Runs every hook of a list whose failures do not stop the lifecycle
/// (poststart, poststop): each failure is a warning, the rest still run.
pub fn run_all_warn(kind: &'static str, hooks: Option<&Vec<Hook>>, state: &[u8]) {
    for h in hooks.into_iter().flatten() {
        if let Err(e) = run(kind, h, state) {
            crate::warn(&e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: &str) -> Hook {
        serde_json::from_str(json).expect("hook json")
    }

    #[test]
    fn hook_reads_state_from_stdin() {
        let dir = std::env::temp_dir().join(format!("vessel-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let out = dir.join("out");
        let h = hook(&format!(
            r#"{{"path":"/bin/sh","args":["sh","-c","cat > {}"]}}"#,
            out.display()
        ));
        run("prestart", &h, b"{\"id\":\"x\"}").expect("hook runs");
        assert_eq!(
            std::fs::read_to_string(&out).expect("output"),
            "{\"id\":\"x\"}"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn failing_hook_reports_status_and_stderr() {
        let h = hook(r#"{"path":"/bin/sh","args":["sh","-c","echo nope >&2; exit 3"]}"#);
        let err = run("poststart", &h, b"{}").expect_err("exit 3");
        let msg = err.to_string();
        assert!(
            msg.contains("poststart") && msg.contains("nope") && msg.contains('3'),
            "{msg}"
        );
    }

    #[test]
    fn hook_over_its_timeout_is_killed() {
        let h = hook(r#"{"path":"/bin/sh","args":["sh","-c","exec sleep 30"],"timeout":1}"#);
        let err = run("createRuntime", &h, b"{}").expect_err("timeout");
        assert!(matches!(err, HookError::Timeout { secs: 1, .. }), "{err}");
    }
}
