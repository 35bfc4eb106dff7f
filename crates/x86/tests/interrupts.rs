//! Interrupt delivery: an irqfd-raised edge on a GSI reaches the guest's
//! handler through the in-kernel IOAPIC and LAPIC, waking a halted vCPU.

mod common;

use std::sync::{Arc, Condvar, Mutex, OnceLock};

use common::{Capture, build_guest, config, kvm_usable, run_guarded};
use vessel_machine::IrqLine;
use vessel_x86::{ExitReason, IrqFd, Microvm};

/// The GSI the interrupt guest routes to its handler (tests/guests/interrupts.S).
const GUEST_GSI: u32 = 5;

#[test]
fn irqfd_interrupts_wake_the_halted_guest_and_reach_its_handler() {
    if !kvm_usable("irqfd_interrupts_wake_the_halted_guest_and_reach_its_handler") {
        return;
    }
    let Some(guest) = build_guest("interrupts") else {
        return;
    };
    let line: Arc<OnceLock<Arc<IrqFd>>> = Arc::default();
    let hook_line = Arc::clone(&line);
    // Raise the line (as a device would: high, then low once handled) each
    // time the guest says it is waiting for the next interrupt.
    let capture = Capture::with_line_hook(move |l| {
        if (l == "ready" || l == "irq 0x1")
            && let Some(irq) = hook_line.get()
        {
            irq.set_level(true);
            irq.set_level(false);
        }
    });
    let vm = Microvm::new(config(&guest, &capture)).expect("the microvm builds");
    assert!(line.set(vm.irq_line(GUEST_GSI).unwrap()).is_ok());
    let reason = run_guarded(vm, &capture);
    let out = capture.text();
    assert_eq!(reason, ExitReason::Reset, "serial output:\n{out}");
    assert_eq!(out, "ready\nirq 0x1\nirq 0x2\ndone\n");
}

#[test]
fn an_interrupt_on_a_masked_gsi_does_not_reach_the_guest() {
    if !kvm_usable("an_interrupt_on_a_masked_gsi_does_not_reach_the_guest") {
        return;
    }
    let Some(guest) = build_guest("interrupts") else {
        return;
    };
    // GSI 6 stays masked in the IOAPIC: the guest must stay halted, and only
    // the host's shutdown ends it.
    let wrong: Arc<OnceLock<Arc<IrqFd>>> = Arc::default();
    let ready = Arc::new((Mutex::new(false), Condvar::new()));
    let (hook_wrong, hook_ready) = (Arc::clone(&wrong), Arc::clone(&ready));
    let capture = Capture::with_line_hook(move |l| {
        if l == "ready" {
            if let Some(irq) = hook_wrong.get() {
                irq.set_level(true);
            }
            *hook_ready.0.lock().unwrap() = true;
            hook_ready.1.notify_all();
        }
    });
    let vm = Microvm::new(config(&guest, &capture)).expect("the microvm builds");
    assert!(wrong.set(vm.irq_line(GUEST_GSI + 1).unwrap()).is_ok());
    let running = vm.start().unwrap();
    let (lock, cv) = &*ready;
    let (guard, timeout) = cv
        .wait_timeout_while(lock.lock().unwrap(), common::WATCHDOG, |r| !*r)
        .unwrap();
    assert!(
        !timeout.timed_out(),
        "the guest never got ready: {}",
        capture.text()
    );
    drop(guard);
    // Let the guest run a little: a wrongly routed interrupt would print now.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(running.shutdown(), ExitReason::Stopped);
    assert_eq!(capture.text(), "ready\n");
}
