//! The vessel daemon: the REST API server on a Unix socket, the instance
//! registry (SQLite under the state directory) and the supervisor of
//! instance processes. `vessel daemon` runs it; tests start it in-process.

pub mod admission;
pub mod allowed;
pub mod config;
pub mod console;
pub mod exec;
pub mod metrics;
pub mod reaper;
pub mod server;
pub mod store;
pub mod supervisor;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::Config;
pub use supervisor::{Supervisor, SupervisorError};

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error("creating {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another vessel daemon answers on {0}: stop it first, or give this one another --socket"
    )]
    AlreadyRunning(PathBuf),
    #[error("listening on {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error("serving the API: {0}")]
    Serve(std::io::Error),
}

/// A daemon serving in the background of the current tokio runtime.
pub struct RunningDaemon {
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), DaemonError>>,
    socket: PathBuf,
    supervisor: Arc<Supervisor>,
}

impl RunningDaemon {
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    pub fn supervisor(&self) -> &Arc<Supervisor> {
        &self.supervisor
    }

    /// Stop serving and remove the socket. Instance processes keep running
    /// (they are in their own process groups).
    pub async fn shutdown(mut self) -> Result<(), DaemonError> {
        self.supervisor.detach();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.wait().await
    }

    /// Wait until the server ends (after `shutdown` or an error).
    pub async fn wait(&mut self) -> Result<(), DaemonError> {
        let result = match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(DaemonError::Serve(std::io::Error::other(e))),
        };
        let _ = std::fs::remove_file(&self.socket);
        result
    }
}

/// Prepare the state directory and the socket, open the store, and serve.
pub async fn start(config: Config) -> Result<RunningDaemon, DaemonError> {
    let mkdir = |path: &std::path::Path| {
        std::fs::create_dir_all(path).map_err(|source| DaemonError::Dir {
            path: path.to_path_buf(),
            source,
        })
    };
    mkdir(&config.state_dir)?;
    let _ = std::fs::set_permissions(&config.state_dir, std::fs::Permissions::from_mode(0o700));
    if let Some(dir) = config.socket.parent() {
        mkdir(dir)?;
    }
    let socket = config.socket.clone();
    if socket.exists() {
        if tokio::net::UnixStream::connect(&socket).await.is_ok() {
            return Err(DaemonError::AlreadyRunning(socket));
        }
        // A socket left by a daemon that died.
        let _ = std::fs::remove_file(&socket);
    }
    let listener = UnixListener::bind(&socket).map_err(|source| DaemonError::Bind {
        path: socket.clone(),
        source,
    })?;
    let _ = std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o660));
    // Containers' init processes are reparented to the daemon when the
    // runtime exits, so that their exit status can be collected.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(error = %e, "cannot become a child subreaper; container exit codes will be unknown");
    }
    let supervisor = Supervisor::new(config)?;
    // Orphans reparented to the daemon are reaped (not the children it
    // waits for itself).
    reaper::spawn(Arc::downgrade(&supervisor));
    let app = server::router(Arc::clone(&supervisor));
    let (tx, rx) = oneshot::channel::<()>();
    tracing::info!(socket = %socket.display(), "vessel daemon listening");
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
            .map_err(DaemonError::Serve)
    });
    Ok(RunningDaemon {
        shutdown: Some(tx),
        task,
        socket,
        supervisor,
    })
}
