//! Linux namespaces: clone flags for new ones, `setns` for joining one by
//! path, and uid/gid maps for user namespaces.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType};

/// Errors from namespace operations.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error(
        "cannot open namespace {path}: {source}; check that the path names a namespace file such as /proc/PID/ns/net"
    )]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot join {kind} namespace {path}: {source}")]
    Join {
        kind: &'static str,
        path: PathBuf,
        source: nix::Error,
    },
    #[error("cannot create new namespaces ({flags:?}): {source}")]
    Unshare {
        flags: CloneFlags,
        source: nix::Error,
    },
    #[error(
        "cannot write {file}: {source}; the mapping must name host ids that exist and must not overlap"
    )]
    IdMap {
        file: PathBuf,
        source: std::io::Error,
    },
}

/// The clone flag of a namespace type.
pub fn clone_flag(kind: LinuxNamespaceType) -> CloneFlags {
    match kind {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The short name used under /proc/PID/ns/ for a namespace type.
pub fn proc_name(kind: LinuxNamespaceType) -> &'static str {
    match kind {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// An opened namespace file, ready to be joined with `setns`.
#[derive(Debug)]
pub struct NsFile {
    pub kind: LinuxNamespaceType,
    pub path: PathBuf,
    file: File,
}

impl NsFile {
    /// Opens a namespace file (such as /proc/PID/ns/net) for joining later.
    pub fn open(kind: LinuxNamespaceType, path: &Path) -> Result<Self, NamespaceError> {
        let file = File::open(path).map_err(|source| NamespaceError::Open {
            path: path.to_owned(),
            source,
        })?;
        Ok(NsFile {
            kind,
            path: path.to_owned(),
            file,
        })
    }

    /// Joins the namespace (the calling thread; for pid namespaces, its
    /// future children).
    pub fn join(&self) -> Result<(), NamespaceError> {
        nix::sched::setns(self.file.as_fd(), clone_flag(self.kind)).map_err(|source| {
            NamespaceError::Join {
                kind: proc_name(self.kind),
                path: self.path.clone(),
                source,
            }
        })
    }
}

/// Creates new namespaces for the calling process.
pub fn unshare(flags: CloneFlags) -> Result<(), NamespaceError> {
    if flags.is_empty() {
        return Ok(());
    }
    nix::sched::unshare(flags).map_err(|source| NamespaceError::Unshare { flags, source })
}

/// Formats an id mapping as the kernel's uid_map/gid_map text.
pub fn format_id_map(maps: &[LinuxIdMapping]) -> String {
    let mut out = String::new();
    for m in maps {
        out.push_str(&format!(
            "{} {} {}\n",
            m.container_id(),
            m.host_id(),
            m.size()
        ));
    }
    out
}

/// Writes uid and gid maps for the user namespace of `pid`. Writes
/// "deny" to setgroups only when the caller is unprivileged (not needed as
/// root, and it would forbid setgroups inside).
pub fn write_id_maps(
    pid: i32,
    uid_maps: &[LinuxIdMapping],
    gid_maps: &[LinuxIdMapping],
) -> Result<(), NamespaceError> {
    let write = |name: &str, text: &str| -> Result<(), NamespaceError> {
        let file = PathBuf::from(format!("/proc/{pid}/{name}"));
        let res = File::options()
            .write(true)
            .open(&file)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        res.map_err(|source| NamespaceError::IdMap { file, source })
    };
    if !uid_maps.is_empty() {
        write("uid_map", &format_id_map(uid_maps))?;
    }
    if !gid_maps.is_empty() {
        if !nix::unistd::geteuid().is_root() {
            write("setgroups", "deny")?;
        }
        write("gid_map", &format_id_map(gid_maps))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_map_text_is_one_line_per_range() {
        let maps = vec![serde_map(0, 1000, 1), serde_map(1, 100000, 65536)];
        assert_eq!(format_id_map(&maps), "0 1000 1\n1 100000 65536\n");
    }

    fn serde_map(c: u32, h: u32, s: u32) -> LinuxIdMapping {
        oci_spec::runtime::LinuxIdMappingBuilder::default()
            .container_id(c)
            .host_id(h)
            .size(s)
            .build()
            .expect("valid mapping")
    }

    #[test]
    fn flags_match_kernel_constants() {
        assert_eq!(
            clone_flag(LinuxNamespaceType::Network).bits(),
            libc::CLONE_NEWNET
        );
        assert_eq!(proc_name(LinuxNamespaceType::Mount), "mnt");
    }

    #[test]
    fn opening_a_missing_namespace_names_the_path() {
        let err = NsFile::open(LinuxNamespaceType::Network, Path::new("/nonexistent/ns"))
            .expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/ns"), "{err}");
    }
}
