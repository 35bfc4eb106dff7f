//! The state store: one SQLite database (`state.db`) under the state
//! directory, with the `instances` table. The schema version is SQLite's
//! `user_version`; a database from a newer vessel is refused, not guessed at.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Row, params};
use thiserror::Error;
use vessel_api::{
    ExitReason, ExitStatus, Instance, InstanceSpec, InstanceState, Resources, RestartPolicy,
};

/// The schema this code writes.
pub const SCHEMA_VERSION: i64 = 4;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("state database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "state database {path} has schema version {found}, newer than this vessel ({SCHEMA_VERSION}): \
         run the vessel that wrote it, or move the state directory away"
    )]
    NewerSchema { path: PathBuf, found: i64 },
    #[error("an instance named {0:?} exists: pick another name or delete it first")]
    Exists(String),
    #[error("no instance named {0:?} (see `vessel ls`)")]
    NotFound(String),
    /// A transition whose expected previous state no longer holds (another
    /// request or the process's exit came first).
    #[error("instance {name:?} is {found}, not {expected}")]
    WrongState {
        name: String,
        found: &'static str,
        expected: String,
    },
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("state database holds a record it cannot read ({field} of {name:?}): {detail}")]
    Corrupt {
        name: String,
        field: &'static str,
        detail: String,
    },
}

pub struct Store {
    conn: Mutex<Connection>,
}

const COLUMNS: &str = "name, kind, spec, state, pid, exit_reason, exit_code, exit_signal, \
                       exit_message, created_at, started_at, finished_at, log_path, \
                       memory_bytes, cpus, restart_policy, restart_count";

