//! Shared by the end-to-end tests: a daemon on a temp socket and state dir.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use vessel_api::{
    Client, ConsoleStream, CreateInstance, Instance, InstanceSpec, RestartPolicy, VmSpec,
};
use vessel_daemon::{Config, RunningDaemon};

pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub daemon: Option<RunningDaemon>,
    pub client: Client,
    pub config: Config,
}

impl TestDaemon {
    /// A daemon whose VMs run `vmm` (a script standing in for `vessel`, or
    /// the real binary).
    pub async fn start(vmm: Option<PathBuf>) -> TestDaemon {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path().join("vessel.sock"), dir.path().join("state"));
        // Test files (bundles, firmware) live in the temp dir.
        config.allow_dirs.push(dir.path().to_path_buf());
        if let Some(vmm) = vmm {
            config.vmm_program = vmm;
        }
        TestDaemon::with_config(dir, config).await
    }

    pub async fn with_config(dir: tempfile::TempDir, config: Config) -> TestDaemon {
        let daemon = vessel_daemon::start(config.clone()).await.unwrap();
        let client = Client::new(daemon.socket());
        TestDaemon {
            dir,
            daemon: Some(daemon),
            client,
            config,
        }
    }

    pub async fn stop(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.shutdown().await.unwrap();
        }
    }
}

/// Write an executable shell script.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Poll the daemon until `done` holds (a generous deadline only keeps a
/// broken daemon from hanging the test; nothing is asserted on time).
pub async fn wait_for(
    client: &Client,
    name: &str,
    what: &str,
    done: impl Fn(&Instance) -> bool,
) -> Instance {
    for _ in 0..2400 {
        let instance = client.get(name).await.unwrap();
        if done(&instance) {
            return instance;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{name}: still not {what} after 120 s: {:?}",
        client.get(name).await
    );
}

/// Wait until a file contains `needle`.
pub async fn wait_for_text(path: &str, needle: &str) -> String {
    for _ in 0..2400 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never contained {needle:?}");
}

/// A binary of this build (target/<profile>/NAME), or None after saying why.
pub fn built(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/TEST-HASH -> target/<profile>/NAME
    let bin = exe.parent()?.parent()?.join(name);
    if bin.is_file() {
        Some(bin)
    } else {
        eprintln!(
            "SKIP: {} is not built; `cargo test --workspace` (as `make test` runs it) builds it",
            bin.display()
        );
        None
    }
}

/// The `vessel` binary of this build, or None after saying why.
pub fn vessel_binary() -> Option<PathBuf> {
    built("vessel")
}

/// A `vm` instance: a 16 MiB riscv64 machine running the bare-metal
/// program `firmware`.
pub fn riscv_vm(name: &str, firmware: &Path, restart: RestartPolicy) -> CreateInstance {
    CreateInstance {
        name: name.into(),
        spec: InstanceSpec::Vm(VmSpec {
            args: [
                "--arch",
                "riscv64",
                "--memory",
                "16M",
                "--firmware",
                &firmware.to_string_lossy(),
            ]
            .map(String::from)
            .to_vec(),
        }),
        restart,
    }
}

/// Read the console until `needle` is in what came, as `clean` shows it
/// (`clean` may take out lines the guest prints by itself). Panics after
/// 120 s, or if the console closes first.
pub async fn read_console_until(
    console: &mut ConsoleStream,
    needle: &str,
    clean: impl Fn(&str) -> String,
) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !clean(&String::from_utf8_lossy(&got)).contains(needle) {
        let n = tokio::time::timeout_at(deadline, console.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {needle:?} on the console within 120 s; got {:?}",
                    String::from_utf8_lossy(&got)
                )
            })
            .expect("reading the console");
        assert!(
            n > 0,
            "console closed before {needle:?}: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}
