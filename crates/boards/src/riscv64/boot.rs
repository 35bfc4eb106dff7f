//! Boot images: OpenSBI firmware, the Linux RISC-V `Image`, the initrd, and
//! where each goes in guest RAM for OpenSBI's `fw_dynamic` protocol.
//!
//! Layout (QEMU's virt does the same, except that it keeps fw_dynamic_info
//! in its boot ROM):
//! - firmware at `DRAM_BASE` (a raw binary, or a RISC-V ELF by its program
//!   headers), at most up to the kernel;
//! - the kernel at `DRAM_BASE + text_offset` (2 MiB for rv64), taking
//!   `image_size` bytes (its bss included);
//! - the device tree high in RAM (below 3 GiB), aligned down to 2 MiB so
//!   OpenSBI can grow it in place; `fw_dynamic_info` in the 4 KiB below it,
//!   the initrd right below that.

use std::path::{Path, PathBuf};

use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, elf};

use super::layout::DRAM_BASE;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// Where the kernel goes when there is none, and the firmware's limit.
pub const DEFAULT_KERNEL_OFFSET: u64 = 2 * MIB;
/// The device tree stays below this address, as QEMU keeps it.
const FDT_LIMIT: u64 = 0xc000_0000;
const FDT_ALIGN: u64 = 2 * MIB;
const PAGE: u64 = 4 * KIB;
const IMAGE_HEADER_LEN: usize = 64;
const IMAGE_MAGIC2: &[u8; 4] = b"RSC\x05";

/// fw_dynamic_info, as OpenSBI's `include/sbi/fw_dynamic.h` defines it.
pub const FW_DYNAMIC_INFO_MAGIC: u64 = 0x4942_534f;
pub const FW_DYNAMIC_INFO_VERSION: u64 = 2;
pub const FW_DYNAMIC_NEXT_MODE_S: u64 = 1;
pub const FW_DYNAMIC_INFO_LEN: usize = 48;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path} is empty")]
    Empty { what: &'static str, path: PathBuf },
    #[error(
        "kernel {path} is {len} bytes, shorter than the 64-byte RISC-V Image header: a truncated or wrong file; pass the kernel's raw `Image`"
    )]
    KernelTooShort { path: PathBuf, len: usize },
    #[error(
        "kernel {path} is truncated: its Image header says {expected} bytes, the file has {len}; fetch the kernel again"
    )]
    KernelTruncated {
        path: PathBuf,
        expected: u64,
        len: usize,
    },
    #[error("{what} {path} is {kind}; {hint}")]
    WrongFormat {
        what: &'static str,
        path: PathBuf,
        kind: &'static str,
        hint: &'static str,
    },
    #[error(
        "kernel {path} has no RISC-V Image magic \"RSC\\x05\" at offset 0x38: not a Linux RISC-V `Image`"
    )]
    NotAnImage { path: PathBuf },
    #[error("kernel {path}: {problem}")]
    BadImageHeader { path: PathBuf, problem: String },
    #[error("firmware {path} is not a usable ELF file: {problem}")]
    BadElf { path: PathBuf, problem: String },
    #[error(
        "firmware {path} is {size} bytes but only {room} bytes fit below the kernel at {kernel:#x}"
    )]
    FirmwareTooLarge {
        path: PathBuf,
        size: u64,
        room: u64,
        kernel: u64,
    },
    #[error(
        "firmware {path} loads a segment at {addr:#x}..{end:#x}, outside {DRAM_BASE:#x}..{kernel:#x} (RAM below the kernel)"
    )]
    FirmwareOutside {
        path: PathBuf,
        addr: u64,
        end: u64,
        kernel: u64,
    },
    #[error(
        "memory too small for the images: firmware {firmware} bytes, kernel {kernel} bytes in memory at {kernel_addr:#x}, initrd {initrd} bytes, device tree {fdt} bytes need --memory of at least {need_mib}M (it is {have_mib}M)"
    )]
    MemoryTooSmall {
        firmware: u64,
        kernel: u64,
        kernel_addr: u64,
        initrd: u64,
        fdt: u64,
        need_mib: u64,
        have_mib: u64,
    },
}

/// Read a boot file, naming it in errors.
pub fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, BootError> {
    let data = std::fs::read(path).map_err(|source| BootError::Read {
        what,
        path: path.to_owned(),
        source,
    })?;
    if data.is_empty() {
        return Err(BootError::Empty {
            what,
            path: path.to_owned(),
        });
    }
    Ok(data)
}

fn u16_at(d: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(d: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(d: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(o..o + 8)?.try_into().ok()?))
}

