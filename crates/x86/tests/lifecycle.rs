//! The VM's life from the host's side: vCPU threads with names, pause and
//! resume, and a shutdown that reaches a vCPU halted inside KVM.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Capture, WATCHDOG, build_guest, config, kvm_usable, run_guarded};
use vessel_x86::{ExitReason, Microvm};

/// The tests here look at the process's threads: run them one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Names of this process's threads.
fn thread_names() -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(name) = std::fs::read_to_string(task.path().join("comm")) {
            names.push(name.trim().to_string());
        }
    }
    names
}

/// A capture that sends each line to a channel.
fn lines_to_channel() -> (Capture, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let capture = Capture::with_line_hook(move |l| {
        let _ = tx.lock().unwrap().send(l.to_string());
    });
    (capture, rx)
}

#[test]
fn shutdown_stops_a_vcpu_halted_in_the_kernel() {
    if !kvm_usable("shutdown_stops_a_vcpu_halted_in_the_kernel") {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let Some(guest) = build_guest("halt") else {
        return;
    };
    let (capture, lines) = lines_to_channel();
    let mut cfg = config(&guest, &capture);
    cfg.vcpus = 2; // the second stays in wait-for-SIPI: it must stop too
    let running = Microvm::new(cfg).unwrap().start().unwrap();
    assert_eq!(lines.recv_timeout(WATCHDOG).unwrap(), "ready");
    let names = thread_names();
    for vcpu in ["vessel-vcpu0", "vessel-vcpu1"] {
        assert!(
            names.iter().any(|n| n == vcpu),
            "no thread {vcpu} in {names:?}; VM exit: {:?}",
            running.control().exit_reason()
        );
    }
    assert_eq!(running.shutdown(), ExitReason::Stopped);
    let names = thread_names();
    assert!(
        !names.iter().any(|n| n.starts_with("vessel-vcpu")),
        "vCPU threads left after shutdown: {names:?}"
    );
}

#[test]
fn pause_stops_the_guest_and_resume_lets_it_go_on() {
    if !kvm_usable("pause_stops_the_guest_and_resume_lets_it_go_on") {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let Some(guest) = build_guest("ticker") else {
        return;
    };
    let (capture, lines) = lines_to_channel();
    let running = Microvm::new(config(&guest, &capture))
        .unwrap()
        .start()
        .unwrap();
    for n in 1..=3 {
        assert_eq!(
            lines.recv_timeout(WATCHDOG).unwrap(),
            format!("tick {n:#x}")
        );
    }
    running.pause().unwrap();
    assert!(running.is_paused());
    let bytes = Arc::clone(&capture.bytes);
    let at_pause = bytes.lock().unwrap().len();
    // The ticker prints many lines in this time when it runs: none may come.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(bytes.lock().unwrap().len(), at_pause, "output while paused");
    running.pause().unwrap(); // pausing twice is harmless
    running.resume().unwrap();
    assert!(
        running.resume().is_err(),
        "resuming a running VM is an error"
    );
    // Output goes on from where it stopped (the pause may have cut a line).
    let mut last = 3;
    while let Ok(line) = lines.try_recv() {
        last = u64::from_str_radix(line.trim_start_matches("tick 0x"), 16).unwrap();
    }
    let deadline = std::time::Instant::now() + WATCHDOG;
    loop {
        let line = lines.recv_timeout(WATCHDOG).unwrap();
        if line == format!("tick {:#x}", last + 2) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ticks after resume"
        );
    }
    assert_eq!(running.shutdown(), ExitReason::Stopped);
}

#[test]
fn a_triple_fault_ends_the_vm_with_its_own_reason() {
    if !kvm_usable("a_triple_fault_ends_the_vm_with_its_own_reason") {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let Some(guest) = build_guest("triplefault") else {
        return;
    };
    let capture = Capture::default();
    let vm = Microvm::new(config(&guest, &capture)).unwrap();
    assert_eq!(run_guarded(vm, &capture), ExitReason::TripleFault);
    assert_eq!(capture.text(), "ready\n");
}
