//! The engine-neutral core of a vessel virtual machine.
//!
//! Devices see only what is here: guest memory ([`GuestMemoryMmap`] from
//! rust-vmm's `vm-memory`), a [`Bus`] that routes MMIO or port accesses to a
//! [`BusDevice`], and [`IrqLine`]s to signal the interrupt controller. They
//! never learn whether a software CPU or KVM runs the guest: that is behind
//! the [`Accelerator`]/[`Vcpu`] seam in [`accel`].

pub mod accel;
pub mod bus;
pub mod irq;
pub mod memory;

/// The `vm-memory` version every vessel crate shares.
pub use vm_memory;

pub use accel::{Accelerator, Access, IoBuses, Next, Vcpu, VcpuEvent, VcpuExit, dispatch};
pub use bus::{Bus, BusDevice, BusError};
pub use irq::IrqLine;
pub use memory::{GuestMemoryMmap, MemoryError, create_guest_memory};
