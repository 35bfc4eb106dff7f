//! ACPI tables for kernels that learn their hardware only from ACPI
//! (Debian's cloud kernel has neither the MP table parser nor
//! `virtio_mmio.device=` support): an RSDP, an XSDT, a hardware-reduced
//! FADT, a MADT with every vCPU's LAPIC and the IOAPIC, and a DSDT that
//! describes COM1 and each virtio-mmio slot (`LNRO0005`, the id Linux's
//! `virtio_mmio` matches). As Firecracker does, built with rust-vmm's
//! `acpi_tables`, placed in the BIOS area at 0xe0000.

use acpi_tables::Aml;
use acpi_tables::aml::{self, Path};
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, MADT, ProcessorLocalApic,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use vessel_machine::GuestMemoryMmap;
use vessel_machine::vm_memory::{Bytes, GuestAddress};

use crate::layout::{APIC_START, IOAPIC_ID, IOAPIC_START, ZERO_PAGE_START};
use crate::legacy::{SERIAL_IRQ, SERIAL_PORT};
use crate::vm::MmioSlot;

/// Where the RSDP goes (the first place Linux scans); the other tables follow.
pub const RSDP_START: u64 = 0xe_0000;
/// End of the area the tables may use (the BIOS area ends at 1 MiB).
pub const ACPI_END: u64 = 0x10_0000;

const OEM_ID: [u8; 6] = *b"VESSEL";
const OEM_TABLE_ID: [u8; 8] = *b"MICROVM ";
const OEM_REVISION: u32 = 1;
/// IAPC_BOOT_ARCH: no VGA, no MSI, no CMOS RTC (as Firecracker sets).
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
const IAPC_MSI_NOT_PRESENT: u16 = 1 << 3;
const IAPC_CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;
/// Offset of `acpi_rsdp_addr` in boot_params.
const BOOT_PARAMS_ACPI_RSDP: u64 = 0x70;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AcpiError {
    #[error("the ACPI tables ({0} bytes) do not fit between 0xe0000 and 1 MiB")]
    TooBig(u64),
    #[error("cannot write the ACPI tables to guest memory at {0:#x}")]
    Write(u64),
}

/// The tables, each with the guest address it is built for.
pub struct AcpiTables {
    pub tables: Vec<(u64, Vec<u8>)>,
}

fn bytes(table: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    table.to_aml_bytes(&mut v);
    v
}

fn align(addr: u64) -> u64 {
    addr.div_ceil(16) * 16
}

/// The DSDT: COM1 and one `LNRO0005` device per virtio-mmio slot.
pub fn dsdt(virtio: &[MmioSlot]) -> Vec<u8> {
    let mut sdt = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    // Each device is one statement, so the temporaries it borrows live long enough.
    aml::Device::new(
        Path::new("_SB_.COM1"),
        vec![
            &aml::Name::new(Path::new("_HID"), &aml::EISAName::new("PNP0501")),
            &aml::Name::new(Path::new("_UID"), &0u8),
            &aml::Name::new(
                Path::new("_CRS"),
                &aml::ResourceTemplate::new(vec![
                    &aml::IO::new(SERIAL_PORT as u16, SERIAL_PORT as u16, 1, 8),
                    &aml::Interrupt::new(true, true, false, false, SERIAL_IRQ),
                ]),
            ),
        ],
    )
    .to_aml_bytes(&mut sdt);
    for (i, slot) in virtio.iter().enumerate() {
        let name = format!("_SB_.V{i:03X}");
        let uid = i as u32;
        aml::Device::new(
            Path::new(&name),
            vec![
                &aml::Name::new(Path::new("_HID"), &"LNRO0005"),
                &aml::Name::new(Path::new("_UID"), &uid),
                &aml::Name::new(Path::new("_CCA"), &aml::ONE),
                &aml::Name::new(
                    Path::new("_CRS"),
                    &aml::ResourceTemplate::new(vec![
                        &aml::Memory32Fixed::new(true, slot.base as u32, slot.len as u32),
                        &aml::Interrupt::new(true, true, false, false, slot.gsi),
                    ]),
                ),
            ],
        )
        .to_aml_bytes(&mut sdt);
    }
    sdt.as_slice().to_vec()
}

