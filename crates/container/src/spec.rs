//! Loading and checking a bundle's config.json.
//!
//! Every error names the file, the JSON field and the reason, so that a user
//! can fix the bundle; loading and checking happen before anything is
//! created on the host.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxNamespaceType;
pub use oci_spec::runtime::{LinuxResources, Spec};

/// Errors in a bundle's config.json.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {file}: {source}; the bundle directory must contain config.json")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: field `{field}`: {reason}")]
    Field {
        file: PathBuf,
        field: String,
        reason: String,
    },
}

fn field_err(file: &Path, field: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError::Field {
        file: file.to_owned(),
        field: field.into(),
        reason: reason.into(),
    }
}

/// Reads `<bundle>/config.json` and checks it (see [`validate`]).
pub fn load(bundle: &Path) -> Result<Spec, SpecError> {
    let file = bundle.join("config.json");
    let text = std::fs::read(&file).map_err(|source| SpecError::Read {
        file: file.clone(),
        source,
    })?;
    let spec = parse(&file, &text)?;
    validate(&file, bundle, &spec)?;
    Ok(spec)
}

/// Parses config.json text; a type error names the JSON path of the field.
pub fn parse(file: &Path, text: &[u8]) -> Result<Spec, SpecError> {
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." {
            "(document)".to_string()
        } else {
            path
        };
        field_err(
            file,
            field,
            format!(
                "{inner} (at line {}, column {})",
                inner.line(),
                inner.column()
            ),
        )
    })
}

/// A default config.json (`spec`): busybox-friendly, runc-like.
pub fn default_spec(rootless: bool) -> Spec {
    if rootless {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        Spec::rootless(uid, gid)
    } else {
        Spec::default()
    }
}

/// The rootfs directory of a bundle (root.path, relative to the bundle).
pub fn rootfs(bundle: &Path, spec: &Spec) -> PathBuf {
    let p = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    if p.is_absolute() { p } else { bundle.join(p) }
}

