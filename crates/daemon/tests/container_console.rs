//! Containers under their monitor (`vessel run --container
//! --control-socket`), end to end with a real busybox container:
//! - `vessel console` into its terminal: a typed command runs and its
//!   output comes back; a second reader sees the same; Ctrl-A d detaches
//!   and the container goes on; `vessel logs` has the output;
//! - pause freezes the container's cgroup (the freezer says FROZEN) and a
//!   command typed meanwhile only runs after resume;
//! - a container OOM-killed by its memory limit ends with 137 and says so;
//! - the daemon killed with SIGKILL while a container runs, then started
//!   again: the container still runs with the same pid, its console works.

mod busybox;
mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::wait_for;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vessel_api::{Client, CreateInstance, ExitReason, InstanceState};

fn create(name: &str, bundle: &Path) -> CreateInstance {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "spec": {"kind": "container", "bundle": bundle.to_string_lossy()}
    }))
    .unwrap()
}

/// An interactive busybox shell on a terminal, prompt `box# `.
fn shell_config() -> Value {
    let mut config = busybox::config(&["sh"]);
    config["process"]["terminal"] = Value::Bool(true);
    config["process"]["env"] = serde_json::json!(["PATH=/bin", "TERM=xterm", "PS1=box# "]);
    config
}

/// The container's process: the child of its monitor (the instance's pid).
fn container_process(monitor: i32) -> i32 {
    for task in std::fs::read_dir(format!("/proc/{monitor}/task")).unwrap() {
        let children =
            std::fs::read_to_string(task.unwrap().path().join("children")).unwrap_or_default();
        if let Some(pid) = children.split_whitespace().find_map(|p| p.parse().ok()) {
            return pid;
        }
    }
    panic!("monitor {monitor} has no child");
}

/// The freezer state of `pid`'s cgroup (v1 `freezer.state`, or v2
/// `cgroup.freeze` as FROZEN/THAWED).
fn freezer_state(pid: i32) -> String {
    let groups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in groups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        if controllers.split(',').any(|c| c == "freezer") {
            let file = Path::new("/sys/fs/cgroup/freezer")
                .join(path.trim_start_matches('/'))
                .join("freezer.state");
            return std::fs::read_to_string(file).unwrap().trim().to_string();
        }
    }
    let v2 = groups.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    let freeze = Path::new("/sys/fs/cgroup")
        .join(v2.trim_start_matches('/'))
        .join("cgroup.freeze");
    match std::fs::read_to_string(freeze).unwrap().trim() {
        "1" => "FROZEN".into(),
        _ => "THAWED".into(),
    }
}