/// Formats that are clearly not what a RISC-V board boots.
fn foreign_format(data: &[u8]) -> Option<(&'static str, &'static str)> {
    if data.starts_with(&[0x1f, 0x8b]) {
        return Some((
            "gzip-compressed",
            "decompress it first (`zcat FILE > Image`)",
        ));
    }
    if data.get(0x202..0x206) == Some(b"HdrS") {
        return Some((
            "an x86 Linux bzImage",
            "a riscv64 guest needs a RISC-V build (use --arch x86_64 for x86 guests)",
        ));
    }
    if data.len() >= 512 && data[510] == 0x55 && data[511] == 0xaa {
        return Some((
            "an x86 boot sector",
            "a riscv64 guest needs RISC-V firmware such as OpenSBI's fw_dynamic.bin",
        ));
    }
    None
}

fn is_elf(data: &[u8]) -> bool {
    data.starts_with(b"\x7fELF")
}

fn is_riscv_image(data: &[u8]) -> bool {
    data.get(0x38..0x3c) == Some(IMAGE_MAGIC2)
}

/// A Linux RISC-V `Image` (Documentation/arch/riscv/boot-image-header.rst).
#[derive(Debug)]
pub struct KernelImage {
    pub data: Vec<u8>,
    /// Load offset from the start of RAM.
    pub text_offset: u64,
    /// Bytes the kernel occupies once loaded (bss included).
    pub mem_size: u64,
}

impl KernelImage {
    pub fn parse(path: &Path, data: Vec<u8>) -> Result<Self, BootError> {
        let path = path.to_owned();
        if is_elf(&data) {
            return Err(BootError::WrongFormat {
                what: "kernel",
                path,
                kind: "an ELF file (a vmlinux?)",
                hint: "vessel boots the raw RISC-V `Image` (arch/riscv/boot/Image)",
            });
        }
        if let Some((kind, hint)) = foreign_format(&data) {
            return Err(BootError::WrongFormat {
                what: "kernel",
                path,
                kind,
                hint,
            });
        }
        if data.len() < IMAGE_HEADER_LEN {
            return Err(BootError::KernelTooShort {
                path,
                len: data.len(),
            });
        }
        if !is_riscv_image(&data) {
            return Err(BootError::NotAnImage { path });
        }
        let text_offset = u64_at(&data, 8).unwrap_or(0);
        let image_size = u64_at(&data, 16).unwrap_or(0);
        let flags = u64_at(&data, 24).unwrap_or(0);
        if flags & 1 != 0 {
            return Err(BootError::BadImageHeader {
                path,
                problem: "the header says big-endian; the virt board is little-endian".into(),
            });
        }
        if !text_offset.is_multiple_of(2 * MIB) || text_offset == 0 || text_offset > 1 << 30 {
            return Err(BootError::BadImageHeader {
                path,
                problem: format!(
                    "text_offset {text_offset:#x} is not a non-zero multiple of 2 MiB below 1 GiB"
                ),
            });
        }
        if let Some(expected) = pe_file_size(&data)
            && (data.len() as u64) < expected
        {
            return Err(BootError::KernelTruncated {
                path,
                expected,
                len: data.len(),
            });
        }
        let mem_size = image_size.max(data.len() as u64);
        Ok(Self {
            data,
            text_offset,
            mem_size,
        })
    }
}

/// The file size an EFI-stub Image's PE/COFF section table implies, if the
/// Image has one ("MZ" at 0, "PE\0\0" where offset 0x3c points).
fn pe_file_size(d: &[u8]) -> Option<u64> {
    if !d.starts_with(b"MZ") {
        return None;
    }
    let pe = u32_at(d, 0x3c)? as usize;
    if d.get(pe..pe + 4)? != b"PE\0\0" {
        return None;
    }
    let sections = u16_at(d, pe + 6)? as usize;
    let opt_len = u16_at(d, pe + 20)? as usize;
    let table = pe + 24 + opt_len;
    let mut end = 0u64;
    for i in 0..sections.min(96) {
        let s = table + 40 * i;
        // A section table cut off by truncation: the file ends in the header.
        let raw_size = u32_at(d, s + 16).unwrap_or(u32::MAX) as u64;
        let raw_ptr = u32_at(d, s + 20).unwrap_or(0) as u64;
        end = end.max(raw_ptr + raw_size);
    }
    Some(end)
}

/// Firmware ready to copy into RAM.
#[derive(Debug)]
pub struct Firmware {
    /// `(guest address, bytes)`; the ELF's bss is given as zeros.
    pub segments: Vec<(u64, Vec<u8>)>,
    pub entry: u64,
    /// Highest address the firmware's image reaches.
    pub end: u64,
}

