//! vessel's machines: a memory map, the interrupt wiring between devices and
//! CPUs, and the boot protocol that puts firmware and kernel into guest RAM.
//!
//! - [`riscv64`]: QEMU's riscv64 `virt` board (CLINT, PLIC, ns16550a UART,
//!   virtio-mmio slots, sifive test device, goldfish RTC), booted through
//!   OpenSBI's `fw_dynamic` protocol.

pub mod console;
pub mod riscv64;
