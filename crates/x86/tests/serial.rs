//! The serial console's input: bytes from the host reach the guest's 16550.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

use common::{Capture, build_guest, config, kvm_usable, run_guarded};
use vessel_x86::{ExitReason, Microvm};

#[test]
fn console_input_reaches_the_guest() {
    if !kvm_usable("console_input_reaches_the_guest") {
        return;
    }
    let Some(guest) = build_guest("echo") else {
        return;
    };
    // The hook runs inside the UART's output path: it only writes to a
    // socket, and the forwarder thread feeds the UART.
    let (input, for_guest) = UnixStream::pair().unwrap();
    let input = Mutex::new(input);
    let capture = Capture::with_line_hook(move |l| {
        if l == "ready" {
            // Longer than the 64-byte receive FIFO: the forwarder must wait.
            let line = format!("{}hello, guest\n", "x".repeat(100));
            input.lock().unwrap().write_all(line.as_bytes()).unwrap();
        }
    });
    let vm = Microvm::new(config(&guest, &capture)).expect("the microvm builds");
    vm.serial_handle().forward_from(for_guest).unwrap();
    let reason = run_guarded(vm, &capture);
    let out = capture.text();
    assert_eq!(reason, ExitReason::Reset, "serial output:\n{out}");
    assert_eq!(out, format!("ready\n{}HELLO, GUEST\n", "X".repeat(100)));
}

#[test]
fn the_configured_console_input_is_forwarded() {
    if !kvm_usable("the_configured_console_input_is_forwarded") {
        return;
    }
    let Some(guest) = build_guest("echo") else {
        return;
    };
    let (mut input, for_guest) = UnixStream::pair().unwrap();
    input.write_all(b"typed ahead\n").unwrap();
    drop(input); // end of input after the line
    let capture = Capture::default();
    let mut cfg = config(&guest, &capture);
    cfg.serial_in = Some(Box::new(for_guest));
    let reason = run_guarded(Microvm::new(cfg).unwrap(), &capture);
    let out = capture.text();
    assert_eq!(reason, ExitReason::Reset, "serial output:\n{out}");
    assert_eq!(out, "ready\nTYPED AHEAD\n");
}
