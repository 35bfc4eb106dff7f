//! Podman drives vessel-runtime (`podman --runtime <vessel-runtime>`), with
//! its own storage, run root and tmpdir in a temp dir, its own cgroup
//! parent, cgroupfs and file events (no systemd): `podman import` of a busybox
//! rootfs, run (output and exit code), exec, stop (SIGTERM reaches the
//! container's init), an OOM-killed container (137) and rm.
//!
//! Rlimits: Podman asks for RLIMIT_NOFILE and RLIMIT_NPROC of 1048576 by
//! default. Raising a hard limit above the caller's needs CAP_SYS_RESOURCE;
//! where root lacks it (as in this project's sandboxed machines) every
//! runtime (runc, crun, vessel-runtime) must refuse, so the test passes
//! `--ulimit` values within the host's hard limits, and checks that the
//! default fails for runc and vessel-runtime alike, with vessel saying why.

mod clients;
mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use clients::{have, kill_matching, show, tar_dir, temp_dir, unmount_under};

fn skip_reason() -> Option<String> {
    if let Some(r) = common::skip_reason() {
        return Some(r);
    }
    for p in ["podman", "conmon"] {
        if !have(p) {
            return Some(format!(
                "needs {p} (Debian package podman, in scripts/packages.txt)"
            ));
        }
    }
    None
}

/// A private Podman world; Drop removes its containers and images, kills
/// stray conmons and unmounts what its storage left mounted.
struct Podman {
    dir: PathBuf,
    cgroup_parent: String,
    image: String,
}

impl Podman {
    fn new() -> Podman {
        let dir = temp_dir("podman");
        for d in ["root", "runroot", "tmp"] {
            std::fs::create_dir_all(dir.join(d)).expect("podman dirs");
        }
        Podman {
            cgroup_parent: format!("/vessel-test-podman-{}", std::process::id()),
            image: format!("localhost/vessel-busybox:{}", std::process::id()),
            dir,
        }
    }

    /// `podman` with our private dirs and `runtime` as the OCI runtime.
    fn podman_with(&self, runtime: &str, args: &[&str]) -> Output {
        let d = |s: &str| self.dir.join(s);
        clients::run(
            &self.dir,
            // conmon writes an `oom` file into its working directory when
            // the container is OOM-killed: keep it in the scratch dir.
            Command::new("podman")
                .current_dir(&self.dir)
                .arg("--root")
                .arg(d("root"))
                .arg("--runroot")
                .arg(d("runroot"))
                .arg("--tmpdir")
                .arg(d("tmp"))
                .args(["--storage-driver", "overlay"])
                .args(["--cgroup-manager", "cgroupfs"])
                .args(["--events-backend", "file"])
                .arg("--runtime")
                .arg(runtime)
                .args(args),
        )
    }