/// `vessel console NAME` with its stdin, stdout and stderr as pipes.
struct CliConsole {
    child: Child,
    output: std::sync::mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
    /// Everything it printed on stderr so far.
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl CliConsole {
    fn start(vessel: &Path, socket: &Path, name: &str) -> CliConsole {
        let mut child = Command::new(vessel)
            .env("VESSEL_SOCKET", socket)
            .args(["console", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        CliConsole {
            child,
            output: rx,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Wait (up to 2 minutes) until it has printed `needle` on stderr.
    async fn stderr_until(&self, needle: &str) {
        for _ in 0..2400 {
            if self.stderr.lock().unwrap().contains(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "vessel console never printed {needle:?}; stderr: {}",
            self.stderr.lock().unwrap()
        );
    }

    fn type_in(&mut self, text: &[u8]) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(text).unwrap();
        stdin.flush().unwrap();
    }

    fn read_until(&mut self, needle: &str) {
        while !String::from_utf8_lossy(&self.seen).contains(needle) {
            match self.output.recv_timeout(Duration::from_secs(120)) {
                Ok(bytes) => self.seen.extend_from_slice(&bytes),
                Err(e) => panic!(
                    "vessel console: no {needle:?} ({e}); got {:?}",
                    String::from_utf8_lossy(&self.seen)
                ),
            }
        }
    }
}

impl Drop for CliConsole {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_readers_detach_logs_and_pause() {
    let Some(runtime) = busybox::runtime_binary() else {
        return;
    };
    let vessel = busybox::vessel_binary().unwrap();
    let mut d = busybox::daemon(&runtime, |_| {}).await;
    let socket = d.daemon.as_ref().unwrap().socket().to_path_buf();
    let c = &d.client;
    let bundle = busybox::bundle(d.dir.path(), "box", &shell_config());
    c.create(&create("box", &bundle)).await.unwrap();
    let running = c.start("box").await.unwrap();
    assert_eq!(running.state, InstanceState::Running);
    let monitor = running.pid.unwrap();

    // A read-only watcher, then `vessel console` as a user runs it.
    let mut watcher = c.console("box", false, 0).await.unwrap();
    let mut cli = CliConsole::start(&vessel, &socket, "box");
    // Once the CLI says it is attached it holds the writer slot: a second
    // writer is refused. (Probing for that by attaching could take the
    // slot just when the CLI asks for it, and the CLI would be refused.)
    cli.stderr_until("attached to box's console").await;
    let err = c.console("box", true, 0).await.unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    // Typed input runs in the container; the answer (not the echo of the
    // typed line) reaches both readers.
    cli.type_in(b"echo hel''lo-$((6*7)) from $(hostname)\n");
    cli.read_until("hello-42 from vessel");
    common::read_console_until(&mut watcher, "hello-42 from vessel", str::to_string).await;

    // Ctrl-A d: the CLI detaches and exits 0, the container goes on.
    cli.type_in(b"\x01d");
    let status = cli.child.wait().unwrap();
    assert!(status.success(), "{status}");
    cli.stderr_until("detached from box").await;
    let after = c.get("box").await.unwrap();
    assert_eq!(
        (after.state, after.pid),
        (InstanceState::Running, Some(monitor))
    );
    // The writer slot is free again.
    let mut console = c.console("box", true, 0).await.unwrap();
    console.write_all(b"echo again-$((1+2))\n").await.unwrap();
    common::read_console_until(&mut console, "again-3", str::to_string).await;
    common::read_console_until(&mut watcher, "again-3", str::to_string).await;

    // `vessel logs` has what the console showed.
    let logs = Command::new(&vessel)
        .env("VESSEL_SOCKET", &socket)
        .args(["logs", "box"])
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.contains("hello-42 from vessel") && logs.contains("again-3"),
        "{logs}"
    );

    // Pause freezes the cgroup; a command typed meanwhile runs on resume.
    let process = container_process(monitor);
    assert_eq!(freezer_state(process), "THAWED");
    let paused = c.pause("box").await.unwrap();
    assert_eq!(paused.state, InstanceState::Paused);
    assert_eq!(freezer_state(process), "FROZEN");
    console.write_all(b"echo thawed-$((2+2))\n").await.unwrap();
    assert_eq!(freezer_state(process), "FROZEN");
    let resumed = c.resume("box").await.unwrap();
    assert_eq!(resumed.state, InstanceState::Running);
    assert_eq!(freezer_state(process), "THAWED");
    common::read_console_until(&mut console, "thawed-4", str::to_string).await;

    // exec still enters the container.
    let r = c
        .exec(
            "box",
            &vessel_api::ExecRequest {
                args: vec!["hostname".into()],
                env: vec![],
                cwd: None,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!((r.exit_code, r.stdout.as_str()), (0, "vessel\n"));

    // The shell exits by itself: its code is recorded, the consoles close.
    console.write_all(b"exit 4\n").await.unwrap();
    let done = wait_for(c, "box", "stopped", |i| i.state == InstanceState::Stopped).await;
    let exit = done.exit.unwrap();
    assert_eq!(
        (exit.reason, exit.code),
        (ExitReason::Exited, Some(4)),
        "{exit:?}"
    );
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(120), watcher.read_to_end(&mut rest)).await;
    c.delete("box", false).await.unwrap();
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_killed_container_says_so() {
    let Some(runtime) = busybox::runtime_binary() else {
        return;
    };
    let mut d = busybox::daemon(&runtime, |_| {}).await;
    let c = &d.client;
    // `tail` keeps the one endless line of /dev/zero in memory.
    let mut config = busybox::config(&["sh", "-c", "echo filling; tail /dev/zero"]);
    config["linux"]["resources"]["memory"] = serde_json::json!({"limit": 32 << 20});
    let bundle = busybox::bundle(d.dir.path(), "hog", &config);
    std::os::unix::fs::symlink("busybox", bundle.join("rootfs/bin/tail")).unwrap();
    c.create(&create("hog", &bundle)).await.unwrap();
    c.start("hog").await.unwrap();
    let done = wait_for(c, "hog", "stopped", |i| i.state == InstanceState::Stopped).await;
    let exit = done.exit.unwrap();
    assert_eq!(
        (exit.reason, exit.code),
        (ExitReason::Oom, Some(137)),
        "{exit:?}"
    );
    assert!(
        exit.message
            .as_deref()
            .unwrap_or("")
            .contains("out of memory"),
        "{exit:?}"
    );
    c.delete("hog", false).await.unwrap();
    d.stop().await;
}

/// `vessel daemon` as a process of its own, so that it can be SIGKILLed.
struct DaemonProcess(Child);

impl DaemonProcess {
    #[allow(clippy::zombie_processes)]
    async fn start(vessel: &Path, dir: &Path) -> DaemonProcess {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("daemon.log"))
            .unwrap();
        let child = Command::new(vessel)
            .arg("daemon")
            .arg("--socket")
            .arg(dir.join("vessel.sock"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--allow-dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting vessel daemon");
        let client = Client::new(dir.join("vessel.sock"));
        for _ in 0..1200 {
            if client.list().await.is_ok() {
                return DaemonProcess(child);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("vessel daemon never answered");
    }

    fn sigkill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kills what is left (the monitor is not our child once its daemon is
/// gone) when the test ends, pass or fail.
struct Leftover(Vec<i32>);

impl Drop for Leftover {
    fn drop(&mut self) {
        for &pid in &self.0 {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_survives_a_sigkilled_daemon_with_its_console() {
    let Some(_runtime) = busybox::runtime_binary() else {
        return;
    };
    let vessel = busybox::vessel_binary().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle = busybox::bundle(dir.path(), "box", &shell_config());
    let daemon = DaemonProcess::start(&vessel, dir.path()).await;
    let c = Client::new(dir.path().join("vessel.sock"));
    c.create(&create("box", &bundle)).await.unwrap();
    let monitor = c.start("box").await.unwrap().pid.unwrap();
    let mut leftover = Leftover(vec![monitor]);
    let process = container_process(monitor);
    leftover.0.push(process);
    let mut console = c.console("box", true, 0).await.unwrap();
    console.write_all(b"echo before-$((3*3))\n").await.unwrap();
    common::read_console_until(&mut console, "before-9", str::to_string).await;
    drop(console);

    daemon.sigkill();
    // While no daemon runs, the container goes on.
    let state = PathBuf::from(format!("/proc/{process}/stat"));
    assert!(state.exists(), "the container ended with its daemon");
    let daemon = DaemonProcess::start(&vessel, dir.path()).await;
    let back = c.get("box").await.unwrap();
    assert_eq!(
        (back.state, back.pid),
        (InstanceState::Running, Some(monitor)),
        "{back:?}"
    );
    assert_eq!(container_process(monitor), process);
    // Its console works: history, then live input and output.
    let mut console = c.console("box", true, 4096).await.unwrap();
    common::read_console_until(&mut console, "before-9", str::to_string).await;
    console.write_all(b"echo after-$((4*4))\n").await.unwrap();
    common::read_console_until(&mut console, "after-16", str::to_string).await;
    // Pause and resume go through the reattached control socket.
    assert_eq!(c.pause("box").await.unwrap().state, InstanceState::Paused);
    assert_eq!(freezer_state(process), "FROZEN");
    assert_eq!(c.resume("box").await.unwrap().state, InstanceState::Running);
    // A stop ends it (the shell ignores SIGTERM: the stop timeout kills it).
    let stopped = c.stop("box", Some(2)).await.unwrap();
    assert_eq!(stopped.state, InstanceState::Stopped);
    assert_eq!(stopped.exit.unwrap().reason, ExitReason::Stopped);
    for _ in 0..2400 {
        if !Path::new(&format!("/proc/{monitor}")).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.delete("box", false).await.unwrap();
    drop(daemon);
    drop(leftover);
}

/// `vessel create NAME --container --rootfs DIR -- CMD ARGS`, as a user types
/// it: the daemon writes the bundle (the command on a terminal, the host
/// name the instance's), the container runs it, `vessel exec` reaches it,
/// and `inspect` shows the rootfs and command. A rootfs that is not there
/// is refused with a 4xx and leaves no record or directory behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rootfs_container_created_from_the_cli_runs_its_command() {
    let Some(runtime) = busybox::runtime_binary() else {
        return;
    };
    let vessel = busybox::vessel_binary().unwrap();
    let mut d = busybox::daemon(&runtime, |_| {}).await;
    let socket = d.daemon.as_ref().unwrap().socket().to_path_buf();
    let rootfs = busybox::bundle(d.dir.path(), "fs", &busybox::config(&["sh"])).join("rootfs");
    let cli = |args: &[&str]| {
        Command::new(&vessel)
            .env("VESSEL_SOCKET", &socket)
            .args(args)
            .output()
            .unwrap()
    };
    let rootfs_arg = rootfs.to_string_lossy().into_owned();
    let out = cli(&[
        "create",
        "rfs",
        "--container",
        "--rootfs",
        &rootfs_arg,
        "--start",
        "--",
        "sh",
        "-c",
        "echo from-$(hostname); exec sleep 1000",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = &d.client;
    let running = c.get("rfs").await.unwrap();
    assert_eq!(running.state, InstanceState::Running);
    common::wait_for_text(&running.log_path, "from-rfs").await;
    let out = cli(&["exec", "rfs", "--", "hostname"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "rfs");
    let out = cli(&["inspect", "rfs"]);
    let inspect: Value = serde_json::from_slice(&out.stdout).unwrap();
    let spec = &inspect["spec"];
    assert_eq!(
        spec["rootfs"].as_str(),
        Some(rootfs_arg.as_str()),
        "{inspect}"
    );
    assert_eq!(spec["command"][0].as_str(), Some("sh"), "{inspect}");
    let bundle = PathBuf::from(spec["bundle"].as_str().unwrap());
    let config: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["terminal"], Value::Bool(true));
    assert_eq!(config["hostname"].as_str(), Some("rfs"));
    let stopped = c.stop("rfs", Some(10)).await.unwrap();
    assert_eq!(stopped.state, InstanceState::Stopped);

    // A missing rootfs (inside the allowed dirs): refused, nothing left.
    let missing = d.dir.path().join("no-such-rootfs");
    let out = cli(&[
        "create",
        "gone",
        "--container",
        "--rootfs",
        &missing.to_string_lossy(),
        "--",
        "true",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.rootfs") && err.contains("HTTP 4"),
        "{err}"
    );
    assert!(c.get("gone").await.is_err());
    assert!(!d.config.instance_dir("gone").exists());
    d.stop().await;
}
