//! Instruction test programs: RISC-V assembly in tests/programs/, assembled
//! at test time with Debian's riscv64-unknown-elf-gcc, loaded at 0x8000_0000
//! and run on one hart. A program reports through the test device at
//! 0x10_0000: 0x5555 = pass, (n << 16) | 0x3333 = check n failed.
//! The harness also provides a minimal CLINT (msip, mtimecmp, mtime) for the
//! interrupt program.

use object::{Object, ObjectSegment};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use vessel_machine::{IoBuses, Next, Vcpu, VcpuEvent, dispatch};
use vessel_riscv::{
    Clock, Exit, Hart, HartConfig, HartIrq, JitMode, Mmio, MmioFault, MmuMode, PowerEvent, Ram,
    SoftVcpu,
};

const CC: &str = "riscv64-unknown-elf-gcc";
const RAM_BASE: u64 = 0x8000_0000;
const TEST_DEVICE: u64 = 0x10_0000;
const CLINT: u64 = 0x200_0000;

struct TestBus {
    result: Option<u32>,
    /// Whether `power_event` has handed the result out.
    reported: bool,
    clock: Arc<Clock>,
    irq: Arc<HartIrq>,
}

impl Mmio for TestBus {
    fn load(&mut self, paddr: u64, size: u8) -> Result<u64, MmioFault> {
        match paddr {
            p if p == CLINT && size == 4 => Ok(self.irq.msip() as u64),
            p if p == CLINT + 0x4000 && size == 8 => Ok(self.irq.mtimecmp()),
            p if p == CLINT + 0xbff8 && size == 8 => Ok(self.clock.now()),
            _ => Err(MmioFault),
        }
    }
    fn store(&mut self, paddr: u64, size: u8, value: u64) -> Result<(), MmioFault> {
        match paddr {
            TEST_DEVICE if size == 4 => {
                if self.result.is_none() {
                    self.result = Some(value as u32);
                }
                Ok(())
            }
            p if p == CLINT && size == 4 => {
                self.irq.set_msip(value & 1 != 0);
                Ok(())
            }
            p if p == CLINT + 0x4000 && size == 8 => {
                self.irq.set_mtimecmp(value);
                Ok(())
            }
            _ => Err(MmioFault),
        }
    }
    fn power_event(&mut self) -> Option<PowerEvent> {
        let r = self.result.filter(|_| !self.reported)?;
        self.reported = true;
        Some(if r == 0x5555 {
            PowerEvent::Shutdown
        } else {
            PowerEvent::Fail((r >> 16) as u16)
        })
    }
}

fn programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs")
}

/// Assemble `name.S` into an ELF; panics naming the Debian package if the
/// cross compiler is missing (make test installs it).
fn assemble(name: &str) -> Vec<u8> {
    let dir = programs_dir();
    // One file per call: tests running in parallel assemble the same program.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("riscv-{name}-{}-{n}.elf", std::process::id()));
    let status = Command::new(CC)
        .args([
            "-march=rv64gc",
            "-mabi=lp64d",
            "-nostdlib",
            "-nostartfiles",
            "-mno-relax",
            "-T",
        ])
        .arg(dir.join("link.ld"))
        .arg("-I")
        .arg(&dir)
        .arg("-o")
        .arg(&out)
        .arg(dir.join(format!("{name}.S")))
        .status();
    match status {
        Err(e) => panic!(
            "cannot run {CC} ({e}): install the Debian package gcc-riscv64-unknown-elf \
             (listed in scripts/packages.txt; `make test` installs it)"
        ),
        Ok(s) if !s.success() => panic!("{CC} failed to assemble tests/programs/{name}.S"),
        Ok(_) => {}
    }
    let elf = std::fs::read(&out).unwrap_or_else(|e| panic!("read {}: {e}", out.display()));
    let _ = std::fs::remove_file(&out);
    elf
}

/// Run a program to its verdict; returns the hart for extra checks.
/// Assemble `name` and load it into a fresh hart with the test bus.
fn load(name: &str, mmu: MmuMode, jit: JitMode) -> (Hart, TestBus, Arc<Clock>, Arc<HartIrq>) {
    let elf = assemble(name);
    let mem = vessel_machine::create_guest_memory(&[(RAM_BASE, 16 << 20)]).unwrap();
    let ram = Ram::new(&mem).unwrap();
    let file = object::File::parse(&*elf).expect("parse ELF");
    for seg in file.segments() {
        let data = seg.data().expect("segment data");
        if !data.is_empty() {
            ram.write_bytes(seg.address(), data)
                .expect("segment inside RAM");
        }
    }
    let clock = Clock::new(10_000_000);
    let irq = HartIrq::new();
    let cfg = HartConfig {
        hart_id: 0,
        mmu,
        jit,
    };
    let mut hart = Hart::new(cfg, ram, clock.clone(), irq.clone());
    hart.set_pc(file.entry());
    let bus = TestBus {
        result: None,
        reported: false,
        clock: clock.clone(),
        irq: irq.clone(),
    };
    (hart, bus, clock, irq)
}

/// Sleep a hart that executed WFI until its timer or a kick (at most 10 ms).
fn sleep_in_wfi(hart: &Hart, clock: &Clock, irq: &HartIrq) {
    let wait = hart
        .next_timer_deadline()
        .map(|t| clock.duration_until(t))
        .unwrap_or(std::time::Duration::from_millis(10));
    irq.take_kick();
    irq.wait(wait.min(std::time::Duration::from_millis(10)));
}

