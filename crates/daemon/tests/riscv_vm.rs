//! A `vm` instance running the real `vessel run` on a tiny bare-metal
//! RISC-V program (assembled here with riscv64-unknown-elf-gcc, as
//! crates/cli/tests/run_riscv.rs does): it prints, then powers off or parks.

mod common;

use std::path::PathBuf;

use common::{TestDaemon, wait_for, wait_for_text};
use vessel_api::{CreateInstance, ExitReason, InstanceSpec, InstanceState, VmSpec};
use vessel_testkit::riscv::{POWEROFF, uart_program};

fn assemble(dir: &std::path::Path, name: &str, tail: &str) -> Option<PathBuf> {
    let source = uart_program(&format!("hello from {name}\\n"), tail);
    vessel_testkit::riscv::assemble(dir, name, &source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn riscv_guest_powers_off_and_a_parked_one_is_stopped() {
    let Some(vessel) = common::vessel_binary() else {
        return;
    };
    // The firmware lives in the daemon's temp dir, which it may read.
    let mut d = TestDaemon::start(Some(vessel)).await;
    let scratch = d.dir.path().join("firmware");
    let Some(off) = assemble(&scratch, "off", POWEROFF) else {
        return;
    };
    let Some(parked) = assemble(&scratch, "parked", "") else {
        return;
    };
    let c = &d.client;

    c.create(&common::riscv_vm("off", &off, Default::default()))
        .await
        .unwrap();
    c.start("off").await.unwrap();
    let done = wait_for(c, "off", "stopped", |i| i.state == InstanceState::Stopped).await;
    let log = std::fs::read_to_string(&done.log_path).unwrap();
    let exit = done.exit.unwrap();
    assert_eq!(
        (exit.reason, exit.code),
        (ExitReason::PoweredOff, Some(0)),
        "log: {log}"
    );
    assert!(log.contains("hello from off\n"), "log: {log}");

    c.create(&common::riscv_vm("parked", &parked, Default::default()))
        .await
        .unwrap();
    let running = c.start("parked").await.unwrap();
    wait_for_text(&running.log_path, "hello from parked").await;
    assert_eq!(c.get("parked").await.unwrap().state, InstanceState::Running);
    let stopped = c.stop("parked", Some(30)).await.unwrap();
    let exit = stopped.exit.unwrap();
    assert_eq!(exit.reason, ExitReason::Stopped);
    assert!(exit.code.is_some() || exit.signal.is_some(), "{exit:?}");
    d.stop().await;
}

/// `vessel stop` of a Debian riscv64 guest presses its power button: the
/// image's init powers it off and the stop ends before its timeout, as a
/// stop, not a kill. Skips when the image is not in the cache (`vessel
/// image fetch debian-riscv64`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_debian_guest_powers_it_off_through_the_button() {
    let Some(vessel) = common::vessel_binary() else {
        return;
    };
    let cache = match std::env::var_os("XDG_CACHE_HOME") {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"),
    };
    let manifest = cache.join("vessel/images/debian-riscv64/manifest.json");
    let has_button = std::fs::read_to_string(&manifest).is_ok_and(|m| m.contains("virtio_input"));
    if !has_button {
        eprintln!(
            "SKIP: {} is missing or predates the power button; `vessel image fetch debian-riscv64`",
            manifest.display()
        );
        return;
    }
    let mut d = TestDaemon::start(Some(vessel)).await;
    let c = &d.client;
    let create = CreateInstance {
        name: "deb".into(),
        spec: InstanceSpec::Vm(VmSpec {
            args: vec!["debian-riscv64".into()],
        }),
        restart: Default::default(),
    };
    c.create(&create).await.unwrap();
    let running = c.start("deb").await.unwrap();
    // Boot time depends on the machine's load: wait for init (or the end
    // of the VMM) without a deadline of our own; 20 minutes only stops a
    // hung run.
    let mut log = String::new();
    for _ in 0..12_000 {
        log = std::fs::read_to_string(&running.log_path).unwrap_or_default();
        if log.contains("vessel-init: ready") || !c.get("deb").await.unwrap().state.is_active() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        log.contains("vessel-init: ready"),
        "the guest never got ready: {log}"
    );
    let stopped = c.stop("deb", Some(600)).await.unwrap();
    let log = std::fs::read_to_string(&running.log_path).unwrap();
    let exit = stopped.exit.unwrap();
    assert_eq!(stopped.state, InstanceState::Stopped);
    assert_eq!(exit.reason, ExitReason::Stopped, "not killed: {exit:?}");
    assert!(
        log.contains("vessel-init: power button pressed") && log.contains("reboot: Power down"),
        "the guest did not power itself off: {log}"
    );
    d.stop().await;
}
