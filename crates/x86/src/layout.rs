//! The microvm's guest-physical memory map (Firecracker's layout).
//!
//! ```text
//! 0x0000_0500  GDT                0x0000_9000  PML4
//! 0x0000_0520  IDT (empty)        0x0000_a000  PDPT
//! 0x0000_7000  boot_params        0x0000_b000  4 page directories (0–4 GiB, 2 MiB pages)
//! 0x0000_8ff0  boot stack top     0x0002_0000  kernel command line
//! 0x0009_fc00  EBDA: MP table     0x0010_0000  kernel (ELF paddr / bzImage code32_start)
//! 0xd000_0000  MMIO gap (virtio)  0xfec0_0000  IOAPIC, 0xfee0_0000 LAPIC
//! 4 GiB        RAM above the gap, when the guest has more than 3.25 GiB
//! ```

/// Global descriptor table.
pub const GDT_START: u64 = 0x500;
/// Interrupt descriptor table (empty until the guest installs its own).
pub const IDT_START: u64 = 0x520;
/// The Linux zero page (`struct boot_params`).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer of the boot vCPU.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Identity page tables: PML4, one PDPT, four page directories.
pub const PML4_START: u64 = 0x9000;
pub const PDPT_START: u64 = 0xa000;
pub const PD_START: u64 = 0xb000;
/// Gigabytes identity-mapped by the boot page tables.
pub const IDENTITY_MAPPED_GIB: u64 = 4;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Longest command line accepted (Linux's x86 COMMAND_LINE_SIZE).
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Start of the extended BIOS data area; the MP table lives here.
pub const EBDA_START: u64 = 0x9fc00;
/// First byte above the legacy hole; kernels load here or above.
pub const HIMEM_START: u64 = 0x10_0000;
/// Guest-physical hole below 4 GiB for MMIO devices.
pub const MMIO_GAP_START: u64 = 0xd000_0000;
pub const MMIO_GAP_END: u64 = 1 << 32;
/// Where virtio-mmio devices are placed, one 4 KiB slot each.
pub const VIRTIO_MMIO_START: u64 = MMIO_GAP_START;
pub const VIRTIO_MMIO_SLOT: u64 = 0x1000;
/// The KVM TSS area (three pages) just below the IOAPIC region, as QEMU and Firecracker use.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;
/// IOAPIC and local APIC MMIO bases.
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// The IOAPIC's id, as both the MP table and the MADT give it: 0, the value
/// of KVM's in-kernel IOAPIC id register after reset (QEMU's MADT says the
/// same). Nothing rewrites that register, so a guest that reads it finds
/// what the tables say. IOAPIC ids and local APIC ids are separate name
/// spaces on every CPU since the Pentium 4 (xAPIC), so 0 does not clash
/// with the boot vCPU.
pub const IOAPIC_ID: u8 = 0;
pub const APIC_START: u64 = 0xfee0_0000;

/// e820 entry types.
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

/// Smallest guest that can hold the boot structures and a kernel.
pub const MIN_MEMORY: u64 = 2 << 20;

/// Guest RAM ranges `(base, size)` for `size` bytes of memory: below the
/// MMIO gap, and the rest above 4 GiB.
pub fn ram_ranges(size: u64) -> Vec<(u64, u64)> {
    if size <= MMIO_GAP_START {
        vec![(0, size)]
    } else {
        vec![(0, MMIO_GAP_START), (MMIO_GAP_END, size - MMIO_GAP_START)]
    }
}

/// One e820 map entry as the guest sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

/// The e820 map for `size` bytes of RAM: conventional memory up to the EBDA,
/// then RAM from 1 MiB, split around the MMIO gap.
pub fn e820_map(size: u64) -> Vec<E820Entry> {
    let mut map = vec![E820Entry {
        addr: 0,
        size: EBDA_START,
        kind: E820_RAM,
    }];
    for (base, len) in ram_ranges(size) {
        let start = base.max(HIMEM_START);
        let end = base + len;
        if end > start {
            map.push(E820Entry {
                addr: start,
                size: end - start,
                kind: E820_RAM,
            });
        }
    }
    map
}

/// The end of RAM below the MMIO gap.
pub fn low_ram_end(size: u64) -> u64 {
    size.min(MMIO_GAP_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guests_have_one_range_and_two_e820_entries() {
        assert_eq!(ram_ranges(128 << 20), vec![(0, 128 << 20)]);
        let map = e820_map(128 << 20);
        assert_eq!(map.len(), 2);
        assert_eq!(
            map[0],
            E820Entry {
                addr: 0,
                size: EBDA_START,
                kind: E820_RAM
            }
        );
        assert_eq!(map[1].addr, HIMEM_START);
        assert_eq!(map[1].addr + map[1].size, 128 << 20);
    }

    #[test]
    fn large_guests_skip_the_mmio_gap() {
        let size = 5u64 << 30;
        let ranges = ram_ranges(size);
        assert_eq!(
            ranges,
            vec![(0, MMIO_GAP_START), (1 << 32, size - MMIO_GAP_START)]
        );
        assert_eq!(ranges.iter().map(|r| r.1).sum::<u64>(), size);
        let map = e820_map(size);
        assert_eq!(map.len(), 3);
        assert_eq!(map[2].addr, 1 << 32);
        assert!(
            map.iter()
                .all(|e| e.addr + e.size <= MMIO_GAP_START || e.addr >= MMIO_GAP_END)
        );
    }

    #[test]
    fn boot_structures_do_not_overlap() {
        let mut areas = [
            (GDT_START, 0x20),
            (IDT_START, 8),
            (ZERO_PAGE_START, 0x1000),
            (BOOT_STACK_POINTER - 0x800, 0x800),
            (PML4_START, 0x1000),
            (PDPT_START, 0x1000),
            (PD_START, 0x1000 * IDENTITY_MAPPED_GIB),
            (CMDLINE_START, CMDLINE_MAX_SIZE as u64),
            (EBDA_START, 0x400),
        ];
        areas.sort();
        for w in areas.windows(2) {
            assert!(
                w[0].0 + w[0].1 <= w[1].0,
                "{:x?} overlaps {:x?}",
                w[0],
                w[1]
            );
        }
        assert!(areas.last().unwrap().0 + 0x400 <= HIMEM_START);
    }
}
