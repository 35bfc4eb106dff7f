//! cgroup v1 controllers: one directory per hierarchy.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::{Cgroup, CgroupError, Hierarchy, read_file, write_file};

/// Creates `dir` and its missing parents. In the cpuset hierarchy a new
/// directory starts with empty cpus/mems, which forbids joining it: copy
/// the parent's values down each new level.
pub(super) fn create(h: &Hierarchy, dir: &Path) -> Result<(), CgroupError> {
    let is_cpuset = h.has("cpuset");
    let rel = dir.strip_prefix(&h.mount).unwrap_or(dir);
    let mut cur = h.mount.clone();
    for comp in rel.components() {
        let parent = cur.clone();
        cur.push(comp);
        match fs::create_dir(&cur) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(source) => return Err(CgroupError::Create { path: cur, source }),
        }
        if is_cpuset {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let mine = read_file(&cur.join(f))?;
                if mine.trim().is_empty() {
                    let theirs = read_file(&parent.join(f))?;
                    write_file(&cur.join(f), theirs.trim())?;
                }
            }
        }
    }
    Ok(())
}

/// Whether a container with resources `res` needs its own cgroup in
/// hierarchy `h` (see [`super::Cgroup::create_for`]).
pub(super) fn needed(h: &Hierarchy, res: Option<&LinuxResources>) -> bool {
    if ["memory", "pids", "freezer", "devices", "cpuacct"]
        .iter()
        .any(|c| h.has(c))
    {
        return true;
    }
    let Some(res) = res else { return false };
    let cpu = res.cpu().as_ref();
    (h.has("cpu")
        && cpu.is_some_and(|c| {
            c.shares().is_some()
                || c.quota().is_some()
                || c.period().is_some()
                || c.realtime_runtime().is_some()
                || c.realtime_period().is_some()
        }))
        || (h.has("cpuset") && cpu.is_some_and(|c| c.cpus().is_some() || c.mems().is_some()))
        || (h.has("blkio") && res.block_io().is_some())
        || (h.has("hugetlb") && res.hugepage_limits().is_some())
        || (h.has("net_cls")
            && res
                .network()
                .as_ref()
                .is_some_and(|n| n.class_id().is_some()))
        || (h.has("net_prio")
            && res
                .network()
                .as_ref()
                .is_some_and(|n| n.priorities().is_some()))
        || (h.has("rdma") && res.rdma().is_some())
}

/// The directory of `controller` for cgroup `cg`, made on first use: a
/// container created without (say) a cpu limit has no cpu cgroup until
/// `update` sets one; then the directory is made and the container's
/// processes are moved in.
fn ensure<'a>(cg: &'a Cgroup, controller: &str) -> Result<Option<&'a Path>, CgroupError> {
    let Some((h, dir)) = cg.v1.iter().find(|(h, _)| h.has(controller)) else {
        return Ok(None);
    };
    if !dir.is_dir() {
        create(h, dir)?;
        for pid in cg.pids()? {
            // A process that exited meanwhile is fine.
            match write_file(&dir.join("cgroup.procs"), &pid.to_string()) {
                Err(CgroupError::Write { source, .. })
                    if source.raw_os_error() == Some(libc::ESRCH) => {}
                r => r?,
            }
        }
    }
    Ok(Some(dir))
}

fn dev_type(t: Option<LinuxDeviceType>) -> char {
    match t {
        Some(LinuxDeviceType::B) => 'b',
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
        Some(LinuxDeviceType::P) => 'p',
        Some(LinuxDeviceType::A) | None => 'a',
    }
}

/// The v1 `devices.allow`/`devices.deny` line of one rule.
pub(crate) fn device_rule(d: &LinuxDeviceCgroup) -> String {
    let num = |n: Option<i64>| match n {
        Some(n) if n >= 0 => n.to_string(),
        _ => "*".to_string(),
    };
    let access = d.access().clone().unwrap_or_else(|| "rwm".into());
    let t = dev_type(d.typ());
    if t == 'a' {
        return format!("a *:* {access}");
    }
    format!("{t} {}:{} {access}", num(d.major()), num(d.minor()))
}