/// Build every table for `cpus` vCPUs and the given virtio-mmio slots.
pub fn build(cpus: u8, virtio: &[MmioSlot]) -> Result<AcpiTables, AcpiError> {
    let rsdp_len = Rsdp::len() as u64;
    let dsdt_addr = align(RSDP_START + rsdp_len);
    let dsdt = dsdt(virtio);

    let fadt_addr = align(dsdt_addr + dsdt.len() as u64);
    let mut builder = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::PwrButton);
    builder.iapc_boot_arch =
        (IAPC_VGA_NOT_PRESENT | IAPC_MSI_NOT_PRESENT | IAPC_CMOS_RTC_NOT_PRESENT).into();
    let fadt = bytes(&builder.finalize());

    let madt_addr = align(fadt_addr + fadt.len() as u64);
    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
        LocalInterruptController::Address(APIC_START as u32),
    );
    for id in 0..cpus {
        madt.add_structure(ProcessorLocalApic::new(id, id, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(IOAPIC_ID, IOAPIC_START as u32, 0));
    let madt = bytes(&madt);

    let xsdt_addr = align(madt_addr + madt.len() as u64);
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let xsdt = bytes(&xsdt);
    let end = xsdt_addr + xsdt.len() as u64;
    if end > ACPI_END {
        return Err(AcpiError::TooBig(end - RSDP_START));
    }
    let rsdp = bytes(&Rsdp::new(OEM_ID, xsdt_addr));
    Ok(AcpiTables {
        tables: vec![
            (RSDP_START, rsdp),
            (dsdt_addr, dsdt),
            (fadt_addr, fadt),
            (madt_addr, madt),
            (xsdt_addr, xsdt),
        ],
    })
}

/// Write the tables and point boot_params' `acpi_rsdp_addr` at the RSDP.
pub fn write(mem: &GuestMemoryMmap, cpus: u8, virtio: &[MmioSlot]) -> Result<(), AcpiError> {
    for (addr, table) in build(cpus, virtio)?.tables {
        mem.write_slice(&table, GuestAddress(addr))
            .map_err(|_| AcpiError::Write(addr))?;
    }
    mem.write_obj(
        RSDP_START,
        GuestAddress(ZERO_PAGE_START + BOOT_PARAMS_ACPI_RSDP),
    )
    .map_err(|_| AcpiError::Write(ZERO_PAGE_START))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    fn slots(n: u32) -> Vec<MmioSlot> {
        (0..n)
            .map(|i| MmioSlot {
                base: 0xd000_0000 + u64::from(i) * 0x1000,
                len: 0x1000,
                gsi: 5 + i,
            })
            .collect()
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    #[test]
    fn checksums_lengths_and_pointers_are_right() {
        let t = build(4, &slots(3)).unwrap().tables;
        let find = |sig: &[u8]| t.iter().find(|(_, b)| b.starts_with(sig)).unwrap();
        let (rsdp_addr, rsdp) = find(b"RSD PTR ");
        assert_eq!(*rsdp_addr, RSDP_START);
        assert_eq!(sum(&rsdp[..20]), 0);
        assert_eq!(sum(rsdp), 0);
        for (addr, table) in &t[1..] {
            assert_eq!(
                u32_at(table, 4) as usize,
                table.len(),
                "length of {addr:#x}"
            );
            assert_eq!(sum(table), 0, "checksum of {:?}", &table[..4]);
            assert!(addr + table.len() as u64 <= ACPI_END);
        }
        let (xsdt_addr, xsdt) = find(b"XSDT");
        assert_eq!(u64_at(rsdp, 24), *xsdt_addr);
        let (fadt_addr, fadt) = find(b"FACP");
        let (madt_addr, madt) = find(b"APIC");
        assert_eq!(
            (u64_at(xsdt, 36), u64_at(xsdt, 44)),
            (*fadt_addr, *madt_addr)
        );
        let (dsdt_addr, dsdt) = find(b"DSDT");
        assert_eq!(u64_at(fadt, 140), *dsdt_addr, "X_DSDT");
        assert_ne!(u32_at(fadt, 112) & (1 << 20), 0, "HW_REDUCED_ACPI");
        // MADT: four enabled LAPICs with ids 0..3, one IOAPIC.
        assert_eq!(u32_at(madt, 36), APIC_START as u32);
        let (mut off, mut lapics, mut ioapics) = (44, Vec::new(), 0);
        while off < madt.len() {
            match madt[off] {
                0 => lapics.push((madt[off + 3], u32_at(madt, off + 4) & 1)),
                1 => {
                    ioapics += 1;
                    assert_eq!(u32_at(madt, off + 4), IOAPIC_START as u32);
                }
                other => panic!("unexpected MADT entry {other}"),
            }
            off += usize::from(madt[off + 1]);
        }
        assert_eq!(lapics, vec![(0, 1), (1, 1), (2, 1), (3, 1)]);
        assert_eq!(ioapics, 1);
        // The DSDT names each virtio device by the id virtio_mmio matches.
        let hits = dsdt.windows(8).filter(|w| w == b"LNRO0005").count();
        assert_eq!(hits, 3);
    }

    #[test]
    fn iasl_disassembles_every_table_without_errors() {
        let dir = tempfile::tempdir().unwrap();
        let t = build(2, &slots(2)).unwrap().tables;
        for (_, table) in &t[1..] {
            let name = String::from_utf8_lossy(&table[..4]).to_lowercase();
            let path = dir.path().join(format!("{name}.dat"));
            std::fs::write(&path, table).unwrap();
            let out = match std::process::Command::new("iasl")
                .arg("-d")
                .arg(&path)
                .current_dir(dir.path())
                .output()
            {
                Ok(out) => out,
                Err(e) => {
                    eprintln!("SKIPPED iasl check: cannot run iasl ({e}); install acpica-tools");
                    return;
                }
            };
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "iasl -d {name}: {text}");
            assert!(!text.contains("Error"), "iasl -d {name}: {text}");
            let dsl = std::fs::read_to_string(dir.path().join(format!("{name}.dsl"))).unwrap();
            if name == "dsdt" {
                assert!(dsl.contains("LNRO0005") && dsl.contains("PNP0501"), "{dsl}");
            }
        }
    }

    /// Run `iasl -d` on `table`; the `.dsl` text, or `None` (with a note)
    /// where iasl is not installed.
    fn disassemble(table: &[u8], name: &str) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{name}.dat"));
        std::fs::write(&path, table).unwrap();
        let out = match std::process::Command::new("iasl")
            .arg("-d")
            .arg(&path)
            .current_dir(dir.path())
            .output()
        {
            Ok(out) => out,
            Err(e) => {
                eprintln!("SKIPPED iasl check: cannot run iasl ({e}); install acpica-tools");
                return None;
            }
        };
        assert!(
            out.status.success(),
            "iasl -d {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(std::fs::read_to_string(dir.path().join(format!("{name}.dsl"))).unwrap())
    }

    /// The hex number on the first line of `block` that contains `marker`.
    fn hex_on_line(block: &str, marker: &str) -> Option<u64> {
        let line = block.lines().find(|l| l.contains(marker))?;
        let at = line.find("0x")?;
        let digits: String = line[at + 2..]
            .chars()
            .take_while(|c| c.is_ascii_hexdigit())
            .collect();
        u64::from_str_radix(&digits, 16).ok()
    }

    #[test]
    fn iasl_shows_every_virtio_device_with_its_window_and_gsi() {
        // As the board hands them out: disks, cards, console, rng.
        let slots: Vec<MmioSlot> = (0..4).map(|n| crate::vm::virtio_slot(n).unwrap()).collect();
        let Some(dsl) = disassemble(&dsdt(&slots), "dsdt") else {
            return;
        };
        let blocks: Vec<&str> = dsl.split("Device (").skip(1).collect();
        let com1 = blocks
            .iter()
            .find(|b| b.starts_with("_SB.COM1)"))
            .unwrap_or_else(|| panic!("{dsl}"));
        assert!(com1.contains("\"PNP0501\"") || com1.contains("EisaId (\"PNP0501\")"));
        assert_eq!(hex_on_line(com1, "// Range Minimum"), Some(0x3f8));
        let virtio: Vec<&&str> = blocks.iter().filter(|b| b.starts_with("_SB.V")).collect();
        assert_eq!(virtio.len(), slots.len(), "{dsl}");
        let mut uids = Vec::new();
        for (n, (slot, block)) in slots.iter().zip(virtio).enumerate() {
            assert!(block.starts_with(&format!("_SB.V{n:03X})")), "{block}");
            assert!(block.contains("Name (_HID, \"LNRO0005\")"), "{block}");
            assert!(block.contains("Name (_CCA, One)"), "{block}");
            let uid = block
                .lines()
                .find(|l| l.contains("Name (_UID,"))
                .unwrap()
                .to_owned();
            assert!(!uids.contains(&uid), "two devices share {uid}");
            uids.push(uid);
            assert!(block.contains("Memory32Fixed (ReadWrite,"), "{block}");
            assert_eq!(hex_on_line(block, "// Address Base"), Some(slot.base));
            assert_eq!(hex_on_line(block, "// Address Length"), Some(slot.len));
            // The interrupt: the slot's GSI, edge-triggered and active high
            // as the IOAPIC pin is programmed for virtio-mmio.
            let irq = &block[block.find("Interrupt (").expect(block)..];
            let header = irq.lines().next().unwrap();
            assert!(
                header.contains("ResourceConsumer, Edge, ActiveHigh, Exclusive"),
                "{header}"
            );
            let gsi = irq.lines().nth(2).unwrap().trim().trim_end_matches(',');
            assert_eq!(gsi, format!("0x{:08X}", slot.gsi), "{irq}");
        }
        assert_eq!(slots[0].gsi, 5);
        assert_eq!(slots[0].base, crate::layout::VIRTIO_MMIO_START);
    }

    /// The IOAPIC entries of the MP table and the MADT: (id, address), and
    /// the MP table's interrupt entries' destination IOAPIC ids.
    fn ioapic_in_mptable(t: &[u8]) -> ((u8, u32), Vec<u8>) {
        let c = &t[16..];
        let n = u16::from_le_bytes([c[34], c[35]]);
        let (mut off, mut ioapic, mut dest) = (44, None, Vec::new());
        for _ in 0..n {
            match c[off] {
                0 => off += 20,
                2 => {
                    ioapic = Some((c[off + 1], u32_at(c, off + 4)));
                    off += 8;
                }
                3 => {
                    dest.push(c[off + 6]);
                    off += 8;
                }
                _ => off += 8,
            }
        }
        (ioapic.expect("an IOAPIC entry"), dest)
    }

    fn ioapic_in_madt(madt: &[u8]) -> (u8, u32) {
        let mut off = 44;
        while off < madt.len() {
            if madt[off] == 1 {
                return (madt[off + 2], u32_at(madt, off + 4));
            }
            off += usize::from(madt[off + 1]);
        }
        panic!("no IOAPIC in the MADT");
    }

    #[test]
    fn the_mp_table_and_the_madt_name_the_same_ioapic() {
        for cpus in [1u8, 2, 4, crate::mptable::MAX_VCPUS] {
            let mp = crate::mptable::build(usize::from(cpus), crate::layout::EBDA_START).unwrap();
            let (mp_ioapic, dest) = ioapic_in_mptable(&mp);
            let t = build(cpus, &slots(2)).unwrap().tables;
            let (_, madt) = t.iter().find(|(_, b)| b.starts_with(b"APIC")).unwrap();
            let madt_ioapic = ioapic_in_madt(madt);
            assert_eq!(mp_ioapic, madt_ioapic, "{cpus} vCPUs");
            assert_eq!(madt_ioapic, (IOAPIC_ID, IOAPIC_START as u32));
            assert_eq!(dest.len(), usize::from(crate::mptable::IOAPIC_PINS));
            assert!(dest.iter().all(|&d| d == IOAPIC_ID), "{dest:?}");
        }
    }

    #[test]
    fn many_cpus_and_devices_still_fit() {
        let t = build(32, &slots(19)).unwrap().tables;
        let (addr, last) = t.last().unwrap();
        assert!(addr + last.len() as u64 <= ACPI_END);
    }
}
