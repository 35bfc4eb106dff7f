//! The wires from the board's interrupt controllers into the harts.
//!
//! The CLINT and the PLIC drive these traits, not the CPU's types directly:
//! the board implements them on top of the CPU's `HartIrq` (and wakes its
//! run loop), tests implement them on plain atomics.

use std::sync::Arc;

/// The interrupt inputs of one hart.
pub trait HartLines: Send + Sync {
    /// Machine software interrupt (CLINT msip).
    fn set_msip(&self, on: bool);
    fn msip(&self) -> bool;
    /// Machine timer compare value (CLINT mtimecmp); the hart raises MTIP
    /// while `mtime >= mtimecmp`.
    fn set_mtimecmp(&self, value: u64);
    fn mtimecmp(&self) -> u64;
    /// Machine external interrupt (PLIC context 2 * hart).
    fn set_meip(&self, on: bool);
    /// Supervisor external interrupt (PLIC context 2 * hart + 1).
    fn set_seip(&self, on: bool);
}

/// The machine's timebase: mtime in ticks of [`crate::riscv64::layout::TIMEBASE_HZ`].
pub trait TimeBase: Send + Sync {
    fn now(&self) -> u64;
}

/// The harts' lines, indexed by hart id.
pub type Harts = Vec<Arc<dyn HartLines>>;

#[cfg(test)]
pub(crate) mod testing {
    //! Lines that remember what was driven, for device tests.
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    #[derive(Default)]
    pub struct Lines {
        pub msip: AtomicBool,
        pub mtimecmp: AtomicU64,
        pub meip: AtomicBool,
        pub seip: AtomicBool,
    }

    impl HartLines for Lines {
        fn set_msip(&self, on: bool) {
            self.msip.store(on, Ordering::SeqCst)
        }
        fn msip(&self) -> bool {
            self.msip.load(Ordering::SeqCst)
        }
        fn set_mtimecmp(&self, value: u64) {
            self.mtimecmp.store(value, Ordering::SeqCst)
        }
        fn mtimecmp(&self) -> u64 {
            self.mtimecmp.load(Ordering::SeqCst)
        }
        fn set_meip(&self, on: bool) {
            self.meip.store(on, Ordering::SeqCst)
        }
        fn set_seip(&self, on: bool) {
            self.seip.store(on, Ordering::SeqCst)
        }
    }

    impl Lines {
        pub fn meip(&self) -> bool {
            self.meip.load(Ordering::SeqCst)
        }
        pub fn seip(&self) -> bool {
            self.seip.load(Ordering::SeqCst)
        }
    }

    /// A clock the test sets by hand.
    #[derive(Default)]
    pub struct ManualClock(pub AtomicU64);

    impl TimeBase for ManualClock {
        fn now(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    pub fn harts(n: usize) -> (Vec<Arc<Lines>>, Harts) {
        let lines: Vec<Arc<Lines>> = (0..n).map(|_| Arc::new(Lines::default())).collect();
        let dyns = lines
            .iter()
            .map(|l| l.clone() as Arc<dyn HartLines>)
            .collect();
        (lines, dyns)
    }
}
