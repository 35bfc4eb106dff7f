//! A software RISC-V CPU: RV64IMAFDC with Zicsr, Zifencei, Zicntr and Sstc,
//! M/S/U privilege modes, Sv39 and Sv48 paging.
//!
//! The pieces, each in its own module:
//! - [`decode`]: raw bits (32-bit and compressed) into a typed [`Instruction`];
//!   its `Display` is a disassembler, used by the tracer (`VESSEL_TRACE=1`).
//! - `exec`: the executor, one `match` over [`Instruction`].
//! - `csr`: the control and status registers and their WARL rules.
//! - `mmu`: the page-table walker and the software TLB.
//! - `fpu`: F and D on Berkeley SoftFloat (RISC-V specialisation), so results,
//!   NaNs and flags are exactly what RISC-V defines.
//! - `trap`: exceptions, interrupts, delegation, `mret`/`sret`.
//! - `hart`: the [`Hart`] itself and its run loop with a decoded-instruction cache.
//! - `vcpu`: the hart behind the `vessel_machine::Vcpu` seam ([`SoftVcpu`])
//!   and the software [`SoftAccel`]erator that makes one per hart.
//!
//! A board provides RAM ([`Ram`]), everything else through [`Mmio`], a shared
//! [`Clock`], and one [`HartIrq`] per hart for the CLINT and PLIC wires.

mod csr;
pub mod decode;
mod exec;
mod fastop;
mod fpu;
mod hart;
mod irq;
mod jit;
mod mmu;
mod ram;
mod trap;
mod vcpu;

pub use decode::{Instruction, decode, decode_compressed};
pub use hart::{Hart, HartConfig, JitMode, MmuMode};
pub use irq::{Clock, HartIrq};
pub use ram::Ram;
pub use trap::{CpuFault, Exit};
pub use vcpu::{AccelError, DEFAULT_SLICE, PowerEvent, SoftAccel, SoftVcpu};

/// Errors from setting up a CPU.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error("guest memory has {0} regions; the RISC-V CPU needs exactly one contiguous RAM region")]
    RamRegions(usize),
    #[error("cannot get the host address of guest RAM at {base:#x}: {reason}")]
    RamHostAddress { base: u64, reason: String },
}

/// A failed device access: becomes a load or store access fault in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioFault;

/// Everything that is not RAM. The board implements it on top of its bus.
pub trait Mmio {
    /// Read `size` bytes (1, 2, 4 or 8) at physical address `paddr`.
    fn load(&mut self, paddr: u64, size: u8) -> Result<u64, MmioFault>;
    /// Write the low `size` bytes (1, 2, 4 or 8) of `value` at `paddr`.
    fn store(&mut self, paddr: u64, size: u8, value: u64) -> Result<(), MmioFault>;
    /// A power-off, reset or failure a device asked for since the last call
    /// (taken: the next call returns `None`). [`SoftVcpu`] asks after each
    /// time slice and turns it into a `VcpuExit`. Boards that watch their
    /// devices some other way keep the default.
    fn power_event(&mut self) -> Option<PowerEvent> {
        None
    }
}

/// An [`Mmio`] with no devices: every access faults.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMmio;

impl Mmio for NoMmio {
    fn load(&mut self, _paddr: u64, _size: u8) -> Result<u64, MmioFault> {
        Err(MmioFault)
    }
    fn store(&mut self, _paddr: u64, _size: u8, _value: u64) -> Result<(), MmioFault> {
        Err(MmioFault)
    }
}
