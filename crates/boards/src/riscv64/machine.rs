//! The assembled virt machine: RAM, harts, devices on a bus, the boot
//! images in place, and the run loop.
//!
//! The harts run round-robin on the calling thread, a slice of instructions
//! each. A hart that executes WFI is skipped until something may have woken
//! it (an interrupt wire changed, or its timer came due); when every hart
//! waits, the thread sleeps until the earliest timer deadline or a wake-up
//! from a device or the console.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vessel_machine::vm_memory::{Bytes, GuestAddress};
use vessel_machine::{Bus, BusDevice, GuestMemoryMmap, IrqLine};
use vessel_riscv::{Clock, CpuFault, Exit, Hart, HartConfig, HartIrq, Mmio, MmioFault, Ram};

use super::boot::{self, BootError, Firmware, KernelImage};
use super::clint::Clint;
use super::events::{Events, StopReason};
use super::fdt::{self, CpuNode, FdtConfig, FdtError};
use super::layout::*;
use super::plic::{Plic, PlicMmio, PlicSource, SharedPlic};
use super::profile::{self, ProfileError, Profiler};
use super::rtc::GoldfishRtc;
use super::test_dev::TestDevice;
use super::uart::Uart;
use super::virtio_slot::EmptyVirtioSlot;
use super::wires::{HartLines, TimeBase};
use crate::console::{ConsoleOutput, Seen};

