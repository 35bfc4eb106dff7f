//! The ACPI tables as a guest finds them: from boot_params' acpi_rsdp_addr
//! through the XSDT to the FADT, DSDT and MADT, every checksum holding, and
//! the MADT's IOAPIC id equal to the one the in-kernel IOAPIC reports.

mod common;

use common::{Capture, build_guest, config, kvm_usable, run_guarded};
use vessel_x86::{DiskSpec, ExitReason, Microvm};

#[test]
fn the_guest_walks_the_acpi_tables_and_counts_its_cpus() {
    if !kvm_usable("the_guest_walks_the_acpi_tables_and_counts_its_cpus") {
        return;
    }
    let Some(guest) = build_guest("acpi") else {
        return;
    };
    // A disk, so that the DSDT describes a virtio-mmio device too.
    let disk = guest.dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 4096]).unwrap();
    let capture = Capture::default();
    let mut cfg = config(&guest, &capture);
    cfg.vcpus = 3;
    cfg.disks.push(DiskSpec {
        path: disk,
        read_only: true,
        format: None,
        serial: None,
    });
    let vm = Microvm::new(cfg).expect("the microvm builds");
    let reason = run_guarded(vm, &capture);
    let out = capture.text();
    assert_eq!(reason, ExitReason::Reset, "serial output:\n{out}");
    assert_eq!(
        out, "rsdp ok\nxsdt 0x2\nFACP ok\nDSDT ok\nAPIC ok\nlapics 0x3\nioapic 0x0 0x0\ndone\n",
        "the MADT's IOAPIC id is the chip's own (layout::IOAPIC_ID = 0)"
    );
}