    fn podman(&self, args: &[&str]) -> Output {
        self.podman_with(common::BIN, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.podman(args);
        assert!(o.status.success(), "podman {args:?}: {}", show(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// `podman run` options every container gets: no network, our cgroup
    /// parent, and rlimits the host can grant (see the file comment).
    fn run_opts(&self) -> Vec<String> {
        [
            "--network",
            "none",
            "--cgroup-parent",
            &self.cgroup_parent,
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
        ]
        .map(String::from)
        .to_vec()
    }

    fn run(&self, extra: &[&str], cmd: &[&str]) -> Output {
        let mut args: Vec<&str> = vec!["run"];
        let opts = self.run_opts();
        args.extend(opts.iter().map(String::as_str));
        args.extend_from_slice(extra);
        args.push(&self.image);
        args.extend_from_slice(cmd);
        self.podman(&args)
    }

    /// vessel-runtime on its default root, where Podman keeps it: no
    /// `--runtime-flag root=...` here, as conmon's exit command (`podman
    /// container cleanup`) would not pass it on, and its delete would miss.
    fn runtime(&self, args: &[&str]) -> Output {
        clients::run(&self.dir, Command::new(common::BIN).args(args))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "--force", "--all"]);
        let _ = self.podman(&["rmi", "--force", "--all"]);
        // conmon carries our tmpdir/runroot paths on its command line.
        kill_matching(&self.dir.to_string_lossy());
        unmount_under(&self.dir);
        clients::remove_cgroup(self.cgroup_parent.trim_start_matches('/'));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn podman_runs_execs_stops_oom_kills_and_removes_through_vessel_runtime() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED podman: {why}");
        return;
    }
    let p = Podman::new();
    let rootfs = p.dir.join("rootfs");
    common::busybox_rootfs(&rootfs);
    let tarball = p.dir.join("rootfs.tar");
    tar_dir(&rootfs, &tarball);
    p.ok(&["import", tarball.to_str().expect("path"), &p.image]);

    // Run: output and exit code.
    let o = p.run(
        &["--rm"],
        &[
            "sh",
            "-c",
            "echo hello from pid $$ nofile $(ulimit -n); exit 3",
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("hello from pid 1 nofile 1024"),
        "{}",
        show(&o)
    );

    // A program that is missing or not executable: Podman's exit codes
    // 127 and 126, which it derives from the runtime's error text.
    let o = p.run(&["--rm"], &["/bin/no-such-program"]);
    assert_eq!(o.status.code(), Some(127), "{}", show(&o));
    let o = p.run(&["--rm"], &["/etc/passwd"]);
    assert_eq!(o.status.code(), Some(126), "{}", show(&o));

    // Detached: vessel-runtime holds its state; exec gets its exit code;
    // stop's SIGTERM reaches the init's trap, so it exits 0 by itself.
    let o = p.run(
        &["--detach", "--name", "vt-stop"],
        &[
            "sh",
            "-c",
            "trap 'echo got TERM; exit 0' TERM; touch /tmp/ready; sleep 1000 & wait",
        ],
    );
    assert!(o.status.success(), "{}", show(&o));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let st = p.runtime(&["state", &id]);
    assert!(st.status.success(), "vessel-runtime state: {}", show(&st));
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).expect("state json");
    assert_eq!(st["status"], "running");
    let o = p.podman(&[
        "exec",
        "vt-stop",
        "sh",
        "-c",
        // Also waits until the init has set its trap (before that, an
        // init ignores SIGTERM and stop would fall back to SIGKILL).
        "until [ -e /tmp/ready ]; do :; done; echo exec in $(hostname); exit 5",
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("exec in"),
        "{}",
        show(&o)
    );
    p.ok(&["stop", "--time", "30", "vt-stop"]);
    assert_eq!(
        p.ok(&["inspect", "--format", "{{.State.ExitCode}}", "vt-stop"]),
        "0",
        "SIGTERM ran the trap"
    );
    assert!(p.ok(&["logs", "vt-stop"]).contains("got TERM"));
    p.ok(&["rm", "vt-stop"]);
    let st = p.runtime(&["state", &id]);
    assert!(
        !st.status.success(),
        "vessel-runtime's state is gone after rm: {}",
        show(&st)
    );
    assert!(
        !std::path::Path::new("/run/vessel-runtime")
            .join(&id)
            .exists(),
        "state dir removed"
    );

    // --memory: a container that allocates past its limit is OOM-killed.
    let o = p.run(
        &["--rm", "--memory", "32m"],
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
    );
    assert_eq!(o.status.code(), Some(137), "{}", show(&o));
    assert!(p.ok(&["ps", "--all", "--quiet"]).is_empty(), "all removed");

    // Podman's default rlimits (1048576) need CAP_SYS_RESOURCE when the
    // host's hard limits are lower. Without it no runtime can grant them:
    // runc fails like vessel-runtime, which names the reason.
    if !clients::has_cap_sys_resource() {
        let default_run = |rt: &str| {
            p.podman_with(
                rt,
                &[
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "--cgroup-parent",
                    &p.cgroup_parent,
                    &p.image,
                    "true",
                ],
            )
        };
        let o = default_run(common::BIN);
        assert!(!o.status.success(), "{}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("RLIMIT_") && err.contains("CAP_SYS_RESOURCE"),
            "{}",
            show(&o)
        );
        if have("runc") {
            let o = default_run("runc");
            assert!(!o.status.success(), "runc too: {}", show(&o));
        }
    }
}
