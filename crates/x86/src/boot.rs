//! The Linux 64-bit boot protocol: the kernel (ELF `vmlinux` or `bzImage`,
//! loaded by rust-vmm's `linux-loader`), the initrd at the top of low RAM,
//! the command line, and `boot_params` (the zero page) with the e820 map.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::{BzImage, Elf, KernelLoader, load_cmdline};
use vessel_machine::GuestMemoryMmap;
use vessel_machine::vm_memory::{Bytes, GuestAddress};

use crate::layout::{
    CMDLINE_MAX_SIZE, CMDLINE_START, E820Entry, HIMEM_START, ZERO_PAGE_START, e820_map, low_ram_end,
};

/// Errors of loading a kernel, an initrd and the boot data.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot open the {what} {path}: {source}")]
    Open {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "kernel {path} is neither an ELF vmlinux nor a bzImage (no ELF magic, no \"HdrS\" \
         boot header at 0x202): pass an x86-64 Linux kernel image"
    )]
    NotAKernel { path: PathBuf },
    #[error("kernel {path} is an ELF file but not a 64-bit x86-64 one: pass an x86-64 vmlinux")]
    WrongElf { path: PathBuf },
    #[error("cannot load kernel {path}: {source} (does it fit in guest memory above 1 MiB?)")]
    Load {
        path: PathBuf,
        #[source]
        source: linux_loader::loader::Error,
    },
    #[error(
        "the kernel command line is {len} bytes; at most {max} fit: shorten --append",
        max = CMDLINE_MAX_SIZE - 1
    )]
    CmdlineTooLong { len: usize },
    #[error("invalid kernel command line {cmdline:?}: {source}")]
    Cmdline {
        cmdline: String,
        #[source]
        source: linux_loader::cmdline::Error,
    },
    #[error("cannot write the kernel command line to guest memory: {0}")]
    CmdlineLoad(#[source] linux_loader::loader::Error),
    #[error(
        "initrd {path} is {size} bytes, but only {available} bytes of guest RAM are free \
         between the kernel's end ({kernel_end:#x}) and {limit:#x}: give the guest more \
         memory or use a smaller initrd"
    )]
    InitrdTooBig {
        path: PathBuf,
        size: u64,
        available: u64,
        kernel_end: u64,
        limit: u64,
    },
    #[error("cannot read initrd {path} into guest memory: {source}")]
    InitrdRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write boot_params to guest memory: {0}")]
    BootParams(#[source] linux_loader::configurator::Error),
}

/// Which image format the kernel was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    Elf,
    BzImage,
}

/// What the loader put where: the guest sees exactly this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootInfo {
    pub format: KernelFormat,
    /// 64-bit entry point (ELF `e_entry`, or a bzImage's load address + 0x200).
    pub entry: u64,
    /// First byte after the loaded kernel.
    pub kernel_end: u64,
    /// Guest-physical address and size of the initrd.
    pub initrd: Option<(u64, u64)>,
    pub cmdline: String,
    pub e820: Vec<E820Entry>,
}

const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
/// The bzImage header signature "HdrS", at offset 0x202.
const HDRS: u32 = 0x5372_6448;
const BOOT_FLAG: u16 = 0xaa55;
/// `type_of_loader`: "undefined" boot loader.
const LOADER_OTHER: u8 = 0xff;
/// The 64-bit entry point of a bzImage sits 0x200 bytes into its protected-mode code.
const BZIMAGE_ENTRY_OFFSET: u64 = 0x200;
const PAGE: u64 = 0x1000;

