//! Container state on disk: one directory per container under the runtime
//! root (`<root>/<id>/`) holding `state.json`, the exec fifo while the
//! container is `created`, and the exit status once a monitor saw it.
//!
//! Each directory is locked with `flock` by every command that changes it,
//! so two runtimes racing on one id cannot corrupt it.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The default runtime root.
pub const DEFAULT_ROOT: &str = "/run/vessel-runtime";
/// runtime-spec version reported in the state.
pub const OCI_VERSION: &str = "1.2.0";

/// Errors about container state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("container {0:?} already exists; delete it first or choose another id")]
    Exists(String),
    #[error(
        "invalid container id {0:?}: use letters, digits, '.', '_', '-' and '+' (not starting with '.')"
    )]
    BadId(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {source}; `delete --force` removes the container")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateError {
    let path = path.to_owned();
    move |source| StateError::Io { what, path, source }
}

/// A container status as the runtime-spec names it (plus `paused`, as runc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

/// What the runtime keeps about a container (`state.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    pub id: String,
    /// Host pid of the container's init (0 while creating).
    pub pid: i32,
    /// The start time of the init (field 22 of /proc/PID/stat), to tell a
    /// reused pid from ours.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// Seconds since the epoch when the container was created.
    pub created: u64,
    /// The nanoseconds of `created` (reported as runc does, RFC 3339 with
    /// a fraction).
    #[serde(default)]
    pub created_nanos: u32,
    pub cgroup_path: PathBuf,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// True while the init is between create and start.
    pub status: Status,
    /// The config, kept so that delete can run poststop hooks after the
    /// bundle is gone and exec can find the namespaces and process settings.
    pub config: serde_json::Value,
}

/// The runtime-spec state document (`vessel-runtime state`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StateDoc {
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    pub pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(skip_serializing_if = "HashMap::is_empty", default)]
    pub annotations: HashMap<String, String>,
    /// The exit status, when the container stopped and vessel saw it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub exit_status: Option<i32>,
}

/// Checks a container id (it becomes a directory and a cgroup name).
pub fn check_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    if ok {
        Ok(())
    } else {
        Err(StateError::BadId(id.into()))
    }
}

/// A container's state directory, locked while this value lives.
#[derive(Debug)]
pub struct ContainerDir {
    pub id: String,
    pub dir: PathBuf,
    _lock: File,
}

impl ContainerDir {
    /// Creates the directory of a new container and locks it.
    pub fn create(root: &Path, id: &str) -> Result<Self, StateError> {
        check_id(id)?;
        if let Err(e) = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(root)
        {
            return Err(io("cannot create runtime root", root)(e));
        }
        let dir = root.join(id);
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(StateError::Exists(id.into()));
            }
            Err(e) => return Err(io("cannot create state directory", &dir)(e)),
        }
        let lock = File::open(&dir).map_err(io("cannot open state directory", &dir))?;
        flock(&lock, &dir)?;
        // The umask may have narrowed the mode; the container user must be
        // able to reach the exec fifo.
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o711));
        Ok(ContainerDir {
            id: id.into(),
            dir,
            _lock: lock,
        })
    }

    /// Opens and locks an existing container's directory.
    pub fn open(root: &Path, id: &str) -> Result<Self, StateError> {
        check_id(id)?;
        let dir = root.join(id);
        let lock = match File::open(&dir) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.into()));
            }
            Err(e) => return Err(io("cannot open state directory", &dir)(e)),
        };
        flock(&lock, &dir)?;
        // A racing delete may have removed it while we waited.
        if !dir.join("state.json").exists() && !dir.exists() {
            return Err(StateError::NotFound(id.into()));
        }
        Ok(ContainerDir {
            id: id.into(),
            dir,
            _lock: lock,
        })
    }

    /// The fd holding the lock: a cloned child must close its copy (the lock
    /// belongs to the open file, which the child shares).
    pub fn lock_fd(&self) -> std::os::fd::RawFd {
        self._lock.as_raw_fd()
    }

    pub fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn fifo(&self) -> PathBuf {
        self.dir.join("exec.fifo")
    }

    pub fn exit_file(&self) -> PathBuf {
        self.dir.join("exit")
    }

    /// Reads state.json.
    pub fn load(&self) -> Result<Saved, StateError> {
        let path = self.state_file();
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StateError::NotFound(self.id.clone()));
            }
            Err(e) => return Err(io("cannot read", &path)(e)),
        };
        serde_json::from_slice(&text).map_err(|source| StateError::Corrupt { path, source })
    }

    /// Writes state.json atomically (write a temp file, rename).
    pub fn save(&self, s: &Saved) -> Result<(), StateError> {
        let path = self.state_file();
        let tmp = self.dir.join(".state.json.tmp");
        let text = serde_json::to_vec(s).map_err(|source| StateError::Corrupt {
            path: path.clone(),
            source,
        })?;
        File::create(&tmp)
            .and_then(|mut f| f.write_all(&text))
            .map_err(io("cannot write", &tmp))?;
        fs::rename(&tmp, &path).map_err(io("cannot write", &path))
    }

    /// The exit status saved by a monitor, as a shell would report it
    /// (128+signal for a killed process).
    pub fn exit_status(&self) -> Option<i32> {
        fs::read_to_string(self.exit_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Runs `f` with the lock released (hooks that may call the runtime
    /// back, which would wait for the lock), then takes it again.
    pub fn unlocked<T>(&self, f: impl FnOnce() -> T) -> T {
        // SAFETY: flock on the fd we own; no memory is passed.
        unsafe { libc::flock(self._lock.as_raw_fd(), libc::LOCK_UN) };
        let out = f();
        let _ = flock(&self._lock, &self.dir);
        out
    }

    /// Removes the directory and everything in it. The lock goes with it.
    pub fn remove(self) -> Result<(), StateError> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("cannot remove", &self.dir)(e)),
        }
    }
}

