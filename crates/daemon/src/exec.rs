//! `exec`: run a command in a running container through the OCI runtime
//! (`vessel-runtime exec NAME -- CMD`), returning its exit code and output.

use std::process::Stdio;
use std::time::Duration;

use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use vessel_api::{
    ExecRequest, ExecResult, InstanceKind, InstanceState, MAX_ARG_LEN, MAX_EXEC_OUTPUT,
};

use crate::supervisor::{Supervisor, SupervisorError};

/// The most arguments and environment entries an exec may pass.
pub const MAX_EXEC_ARGS: usize = 256;

#[derive(Debug, Error)]
pub enum ExecError {
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error("exec needs a command: give args such as [\"ls\", \"/\"]")]
    NoCommand,
    #[error(
        "exec: at most {MAX_EXEC_ARGS} args and env entries, each under {MAX_ARG_LEN} bytes without NUL bytes"
    )]
    BadArgs,
    #[error("exec: env entry {0:?} is not NAME=VALUE")]
    BadEnv(String),
    #[error("exec: cwd {0:?} is not an absolute path inside the container")]
    BadCwd(String),
    #[error("instance {0:?} is a VM: exec runs commands in containers; use its console instead")]
    NotContainer(String),
    #[error("instance {name:?} is {state}: exec needs it running (`vessel start {name}`)")]
    NotRunning { name: String, state: &'static str },
    #[error("exec in {name:?}: cannot run {program}: {source}")]
    Spawn {
        name: String,
        program: String,
        source: std::io::Error,
    },
    #[error("exec in {name:?}: the runtime failed: {message}")]
    Runtime { name: String, message: String },
    #[error("exec in {name:?}: the command did not end within {secs} s; it was killed")]
    Timeout { name: String, secs: u64 },
}

fn check(request: &ExecRequest) -> Result<(), ExecError> {
    if request.args.is_empty() || request.args[0].is_empty() {
        return Err(ExecError::NoCommand);
    }
    let all = request.args.iter().chain(&request.env);
    if request.args.len() + request.env.len() > MAX_EXEC_ARGS
        || all
            .clone()
            .any(|a| a.len() > MAX_ARG_LEN || a.contains('\0'))
    {
        return Err(ExecError::BadArgs);
    }
    if let Some(bad) = request
        .env
        .iter()
        .find(|e| e.split_once('=').is_none_or(|(k, _)| k.is_empty()))
    {
        return Err(ExecError::BadEnv(bad.clone()));
    }
    if let Some(cwd) = &request.cwd
        && (!cwd.starts_with('/') || cwd.contains('\0') || cwd.len() > MAX_ARG_LEN)
    {
        return Err(ExecError::BadCwd(cwd.clone()));
    }
    Ok(())
}

/// Run `request` in container `name`; waits at most `timeout`.
pub async fn exec(
    sup: &Supervisor,
    name: &str,
    request: &ExecRequest,
    timeout: Duration,
) -> Result<ExecResult, ExecError> {
    check(request)?;
    let instance = sup.get(name)?;
    if instance.kind != InstanceKind::Container {
        return Err(ExecError::NotContainer(name.to_string()));
    }
    if instance.state != InstanceState::Running {
        return Err(ExecError::NotRunning {
            name: name.to_string(),
            state: instance.state.as_str(),
        });
    }
    let config = sup.config();
    let mut command = Command::new(&config.runtime_program);
    command.arg("--root").arg(config.runtime_root()).arg("exec");
    for e in &request.env {
        command.arg("--env").arg(e);
    }
    if let Some(cwd) = &request.cwd {
        command.arg("--cwd").arg(cwd);
    }
    command
        .arg(name)
        .arg("--")
        .args(&request.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| ExecError::Spawn {
        name: name.to_string(),
        program: config.runtime_program.display().to_string(),
        source,
    })?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let run = async {
        let (out, err, status) = tokio::join!(
            read_bounded(stdout.as_mut()),
            read_bounded(stderr.as_mut()),
            child.wait()
        );
        (out, err, status)
    };
    let Ok((out, err, status)) = tokio::time::timeout(timeout, run).await else {
        // kill_on_drop ends the runtime; the exec'd process is in the
        // container and ends with it or keeps running unsupervised, so kill
        // it through its process group is not possible: say so.
        return Err(ExecError::Timeout {
            name: name.to_string(),
            secs: timeout.as_secs(),
        });
    };
    let status = status.map_err(|source| ExecError::Spawn {
        name: name.to_string(),
        program: config.runtime_program.display().to_string(),
        source,
    })?;
    let (stdout, out_cut) = out;
    let (stderr, err_cut) = err;
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    // The runtime's own failures (no such container, no such command) come
    // as "vessel-runtime: ..." on stderr with exit code 1.
    if let Some(message) = stderr
        .lines()
        .find_map(|l| l.strip_prefix("vessel-runtime: "))
        .filter(|_| status.code() == Some(1) || status.code().is_none())
    {
        return Err(ExecError::Runtime {
            name: name.to_string(),
            message: message.to_string(),
        });
    }
    use std::os::unix::process::ExitStatusExt;
    let exit_code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1);
    Ok(ExecResult {
        exit_code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr,
        truncated: out_cut || err_cut,
    })
}

/// Read a stream to its end, keeping at most MAX_EXEC_OUTPUT bytes.
async fn read_bounded<R: tokio::io::AsyncRead + Unpin>(stream: Option<&mut R>) -> (Vec<u8>, bool) {
    let Some(stream) = stream else {
        return (Vec::new(), false);
    };
    let mut kept = Vec::new();
    let mut cut = false;
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = MAX_EXEC_OUTPUT - kept.len();
                if n > room {
                    cut = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(args: &[&str], env: &[&str], cwd: Option<&str>) -> ExecRequest {
        ExecRequest {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|s| s.to_string()).collect(),
            cwd: cwd.map(String::from),
        }
    }

    #[test]
    fn requests_are_checked() {
        assert!(check(&req(&["ls"], &["A=1"], Some("/"))).is_ok());
        assert!(matches!(
            check(&req(&[], &[], None)),
            Err(ExecError::NoCommand)
        ));
        assert!(matches!(
            check(&req(&["a\0"], &[], None)),
            Err(ExecError::BadArgs)
        ));
        assert!(matches!(
            check(&req(&["ls"], &["NOEQ"], None)),
            Err(ExecError::BadEnv(_))
        ));
        assert!(matches!(
            check(&req(&["ls"], &["=x"], None)),
            Err(ExecError::BadEnv(_))
        ));
        assert!(matches!(
            check(&req(&["ls"], &[], Some("tmp"))),
            Err(ExecError::BadCwd(_))
        ));
    }
}
