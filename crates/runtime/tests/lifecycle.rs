//! End-to-end: the runc-style lifecycle and the config.json fields, on a
//! busybox rootfs, through the `vessel-runtime` binary (run as root).

mod common;

use std::path::Path;

use common::{World, config, memory_cgroup};
use serde_json::json;

#[test]
fn create_start_kill_delete_keeps_exit_status() {
    require_host!();
    let w = World::new("life");
    let b = w.bundle("b", &config(&["sleep", "60"]));
    let id = w.id("life");
    let pidfile = w.dir.join("pid");
    w.ok(&[
        "create",
        "--bundle",
        b.to_str().unwrap(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
    ]);
    let s = w.state(&id);
    assert_eq!(s["status"], "created");
    assert_eq!(s["ociVersion"], "1.2.0");
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["bundle"], b.canonicalize().unwrap().to_str().unwrap());
    let pid: i64 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(s["pid"], pid);
    // The init waits in the container: its hostname is already set.
    let cg = memory_cgroup(&format!("/vessel/{id}"));
    assert!(cg.is_dir(), "cgroup {} exists while created", cg.display());
    w.ok(&["start", &id]);
    assert_eq!(w.state(&id)["status"], "running");
    let again = w.rt(&["start", &id]);
    assert!(!again.status.success(), "start twice must fail");
    let list = w.ok(&["list", "--format", "json"]);
    assert!(list.contains(&id), "{list}");
    let ps: Vec<i64> = serde_json::from_str(&w.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(ps.contains(&pid), "ps {ps:?} lists the init {pid}");
    let del = w.rt(&["delete", &id]);
    assert!(
        !del.status.success(),
        "delete of a running container needs --force"
    );
    w.ok(&["kill", &id, "KILL"]);
    // The monitor records the status once the init is reaped: wait on it.
    wait_stopped(&w, &id);
    let s = w.state(&id);
    assert_eq!(s["status"], "stopped");
    assert_eq!(s["exitStatus"], 137);
    w.ok(&["delete", &id]);
    let gone = w.rt(&["state", &id]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("does not exist"));
    assert!(!cg.exists(), "cgroup removed");
    assert!(!w.root.join(&id).exists(), "state dir removed");
}

/// Waits (by polling the state, bounded) until the container is stopped
/// with a recorded exit status.
fn wait_stopped(w: &World, id: &str) {
    for _ in 0..2000 {
        let s = w.state(id);
        if s["status"] == "stopped" && !s["exitStatus"].is_null() {
            return;
        }
        std::thread::yield_now();
    }
    panic!("container {id} did not stop: {}", w.state(id));
}

#[test]
fn run_applies_process_and_rootfs_settings() {
    require_host!();
    let w = World::new("cfg");
    let script = r#"
        echo host=$(hostname)
        echo id=$(id -u):$(id -g):$(id -G)
        echo umask=$(umask)
        echo cwd=$(pwd)
        echo env=$GREETING
        echo nofile=$(ulimit -n)
        grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status | tr -s '\t' ' '
        touch /rootfile 2>/dev/null && echo root=rw || echo root=ro
        echo masked=$(wc -c < /proc/timer_list)
        echo sys_ro=$(grep ' /proc/sys ' /proc/mounts | grep -c ' ro,')
        mkdir /tmp/blocked 2>/dev/null && echo mkdir=ok || echo mkdir=denied
        echo fwd=$(cat /proc/sys/net/ipv4/ip_forward)
        echo mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)
        echo pids=$(cat /sys/fs/cgroup/pids/pids.max)
        echo pid1=$$
        ls /dev
        exit 7
    "#;
    let mut c = config(&["sh", "-c", script]);
    c["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 6], "umask": 18});
    c["process"]["cwd"] = json!("/tmp");
    c["process"]["env"] = json!(["PATH=/bin", "GREETING=hello"]);
    c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 512, "soft": 256}]);
    c["root"]["readonly"] = json!(true);
    c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]}));
    c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    c["linux"]["resources"]["memory"] = json!({"limit": 67108864});
    c["linux"]["resources"]["pids"] = json!({"limit": 42});
    c["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    let b = w.bundle("b", &c);
    let id = w.id("cfg");
    let o = w.rt(&["run", "--bundle", b.to_str().unwrap(), &id]);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(7),
        "exit code of the process; stdout {out} stderr {err}"
    );
    for want in [
        "host=vessel",
        "id=1000:1000:1000 5 6",
        "umask=0022",
        "cwd=/tmp",
        "env=hello",
        "nofile=256",
        "CapEff: 0000000000000000",
        "CapBnd: 00000000200000420",
        "NoNewPrivs: 1",
        "root=ro",
        "masked=0",
        "sys_ro=1",
        "mkdir=denied",
        "fwd=1",
        "mem=67108864",
        "pids=42",
        "pid1=1",
        "null",
        "urandom",
    ] {
        let want = want.replace("00000000200000420", "0000000020000420");
        assert!(
            out.contains(&want),
            "missing {want:?} in:\n{out}\nstderr: {err}"
        );
    }
    assert!(
        !w.root.join(&id).exists(),
        "run deletes the container afterwards"
    );
}

