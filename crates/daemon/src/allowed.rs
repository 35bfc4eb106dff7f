//! Allowed directories: every host path a request names (a container's
//! bundle, its rootfs and bind-mount sources; a VM's firmware, kernel,
//! initrd and disks) must resolve, after `..` and symlinks, to a place
//! under one of the daemon's `--allow-dir`s (default: the state directory
//! and the image cache). Otherwise an API client could make the daemon,
//! which runs as root, read or write any file of the host.

use std::path::{Component, Path, PathBuf};

use serde_json::Value;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PathError {
    #[error("{what} {path:?} is not an absolute path: give the full path")]
    NotAbsolute { what: String, path: String },
    #[error("{what} {path:?}: {source}")]
    Unreadable {
        what: String,
        path: String,
        source: std::io::Error,
    },
    /// The message names the field, the path, what it resolves to, the
    /// allowed dirs and the `--allow-dir` flag.
    #[error("{0}")]
    Outside(String),
    #[error(
        "spec.args: image {0:?} is not an image name (names have no `/`); give files with --kernel/--firmware/--disk"
    )]
    ImageName(String),
    #[error("spec.bundle {0}: no config.json there; give the directory of an OCI bundle")]
    NoConfig(PathBuf),
    #[error("{0}: config.json is not valid JSON: {1}")]
    Config(PathBuf, String),
}

/// The directories requests may name, resolved once at startup.
#[derive(Debug, Clone)]
pub struct AllowedDirs {
    dirs: Vec<PathBuf>,
}

