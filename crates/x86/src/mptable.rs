//! The Intel MultiProcessor table (MP spec 1.4): how a guest without ACPI
//! finds its CPUs, the IOAPIC and the ISA interrupt routing. It lives in the
//! EBDA, where Linux scans for the `_MP_` floating pointer.

use vessel_machine::GuestMemoryMmap;
use vessel_machine::vm_memory::{Bytes, GuestAddress};

use crate::layout::{APIC_START, EBDA_START, IOAPIC_ID, IOAPIC_START};

/// Most vCPUs the microvm describes (Firecracker's limit; the table must fit
/// in the 1 KiB EBDA).
pub const MAX_VCPUS: u8 = 32;
/// IOAPIC pins described (and routed 1:1 from ISA IRQs / GSIs).
pub const IOAPIC_PINS: u8 = 24;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MpTableError {
    #[error("the MP table describes 1 to {MAX_VCPUS} vCPUs, not {0}: ask for fewer vCPUs")]
    TooManyCpus(usize),
    #[error("cannot write the MP table to guest memory at {0:#x}: is guest memory at least 1 MiB?")]
    Write(u64),
}

const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const MP_SPEC: u8 = 4;
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
/// Family 6 signature and FPU|APIC feature flags, as Firecracker reports.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = 0x201;
const INT_VECTORED: u8 = 0;
const INT_NMI: u8 = 1;
const INT_EXTINT: u8 = 3;

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

/// Build the floating pointer and configuration table for `cpus` vCPUs,
/// to be placed at `base`.
pub fn build(cpus: usize, base: u64) -> Result<Vec<u8>, MpTableError> {
    if cpus == 0 || cpus > usize::from(MAX_VCPUS) {
        return Err(MpTableError::TooManyCpus(cpus));
    }
    let ioapic_id = IOAPIC_ID;
    let config_addr = base + 16;
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    for id in 0..cpus as u8 {
        entries.extend_from_slice(&[
            0,
            id,
            APIC_VERSION,
            CPU_ENABLED | if id == 0 { CPU_BSP } else { 0 },
        ]);
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[1, 0, b'I', b'S', b'A', b' ', b' ', b' ']);
    entries.extend_from_slice(&[2, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&(IOAPIC_START as u32).to_le_bytes());
    count += 2;
    for irq in 0..IOAPIC_PINS {
        entries.extend_from_slice(&[3, INT_VECTORED, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // LINT0 of every LAPIC takes the PIC's ExtINT, LINT1 is NMI.
    entries.extend_from_slice(&[4, INT_EXTINT, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, INT_NMI, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let mut config = Vec::with_capacity(44 + entries.len());
    config.extend_from_slice(b"PCMP");
    config.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    config.push(MP_SPEC);
    config.push(0); // checksum, below
    config.extend_from_slice(b"VESSEL  ");
    config.extend_from_slice(b"MICROVM     ");
    config.extend_from_slice(&0u32.to_le_bytes()); // OEM table
    config.extend_from_slice(&0u16.to_le_bytes());
    config.extend_from_slice(&count.to_le_bytes());
    config.extend_from_slice(&(APIC_START as u32).to_le_bytes());
    config.extend_from_slice(&0u32.to_le_bytes()); // extended table
    config.extend_from_slice(&entries);
    config[7] = checksum(&config);

    let mut table = Vec::with_capacity(16 + config.len());
    table.extend_from_slice(b"_MP_");
    table.extend_from_slice(&(config_addr as u32).to_le_bytes());
    table.extend_from_slice(&[1, MP_SPEC, 0, 0, 0, 0, 0, 0]);
    table[10] = checksum(&table);
    table.extend_from_slice(&config);
    Ok(table)
}

/// Write the MP table for `cpus` vCPUs into the EBDA.
pub fn write(mem: &GuestMemoryMmap, cpus: usize) -> Result<(), MpTableError> {
    let table = build(cpus, EBDA_START)?;
    mem.write_slice(&table, GuestAddress(EBDA_START))
        .map_err(|_| MpTableError::Write(EBDA_START))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    #[test]
    fn checksums_and_counts_are_right() {
        for cpus in [1, 2, usize::from(MAX_VCPUS)] {
            let t = build(cpus, EBDA_START).unwrap();
            assert!(t.len() <= 0x400, "fits the EBDA: {}", t.len());
            assert_eq!(&t[..4], b"_MP_");
            assert_eq!(sum(&t[..16]), 0);
            let ptr = u32::from_le_bytes(t[4..8].try_into().unwrap()) as u64;
            assert_eq!(ptr, EBDA_START + 16);
            let c = &t[16..];
            assert_eq!(&c[..4], b"PCMP");
            let len = u16::from_le_bytes([c[4], c[5]]) as usize;
            assert_eq!(len, c.len());
            assert_eq!(sum(c), 0);
            // Walk the entries as a guest would and count processors.
            let n = u16::from_le_bytes([c[34], c[35]]);
            let (mut off, mut procs, mut bsp) = (44, 0, 0);
            for _ in 0..n {
                match c[off] {
                    0 => {
                        procs += 1;
                        if c[off + 3] & CPU_BSP != 0 {
                            bsp += 1;
                        }
                        off += 20;
                    }
                    1..=4 => off += 8,
                    other => panic!("bad entry type {other}"),
                }
            }
            assert_eq!(off, len);
            assert_eq!((procs, bsp), (cpus, 1));
        }
    }

    #[test]
    fn cpu_counts_outside_the_table_are_refused() {
        assert_eq!(build(0, EBDA_START), Err(MpTableError::TooManyCpus(0)));
        assert_eq!(build(33, EBDA_START), Err(MpTableError::TooManyCpus(33)));
    }
}
