//! The sifive test device (QEMU's `sifive_test`, a syscon for Linux):
//! a 32-bit write of 0x5555 powers off, 0x7777 resets, and
//! `(code << 16) | 0x3333` stops the machine with a failure code.

use std::sync::Arc;

use vessel_machine::BusDevice;

use super::events::{Events, StopReason};

const FAIL: u32 = 0x3333;
const PASS: u32 = 0x5555;
const RESET: u32 = 0x7777;

pub struct TestDevice {
    events: Arc<Events>,
}

impl TestDevice {
    pub fn new(events: Arc<Events>) -> Self {
        Self { events }
    }
}

impl BusDevice for TestDevice {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset != 0 || data.len() < 4 {
            return;
        }
        let value = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        let reason = match value & 0xffff {
            FAIL => StopReason::Fail((value >> 16) as u16),
            PASS => StopReason::PowerOff,
            RESET => StopReason::Reset,
            _ => return,
        };
        self.events.stop(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(v: u32) -> Option<StopReason> {
        let events = Arc::new(Events::new());
        TestDevice::new(events.clone()).write(0, &v.to_le_bytes());
        events.stop_reason()
    }

    #[test]
    fn commands() {
        assert_eq!(write(0x5555), Some(StopReason::PowerOff));
        assert_eq!(write(0x7777), Some(StopReason::Reset));
        assert_eq!(write(0x002a_3333), Some(StopReason::Fail(42)));
        assert_eq!(write(0x1234), None);
    }

    #[test]
    fn other_offsets_and_widths_are_ignored() {
        let events = Arc::new(Events::new());
        let mut d = TestDevice::new(events.clone());
        d.write(4, &0x5555u32.to_le_bytes());
        d.write(0, &[0x55, 0x55]);
        assert_eq!(events.stop_reason(), None);
        let mut b = [0xffu8; 4];
        d.read(0, &mut b);
        assert_eq!(b, [0; 4]);
    }
}
