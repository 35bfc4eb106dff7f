//! vessel-runtime against Debian's runc on the same bundles: exit codes of
//! the container process, the state JSON (fields, values, status per
//! transition) and the error behaviour of the lifecycle commands. Where
//! they differ on purpose, docs/container.md says so and the test names it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::{World, config, run_to_files};
use serde_json::{Value, json};

const RUNC: &str = "runc";

fn skip_reason() -> Option<String> {
    if let Some(r) = common::skip_reason() {
        return Some(r);
    }
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(RUNC).is_file()));
    if !found {
        return Some("needs runc (Debian package runc, in scripts/packages.txt)".into());
    }
    None
}

macro_rules! require {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("SKIPPED {}: {why}", module_path!());
            return;
        }
    };
}

/// One runtime binary with its own --root.
struct Rt<'w> {
    name: &'static str,
    bin: &'static str,
    root: PathBuf,
    w: &'w World,
}

impl<'w> Rt<'w> {
    fn both(w: &'w World) -> [Rt<'w>; 2] {
        [
            Rt {
                name: "runc",
                bin: RUNC,
                root: w.dir.join("root-runc"),
                w,
            },
            Rt {
                name: "vessel",
                bin: common::BIN,
                root: w.dir.join("root-vessel"),
                w,
            },
        ]
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.bin);
        c.arg("--root").arg(&self.root).args(args);
        c
    }

    fn rt(&self, args: &[&str]) -> Output {
        run_to_files(&self.w.dir, &mut self.cmd(args))
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.rt(args);
        assert!(
            o.status.success(),
            "{} {args:?} failed: {}",
            self.name,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state json")
    }

    /// Polls the state (bounded) until the container is stopped.
    fn wait_stopped(&self, id: &str) -> Value {
        for _ in 0..2000 {
            let s = self.state(id);
            if s["status"] == "stopped" {
                return s;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("{}: {id} did not stop", self.name);
    }

    /// Polls the state (bounded) until the container is running.
    fn wait_running(&self, id: &str) {
        for _ in 0..2000 {
            let o = self.rt(&["state", id]);
            if o.status.success()
                && serde_json::from_slice::<Value>(&o.stdout)
                    .is_ok_and(|s| s["status"] == "running")
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("{}: {id} never ran", self.name);
    }

    /// Force-deletes `id`, ignoring errors (cleanup).
    fn cleanup(&self, id: &str) {
        let _ = self.rt(&["delete", "--force", id]);
    }
}

/// The keys of a JSON object, without `extra` (a runtime's own fields).
fn keys(v: &Value, extra: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .expect("state is an object")
        .keys()
        .filter(|k| !extra.contains(&k.as_str()))
        .cloned()
        .collect();
    k.sort();
    k
}

/// Whether `s` looks like RFC 3339 UTC with an optional fraction.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && s.ends_with('Z')
        && s[..4].bytes().all(|c| c.is_ascii_digit())
}

#[test]
fn state_json_matches_runc_through_the_lifecycle() {
    require!();
    let w = World::new("compat-state");
    let mut c = config(&["sleep", "60"]);
    c["annotations"] = json!({"org.example.owner": "compat", "org.example.n": "1"});
    let b = w.bundle("b", &c);
    let bundle = b.canonicalize().expect("bundle");
    let bs = b.to_str().expect("utf-8");
    let id = format!("compat-{}", std::process::id());
    let mut seen = Vec::new();
    for rt in Rt::both(&w) {
        let pidfile = w.dir.join(format!("{}.pid", rt.name));
        rt.ok(&[
            "create",
            "--bundle",
            bs,
            "--pid-file",
            pidfile.to_str().expect("utf-8"),
            &id,
        ]);
        let created = rt.state(&id);
        let pid: i64 = std::fs::read_to_string(&pidfile)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        rt.ok(&["start", &id]);
        let running = rt.state(&id);
        rt.ok(&["kill", &id, "KILL"]);
        let stopped = rt.wait_stopped(&id);
        rt.ok(&["delete", &id]);
        let gone = rt.rt(&["state", &id]);
        assert!(!gone.status.success(), "{}: state after delete", rt.name);

        for (s, status) in [
            (&created, "created"),
            (&running, "running"),
            (&stopped, "stopped"),
        ] {
            assert_eq!(s["status"], status, "{}: {s}", rt.name);
            assert_eq!(s["id"], id.as_str(), "{}", rt.name);
            assert_eq!(s["bundle"], bundle.to_str().expect("utf-8"), "{}", rt.name);
            assert_eq!(s["annotations"], c["annotations"], "{}", rt.name);
            assert!(s["ociVersion"].as_str().is_some_and(|v| !v.is_empty()));
            let created_at = s["created"].as_str().unwrap_or_default();
            assert!(is_rfc3339(created_at), "{}: created {created_at}", rt.name);
        }
        // pid: the init's (as in --pid-file) until it stops, then 0.
        assert_eq!(created["pid"], pid, "{}", rt.name);
        assert_eq!(running["pid"], pid, "{}", rt.name);
        assert_eq!(stopped["pid"], 0, "{}", rt.name);
        assert_eq!(created["created"], stopped["created"], "{}", rt.name);
        seen.push((rt.name, created, running, stopped));
    }
    let (_, rc, rr, rs) = &seen[0];
    let (_, vc, vr, vs) = &seen[1];
    // The same fields, apart from each runtime's own: runc's "owner"
    // (rootless owner) and vessel's "exitStatus" (a stopped container's
    // exit status, which runc does not keep).
    for (r, v) in [(rc, vc), (rr, vr), (rs, vs)] {
        assert_eq!(
            keys(r, &["owner"]),
            keys(v, &["exitStatus"]),
            "runc {r}\nvessel {v}"
        );
        for k in ["id", "status", "bundle", "rootfs", "annotations"] {
            assert_eq!(r[k], v[k], "field {k}: runc {r}\nvessel {v}");
        }
    }
    assert_eq!(vs["exitStatus"], 137, "vessel keeps the exit status");
}

/// Runs `run` in the foreground and returns its child (stdio in files).
fn spawn_run(rt: &Rt, bundle: &Path, id: &str) -> Child {
    rt.cmd(&["run", "--bundle", bundle.to_str().expect("utf-8"), id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(rt.w.dir.join(format!("{}-{id}.err", rt.name))).expect("err"))
        .spawn()
        .expect("spawn run")
}

#[test]
fn exit_codes_match_runc() {
    require!();
    let w = World::new("compat-exit");
    let b0 = w.bundle("exit0", &config(&["sh", "-c", "exit 0"]));
    let b3 = w.bundle("exit3", &config(&["sh", "-c", "exit 3"]));
    let bs = w.bundle("sleep", &config(&["sleep", "60"]));
    // A shell that exits on SIGTERM through its trap (exit 143 by hand);
    // it says when the trap is set (an init ignores SIGTERM before that).
    let bt = w.bundle(
        "trap",
        &config(&[
            "sh",
            "-c",
            "trap 'exit 143' TERM; touch /tmp/ready; sleep 60 & wait",
        ]),
    );
    let ready = bt.join("rootfs/tmp/ready");
    let n = std::process::id();
    for rt in Rt::both(&w) {
        for (bundle, want) in [(&b0, 0), (&b3, 3)] {
            let id = format!("exit{want}-{n}");
            let o = rt.rt(&["run", "--bundle", bundle.to_str().expect("utf-8"), &id]);
            rt.cleanup(&id);
            assert_eq!(
                o.status.code(),
                Some(want),
                "{}: {}",
                rt.name,
                String::from_utf8_lossy(&o.stderr)
            );
        }
        // Killed from outside by a signal: 128 + signal.
        for (bundle, sig, want) in [(&bs, "KILL", 137), (&bt, "TERM", 143)] {
            let id = format!("sig{want}-{n}");
            let _ = std::fs::remove_file(&ready);
            let mut child = spawn_run(&rt, bundle, &id);
            rt.wait_running(&id);
            if sig == "TERM" {
                for _ in 0..2000 {
                    if ready.exists() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                assert!(ready.exists(), "{}: the trap was never set", rt.name);
            }
            rt.ok(&["kill", &id, sig]);
            let status = child.wait().expect("wait run");
            rt.cleanup(&id);
            assert_eq!(status.code(), Some(want), "{} kill {sig}", rt.name);
        }
    }
}

#[test]
fn errors_match_runc() {
    require!();
    let w = World::new("compat-err");
    let b = w.bundle("b", &config(&["sleep", "60"]));
    let bs = b.to_str().expect("utf-8");
    let id = format!("err-{}", std::process::id());
    let unknown = format!("unknown-{}", std::process::id());
    for rt in Rt::both(&w) {
        let fails = |args: &[&str], what: &str| {
            let o = rt.rt(args);
            assert!(
                !o.status.success() && o.status.code().is_some_and(|c| c != 0),
                "{}: {what} must fail",
                rt.name
            );
            assert!(!o.stderr.is_empty(), "{}: {what} says why", rt.name);
        };
        rt.ok(&["create", "--bundle", bs, &id]);
        fails(
            &["create", "--bundle", bs, &id],
            "create with an existing id",
        );
        assert_eq!(rt.state(&id)["status"], "created", "{}: unchanged", rt.name);
        rt.ok(&["start", &id]);
        fails(&["start", &id], "start of a running container");
        fails(&["delete", &id], "delete of a running container");
        assert_eq!(rt.state(&id)["status"], "running", "{}: unchanged", rt.name);
        // Signal 0 only checks that the container runs.
        rt.ok(&["kill", &id, "0"]);
        rt.ok(&["pause", &id]);
        assert_eq!(rt.state(&id)["status"], "paused", "{}", rt.name);
        fails(&["pause", &id], "pause of a paused container");
        rt.ok(&["resume", &id]);
        assert_eq!(rt.state(&id)["status"], "running", "{}", rt.name);
        fails(&["resume", &id], "resume of a running container");
        let o = rt.rt(&["exec", &id, "sh", "-c", "exit 7"]);
        assert_eq!(o.status.code(), Some(7), "{}: exec's exit code", rt.name);
        rt.ok(&["kill", &id, "KILL"]);
        rt.wait_stopped(&id);
        fails(&["kill", &id, "KILL"], "kill of a stopped container");
        fails(&["start", &id], "start of a stopped container");
        fails(&["pause", &id], "pause of a stopped container");
        fails(&["resume", &id], "resume of a stopped container");
        fails(&["exec", &id, "true"], "exec in a stopped container");
        rt.ok(&["delete", &id]);
        fails(&["state", &unknown], "state of an unknown id");
        fails(&["start", &unknown], "start of an unknown id");
        fails(&["kill", &unknown, "KILL"], "kill of an unknown id");
        fails(&["delete", &unknown], "delete of an unknown id");
        // ...but a forced delete of an unknown id is not an error (Podman
        // and containerd clean up after a failed create this way).
        rt.ok(&["delete", "--force", &unknown]);
    }
}

#[test]
fn a_missing_or_non_executable_program_fails_create_as_runc() {
    require!();
    let w = World::new("compat-exe");
    let missing = w.bundle("missing", &config(&["/bin/no-such-program"]));
    let not_exec = w.bundle("notexec", &config(&["/etc/passwd"]));
    let n = std::process::id();
    for rt in Rt::both(&w) {
        // Podman reads the error text: "permission denied" becomes exit
        // code 126, "executable file not found in" or "no such file or
        // directory" 127. Both runtimes must say one of its words.
        for (bundle, words, tag) in [
            (
                &missing,
                &["executable file not found in", "no such file or directory"][..],
                "missing",
            ),
            (&not_exec, &["permission denied"][..], "notexec"),
        ] {
            let id = format!("{tag}-{n}");
            let o = rt.rt(&["create", "--bundle", bundle.to_str().expect("utf-8"), &id]);
            rt.cleanup(&id);
            let err = String::from_utf8_lossy(&o.stderr).to_lowercase();
            assert!(!o.status.success(), "{}: create {tag} must fail", rt.name);
            assert!(
                words.iter().any(|w| err.contains(w)),
                "{}: create {tag}: {err}",
                rt.name
            );
            assert!(
                !rt.root.join(&id).exists(),
                "{}: no state left for {tag}",
                rt.name
            );
        }
    }
}
