//! cgroup v2 (unified): one directory, controllers enabled from the root down.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::{CGROUP_ROOT, CgroupError, read_file, write_file};

/// Creates `dir` and enables the controllers it needs in every ancestor.
pub(super) fn create(dir: &Path) -> Result<(), CgroupError> {
    let root = PathBuf::from(CGROUP_ROOT);
    let rel = dir.strip_prefix(&root).unwrap_or(dir).to_owned();
    let available = read_file(&root.join("cgroup.controllers")).unwrap_or_default();
    let enable: String = available
        .split_whitespace()
        .filter(|c| matches!(*c, "cpu" | "cpuset" | "memory" | "pids" | "io"))
        .map(|c| format!("+{c} "))
        .collect();
    let mut cur = root;
    for comp in rel.components() {
        if !enable.is_empty() {
            // Best effort: a parent with processes of its own refuses this.
            let _ = write_file(&cur.join("cgroup.subtree_control"), enable.trim());
        }
        cur.push(comp);
        match fs::create_dir(&cur) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(source) => return Err(CgroupError::Create { path: cur, source }),
        }
    }
    Ok(())
}

/// cgroup v1 cpu.shares (2..262144) to v2 cpu.weight (1..10000), as runc does.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// v1 blkio weight (10..1000) to v2 io.weight (1..10000).
pub fn blkio_to_io_weight(w: u16) -> u64 {
    1 + ((u64::from(w).clamp(10, 1000) - 10) * 9999) / 990
}

pub(super) fn apply(dir: &Path, res: &LinuxResources) -> Result<(), CgroupError> {
    if let Some(mem) = res.memory() {
        let max = |v: i64| {
            if v < 0 {
                "max".to_string()
            } else {
                v.to_string()
            }
        };
        if let Some(limit) = mem.limit() {
            write_file(&dir.join("memory.max"), &max(limit))?;
            if let Some(swap) = mem.swap() {
                // OCI swap is memory+swap; v2 counts swap alone.
                let s = if swap < 0 || limit < 0 {
                    "max".to_string()
                } else {
                    (swap - limit).max(0).to_string()
                };
                write_file(&dir.join("memory.swap.max"), &s)?;
            }
        }
        if let Some(r) = mem.reservation() {
            write_file(&dir.join("memory.low"), &max(r))?;
        }
    }
    if let Some(cpu) = res.cpu() {
        if let Some(s) = cpu.shares() {
            write_file(&dir.join("cpu.weight"), &shares_to_weight(s).to_string())?;
        }
        if cpu.quota().is_some() || cpu.period().is_some() {
            let q = match cpu.quota() {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".to_string(),
            };
            let p = cpu.period().unwrap_or(100_000);
            write_file(&dir.join("cpu.max"), &format!("{q} {p}"))?;
        }
        if let Some(c) = cpu.cpus() {
            write_file(&dir.join("cpuset.cpus"), c)?;
        }
        if let Some(m) = cpu.mems() {
            write_file(&dir.join("cpuset.mems"), m)?;
        }
    }
    if let Some(pids) = res.pids() {
        let v = if pids.limit() > 0 {
            pids.limit().to_string()
        } else {
            "max".to_string()
        };
        write_file(&dir.join("pids.max"), &v)?;
    }
    if let Some(w) = res.block_io().as_ref().and_then(|b| b.weight()) {
        write_file(&dir.join("io.weight"), &blkio_to_io_weight(w).to_string())?;
    }
    if let Some(devices) = res.devices() {
        super::devices_bpf::attach(dir, devices)?;
    }
    if let Some(unified) = res.unified() {
        for (k, v) in unified {
            if k.contains('/') || k.starts_with('.') {
                return Err(CgroupError::Unsupported {
                    field: "unified",
                    reason: format!("{k:?} is not a cgroup file name"),
                });
            }
            write_file(&dir.join(k), v)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_match_runc() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }
}
