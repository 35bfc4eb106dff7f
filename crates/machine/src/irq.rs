//! Interrupt lines from devices to the interrupt controller.

/// One interrupt input of the board's interrupt controller (a PLIC source on
/// riscv64, a GSI through KVM's irqfd on x86_64).
///
/// Devices drive it as a level: `set_level(true)` while they have something
/// to report, `set_level(false)` once the driver acknowledged it. Edge-only
/// back ends (irqfd) fire on each rising edge.
pub trait IrqLine: Send + Sync {
    fn set_level(&self, high: bool);
}
