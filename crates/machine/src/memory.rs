//! Guest memory: anonymous host memory mapped as one region per guest RAM range.

use vm_memory::GuestAddress;

/// Guest memory as every vessel device sees it.
pub type GuestMemoryMmap = vm_memory::GuestMemoryMmap<()>;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("guest memory of {size} bytes at {base:#x} is empty or wraps the address space")]
    BadRange { base: u64, size: u64 },
    #[error("cannot map {size} bytes of guest memory: {source}")]
    Map {
        size: u64,
        #[source]
        source: vm_memory::mmap::FromRangesError,
    },
}

/// Map guest RAM: each `(base, size)` becomes one region.
pub fn create_guest_memory(ranges: &[(u64, u64)]) -> Result<GuestMemoryMmap, MemoryError> {
    let mut regions = Vec::with_capacity(ranges.len());
    for &(base, size) in ranges {
        if size == 0 || base.checked_add(size).is_none() {
            return Err(MemoryError::BadRange { base, size });
        }
        let len = usize::try_from(size).map_err(|_| MemoryError::BadRange { base, size })?;
        regions.push((GuestAddress(base), len));
    }
    let size = ranges.iter().map(|r| r.1).sum();
    GuestMemoryMmap::from_ranges(&regions).map_err(|source| MemoryError::Map { size, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestMemoryBackend};

    #[test]
    fn maps_and_accesses_ram() {
        let mem = create_guest_memory(&[(0x8000_0000, 1 << 20)]).unwrap();
        mem.write_obj(0xdead_beef_u32, GuestAddress(0x8000_0100))
            .unwrap();
        let v: u32 = mem.read_obj(GuestAddress(0x8000_0100)).unwrap();
        assert_eq!(v, 0xdead_beef);
        assert!(mem.read_obj::<u32>(GuestAddress(0x8010_0000)).is_err());
        assert_eq!(mem.last_addr(), GuestAddress(0x800f_ffff));
    }

    #[test]
    fn refuses_empty_or_wrapping_ranges() {
        assert!(create_guest_memory(&[(0, 0)]).is_err());
        assert!(create_guest_memory(&[(u64::MAX, 2)]).is_err());
    }
}
