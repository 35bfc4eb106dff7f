//! vessel's KVM accelerator: a VM with its memory slots, the in-kernel
//! interrupt controller and PIT, irqfd-backed interrupt lines, ioeventfds,
//! and vCPUs that run on their own named threads and can be paused,
//! resumed and stopped.
//!
//! Boards (the x86_64 microvm in `vessel-x86`) build on this: they set up
//! registers and boot data, then hand the vCPUs to [`RunningVcpus`], which
//! drives them only through the `vessel_machine::Vcpu` trait ([`KvmVcpu`]
//! implements it, and [`KvmVm`] is a `vessel_machine::Accelerator`).

pub mod irq;
pub mod runner;
pub mod vcpu;
pub mod vm;

pub use irq::IrqFd;
pub use kvm_bindings;
pub use kvm_ioctls;
pub use runner::{ExitReason, IoBuses, RunError, RunningVcpus, VmControl};
pub use vcpu::{KvmVcpu, KvmVcpuError};
pub use vm::{DEFAULT_KVM_PATH, IoEventSpace, KvmVm, VmError};
pub use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};
