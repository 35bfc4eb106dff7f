//! Shared by the container tests: the built binaries, a busybox OCI bundle
//! (from Debian's busybox-static, as crates/runtime/tests do) and a daemon
//! whose containers run under this build's `vessel` (their monitor) and
//! `vessel-runtime` (exec).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use vessel_daemon::Config;

pub use crate::common::vessel_binary;
use crate::common::{TestDaemon, built};

/// vessel-runtime, when this host can run containers (root, busybox).
pub fn runtime_binary() -> Option<PathBuf> {
    if !nix_is_root() {
        eprintln!("SKIP: containers need root (namespaces, cgroups, mounts)");
        return None;
    }
    if !Path::new("/bin/busybox").exists() {
        eprintln!(
            "SKIP: needs /bin/busybox (Debian package busybox-static, in scripts/packages.txt)"
        );
        return None;
    }
    // Containers run under `vessel run --container` (their monitor).
    vessel_binary()?;
    built("vessel-runtime")
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// A daemon in a temp dir whose containers run under `runtime`; files in
/// the temp dir are allowed in requests.
pub async fn daemon(runtime: &Path, tweak: impl FnOnce(&mut Config)) -> TestDaemon {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("vessel.sock"), dir.path().join("state"));
    config.allow_dirs.push(dir.path().to_path_buf());
    config.runtime_program = runtime.to_path_buf();
    if let Some(vessel) = vessel_binary() {
        config.vmm_program = vessel;
    }
    tweak(&mut config);
    TestDaemon::with_config(dir, config).await
}

/// A bundle dir `dir/name` with a busybox rootfs and `config` as config.json.
pub fn bundle(dir: &Path, name: &str, config: &Value) -> PathBuf {
    let b = dir.join(name);
    let rootfs = b.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "sleep", "echo", "cat", "hostname", "pwd", "true", "false", "ls",
    ] {
        let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(
        b.join("config.json"),
        serde_json::to_vec_pretty(config).unwrap(),
    )
    .unwrap();
    b
}

/// A runc-style config.json running `args` in a busybox rootfs.
pub fn config(args: &[&str]) -> Value {
    json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "vessel",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
        }
    })
}
