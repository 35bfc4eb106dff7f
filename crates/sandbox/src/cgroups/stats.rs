//! Resource usage of a cgroup, in runc's `events --stats` shape (the JSON
//! field names are runc's `types.Stats`): cpu, memory, pids, read from the
//! v1 controllers or the v2 files.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::{Cgroup, read_file};

/// Nanoseconds per USER_HZ tick (cpuacct.stat counts ticks of 1/100 s).
const NS_PER_TICK: u64 = 10_000_000;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CpuUsage {
    /// Total CPU time, ns.
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    /// Time in the kernel, ns.
    pub kernel: u64,
    /// Time in user space, ns.
    pub user: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(rename = "throttledPeriods", skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// ns.
    #[serde(rename = "throttledTime", skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Memory {
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Pids {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    /// 0 when unlimited.
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

/// What `events --stats` reports for a container.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Stats {
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A number from a cgroup file; "max" (no limit) and a missing file are 0.
fn num(dir: &Path, file: &str) -> u64 {
    read_file(&dir.join(file))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// `key value` lines (memory.stat, cpu.stat, cpuacct.stat).
pub fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn keyed(dir: &Path, file: &str) -> BTreeMap<String, u64> {
    read_file(&dir.join(file))
        .map(|t| parse_flat_keyed(&t))
        .unwrap_or_default()
}

/// v1 reports "no limit" as a huge number (PAGE_COUNTER_MAX pages); runc
/// passes it on as is, and so does this.
fn v1_entry(dir: &Path, prefix: &str) -> MemoryEntry {
    MemoryEntry {
        limit: num(dir, &format!("{prefix}.limit_in_bytes")),
        usage: num(dir, &format!("{prefix}.usage_in_bytes")),
        max: num(dir, &format!("{prefix}.max_usage_in_bytes")),
        failcnt: num(dir, &format!("{prefix}.failcnt")),
    }
}

impl Cgroup {
    /// The cgroup's resource usage now.
    pub fn stats(&self) -> Stats {
        match &self.v2 {
            Some(dir) => v2_stats(dir),
            None => self.v1_stats(),
        }
    }

    fn v1_stats(&self) -> Stats {
        let mut s = Stats::default();
        if let Some(d) = self.dir_of("cpuacct").filter(|d| d.is_dir()) {
            s.cpu.usage.total = num(d, "cpuacct.usage");
            s.cpu.usage.percpu = read_file(&d.join("cpuacct.usage_percpu"))
                .map(|t| {
                    t.split_whitespace()
                        .filter_map(|v| v.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            let st = keyed(d, "cpuacct.stat");
            s.cpu.usage.user = st.get("user").copied().unwrap_or(0) * NS_PER_TICK;
            s.cpu.usage.kernel = st.get("system").copied().unwrap_or(0) * NS_PER_TICK;
        }
        if let Some(d) = self.dir_of("cpu").filter(|d| d.is_dir()) {
            let st = keyed(d, "cpu.stat");
            s.cpu.throttling = Throttling {
                periods: st.get("nr_periods").copied().unwrap_or(0),
                throttled_periods: st.get("nr_throttled").copied().unwrap_or(0),
                throttled_time: st.get("throttled_time").copied().unwrap_or(0),
            };
        }
        if let Some(d) = self.dir_of("memory").filter(|d| d.is_dir()) {
            s.memory.usage = v1_entry(d, "memory");
            s.memory.swap = v1_entry(d, "memory.memsw");
            s.memory.kernel = v1_entry(d, "memory.kmem");
            s.memory.raw = keyed(d, "memory.stat");
            s.memory.cache = s.memory.raw.get("cache").copied().unwrap_or(0);
        }
        if let Some(d) = self.dir_of("pids").filter(|d| d.is_dir()) {
            s.pids = Pids {
                current: num(d, "pids.current"),
                limit: num(d, "pids.max"),
            };
        }
        s
    }

    /// Whether any process is left in the cgroup.
    pub fn has_processes(&self) -> bool {
        self.pids().map(|p| !p.is_empty()).unwrap_or(false)
    }
}

fn v2_stats(dir: &Path) -> Stats {
    let mut s = Stats::default();
    let cpu = keyed(dir, "cpu.stat");
    let us = |k: &str| cpu.get(k).copied().unwrap_or(0) * 1000;
    s.cpu.usage = CpuUsage {
        total: us("usage_usec"),
        percpu: Vec::new(),
        kernel: us("system_usec"),
        user: us("user_usec"),
    };
    s.cpu.throttling = Throttling {
        periods: cpu.get("nr_periods").copied().unwrap_or(0),
        throttled_periods: cpu.get("nr_throttled").copied().unwrap_or(0),
        throttled_time: us("throttled_usec"),
    };
    let events = keyed(dir, "memory.events");
    s.memory.usage = MemoryEntry {
        limit: num(dir, "memory.max"),
        usage: num(dir, "memory.current"),
        max: num(dir, "memory.peak"),
        failcnt: events.get("max").copied().unwrap_or(0),
    };
    s.memory.swap = MemoryEntry {
        limit: num(dir, "memory.swap.max"),
        usage: num(dir, "memory.swap.current"),
        max: 0,
        failcnt: 0,
    };
    s.memory.raw = keyed(dir, "memory.stat");
    s.memory.cache = s.memory.raw.get("file").copied().unwrap_or(0);
    s.pids = Pids {
        current: num(dir, "pids.current"),
        limit: num(dir, "pids.max"),
    };
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed_files_parse() {
        let m = parse_flat_keyed("cache 4096\nrss 8192\nbad line x\n");
        assert_eq!(m.get("cache"), Some(&4096));
        assert_eq!(m.get("rss"), Some(&8192));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn json_field_names_are_runcs() {
        let mut s = Stats::default();
        s.cpu.throttling.throttled_periods = 2;
        s.memory.usage.limit = 64;
        s.pids.current = 3;
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["cpu"]["throttling"]["throttledPeriods"], 2);
        assert_eq!(v["memory"]["usage"]["limit"], 64);
        assert_eq!(v["memory"]["usage"]["failcnt"], 0);
        assert_eq!(v["pids"]["current"], 3);
        assert!(v["pids"].get("limit").is_none());
    }

    #[test]
    fn own_cgroup_stats_can_be_read() {
        // Whatever this host mounts, reading stats of a missing cgroup
        // gives zeros, not a panic.
        if let Ok(cg) = Cgroup::new(Path::new("/vessel-stats-test-missing")) {
            assert_eq!(cg.stats().pids.current, 0);
        }
    }
}
