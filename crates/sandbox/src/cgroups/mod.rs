//! cgroups for a container or a jailed VMM: v1 (legacy), v2 (unified) and
//! hybrid hosts (v1 controllers plus a v2 tree at /sys/fs/cgroup/unified,
//! where the v1 controllers do the limiting).
//!
//! A [`Cgroup`] names one path (such as `/vessel/web`) in every hierarchy;
//! `create` makes the directories, `add_pid` moves a process in, `apply`
//! writes the limits of an OCI `LinuxResources`, and `destroy` removes the
//! directories once the processes are gone.

pub mod devices_bpf;
mod stats;
mod v1;
mod v2;

pub use stats::{Cpu, CpuUsage, Memory, MemoryEntry, Pids, Stats, Throttling};

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

/// Where the cgroup hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Errors from cgroup operations.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot create cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove cgroup {path}: {source}; processes may still be inside")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("linux.resources.{field}: {reason}")]
    Unsupported { field: &'static str, reason: String },
    #[error("no cgroup hierarchy is mounted under {CGROUP_ROOT}")]
    NoHierarchy,
}

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Only v1 controllers.
    Legacy,
    /// v1 controllers plus a v2 tree at /sys/fs/cgroup/unified.
    Hybrid,
    /// Only v2 at /sys/fs/cgroup.
    Unified,
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

fn fs_magic(path: &str) -> Option<i64> {
    nix::sys::statfs::statfs(path)
        .ok()
        .map(|s| s.filesystem_type().0)
}

/// Detects the host's cgroup mode from the file systems mounted at
/// /sys/fs/cgroup and /sys/fs/cgroup/unified.
pub fn detect_mode() -> CgroupMode {
    if fs_magic(CGROUP_ROOT) == Some(CGROUP2_SUPER_MAGIC) {
        CgroupMode::Unified
    } else if fs_magic("/sys/fs/cgroup/unified") == Some(CGROUP2_SUPER_MAGIC) {
        CgroupMode::Hybrid
    } else {
        CgroupMode::Legacy
    }
}

/// One v1 hierarchy: its mount point and the controllers it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount: PathBuf,
    pub controllers: Vec<String>,
}

impl Hierarchy {
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// Parses /proc/self/mountinfo text for v1 cgroup hierarchies.
pub fn parse_v1_hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split(' ');
        if r.next() != Some("cgroup") {
            continue;
        }
        let _source = r.next();
        let Some(opts) = r.next() else { continue };
        let Some(mount) = left.split(' ').nth(4) else {
            continue;
        };
        let controllers: Vec<String> = opts
            .split(',')
            .filter(|o| {
                !matches!(
                    *o,
                    "rw" | "ro" | "nosuid" | "nodev" | "noexec" | "relatime" | "noatime"
                ) && !o.starts_with("release_agent")
                    && !o.starts_with("clone_children")
                    && !o.starts_with("xattr")
            })
            .map(str::to_owned)
            .collect();
        if controllers.is_empty() {
            continue;
        }
        out.push(Hierarchy {
            mount: PathBuf::from(mount),
            controllers,
        });
    }
    out
}

/// The v1 hierarchies of this host (read from /proc/self/mountinfo).
pub fn v1_hierarchies() -> Vec<Hierarchy> {
    fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_v1_hierarchies(&t))
        .unwrap_or_default()
}

/// A cgroup path in every hierarchy of the host.
#[derive(Debug, Clone)]
pub struct Cgroup {
    mode: CgroupMode,
    /// The path below each hierarchy's root, always absolute (`/a/b`).
    rel: PathBuf,
    /// v1 hierarchies (mount point + controllers) and this cgroup's dir in each.
    v1: Vec<(Hierarchy, PathBuf)>,
    /// The v2 directory (unified mode only).
    v2: Option<PathBuf>,
}

/// Writes a cgroup file, mapping the error to one that names file and value.
pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| CgroupError::Write {
            path: path.to_owned(),
            value: value.to_owned(),
            source,
        })
}