impl Firmware {
    /// Check and place a firmware file whose image must end by `limit`
    /// (the kernel's load address).
    pub fn parse(path: &Path, data: Vec<u8>, limit: u64) -> Result<Self, BootError> {
        let p = || path.to_owned();
        if is_elf(&data) {
            return Self::parse_elf(path, &data, limit);
        }
        if let Some((kind, hint)) = foreign_format(&data) {
            return Err(BootError::WrongFormat {
                what: "firmware",
                path: p(),
                kind,
                hint,
            });
        }
        if data.len() >= IMAGE_HEADER_LEN && is_riscv_image(&data) {
            return Err(BootError::WrongFormat {
                what: "firmware",
                path: p(),
                kind: "a Linux RISC-V kernel Image",
                hint: "pass it as --kernel, and OpenSBI's fw_dynamic.bin as --firmware",
            });
        }
        let size = data.len() as u64;
        if size > limit - DRAM_BASE {
            return Err(BootError::FirmwareTooLarge {
                path: p(),
                size,
                room: limit - DRAM_BASE,
                kernel: limit,
            });
        }
        Ok(Self {
            segments: vec![(DRAM_BASE, data)],
            entry: DRAM_BASE,
            end: DRAM_BASE + size,
        })
    }

    fn parse_elf(path: &Path, data: &[u8], limit: u64) -> Result<Self, BootError> {
        let bad = |problem: String| BootError::BadElf {
            path: path.to_owned(),
            problem,
        };
        // e_machine and class first, for a clear message about foreign ELFs.
        let class = data.get(4).copied().unwrap_or(0);
        let machine = u16_at(data, 18).unwrap_or(0);
        if machine != elf::EM_RISCV {
            return Err(BootError::WrongFormat {
                what: "firmware",
                path: path.to_owned(),
                kind: elf_machine_name(machine),
                hint: "a riscv64 guest needs RISC-V firmware such as OpenSBI's fw_dynamic.bin or fw_dynamic.elf",
            });
        }
        if class != elf::ELFCLASS64 {
            return Err(bad(
                "it is a 32-bit RISC-V ELF; the virt board runs rv64".into()
            ));
        }
        let file = ElfFile64::<Endianness>::parse(data).map_err(|e| bad(e.to_string()))?;
        let endian = file.endian();
        let header = file.elf_header();
        let mut segments = Vec::new();
        let mut end = DRAM_BASE;
        for ph in header
            .program_headers(endian, data)
            .map_err(|e| bad(e.to_string()))?
        {
            if ph.p_type(endian) != elf::PT_LOAD || ph.p_memsz(endian) == 0 {
                continue;
            }
            let addr = ph.p_paddr(endian);
            let memsz = ph.p_memsz(endian);
            let seg_end = addr.saturating_add(memsz);
            if addr < DRAM_BASE || seg_end > limit {
                return Err(BootError::FirmwareOutside {
                    path: path.to_owned(),
                    addr,
                    end: seg_end,
                    kernel: limit,
                });
            }
            let mut bytes = ph
                .data(endian, data)
                .map_err(|_| bad(format!("segment at {addr:#x} lies outside the file")))?
                .to_vec();
            if bytes.len() as u64 > memsz {
                return Err(bad(format!(
                    "segment at {addr:#x} has more file bytes than memory"
                )));
            }
            bytes.resize(memsz as usize, 0);
            end = end.max(seg_end);
            segments.push((addr, bytes));
        }
        if segments.is_empty() {
            return Err(bad("it has no loadable segment".into()));
        }
        let entry = header.e_entry(endian);
        if !(DRAM_BASE..end).contains(&entry) {
            return Err(bad(format!(
                "its entry point {entry:#x} is outside its segments"
            )));
        }
        Ok(Self {
            segments,
            entry,
            end,
        })
    }
}

fn elf_machine_name(machine: u16) -> &'static str {
    match machine {
        elf::EM_X86_64 => "an x86-64 ELF file",
        elf::EM_386 => "an i386 ELF file",
        elf::EM_AARCH64 => "an AArch64 ELF file",
        elf::EM_ARM => "an ARM ELF file",
        _ => "an ELF file for another architecture",
    }
}

