//! What the machine's devices tell its run loop: the guest asked to power
//! off, reboot or fail, the kernel panicked, the user quit.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Why a guest stopped (or asked to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The guest powered off through the test device (0x5555).
    PowerOff,
    /// The guest asked for a reset (0x7777); vessel stops, like QEMU's
    /// `-no-reboot`.
    Reset,
    /// The guest wrote `(code << 16) | 0x3333` to the test device.
    Fail(u16),
    /// The console showed the kernel's panic line (the line follows).
    KernelPanic(String),
    /// The user typed Ctrl-A x on the console.
    Quit,
    /// vessel received this termination signal (SIGTERM, SIGHUP).
    Signal(i32),
    /// A supervisor asked for a clean stop (the control socket's shutdown).
    Shutdown,
}

#[derive(Default)]
struct State {
    stop: Option<StopReason>,
    /// The run loop parks while this is set (a stop still ends it).
    paused: bool,
    /// Bumped on every wake-up, so a sleeper can tell whether one happened
    /// since it last looked.
    generation: u64,
}

/// The machine's mailbox: devices post a stop request or wake the run loop
/// from its idle sleep; the run loop polls and sleeps on it.
#[derive(Default)]
pub struct Events {
    state: Mutex<State>,
    cond: Condvar,
}

impl Events {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ask the machine to stop; the first reason wins.
    pub fn stop(&self, reason: StopReason) {
        let mut s = self.lock();
        if s.stop.is_none() {
            s.stop = Some(reason);
        }
        s.generation += 1;
        self.cond.notify_all();
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        self.lock().stop.clone()
    }

    /// Park the run loop after its current slice; true if it was running.
    pub fn pause(&self) -> bool {
        let mut s = self.lock();
        let was = s.paused;
        s.paused = true;
        s.generation += 1;
        self.cond.notify_all();
        !was
    }

    /// Let the run loop go on; true if it was paused.
    pub fn resume(&self) -> bool {
        let mut s = self.lock();
        let was = s.paused;
        s.paused = false;
        s.generation += 1;
        self.cond.notify_all();
        was
    }

    pub fn is_paused(&self) -> bool {
        self.lock().paused
    }

    /// Block while paused and not asked to stop.
    pub fn wait_while_paused(&self) {
        let s = self.lock();
        drop(self.cond.wait_while(s, |s| s.paused && s.stop.is_none()));
    }

    /// Something happened that may end a hart's wait for interrupt.
    pub fn wake(&self) {
        let mut s = self.lock();
        s.generation += 1;
        self.cond.notify_all();
    }

    /// The current wake-up generation.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Sleep until a wake-up after `generation`, a stop request, or
    /// `timeout` (None: no timeout).
    pub fn sleep(&self, generation: u64, timeout: Option<Duration>) {
        let s = self.lock();
        let idle = |s: &mut State| s.generation == generation && s.stop.is_none();
        match timeout {
            Some(t) => drop(self.cond.wait_timeout_while(s, t, idle)),
            None => drop(self.cond.wait_while(s, idle)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn first_stop_reason_wins() {
        let e = Events::new();
        assert_eq!(e.stop_reason(), None);
        e.stop(StopReason::Fail(3));
        e.stop(StopReason::PowerOff);
        assert_eq!(e.stop_reason(), Some(StopReason::Fail(3)));
    }

    #[test]
    fn pause_parks_until_resume_or_stop() {
        let e = Arc::new(Events::new());
        assert!(e.pause());
        assert!(!e.pause(), "already paused");
        let e2 = e.clone();
        let t = std::thread::spawn(move || e2.wait_while_paused());
        assert!(e.resume());
        t.join().unwrap();
        assert!(!e.resume(), "not paused");
        e.pause();
        let e2 = e.clone();
        let t = std::thread::spawn(move || e2.wait_while_paused());
        e.stop(StopReason::Shutdown);
        t.join().unwrap();
        assert!(e.is_paused());
    }

    #[test]
    fn sleep_returns_at_once_after_a_missed_wake() {
        let e = Events::new();
        let g = e.generation();
        e.wake();
        // Without the generation check this would block forever.
        e.sleep(g, None);
    }

    #[test]
    fn wake_from_another_thread_ends_a_sleep() {
        let e = Arc::new(Events::new());
        let g = e.generation();
        let e2 = e.clone();
        let t = std::thread::spawn(move || e2.wake());
        e.sleep(g, None);
        t.join().unwrap();
        assert!(e.generation() > g);
    }
}
