//! The per-instance control socket.
//!
//! Every instance process (`vessel run --control-socket PATH ...`) serves a
//! Unix socket of its own, as conmon does for Podman: status, pause,
//! resume, a clean shutdown request and the console (several readers, one
//! writer, history from the bounded console log). The process outlives the
//! daemon that started it, so a restarted daemon reattaches through this
//! socket; when the process ends it writes an [`ExitRecord`] to its exit
//! file, so a daemon that is not its parent still learns why it ended.

pub mod client;
pub mod protocol;
pub mod server;

use std::path::{Path, PathBuf};

use thiserror::Error;

pub use protocol::{ExitRecord, Request, Response, RunState, Status};
pub use server::{ConsoleHub, ControlServer, Controlled, ServerError};

#[derive(Debug, Error)]
pub enum ExitFileError {
    #[error("exit file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("exit file {path} is not an exit record: {source}")]
    Decode {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Unix time in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Write the exit record atomically (a temporary file renamed over `path`).
pub fn write_exit_record(path: &Path, record: &ExitRecord) -> Result<(), ExitFileError> {
    let io = |source| ExitFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let text = serde_json::to_vec(record).unwrap_or_default();
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The exit record at `path`, None if there is none.
pub fn read_exit_record(path: &Path) -> Result<Option<ExitRecord>, ExitFileError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ExitFileError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| ExitFileError::Decode {
            path: path.to_path_buf(),
            source,
        })
}

/// When process `pid` started, in clock ticks since boot (field 22 of
/// `/proc/PID/stat`): with the pid, it names one process for good, since
/// pids are reused.
pub fn process_start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces and
    // parentheses itself: fields are counted after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` is a zombie or gone (a zombie will never answer).
pub fn process_ended(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    matches!(state, Some("Z") | Some("X") | None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_this_process() {
        let me = std::process::id() as i32;
        let t = process_start_time(me).unwrap();
        assert_eq!(process_start_time(me), Some(t), "stable");
        assert!(!process_ended(me));
        assert_eq!(process_start_time(0), None);
        let stat = "12 (a b) c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 20";
        assert_eq!(parse_start_time(stat), Some(4242));
    }

    #[test]
    fn exit_record_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit.json");
        assert!(read_exit_record(&path).unwrap().is_none());
        let rec = ExitRecord {
            code: 3,
            reason: "fault".into(),
            message: Some("bad".into()),
            pid: 1,
            ended_at: 2,
        };
        write_exit_record(&path, &rec).unwrap();
        assert_eq!(read_exit_record(&path).unwrap(), Some(rec));
        std::fs::write(&path, "{").unwrap();
        assert!(read_exit_record(&path).is_err());
    }
}
