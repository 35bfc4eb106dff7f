//! The wire protocol of the control socket: one JSON request per line, one
//! JSON answer per line. After a successful `attach` the connection carries
//! raw console bytes both ways (output to the client, input from a writer).
//!
//! ```text
//! > {"op":"status"}
//! < {"ok":true,"status":{"pid":1234,"state":"running","started_at":1764280000}}
//! > {"op":"attach","write":true,"history":4096}
//! < {"ok":true}
//! ... raw bytes ...
//! ```

use serde::{Deserialize, Serialize};

/// The longest request line accepted, in bytes.
pub const MAX_REQUEST: usize = 4096;
/// The most history an attach may ask for, in bytes.
pub const MAX_HISTORY: u64 = 1 << 20;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Who and how the process is.
    Status {},
    /// Stop running the guest (its memory and devices stay).
    Pause {},
    /// Go on after a pause.
    Resume {},
    /// End the guest cleanly: the process exits through its normal path
    /// and writes its exit record.
    Shutdown {},
    /// Attach to the console: receive `history` bytes of past output, then
    /// the live output; with `write`, what the client sends goes to the
    /// guest's console input (one writer at a time).
    Attach {
        #[serde(default)]
        write: bool,
        #[serde(default)]
        history: u64,
    },
}

/// Whether the guest runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Paused,
    /// A shutdown was requested or the guest stopped; the process is ending.
    Stopping,
}

/// The answer to `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub state: RunState,
    /// Unix time (seconds) the control server started.
    pub started_at: i64,
    /// Whether a writer is attached to the console.
    pub console_writer: bool,
    /// How many clients read the console.
    pub console_readers: usize,
}

/// Every answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

impl Response {
    pub fn ok() -> Self {
        Response {
            ok: true,
            error: None,
            status: None,
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Response {
            ok: false,
            error: Some(message.into()),
            status: None,
        }
    }

    pub fn status(status: Status) -> Self {
        Response {
            ok: true,
            error: None,
            status: Some(status),
        }
    }

    /// The line sent on the wire (JSON and a newline).
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"ok":false,"error":"cannot encode the answer"}"#.into());
        s.push('\n');
        s
    }
}

impl Request {
    /// The line sent on the wire (JSON and a newline).
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Why the process ended, written by the process itself to its exit file,
/// so that a supervisor that is not its parent still learns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The process's exit code.
    pub code: i32,
    /// `powered_off`, `reset`, `shutdown`, `signal`, `quit`, `fail`,
    /// `kernel_panic`, `fault` or `error`.
    pub reason: String,
    /// What happened, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub pid: u32,
    /// Unix time (seconds).
    pub ended_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_on_the_wire() {
        let r: Request = serde_json::from_str(r#"{"op":"attach","write":true}"#).unwrap();
        assert_eq!(
            r,
            Request::Attach {
                write: true,
                history: 0
            }
        );
        assert_eq!(Request::Pause {}.to_line(), "{\"op\":\"pause\"}\n");
        for bad in [
            r#"{"op":"reboot"}"#,
            r#"{"op":"status","x":1}"#,
            r#"{"write":true}"#,
            "[]",
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_round_trip() {
        let line = Response::error("no").to_line();
        assert!(line.ends_with('\n'));
        let back: Response = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(back, Response::error("no"));
        let rec = ExitRecord {
            code: 0,
            reason: "powered_off".into(),
            message: None,
            pid: 7,
            ended_at: 1,
        };
        let text = serde_json::to_string(&rec).unwrap();
        assert_eq!(serde_json::from_str::<ExitRecord>(&text).unwrap(), rec);
    }
}
