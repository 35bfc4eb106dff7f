//! Turning an OCI `process` into a running program: rlimits, oom score,
//! user and groups, capabilities, no_new_privs, seccomp, cwd, umask, env,
//! and the final execve. Shared by a container's init and `exec`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxSeccomp, Process};
use vessel_sandbox::capabilities::{self, CapSets};
use vessel_sandbox::seccomp::Filter;

/// Errors preparing or starting the container process.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("process.args[0] {0:?}: executable file not found in the container (PATH={1})")]
    NotFound(String, String),
    /// Found, but not an executable file: worded as runc's error, which
    /// Podman maps to exit code 126 (127 is for not found).
    #[error(
        "process.args[0] {0:?}: permission denied: {1} is not an executable file in the container"
    )]
    NotExecutable(String, PathBuf),
    #[error("process.{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Caps(#[from] capabilities::CapsError),
    #[error(transparent)]
    Rlimit(#[from] vessel_sandbox::rlimits::RlimitError),
    #[error(transparent)]
    Seccomp(#[from] vessel_sandbox::seccomp::SeccompError),
    #[error(transparent)]
    Knob(#[from] vessel_sandbox::process::ProcessError),
    #[error("cannot chdir to process.cwd {0}: {1}")]
    Cwd(PathBuf, nix::Error),
    #[error("cannot exec {0:?}: {1}")]
    Exec(String, nix::Error),
}

/// Everything needed to become the container process, computed up front so
/// that failures are reported before the container is `created`.
pub struct Plan {
    pub path: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub umask: Option<u32>,
    pub caps: Option<CapSets>,
    pub nnp: bool,
    pub seccomp: Option<Filter>,
    pub rlimits: Vec<oci_spec::runtime::PosixRlimit>,
    pub oom_score_adj: Option<i32>,
}

fn cstr(field: &'static str, s: &[u8]) -> Result<CString, ProcessError> {
    CString::new(s).map_err(|_| ProcessError::Invalid {
        field,
        reason: "contains a NUL byte".into(),
    })
}

/// The default PATH when process.env has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The paths `prog` may name: itself when it holds a '/', else one per
/// PATH entry.
fn candidates(prog: &str, path_var: &str) -> Vec<PathBuf> {
    if prog.contains('/') {
        return vec![PathBuf::from(prog)];
    }
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(prog))
        .collect()
}

/// Finds `prog` on the container's PATH (relative to the current root).
pub fn resolve(prog: &str, path_var: &str) -> Option<PathBuf> {
    candidates(prog, path_var)
        .into_iter()
        .find(|p| is_executable(p))
}

/// Builds the plan for `process` (call inside the container's root).
pub fn plan(
    process: &Process,
    seccomp: Option<&LinuxSeccomp>,
    extra_env: &[String],
    with_rlimits: bool,
) -> Result<Plan, ProcessError> {
    let args = process.args().clone().unwrap_or_default();
    let Some(first) = args.first() else {
        return Err(ProcessError::Invalid {
            field: "args",
            reason: "is empty".into(),
        });
    };
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    env.extend(extra_env.iter().cloned());
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_string();
    let exe = match resolve(first, &path_var) {
        Some(p) => p,
        None => {
            return Err(
                match candidates(first, &path_var)
                    .into_iter()
                    .find(|p| p.exists())
                {
                    Some(p) => ProcessError::NotExecutable(first.clone(), p),
                    None => ProcessError::NotFound(first.clone(), path_var.clone()),
                },
            );
        }
    };
    let caps = match process.capabilities() {
        Some(c) => {
            let set = |name: &'static str, s: &Option<oci_spec::runtime::Capabilities>| {
                let names: Vec<String> = s.iter().flatten().map(|c| format!("CAP_{c}")).collect();
                capabilities::parse_set(name, names.iter().map(String::as_str))
            };
            Some(CapSets {
                bounding: set("bounding", c.bounding())?,
                effective: set("effective", c.effective())?,
                permitted: set("permitted", c.permitted())?,
                inheritable: set("inheritable", c.inheritable())?,
                ambient: set("ambient", c.ambient())?,
            })
        }
        None => None,
    };
    let seccomp = match seccomp {
        Some(s) => Some(vessel_sandbox::seccomp::build(s)?),
        None => None,
    };
    let user = process.user();
    Ok(Plan {
        path: cstr("args", exe.as_os_str().as_bytes())?,
        argv: args
            .iter()
            .map(|a| cstr("args", a.as_bytes()))
            .collect::<Result<_, _>>()?,
        envp: env
            .iter()
            .map(|e| cstr("env", e.as_bytes()))
            .collect::<Result<_, _>>()?,
        cwd: process.cwd().clone(),
        uid: user.uid(),
        gid: user.gid(),
        groups: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask(),
        caps,
        nnp: process.no_new_privileges().unwrap_or(false),
        seccomp,
        rlimits: if with_rlimits {
            process.rlimits().clone().unwrap_or_default()
        } else {
            Vec::new()
        },
        oom_score_adj: process.oom_score_adj(),
    })
}

/// Applies everything that must happen before the start signal: rlimits,
/// oom score, seccomp (when no_new_privs is off it needs CAP_SYS_ADMIN, so
/// it goes before the capability drop, as in runc), the user and the
/// capability sets, cwd and umask.
pub fn apply(plan: &Plan, set_groups: bool) -> Result<(), ProcessError> {
    vessel_sandbox::rlimits::apply(&plan.rlimits)?;
    if let Some(v) = plan.oom_score_adj {
        vessel_sandbox::process::set_oom_score_adj(v)?;
    }
    if !plan.nnp
        && let Some(f) = &plan.seccomp
    {
        vessel_sandbox::seccomp::load(f)?;
    }
    if let Some(c) = &plan.caps {
        capabilities::restrict_bounding(&c.bounding)?;
    }
    vessel_sandbox::process::switch_user(plan.uid, plan.gid, &plan.groups, set_groups)?;
    if let Some(c) = &plan.caps {
        capabilities::apply_sets(c)?;
    }
    if let Err(e) = nix::unistd::chdir(&plan.cwd) {
        return Err(ProcessError::Cwd(plan.cwd.clone(), e));
    }
    if let Some(m) = plan.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(m));
    }
    Ok(())
}

/// no_new_privs, the late seccomp filter, and execve. Returns only on error.
pub fn exec(plan: &Plan) -> ProcessError {
    if plan.nnp {
        if let Err(e) = vessel_sandbox::process::set_no_new_privs() {
            return e.into();
        }
        if let Some(f) = &plan.seccomp
            && let Err(e) = vessel_sandbox::seccomp::load(f)
        {
            return e.into();
        }
    }
    match nix::unistd::execve(&plan.path, &plan.argv, &plan.envp) {
        Ok(never) => match never {},
        Err(e) => ProcessError::Exec(plan.path.to_string_lossy().into_owned(), e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_uses_the_given_path() {
        assert_eq!(
            resolve("sh", "/nonexistent:/bin"),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(resolve("sh", "/nonexistent"), None);
        assert_eq!(resolve("/bin/sh", ""), Some(PathBuf::from("/bin/sh")));
        assert_eq!(resolve("/etc/passwd", ""), None, "not executable");
    }
}
