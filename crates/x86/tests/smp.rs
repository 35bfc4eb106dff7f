//! Several vCPUs: the boot CPU reads the MP table and starts the others with
//! INIT/SIPI through the in-kernel LAPIC; each reports in on the serial port.

mod common;

use common::{Capture, build_guest, config, kvm_usable, run_guarded};
use vessel_x86::{ExitReason, Microvm};

fn boot_cpus(cpus: usize) {
    let Some(guest) = build_guest("smp") else {
        return;
    };
    let capture = Capture::default();
    let mut cfg = config(&guest, &capture);
    cfg.vcpus = cpus;
    let vm = Microvm::new(cfg).expect("the microvm builds");
    let reason = run_guarded(vm, &capture);
    let out = capture.text();
    assert_eq!(reason, ExitReason::Reset, "serial output:\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&format!("cpus {cpus:#x}").as_str()),
        "{out}"
    );
    assert_eq!(lines.last(), Some(&"all up"), "{out}");
    let mut ups: Vec<&str> = lines[1..lines.len() - 1].to_vec();
    ups.sort();
    let mut expected: Vec<String> = (1..cpus).map(|id| format!("cpu {id:#x} up")).collect();
    expected.sort();
    assert_eq!(ups, expected, "{out}");
}

#[test]
fn two_vcpus_both_report_in() {
    if !kvm_usable("two_vcpus_both_report_in") {
        return;
    }
    boot_cpus(2);
}

#[test]
fn four_vcpus_all_report_in() {
    if !kvm_usable("four_vcpus_all_report_in") {
        return;
    }
    boot_cpus(4);
}
