//! QEMU's riscv64 `virt` board.

pub mod boot;
pub mod clint;
pub mod events;
pub mod fdt;
pub mod layout;
pub mod machine;
pub mod plic;
pub mod profile;
pub mod rtc;
pub mod test_dev;
pub mod uart;
pub mod virtio_slot;
pub mod wires;

pub use events::{Events, StopReason};
pub use machine::{ConsoleInput, Outcome, RunReport, VirtConfig, VirtError, VirtMachine};
