//! The goldfish real-time clock (QEMU's `goldfish_rtc`): nanoseconds since
//! the Unix epoch from the host's wall clock, settable by the guest, with
//! one alarm.
//!
//! Reading TIME_LOW latches the high half for the following TIME_HIGH read.
//! The alarm is checked on every register access and whenever the board
//! polls the device ([`GoldfishRtc::poll`], once per run-loop round).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use vessel_machine::{BusDevice, IrqLine};

const TIME_LOW: u64 = 0x00;
const TIME_HIGH: u64 = 0x04;
const ALARM_LOW: u64 = 0x08;
const ALARM_HIGH: u64 = 0x0c;
const IRQ_ENABLED: u64 = 0x10;
const CLEAR_ALARM: u64 = 0x14;
const ALARM_STATUS: u64 = 0x18;
const CLEAR_INTERRUPT: u64 = 0x1c;

/// The host's wall clock in nanoseconds since the Unix epoch.
pub fn host_time_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub struct GoldfishRtc {
    clock: Box<dyn Fn() -> u64 + Send>,
    /// Guest time minus host time, in nanoseconds (wrapping).
    offset: u64,
    time_high: u32,
    alarm_high: u32,
    alarm: u64,
    alarm_running: bool,
    irq_enabled: bool,
    irq_pending: bool,
    irq: Arc<dyn IrqLine>,
}

impl GoldfishRtc {
    pub fn new(irq: Arc<dyn IrqLine>) -> Self {
        Self::with_clock(irq, Box::new(host_time_ns))
    }

    pub fn with_clock(irq: Arc<dyn IrqLine>, clock: Box<dyn Fn() -> u64 + Send>) -> Self {
        Self {
            clock,
            offset: 0,
            time_high: 0,
            alarm_high: 0,
            alarm: 0,
            alarm_running: false,
            irq_enabled: false,
            irq_pending: false,
            irq,
        }
    }

    fn now(&self) -> u64 {
        (self.clock)().wrapping_add(self.offset)
    }

    /// Fire the alarm if it is due, and drive the interrupt line.
    pub fn poll(&mut self) {
        if self.alarm_running && self.now() >= self.alarm {
            self.alarm_running = false;
            self.irq_pending = true;
        }
        self.irq.set_level(self.irq_pending && self.irq_enabled);
    }

    fn read32(&mut self, offset: u64) -> u32 {
        match offset {
            TIME_LOW => {
                let now = self.now();
                self.time_high = (now >> 32) as u32;
                now as u32
            }
            TIME_HIGH => self.time_high,
            ALARM_LOW => self.alarm as u32,
            ALARM_HIGH => (self.alarm >> 32) as u32,
            IRQ_ENABLED => self.irq_enabled as u32,
            ALARM_STATUS => self.alarm_running as u32,
            _ => 0,
        }
    }

    fn write32(&mut self, offset: u64, value: u32) {
        match offset {
            TIME_LOW => {
                let wanted = ((self.time_high as u64) << 32) | value as u64;
                self.offset = wanted.wrapping_sub((self.clock)());
            }
            TIME_HIGH => self.time_high = value,
            ALARM_LOW => {
                self.alarm = ((self.alarm_high as u64) << 32) | value as u64;
                self.alarm_running = true;
            }
            ALARM_HIGH => self.alarm_high = value,
            IRQ_ENABLED => self.irq_enabled = value & 1 != 0,
            CLEAR_ALARM => self.alarm_running = false,
            CLEAR_INTERRUPT => self.irq_pending = false,
            _ => {}
        }
    }
}

impl BusDevice for GoldfishRtc {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if data.len() == 4 {
            let v = self.read32(offset);
            data.copy_from_slice(&v.to_le_bytes());
        }
        self.poll();
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if data.len() == 4 {
            self.write32(
                offset,
                u32::from_le_bytes([data[0], data[1], data[2], data[3]]),
            );
        }
        self.poll();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    #[derive(Default)]
    struct Line(AtomicBool);
    impl IrqLine for Line {
        fn set_level(&self, high: bool) {
            self.0.store(high, Ordering::SeqCst)
        }
    }

    fn rtc() -> (GoldfishRtc, Arc<AtomicU64>, Arc<Line>) {
        let t = Arc::new(AtomicU64::new(0x1_2345_6789));
        let line = Arc::new(Line::default());
        let t2 = t.clone();
        let rtc =
            GoldfishRtc::with_clock(line.clone(), Box::new(move || t2.load(Ordering::SeqCst)));
        (rtc, t, line)
    }

    fn r(d: &mut GoldfishRtc, o: u64) -> u32 {
        let mut b = [0u8; 4];
        d.read(o, &mut b);
        u32::from_le_bytes(b)
    }
    fn w(d: &mut GoldfishRtc, o: u64, v: u32) {
        d.write(o, &v.to_le_bytes());
    }

    #[test]
    fn time_low_latches_the_high_half() {
        let (mut d, t, _) = rtc();
        assert_eq!(r(&mut d, TIME_LOW), 0x2345_6789);
        t.store(0x2_0000_0000, Ordering::SeqCst);
        assert_eq!(r(&mut d, TIME_HIGH), 1, "latched at the TIME_LOW read");
        assert_eq!(r(&mut d, TIME_LOW), 0);
        assert_eq!(r(&mut d, TIME_HIGH), 2);
    }

    #[test]
    fn guest_sets_the_time() {
        let (mut d, t, _) = rtc();
        w(&mut d, TIME_HIGH, 7);
        w(&mut d, TIME_LOW, 5);
        assert_eq!(r(&mut d, TIME_LOW), 5);
        assert_eq!(r(&mut d, TIME_HIGH), 7);
        t.fetch_add(10, Ordering::SeqCst);
        assert_eq!(r(&mut d, TIME_LOW), 15, "the clock keeps running");
    }

    #[test]
    fn alarm_raises_the_line_when_enabled() {
        let (mut d, t, line) = rtc();
        let due = t.load(Ordering::SeqCst) + 100;
        w(&mut d, IRQ_ENABLED, 1);
        w(&mut d, ALARM_HIGH, (due >> 32) as u32);
        w(&mut d, ALARM_LOW, due as u32);
        assert_eq!(r(&mut d, ALARM_STATUS), 1);
        assert!(!line.0.load(Ordering::SeqCst));
        t.fetch_add(100, Ordering::SeqCst);
        d.poll();
        assert!(line.0.load(Ordering::SeqCst));
        assert_eq!(r(&mut d, ALARM_STATUS), 0);
        w(&mut d, CLEAR_INTERRUPT, 1);
        assert!(!line.0.load(Ordering::SeqCst));
    }

    #[test]
    fn cleared_or_disabled_alarms_stay_quiet() {
        let (mut d, t, line) = rtc();
        w(&mut d, ALARM_HIGH, 0);
        w(&mut d, ALARM_LOW, 0); // already due, but interrupts disabled
        assert!(!line.0.load(Ordering::SeqCst));
        w(&mut d, CLEAR_INTERRUPT, 1);
        w(&mut d, IRQ_ENABLED, 1);
        let due = t.load(Ordering::SeqCst) + 5;
        w(&mut d, ALARM_HIGH, (due >> 32) as u32);
        w(&mut d, ALARM_LOW, due as u32);
        w(&mut d, CLEAR_ALARM, 1);
        t.fetch_add(50, Ordering::SeqCst);
        d.poll();
        assert!(!line.0.load(Ordering::SeqCst));
    }
}
