//! The run loop's exits, on hand-written machine code (no assembler needed).

use vessel_riscv::{Clock, Exit, Hart, HartConfig, HartIrq, NoMmio, Ram};

const BASE: u64 = 0x8000_0000;

fn hart_with(code: &[u32]) -> Hart {
    let mem = vessel_machine::create_guest_memory(&[(BASE, 1 << 20)]).unwrap();
    let ram = Ram::new(&mem).unwrap();
    for (i, w) in code.iter().enumerate() {
        ram.write(BASE + 4 * i as u64, 4, *w as u64).unwrap();
    }
    let mut h = Hart::new(
        HartConfig::default(),
        ram,
        Clock::new(10_000_000),
        HartIrq::new(),
    );
    h.set_pc(BASE);
    h
}

#[test]
fn budget_is_respected() {
    // loop: addi a0, a0, 1; j loop
    let mut h = hart_with(&[0x0015_0513, 0xffdf_f06f]);
    assert_eq!(h.run(&mut NoMmio, 1000), Exit::Budget);
    assert_eq!(h.instret(), 1000);
    assert_eq!(h.reg(10), 500);
    assert_eq!(h.run(&mut NoMmio, 1), Exit::Budget);
    assert_eq!(h.instret(), 1001);
}

#[test]
fn wfi_without_interrupts_exits() {
    // wfi; addi a0, zero, 7
    let mut h = hart_with(&[0x1050_0073, 0x0070_0513]);
    assert_eq!(h.run(&mut NoMmio, 100), Exit::Wfi);
    assert_eq!(h.pc(), BASE + 4, "pc is past the wfi");
    assert_eq!(h.next_timer_deadline(), None);
    assert_eq!(h.run(&mut NoMmio, 1), Exit::Budget);
    assert_eq!(h.reg(10), 7);
}

#[test]
fn unrecoverable_trap_loop_is_a_fault() {
    // An illegal instruction with mtvec = 0 (nothing there): the handler
    // fetch faults forever; the hart must stop with a fault, not spin.
    let mut h = hart_with(&[0]);
    match h.run(&mut NoMmio, 1_000_000) {
        Exit::Fault(f) => {
            assert_eq!(f.pc, 0);
            assert_eq!(f.cause, 1, "instruction access fault");
            let text = f.to_string();
            assert!(text.contains("pc 0x0"), "{text}");
        }
        other => panic!("expected a fault, got {other:?}"),
    }
}

#[test]
fn isa_description() {
    let h = hart_with(&[]);
    assert_eq!(
        h.isa_string(),
        "rv64imafdc_zicsr_zifencei_zicntr_zba_zbb_zbs_sstc"
    );
    assert_eq!(h.mmu_type(), "riscv,sv48");
    assert!(h.isa_extensions().contains(&"sstc"));
}

#[test]
fn harts_can_move_to_other_threads() {
    fn assert_send<T: Send>() {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send::<Hart>();
    assert_send_sync::<Ram>();
    assert_send_sync::<HartIrq>();
    assert_send_sync::<Clock>();
}

#[test]
fn random_code_never_panics_the_emulator() {
    // csrw mtvec, t0 (t0 = BASE), then 64 KiB of pseudo-random words: every
    // trap lands back at BASE, so the hart keeps running random code in
    // whatever privilege and paging state that code reaches.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut total = 0;
    for seed in 0..8u64 {
        let mut words = vec![0x3052_9073u32];
        words.extend((0..16384).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u32
        }));
        let mut h = hart_with(&words);
        // Registers point into RAM so loads and stores sometimes hit it.
        for r in 1..32 {
            h.set_reg(r, BASE + (r as u64) * 2048 + seed);
        }
        h.set_reg(5, BASE);
        let mut left = 100_000u64;
        while left > 0 {
            match h.run(&mut NoMmio, 10_000) {
                Exit::Budget => left -= 10_000,
                Exit::Wfi => left = left.saturating_sub(1),
                Exit::Fault(f) => {
                    // A fault is a clean stop; it must describe itself.
                    assert!(!f.to_string().is_empty());
                    break;
                }
            }
        }
        total += h.instret();
    }
    assert!(
        total > 100_000,
        "random code retired only {total} instructions"
    );
}

#[test]
fn handler_that_is_itself_illegal_is_a_fault() {
    // csrw mtvec, t0 (t0 = BASE + 8); an illegal word; the handler at BASE + 8
    // is illegal too: every trap re-enters it without retiring anything.
    let mut h = hart_with(&[0x3052_9073, 0, 0xffff_ffff]);
    h.set_reg(5, BASE + 8);
    match h.run(&mut NoMmio, 1_000_000) {
        Exit::Fault(f) => {
            assert_eq!(f.cause, 2, "illegal instruction");
            assert_eq!(f.pc, BASE + 8);
            assert_eq!(f.tval, 0xffff_ffff);
        }
        other => panic!("expected a fault, got {other:?}"),
    }
}
