//! Linux security modules: the AppArmor profile (`process.apparmorProfile`)
//! and the SELinux labels (`process.selinuxLabel`, `linux.mountLabel`).
//!
//! Applied where the host runs the module, as runc does: the profile or
//! label is written to the init's `attr/exec` just before execve, so the
//! kernel switches to it at exec; the mount label becomes a `context=`
//! option of the container's tmpfs-like mounts. Where the host has no such
//! module the field is skipped with a warning in the log, never an error,
//! so one config runs on every host.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use oci_spec::runtime::Spec;

/// Errors applying a label in the container's init.
#[derive(Debug, thiserror::Error)]
pub enum LsmError {
    #[error("cannot open {path} to apply {what}: {source}")]
    Open {
        path: String,
        what: String,
        source: std::io::Error,
    },
    #[error("cannot apply {what} (writing {path}): {source}; check that it is loaded on the host")]
    Apply {
        path: String,
        what: String,
        source: std::io::Error,
    },
}

/// Whether the host runs AppArmor.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .map(|s| s.trim_start().starts_with('Y'))
        .unwrap_or(false)
}

/// Whether the host runs SELinux (its file system is mounted).
pub fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// What the init must write before exec.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// (file under /proc/thread-self/attr, what to write, what for messages)
    writes: Vec<(&'static str, String, String)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

/// Decides what to apply on this host; `warn` gets one message per field
/// that the host cannot honour. Also adds the SELinux mount label to the
/// spec's mounts when it applies.
pub fn plan(spec: &mut Spec, warn: &mut dyn FnMut(String)) -> Plan {
    plan_for(spec, apparmor_enabled(), selinux_enabled(), warn)
}

fn plan_for(spec: &mut Spec, apparmor: bool, selinux: bool, warn: &mut dyn FnMut(String)) -> Plan {
    let mut p = Plan::default();
    let process = spec.process().clone().unwrap_or_default();
    if let Some(profile) = process
        .apparmor_profile()
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        if apparmor {
            let file = if Path::new("/proc/thread-self/attr/apparmor/exec").exists() {
                "apparmor/exec"
            } else {
                "exec"
            };
            p.writes.push((
                file,
                format!("exec {profile}"),
                format!("AppArmor profile {profile:?}"),
            ));
        } else {
            warn(format!(
                "process.apparmorProfile {profile:?} is not applied: AppArmor is not enabled on this host"
            ));
        }
    }
    if let Some(label) = process.selinux_label().as_deref().filter(|s| !s.is_empty()) {
        if selinux {
            p.writes.push((
                "exec",
                label.to_string(),
                format!("SELinux label {label:?}"),
            ));
        } else {
            warn(format!(
                "process.selinuxLabel {label:?} is not applied: SELinux is not enabled on this host"
            ));
        }
    }
    let mount_label = spec
        .linux()
        .as_ref()
        .and_then(|l| l.mount_label().clone())
        .filter(|s| !s.is_empty());
    if let Some(label) = mount_label {
        if selinux {
            label_mounts(spec, &label);
        } else {
            warn(format!(
                "linux.mountLabel {label:?} is not applied: SELinux is not enabled on this host"
            ));
        }
    }
    p
}

/// Adds `context="label"` to the mounts whose file systems take it (the
/// ones the runtime creates, not binds of host files).
fn label_mounts(spec: &mut Spec, label: &str) {
    let Some(mut mounts) = spec.mounts().clone() else {
        return;
    };
    for m in &mut mounts {
        let typ = m.typ().clone().unwrap_or_default();
        if matches!(typ.as_str(), "tmpfs" | "devpts" | "mqueue" | "shm") {
            let mut opts = m.options().clone().unwrap_or_default();
            if !opts.iter().any(|o| o.starts_with("context=")) {
                opts.push(format!("context=\"{label}\""));
            }
            m.set_options(Some(opts));
        }
    }
    spec.set_mounts(Some(mounts));
}

/// The attr files, opened by the init while the host's /proc is still
/// reachable (before pivot_root).
#[derive(Debug, Default)]
pub struct Prepared {
    files: Vec<(File, String, String, String)>,
}

/// Opens the files of `plan` (in the init, before entering the rootfs).
pub fn prepare(plan: &Plan) -> Result<Prepared, LsmError> {
    let mut out = Prepared::default();
    for (file, value, what) in &plan.writes {
        let path = format!("/proc/thread-self/attr/{file}");
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|source| LsmError::Open {
                path: path.clone(),
                what: what.clone(),
                source,
            })?;
        out.files.push((f, path, value.clone(), what.clone()));
    }
    Ok(out)
}

/// Writes the labels (in the init, right before execve).
pub fn apply(p: &mut Prepared) -> Result<(), LsmError> {
    for (f, path, value, what) in &mut p.files {
        f.write_all(value.as_bytes())
            .map_err(|source| LsmError::Apply {
                path: path.clone(),
                what: what.clone(),
                source,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0",
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "apparmorProfile": "vessel-default",
                        "selinuxLabel": "system_u:system_r:container_t:s0"},
            "root": {"path": "rootfs"},
            "mounts": [{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
                       {"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {"mountLabel": "system_u:object_r:container_file_t:s0"}
        }))
        .expect("spec")
    }

    #[test]
    fn without_the_modules_every_field_is_a_warning() {
        let mut s = spec();
        let mut warnings = Vec::new();
        let p = plan_for(&mut s, false, false, &mut |w| warnings.push(w));
        assert!(p.is_empty());
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("apparmorProfile") && warnings[0].contains("AppArmor"));
        assert!(warnings[2].contains("mountLabel"));
        // Mounts stay as they were.
        let m = s.mounts().clone().expect("mounts");
        assert_eq!(m[0].options().clone().expect("opts"), vec!["nosuid"]);
    }

    #[test]
    fn with_the_modules_labels_are_planned_and_mounts_get_a_context() {
        let mut s = spec();
        let mut warnings = Vec::new();
        let p = plan_for(&mut s, true, true, &mut |w| warnings.push(w));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(p.writes.len(), 2);
        assert_eq!(p.writes[0].1, "exec vessel-default");
        assert_eq!(p.writes[1].1, "system_u:system_r:container_t:s0");
        let m = s.mounts().clone().expect("mounts");
        assert!(
            m[0].options()
                .clone()
                .expect("opts")
                .contains(&"context=\"system_u:object_r:container_file_t:s0\"".to_string())
        );
        assert!(m[1].options().is_none());
    }
}
