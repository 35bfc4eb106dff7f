//! `vessel run --container`: OCI containers in the foreground on a busybox
//! rootfs built from Debian's busybox-static (no image downloads), driven
//! as a user would: the exit code, the output, a memory limit that kills,
//! a terminal, and bad input.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

const VESSEL: &str = env!("CARGO_BIN_EXE_vessel");

static SEQ: AtomicU32 = AtomicU32::new(0);

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (namespaces, cgroups, mounts)".into());
    }
    if !Path::new("/bin/busybox").exists() {
        return Some(
            "needs /bin/busybox (Debian package busybox-static, in scripts/packages.txt)".into(),
        );
    }
    None
}

macro_rules! require_host {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("SKIPPED {}: {why}", module_path!());
            return;
        }
    };
}

/// A temp dir with a busybox rootfs and a state root; removed on drop.
struct World {
    dir: PathBuf,
}

impl World {
    fn new(name: &str) -> World {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("vessel-runc-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rootfs = dir.join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("rootfs dir");
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
        for applet in [
            "sh", "cat", "echo", "hostname", "sleep", "true", "tty", "stty", "kill", "id",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .expect("applet link");
        }
        World { dir }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// `vessel run --container --container-root STATE ARGS` with stdin
    /// from /dev/null.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(VESSEL)
            .args(["run", "--container", "--container-root"])
            .arg(self.state())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run vessel")
    }

    /// Container ids left in the state directory.
    fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(self.state())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn rootfs_command_gets_hostname_memory_limit_and_its_exit_code() {
    require_host!();
    let w = World::new("basic");
    let rootfs = w.rootfs();
    let o = w.run(&[
        "--rootfs",
        rootfs.to_str().expect("utf-8"),
        "--memory",
        "64M",
        "--hostname",
        "box",
        "--name",
        "basic1",
        "--",
        "sh",
        "-c",
        "echo host=$(hostname) pid=$$ limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); exit 7",
    ]);
    let out = text(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(7),
        "stdout {out} stderr {}",
        text(&o.stderr)
    );
    assert!(out.contains("host=box"), "{out}");
    assert!(out.contains("pid=1"), "{out}");
    assert!(out.contains("limit=67108864"), "{out}");
    // The container and the generated bundle are gone.
    assert!(w.leftovers().is_empty(), "left {:?}", w.leftovers());
    assert!(!Path::new("/sys/fs/cgroup/memory/vessel/basic1").exists());
}

#[test]
fn bundle_runs_its_config_and_an_oom_kill_exits_137() {
    require_host!();
    let w = World::new("bundle");
    let bundle = w.dir.join("bundle");
    std::fs::create_dir_all(&bundle).expect("bundle dir");
    let missing = w.run(&["--bundle", "/nonexistent-bundle"]);
    assert_eq!(missing.status.code(), Some(1));
    let err = text(&missing.stderr);
    assert!(err.contains("/nonexistent-bundle"), "{err}");
    let config = serde_json::json!({
        "ociVersion": "1.2.0",
        "process": {
            "terminal": false, "user": {"uid": 0, "gid": 0},
            "args": ["sh", "-c", "echo in-bundle; a=xxxxxxxxxxxxxxxx; while true; do a=$a$a; done"],
            "env": ["PATH=/bin"], "cwd": "/"
        },
        "root": {"path": w.rootfs().to_str().expect("utf-8")},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {
            "resources": {"memory": {"limit": 16777216}},
            "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "ipc"}]
        }
    });
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec(&config).expect("json"),
    )
    .expect("config");
    let o = w.run(&["--bundle", bundle.to_str().expect("utf-8")]);
    assert_eq!(
        o.status.code(),
        Some(137),
        "stdout {} stderr {}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(text(&o.stdout).contains("in-bundle"));
    assert!(w.leftovers().is_empty(), "left {:?}", w.leftovers());
}

#[test]
fn bad_input_gives_one_clear_error_and_leaves_nothing() {
    require_host!();
    let w = World::new("bad");
    let o = w.run(&["--rootfs", "/nonexistent-rootfs", "--", "true"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("/nonexistent-rootfs"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(w.leftovers().is_empty(), "left {:?}", w.leftovers());

    let rootfs = w.rootfs();
    let o = w.run(&[
        "--rootfs",
        rootfs.to_str().expect("utf-8"),
        "--kernel",
        "/boot/vmlinuz",
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("--kernel is for machines"),
        "{}",
        text(&o.stderr)
    );

    let o = w.run(&[
        "--rootfs",
        rootfs.to_str().expect("utf-8"),
        "--",
        "/bin/nope",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("/bin/nope"), "{}", text(&o.stderr));
    assert!(w.leftovers().is_empty(), "left {:?}", w.leftovers());
}

/// Opens a pty pair: (master, slave).
fn openpty() -> (OwnedFd, OwnedFd) {
    let mut m = 0;
    let mut s = 0;
    // SAFETY: openpty writes two fds into the ints we pass; the name,
    // termios and winsize pointers may be NULL.
    let rc = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just opened for us.
    unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) }
}

#[test]
fn on_a_terminal_the_container_gets_a_pty_and_our_input() {
    require_host!();
    let w = World::new("tty");
    let (master, slave) = openpty();
    let ws = libc::winsize {
        ws_row: 33,
        ws_col: 99,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the winsize we pass.
    unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    let rootfs = w.rootfs();
    let mut child = Command::new(VESSEL)
        .args(["run", "--container", "--container-root"])
        .arg(w.state())
        .args([
            "--rootfs",
            rootfs.to_str().expect("utf-8"),
            "--",
            "sh",
            "-c",
            "[ -t 0 ] && echo is-a-tty; echo size=$(stty size); read line; echo got:$line; exit 3",
        ])
        .stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vessel");
    drop(slave);
    let mut m = std::fs::File::from(master);
    // The line is read once the container asks for it; the pty keeps it
    // until then.
    m.write_all(b"hello\n").expect("type a line");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once vessel and the container closed the slave.
        while let Ok(n) = m.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    });
    // A hung run must not hang the test suite: give up after two minutes.
    let mut status = None;
    for _ in 0..2400 {
        if let Some(s) = child.try_wait().expect("wait vessel") {
            status = Some(s);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vessel run --container on a terminal did not end");
        }
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let out = text(&reader.join().expect("reader"));
    assert_eq!(status.code(), Some(3), "output {out:?} stderr {err}");
    assert!(out.contains("is-a-tty"), "{out:?}");
    assert!(out.contains("size=33 99"), "{out:?}");
    assert!(out.contains("got:hello"), "{out:?}");
    assert!(w.leftovers().is_empty(), "left {:?}", w.leftovers());
}