fn open(what: &'static str, path: &Path) -> Result<File, BootError> {
    File::open(path).map_err(|source| BootError::Open {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Load everything the Linux boot protocol hands a kernel, for a guest of
/// `mem_size` bytes, and return where it went.
pub fn load_linux(
    mem: &GuestMemoryMmap,
    mem_size: u64,
    kernel: &Path,
    initrd: Option<&Path>,
    cmdline: &str,
) -> Result<BootInfo, BootError> {
    let mut file = open("kernel", kernel)?;
    let mut head = [0u8; 0x210];
    let n = read_up_to(&mut file, &mut head).map_err(|source| BootError::Open {
        what: "kernel",
        path: kernel.to_path_buf(),
        source,
    })?;
    let head = &head[..n];
    let load_err = |source| BootError::Load {
        path: kernel.to_path_buf(),
        source,
    };
    let himem = Some(GuestAddress(HIMEM_START));
    let (format, loaded) = if head.starts_with(&ELF_MAGIC) {
        // ELFCLASS64 and EM_X86_64: linux-loader checks neither.
        if head.len() < 20 || head[4] != 2 || u16::from_le_bytes([head[18], head[19]]) != 62 {
            return Err(BootError::WrongElf {
                path: kernel.to_path_buf(),
            });
        }
        let r = Elf::load(mem, None, &mut file, himem).map_err(load_err)?;
        (KernelFormat::Elf, r)
    } else if head.len() >= 0x206
        && u32::from_le_bytes([head[0x202], head[0x203], head[0x204], head[0x205]]) == HDRS
    {
        let r = BzImage::load(mem, None, &mut file, himem).map_err(load_err)?;
        (KernelFormat::BzImage, r)
    } else {
        return Err(BootError::NotAKernel {
            path: kernel.to_path_buf(),
        });
    };
    let entry = match format {
        KernelFormat::Elf => loaded.kernel_load.0,
        KernelFormat::BzImage => loaded.kernel_load.0 + BZIMAGE_ENTRY_OFFSET,
    };
    let kernel_end = loaded.kernel_end;

    // Command line.
    if cmdline.len() >= CMDLINE_MAX_SIZE {
        return Err(BootError::CmdlineTooLong { len: cmdline.len() });
    }
    let mut cl = Cmdline::new(CMDLINE_MAX_SIZE).map_err(|source| BootError::Cmdline {
        cmdline: cmdline.to_string(),
        source,
    })?;
    if !cmdline.is_empty() {
        cl.insert_str(cmdline)
            .map_err(|source| BootError::Cmdline {
                cmdline: cmdline.to_string(),
                source,
            })?;
    }
    load_cmdline(mem, GuestAddress(CMDLINE_START), &cl).map_err(BootError::CmdlineLoad)?;

    // The initrd goes at the top of low RAM, page aligned, as Firecracker does.
    let mut hdr = loaded.setup_header.unwrap_or_default();
    let mut limit = low_ram_end(mem_size);
    if format == KernelFormat::BzImage && hdr.initrd_addr_max != 0 {
        limit = limit.min(u64::from(hdr.initrd_addr_max) + 1);
    }
    let initrd = match initrd {
        None => None,
        Some(path) => Some(load_initrd(mem, path, kernel_end, limit)?),
    };

    // boot_params.
    let e820 = e820_map(mem_size);
    let mut params = boot_params::default();
    hdr.boot_flag = BOOT_FLAG;
    hdr.header = HDRS;
    hdr.type_of_loader = LOADER_OTHER;
    if hdr.kernel_alignment == 0 {
        hdr.kernel_alignment = 0x100_0000;
    }
    hdr.cmd_line_ptr = CMDLINE_START as u32;
    hdr.cmdline_size = cmdline.len() as u32;
    if let Some((addr, size)) = initrd {
        hdr.ramdisk_image = addr as u32;
        hdr.ramdisk_size = size as u32;
    }
    params.hdr = hdr;
    for (slot, e) in params.e820_table.iter_mut().zip(&e820) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    params.e820_entries = e820.len().min(params.e820_table.len()) as u8;
    LinuxBootConfigurator::write_bootparams::<GuestMemoryMmap>(
        &BootParams::new(&params, GuestAddress(ZERO_PAGE_START)),
        mem,
    )
    .map_err(BootError::BootParams)?;

    Ok(BootInfo {
        format,
        entry,
        kernel_end,
        initrd,
        cmdline: cmdline.to_string(),
        e820,
    })
}

fn load_initrd(
    mem: &GuestMemoryMmap,
    path: &Path,
    kernel_end: u64,
    limit: u64,
) -> Result<(u64, u64), BootError> {
    let mut file = open("initrd", path)?;
    let size = file
        .metadata()
        .map_err(|source| BootError::Open {
            what: "initrd",
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let floor = kernel_end.div_ceil(PAGE) * PAGE;
    let too_big = || BootError::InitrdTooBig {
        path: path.to_path_buf(),
        size,
        available: limit.saturating_sub(floor),
        kernel_end,
        limit,
    };
    // The boot protocol's ramdisk fields are 32 bits wide.
    if size > u64::from(u32::MAX) {
        return Err(too_big());
    }
    let addr = limit.checked_sub(size).ok_or_else(too_big)? / PAGE * PAGE;
    if addr < floor {
        return Err(too_big());
    }
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, size as usize)
        .map_err(|e| BootError::InitrdRead {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
    Ok((addr, size))
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use vessel_machine::create_guest_memory;
    use vessel_machine::vm_memory::Bytes;

    const MEM: u64 = 16 << 20;

    fn memory() -> GuestMemoryMmap {
        create_guest_memory(&crate::layout::ram_ranges(MEM)).unwrap()
    }

    /// A minimal x86-64 ELF with one PT_LOAD segment of `code` at 1 MiB.
    pub(crate) fn tiny_elf(code: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 0x78];
        f[..4].copy_from_slice(&ELF_MAGIC);
        f[4] = 2; // 64-bit
        f[5] = 1; // little endian
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&HIMEM_START.to_le_bytes()); // e_entry
        f[32..40].copy_from_slice(&0x40u64.to_le_bytes()); // e_phoff
        f[52..54].copy_from_slice(&0x40u16.to_le_bytes()); // e_ehsize
        f[54..56].copy_from_slice(&0x38u16.to_le_bytes()); // e_phentsize
        f[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let ph = 0x40;
        f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        f[ph + 4..ph + 8].copy_from_slice(&5u32.to_le_bytes());
        f[ph + 8..ph + 16].copy_from_slice(&0x78u64.to_le_bytes()); // p_offset
        f[ph + 16..ph + 24].copy_from_slice(&HIMEM_START.to_le_bytes());
        f[ph + 24..ph + 32].copy_from_slice(&HIMEM_START.to_le_bytes());
        f[ph + 32..ph + 40].copy_from_slice(&(code.len() as u64).to_le_bytes());
        f[ph + 40..ph + 48].copy_from_slice(&(code.len() as u64).to_le_bytes());
        f.extend_from_slice(code);
        f
    }

    fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn loads_an_elf_with_cmdline_initrd_and_e820() {
        let mem = memory();
        let kernel = file_with(&tiny_elf(&[0xf4; 16]));
        let initrd = file_with(&[7u8; 5000]);
        let info = load_linux(
            &mem,
            MEM,
            kernel.path(),
            Some(initrd.path()),
            "console=ttyS0 x=1",
        )
        .unwrap();
        assert_eq!(info.format, KernelFormat::Elf);
        assert_eq!(info.entry, HIMEM_START);
        assert_eq!(info.kernel_end, HIMEM_START + 16);
        let (addr, size) = info.initrd.unwrap();
        assert_eq!(size, 5000);
        assert_eq!(addr % PAGE, 0);
        assert!(addr + size <= MEM);
        let byte: u8 = mem.read_obj(GuestAddress(addr + 4999)).unwrap();
        assert_eq!(byte, 7);
        let p: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE_START)).unwrap();
        assert_eq!({ p.hdr.header }, HDRS);
        assert_eq!({ p.hdr.boot_flag }, BOOT_FLAG);
        assert_eq!({ p.hdr.ramdisk_image } as u64, addr);
        assert_eq!({ p.hdr.ramdisk_size }, 5000);
        assert_eq!({ p.hdr.cmd_line_ptr } as u64, CMDLINE_START);
        assert_eq!(p.e820_entries, 2);
        let mut cmd = [0u8; 18];
        mem.read_slice(&mut cmd, GuestAddress(CMDLINE_START))
            .unwrap();
        assert_eq!(&cmd, b"console=ttyS0 x=1\0");
    }

    #[test]
    fn a_file_that_is_no_kernel_is_refused() {
        let mem = memory();
        let kernel = file_with(b"#!/bin/sh\necho this is not a kernel\n");
        let err = load_linux(&mem, MEM, kernel.path(), None, "").unwrap_err();
        assert!(matches!(err, BootError::NotAKernel { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("neither an ELF vmlinux nor a bzImage")
        );
        let empty = file_with(b"");
        assert!(matches!(
            load_linux(&mem, MEM, empty.path(), None, "").unwrap_err(),
            BootError::NotAKernel { .. }
        ));
    }

    #[test]
    fn a_32_bit_elf_is_refused() {
        let mem = memory();
        let mut elf = tiny_elf(&[0xf4]);
        elf[4] = 1;
        let kernel = file_with(&elf);
        assert!(matches!(
            load_linux(&mem, MEM, kernel.path(), None, "").unwrap_err(),
            BootError::WrongElf { .. }
        ));
    }

    #[test]
    fn a_bzimage_is_loaded_at_code32_start() {
        let mem = memory();
        let mut image = vec![0u8; 0x1000];
        image[0x1f1] = 1; // setup_sects
        image[0x202..0x206].copy_from_slice(&HDRS.to_le_bytes());
        image[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        image[0x211] = 1; // LOADED_HIGH
        image[0x214..0x218].copy_from_slice(&(HIMEM_START as u32).to_le_bytes());
        image.extend_from_slice(&[0x90; 64]);
        let kernel = file_with(&image);
        let info = load_linux(&mem, MEM, kernel.path(), None, "").unwrap();
        assert_eq!(info.format, KernelFormat::BzImage);
        assert_eq!(info.entry, HIMEM_START + BZIMAGE_ENTRY_OFFSET);
    }

    #[test]
    fn an_initrd_that_does_not_fit_is_refused() {
        let mem = memory();
        let kernel = file_with(&tiny_elf(&[0xf4; 16]));
        let initrd = tempfile::NamedTempFile::new().unwrap();
        initrd.as_file().set_len(MEM).unwrap();
        let err = load_linux(&mem, MEM, kernel.path(), Some(initrd.path()), "").unwrap_err();
        assert!(
            matches!(err, BootError::InitrdTooBig { size, .. } if size == MEM),
            "{err}"
        );
        assert!(err.to_string().contains("more memory"));
    }

    #[test]
    fn an_overlong_cmdline_is_refused() {
        let mem = memory();
        let kernel = file_with(&tiny_elf(&[0xf4; 16]));
        let long = "a".repeat(CMDLINE_MAX_SIZE);
        assert!(matches!(
            load_linux(&mem, MEM, kernel.path(), None, &long).unwrap_err(),
            BootError::CmdlineTooLong { .. }
        ));
    }
}
