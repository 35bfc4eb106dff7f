//! `events`: a container's resource usage (`--stats`: once) or a stream of
//! stats events every interval plus an `oom` event when the OOM killer
//! struck, as runc prints them (one JSON object per line:
//! `{"type":"stats","id":...,"data":{"cpu":...,"memory":...,"pids":...}}`).

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use vessel_sandbox::cgroups::Stats;

use crate::hooks::{pidfd_open, wait_pidfd};
use crate::ops::Container;
use crate::state::Status;
use crate::{Error, Result};

/// One line of `events` output.
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    #[serde(rename = "type")]
    pub typ: &'static str,
    pub id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Stats>,
}

/// Parses a Go duration as runc's `--interval` takes it (`5s`, `100ms`,
/// `1m30s`, `2h`).
pub fn parse_interval(s: &str) -> Result<Duration> {
    let bad = || {
        Error::Usage(format!(
            "--interval {s:?}: use a duration such as 5s, 500ms or 1m"
        ))
    };
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(value * secs).map_err(|_| bad())?;
    }
    if total.is_zero() {
        return Err(Error::Usage(format!(
            "--interval {s:?}: must be greater than zero"
        )));
    }
    Ok(total)
}

fn running(id: &str) -> impl FnOnce(&Container) -> Result<()> + '_ {
    move |c| match c.status() {
        Status::Stopped | Status::Creating => {
            Err(Error::State(format!("container {id:?} is not running")))
        }
        _ => Ok(()),
    }
}

/// `events --stats`: the container's usage now.
pub fn stats(root: &Path, id: &str) -> Result<Stats> {
    let c = Container::open(root, id)?;
    running(id)(&c)?;
    Ok(c.cgroup.stats())
}

/// `events`: calls `emit` with a stats event every `interval` and with an
/// `oom` event when the OOM-kill count grows, until the container stops
/// (or `emit` returns false). The container is not kept locked between
/// events.
pub fn watch(
    root: &Path,
    id: &str,
    interval: Duration,
    mut emit: impl FnMut(&Event<'_>) -> bool,
) -> Result<()> {
    let (pid, mut ooms) = {
        let c = Container::open(root, id)?;
        running(id)(&c)?;
        (c.saved.pid, c.cgroup.oom_kills())
    };
    let pidfd = pidfd_open(pid);
    let ms = i32::try_from(interval.as_millis()).unwrap_or(i32::MAX);
    loop {
        let Ok(c) = Container::open(root, id) else {
            return Ok(());
        };
        let n = c.cgroup.oom_kills();
        if n > ooms {
            ooms = n;
            let ev = Event {
                typ: "oom",
                id,
                data: None,
            };
            if !emit(&ev) {
                return Ok(());
            }
        }
        if c.status() == Status::Stopped {
            return Ok(());
        }
        let ev = Event {
            typ: "stats",
            id,
            data: Some(c.cgroup.stats()),
        };
        drop(c);
        if !emit(&ev) {
            return Ok(());
        }
        // Sleep for the interval, but wake when the process exits.
        if let Some(fd) = &pidfd
            && wait_pidfd(fd, ms)
        {
            // One last look, for an OOM kill that ended it.
            if let Ok(c) = Container::open(root, id)
                && c.cgroup.oom_kills() > ooms
            {
                let _ = emit(&Event {
                    typ: "oom",
                    id,
                    data: None,
                });
            }
            return Ok(());
        } else if pidfd.is_none() {
            std::thread::sleep(interval);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_as_go_durations() {
        assert_eq!(parse_interval("5s").expect("5s"), Duration::from_secs(5));
        assert_eq!(
            parse_interval("100ms").expect("ms"),
            Duration::from_millis(100)
        );
        assert_eq!(
            parse_interval("1m30s").expect("1m30s"),
            Duration::from_secs(90)
        );
        assert_eq!(
            parse_interval("1.5s").expect("1.5s"),
            Duration::from_millis(1500)
        );
        for bad in ["", "5", "s", "5x", "0s", "-1s"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn events_serialize_as_runc() {
        let e = Event {
            typ: "oom",
            id: "c1",
            data: None,
        };
        assert_eq!(
            serde_json::to_string(&e).expect("json"),
            r#"{"type":"oom","id":"c1"}"#
        );
    }
}