fn run_program_with(name: &str, mmu: MmuMode, max_instructions: u64, jit: JitMode) -> Hart {
    let (mut hart, mut bus, clock, irq) = load(name, mmu, jit);
    loop {
        match hart.run(&mut bus, 100_000) {
            Exit::Budget => {}
            Exit::Wfi => sleep_in_wfi(&hart, &clock, &irq),
            Exit::Fault(f) => panic!("{name}: CPU fault: {f}"),
        }
        if let Some(r) = bus.result {
            assert_eq!(
                r,
                0x5555,
                "{name} ({jit:?}): check {} failed (pc {:#x}, expected t6 = {:#x}; last trap cause s9 = {:#x}, \
                 tval s10 = {:#x}, epc s11 = {:#x})",
                r >> 16,
                hart.pc(),
                hart.reg(31),
                hart.reg(25),
                hart.reg(26),
                hart.reg(27)
            );
            return hart;
        }
        assert!(
            hart.instret() < max_instructions,
            "{name}: no verdict after {} instructions (pc {:#x}, last check {})",
            hart.instret(),
            hart.pc(),
            hart.reg(3)
        );
    }
}

/// The same program driven the way an engine-neutral runner drives any
/// vCPU: `Vcpu::run`, `dispatch`, then the board's handling of the event.
fn run_program_via_vcpu(name: &str, max_instructions: u64) -> Hart {
    let (hart, bus, clock, irq) = load(name, MmuMode::Sv48, JitMode::default());
    let mut vcpu = SoftVcpu::new(hart, bus);
    let buses = IoBuses::default();
    loop {
        let Ok(exit) = vcpu.run();
        match dispatch(exit, &buses) {
            Next::Run => {}
            Next::Event(VcpuEvent::Halted) => sleep_in_wfi(vcpu.hart(), &clock, &irq),
            Next::Event(VcpuEvent::Shutdown) => return vcpu.into_parts().0,
            Next::Event(other) => {
                let h = vcpu.hart();
                panic!(
                    "{name}: {other:?} (pc {:#x}, expected t6 = {:#x}, last check {})",
                    h.pc(),
                    h.reg(31),
                    h.reg(3)
                );
            }
        }
        assert!(
            vcpu.hart().instret() < max_instructions,
            "{name}: no verdict after {} instructions",
            vcpu.hart().instret()
        );
    }
}

#[test]
fn programs_through_the_vcpu_seam() {
    // Integer work, traps, and WFI with timer interrupts.
    for name in ["integer", "traps", "interrupts"] {
        let hart = run_program_via_vcpu(name, 10_000_000);
        assert!(hart.instret() > 0, "{name}");
    }
}

/// Run a program interpreted, then with every block compiled on its first
/// run (the JIT), on the default MMU mode; both must pass.
fn run_program(name: &str) -> Hart {
    run_program_with(name, MmuMode::Sv48, 10_000_000, JitMode::Off);
    let hart = run_program_with(name, MmuMode::Sv48, 10_000_000, JitMode::After(1));
    assert!(hart.jit_blocks() > 0, "{name}: the JIT compiled nothing");
    hart
}

#[test]
fn integer() {
    run_program("integer");
}

#[test]
fn m_extension() {
    run_program("m");
}

#[test]
fn a_extension() {
    run_program("a");
}

#[test]
fn traps_and_delegation() {
    run_program("traps");
}

#[test]
fn csrs() {
    run_program("csr");
}

#[test]
fn paging_sv39() {
    for jit in [JitMode::Off, JitMode::After(1)] {
        run_program_with("paging", MmuMode::Sv39, 10_000_000, jit);
    }
}

#[test]
fn paging_sv48() {
    run_program("paging_sv48");
}

#[test]
fn c_extension() {
    run_program("c");
}

#[test]
fn f_extension() {
    run_program("f");
}

#[test]
fn d_extension() {
    run_program("d");
}

#[test]
fn interrupts_and_timers() {
    run_program("interrupts");
}

/// Guest MIPS on a tight integer loop: `cargo test --release -p vessel-riscv
/// --test programs -- --ignored --nocapture mips`.
#[test]
#[ignore = "benchmark: prints guest MIPS, run on demand"]
fn mips() {
    // Hart::run directly, then through the Vcpu seam, in the same run.
    for via_seam in [false, true] {
        let how = if via_seam { "Vcpu seam" } else { "Hart::run" };
        let start = std::time::Instant::now();
        let cpu_start = thread_cpu_ns();
        let hart = if via_seam {
            run_program_via_vcpu("loop", u64::MAX)
        } else {
            run_program_with("loop", MmuMode::Sv48, u64::MAX, JitMode::default())
        };
        report_mips(how, hart.instret(), start, cpu_start);
    }
}

fn report_mips(how: &str, instret: u64, start: std::time::Instant, cpu_start: Option<u64>) {
    let secs = start.elapsed().as_secs_f64();
    let n = instret as f64;
    println!(
        "loop ({how}): {n} instructions in {secs:.3} s wall = {:.1} MIPS",
        n / secs / 1e6
    );
    // On a loaded machine wall time says little: also report on-CPU time.
    if let (Some(a), Some(b)) = (cpu_start, thread_cpu_ns()) {
        let cpu = (b - a) as f64 / 1e9;
        println!(
            "loop ({how}): {cpu:.3} s on CPU = {:.1} MIPS per host core",
            n / cpu / 1e6
        );
    }
}

/// Nanoseconds this thread has run on a CPU (Linux schedstat), if available.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

#[test]
fn zba_zbb_zbs() {
    run_program("zb");
}
