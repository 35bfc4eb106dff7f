//! The device bus: an address space (MMIO or x86 I/O ports) split into
//! non-overlapping ranges, each served by one device.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device reached through loads and stores at offsets inside its range.
///
/// `offset` is relative to the start of the device's range; `data.len()` is
/// the access width (1, 2, 4 or 8 bytes). A device must accept any offset and
/// width, even those the guest has no business using: reads it does not
/// implement return zeros, writes it does not implement are ignored.
pub trait BusDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// Errors of the bus.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("device range {base:#x}+{len:#x} overlaps an existing device range")]
    Overlap { base: u64, len: u64 },
    #[error("device range at {base:#x} has zero length or wraps the address space")]
    BadRange { base: u64 },
    #[error("no device at address {0:#x}")]
    NoDevice(u64),
    #[error("access of {len} bytes at {addr:#x} crosses the end of its device range")]
    CrossesRange { addr: u64, len: usize },
}

struct Entry {
    len: u64,
    device: Arc<Mutex<dyn BusDevice>>,
}

/// An address space of devices.
#[derive(Default)]
pub struct Bus {
    ranges: BTreeMap<u64, Entry>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Place `device` at `[base, base + len)`.
    pub fn insert(
        &mut self,
        base: u64,
        len: u64,
        device: Arc<Mutex<dyn BusDevice>>,
    ) -> Result<(), BusError> {
        let end = base.checked_add(len).ok_or(BusError::BadRange { base })?;
        if len == 0 {
            return Err(BusError::BadRange { base });
        }
        if let Some((&b, e)) = self.ranges.range(..end).next_back()
            && b + e.len > base
        {
            return Err(BusError::Overlap { base, len });
        }
        self.ranges.insert(base, Entry { len, device });
        Ok(())
    }

    fn find(&self, addr: u64, len: usize) -> Result<(u64, &Entry), BusError> {
        let (&base, entry) = self
            .ranges
            .range(..=addr)
            .next_back()
            .ok_or(BusError::NoDevice(addr))?;
        let offset = addr - base;
        if offset >= entry.len {
            return Err(BusError::NoDevice(addr));
        }
        if offset + len as u64 > entry.len {
            return Err(BusError::CrossesRange { addr, len });
        }
        Ok((offset, entry))
    }

    /// Whether any device answers at `addr`.
    pub fn contains(&self, addr: u64) -> bool {
        self.find(addr, 1).is_ok()
    }

    pub fn read(&self, addr: u64, data: &mut [u8]) -> Result<(), BusError> {
        let (offset, entry) = self.find(addr, data.len())?;
        lock(&entry.device).read(offset, data);
        Ok(())
    }

    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), BusError> {
        let (offset, entry) = self.find(addr, data.len())?;
        lock(&entry.device).write(offset, data);
        Ok(())
    }
}

/// Lock a device, even if a previous holder panicked: a device's state is
/// plain data, and one failed access must not stop every later one.
fn lock(device: &Mutex<dyn BusDevice>) -> std::sync::MutexGuard<'_, dyn BusDevice + 'static> {
    device
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Scratch {
        bytes: [u8; 16],
    }

    impl BusDevice for Scratch {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            let o = offset as usize;
            data.copy_from_slice(&self.bytes[o..o + data.len()]);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            let o = offset as usize;
            self.bytes[o..o + data.len()].copy_from_slice(data);
        }
    }

    fn scratch() -> Arc<Mutex<dyn BusDevice>> {
        Arc::new(Mutex::new(Scratch::default()))
    }

    #[test]
    fn routes_to_the_device_with_relative_offsets() {
        let mut bus = Bus::new();
        bus.insert(0x1000, 16, scratch()).unwrap();
        bus.insert(0x2000, 16, scratch()).unwrap();
        bus.write(0x1004, &[1, 2, 3, 4]).unwrap();
        let mut out = [0u8; 4];
        bus.read(0x1004, &mut out).unwrap();
        assert_eq!(out, [1, 2, 3, 4]);
        bus.read(0x2004, &mut out).unwrap();
        assert_eq!(out, [0; 4]);
    }

    #[test]
    fn refuses_overlaps_and_empty_ranges() {
        let mut bus = Bus::new();
        bus.insert(0x1000, 0x100, scratch()).unwrap();
        assert!(matches!(
            bus.insert(0x10ff, 1, scratch()),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(0xf01, 0x100, scratch()),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(0x3000, 0, scratch()),
            Err(BusError::BadRange { .. })
        ));
        assert!(matches!(
            bus.insert(u64::MAX, 2, scratch()),
            Err(BusError::BadRange { .. })
        ));
        bus.insert(0x1100, 0x100, scratch()).unwrap();
        bus.insert(0xf00, 0x100, scratch()).unwrap();
    }

    #[test]
    fn misses_and_straddles_are_errors() {
        let mut bus = Bus::new();
        bus.insert(0x1000, 16, scratch()).unwrap();
        let mut out = [0u8; 8];
        assert_eq!(
            bus.read(0xfff, &mut out[..1]),
            Err(BusError::NoDevice(0xfff))
        );
        assert_eq!(
            bus.read(0x1010, &mut out[..1]),
            Err(BusError::NoDevice(0x1010))
        );
        assert_eq!(
            bus.read(0x100c, &mut out),
            Err(BusError::CrossesRange {
                addr: 0x100c,
                len: 8
            })
        );
        assert!(bus.contains(0x100f));
        assert!(!bus.contains(0x1010));
    }
}
