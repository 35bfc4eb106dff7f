//! What the kernel offers containers: namespaces, cgroups, overlayfs,
//! seccomp and `/dev/net/tun`.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::{HostCheckError, Probe};

/// The namespace types a container may use, with their clone flag and the
/// name of their file under `/proc/self/ns`.
pub const NAMESPACES: [(&str, libc::c_int); 8] = [
    ("mount", libc::CLONE_NEWNS),
    ("uts", libc::CLONE_NEWUTS),
    ("ipc", libc::CLONE_NEWIPC),
    ("pid", libc::CLONE_NEWPID),
    ("network", libc::CLONE_NEWNET),
    ("user", libc::CLONE_NEWUSER),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", 0x80), // CLONE_NEWTIME, Linux 5.6
];

/// The files under `/proc/self/ns` that show each type is compiled in.
const NS_FILES: [&str; 8] = ["mnt", "uts", "ipc", "pid", "net", "user", "cgroup", "time"];

/// How the cgroup hierarchies are mounted.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// Only the unified hierarchy.
    V2,
    /// Only per-controller v1 hierarchies.
    V1,
    /// v1 controllers plus a unified tree (usually at `/sys/fs/cgroup/unified`).
    Hybrid,
    /// No cgroup filesystem is mounted.
    None,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CgroupFacts {
    pub mode: CgroupMode,
    /// Controllers usable for limits (v1 hierarchies and v2 `cgroup.controllers`).
    pub controllers: Vec<String>,
    /// Where the unified (v2) tree is mounted, if anywhere.
    pub unified_mount: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ContainerFacts {
    /// Namespace type → whether a process could be put in a new one (live),
    /// or whether the kernel has it (recorded hosts).
    pub namespaces: BTreeMap<String, bool>,
    pub cgroup: CgroupFacts,
    pub overlayfs: bool,
    pub seccomp: bool,
    /// `/dev/net/tun` exists (and opens, when probed live).
    pub tun: bool,
}

impl ContainerFacts {
    pub fn missing_namespaces(&self) -> Vec<&str> {
        self.namespaces
            .iter()
            .filter(|(_, ok)| !**ok)
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

pub fn probe(probe: &Probe, root_user: bool) -> Result<ContainerFacts, HostCheckError> {
    let mountinfo = probe.read_required("/proc/self/mountinfo")?;
    let mut cgroup = parse_cgroups(&mountinfo);
    if let Some(mount) = &cgroup.unified_mount
        && let Some(list) = probe.read_optional(&format!("{mount}/cgroup.controllers"))
    {
        for c in list.split_whitespace() {
            if !cgroup.controllers.iter().any(|x| x == c) {
                cgroup.controllers.push(c.to_string());
            }
        }
        cgroup.controllers.sort();
    }
    let filesystems = probe.read_optional("/proc/filesystems").unwrap_or_default();
    let overlayfs = filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"));
    let seccomp = probe
        .read_optional("/proc/self/status")
        .is_some_and(|s| s.lines().any(|l| l.starts_with("Seccomp:")));
    let namespaces = NAMESPACES
        .iter()
        .zip(NS_FILES)
        .map(|(&(name, flag), file)| {
            let compiled = probe.exists(&format!("/proc/self/ns/{file}"));
            let ok = if probe.is_live() && root_user {
                compiled && can_unshare(flag)
            } else {
                compiled
            };
            (name.to_string(), ok)
        })
        .collect();
    let tun = if probe.is_live() {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .is_ok()
    } else {
        probe.exists("/dev/net/tun")
    };
    Ok(ContainerFacts {
        namespaces,
        cgroup,
        overlayfs,
        seccomp,
        tun,
    })
}

/// Whether a child process can be moved into a new namespace of this type.
fn can_unshare(flag: libc::c_int) -> bool {
    let mut cmd = Command::new("/bin/true");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and only makes
    // the unshare system call, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(flag) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    cmd.status().is_ok_and(|s| s.success())
}

/// Read the cgroup layout from `/proc/self/mountinfo`.
pub fn parse_cgroups(mountinfo: &str) -> CgroupFacts {
    let mut v1 = Vec::new();
    let mut unified = None;
    for line in mountinfo.lines() {
        // id parent maj:min root mountpoint options [optional...] - fstype source superoptions
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mountpoint = left.split_whitespace().nth(4);
        let mut right = right.split_whitespace();
        let (fstype, superopts) = (right.next(), right.nth(1));
        match (fstype, mountpoint) {
            (Some("cgroup2"), Some(mp)) if unified.is_none() => unified = Some(mp.to_string()),
            (Some("cgroup"), Some(_)) => {
                for opt in superopts.unwrap_or_default().split(',') {
                    if is_v1_controller(opt) && !v1.iter().any(|c| c == opt) {
                        v1.push(opt.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    v1.sort();
    let mode = match (v1.is_empty(), unified.is_some()) {
        (true, true) => CgroupMode::V2,
        (false, true) => CgroupMode::Hybrid,
        (false, false) => CgroupMode::V1,
        (true, false) => CgroupMode::None,
    };
    CgroupFacts {
        mode,
        controllers: v1,
        unified_mount: unified,
    }
}

fn is_v1_controller(opt: &str) -> bool {
    matches!(
        opt,
        "cpu"
            | "cpuacct"
            | "cpuset"
            | "memory"
            | "devices"
            | "freezer"
            | "net_cls"
            | "net_prio"
            | "blkio"
            | "perf_event"
            | "hugetlb"
            | "pids"
            | "rdma"
            | "misc"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_layout() {
        let cg = parse_cgroups(HYBRID);
        assert_eq!(cg.mode, CgroupMode::Hybrid);
        assert_eq!(cg.controllers, vec!["cpu", "memory", "pids"]);
        assert_eq!(cg.unified_mount.as_deref(), Some("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn pure_v2_and_v1_and_none() {
        let v2 = "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(parse_cgroups(v2).mode, CgroupMode::V2);
        let v1 = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let cg = parse_cgroups(v1);
        assert_eq!(cg.mode, CgroupMode::V1);
        assert_eq!(cg.controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(parse_cgroups("").mode, CgroupMode::None);
        assert_eq!(parse_cgroups("garbage - \n - -\n").mode, CgroupMode::None);
    }
}