/// Where everything goes in guest RAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub kernel_addr: u64,
    pub initrd: Option<(u64, u64)>,
    pub fdt_addr: u64,
    pub info_addr: u64,
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// Place the images in `ram_size` bytes of RAM at `DRAM_BASE`.
///
/// `kernel`: the kernel's load address and size in memory (or the default
/// address and 0 without a kernel); `fdt_len`: an upper bound of the device
/// tree's size.
pub fn place(
    ram_size: u64,
    firmware_end: u64,
    kernel: (u64, u64),
    initrd_len: u64,
    fdt_len: u64,
) -> Result<Placement, BootError> {
    let (kernel_addr, kernel_len) = kernel;
    let kernel_end = kernel_addr + kernel_len;
    let top = (DRAM_BASE + ram_size).min(FDT_LIMIT);
    // Lowest top of RAM at which everything fits (see the layout above).
    let need_top = align_up(
        kernel_end.max(firmware_end) + align_up(initrd_len, PAGE) + PAGE,
        FDT_ALIGN,
    ) + fdt_len;
    if top < need_top {
        return Err(BootError::MemoryTooSmall {
            firmware: firmware_end - DRAM_BASE,
            kernel: kernel_len,
            kernel_addr,
            initrd: initrd_len,
            fdt: fdt_len,
            need_mib: (need_top - DRAM_BASE).div_ceil(MIB),
            have_mib: ram_size / MIB,
        });
    }
    let fdt_addr = (top - fdt_len) / FDT_ALIGN * FDT_ALIGN;
    let info_addr = fdt_addr - PAGE;
    let initrd = (initrd_len > 0).then(|| {
        let start = (info_addr - initrd_len) / PAGE * PAGE;
        (start, start + initrd_len)
    });
    Ok(Placement {
        kernel_addr,
        initrd,
        fdt_addr,
        info_addr,
    })
}