/// As [`write_file`], but a missing file (a hierarchy where this cgroup
/// was not created) is skipped.
fn write_if_exists(path: &Path, value: &str) -> Result<(), CgroupError> {
    match write_file(path, value) {
        Err(CgroupError::Write { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

pub(crate) fn read_file(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_owned(),
        source,
    })
}

impl Cgroup {
    /// Names the cgroup `rel` (such as `/vessel/web`; a relative path is
    /// taken from the hierarchy root) on this host. Nothing is created.
    pub fn new(rel: &Path) -> Result<Self, CgroupError> {
        let mode = detect_mode();
        Self::with_mode(rel, mode)
    }

    /// As [`Cgroup::new`] with a given mode (tests, or a caller that already detected it).
    pub fn with_mode(rel: &Path, mode: CgroupMode) -> Result<Self, CgroupError> {
        let rel = Path::new("/").join(rel);
        let strip = rel.strip_prefix("/").unwrap_or(&rel).to_owned();
        let (v1, v2) = match mode {
            CgroupMode::Unified => (Vec::new(), Some(Path::new(CGROUP_ROOT).join(&strip))),
            CgroupMode::Legacy | CgroupMode::Hybrid => {
                let hs = v1_hierarchies();
                if hs.is_empty() {
                    return Err(CgroupError::NoHierarchy);
                }
                let v1 = hs
                    .into_iter()
                    .map(|h| {
                        let dir = h.mount.join(&strip);
                        (h, dir)
                    })
                    .collect();
                (v1, None)
            }
        };
        Ok(Cgroup { mode, rel, v1, v2 })
    }

    pub fn mode(&self) -> CgroupMode {
        self.mode
    }

    /// The path below the hierarchy roots.
    pub fn path(&self) -> &Path {
        &self.rel
    }

    /// The directory of this cgroup for a controller (v1), or the v2 dir.
    pub fn dir_of(&self, controller: &str) -> Option<&Path> {
        if let Some(v2) = &self.v2 {
            return Some(v2);
        }
        self.v1
            .iter()
            .find(|(h, _)| h.has(controller))
            .map(|(_, d)| d.as_path())
    }

    /// Every (hierarchy, directory) pair: for mounting into a container.
    pub fn v1_dirs(&self) -> &[(Hierarchy, PathBuf)] {
        &self.v1
    }

    pub fn v2_dir(&self) -> Option<&Path> {
        self.v2.as_deref()
    }

    /// Creates the directories in every hierarchy.
    pub fn create(&self) -> Result<(), CgroupError> {
        if let Some(v2) = &self.v2 {
            return v2::create(v2);
        }
        for (h, dir) in &self.v1 {
            v1::create(h, dir)?;
        }
        Ok(())
    }

    /// Creates the directories that `res` needs. On v1 that is the
    /// hierarchies every container uses (memory, pids, freezer, devices,
    /// cpuacct: limits, `ps`, pause, the device policy, stats) plus those
    /// whose limits `res` sets (cpu, cpuset, blkio, ...). Each extra
    /// hierarchy costs a mkdir, a join and an rmdir per container; one
    /// that `update` needs later is made then (see [`Cgroup::apply`]).
    pub fn create_for(&self, res: Option<&LinuxResources>) -> Result<(), CgroupError> {
        if let Some(v2) = &self.v2 {
            return v2::create(v2);
        }
        for (h, dir) in &self.v1 {
            if v1::needed(h, res) {
                v1::create(h, dir)?;
            }
        }
        Ok(())
    }

    /// Moves process `pid` into this cgroup in every hierarchy where the
    /// cgroup exists.
    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        let s = pid.to_string();
        if let Some(v2) = &self.v2 {
            return write_file(&v2.join("cgroup.procs"), &s);
        }
        for (_, dir) in &self.v1 {
            write_if_exists(&dir.join("cgroup.procs"), &s)?;
        }
        Ok(())
    }

    /// Moves the calling thread into this cgroup in every hierarchy.
    ///
    /// On v1 this writes `0` to each `tasks` file. The kernel moves a
    /// single thread named as "0" (itself) without taking the global
    /// threadgroup lock, which costs a full RCU grace period (10-15 ms
    /// here) for a pid written to `cgroup.procs` by another process. The
    /// caller must be single-threaded (a freshly cloned container init),
    /// or its other threads stay behind. On v2 a thread cannot leave its
    /// process's domain cgroup, so the whole process moves (`cgroup.procs`).
    pub fn join_self(&self) -> Result<(), CgroupError> {
        if let Some(v2) = &self.v2 {
            return write_file(&v2.join("cgroup.procs"), "0");
        }
        for (_, dir) in &self.v1 {
            write_if_exists(&dir.join("tasks"), "0")?;
        }
        Ok(())
    }

    /// Applies resource limits.
    pub fn apply(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        if let Some(v2) = &self.v2 {
            return v2::apply(v2, res);
        }
        v1::apply(self, res)
    }

    /// Freezes (pause) or thaws (resume) every process of the cgroup.
    pub fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        if let Some(v2) = &self.v2 {
            return write_file(&v2.join("cgroup.freeze"), if frozen { "1" } else { "0" });
        }
        let dir = self.dir_of("freezer").ok_or(CgroupError::Unsupported {
            field: "freezer",
            reason: "the host has no freezer cgroup controller mounted".into(),
        })?;
        let want = if frozen { "FROZEN" } else { "THAWED" };
        write_file(&dir.join("freezer.state"), want)?;
        // The v1 freezer reports FREEZING until every task is stopped; re-write
        // until it settles (each write retries the freeze in the kernel).
        for _ in 0..1000 {
            if read_file(&dir.join("freezer.state"))?.trim() == want {
                return Ok(());
            }
            write_file(&dir.join("freezer.state"), want)?;
            std::thread::yield_now();
        }
        Err(CgroupError::Write {
            path: dir.join("freezer.state"),
            value: want.into(),
            source: std::io::Error::other("the freezer did not settle"),
        })
    }

    /// Whether the cgroup is frozen.
    pub fn is_frozen(&self) -> bool {
        if let Some(v2) = &self.v2 {
            return read_file(&v2.join("cgroup.freeze"))
                .map(|s| s.trim() == "1")
                .unwrap_or(false);
        }
        self.dir_of("freezer")
            .and_then(|d| read_file(&d.join("freezer.state")).ok())
            .map(|s| s.trim() == "FROZEN")
            .unwrap_or(false)
    }

    /// The processes in the cgroup.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let dir = match &self.v2 {
            Some(v2) => v2.as_path(),
            None => self
                .dir_of("pids")
                .or_else(|| self.dir_of("memory"))
                .or_else(|| self.v1.first().map(|(_, d)| d.as_path()))
                .ok_or(CgroupError::NoHierarchy)?,
        };
        let text = match fs::read_to_string(dir.join("cgroup.procs")) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(CgroupError::Read {
                    path: dir.join("cgroup.procs"),
                    source,
                });
            }
        };
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// How many times the OOM killer killed a process of this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = match &self.v2 {
            Some(v2) => (v2.join("memory.events"), "oom_kill"),
            None => match self.dir_of("memory") {
                Some(d) => (d.join("memory.oom_control"), "oom_kill"),
                None => return 0,
            },
        };
        fs::read_to_string(file)
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == key).then(|| v.trim().parse().ok()).flatten()
                })
            })
            .unwrap_or(0)
    }

    /// Removes the directories (children first). Missing ones are fine.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        let mut first_err = None;
        let dirs: Vec<&Path> = match &self.v2 {
            Some(v2) => vec![v2.as_path()],
            None => self.v1.iter().map(|(_, d)| d.as_path()).collect(),
        };
        for dir in dirs {
            if let Err(e) = remove_tree(dir) {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Removes a cgroup directory and any sub-cgroups a container made inside.
fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path())?;
            }
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CgroupError::Remove {
            path: dir.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:7 - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
";

    #[test]
    fn parses_v1_hierarchies_with_joined_controllers() {
        let hs = parse_v1_hierarchies(MOUNTINFO);
        assert_eq!(hs.len(), 3);
        assert_eq!(hs[0].mount, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert!(hs[0].has("cpu") && hs[0].has("cpuacct"));
        assert_eq!(hs[1].controllers, vec!["memory".to_string()]);
        assert_eq!(hs[2].controllers, vec!["name=systemd".to_string()]);
    }

    #[test]
    fn detect_mode_matches_mounts() {
        let mode = detect_mode();
        let unified_root = fs_magic(CGROUP_ROOT) == Some(CGROUP2_SUPER_MAGIC);
        assert_eq!(mode == CgroupMode::Unified, unified_root);
    }
}
