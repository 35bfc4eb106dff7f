//! How a daemon is set up: where it listens, where it keeps state, which
//! programs run its instances.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// The API's Unix socket.
    pub socket: PathBuf,
    /// `state.db`, instance logs and the container runtime's state.
    pub state_dir: PathBuf,
    /// The program whose `run` subcommand runs a VM (the `vessel` binary).
    pub vmm_program: PathBuf,
    /// The OCI runtime for containers (`vessel-runtime`, runc's command line).
    pub runtime_program: PathBuf,
    /// How long `stop` waits after SIGTERM before SIGKILL, unless the request says.
    pub stop_timeout: Duration,
    /// A console log is copied to `console.log.1` and emptied past this size.
    pub log_limit: u64,
}

impl Config {
    /// Defaults for `vessel daemon`: the programs are found next to the
    /// running executable (`vessel` itself and `vessel-runtime`).
    pub fn new(socket: PathBuf, state_dir: PathBuf) -> Config {
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("vessel"));
        let runtime = exe
            .parent()
            .map(|dir| dir.join("vessel-runtime"))
            .unwrap_or_else(|| PathBuf::from("vessel-runtime"));
        Config {
            socket,
            state_dir,
            vmm_program: exe,
            runtime_program: runtime,
            stop_timeout: Duration::from_secs(10),
            log_limit: 1024 * 1024,
        }
    }

    pub fn instance_dir(&self, name: &str) -> PathBuf {
        self.state_dir.join("instances").join(name)
    }

    pub fn runtime_root(&self) -> PathBuf {
        self.state_dir.join("runtime")
    }
}