/// Instructions a hart runs before the next one gets its turn.
const SLICE: u64 = 20_000;
/// Instructions a lone hart runs between two looks of the run loop at its
/// own business (stop and pause requests, the RTC alarm, a panic's grace
/// time): each look takes several locks that device threads take too.
const LONE_SLICE: u64 = 1_000_000;
/// How long the rest of a panic report may take before vessel stops.
const PANIC_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum VirtError {
    #[error("--cpus {0}: the virt board takes 1 to {MAX_CPUS} harts")]
    Cpus(usize),
    #[error("--memory {0} bytes: the virt board needs 1 MiB to 16 GiB, in whole KiB")]
    Memory(u64),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error(transparent)]
    Fdt(#[from] FdtError),
    #[error("cannot map guest RAM: {0}")]
    GuestMemory(#[from] vessel_machine::MemoryError),
    #[error("cannot set up the CPU: {0}")]
    Cpu(#[from] vessel_riscv::CpuError),
    #[error("cannot write the boot images into guest RAM at {addr:#x}: {reason}")]
    Load { addr: u64, reason: String },
    #[error("board wiring: {0}")]
    Bus(#[from] vessel_machine::BusError),
    #[error("all {VIRTIO_COUNT} virtio-mmio slots are taken")]
    NoVirtioSlot,
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

/// What to boot and on how much machine.
#[derive(Debug, Clone)]
pub struct VirtConfig {
    pub cpus: usize,
    pub memory: u64,
    pub firmware: PathBuf,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub bootargs: String,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Stopped(StopReason),
    Fault(CpuFault),
}

/// A finished run, with counters for `VESSEL_STATS`.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub outcome: Outcome,
    pub instructions: u64,
    pub elapsed: Duration,
}

/// The board's wires into one hart: the CPU's `HartIrq`, plus a wake-up of
/// the run loop whenever a wire changes.
struct Wired {
    irq: Arc<HartIrq>,
    events: Arc<Events>,
}

impl HartLines for Wired {
    fn set_msip(&self, on: bool) {
        self.irq.set_msip(on);
        self.events.wake();
    }
    fn msip(&self) -> bool {
        self.irq.msip()
    }
    fn set_mtimecmp(&self, value: u64) {
        self.irq.set_mtimecmp(value);
        self.events.wake();
    }
    fn mtimecmp(&self) -> u64 {
        self.irq.mtimecmp()
    }
    fn set_meip(&self, on: bool) {
        self.irq.set_meip(on);
        self.events.wake();
    }
    fn set_seip(&self, on: bool) {
        self.irq.set_seip(on);
        self.events.wake();
    }
}

struct ClockTime(Arc<Clock>);

impl TimeBase for ClockTime {
    fn now(&self) -> u64 {
        self.0.now()
    }
}

/// Everything that is not RAM, as the harts see it.
struct BoardMmio {
    bus: Bus,
    /// Loads and stores so far (for the profiler).
    accesses: u64,
}

impl Mmio for BoardMmio {
    fn load(&mut self, paddr: u64, size: u8) -> Result<u64, MmioFault> {
        self.accesses = self.accesses.wrapping_add(1);
        let mut bytes = [0u8; 8];
        let len = (size as usize).min(8);
        self.bus
            .read(paddr, &mut bytes[..len])
            .map_err(|_| MmioFault)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn store(&mut self, paddr: u64, size: u8, value: u64) -> Result<(), MmioFault> {
        self.accesses = self.accesses.wrapping_add(1);
        let len = (size as usize).min(8);
        self.bus
            .write(paddr, &value.to_le_bytes()[..len])
            .map_err(|_| MmioFault)
    }
}

/// A handle to feed console input into the guest's UART from another thread.
#[derive(Clone)]
pub struct ConsoleInput {
    uart: Arc<Mutex<Uart>>,
    events: Arc<Events>,
}

impl ConsoleInput {
    /// Queue `bytes`, waiting while the UART's FIFO is full (as a slow
    /// serial line would). Gives up if the machine has stopped.
    pub fn send(&self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = self
                .uart
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .enqueue(bytes);
            bytes = &bytes[n..];
            if n == 0 {
                if self.events.stop_reason().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    /// The user asked to quit (Ctrl-A x).
    pub fn quit(&self) {
        self.events.stop(StopReason::Quit);
    }

    /// vessel got a termination signal.
    pub fn signal(&self, signal: i32) {
        self.events.stop(StopReason::Signal(signal));
    }
}

/// Remembers the kernel's panic line and stops the machine at the end of
/// its report.
fn panic_watcher(
    panic: &Arc<Mutex<Option<(String, Instant)>>>,
    events: &Arc<Events>,
) -> Box<dyn FnMut(Seen) + Send> {
    let panic = panic.clone();
    let events = events.clone();
    Box::new(move |seen| match seen {
        Seen::Panic(line) => {
            let mut p = panic.lock().unwrap_or_else(|p| p.into_inner());
            if p.is_none() {
                *p = Some((line, Instant::now()));
            }
        }
        Seen::PanicEnd => {
            let p = panic.lock().unwrap_or_else(|p| p.into_inner());
            let line = p.as_ref().map_or_else(String::new, |(l, _)| l.clone());
            events.stop(StopReason::KernelPanic(line));
        }
    })
}

pub struct VirtMachine {
    harts: Vec<Hart>,
    mmio: BoardMmio,
    mem: GuestMemoryMmap,
    events: Arc<Events>,
    clock: Arc<Clock>,
    uart: Arc<Mutex<Uart>>,
    rtc: Arc<Mutex<GoldfishRtc>>,
    plic: SharedPlic,
    virtio_used: usize,
    panic: Arc<Mutex<Option<(String, Instant)>>>,
}

impl VirtMachine {
    /// Check the images, build the board and put everything in place.
    /// Guest console output goes to `console`.
    pub fn new(config: &VirtConfig, console: Box<dyn Write + Send>) -> Result<Self, VirtError> {
        if config.cpus == 0 || config.cpus > MAX_CPUS {
            return Err(VirtError::Cpus(config.cpus));
        }
        if config.memory < (1 << 20)
            || config.memory > (16 << 30)
            || !config.memory.is_multiple_of(1024)
        {
            return Err(VirtError::Memory(config.memory));
        }

        // Read and check every image before allocating anything.
        let kernel = match &config.kernel {
            Some(p) => Some(KernelImage::parse(p, boot::read_file("kernel", p)?)?),
            None => None,
        };
        let kernel_addr = DRAM_BASE
            + kernel
                .as_ref()
                .map_or(boot::DEFAULT_KERNEL_OFFSET, |k| k.text_offset);
        let firmware = Firmware::parse(
            &config.firmware,
            boot::read_file("firmware", &config.firmware)?,
            kernel_addr,
        )?;
        let initrd = match &config.initrd {
            Some(p) => Some(boot::read_file("initrd", p)?),
            None => None,
        };

        let events = Arc::new(Events::new());
        let clock = Clock::new(TIMEBASE_HZ);
        let irqs: Vec<Arc<HartIrq>> = (0..config.cpus).map(|_| HartIrq::new()).collect();
        let lines: Vec<Arc<dyn HartLines>> = irqs
            .iter()
            .map(|irq| {
                Arc::new(Wired {
                    irq: irq.clone(),
                    events: events.clone(),
                }) as Arc<dyn HartLines>
            })
            .collect();

        let mem = vessel_machine::create_guest_memory(&[(DRAM_BASE, config.memory)])?;
        let ram = Ram::new(&mem)?;
        let harts: Vec<Hart> = irqs
            .iter()
            .enumerate()
            .map(|(i, irq)| {
                let cfg = HartConfig {
                    hart_id: i as u64,
                    ..HartConfig::default()
                };
                Hart::new(cfg, ram.clone(), clock.clone(), irq.clone())
            })
            .collect();

        // The device tree: measure it once, place the images, write it.
        let mut fdt_config = FdtConfig {
            cpus: harts
                .iter()
                .map(|h| CpuNode {
                    isa: h.isa_string(),
                    extensions: h.isa_extensions().into_iter().map(String::from).collect(),
                    mmu_type: h.mmu_type().to_string(),
                })
                .collect(),
            ram_size: config.memory,
            bootargs: config.bootargs.clone(),
            initrd: initrd.as_ref().map(|_| (0, 0)),
            rng_seed: rng_seed(),
        };
        // OpenSBI grows the tree in place: leave it room.
        let fdt_room = fdt::build(&fdt_config)?.len() as u64 + 64 * 1024;
        let placement = boot::place(
            config.memory,
            firmware.end,
            (kernel_addr, kernel.as_ref().map_or(0, |k| k.mem_size)),
            initrd.as_ref().map_or(0, |i| i.len() as u64),
            fdt_room,
        )?;
        fdt_config.initrd = placement.initrd;
        let dtb = fdt::build(&fdt_config)?;

        let write = |addr: u64, data: &[u8]| {
            mem.write_slice(data, GuestAddress(addr))
                .map_err(|e| VirtError::Load {
                    addr,
                    reason: e.to_string(),
                })
        };
        for (addr, bytes) in &firmware.segments {
            write(*addr, bytes)?;
        }
        if let Some(k) = &kernel {
            write(kernel_addr, &k.data)?;
        }
        if let (Some(data), Some((start, _))) = (&initrd, placement.initrd) {
            write(start, data)?;
        }
        write(placement.fdt_addr, &dtb)?;
        write(placement.info_addr, &boot::fw_dynamic_info(kernel_addr))?;

        let mut harts = harts;
        for (i, h) in harts.iter_mut().enumerate() {
            h.set_pc(firmware.entry);
            h.set_reg(10, i as u64);
            h.set_reg(11, placement.fdt_addr);
            h.set_reg(12, placement.info_addr);
        }

        // Devices.
        let plic: SharedPlic = Arc::new(Mutex::new(Plic::new(lines.clone())));
        let panic: Arc<Mutex<Option<(String, Instant)>>> = Arc::default();
        let console = ConsoleOutput::new(console, panic_watcher(&panic, &events));
        let uart = Arc::new(Mutex::new(Uart::new(
            Arc::new(PlicSource::new(plic.clone(), UART_IRQ)),
            Box::new(console),
        )));
        let rtc = Arc::new(Mutex::new(GoldfishRtc::new(Arc::new(PlicSource::new(
            plic.clone(),
            RTC_IRQ,
        )))));
        let mut bus = Bus::new();
        bus.insert(
            TEST_BASE,
            TEST_SIZE,
            Arc::new(Mutex::new(TestDevice::new(events.clone()))),
        )?;
        bus.insert(RTC_BASE, RTC_SIZE, rtc.clone())?;
        bus.insert(
            CLINT_BASE,
            CLINT_SIZE,
            Arc::new(Mutex::new(Clint::new(
                lines,
                Arc::new(ClockTime(clock.clone())),
            ))),
        )?;
        bus.insert(
            PLIC_BASE,
            PLIC_SIZE,
            Arc::new(Mutex::new(PlicMmio(plic.clone()))),
        )?;
        bus.insert(UART_BASE, UART_SIZE, uart.clone())?;

        Ok(Self {
            harts,
            mmio: BoardMmio { bus, accesses: 0 },
            mem,
            events,
            clock,
            uart,
            rtc,
            plic,
            virtio_used: 0,
            panic,
        })
    }

    /// Guest RAM, for devices that do DMA.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Put a virtio-mmio transport into the next free slot: `make` gets guest
    /// memory and the slot's interrupt line. Returns the slot number.
    ///
    /// Slots are handed out from the highest address down, as QEMU does:
    /// the device tree lists them in that order and Linux numbers devices
    /// in device-tree order, so the first disk added is the guest's `vda`.
    pub fn add_virtio_mmio<F>(&mut self, make: F) -> Result<usize, VirtError>
    where
        F: FnOnce(&GuestMemoryMmap, Arc<dyn IrqLine>) -> Arc<Mutex<dyn BusDevice>>,
    {
        if self.virtio_used >= VIRTIO_COUNT {
            return Err(VirtError::NoVirtioSlot);
        }
        let slot = VIRTIO_COUNT - 1 - self.virtio_used;
        let irq = Arc::new(PlicSource::new(self.plic.clone(), VIRTIO_IRQ + slot as u32));
        let device = make(&self.mem, irq);
        self.mmio
            .bus
            .insert(virtio_base(slot), VIRTIO_SIZE, device)?;
        self.virtio_used += 1;
        Ok(slot)
    }

    /// `out` watched for the kernel's panic report as the UART's output is:
    /// for a console other than the UART (virtio-console's `hvc0`).
    pub fn watched_console(&self, out: Box<dyn Write + Send>) -> Box<dyn Write + Send> {
        Box::new(ConsoleOutput::new(
            out,
            panic_watcher(&self.panic, &self.events),
        ))
    }

    /// A handle for console input and quitting, usable from other threads.
    pub fn console_input(&self) -> ConsoleInput {
        ConsoleInput {
            uart: self.uart.clone(),
            events: self.events.clone(),
        }
    }

    /// The machine's event mailbox (stop requests, wake-ups).
    pub fn events(&self) -> Arc<Events> {
        self.events.clone()
    }

    fn fill_empty_slots(&mut self) -> Result<(), VirtError> {
        for slot in 0..VIRTIO_COUNT - self.virtio_used {
            self.mmio.bus.insert(
                virtio_base(slot),
                VIRTIO_SIZE,
                Arc::new(Mutex::new(EmptyVirtioSlot)),
            )?;
        }
        self.virtio_used = VIRTIO_COUNT;
        Ok(())
    }

    /// Run until the guest powers off, resets, fails, panics, faults or the
    /// user quits.
    pub fn run(&mut self) -> Result<RunReport, VirtError> {
        self.fill_empty_slots()?;
        let mut profiler = Profiler::from_env()?;
        let start = Instant::now();
        let mut outcome = self.run_loop(&mut profiler)?;
        if let Some(p) = profiler {
            p.finish(profile::unix_now())?;
        }
        // A kernel booted with panic=N reboots (or powers off) after its
        // panic report: the panic is still why it stopped.
        if let Outcome::Stopped(StopReason::Reset | StopReason::PowerOff) = outcome
            && let Some((line, _)) = &*self.panic.lock().unwrap_or_else(|p| p.into_inner())
        {
            outcome = Outcome::Stopped(StopReason::KernelPanic(line.clone()));
        }
        Ok(RunReport {
            outcome,
            instructions: self.harts.iter().map(|h| h.instret()).sum(),
            elapsed: start.elapsed(),
        })
    }

    /// The loop proper; `profiler` (`VESSEL_PROFILE`) samples each slice.
    fn run_loop(&mut self, profiler: &mut Option<Profiler>) -> Result<Outcome, VirtError> {
        // Per hart: the wake-up generation at which it began to wait.
        let mut waiting: Vec<Option<u64>> = vec![None; self.harts.len()];
        let slice = if self.harts.len() == 1 {
            LONE_SLICE
        } else {
            SLICE
        };
        loop {
            if let Some(reason) = self.events.stop_reason() {
                return Ok(Outcome::Stopped(reason));
            }
            if self.events.is_paused() {
                // Paused by a supervisor: no instruction runs until resumed.
                self.events.wait_while_paused();
                continue;
            }
            if let Some(line) = self.panic_timed_out() {
                return Ok(Outcome::Stopped(StopReason::KernelPanic(line)));
            }
            self.rtc.lock().unwrap_or_else(|p| p.into_inner()).poll();

            let generation = self.events.generation();
            let now = self.clock.now();
            let mut ran = false;
            for (i, hart) in self.harts.iter_mut().enumerate() {
                if let Some(since) = waiting[i] {
                    let timer_due = hart.next_timer_deadline().is_some_and(|d| d <= now);
                    if since == generation && !timer_due {
                        continue;
                    }
                    waiting[i] = None;
                }
                ran = true;
                let Some(p) = profiler.as_mut() else {
                    match hart.run(&mut self.mmio, slice) {
                        Exit::Budget => {}
                        // Wake-ups that happened during this slice count as
                        // news for the waiting hart: compare with the old value.
                        Exit::Wfi => waiting[i] = Some(generation),
                        Exit::Fault(fault) => return Ok(Outcome::Fault(fault)),
                    }
                    if self.events.stop_reason().is_some() {
                        break;
                    }
                    continue;
                };
                let before = hart.instret();
                let exit = hart.run(&mut self.mmio, p.next_slice());
                let retired = hart.instret() - before;
                p.mmio(std::mem::take(&mut self.mmio.accesses));
                match exit {
                    Exit::Budget => {
                        p.sample(profile::unix_now(), hart.privilege(), hart.pc(), retired)?
                    }
                    Exit::Wfi => {
                        p.retired(profile::unix_now(), retired)?;
                        waiting[i] = Some(generation);
                    }
                    Exit::Fault(fault) => return Ok(Outcome::Fault(fault)),
                }
                if self.events.stop_reason().is_some() {
                    break;
                }
            }
            if ran {
                continue;
            }
            // Every hart waits: sleep until the earliest timer or a wake-up.
            let deadline = self
                .harts
                .iter()
                .filter_map(|h| h.next_timer_deadline())
                .min();
            let mut timeout = deadline.map(|d| self.clock.duration_until(d));
            if self
                .panic
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
            {
                timeout = Some(timeout.map_or(PANIC_GRACE, |t| t.min(PANIC_GRACE)));
            }
            // The RTC alarm is polled: do not sleep past a second.
            timeout =
                Some(timeout.map_or(Duration::from_secs(1), |t| t.min(Duration::from_secs(1))));
            let slept = Instant::now();
            self.events.sleep(generation, timeout);
            if let Some(p) = profiler.as_mut() {
                p.idle(profile::unix_now(), slept.elapsed())?;
            }
        }
    }

    fn panic_timed_out(&self) -> Option<String> {
        let p = self.panic.lock().unwrap_or_else(|p| p.into_inner());
        match &*p {
            Some((line, at)) if at.elapsed() >= PANIC_GRACE => Some(line.clone()),
            _ => None,
        }
    }
}

/// 32 bytes of host entropy for the guest kernel, as QEMU passes.
fn rng_seed() -> Vec<u8> {
    use std::io::Read;
    let mut seed = vec![0u8; 32];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut seed)) {
        Ok(()) => seed,
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn temp(name: &str, data: &[u8]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("vessel-boards-machine-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    /// A minimal Linux RISC-V Image header with `size` bytes in memory.
    fn image(size: u64) -> Vec<u8> {
        let mut d = vec![0u8; 8192];
        d[8..16].copy_from_slice(&0x20_0000u64.to_le_bytes());
        d[16..24].copy_from_slice(&size.to_le_bytes());
        d[0x38..0x3c].copy_from_slice(b"RSC\x05");
        d[0x100] = 0xab;
        d
    }

    fn config(fw: &Path, kernel: &Path, initrd: &Path, cpus: usize) -> VirtConfig {
        VirtConfig {
            cpus,
            memory: 64 << 20,
            firmware: fw.to_owned(),
            kernel: Some(kernel.to_owned()),
            initrd: Some(initrd.to_owned()),
            bootargs: "console=ttyS0".into(),
        }
    }

    #[test]
    fn boot_state_follows_fw_dynamic() {
        let fw = temp("fw.bin", &[0x73, 0x00, 0x50, 0x10]);
        let kernel = temp("Image", &image(4 << 20));
        let initrd_data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let initrd = temp("initrd", &initrd_data);
        let m =
            VirtMachine::new(&config(&fw, &kernel, &initrd, 3), Box::new(std::io::sink())).unwrap();
        let mem = m.memory();
        let read = |addr: u64, len: usize| {
            let mut buf = vec![0u8; len];
            mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
            buf
        };
        assert_eq!(read(DRAM_BASE, 4), [0x73, 0x00, 0x50, 0x10]);
        assert_eq!(read(0x8020_0100, 1), [0xab], "kernel at RAM + text_offset");

        for (i, h) in m.harts.iter().enumerate() {
            assert_eq!(h.pc(), DRAM_BASE);
            assert_eq!(h.reg(10), i as u64, "a0 = hart id");
            assert_eq!(h.reg(11), m.harts[0].reg(11), "one device tree for all");
            assert_eq!(h.reg(12), m.harts[0].reg(12));
        }
        let info = read(m.harts[0].reg(12), boot::FW_DYNAMIC_INFO_LEN);
        assert_eq!(info, boot::fw_dynamic_info(0x8020_0000));

        let dtb_addr = m.harts[0].reg(11);
        let header = read(dtb_addr, 8);
        let total = u32::from_be_bytes(header[4..8].try_into().unwrap()) as usize;
        let dtb = read(dtb_addr, total);
        let dt = ::fdt::Fdt::new(&dtb).unwrap();
        assert_eq!(dt.cpus().count(), 3);
        let chosen = dt.find_node("/chosen").unwrap();
        let start = chosen
            .property("linux,initrd-start")
            .unwrap()
            .as_usize()
            .unwrap() as u64;
        let end = chosen
            .property("linux,initrd-end")
            .unwrap()
            .as_usize()
            .unwrap() as u64;
        assert_eq!(end - start, initrd_data.len() as u64);
        assert_eq!(read(start, initrd_data.len()), initrd_data);
        assert!(
            start >= 0x8020_0000 + (4 << 20),
            "initrd above the kernel's bss"
        );
        assert!(end <= m.harts[0].reg(12) && dtb_addr + total as u64 <= DRAM_BASE + (64 << 20));
        let isa = dt
            .cpus()
            .next()
            .unwrap()
            .property("riscv,isa")
            .unwrap()
            .as_str();
        assert_eq!(isa, Some(m.harts[0].isa_string().as_str()));
    }

    #[test]
    fn refuses_bad_machine_sizes() {
        let fw = temp("fw2.bin", &[0x73, 0x00, 0x50, 0x10]);
        let kernel = temp("Image2", &image(4 << 20));
        let initrd = temp("initrd2", b"x");
        let mut c = config(&fw, &kernel, &initrd, 9);
        let sink = || Box::new(std::io::sink());
        assert!(matches!(
            VirtMachine::new(&c, sink()),
            Err(VirtError::Cpus(9))
        ));
        c.cpus = 0;
        assert!(matches!(
            VirtMachine::new(&c, sink()),
            Err(VirtError::Cpus(0))
        ));
        c.cpus = 1;
        c.memory = 1000;
        assert!(matches!(
            VirtMachine::new(&c, sink()),
            Err(VirtError::Memory(1000))
        ));
        c.memory = 4 << 20;
        let e = VirtMachine::new(&c, sink()).err().unwrap().to_string();
        assert!(e.contains("memory too small for the images"), "{e}");
    }

    #[test]
    fn virtio_slots_fill_in_order_then_run_out() {
        let fw = temp("fw3.bin", &[0x73, 0x00, 0x50, 0x10]);
        let mut c = config(&fw, &fw, &fw, 1);
        c.kernel = None;
        c.initrd = None;
        let mut m = VirtMachine::new(&c, Box::new(std::io::sink())).unwrap();
        for n in 0..VIRTIO_COUNT {
            let slot = m
                .add_virtio_mmio(|_, _| Arc::new(Mutex::new(EmptyVirtioSlot)))
                .unwrap();
            assert_eq!(slot, VIRTIO_COUNT - 1 - n, "highest slot first");
        }
        assert!(matches!(
            m.add_virtio_mmio(|_, _| Arc::new(Mutex::new(EmptyVirtioSlot))),
            Err(VirtError::NoVirtioSlot)
        ));
        m.fill_empty_slots().unwrap();
        assert_eq!(m.mmio.load(virtio_base(7), 4), Ok(0x7472_6976));
        assert_eq!(
            m.mmio.load(0x3000_0000, 4),
            Err(MmioFault),
            "no device there"
        );
    }
}
