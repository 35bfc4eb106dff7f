//! The `always` restart policy with the real `vessel` binary and emulated
//! RISC-V guests: a guest that powers off cleanly (exit 0) is started again,
//! a user's stop is not undone, and the backoff (quick failures in a row)
//! is kept in the state database across a daemon restart.

mod common;

use std::path::{Path, PathBuf};

use common::{TestDaemon, wait_for};
use vessel_api::{ExitReason, InstanceState, RestartPolicy};
use vessel_daemon::store::Store;

/// A guest that prints `message` and powers off (exit 0).
fn poweroff_guest(dir: &Path) -> Option<PathBuf> {
    let source = vessel_testkit::riscv::uart_program("bye\\n", vessel_testkit::riscv::POWEROFF);
    vessel_testkit::riscv::assemble(dir, "bye", &source)
}

/// A guest that prints a line and then waits for ever.
fn idle_guest(dir: &Path) -> Option<PathBuf> {
    let source = vessel_testkit::riscv::uart_program("idle\\n", "    j park\n");
    vessel_testkit::riscv::assemble(dir, "idle", &source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_restarts_a_clean_exit_but_not_a_users_stop() {
    let Some(vessel) = common::vessel_binary() else {
        return;
    };
    let mut d = TestDaemon::start(Some(vessel)).await;
    let guests = d.config.state_dir.join("guests");
    let (Some(bye), Some(idle)) = (poweroff_guest(&guests), idle_guest(&guests)) else {
        return;
    };
    let c = d.client.clone();
    let sup = d.daemon.as_ref().unwrap().supervisor().clone();

    // A clean power-off (exit 0) is started again, and again.
    let created = c
        .create(&common::riscv_vm("bye", &bye, RestartPolicy::Always))
        .await
        .unwrap();
    assert_eq!(created.restart_policy, RestartPolicy::Always);
    c.start("bye").await.unwrap();
    let seen = wait_for(&c, "bye", "restarted twice", |i| i.restart_count >= 2).await;
    let log = std::fs::read_to_string(&seen.log_path).unwrap();
    assert!(
        log.matches("bye").count() >= 2,
        "each run printed its line: {log:?}"
    );
    // The user's stop (of the run, or of the pending restart) ends it.
    let stopped = c.stop("bye", Some(5)).await.unwrap();
    assert!(!stopped.state.is_active(), "{stopped:?}");
    assert!(!sup.restart_pending("bye"), "stop cancels the restart");

    // A running guest stopped by the user: recorded as stopped, and not
    // restarted although the policy is `always`.
    c.create(&common::riscv_vm("idle", &idle, RestartPolicy::Always))
        .await
        .unwrap();
    c.start("idle").await.unwrap();
    let running = wait_for(&c, "idle", "printing", |i| {
        std::fs::read_to_string(&i.log_path)
            .unwrap_or_default()
            .contains("idle")
    })
    .await;
    assert_eq!(running.state, InstanceState::Running);
    let stopped = c.stop("idle", Some(10)).await.unwrap();
    assert_eq!(stopped.state, InstanceState::Stopped);
    assert_eq!(
        stopped.exit.as_ref().map(|e| e.reason),
        Some(ExitReason::Stopped),
        "{stopped:?}"
    );
    assert!(
        !sup.restart_pending("idle"),
        "a user's stop is not restarted"
    );
    assert_eq!(c.get("idle").await.unwrap().restart_count, 0);
    for name in ["bye", "idle"] {
        c.delete(name, true).await.unwrap();
    }
    d.stop().await;
}

/// The backoff count (quick exits in a row) is in the state database: a
/// restarted daemon goes on from it instead of starting again at 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_backoff_survives_a_daemon_restart() {
    let Some(vessel) = common::vessel_binary() else {
        return;
    };
    let mut d = TestDaemon::start(Some(vessel)).await;
    let guests = d.config.state_dir.join("guests");
    let Some(bye) = poweroff_guest(&guests) else {
        return;
    };
    let c = d.client.clone();
    c.create(&common::riscv_vm("loop", &bye, RestartPolicy::Always))
        .await
        .unwrap();
    c.start("loop").await.unwrap();
    wait_for(&c, "loop", "restarted twice", |i| i.restart_count >= 2).await;
    let state_dir = d.config.state_dir.clone();
    let failures = || {
        Store::open(&state_dir)
            .unwrap()
            .restart_failures("loop")
            .unwrap()
    };
    let before = failures();
    assert!(before >= 2, "two quick exits counted: {before}");

    // The daemon goes away (the guest or its pending restart with it) and
    // comes back on the same state.
    d.stop().await;
    let config = d.config.clone();
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    let mut d2 = TestDaemon::with_config(dir, config).await;
    let c2 = d2.client.clone();
    // It goes on: the instance is started again (its pending restart is
    // resumed, or the run it reattached to ends and is restarted) ...
    let restarts = c2.get("loop").await.unwrap().restart_count;
    wait_for(&c2, "loop", "restarted by the new daemon", |i| {
        i.restart_count > restarts
    })
    .await;
    // ... and the count of quick exits went on from the stored one, where
    // an in-memory count would start again at 1.
    let mut after = failures();
    for _ in 0..1200 {
        if after > before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        after = failures();
    }
    assert!(after > before, "backoff count {before} then {after}");
    c2.delete("loop", true).await.unwrap();
    d2.stop().await;
}