pub(super) fn apply(cg: &Cgroup, res: &LinuxResources) -> Result<(), CgroupError> {
    let need = |controller: &'static str, field: &'static str| {
        ensure(cg, controller)?.ok_or(CgroupError::Unsupported {
            field,
            reason: format!("the host has no {controller} cgroup controller mounted"),
        })
    };
    if let Some(mem) = res.memory() {
        let dir = need("memory", "memory")?;
        if let Some(limit) = mem.limit() {
            let limit_s = if limit < 0 {
                "-1".to_string()
            } else {
                limit.to_string()
            };
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            match mem.swap() {
                Some(swap) => {
                    if !memsw.exists() {
                        return Err(CgroupError::Unsupported {
                            field: "memory.swap",
                            reason: "the host kernel has no swap accounting (memory.memsw.limit_in_bytes); remove the swap limit".into(),
                        });
                    }
                    let swap_s = if swap < 0 {
                        "-1".to_string()
                    } else {
                        swap.to_string()
                    };
                    // memsw must stay >= limit: order the writes by direction.
                    if write_file(&dir.join("memory.limit_in_bytes"), &limit_s).is_err() {
                        write_file(&memsw, &swap_s)?;
                        write_file(&dir.join("memory.limit_in_bytes"), &limit_s)?;
                    } else {
                        write_file(&memsw, &swap_s)?;
                    }
                }
                None => {
                    if let Err(e) = write_file(&dir.join("memory.limit_in_bytes"), &limit_s) {
                        // An earlier, lower memsw limit blocks raising the limit.
                        if memsw.exists() {
                            write_file(&memsw, &limit_s)?;
                            write_file(&dir.join("memory.limit_in_bytes"), &limit_s)?;
                        } else {
                            return Err(e);
                        }
                    }
                }
            }
        }
        if let Some(r) = mem.reservation() {
            write_file(&dir.join("memory.soft_limit_in_bytes"), &r.to_string())?;
        }
        if let Some(s) = mem.swappiness() {
            if s > 100 {
                return Err(CgroupError::Unsupported {
                    field: "memory.swappiness",
                    reason: format!("{s} is out of range 0..=100"),
                });
            }
            write_file(&dir.join("memory.swappiness"), &s.to_string())?;
        }
        if mem.disable_oom_killer() == Some(true) {
            write_file(&dir.join("memory.oom_control"), "1")?;
        }
    }
    if let Some(cpu) = res.cpu() {
        if cpu.shares().is_some() || cpu.quota().is_some() || cpu.period().is_some() {
            let dir = need("cpu", "cpu")?;
            if let Some(s) = cpu.shares() {
                write_file(&dir.join("cpu.shares"), &s.to_string())?;
            }
            if let Some(p) = cpu.period() {
                write_file(&dir.join("cpu.cfs_period_us"), &p.to_string())?;
            }
            if let Some(q) = cpu.quota() {
                write_file(&dir.join("cpu.cfs_quota_us"), &q.to_string())?;
            }
        }
        if cpu.cpus().is_some() || cpu.mems().is_some() {
            let dir = need("cpuset", "cpu.cpus")?;
            if let Some(c) = cpu.cpus() {
                write_file(&dir.join("cpuset.cpus"), c)?;
            }
            if let Some(m) = cpu.mems() {
                write_file(&dir.join("cpuset.mems"), m)?;
            }
        }
    }
    if let Some(pids) = res.pids() {
        let dir = need("pids", "pids")?;
        let v = if pids.limit() > 0 {
            pids.limit().to_string()
        } else {
            "max".to_string()
        };
        write_file(&dir.join("pids.max"), &v)?;
    }
    if let Some(w) = res.block_io().as_ref().and_then(|b| b.weight()) {
        let dir = need("blkio", "blockIO")?;
        let plain = dir.join("blkio.weight");
        let bfq = dir.join("blkio.bfq.weight");
        if plain.exists() {
            write_file(&plain, &w.to_string())?;
        } else if bfq.exists() {
            write_file(&bfq, &w.to_string())?;
        } else {
            return Err(CgroupError::Unsupported {
                field: "blockIO.weight",
                reason:
                    "the host's I/O scheduler has no blkio weight (needs BFQ); remove the weight"
                        .into(),
            });
        }
    }
    if let (Some(devices), Some(dir)) = (res.devices(), cg.dir_of("devices")) {
        for d in devices {
            let file = if d.allow() {
                "devices.allow"
            } else {
                "devices.deny"
            };
            write_file(&dir.join(file), &device_rule(d))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    #[test]
    fn device_rules_use_kernel_syntax() {
        let all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .expect("rule");
        assert_eq!(device_rule(&all), "a *:* rwm");
        let null = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .access("rw")
            .build()
            .expect("rule");
        assert_eq!(device_rule(&null), "c 1:3 rw");
        let any_minor = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(136)
            .access("rwm")
            .build()
            .expect("rule");
        assert_eq!(device_rule(&any_minor), "c 136:* rwm");
    }
}
