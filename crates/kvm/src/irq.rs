//! Interrupt lines backed by KVM irqfds: a write to the eventfd injects an
//! edge into one GSI of the in-kernel irqchip, without a VM exit.

use std::sync::atomic::{AtomicBool, Ordering};

use vessel_machine::IrqLine;
use vmm_sys_util::eventfd::EventFd;

/// One GSI of the in-kernel irqchip, raised through an irqfd.
///
/// An irqfd injects an edge: [`IrqLine::set_level`] fires on each rising
/// edge (low → high) and only remembers the level otherwise.
pub struct IrqFd {
    event: EventFd,
    gsi: u32,
    level: AtomicBool,
}

impl IrqFd {
    pub(crate) fn new(event: EventFd, gsi: u32) -> Self {
        Self {
            event,
            gsi,
            level: AtomicBool::new(false),
        }
    }

    /// The GSI this line drives.
    pub fn gsi(&self) -> u32 {
        self.gsi
    }

    /// Inject one interrupt edge now.
    pub fn trigger(&self) -> std::io::Result<()> {
        self.event.write(1)
    }

    /// The eventfd itself (to hand to another thread or process).
    pub fn event(&self) -> &EventFd {
        &self.event
    }
}

impl IrqLine for IrqFd {
    fn set_level(&self, high: bool) {
        let was = self.level.swap(high, Ordering::AcqRel);
        if high && !was {
            // An eventfd write fails only when its counter would overflow,
            // which means an interrupt is already pending: nothing is lost.
            let _ = self.trigger();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    #[test]
    fn fires_on_rising_edges_only() {
        let event = EventFd::new(EFD_NONBLOCK).unwrap();
        let line = IrqFd::new(event.try_clone().unwrap(), 5);
        line.set_level(true);
        line.set_level(true);
        assert_eq!(event.read().unwrap(), 1, "one edge for two highs");
        line.set_level(false);
        assert!(event.read().is_err(), "falling edge injects nothing");
        line.set_level(true);
        assert_eq!(event.read().unwrap(), 1);
    }
}
