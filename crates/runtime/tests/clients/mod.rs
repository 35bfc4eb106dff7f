//! Helpers for the tests that drive vessel-runtime through real container
//! engines (containerd's `ctr`, Podman): a busybox rootfs tarball, and the
//! cleanup a failed test must still do (kill the engine's helper processes,
//! unmount what it left mounted in the temp dir).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Whether `prog` is on PATH.
pub fn have(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

/// A fresh temp dir for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vessel-{name}-{}", std::process::id()));
    unmount_under(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Writes a tar of `rootfs` (symlinks kept as links) to `out`.
pub fn tar_dir(rootfs: &Path, out: &Path) {
    let f = std::fs::File::create(out).expect("create tar");
    let mut b = tar::Builder::new(f);
    b.follow_symlinks(false);
    b.append_dir_all(".", rootfs).expect("tar rootfs");
    b.into_inner().expect("finish tar");
}

/// Runs a command with output in files (see common::run_to_files) and
/// returns it; `what` names it in the panic if it cannot start.
pub fn run(dir: &Path, cmd: &mut Command) -> Output {
    super::common::run_to_files(dir, cmd)
}

/// Text of an output, for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Unescapes a mountinfo path (`\040` for a space and so on).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Detaches every mount at or below `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    for _ in 0..3 {
        let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        let mut points: Vec<String> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(unescape))
            .filter(|p| Path::new(p).starts_with(dir))
            .collect();
        if points.is_empty() {
            return;
        }
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// SIGKILLs every process (but this one) whose command line contains
/// `needle`: engine helpers such as containerd's shims or conmon that
/// outlive their engine when a test fails.
pub fn kill_matching(needle: &str) {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmd).contains(needle) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Removes the (empty) cgroup `rel` and its child cgroups from every
/// hierarchy under /sys/fs/cgroup: the parent cgroups that engines create
/// and keep (Podman's also holds a `conmon` child).
pub fn remove_cgroup(rel: &str) {
    fn rmdir_tree(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rmdir_tree(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    if rel.trim_matches('/').is_empty() || rel.contains("..") {
        return;
    }
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    rmdir_tree(&Path::new("/sys/fs/cgroup").join(rel));
    for e in entries.flatten() {
        let p = e.path().join(rel);
        if p.is_dir() {
            rmdir_tree(&p);
        }
    }
}

/// Whether this process may raise hard rlimits (some sandboxes drop
/// CAP_SYS_RESOURCE even for root; then no runtime can).
pub fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

#[test]
fn mountinfo_paths_are_unescaped() {
    assert_eq!(unescape("/tmp/a\\040b"), "/tmp/a b");
    assert_eq!(unescape("/plain"), "/plain");
}