/// The fw_dynamic_info block OpenSBI reads through a2.
pub fn fw_dynamic_info(next_addr: u64) -> [u8; FW_DYNAMIC_INFO_LEN] {
    let fields = [
        FW_DYNAMIC_INFO_MAGIC,
        FW_DYNAMIC_INFO_VERSION,
        next_addr,
        FW_DYNAMIC_NEXT_MODE_S,
        0,        // options
        u64::MAX, // boot_hart: -1, any hart may boot
    ];
    let mut out = [0u8; FW_DYNAMIC_INFO_LEN];
    for (chunk, v) in out.chunks_mut(8).zip(fields) {
        chunk.copy_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(text_offset: u64, image_size: u64, len: usize) -> Vec<u8> {
        let mut d = vec![0u8; len.max(64)];
        d[8..16].copy_from_slice(&text_offset.to_le_bytes());
        d[16..24].copy_from_slice(&image_size.to_le_bytes());
        d[0x30..0x38].copy_from_slice(b"RISCV\0\0\0");
        d[0x38..0x3c].copy_from_slice(IMAGE_MAGIC2);
        d.truncate(len);
        d
    }

    fn p() -> &'static Path {
        Path::new("/k")
    }

    #[test]
    fn parses_an_image_header() {
        let k = KernelImage::parse(p(), image(0x20_0000, 0x100_0000, 4096)).unwrap();
        assert_eq!(k.text_offset, 0x20_0000);
        assert_eq!(k.mem_size, 0x100_0000);
        // image_size 0 (old kernels): the file size.
        let k = KernelImage::parse(p(), image(0x20_0000, 0, 4096)).unwrap();
        assert_eq!(k.mem_size, 4096);
    }

    #[test]
    fn refuses_what_is_not_an_image() {
        let short = KernelImage::parse(p(), image(0x20_0000, 0, 40)).unwrap_err();
        assert!(
            matches!(short, BootError::KernelTooShort { len: 40, .. }),
            "{short}"
        );
        let mut elf = vec![0u8; 128];
        elf[..4].copy_from_slice(b"\x7fELF");
        let e = KernelImage::parse(p(), elf).unwrap_err().to_string();
        assert!(e.contains("ELF"), "{e}");
        let mut bz = vec![0u8; 1024];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        let e = KernelImage::parse(p(), bz).unwrap_err().to_string();
        assert!(e.contains("bzImage"), "{e}");
        let e = KernelImage::parse(p(), vec![7u8; 4096]).unwrap_err();
        assert!(matches!(e, BootError::NotAnImage { .. }), "{e}");
        let e = KernelImage::parse(p(), image(0x1000, 0, 4096)).unwrap_err();
        assert!(matches!(e, BootError::BadImageHeader { .. }), "{e}");
        let e = KernelImage::parse(p(), vec![0x1f, 0x8b, 8, 0])
            .unwrap_err()
            .to_string();
        assert!(e.contains("gzip"), "{e}");
    }

    #[test]
    fn detects_a_truncated_efi_stub_image() {
        // MZ header, PE at 0x40, one section of 0x1000 raw bytes at 0x1000.
        let mut d = image(0x20_0000, 0x10_0000, 0x2000);
        d[..2].copy_from_slice(b"MZ");
        d[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        d[0x40..0x44].copy_from_slice(b"PE\0\0");
        d[0x46..0x48].copy_from_slice(&1u16.to_le_bytes());
        d[0x54..0x56].copy_from_slice(&0x10u16.to_le_bytes());
        let s = 0x40 + 24 + 0x10;
        d[s + 16..s + 20].copy_from_slice(&0x1000u32.to_le_bytes());
        d[s + 20..s + 24].copy_from_slice(&0x1000u32.to_le_bytes());
        assert!(KernelImage::parse(p(), d.clone()).is_ok());
        d.truncate(0x1800);
        let e = KernelImage::parse(p(), d).unwrap_err();
        assert!(
            matches!(
                e,
                BootError::KernelTruncated {
                    expected: 0x2000,
                    len: 0x1800,
                    ..
                }
            ),
            "{e}"
        );
    }

    const LIMIT: u64 = DRAM_BASE + DEFAULT_KERNEL_OFFSET;

    #[test]
    fn raw_firmware_goes_at_the_start_of_ram() {
        let f = Firmware::parse(p(), vec![0x13, 0, 0, 0], LIMIT).unwrap();
        assert_eq!(f.entry, DRAM_BASE);
        assert_eq!(f.end, DRAM_BASE + 4);
        let e = Firmware::parse(p(), vec![0; 2 * 1024 * 1024 + 1], LIMIT).unwrap_err();
        assert!(matches!(e, BootError::FirmwareTooLarge { .. }), "{e}");
    }

    #[test]
    fn firmware_that_is_not_riscv_is_refused() {
        let mut mbr = vec![0u8; 512];
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        let e = Firmware::parse(p(), mbr, LIMIT).unwrap_err().to_string();
        assert!(e.contains("x86 boot sector"), "{e}");
        let mut x86 = vec![0u8; 64];
        x86[..4].copy_from_slice(b"\x7fELF");
        x86[4] = 2;
        x86[18..20].copy_from_slice(&elf::EM_X86_64.to_le_bytes());
        let e = Firmware::parse(p(), x86, LIMIT).unwrap_err().to_string();
        assert!(e.contains("x86-64 ELF"), "{e}");
        let e = Firmware::parse(p(), image(0x20_0000, 0, 4096), LIMIT)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--kernel"), "{e}");
    }

    #[test]
    fn places_images_high_and_checks_they_fit() {
        let ram = 512 * MIB;
        let fw_end = DRAM_BASE + 300 * KIB;
        let k = (DRAM_BASE + 2 * MIB, 30 * MIB);
        let pl = place(ram, fw_end, k, 10 * MIB + 5, 8 * KIB).unwrap();
        assert_eq!(pl.fdt_addr, DRAM_BASE + ram - 2 * MIB);
        assert_eq!(pl.info_addr, pl.fdt_addr - 4096);
        let (s, e) = pl.initrd.unwrap();
        assert_eq!(e - s, 10 * MIB + 5);
        assert!(e <= pl.info_addr && s % 4096 == 0 && s >= k.0 + k.1);
        // Above 3 GiB the device tree stays low, as in QEMU.
        let pl = place(4096 * MIB, fw_end, k, 0, 8 * KIB).unwrap();
        assert_eq!(pl.fdt_addr, FDT_LIMIT - 2 * MIB);
        assert_eq!(pl.initrd, None);
    }

    #[test]
    fn memory_too_small_names_the_sizes() {
        let k = (DRAM_BASE + 2 * MIB, 30 * MIB);
        let e = place(32 * MIB, DRAM_BASE + 4096, k, 10 * MIB, 8 * KIB).unwrap_err();
        let BootError::MemoryTooSmall { need_mib, .. } = e else {
            panic!("{e}")
        };
        // The reported minimum really is enough, and one MiB less is not.
        assert!(place(need_mib * MIB, DRAM_BASE + 4096, k, 10 * MIB, 8 * KIB).is_ok());
        assert!(place((need_mib - 1) * MIB, DRAM_BASE + 4096, k, 10 * MIB, 8 * KIB).is_err());
        assert!(e.to_string().contains("memory too small for the images"));
    }

    #[test]
    fn fw_dynamic_info_layout() {
        let b = fw_dynamic_info(0x8020_0000);
        let field = |i: usize| u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().unwrap());
        assert_eq!(field(0), 0x4942_534f);
        assert_eq!(field(1), 2);
        assert_eq!(field(2), 0x8020_0000);
        assert_eq!(field(3), 1);
        assert_eq!(field(4), 0);
        assert_eq!(field(5), u64::MAX);
    }
}
