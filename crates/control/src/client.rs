//! A blocking client of the control socket.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::protocol::{Request, Response, Status};
use crate::server::read_line;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("control socket {0}: the process closed the connection without an answer")]
    NoAnswer(PathBuf),
    #[error("control socket {path}: the answer is not JSON: {source}")]
    Decode {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// The process refused the request.
    #[error("{0}")]
    Refused(String),
}

fn connect(path: &Path, timeout: Duration) -> Result<UnixStream, ClientError> {
    let io = |source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stream = UnixStream::connect(path).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    Ok(stream)
}

fn exchange(
    stream: &mut UnixStream,
    path: &Path,
    request: &Request,
) -> Result<Response, ClientError> {
    let io = |source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    };
    stream.write_all(request.to_line().as_bytes()).map_err(io)?;
    let line = read_line(stream)
        .map_err(io)?
        .ok_or_else(|| ClientError::NoAnswer(path.to_path_buf()))?;
    let response: Response =
        serde_json::from_slice(&line).map_err(|source| ClientError::Decode {
            path: path.to_path_buf(),
            source,
        })?;
    if response.ok {
        Ok(response)
    } else {
        Err(ClientError::Refused(
            response
                .error
                .unwrap_or_else(|| "refused without a reason".to_string()),
        ))
    }
}

/// Send one request and return the (successful) answer.
pub fn call(path: &Path, request: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let mut stream = connect(path, timeout)?;
    exchange(&mut stream, path, request)
}

/// The process's status.
pub fn status(path: &Path, timeout: Duration) -> Result<Status, ClientError> {
    call(path, &Request::Status {}, timeout)?
        .status
        .ok_or_else(|| ClientError::NoAnswer(path.to_path_buf()))
}

/// Attach to the console: the stream carries raw console bytes from here
/// on (without timeouts).
pub fn attach(path: &Path, write: bool, history: u64) -> Result<UnixStream, ClientError> {
    let mut stream = connect(path, Duration::from_secs(10))?;
    exchange(&mut stream, path, &Request::Attach { write, history })?;
    let io = |source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    };
    stream.set_read_timeout(None).map_err(io)?;
    stream.set_write_timeout(None).map_err(io)?;
    Ok(stream)
}
