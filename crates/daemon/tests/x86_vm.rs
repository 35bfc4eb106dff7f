//! A `vm` instance on the KVM engine: the real `vessel run --arch x86_64`
//! under the daemon, running the power-button test guest
//! (crates/x86/tests/guests/button.S, built here with GNU as/ld). Its
//! console works through the API, pause and resume reach its vCPUs, and
//! `stop` presses its power button: the guest powers off by itself (the
//! i8042 reset) and the instance ends `stopped`, not killed. Skipped, with
//! the reason, where /dev/kvm cannot be opened.

mod common;

use common::{TestDaemon, read_console_until};
use vessel_api::{CreateInstance, ExitReason, InstanceSpec, InstanceState, VmSpec};
use vessel_testkit::x86::{build_named, kvm_usable};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_x86_vm_has_a_console_pauses_and_stops_through_its_power_button() {
    if !kvm_usable("an_x86_vm_has_a_console_pauses_and_stops_through_its_power_button") {
        return;
    }
    let Some(vessel) = common::vessel_binary() else {
        return;
    };
    let mut d = TestDaemon::start(Some(vessel)).await;
    // The guest lives in the daemon's temp dir, which it may read.
    let Some(guest) = build_named(&d.dir.path().join("guest"), "button") else {
        return;
    };
    let c = &d.client;
    let create = CreateInstance {
        name: "pc".into(),
        spec: InstanceSpec::Vm(VmSpec {
            args: [
                "--arch",
                "x86_64",
                "--engine",
                "kvm",
                "--memory",
                "64M",
                "--kernel",
                &guest.to_string_lossy(),
            ]
            .map(String::from)
            .to_vec(),
        }),
        restart: Default::default(),
    };
    c.create(&create).await.unwrap();
    c.start("pc").await.unwrap();
    let mut console = c.console("pc", false, 1 << 16).await.unwrap();
    read_console_until(&mut console, "button ready", str::to_string).await;

    let paused = c.pause("pc").await.unwrap();
    assert_eq!(paused.state, InstanceState::Paused);
    assert_eq!(c.pause("pc").await.unwrap_err().status(), Some(409));
    let resumed = c.resume("pc").await.unwrap();
    assert_eq!(resumed.state, InstanceState::Running);
    // It runs again: new ticks come (the console gives only live output
    // once attached).
    let mut live = c.console("pc", false, 0).await.unwrap();
    read_console_until(&mut live, "tick ", str::to_string).await;

    let stopped = c.stop("pc", Some(60)).await.unwrap();
    assert_eq!(stopped.state, InstanceState::Stopped);
    let exit = stopped.exit.unwrap();
    assert_eq!(exit.reason, ExitReason::Stopped, "not killed: {exit:?}");
    assert_eq!(exit.code, Some(0), "{exit:?}");
    let log = std::fs::read_to_string(&stopped.log_path).unwrap();
    assert!(
        log.contains("power button\n"),
        "the guest did not hear its power button: {log}"
    );
    d.stop().await;
}
