//! vCPU setup for the 64-bit boot protocol: CPUID filtered from KVM's
//! supported set, MSRs, FPU, the local APIC's LINT pins, and — for the boot
//! vCPU — identity page tables, a GDT and long mode at the kernel's entry.

use vessel_kvm::kvm_bindings::{CpuId, Msrs, kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment};
use vessel_kvm::kvm_ioctls::VcpuFd;
use vessel_machine::GuestMemoryMmap;
use vessel_machine::vm_memory::{Bytes, GuestAddress};

use crate::layout::{
    BOOT_STACK_POINTER, GDT_START, IDENTITY_MAPPED_GIB, IDT_START, PD_START, PDPT_START,
    PML4_START, ZERO_PAGE_START,
};

/// Errors of setting up a vCPU.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error("vCPU {id}: cannot {what}: {source}")]
    Kvm {
        id: u8,
        what: &'static str,
        #[source]
        source: vessel_kvm::kvm_ioctls::Error,
    },
    #[error("vCPU {id}: KVM refused MSR {index:#x} (set {written} of {total} boot MSRs)")]
    Msr {
        id: u8,
        index: u32,
        written: usize,
        total: usize,
    },
    #[error("cannot write the boot {what} to guest memory at {addr:#x}: {reason}")]
    Memory {
        what: &'static str,
        addr: u64,
        reason: String,
    },
}

// Control register and EFER bits.
const X86_CR0_PE: u64 = 1;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// The boot GDT: null, 64-bit code (selector 0x08), data (0x10), TSS (0x18).
pub const BOOT_GDT: [u64; 4] = [
    0,
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
];

/// Encode a GDT descriptor from its flags (access byte and the high nibble
/// of flags), base and limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let (flags, base, limit) = (flags as u64, base as u64, limit as u64);
    ((base & 0xff00_0000) << (56 - 24))
        | ((flags & 0x0000_f0ff) << 40)
        | ((limit & 0x000f_0000) << (48 - 16))
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
}

/// The KVM segment register a descriptor loads.
pub fn kvm_segment_from_gdt(entry: u64, index: u8) -> kvm_segment {
    let g = ((entry >> 55) & 1) as u8;
    let raw_limit = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let present = ((entry >> 47) & 1) as u8;
    kvm_segment {
        base: ((entry >> 16) & 0xff_ffff) | ((entry >> 32) & 0xff00_0000),
        limit: if g == 1 {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        },
        selector: u16::from(index) * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

fn write_mem<T: vessel_machine::vm_memory::ByteValued>(
    mem: &GuestMemoryMmap,
    what: &'static str,
    addr: u64,
    value: T,
) -> Result<(), CpuError> {
    mem.write_obj(value, GuestAddress(addr))
        .map_err(|e| CpuError::Memory {
            what,
            addr,
            reason: e.to_string(),
        })
}

/// Write the GDT, an empty IDT and identity page tables mapping the first
/// [`IDENTITY_MAPPED_GIB`] GiB with 2 MiB pages.
pub fn write_boot_tables(mem: &GuestMemoryMmap) -> Result<(), CpuError> {
    for (i, e) in BOOT_GDT.iter().enumerate() {
        write_mem(mem, "GDT", GDT_START + 8 * i as u64, *e)?;
    }
    write_mem(mem, "IDT", IDT_START, 0u64)?;
    write_mem(mem, "PML4", PML4_START, PDPT_START | 0x03)?;
    for gib in 0..IDENTITY_MAPPED_GIB {
        let pd = PD_START + gib * 0x1000;
        write_mem(mem, "PDPT", PDPT_START + gib * 8, pd | 0x03)?;
        for i in 0..512u64 {
            // Present, writable, 2 MiB page.
            let addr = (gib << 30) | (i << 21);
            write_mem(mem, "page directory", pd + i * 8, addr | 0x83)?;
        }
    }
    Ok(())
}

fn kvm_err(id: u8, what: &'static str) -> impl FnOnce(vessel_kvm::kvm_ioctls::Error) -> CpuError {
    move |source| CpuError::Kvm { id, what, source }
}

/// CPUID for vCPU `id` of `count`: KVM's supported leaves, with this vCPU's
/// APIC id, the CPU count and the hypervisor bit filled in.
pub fn filter_cpuid(supported: &CpuId, id: u8, count: u8) -> CpuId {
    let mut cpuid = supported.clone();
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x0000_ffff) | (u32::from(id) << 24) | (u32::from(count) << 16);
                e.ecx |= 1 << 31; // running under a hypervisor
                if count > 1 {
                    e.edx |= 1 << 28; // HTT: more than one logical CPU
                }
            }
            0xb | 0x1f => e.edx = u32::from(id),
            _ => {}
        }
    }
    cpuid
}

