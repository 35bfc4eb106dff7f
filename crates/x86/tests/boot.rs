//! The Linux 64-bit boot protocol end to end: a guest entered at its ELF
//! entry in long mode reads boot_params and reports what it found.

mod common;

use std::io::Write;

use common::{Capture, build_guest, config, kvm_usable, run_guarded};
use vessel_x86::{ExitReason, Microvm};

#[test]
fn the_guest_sees_hdrs_e820_cmdline_and_initrd() {
    if !kvm_usable("the_guest_sees_hdrs_e820_cmdline_and_initrd") {
        return;
    }
    let Some(guest) = build_guest("bootparams") else {
        return;
    };
    // An initrd whose size is not a multiple of a page, with varied bytes.
    let initrd_bytes: Vec<u8> = (0..12_345u32).map(|i| (i * 7 + i / 256) as u8).collect();
    let initrd_path = guest.dir.path().join("initrd.img");
    std::fs::File::create(&initrd_path)
        .unwrap()
        .write_all(&initrd_bytes)
        .unwrap();
    let capture = Capture::default();
    let mut cfg = config(&guest, &capture);
    cfg.initrd = Some(initrd_path);
    cfg.cmdline = "console=ttyS0 vessel.test=boot-params root=/dev/vda".into();
    let vm = Microvm::new(cfg).expect("the microvm builds");
    let info = vm.boot_info().clone();
    let reason = run_guarded(vm, &capture);
    let out = capture.text();
    assert_eq!(reason, ExitReason::Reset, "serial output:\n{out}");

    let (initrd_addr, initrd_size) = info.initrd.expect("an initrd was loaded");
    let sum: u64 = initrd_bytes.iter().map(|&b| u64::from(b)).sum();
    let mut expected = String::from("hdrs ok\n");
    expected += &format!("e820 {:#x}\n", info.e820.len());
    for e in &info.e820 {
        expected += &format!("e820 {:#x} {:#x} {:#x}\n", e.addr, e.size, e.kind);
    }
    expected += &format!("cmdline {:#x} {}\n", info.cmdline.len(), info.cmdline);
    expected += &format!("initrd {initrd_addr:#x} {initrd_size:#x} {sum:#x}\n");
    expected += "done\n";
    assert_eq!(out, expected);
    // And the values are the ones asked for, not only self-consistent.
    assert_eq!(
        info.cmdline,
        "console=ttyS0 vessel.test=boot-params root=/dev/vda"
    );
    assert_eq!(initrd_size, 12_345);
    assert_eq!(info.e820.len(), 2);
    assert_eq!(info.e820[1].addr + info.e820[1].size, 64 << 20);
}
