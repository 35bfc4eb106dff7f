//! The shared timebase and the interrupt wires into one hart.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// The timebase shared by all harts (`time` CSR) and the CLINT (`mtime`).
#[derive(Debug)]
pub struct Clock {
    start: Instant,
    freq: u64,
}

impl Clock {
    /// A clock ticking at `freq_hz` (10 MHz on the virt board), starting at 0 now.
    pub fn new(freq_hz: u64) -> Arc<Clock> {
        Arc::new(Clock {
            start: Instant::now(),
            freq: freq_hz.max(1),
        })
    }

    /// Ticks since the clock was created.
    #[inline]
    pub fn now(&self) -> u64 {
        // u64 arithmetic only (no 128-bit division on this hot path): whole
        // seconds times the frequency plus the scaled sub-second part, which
        // is below 1e9 * freq and fits for any frequency up to 18 GHz.
        let d = self.start.elapsed();
        d.as_secs()
            .wrapping_mul(self.freq)
            .wrapping_add(d.subsec_nanos() as u64 * self.freq / 1_000_000_000)
    }

    /// Ticks per second.
    pub fn freq(&self) -> u64 {
        self.freq
    }

    /// Host duration until the clock reaches `tick` (zero if it already has).
    pub fn duration_until(&self, tick: u64) -> std::time::Duration {
        let now = self.now();
        if tick <= now {
            return std::time::Duration::ZERO;
        }
        let ns = (tick - now) as u128 * 1_000_000_000 / self.freq as u128;
        std::time::Duration::from_nanos(ns.min(u64::MAX as u128) as u64)
    }
}

/// Interrupt wires into one hart, shared with the board's CLINT and PLIC.
///
/// Setting a wire is lock-free; [`HartIrq::kick`] also wakes a thread sleeping
/// in [`HartIrq::wait`] (a hart in WFI).
#[derive(Debug)]
pub struct HartIrq {
    msip: AtomicBool,
    meip: AtomicBool,
    seip: AtomicBool,
    mtimecmp: AtomicU64,
    kicked: AtomicBool,
    sleep: Mutex<()>,
    wake: Condvar,
}

impl HartIrq {
    /// All wires low, mtimecmp at its maximum (no timer interrupt).
    pub fn new() -> Arc<HartIrq> {
        Arc::new(HartIrq {
            msip: AtomicBool::new(false),
            meip: AtomicBool::new(false),
            seip: AtomicBool::new(false),
            mtimecmp: AtomicU64::new(u64::MAX),
            kicked: AtomicBool::new(false),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
        })
    }

    /// Machine software interrupt (CLINT msip).
    pub fn set_msip(&self, on: bool) {
        self.msip.store(on, Ordering::Release);
        self.kick();
    }
    pub fn msip(&self) -> bool {
        self.msip.load(Ordering::Acquire)
    }

    /// Machine timer compare (CLINT mtimecmp); MTIP = clock.now() >= mtimecmp.
    pub fn set_mtimecmp(&self, v: u64) {
        self.mtimecmp.store(v, Ordering::Release);
        self.kick();
    }
    pub fn mtimecmp(&self) -> u64 {
        self.mtimecmp.load(Ordering::Acquire)
    }

    /// Machine external interrupt (PLIC context for M-mode).
    pub fn set_meip(&self, on: bool) {
        self.meip.store(on, Ordering::Release);
        self.kick();
    }
    pub fn meip(&self) -> bool {
        self.meip.load(Ordering::Acquire)
    }

    /// Supervisor external interrupt (PLIC context for S-mode); OR-ed with mip.SEIP.
    pub fn set_seip(&self, on: bool) {
        self.seip.store(on, Ordering::Release);
        self.kick();
    }
    pub fn seip(&self) -> bool {
        self.seip.load(Ordering::Acquire)
    }

    /// Make a running hart notice new interrupts soon and wake a WFI sleeper.
    pub fn kick(&self) {
        self.kicked.store(true, Ordering::Release);
        let _guard = self.sleep.lock().unwrap_or_else(|e| e.into_inner());
        self.wake.notify_all();
    }

    /// Take the kick flag (true if someone kicked since the last call).
    pub fn take_kick(&self) -> bool {
        self.kicked.swap(false, Ordering::AcqRel)
    }

    /// Sleep until kicked or `timeout` passes (for a board thread running a hart
    /// that stopped in WFI). Returns at once if a kick is already pending.
    pub fn wait(&self, timeout: std::time::Duration) {
        let guard = self.sleep.lock().unwrap_or_else(|e| e.into_inner());
        if self.kicked.load(Ordering::Acquire) {
            return;
        }
        let _ = self
            .wake
            .wait_timeout(guard, timeout)
            .unwrap_or_else(|e| e.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_monotonic_and_scaled() {
        let c = Clock::new(10_000_000);
        let a = c.now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = c.now();
        // At least 2 ms at 10 MHz = 20000 ticks have passed.
        assert!(b >= a + 20_000, "{a} -> {b}");
        assert_eq!(c.freq(), 10_000_000);
        assert_eq!(c.duration_until(0), std::time::Duration::ZERO);
    }

    #[test]
    fn wires_and_kick() {
        let irq = HartIrq::new();
        assert_eq!(irq.mtimecmp(), u64::MAX);
        irq.set_msip(true);
        assert!(irq.msip());
        assert!(irq.take_kick());
        assert!(!irq.take_kick());
        irq.set_meip(true);
        irq.set_seip(true);
        assert!(irq.meip() && irq.seip());
        // A pending kick makes wait return at once.
        irq.wait(std::time::Duration::from_secs(3600));
    }
}
