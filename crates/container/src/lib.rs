//! vessel's OCI runtime library (runtime-spec 1.2).
//!
//! `create` clones the container's init straight from the runtime process
//! (no re-exec of a large binary): the child joins or creates namespaces,
//! builds the rootfs, applies the process settings, and blocks on an exec
//! fifo until `start`. State lives under a root directory (default
//! /run/vessel-runtime), one locked directory per container.
//!
//! The `vessel-runtime` binary (crates/runtime) maps runc's command line to
//! these functions; `vessel run --container` calls [`run_container`].

pub mod console;
pub mod create;
pub mod events;
pub mod exec;
pub mod features;
pub mod foreground;
pub mod hooks;
pub mod init;
pub mod lsm;
pub mod ops;
pub mod process;
pub mod rootfs;
pub mod spec;
pub mod state;
pub mod sync;

use std::path::PathBuf;

pub use create::{CreateOpts, Created, create};
pub use foreground::{ContainerRun, Supervision, run, run_container, run_container_with, run_with};
pub use ops::{
    delete, kill, list, parse_kill_signal, parse_signal, ps, set_paused, start, state, update,
};
pub use state::{DEFAULT_ROOT, StateDoc, Status};

static WARN: std::sync::OnceLock<fn(&str)> = std::sync::OnceLock::new();

/// Sends the library's warnings (a config field the host cannot honour, a
/// failed poststart or poststop hook) to `f` instead of stderr. The first
/// call wins.
pub fn set_warning_handler(f: fn(&str)) {
    let _ = WARN.set(f);
}

/// Reports a warning (see [`set_warning_handler`]).
pub fn warn(msg: &str) {
    match WARN.get() {
        Some(f) => f(msg),
        None => eprintln!("vessel-runtime: warning: {msg}"),
    }
}

/// Errors of the runtime library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error(transparent)]
    Store(#[from] state::StateError),
    #[error(transparent)]
    Cgroup(#[from] vessel_sandbox::cgroups::CgroupError),
    #[error(transparent)]
    Namespace(#[from] vessel_sandbox::namespaces::NamespaceError),
    #[error(transparent)]
    Hook(#[from] hooks::HookError),
    #[error(transparent)]
    Sync(#[from] sync::SyncError),
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    #[error("container init failed: {0}")]
    Init(String),
    #[error("{0}")]
    State(String),
    #[error("{0}")]
    Usage(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot {what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error("cannot create the container process with namespaces {flags:?}: {source}")]
    Clone {
        flags: nix::sched::CloneFlags,
        source: std::io::Error,
    },
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// Result of the runtime library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit code of a wait status, as a shell reports it.
pub fn exit_code(ws: nix::sys::wait::WaitStatus) -> Option<i32> {
    match ws {
        nix::sys::wait::WaitStatus::Exited(_, c) => Some(c),
        nix::sys::wait::WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}