/// The MSRs every vCPU starts with (Firecracker's boot set).
pub fn boot_msrs() -> Vec<kvm_msr_entry> {
    const MSR_IA32_SYSENTER_CS: u32 = 0x174;
    const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
    const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
    const MSR_STAR: u32 = 0xc000_0081;
    const MSR_LSTAR: u32 = 0xc000_0082;
    const MSR_CSTAR: u32 = 0xc000_0083;
    const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
    const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
    const MSR_IA32_TSC: u32 = 0x10;
    const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
    const MISC_ENABLE_FAST_STRING: u64 = 1;
    [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
    ]
    .into_iter()
    .map(|(index, data)| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    })
    .collect()
}

/// Local APIC register offsets and delivery modes.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn set_apic_delivery_mode(regs: &mut [std::os::raw::c_char; 1024], offset: usize, mode: u32) {
    let mut bytes = [0u8; 4];
    for (b, r) in bytes.iter_mut().zip(&regs[offset..offset + 4]) {
        *b = *r as u8;
    }
    let value = (u32::from_le_bytes(bytes) & !0x700) | (mode << 8);
    for (r, b) in regs[offset..offset + 4].iter_mut().zip(value.to_le_bytes()) {
        *r = b as std::os::raw::c_char;
    }
}

/// Set up what every vCPU needs: CPUID, MSRs, FPU and LAPIC LINT0/LINT1
/// (ExtINT from the PIC, NMI), as a PC's BIOS leaves them.
pub fn setup_vcpu(vcpu: &VcpuFd, id: u8, count: u8, supported: &CpuId) -> Result<(), CpuError> {
    vcpu.set_cpuid2(&filter_cpuid(supported, id, count))
        .map_err(kvm_err(id, "set CPUID"))?;
    let entries = boot_msrs();
    let msrs = Msrs::from_entries(&entries).map_err(|_| CpuError::Msr {
        id,
        index: 0,
        written: 0,
        total: entries.len(),
    })?;
    let written = vcpu.set_msrs(&msrs).map_err(kvm_err(id, "set MSRs"))?;
    if written != entries.len() {
        return Err(CpuError::Msr {
            id,
            index: entries[written].index,
            written,
            total: entries.len(),
        });
    }
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(kvm_err(id, "set the FPU"))?;
    let mut lapic = vcpu.get_lapic().map_err(kvm_err(id, "read the LAPIC"))?;
    set_apic_delivery_mode(&mut lapic.regs, APIC_LVT0, APIC_MODE_EXTINT);
    set_apic_delivery_mode(&mut lapic.regs, APIC_LVT1, APIC_MODE_NMI);
    vcpu.set_lapic(&lapic)
        .map_err(kvm_err(id, "set the LAPIC"))?;
    Ok(())
}

