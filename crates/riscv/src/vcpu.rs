//! The software side of the accelerator seam: [`SoftVcpu`] is a
//! [`vessel_machine::Vcpu`] made of a [`Hart`] and the [`Mmio`] it reaches
//! its devices through, and [`SoftAccel`] is an [`Accelerator`] that makes
//! one per hart.
//!
//! A software hart never traps device accesses out to the runner (its loads
//! and stores reach the board's devices inside the interpreter), so `run`
//! never returns `Mmio`/`Io`: it runs one time slice and returns
//! `Interrupted` (the slice is used up), `Halted` (WFI with nothing
//! pending), `Shutdown`/`Reset` (a device asked for it, see
//! [`Mmio::power_event`]) or `Crashed` (the hart cannot make progress).
//! [`Hart::run`] itself, the hot loop, is unchanged.

use std::sync::Arc;

use vessel_machine::{Accelerator, Vcpu, VcpuExit};

use crate::{Clock, Exit, Hart, HartConfig, HartIrq, Mmio, MmuMode, Ram};

/// What a device (the sifive test device, a syscon) asked of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerEvent {
    /// Power off.
    Shutdown,
    /// Reset.
    Reset,
    /// Stop with a failure code (the sifive test device's `code << 16 | 0x3333`).
    Fail(u16),
}

/// Instructions a [`SoftVcpu`] runs per [`Vcpu::run`] unless told otherwise:
/// short enough that a pause or stop request is seen within a millisecond or
/// so, long enough that the per-slice work is noise.
pub const DEFAULT_SLICE: u64 = 100_000;

/// A RISC-V hart behind the seam.
pub struct SoftVcpu<M> {
    hart: Hart,
    mmio: M,
    slice: u64,
}

impl<M: Mmio + Send> SoftVcpu<M> {
    /// `hart` reaching its devices through `mmio`, [`DEFAULT_SLICE`]
    /// instructions per `run`.
    pub fn new(hart: Hart, mmio: M) -> Self {
        Self {
            hart,
            mmio,
            slice: DEFAULT_SLICE,
        }
    }

    /// Run at most `slice` instructions per `run` (at least 1).
    pub fn with_slice(mut self, slice: u64) -> Self {
        self.slice = slice.max(1);
        self
    }

    /// The hart, for boot set-up (pc, registers) and inspection.
    pub fn hart(&self) -> &Hart {
        &self.hart
    }

    /// The hart, mutable.
    pub fn hart_mut(&mut self) -> &mut Hart {
        &mut self.hart
    }

    /// The devices this hart reaches.
    pub fn mmio(&self) -> &M {
        &self.mmio
    }

    /// Take the hart and its devices back.
    pub fn into_parts(self) -> (Hart, M) {
        (self.hart, self.mmio)
    }
}

impl<M: Mmio + Send> Vcpu for SoftVcpu<M> {
    /// The interpreter itself cannot fail: guest faults become `Crashed`.
    type Error = std::convert::Infallible;

    fn id(&self) -> usize {
        self.hart.hart_id() as usize
    }

    fn run(&mut self) -> Result<VcpuExit<'_>, Self::Error> {
        let exit = self.hart.run(&mut self.mmio, self.slice);
        // A power request wins over how the slice ended: the store that made
        // it is the guest's last word.
        if let Some(event) = self.mmio.power_event() {
            return Ok(match event {
                PowerEvent::Shutdown => VcpuExit::Shutdown,
                PowerEvent::Reset => VcpuExit::Reset,
                PowerEvent::Fail(code) => VcpuExit::Crashed(format!(
                    "hart {}: the guest reported failure code {code}",
                    self.hart.hart_id()
                )),
            });
        }
        Ok(match exit {
            Exit::Budget => VcpuExit::Interrupted,
            Exit::Wfi => VcpuExit::Halted,
            Exit::Fault(fault) => VcpuExit::Crashed(fault.to_string()),
        })
    }
}

/// Why [`SoftAccel`] could not make a hart.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccelError {
    #[error(
        "hart {id} does not exist: the machine has {harts} interrupt wires (harts 0 to {harts} - 1)"
    )]
    NoSuchHart { id: usize, harts: usize },
}

/// The software RISC-V accelerator: harts sharing RAM, a clock, and one
/// device view (`M`, cloned for each hart).
pub struct SoftAccel<M> {
    ram: Ram,
    clock: Arc<Clock>,
    irqs: Vec<Arc<HartIrq>>,
    mmu: MmuMode,
    mmio: M,
}

impl<M: Mmio + Clone + Send> SoftAccel<M> {
    /// Harts get `irqs[id]` as their CLINT/PLIC wires; there are as many
    /// harts as wires.
    pub fn new(
        ram: Ram,
        clock: Arc<Clock>,
        irqs: Vec<Arc<HartIrq>>,
        mmu: MmuMode,
        mmio: M,
    ) -> Self {
        Self {
            ram,
            clock,
            irqs,
            mmu,
            mmio,
        }
    }
}

impl<M: Mmio + Clone + Send> Accelerator for SoftAccel<M> {
    type Vcpu = SoftVcpu<M>;
    type Error = AccelError;

