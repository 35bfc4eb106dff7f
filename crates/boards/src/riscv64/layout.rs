//! The riscv64 `virt` memory map and interrupt numbers, as QEMU's
//! `hw/riscv/virt.c` lays them out.

/// The sifive test / syscon device (poweroff, reboot, fail).
pub const TEST_BASE: u64 = 0x10_0000;
pub const TEST_SIZE: u64 = 0x1000;
/// The goldfish real-time clock.
pub const RTC_BASE: u64 = 0x10_1000;
pub const RTC_SIZE: u64 = 0x1000;
/// The core-local interruptor: software and timer interrupts per hart.
pub const CLINT_BASE: u64 = 0x200_0000;
pub const CLINT_SIZE: u64 = 0x1_0000;
/// The platform-level interrupt controller.
pub const PLIC_BASE: u64 = 0xc00_0000;
pub const PLIC_SIZE: u64 = 0x60_0000;
/// The ns16550a UART.
pub const UART_BASE: u64 = 0x1000_0000;
pub const UART_SIZE: u64 = 0x100;
/// The first of the virtio-mmio transports; slot `i` is at
/// `VIRTIO_BASE + i * VIRTIO_SIZE` on PLIC source `VIRTIO_IRQ + i`.
pub const VIRTIO_BASE: u64 = 0x1000_1000;
pub const VIRTIO_SIZE: u64 = 0x1000;
pub const VIRTIO_COUNT: usize = 8;
/// Guest RAM.
pub const DRAM_BASE: u64 = 0x8000_0000;

/// PLIC sources.
pub const VIRTIO_IRQ: u32 = 1;
pub const UART_IRQ: u32 = 10;
pub const RTC_IRQ: u32 = 11;
/// Interrupt sources of the PLIC including the reserved source 0: QEMU 7.2's
/// virt has sources 1..=96 (`riscv,ndev` = 96).
pub const PLIC_NUM_SOURCES: u32 = 97;
/// Priority levels 0..=7, as QEMU's virt.
pub const PLIC_NUM_PRIORITIES: u32 = 7;

/// The timebase of mtime and the `time` CSR.
pub const TIMEBASE_HZ: u64 = 10_000_000;
/// The UART's input clock, as QEMU's virt advertises it.
pub const UART_CLOCK_HZ: u32 = 3_686_400;

/// Most harts the board supports.
pub const MAX_CPUS: usize = 8;

/// Base address of virtio-mmio slot `i`.
pub const fn virtio_base(i: usize) -> u64 {
    VIRTIO_BASE + i as u64 * VIRTIO_SIZE
}
