//! vessel's x86_64 `microvm` board on KVM.
//!
//! Firecracker's machine: guest RAM below a 768 MiB MMIO gap (and above
//! 4 GiB), the Linux 64-bit boot protocol for ELF `vmlinux` and `bzImage`
//! (rust-vmm `linux-loader`), identity page tables and a GDT so the boot
//! vCPU starts in long mode at the kernel's entry with `rsi` = boot_params,
//! CPUID filtered from KVM's supported set, the in-kernel PIC/IOAPIC/LAPIC
//! and PIT, a 16550 serial port at 0x3f8 on IRQ 4 (`vm-superio`, raised by
//! irqfd), an i8042 whose reset command ends the VM, and an MP table so a
//! guest finds every vCPU.
//!
//! ```no_run
//! let mut config = vessel_x86::VmConfig::new("vmlinux");
//! config.cmdline = "console=ttyS0 reboot=k panic=1".into();
//! let reason = vessel_x86::run_vm(config)?;
//! println!("guest stopped: {reason:?}");
//! # Ok::<(), vessel_x86::Error>(())
//! ```

pub mod acpi;
pub mod boot;
pub mod cpu;
pub mod layout;
pub mod legacy;
pub mod mptable;
pub mod notify;
pub mod vm;

pub use boot::{BootError, BootInfo, KernelFormat};
pub use vessel_devices::block::DiskSpec;
pub use vessel_kvm::{ExitReason, IrqFd, RunError, VmControl};
pub use vm::{
    DEFAULT_CMDLINE, Error, Microvm, MmioSlot, NetConfig, RunningMicrovm, SerialInput,
    VIRTIO_SLOTS, VmConfig, run_vm,
};
