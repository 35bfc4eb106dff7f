//! Per-process settings: user and groups, no_new_privs, oom_score_adj,
//! sysctl, hostname.

use std::io::Write;
use std::path::PathBuf;

use nix::unistd::{Gid, Uid};

/// Errors from per-process settings.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot {what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("linux.sysctl: {key:?} {reason}")]
    Sysctl { key: String, reason: String },
}

/// Switches to `uid`/`gid` with the supplementary groups `groups`, keeping
/// the permitted capabilities across the uid change (the caller then sets
/// the capability sets it wants).
pub fn switch_user(
    uid: u32,
    gid: u32,
    groups: &[u32],
    set_groups: bool,
) -> Result<(), ProcessError> {
    let sys = |what: &str| {
        let what = what.to_string();
        move |source| ProcessError::Sys { what, source }
    };
    nix::sys::prctl::set_keepcaps(true).map_err(sys("set keepcaps"))?;
    if set_groups {
        let gs: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&gs).map_err(sys(
            "set supplementary groups (process.user.additionalGids)",
        ))?;
    }
    let g = Gid::from_raw(gid);
    nix::unistd::setresgid(g, g, g).map_err(sys(&format!("set gid {gid} (process.user.gid)")))?;
    let u = Uid::from_raw(uid);
    nix::unistd::setresuid(u, u, u).map_err(sys(&format!("set uid {uid} (process.user.uid)")))?;
    nix::sys::prctl::set_keepcaps(false).map_err(sys("clear keepcaps"))?;
    Ok(())
}

/// Sets no_new_privs: exec can no longer gain privileges.
pub fn set_no_new_privs() -> Result<(), ProcessError> {
    nix::sys::prctl::set_no_new_privs().map_err(|source| ProcessError::Sys {
        what: "set no_new_privs".into(),
        source,
    })
}

/// Writes /proc/self/oom_score_adj.
pub fn set_oom_score_adj(v: i32) -> Result<(), ProcessError> {
    write("/proc/self/oom_score_adj", &v.to_string())
}

fn write(path: &str, value: &str) -> Result<(), ProcessError> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| ProcessError::Write {
            path: PathBuf::from(path),
            source,
        })
}

/// The /proc/sys path of a sysctl key (`net.ipv4.ip_forward`), refusing
/// keys that would escape /proc/sys.
pub fn sysctl_path(key: &str) -> Result<PathBuf, ProcessError> {
    if key.is_empty() || key.contains("..") || key.starts_with('/') || key.starts_with('.') {
        return Err(ProcessError::Sysctl {
            key: key.into(),
            reason: "is not a sysctl name such as net.ipv4.ip_forward".into(),
        });
    }
    Ok(PathBuf::from("/proc/sys").join(key.replace('.', "/")))
}

/// Writes one sysctl of the calling process's namespaces.
pub fn set_sysctl(key: &str, value: &str) -> Result<(), ProcessError> {
    let path = sysctl_path(key)?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| ProcessError::Sysctl {
            key: key.into(),
            reason: format!("cannot be written ({}: {source}); only namespaced sysctls (kernel.*, net.*, fs.mqueue.*) can be set in a container", path.display()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_keys_map_to_proc_sys() {
        assert_eq!(
            sysctl_path("net.ipv4.ip_forward").expect("valid"),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert!(sysctl_path("../../etc/passwd").is_err());
        assert!(sysctl_path("").is_err());
    }
}
