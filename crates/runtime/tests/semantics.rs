//! End-to-end, through the `vessel-runtime` binary as runc's users drive
//! it: `events` (stats as runc's JSON, OOM events), AppArmor/SELinux fields
//! on a host without them (a warning in the log, not an error), runc's
//! hook semantics (a failed poststart hook is a warning; poststop hooks
//! run before the state is gone), and `run` with a terminal but no
//! console socket (a pty proxied to our stdio).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

use common::{BIN, World, config};
use serde_json::{Value, json};

fn with(mut c: Value, f: impl FnOnce(&mut Value)) -> Value {
    f(&mut c);
    c
}

#[test]
fn events_report_stats_as_runc_and_an_oom_kill() {
    require_host!();
    let w = World::new("events");
    let cfg = with(config(&["sh", "-c", "echo up; exec sleep 60"]), |c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 67108864});
        c["linux"]["resources"]["pids"] = json!({"limit": 50});
    });
    let b = w.bundle("b", &cfg);
    let id = w.id("ev");
    w.ok(&["create", "--bundle", b.to_str().unwrap(), &id]);
    w.ok(&["start", &id]);
    let out = w.ok(&["events", "--stats", &id]);
    let ev: Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], id.as_str());
    let d = &ev["data"];
    assert_eq!(d["memory"]["usage"]["limit"], 67108864, "{ev}");
    assert!(
        d["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "{ev}"
    );
    assert_eq!(d["pids"]["limit"], 50, "{ev}");
    assert!(d["pids"]["current"].as_u64().unwrap_or(0) >= 1, "{ev}");
    assert!(d["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0, "{ev}");

    // The stream: stats lines until the container stops, then exit 0.
    let mut events = Command::new(BIN)
        .arg("--root")
        .arg(&w.root)
        .args(["events", "--interval", "100ms", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("events");
    let mut lines = BufReader::new(events.stdout.take().expect("stdout")).lines();
    let first: Value =
        serde_json::from_str(&lines.next().expect("a line").expect("read")).expect("json line");
    assert_eq!(first["type"], "stats");
    w.ok(&["kill", &id, "KILL"]);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(events.wait().expect("wait").success());
    for l in &rest {
        let v: Value = serde_json::from_str(l).expect("json line");
        assert_eq!(v["type"], "stats", "{l}");
    }
    let stopped = w.rt(&["events", "--stats", &id]);
    assert!(!stopped.status.success());
    assert!(String::from_utf8_lossy(&stopped.stderr).contains("not running"));
    let bad = w.rt(&["events", "--interval", "5 parsecs", &id]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--interval"));
    w.ok(&["delete", &id]);

    // An OOM kill shows up as an "oom" event.
    let cfg = with(
        config(&[
            "sh",
            "-c",
            "a=xxxxxxxxxxxxxxxx; while true; do a=$a$a; done",
        ]),
        |c| c["linux"]["resources"]["memory"] = json!({"limit": 16777216}),
    );
    let b = w.bundle("oom", &cfg);
    let id = w.id("evoom");
    w.ok(&["create", "--bundle", b.to_str().unwrap(), &id]);
    let mut events = Command::new(BIN)
        .arg("--root")
        .arg(&w.root)
        .args(["events", "--interval", "50ms", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("events");
    let mut lines = BufReader::new(events.stdout.take().expect("stdout")).lines();
    // Watching (the first stats line is out) before the process starts.
    let first = lines.next().expect("a line").expect("read");
    assert!(first.contains(r#""type":"stats""#), "{first}");
    w.ok(&["start", &id]);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(events.wait().expect("wait").success());
    let oom = format!(r#"{{"type":"oom","id":"{id}"}}"#);
    assert!(rest.contains(&oom), "{rest:?}");
}

#[test]
fn apparmor_and_selinux_fields_run_with_a_warning_where_the_host_lacks_them() {
    require_host!();
    let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .map(|s| s.starts_with('Y'))
        .unwrap_or(false);
    if apparmor || std::path::Path::new("/sys/fs/selinux/enforce").exists() {
        eprintln!(
            "SKIPPED {}: this host runs AppArmor or SELinux; the test checks the warning path",
            module_path!()
        );
        return;
    }
    let w = World::new("lsm");
    let cfg = with(config(&["sh", "-c", "echo labelled-ok"]), |c| {
        c["process"]["apparmorProfile"] = json!("vessel-default");
        c["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0:c1,c2");
        c["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0:c1,c2");
    });
    let b = w.bundle("b", &cfg);
    let id = w.id("lsm");
    let log = w.dir.join("runtime.log");
    let o = w.rt(&[
        "--log",
        log.to_str().unwrap(),
        "run",
        "--bundle",
        b.to_str().unwrap(),
        &id,
    ]);
    assert!(
        o.status.success(),
        "stderr {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("labelled-ok"));
    let log = std::fs::read_to_string(&log).expect("log");
    for field in [
        "process.apparmorProfile",
        "process.selinuxLabel",
        "linux.mountLabel",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("level=warning") && l.contains(field)),
            "{field} warning in {log}"
        );
    }
}

#[test]
fn poststart_failure_is_a_warning_and_poststop_runs_before_the_state_is_gone() {
    require_host!();
    let w = World::new("hooks");
    let marks = w.dir.join("marks");
    std::fs::create_dir_all(&marks).expect("marks");
    let m = marks.to_str().unwrap().to_string();
    let root = w.root.to_str().unwrap().to_string();
    let id = w.id("hk");
    let cfg = with(config(&["sleep", "60"]), |c| {
        c["hooks"] = json!({
            "poststart": [
                {"path": "/bin/sh", "args": ["sh", "-c", "echo boom >&2; exit 3"]},
                {"path": "/bin/sh", "args": ["sh", "-c", format!("/bin/cat > {m}/poststart2")]}
            ],
            "poststop": [
                {"path": "/bin/sh", "args": ["sh", "-c",
                    format!("/bin/ls {root}/{id} > {m}/poststop-ls; {BIN} --root {root} state {id} > {m}/poststop-state")],
                 "timeout": 30}
            ]
        });
    });
    let b = w.bundle("b", &cfg);
    let log = w.dir.join("runtime.log");
    let log_s = log.to_str().unwrap();
    w.ok(&["create", "--bundle", b.to_str().unwrap(), &id]);
    // runc: start succeeds; the failure is logged.
    w.ok(&["--log", log_s, "start", &id]);
    assert_eq!(w.state(&id)["status"], "running");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("level=warning") && text.contains("poststart") && text.contains("boom"),
        "{text}"
    );
    // The next hook still ran, with the state on stdin.
    let st: Value = serde_json::from_str(
        &std::fs::read_to_string(marks.join("poststart2")).expect("second poststart ran"),
    )
    .expect("state json");
    assert_eq!(st["id"], id.as_str());
    w.ok(&["kill", &id, "KILL"]);
    w.ok(&["--log", log_s, "delete", "--force", &id]);
    let ls = std::fs::read_to_string(marks.join("poststop-ls")).expect("poststop ran");
    assert!(ls.contains("state.json"), "state dir at poststop: {ls}");
    let st: Value = serde_json::from_str(
        &std::fs::read_to_string(marks.join("poststop-state")).expect("state from the hook"),
    )
    .expect("state json");
    assert_eq!(st["status"], "stopped");
    assert!(
        !w.root.join(&id).exists(),
        "state dir removed after poststop"
    );
}

#[test]
fn run_with_a_terminal_and_no_console_socket_proxies_a_pty() {
    require_host!();
    let w = World::new("tty");
    let cfg = with(
        config(&[
            "sh",
            "-c",
            "[ -t 0 ] && [ -t 1 ] && echo tty-yes; read l; echo got:$l; exit 4",
        ]),
        |c| c["process"]["terminal"] = json!(true),
    );
    let b = w.bundle("b", &cfg);
    // As runc: detached, nobody could hold the pty.
    let id = w.id("ttyd");
    let d = w.rt(&["run", "--detach", "--bundle", b.to_str().unwrap(), &id]);
    assert!(!d.status.success());
    assert!(
        String::from_utf8_lossy(&d.stderr).contains(
            "cannot allocate tty if vessel-runtime will detach without setting console socket"
        ),
        "{}",
        String::from_utf8_lossy(&d.stderr)
    );
    assert!(!w.root.join(&id).exists(), "nothing left behind");

    let pty = nix::pty::openpty(None, None).expect("openpty");
    let id = w.id("tty");
    let mut child = Command::new(BIN)
        .arg("--root")
        .arg(&w.root)
        .args(["run", "--bundle", b.to_str().unwrap(), &id])
        .stdin(pty.slave.try_clone().expect("dup"))
        .stdout(pty.slave.try_clone().expect("dup"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let slave_fd = pty.slave.as_raw_fd();
    assert!(slave_fd >= 0);
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    master.write_all(b"typed\n").expect("type");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    });
    let mut status = None;
    for _ in 0..2400 {
        if let Some(s) = child.try_wait().expect("wait") {
            status = Some(s);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("vessel-runtime run with a terminal did not end");
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let out = String::from_utf8_lossy(&reader.join().expect("reader")).into_owned();
    assert_eq!(status.code(), Some(4), "output {out:?} stderr {err}");
    assert!(out.contains("tty-yes"), "{out:?}");
    assert!(out.contains("got:typed"), "{out:?}");
    assert!(!w.root.join(&id).exists(), "deleted after the run");
}