    fn name(&self) -> &'static str {
        "riscv-interp"
    }

    fn create_vcpu(&self, id: usize) -> Result<SoftVcpu<M>, AccelError> {
        let irq = self.irqs.get(id).ok_or(AccelError::NoSuchHart {
            id,
            harts: self.irqs.len(),
        })?;
        let config = HartConfig {
            hart_id: id as u64,
            mmu: self.mmu,
            ..HartConfig::default()
        };
        let hart = Hart::new(config, self.ram.clone(), self.clock.clone(), irq.clone());
        Ok(SoftVcpu::new(hart, self.mmio.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MmioFault, NoMmio};

    const BASE: u64 = 0x8000_0000;
    const TEST_DEV: u64 = 0x10_0000;

    /// Records a power event when the guest stores to the test device.
    #[derive(Clone, Default)]
    struct Syscon(Option<PowerEvent>);

    impl Mmio for Syscon {
        fn load(&mut self, _: u64, _: u8) -> Result<u64, MmioFault> {
            Err(MmioFault)
        }
        fn store(&mut self, paddr: u64, size: u8, value: u64) -> Result<(), MmioFault> {
            if paddr != TEST_DEV || size != 4 {
                return Err(MmioFault);
            }
            self.0 = match value as u32 & 0xffff {
                0x5555 => Some(PowerEvent::Shutdown),
                0x7777 => Some(PowerEvent::Reset),
                0x3333 => Some(PowerEvent::Fail((value >> 16) as u16)),
                _ => None,
            };
            Ok(())
        }
        fn power_event(&mut self) -> Option<PowerEvent> {
            self.0.take()
        }
    }

    fn accel<M: Mmio + Clone + Send>(code: &[u32], harts: usize, mmio: M) -> SoftAccel<M> {
        let mem = vessel_machine::create_guest_memory(&[(BASE, 1 << 20)]).unwrap();
        let ram = Ram::new(&mem).unwrap();
        for (i, w) in code.iter().enumerate() {
            ram.write(BASE + 4 * i as u64, 4, u64::from(*w)).unwrap();
        }
        let irqs = (0..harts).map(|_| HartIrq::new()).collect();
        SoftAccel::new(ram, Clock::new(10_000_000), irqs, MmuMode::Sv48, mmio)
    }

    fn vcpu<M: Mmio + Clone + Send>(a: &SoftAccel<M>, id: usize) -> SoftVcpu<M> {
        let mut v = a.create_vcpu(id).unwrap();
        v.hart_mut().set_pc(BASE);
        v
    }

    /// `lui t0, 0x100; lui t1, <value >> 12>; addi t1, t1, <value & 0xfff>; sw t1, 0(t0)`
    fn store_to_test_device(value: u32) -> Vec<u32> {
        let hi = (value + 0x800) >> 12;
        let lo = value.wrapping_sub(hi << 12) & 0xfff;
        vec![
            0x0010_02b7,
            (hi << 12) | 0x337,
            (lo << 20) | (6 << 15) | 0x313,
            0x0062_a023,
        ]
    }

    #[test]
    fn a_slice_ends_as_interrupted_and_wfi_as_halted() {
        // loop: addi a0, a0, 1; j loop
        let a = accel(&[0x0015_0513, 0xffdf_f06f], 1, NoMmio);
        assert_eq!(a.name(), "riscv-interp");
        let mut v = vcpu(&a, 0).with_slice(10);
        assert_eq!(v.id(), 0);
        assert_eq!(v.run().unwrap(), VcpuExit::Interrupted);
        assert_eq!(v.hart().instret(), 10);
        // wfi
        let a = accel(&[0x1050_0073], 1, NoMmio);
        assert_eq!(vcpu(&a, 0).run().unwrap(), VcpuExit::Halted);
    }

    #[test]
    fn the_test_device_powers_off_resets_or_fails() {
        for (value, want) in [
            (0x5555, VcpuExit::Shutdown),
            (0x7777, VcpuExit::Reset),
            (
                0x002a_3333,
                VcpuExit::Crashed("hart 1: the guest reported failure code 42".into()),
            ),
        ] {
            let mut code = store_to_test_device(value);
            code.push(0x0000_006f); // j . (spin: only the event may end the slice)
            let a = accel(&code, 2, Syscon::default());
            let mut v = vcpu(&a, 1);
            assert_eq!(v.run().unwrap(), want, "value {value:#x}");
            assert_eq!(v.hart().pc(), BASE + 16, "the hart ran on to the spin");
        }
    }

    #[test]
    fn a_hart_that_cannot_progress_crashes() {
        let a = accel(&[0], 1, NoMmio); // illegal instruction, mtvec 0
        match vcpu(&a, 0).run().unwrap() {
            VcpuExit::Crashed(why) => assert!(why.contains("hart 0"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_wired_harts_exist() {
        let a = accel(&[], 2, NoMmio);
        assert_eq!(a.create_vcpu(1).unwrap().id(), 1);
        let err = a.create_vcpu(2).err().unwrap();
        assert_eq!(err, AccelError::NoSuchHart { id: 2, harts: 2 });
        assert!(err.to_string().contains("hart 2 does not exist"));
    }
}
