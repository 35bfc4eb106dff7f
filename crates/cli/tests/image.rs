//! `vessel image` on an empty cache and with bad input: one clear line on
//! stderr and a non-zero exit each. (Fetching itself is tested in
//! crates/images/tests.)

use std::path::Path;
use std::process::{Command, Output};

const VESSEL: &str = env!("CARGO_BIN_EXE_vessel");

fn vessel(cache: &Path, args: &[&str]) -> Output {
    Command::new(VESSEL)
        .env("XDG_CACHE_HOME", cache)
        .env_remove("VESSEL_DEBIAN_MIRROR")
        .args(args)
        .output()
        .expect("run vessel")
}

/// A fresh cache directory for one test, removed afterwards.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("vessel-image-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn empty_cache_lists_nothing_and_says_how_to_fetch() {
    let cache = Scratch::new("ls");
    let o = vessel(cache.path(), &["image", "ls"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("vessel image fetch debian-riscv64"));
    let o = vessel(cache.path(), &["image", "ls", "--json"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "[]");
}

#[test]
fn missing_images_and_unknown_names_are_one_line_errors() {
    let cache = Scratch::new("errors");
    for (args, expect) in [
        (
            &["image", "show", "debian-riscv64"][..],
            "vessel image fetch debian-riscv64",
        ),
        (&["image", "rm", "debian-riscv64"][..], "vessel image ls"),
        (&["image", "fetch", "plan9-sparc"][..], "unknown image"),
        (&["image", "rm", "../etc"][..], "bad image name"),
        (
            &["image", "initramfs", "-o", "/nonexistent/x.gz"][..],
            "vessel image fetch debian-riscv64",
        ),
    ] {
        let o = vessel(cache.path(), args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}

#[test]
fn unreachable_mirror_is_one_line_error() {
    let cache = Scratch::new("unreachable");
    // A port nobody listens on: bind one, note it, drop the listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mirror = format!("http://127.0.0.1:{port}/debian");
    let o = vessel(
        cache.path(),
        &[
            "image",
            "fetch",
            "debian-riscv64",
            "--quiet",
            "--mirror",
            &mirror,
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("cannot reach"), "{err}");
    assert!(err.contains(&mirror), "{err}");
}