fn flock(f: &File, path: &Path) -> Result<(), StateError> {
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    if rc != 0 {
        return Err(io("cannot lock", path)(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Reads the state character and start time of a process from /proc.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    if pid <= 0 {
        return None;
    }
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    // rest starts at field 3; start time is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Whether the process `pid` that started at `start_time` is still alive
/// (not a zombie and not a reused pid).
pub fn alive(pid: i32, start_time: u64) -> bool {
    match proc_stat(pid) {
        Some((state, start)) => start == start_time && state != 'Z' && state != 'X',
        None => false,
    }
}

impl Saved {
    /// The current status, from the saved one and the live process.
    pub fn status(&self, dir: &ContainerDir, frozen: impl FnOnce() -> bool) -> Status {
        if self.status == Status::Creating {
            return Status::Creating;
        }
        if dir.exit_file().exists() || !alive(self.pid, self.start_time) {
            return Status::Stopped;
        }
        if dir.fifo().exists() {
            return Status::Created;
        }
        if frozen() {
            return Status::Paused;
        }
        Status::Running
    }
}

/// Formats seconds since the epoch as RFC 3339 UTC (`2026-01-02T03:04:05Z`).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Formats a time as Go's RFC3339Nano, as runc's `created`:
/// `2026-01-02T03:04:05.1234Z` (trailing zeros of the fraction dropped).
pub fn rfc3339_nanos(secs: u64, nanos: u32) -> String {
    let base = rfc3339(secs);
    if nanos == 0 || nanos >= 1_000_000_000 {
        return base;
    }
    let frac = format!("{nanos:09}");
    format!(
        "{}.{}Z",
        base.trim_end_matches('Z'),
        frac.trim_end_matches('0')
    )
}

/// Seconds and nanoseconds since the epoch.
pub fn now() -> (u64, u32) {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_secs(), d.subsec_nanos()))
        .unwrap_or((0, 0))
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The ids of all containers under `root`, sorted.
pub fn list_ids(root: &Path) -> Result<Vec<String>, StateError> {
    let mut ids = Vec::new();
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(io("cannot list", root)(e)),
    };
    for e in entries.flatten() {
        if let Some(name) = e.file_name().to_str()
            && check_id(name).is_ok()
            && e.path().join("state.json").exists()
        {
            ids.push(name.to_string());
        }
    }
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(check_id("web-1_a.b+c").is_ok());
        assert!(check_id("").is_err());
        assert!(check_id("../x").is_err());
        assert!(check_id(".hidden").is_err());
        assert!(check_id("a/b").is_err());
    }

    #[test]
    fn rfc3339_formats_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(
            rfc3339_nanos(1_700_000_000, 120_000_000),
            "2023-11-14T22:13:20.12Z"
        );
        assert_eq!(rfc3339_nanos(0, 0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id() as i32;
        let (state, start) = proc_stat(me).expect("own stat");
        assert_ne!(state, 'Z');
        assert!(alive(me, start));
        assert!(!alive(me, start + 1));
    }

    #[test]
    fn create_twice_is_refused_and_remove_cleans() {
        let root = std::env::temp_dir().join(format!("vessel-state-test-{}", std::process::id()));
        let d = ContainerDir::create(&root, "c1").expect("create");
        assert!(matches!(
            ContainerDir::create(&root, "c1"),
            Err(StateError::Exists(_))
        ));
        d.remove().expect("remove");
        assert!(!root.join("c1").exists());
        let _ = fs::remove_dir(&root);
    }
}