#[test]
fn malformed_config_names_file_and_field_and_leaves_nothing() {
    require_host!();
    let w = World::new("bad");
    let mut c = config(&["true"]);
    c["process"]["user"]["uid"] = json!("root");
    let b = w.bundle("b", &c);
    let id = w.id("bad");
    let o = w.rt(&["create", "--bundle", b.to_str().unwrap(), &id]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("config.json") && err.contains("process.user.uid"),
        "{err}"
    );
    assert!(!w.root.join(&id).exists(), "no state dir left");
    assert!(
        !memory_cgroup(&format!("/vessel/{id}")).exists(),
        "no cgroup left"
    );

    // A semantic error found by the init (missing executable): same promise.
    let b2 = w.bundle("b2", &config(&["/bin/no-such-program"]));
    let id2 = w.id("bad2");
    let o = w.rt(&["create", "--bundle", b2.to_str().unwrap(), &id2]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no-such-program"), "{err}");
    assert!(!w.root.join(&id2).exists(), "no state dir left");
    assert!(
        !memory_cgroup(&format!("/vessel/{id2}")).exists(),
        "no cgroup left"
    );
}

#[test]
fn memory_limited_container_is_oom_killed_with_137() {
    require_host!();
    let w = World::new("oom");
    let mut c = config(&["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"]);
    c["linux"]["resources"]["memory"] = json!({"limit": 33554432, "swap": 33554432});
    let b = w.bundle("b", &c);
    // Foreground run: the exit code is the container's.
    let id = w.id("oom");
    let o = w.rt(&["run", "--bundle", b.to_str().unwrap(), &id]);
    assert_eq!(
        o.status.code(),
        Some(137),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Detached: the state says stopped with 137.
    let id2 = w.id("oom2");
    w.ok(&["run", "--detach", "--bundle", b.to_str().unwrap(), &id2]);
    wait_stopped(&w, &id2);
    assert_eq!(w.state(&id2)["exitStatus"], 137);
    w.ok(&["delete", &id2]);
}

#[test]
fn update_pause_resume_and_exec() {
    require_host!();
    let w = World::new("upd");
    let b = w.bundle("b", &config(&["sleep", "60"]));
    let id = w.id("upd");
    w.ok(&["run", "--detach", "--bundle", b.to_str().unwrap(), &id]);
    let res = w.dir.join("res.json");
    std::fs::write(&res, r#"{"memory":{"limit":50331648},"pids":{"limit":17},"cpu":{"shares":512,"quota":20000,"period":100000}}"#).unwrap();
    w.ok(&["update", "--resources", res.to_str().unwrap(), &id]);
    let cg = |ctrl: &str, file: &str| {
        std::fs::read_to_string(
            Path::new("/sys/fs/cgroup")
                .join(ctrl)
                .join("vessel")
                .join(&id)
                .join(file),
        )
        .unwrap()
        .trim()
        .to_string()
    };
    assert_eq!(cg("memory", "memory.limit_in_bytes"), "50331648");
    assert_eq!(cg("pids", "pids.max"), "17");
    assert_eq!(cg("cpu", "cpu.shares"), "512");
    assert_eq!(cg("cpu", "cpu.cfs_quota_us"), "20000");

    let o = w.rt(&[
        "exec",
        "--env",
        "FOO=bar",
        &id,
        "sh",
        "-c",
        "echo foo=$FOO host=$(hostname) pid1=$(cat /proc/1/cmdline | tr '\\0' ' '); exit 5",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(5),
        "{out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("foo=bar") && out.contains("host=vessel") && out.contains("pid1=sleep 60"),
        "{out}"
    );

    w.ok(&["pause", &id]);
    assert_eq!(w.state(&id)["status"], "paused");
    assert_eq!(cg("freezer", "freezer.state"), "FROZEN");
    w.ok(&["resume", &id]);
    assert_eq!(w.state(&id)["status"], "running");
    w.ok(&["delete", "--force", &id]);
    assert!(!w.root.join(&id).exists());
}

#[test]
fn racing_creates_and_deletes_of_one_id_do_not_corrupt_state() {
    require_host!();
    let w = World::new("race");
    let b = w.bundle("b", &config(&["sleep", "60"]));
    let id = w.id("race");
    let spawn = |args: &[&str]| -> std::io::Result<std::process::Output> {
        Ok(common::run_to_files(
            &w.dir,
            std::process::Command::new(common::BIN)
                .arg("--root")
                .arg(&w.root)
                .args(args),
        ))
    };
    let bs = b.to_str().unwrap().to_string();
    let (a, c) = std::thread::scope(|s| {
        let t1 = s.spawn(|| spawn(&["create", "--bundle", &bs, &id]).unwrap());
        let t2 = s.spawn(|| spawn(&["create", "--bundle", &bs, &id]).unwrap());
        (t1.join().unwrap(), t2.join().unwrap())
    });
    assert_eq!(
        a.status.success() as u8 + c.status.success() as u8,
        1,
        "exactly one create wins"
    );
    let loser = if a.status.success() { &c } else { &a };
    assert!(String::from_utf8_lossy(&loser.stderr).contains("already exists"));
    assert_eq!(w.state(&id)["status"], "created");
    let (d1, d2) = std::thread::scope(|s| {
        let t1 = s.spawn(|| spawn(&["delete", "--force", &id]).unwrap());
        let t2 = s.spawn(|| spawn(&["delete", "--force", &id]).unwrap());
        (t1.join().unwrap(), t2.join().unwrap())
    });
    assert!(
        d1.status.success() || d2.status.success(),
        "one delete works"
    );
    assert!(!w.root.join(&id).exists());
    assert!(!memory_cgroup(&format!("/vessel/{id}")).exists());
}

#[test]
fn hooks_get_the_state_and_user_namespace_maps_ids() {
    require_host!();
    let w = World::new("hooks");
    let mut c = config(&["sh", "-c", "cat /proc/self/uid_map; id -u"]);
    let out = w.dir.join("prestart.json");
    let stop = w.dir.join("poststop.json");
    c["hooks"] = json!({
        "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", out.display())]}],
        "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", stop.display())], "timeout": 5}]
    });
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    // The rootfs belongs to the mapped root.
    let b = w.bundle("b", &c);
    let _ = std::process::Command::new("chown")
        .args(["-R", "100000:100000"])
        .arg(b.join("rootfs"))
        .status();
    let id = w.id("hooks");
    let o = w.rt(&["run", "--bundle", b.to_str().unwrap(), &id]);
    let so = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{so} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(so.contains("100000") && so.contains("65536"), "{so}");
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("createRuntime hook ran")).unwrap();
    assert_eq!(st["id"], id.as_str());
    assert!(st["pid"].as_i64().unwrap() > 0);
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&stop).expect("poststop hook ran")).unwrap();
    assert_eq!(st["id"], id.as_str());
}

#[test]
fn bundle_without_a_dev_mount_runs_again() {
    require_host!();
    let w = World::new("nodev");
    let mut c = config(&["sh", "-c", "ls /dev/null /dev/fd/ >/dev/null && echo ok"]);
    c["mounts"] = json!([{"destination": "/proc", "type": "proc", "source": "proc"}]);
    let b = w.bundle("b", &c);
    // Devices and /dev symlinks are made in the rootfs itself; a second run
    // must replace them, not follow them.
    for round in 0..2 {
        let id = w.id("nodev");
        let o = w.rt(&["run", "--bundle", b.to_str().unwrap(), &id]);
        assert!(
            o.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "ok");
    }
}