/// Checks what the runtime needs before it creates anything.
pub fn validate(file: &Path, bundle: &Path, spec: &Spec) -> Result<(), SpecError> {
    let major = spec.version().split('.').next().unwrap_or("");
    if major != "1" {
        return Err(field_err(
            file,
            "ociVersion",
            format!("{:?} is not a 1.x runtime-spec version", spec.version()),
        ));
    }
    if spec.root().is_none() {
        return Err(field_err(
            file,
            "root",
            "is missing; set root.path to the rootfs directory",
        ));
    }
    let rootfs = rootfs(bundle, spec);
    if !rootfs.is_dir() {
        return Err(field_err(
            file,
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }
    let process = spec.process().as_ref().ok_or_else(|| {
        field_err(
            file,
            "process",
            "is missing; a container needs a process to run",
        )
    })?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(field_err(
            file,
            "process.args",
            "is empty; give the program to run",
        ));
    }
    if !process.cwd().is_absolute() {
        return Err(field_err(
            file,
            "process.cwd",
            format!("{} is not an absolute path", process.cwd().display()),
        ));
    }
    for (i, e) in process.env().iter().flatten().enumerate() {
        if !e.contains('=') {
            return Err(field_err(
                file,
                format!("process.env[{i}]"),
                format!("{e:?} is not NAME=VALUE"),
            ));
        }
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if !m.destination().is_absolute() {
            return Err(field_err(
                file,
                format!("mounts[{i}].destination"),
                format!("{} is not an absolute path", m.destination().display()),
            ));
        }
    }
    let Some(linux) = spec.linux() else {
        return Err(field_err(
            file,
            "linux",
            "is missing; vessel runs Linux containers",
        ));
    };
    let mut seen = HashSet::new();
    let mut has_mount_ns = false;
    let mut new_user = false;
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        if !seen.insert(ns.typ()) {
            return Err(field_err(
                file,
                format!("linux.namespaces[{i}].type"),
                format!(
                    "{} appears twice",
                    vessel_sandbox::namespaces::proc_name(ns.typ())
                ),
            ));
        }
        if ns.typ() == LinuxNamespaceType::Mount {
            has_mount_ns = true;
        }
        if let Some(p) = ns.path() {
            if !p.exists() {
                return Err(field_err(
                    file,
                    format!("linux.namespaces[{i}].path"),
                    format!("{} does not exist", p.display()),
                ));
            }
        } else if ns.typ() == LinuxNamespaceType::User {
            new_user = true;
        }
    }
    if !has_mount_ns {
        return Err(field_err(
            file,
            "linux.namespaces",
            "has no mount namespace; vessel needs one to set up the rootfs without touching the host",
        ));
    }
    if new_user
        && (linux.uid_mappings().as_ref().is_none_or(|m| m.is_empty())
            || linux.gid_mappings().as_ref().is_none_or(|m| m.is_empty()))
    {
        return Err(field_err(
            file,
            "linux.uidMappings",
            "a new user namespace needs both linux.uidMappings and linux.gidMappings",
        ));
    }
    if let Some(prop) = linux.rootfs_propagation()
        && !prop.is_empty()
        && crate::rootfs::propagation_flags(prop).is_none()
    {
        return Err(field_err(
            file,
            "linux.rootfsPropagation",
            format!(
                "{prop:?} is not one of shared, slave, private, unbindable (optionally prefixed with r)"
            ),
        ));
    }
    if let Some(hooks) = spec.hooks() {
        let lists = [
            ("prestart", hooks.prestart()),
            ("createRuntime", hooks.create_runtime()),
            ("createContainer", hooks.create_container()),
            ("startContainer", hooks.start_container()),
            ("poststart", hooks.poststart()),
            ("poststop", hooks.poststop()),
        ];
        for (name, list) in lists {
            for (i, h) in list.iter().flatten().enumerate() {
                if !h.path().is_absolute() {
                    return Err(field_err(
                        file,
                        format!("hooks.{name}[{i}].path"),
                        format!("{} is not an absolute path", h.path().display()),
                    ));
                }
                if h.timeout().is_some_and(|t| t <= 0) {
                    return Err(field_err(
                        file,
                        format!("hooks.{name}[{i}].timeout"),
                        "must be positive",
                    ));
                }
            }
        }
    }
    if let Some(seccomp) = linux.seccomp() {
        vessel_sandbox::seccomp::build(seccomp)
            .map_err(|e| field_err(file, "linux.seccomp", e.to_string()))?;
    }
    if let Some(caps) = process.capabilities() {
        let sets = [
            ("bounding", caps.bounding()),
            ("effective", caps.effective()),
            ("permitted", caps.permitted()),
            ("inheritable", caps.inheritable()),
            ("ambient", caps.ambient()),
        ];
        for (name, set) in sets {
            if let Some(set) = set {
                let names: Vec<String> = set.iter().map(|c| format!("CAP_{c}")).collect();
                vessel_sandbox::capabilities::parse_set(name, names.iter().map(String::as_str))
                    .map_err(|e| {
                        field_err(file, format!("process.capabilities.{name}"), e.to_string())
                    })?;
            }
        }
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        for o in m.options().iter().flatten() {
            if crate::rootfs::parse_option(o).is_none() {
                return Err(field_err(
                    file,
                    format!("mounts[{i}].options"),
                    format!("{o:?} is not a known mount option"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_error_names_the_field_path() {
        let text = br#"{"ociVersion":"1.0.2","process":{"cwd":"/","args":["sh"],"user":{"uid":"zero","gid":0}}}"#;
        let err = parse(Path::new("/b/config.json"), text).expect_err("uid is a string");
        let msg = err.to_string();
        assert!(msg.contains("/b/config.json"), "{msg}");
        assert!(msg.contains("process.user.uid"), "{msg}");
    }

    #[test]
    fn syntax_error_names_the_file_and_position() {
        let err = parse(Path::new("/b/config.json"), b"{\"ociVersion\": ").expect_err("truncated");
        let msg = err.to_string();
        assert!(
            msg.contains("/b/config.json") && msg.contains("line 1"),
            "{msg}"
        );
    }
}