impl AllowedDirs {
    /// Each dir is resolved (symlinks, `..`) when it exists, else kept as
    /// given (the image cache may not exist yet).
    pub fn new(dirs: &[PathBuf]) -> AllowedDirs {
        let dirs = dirs
            .iter()
            .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| normalize(d)))
            .collect();
        AllowedDirs { dirs }
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The resolved form of `path`, if it lies under an allowed dir.
    /// `what` names the field for the error ("spec.bundle").
    pub fn check(&self, what: &str, path: &str) -> Result<PathBuf, PathError> {
        if !path.starts_with('/') {
            return Err(PathError::NotAbsolute {
                what: what.to_string(),
                path: path.to_string(),
            });
        }
        let resolved = match std::fs::canonicalize(path) {
            Ok(resolved) => resolved,
            // A path that cannot be resolved is "not found" only inside the
            // allowed dirs: outside them, its existence is not told.
            Err(source) if self.inside(&normalize(Path::new(path))) => {
                return Err(PathError::Unreadable {
                    what: what.to_string(),
                    path: path.to_string(),
                    source,
                });
            }
            Err(_) => normalize(Path::new(path)),
        };
        if self.inside(&resolved) {
            return Ok(resolved);
        }
        let resolved = if Path::new(path) == resolved {
            String::new()
        } else {
            format!(" (which resolves to {})", resolved.display())
        };
        let allowed = self
            .dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Err(PathError::Outside(format!(
            "{what} {path:?}{resolved} is outside the directories this daemon may use \
             ({allowed}): move it under one of them, or start the daemon with `--allow-dir DIR`"
        )))
    }

    fn inside(&self, path: &Path) -> bool {
        self.dirs.iter().any(|d| path.starts_with(d))
    }

    /// Like `check`, for paths the runtime resolves itself: one that does
    /// not exist (yet) is left for the runtime to report.
    fn check_if_present(&self, what: &str, path: &str) -> Result<(), PathError> {
        match self.check(what, path) {
            Ok(_) | Err(PathError::Unreadable { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Check the file arguments of `vessel run` and return the arguments
    /// with those paths replaced by their resolved form (so that a symlink
    /// changed after the check does not redirect the VM).
    pub fn check_vm_args(&self, args: &[String]) -> Result<Vec<String>, PathError> {
        let mut out = Vec::with_capacity(args.len());
        let mut pending: Option<&str> = None;
        let mut positional_done = false;
        for (index, arg) in args.iter().enumerate() {
            if let Some(flag) = pending.take() {
                out.push(self.vm_value(flag, index, arg)?);
                continue;
            }
            if let Some(flag) = FILE_FLAGS.iter().find(|f| **f == arg) {
                pending = Some(flag);
                out.push(arg.clone());
                continue;
            }
            if let Some((flag, value)) = arg.split_once('=')
                && let Some(flag) = FILE_FLAGS.iter().find(|f| **f == flag)
            {
                out.push(format!("{flag}={}", self.vm_value(flag, index, value)?));
                continue;
            }
            if !arg.starts_with('-') && !positional_done && !takes_value(out.last()) {
                // `vessel run IMAGE`: a name in the image cache.
                positional_done = true;
                if arg.contains('/') {
                    return Err(PathError::ImageName(arg.clone()));
                }
            }
            out.push(arg.clone());
        }
        Ok(out)
    }

    fn vm_value(&self, flag: &str, index: usize, value: &str) -> Result<String, PathError> {
        let what = format!("spec.args[{index}] ({flag})");
        if flag == "--disk" {
            // PATH[,ro][,format=...][,serial=...]
            let (path, opts) = match value.split_once(',') {
                Some((p, o)) => (p, Some(o)),
                None => (value, None),
            };
            let resolved = self.check(&what, path)?;
            let mut v = resolved.to_string_lossy().into_owned();
            if let Some(opts) = opts {
                v.push(',');
                v.push_str(opts);
            }
            return Ok(v);
        }
        Ok(self.check(&what, value)?.to_string_lossy().into_owned())
    }

    /// Check a container bundle: the bundle itself, `root.path` and the
    /// sources of bind mounts in its config.json. Returns the resolved
    /// bundle and the parsed config.
    pub fn check_bundle(&self, bundle: &str) -> Result<(PathBuf, Value), PathError> {
        let dir = self.check("spec.bundle", bundle)?;
        let config_path = dir.join("config.json");
        let text = std::fs::read(&config_path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => PathError::NoConfig(dir.clone()),
            _ => PathError::Unreadable {
                what: "spec.bundle".into(),
                path: config_path.display().to_string(),
                source,
            },
        })?;
        let config: Value = serde_json::from_slice(&text)
            .map_err(|e| PathError::Config(config_path.clone(), e.to_string()))?;
        let rootfs = config["root"]["path"].as_str().unwrap_or("rootfs");
        let rootfs = dir.join(rootfs);
        self.check_if_present("the bundle's root.path", &rootfs.to_string_lossy())?;
        if let Some(mounts) = config["mounts"].as_array() {
            for (i, m) in mounts.iter().enumerate() {
                let is_bind = m["type"].as_str() == Some("bind")
                    || m["options"].as_array().is_some_and(|o| {
                        o.iter()
                            .any(|x| matches!(x.as_str(), Some("bind") | Some("rbind")))
                    });
                if let (true, Some(source)) = (is_bind, m["source"].as_str()) {
                    let source = dir.join(source);
                    self.check_if_present(
                        &format!("the bundle's mounts[{i}].source"),
                        &source.to_string_lossy(),
                    )?;
                }
            }
        }
        Ok((dir, config))
    }
}

/// `vessel run` flags whose value is a host file.
const FILE_FLAGS: [&str; 4] = ["--firmware", "--kernel", "--initrd", "--disk"];

/// `vessel run` flags that take a separate value (so the next argument is
/// not the image name).
fn takes_value(prev: Option<&String>) -> bool {
    prev.is_some_and(|p| {
        matches!(
            p.as_str(),
            "--arch" | "--engine" | "--append" | "--memory" | "--cpus" | "--net" | "--console"
        )
    })
}

/// `..` and `.` removed lexically (for a dir that does not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(a: &[&str]) -> Vec<String> {
        a.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn paths_must_resolve_inside() {
        let root = tempfile::tempdir().unwrap();
        let allowed = root.path().join("allowed");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(allowed.join("b")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(allowed.join("fw.elf"), b"x").unwrap();
        std::fs::write(outside.join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), allowed.join("link")).unwrap();
        let dirs = AllowedDirs::new(std::slice::from_ref(&allowed));
        let a = |p: &Path| p.to_string_lossy().into_owned();

        assert!(dirs.check("f", &a(&allowed.join("fw.elf"))).is_ok());
        let dotdot = format!("{}/b/../../outside/secret", allowed.display());
        let err = dirs.check("spec.x", &dotdot).unwrap_err().to_string();
        assert!(
            err.contains("outside the directories") && err.contains("--allow-dir"),
            "{err}"
        );
        assert!(
            err.contains(&dotdot) && err.contains("resolves to"),
            "{err}"
        );
        let err = dirs
            .check("spec.x", &a(&allowed.join("link")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("resolves to") && err.contains("outside/secret"),
            "{err}"
        );
        assert!(matches!(
            dirs.check("f", "rel/x"),
            Err(PathError::NotAbsolute { .. })
        ));
        assert!(matches!(
            dirs.check("f", &a(&allowed.join("missing"))),
            Err(PathError::Unreadable { .. })
        ));

        let fw = a(&allowed.join("b/../fw.elf"));
        let out = dirs
            .check_vm_args(&s(&[
                "--memory",
                "16M",
                "--firmware",
                &fw,
                &format!("--disk={fw},ro"),
            ]))
            .unwrap();
        assert_eq!(
            out[3],
            a(&std::fs::canonicalize(allowed.join("fw.elf")).unwrap())
        );
        assert!(
            out[4].ends_with("/fw.elf,ro") && out[4].starts_with("--disk=/"),
            "{out:?}"
        );
        let secret = a(&outside.join("secret"));
        for bad in [
            s(&["--kernel", &secret]),
            s(&[&format!("--initrd={secret}")]),
            s(&["--disk", &format!("{secret},ro")]),
        ] {
            let err = dirs.check_vm_args(&bad).unwrap_err().to_string();
            assert!(
                err.contains("spec.args[") && err.contains("--allow-dir"),
                "{err}"
            );
        }
        assert!(
            dirs.check_vm_args(&s(&["debian-riscv64", "--memory", "1G"]))
                .is_ok()
        );
        assert!(matches!(
            dirs.check_vm_args(&s(&["../../etc"])),
            Err(PathError::ImageName(_))
        ));
    }

    #[test]
    fn bundle_rootfs_and_bind_sources_are_checked() {
        let root = tempfile::tempdir().unwrap();
        let allowed = root.path().join("allowed");
        let b = allowed.join("bundle");
        std::fs::create_dir_all(b.join("rootfs")).unwrap();
        let dirs = AllowedDirs::new(std::slice::from_ref(&allowed));
        let write = |config: serde_json::Value| {
            std::fs::write(b.join("config.json"), config.to_string()).unwrap();
        };
        write(serde_json::json!({"root": {"path": "rootfs"}}));
        assert!(dirs.check_bundle(&b.to_string_lossy()).is_ok());
        write(serde_json::json!({"root": {"path": "/"}}));
        let err = dirs
            .check_bundle(&b.to_string_lossy())
            .unwrap_err()
            .to_string();
        assert!(err.contains("root.path"), "{err}");
        write(serde_json::json!({"root": {"path": "rootfs"},
            "mounts": [{"destination": "/h", "type": "none", "source": "/etc", "options": ["rbind"]}]}));
        let err = dirs
            .check_bundle(&b.to_string_lossy())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mounts[0].source") && err.contains("\"/etc\""),
            "{err}"
        );
        write(serde_json::json!({"root": {"path": "rootfs"},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}]}));
        assert!(dirs.check_bundle(&b.to_string_lossy()).is_ok());
        std::fs::write(b.join("config.json"), "{").unwrap();
        assert!(matches!(
            dirs.check_bundle(&b.to_string_lossy()),
            Err(PathError::Config(..))
        ));
    }
}
