//! Containers under the supervisor: how a container instance is started.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Command;

use super::{Supervisor, SupervisorError, last_line, open_log};

impl Supervisor {
    /// `runtime create` then `runtime start`; the container's init pid.
    pub(super) async fn spawn_container(
        &self,
        name: &str,
        bundle: &Path,
        log: &Path,
    ) -> Result<i32, SupervisorError> {
        let runtime = &self.config.runtime_program;
        let root = self.config.runtime_root();
        let runtime_log = log.with_file_name("runtime.log");
        let pid_file = log.with_file_name("container.pid");
        let _ = std::fs::remove_file(&pid_file);
        // A container left from an earlier run of this instance.
        let _ = self.runtime(&["delete", "--force", name]).await;
        let (out, err) = open_log(name, log)?;
        let status = Command::new(runtime)
            .arg("--root")
            .arg(&root)
            .arg("--log")
            .arg(&runtime_log)
            .arg("create")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(name)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status();
        let status = tokio::time::timeout(Duration::from_secs(60), status).await;
        let failed = |message: String| SupervisorError::StartFailed {
            name: name.to_string(),
            message,
        };
        match status {
            Err(_) => {
                return Err(failed(format!(
                    "{} create took over 60 s",
                    runtime.display()
                )));
            }
            Ok(Err(source)) => {
                return Err(SupervisorError::Spawn {
                    name: name.to_string(),
                    program: runtime.clone(),
                    source,
                });
            }
            Ok(Ok(s)) if !s.success() => {
                return Err(failed(format!(
                    "{} create: {s}: {}",
                    runtime.display(),
                    last_line(&runtime_log)
                        .or_else(|| last_line(log))
                        .unwrap_or_default()
                )));
            }
            Ok(Ok(_)) => {}
        }
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .filter(|pid| *pid > 0)
            .ok_or_else(|| {
                failed(format!(
                    "the runtime wrote no pid to {}",
                    pid_file.display()
                ))
            })?;
        if let Err(message) = self.runtime(&["start", name]).await {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = self.runtime(&["delete", "--force", name]).await;
            return Err(failed(message));
        }
        Ok(pid)
    }
}