/// Put the boot vCPU in 64-bit long mode at `entry`, with `rsi` pointing at
/// boot_params, as the Linux 64-bit boot protocol requires.
pub fn setup_boot_vcpu_long_mode(vcpu: &VcpuFd, entry: u64) -> Result<(), CpuError> {
    let id = 0;
    let mut sregs = vcpu.get_sregs().map_err(kvm_err(id, "read sregs"))?;
    let code = kvm_segment_from_gdt(BOOT_GDT[1], 1);
    let data = kvm_segment_from_gdt(BOOT_GDT[2], 2);
    let tss = kvm_segment_from_gdt(BOOT_GDT[3], 3);
    sregs.gdt.base = GDT_START;
    sregs.gdt.limit = (BOOT_GDT.len() * 8 - 1) as u16;
    sregs.idt.base = IDT_START;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    sregs.cr3 = PML4_START;
    sregs.cr4 |= X86_CR4_PAE;
    sregs.cr0 |= X86_CR0_PE | X86_CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
    vcpu.set_sregs(&sregs).map_err(kvm_err(id, "set sregs"))?;
    let regs = kvm_regs {
        rflags: 2,
        rip: entry,
        rsp: BOOT_STACK_POINTER,
        rbp: BOOT_STACK_POINTER,
        rsi: ZERO_PAGE_START,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(kvm_err(id, "set registers"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vessel_kvm::kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn gdt_entries_decode_to_long_mode_segments() {
        let code = kvm_segment_from_gdt(BOOT_GDT[1], 1);
        assert_eq!((code.selector, code.l, code.db, code.present), (8, 1, 0, 1));
        assert_eq!(
            (code.type_, code.s, code.g, code.limit),
            (0xb, 1, 1, 0xffff_ffff)
        );
        let data = kvm_segment_from_gdt(BOOT_GDT[2], 2);
        assert_eq!(
            (data.selector, data.type_, data.db, data.l),
            (0x10, 3, 1, 0)
        );
        let tss = kvm_segment_from_gdt(BOOT_GDT[3], 3);
        assert_eq!((tss.type_, tss.s, tss.present), (0xb, 0, 1));
        let null = kvm_segment_from_gdt(0, 0);
        assert_eq!(null.unusable, 1);
        // A base is split across the descriptor and put back together.
        let e = gdt_entry(0xc093, 0x1234_5678, 0xabcde);
        let s = kvm_segment_from_gdt(e, 5);
        assert_eq!(s.base, 0x1234_5678);
        assert_eq!(s.limit, 0xabcd_efff);
    }

    #[test]
    fn page_tables_identity_map_four_gib() {
        let mem = vessel_machine::create_guest_memory(&[(0, 1 << 20)]).unwrap();
        write_boot_tables(&mem).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_START)).unwrap();
        assert_eq!(pml4, PDPT_START | 3);
        // Walk the tables for the LAPIC page: it must map to itself.
        let va = 0xfee0_0000u64;
        let pdpte: u64 = mem
            .read_obj(GuestAddress(PDPT_START + ((va >> 30) & 511) * 8))
            .unwrap();
        let pde: u64 = mem
            .read_obj(GuestAddress((pdpte & !0xfff) + ((va >> 21) & 511) * 8))
            .unwrap();
        assert_eq!(pde & 0x83, 0x83);
        assert_eq!(pde & !0x1f_ffff, va & !0x1f_ffff);
    }

    #[test]
    fn cpuid_carries_the_apic_id_and_hypervisor_bit() {
        let leaf = |function, ebx| kvm_cpuid_entry2 {
            function,
            ebx,
            ..Default::default()
        };
        let supported =
            CpuId::from_entries(&[leaf(1, 0x0000_0800), leaf(0xb, 0), leaf(7, 9)]).unwrap();
        let c = filter_cpuid(&supported, 3, 4);
        let e = c.as_slice();
        assert_eq!(e[0].ebx >> 24, 3);
        assert_eq!((e[0].ebx >> 16) & 0xff, 4);
        assert_eq!(e[0].ebx & 0xffff, 0x0800, "CLFLUSH size kept");
        assert_ne!(e[0].ecx & (1 << 31), 0);
        assert_ne!(e[0].edx & (1 << 28), 0);
        assert_eq!(e[1].edx, 3);
        assert_eq!(e[2].ebx, 9, "other leaves untouched");
    }

    #[test]
    fn lint_pins_get_their_delivery_modes() {
        let mut regs = [0 as std::os::raw::c_char; 1024];
        regs[APIC_LVT0 + 2] = 1; // a masked-bit-style neighbour survives
        set_apic_delivery_mode(&mut regs, APIC_LVT0, APIC_MODE_EXTINT);
        set_apic_delivery_mode(&mut regs, APIC_LVT1, APIC_MODE_NMI);
        assert_eq!(regs[APIC_LVT0 + 1] as u8, 0x07);
        assert_eq!(regs[APIC_LVT0 + 2] as u8, 1);
        assert_eq!(regs[APIC_LVT1 + 1] as u8, 0x04);
    }
}