impl Store {
    /// Open (creating if needed) `state.db` in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join("state.db");
        let open_err = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(open_err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path,
                found: version,
            });
        }
        if version < 1 {
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE IF NOT EXISTS instances (
                     name         TEXT PRIMARY KEY NOT NULL,
                     kind         TEXT NOT NULL CHECK (kind IN ('vm', 'container')),
                     spec         TEXT NOT NULL,
                     state        TEXT NOT NULL,
                     pid          INTEGER,
                     exit_reason  TEXT,
                     exit_code    INTEGER,
                     exit_signal  INTEGER,
                     exit_message TEXT,
                     created_at   INTEGER NOT NULL,
                     started_at   INTEGER,
                     finished_at  INTEGER,
                     log_path     TEXT NOT NULL
                 );
                 PRAGMA user_version = 1;
                 COMMIT;",
            )
            .map_err(open_err)?;
        }
        if version < 2 {
            // Version 2: the instance's resources (NULL: no limit).
            conn.execute_batch(
                "BEGIN;
                 ALTER TABLE instances ADD COLUMN memory_bytes INTEGER;
                 ALTER TABLE instances ADD COLUMN cpus REAL;
                 PRAGMA user_version = 2;
                 COMMIT;",
            )
            .map_err(open_err)?;
        }
        if version < 3 {
            // Version 3: the restart policy and count, and the start time
            // of the instance's process (with the pid, it names the process
            // for good: a restarted daemon checks it before reattaching).
            conn.execute_batch(
                "BEGIN;
                 ALTER TABLE instances ADD COLUMN restart_policy TEXT NOT NULL DEFAULT 'no';
                 ALTER TABLE instances ADD COLUMN restart_count INTEGER NOT NULL DEFAULT 0;
                 ALTER TABLE instances ADD COLUMN pid_start INTEGER;
                 PRAGMA user_version = 3;
                 COMMIT;",
            )
            .map_err(open_err)?;
        }
        if version < 4 {
            // Version 4: quick failures in a row, for the restart backoff
            // (kept across daemon restarts).
            conn.execute_batch(
                "BEGIN;
                 ALTER TABLE instances ADD COLUMN restart_failures INTEGER NOT NULL DEFAULT 0;
                 PRAGMA user_version = 4;
                 COMMIT;",
            )
            .map_err(open_err)?;
        }
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (statements are atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn insert(&self, instance: &Instance) -> Result<(), StoreError> {
        let spec = serde_json::to_string(&instance.spec).unwrap_or_default();
        let result = self.conn().execute(
            "INSERT INTO instances (name, kind, spec, state, created_at, log_path,
                 memory_bytes, cpus, restart_policy)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                instance.name,
                instance.kind.as_str(),
                spec,
                instance.state.as_str(),
                instance.created_at,
                instance.log_path,
                instance
                    .resources
                    .memory_bytes
                    .map(|m| m.min(i64::MAX as u64) as i64),
                instance.resources.cpus,
                instance.restart_policy.as_str(),
            ],
        );
        match result {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::Exists(instance.name.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn get(&self, name: &str) -> Result<Instance, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM instances WHERE name = ?1"))?;
        stmt.query_row(params![name], read_row)
            .optional()?
            .ok_or_else(|| StoreError::NotFound(name.to_string()))?
    }

    pub fn list(&self) -> Result<Vec<Instance>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM instances ORDER BY name"))?;
        let rows = stmt.query_map([], read_row)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row??);
        }
        Ok(out)
    }

    pub fn delete(&self, name: &str) -> Result<(), StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM instances WHERE name = ?1", params![name])?;
        if n == 0 {
            return Err(StoreError::NotFound(name.to_string()));
        }
        Ok(())
    }

    /// The process started: running, with its pid; the last exit is cleared.
    /// Only from `created` or `stopped`: an active record already has a
    /// process.
    pub fn set_running(&self, name: &str, pid: i32, now: i64) -> Result<(), StoreError> {
        self.transition(
            name,
            &[InstanceState::Created, InstanceState::Stopped],
            "UPDATE instances SET state = 'running', pid = ?2, started_at = ?3, finished_at = NULL,
                 exit_reason = NULL, exit_code = NULL, exit_signal = NULL, exit_message = NULL
             WHERE name = ?1",
            params![name, pid, now],
        )
    }

    /// Resources read again at start (a container's config.json changed).
    pub fn set_resources(&self, name: &str, resources: &Resources) -> Result<(), StoreError> {
        self.update(
            name,
            "UPDATE instances SET memory_bytes = ?2, cpus = ?3 WHERE name = ?1",
            params![
                name,
                resources
                    .memory_bytes
                    .map(|m| m.min(i64::MAX as u64) as i64),
                resources.cpus
            ],
        )
    }

    /// The start time (clock ticks after boot) of the instance's process.
    pub fn set_pid_start(&self, name: &str, start: Option<u64>) -> Result<(), StoreError> {
        self.update(
            name,
            "UPDATE instances SET pid_start = ?2 WHERE name = ?1",
            params![name, start.map(|t| t.min(i64::MAX as u64) as i64)],
        )
    }

    pub fn pid_start(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT pid_start FROM instances WHERE name = ?1")?;
        let start: Option<Option<i64>> =
            stmt.query_row(params![name], |row| row.get(0)).optional()?;
        match start {
            None => Err(StoreError::NotFound(name.to_string())),
            Some(t) => Ok(t.map(|t| t.max(0) as u64)),
        }
    }

    /// The restart policy started it again.
    pub fn bump_restart_count(&self, name: &str) -> Result<(), StoreError> {
        self.update(
            name,
            "UPDATE instances SET restart_count = restart_count + 1 WHERE name = ?1",
            params![name],
        )
    }

    /// Move to `state` if the record is in one of `from` now, in one
    /// transaction (WrongState otherwise).
    pub fn set_state_from(
        &self,
        name: &str,
        from: &[InstanceState],
        state: InstanceState,
    ) -> Result<(), StoreError> {
        self.transition(
            name,
            from,
            "UPDATE instances SET state = ?2 WHERE name = ?1",
            params![name, state.as_str()],
        )
    }

    /// The process ended (or never started): stopped, with why.
    pub fn set_stopped(&self, name: &str, exit: &ExitStatus, now: i64) -> Result<(), StoreError> {
        self.update(name, SET_STOPPED, stopped_params(name, exit, now))
    }

    /// Process `pid` ended: stopped, with why, if the record is still
    /// active with that pid (not started again, deleted or reconciled
    /// meanwhile).
    pub fn set_stopped_for(
        &self,
        name: &str,
        pid: i32,
        exit: &ExitStatus,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let current: Option<(String, Option<i32>)> = tx
            .query_row(
                "SELECT state, pid FROM instances WHERE name = ?1",
                params![name],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let Some((state, current_pid)) = current else {
            return Err(StoreError::NotFound(name.to_string()));
        };
        let state = InstanceState::parse(&state).unwrap_or(InstanceState::Stopped);
        if !state.is_active() || current_pid != Some(pid) {
            return Err(StoreError::WrongState {
                name: name.to_string(),
                found: state.as_str(),
                expected: format!("active with pid {pid}"),
            });
        }
        tx.execute(SET_STOPPED, stopped_params(name, exit, now))?;
        tx.commit()?;
        Ok(())
    }

    /// Quick failures in a row (the restart backoff).
    pub fn restart_failures(&self, name: &str) -> Result<u32, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT restart_failures FROM instances WHERE name = ?1")?;
        let n: Option<i64> = stmt.query_row(params![name], |row| row.get(0)).optional()?;
        match n {
            None => Err(StoreError::NotFound(name.to_string())),
            Some(n) => Ok(n.clamp(0, u32::MAX as i64) as u32),
        }
    }

    pub fn set_restart_failures(&self, name: &str, n: u32) -> Result<(), StoreError> {
        self.update(
            name,
            "UPDATE instances SET restart_failures = ?2 WHERE name = ?1",
            params![name, n],
        )
    }

    /// One UPDATE guarded by the expected previous states, in a transaction.
    fn transition(
        &self,
        name: &str,
        from: &[InstanceState],
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let state: Option<String> = tx
            .query_row(
                "SELECT state FROM instances WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )
            .optional()?;
        let Some(state) = state else {
            return Err(StoreError::NotFound(name.to_string()));
        };
        let state = InstanceState::parse(&state).ok_or_else(|| StoreError::Corrupt {
            name: name.to_string(),
            field: "state",
            detail: state.clone(),
        })?;
        if !from.contains(&state) {
            return Err(StoreError::WrongState {
                name: name.to_string(),
                found: state.as_str(),
                expected: from
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" or "),
            });
        }
        tx.execute(sql, params)?;
        tx.commit()?;
        Ok(())
    }

    fn update(
        &self,
        name: &str,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<(), StoreError> {
        let n = self.conn().execute(sql, params)?;
        if n == 0 {
            return Err(StoreError::NotFound(name.to_string()));
        }
        Ok(())
    }
}

