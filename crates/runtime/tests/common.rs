//! Helpers for the end-to-end tests: a busybox bundle built from Debian's
//! busybox-static, a private --root, and a guard that force-deletes every
//! container (processes, cgroups) even when a test fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_vessel-runtime");

/// Returns why the host cannot run these tests, if it cannot.
pub fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (namespaces, cgroups, mounts)".into());
    }
    if !Path::new("/bin/busybox").exists() {
        return Some(
            "needs /bin/busybox (Debian package busybox-static, in scripts/packages.txt)".into(),
        );
    }
    None
}

/// Skips the test loudly when the host lacks what it needs.
#[macro_export]
macro_rules! require_host {
    () => {
        if let Some(why) = common::skip_reason() {
            eprintln!("SKIPPED {}: {why}", module_path!());
            return;
        }
    };
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A test's world: a temp dir with a --root and bundles; cleans up on drop.
pub struct World {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub ids: std::cell::RefCell<Vec<String>>,
}

impl World {
    pub fn new(name: &str) -> World {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("vessel-rt-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let root = dir.join("state");
        World {
            dir,
            root,
            ids: Default::default(),
        }
    }

    /// A unique container id (registered for cleanup).
    pub fn id(&self, name: &str) -> String {
        let id = format!(
            "{name}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        self.ids.borrow_mut().push(id.clone());
        id
    }

    /// Builds a bundle with a busybox rootfs and `config` as config.json.
    pub fn bundle(&self, name: &str, config: &Value) -> PathBuf {
        let b = self.dir.join(name);
        busybox_rootfs(&b.join("rootfs"));
        std::fs::write(
            b.join("config.json"),
            serde_json::to_vec_pretty(config).expect("json"),
        )
        .expect("config");
        b
    }

    /// Runs vessel-runtime. Its stdio goes to files, not pipes: a created
    /// container's process inherits them and would hold a pipe open.
    pub fn rt(&self, args: &[&str]) -> Output {
        run_to_files(
            &self.dir,
            Command::new(BIN).arg("--root").arg(&self.root).args(args),
        )
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.rt(args);
        assert!(
            o.status.success(),
            "vessel-runtime {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state json")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let _ = Command::new(BIN)
                .arg("--root")
                .arg(&self.root)
                .args(["delete", "--force", id])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Fills `rootfs` with Debian's static busybox and its applet links.
pub fn busybox_rootfs(rootfs: &Path) {
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("rootfs dir");
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
    for applet in [
        "sh", "ls", "cat", "echo", "hostname", "id", "sleep", "true", "false", "ps", "mount",
        "touch", "mkdir", "dd", "grep", "head", "ulimit", "umask", "pwd", "env", "stat", "wc",
        "kill",
    ] {
        let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
}

/// A runc-style config for a busybox rootfs running `args`.
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
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "vessel",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// The host cgroup v1 memory directory of a container cgroup path.
pub fn memory_cgroup(path: &str) -> PathBuf {
    PathBuf::from("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'))
}

/// Runs `cmd` with stdout/stderr in files under `dir` and returns them.
pub fn run_to_files(dir: &Path, cmd: &mut Command) -> Output {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let out = dir.join(format!(".out{n}"));
    let err = dir.join(format!(".err{n}"));
    let status = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .status()
        .expect("run command");
    let o = Output {
        status,
        stdout: std::fs::read(&out).unwrap_or_default(),
        stderr: std::fs::read(&err).unwrap_or_default(),
    };
    let _ = std::fs::remove_file(out);
    let _ = std::fs::remove_file(err);
    o
}
