//! How a daemon is set up: where it listens, where it keeps state, which
//! programs run its instances.

use std::path::PathBuf;
use std::time::Duration;

use crate::admission::Overcommit;

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
    /// Host paths in requests must resolve under one of these
    /// (`--allow-dir`; default: the state dir and the image cache).
    pub allow_dirs: Vec<PathBuf>,
    /// How far running instances may overcommit the host's memory and CPUs.
    pub overcommit: Overcommit,
}

/// The guest image cache's parent: `$XDG_CACHE_HOME/vessel` or
/// `~/.cache/vessel` (images live in its `images/`).
pub fn image_cache_dir() -> PathBuf {
    match std::env::var_os("XDG_CACHE_HOME") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("vessel"),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".cache/vessel"),
    }
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
            allow_dirs: vec![state_dir.clone(), image_cache_dir()],
            overcommit: Overcommit::default(),
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