const SET_STOPPED: &str = "UPDATE instances SET state = 'stopped', pid = NULL, finished_at = ?2,
     exit_reason = ?3, exit_code = ?4, exit_signal = ?5, exit_message = ?6
 WHERE name = ?1";

fn stopped_params<'a>(
    name: &'a str,
    exit: &'a ExitStatus,
    now: i64,
) -> (
    &'a str,
    i64,
    &'static str,
    Option<i32>,
    Option<i32>,
    Option<&'a str>,
) {
    (
        name,
        now,
        exit.reason.as_str(),
        exit.code,
        exit.signal,
        exit.message.as_deref(),
    )
}

fn parse_reason(s: &str) -> Option<ExitReason> {
    Some(match s {
        "powered_off" => ExitReason::PoweredOff,
        "exited" => ExitReason::Exited,
        "crashed" => ExitReason::Crashed,
        "oom" => ExitReason::Oom,
        "stopped" => ExitReason::Stopped,
        "killed" => ExitReason::Killed,
        "start_failed" => ExitReason::StartFailed,
        "lost" => ExitReason::Lost,
        _ => return None,
    })
}

/// One row; the outer Result is SQLite's, the inner one says whether the
/// stored values make sense.
fn read_row(row: &Row<'_>) -> rusqlite::Result<Result<Instance, StoreError>> {
    let name: String = row.get(0)?;
    let spec_text: String = row.get(2)?;
    let state_text: String = row.get(3)?;
    let exit_reason: Option<String> = row.get(5)?;
    let policy_text: String = row.get(15)?;
    let corrupt = |field, detail: String| StoreError::Corrupt {
        name: name.clone(),
        field,
        detail,
    };
    let spec: InstanceSpec = match serde_json::from_str(&spec_text) {
        Ok(spec) => spec,
        Err(e) => return Ok(Err(corrupt("spec", e.to_string()))),
    };
    let Some(state) = InstanceState::parse(&state_text) else {
        return Ok(Err(corrupt("state", state_text)));
    };
    let Some(restart_policy) = RestartPolicy::parse(&policy_text) else {
        return Ok(Err(corrupt("restart_policy", policy_text)));
    };
    let exit = match exit_reason {
        None => None,
        Some(text) => match parse_reason(&text) {
            Some(reason) => Some(ExitStatus {
                reason,
                code: row.get(6)?,
                signal: row.get(7)?,
                message: row.get(8)?,
            }),
            None => return Ok(Err(corrupt("exit_reason", text))),
        },
    };
    Ok(Ok(Instance {
        kind: spec.kind(),
        spec,
        state,
        pid: row.get(4)?,
        exit,
        created_at: row.get(9)?,
        started_at: row.get(10)?,
        finished_at: row.get(11)?,
        log_path: row.get(12)?,
        resources: Resources {
            memory_bytes: row.get::<_, Option<i64>>(13)?.map(|m| m.max(0) as u64),
            cpus: row.get(14)?,
        },
        restart_policy,
        restart_count: row.get::<_, i64>(16)?.clamp(0, u32::MAX as i64) as u32,
        name,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vessel_api::{InstanceKind, VmSpec};

    fn instance(name: &str) -> Instance {
        Instance {
            name: name.to_string(),
            kind: InstanceKind::Vm,
            spec: InstanceSpec::Vm(VmSpec {
                args: vec!["debian-riscv64".into()],
            }),
            state: InstanceState::Created,
            pid: None,
            exit: None,
            created_at: 100,
            started_at: None,
            finished_at: None,
            log_path: format!("/tmp/{name}.log"),
            resources: Resources {
                memory_bytes: Some(64 << 20),
                cpus: Some(1.5),
            },
            restart_policy: RestartPolicy::OnFailure,
            restart_count: 0,
        }
    }

    #[test]
    fn round_trip_unique_names_and_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.insert(&instance("b")).unwrap();
        store.insert(&instance("a")).unwrap();
        assert!(matches!(
            store.insert(&instance("a")),
            Err(StoreError::Exists(_))
        ));
        let names: Vec<_> = store.list().unwrap().into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(store.get("a").unwrap(), instance("a"));

        store.set_running("a", 4242, 200).unwrap();
        store.set_pid_start("a", Some(777)).unwrap();
        assert_eq!(store.pid_start("a").unwrap(), Some(777));
        store.bump_restart_count("a").unwrap();
        assert_eq!(store.get("a").unwrap().restart_count, 1);
        let a = store.get("a").unwrap();
        assert_eq!(
            (a.state, a.pid, a.started_at),
            (InstanceState::Running, Some(4242), Some(200))
        );
        let exit = ExitStatus {
            reason: ExitReason::Crashed,
            code: Some(3),
            signal: None,
            message: Some("fault".into()),
        };
        store.set_stopped("a", &exit, 300).unwrap();
        let a = store.get("a").unwrap();
        assert_eq!(a.state, InstanceState::Stopped);
        assert_eq!(a.pid, None);
        assert_eq!(a.exit, Some(exit));
        assert_eq!(a.finished_at, Some(300));

        store.delete("a").unwrap();
        assert!(matches!(store.get("a"), Err(StoreError::NotFound(_))));
        assert!(matches!(store.delete("a"), Err(StoreError::NotFound(_))));
        assert!(matches!(
            store.set_state_from("a", &[InstanceState::Running], InstanceState::Stopping),
            Err(StoreError::NotFound(_))
        ));
    }

    /// Each transition names the state it expects: a stop that comes after
    /// the process's exit was recorded cannot make the record active again,
    /// and an exit recorded for an earlier process does not end a later one.
    #[test]
    fn transitions_check_the_previous_state() {
        use InstanceState::*;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.insert(&instance("a")).unwrap();
        let exit = ExitStatus {
            reason: ExitReason::Exited,
            code: Some(0),
            signal: None,
            message: None,
        };
        assert!(matches!(
            store.set_state_from("a", &[Running, Paused], Stopping),
            Err(StoreError::WrongState {
                found: "created",
                ..
            })
        ));
        store.set_running("a", 10, 1).unwrap();
        assert!(matches!(
            store.set_running("a", 11, 2),
            Err(StoreError::WrongState {
                found: "running",
                ..
            })
        ));
        // The exit of pid 10 is recorded, then a late stop arrives.
        store.set_stopped_for("a", 10, &exit, 3).unwrap();
        assert!(matches!(
            store.set_state_from("a", &[Running, Paused], Stopping),
            Err(StoreError::WrongState {
                found: "stopped",
                ..
            })
        ));
        assert_eq!(store.get("a").unwrap().state, Stopped);
        // Started again as pid 12: pid 10's exit, seen late, changes nothing.
        store.set_running("a", 12, 4).unwrap();
        assert!(matches!(
            store.set_stopped_for("a", 10, &exit, 5),
            Err(StoreError::WrongState { .. })
        ));
        let a = store.get("a").unwrap();
        assert_eq!((a.state, a.pid), (Running, Some(12)));
        store
            .set_state_from("a", &[Running, Paused], Stopping)
            .unwrap();
        store.set_stopped_for("a", 12, &exit, 6).unwrap();
        assert_eq!(store.get("a").unwrap().state, Stopped);
    }

    #[test]
    fn restart_failures_are_kept_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.insert(&instance("r")).unwrap();
            assert_eq!(store.restart_failures("r").unwrap(), 0);
            store.set_restart_failures("r", 4).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.restart_failures("r").unwrap(), 4);
        assert!(matches!(
            store.restart_failures("nope"),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn survives_reopen_and_refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.insert(&instance("kept")).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.get("kept").unwrap().name, "kept");
        store
            .conn()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(store);
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::NewerSchema { .. })
        ));
    }
}
