//! The kernel image and its modules.
//!
//! Debian trixie's riscv64 `/boot/vmlinux-*` is already a raw RISC-V `Image`
//! (with an EFI PE header in front, as the boot protocol allows: "MZ" at 0,
//! "RISCV\0\0\0" at 0x30, "RSC\x05" at 0x38). Other kernels ship it gzipped or
//! as an EFI zboot image ("zimg" at 4); both are unwrapped here.
//!
//! Modules ship as `.ko.xz` without `modules.dep` (depmod runs at install
//! time), so dependencies come from each module's `.modinfo` `depends=` field.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;

use object::{Object, ObjectSection};
use thiserror::Error;

/// Offset and value of the RISC-V Image header's second magic.
pub const IMAGE_MAGIC2_OFFSET: usize = 0x38;
pub const IMAGE_MAGIC2: &[u8; 4] = b"RSC\x05";

/// Errors handling the kernel or its modules.
#[derive(Debug, Error)]
pub enum KernelError {
    #[error(
        "{what} is not a RISC-V kernel Image (no \"RSC\\x05\" magic at offset 0x38); is the \
         package for riscv64?"
    )]
    NotImage { what: String },
    #[error(
        "{what} is not an x86-64 bzImage (no \"HdrS\" boot header at 0x202, or no 64-bit \
         entry); is the package for amd64?"
    )]
    NotBzImage { what: String },
    #[error("{what}: cannot decompress ({format}): {message}")]
    Decompress {
        what: String,
        format: String,
        message: String,
    },
    #[error("{what}: EFI zboot header is malformed: {message}")]
    BadZboot { what: String, message: String },
    #[error(
        "kernel module {module} (needed by {needed_by}) is neither a module file in {package} nor built in"
    )]
    ModuleMissing {
        module: String,
        needed_by: String,
        package: String,
    },
    #[error("kernel module {file}: {message}")]
    BadModule { file: String, message: String },
}

fn decompress(data: &[u8], format: &str, what: &str) -> Result<Vec<u8>, KernelError> {
    let mut out = Vec::new();
    let result = match format {
        "gzip" => flate2::read::GzDecoder::new(data).read_to_end(&mut out),
        "xz" => liblzma::read::XzDecoder::new(data).read_to_end(&mut out),
        "zstd" => match ruzstd::decoding::StreamingDecoder::new(data) {
            Ok(mut d) => d.read_to_end(&mut out),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        },
        other => {
            return Err(KernelError::Decompress {
                what: what.to_owned(),
                format: other.to_owned(),
                message: "unsupported compression".into(),
            });
        }
    };
    result.map_err(|e| KernelError::Decompress {
        what: what.to_owned(),
        format: format.to_owned(),
        message: e.to_string(),
    })?;
    Ok(out)
}

/// Whether `data` carries the RISC-V Image header magic.
pub fn is_riscv_image(data: &[u8]) -> bool {
    data.get(IMAGE_MAGIC2_OFFSET..IMAGE_MAGIC2_OFFSET + 4) == Some(IMAGE_MAGIC2.as_slice())
}

/// Turn what a package ships as the kernel into a raw RISC-V `Image`.
pub fn to_raw_image(data: Vec<u8>, what: &str) -> Result<Vec<u8>, KernelError> {
    let data = if data.starts_with(&[0x1f, 0x8b]) {
        decompress(&data, "gzip", what)?
    } else if data.starts_with(b"MZ") && data.get(4..8) == Some(b"zimg".as_slice()) {
        unwrap_zboot(&data, what)?
    } else {
        data
    };
    if is_riscv_image(&data) {
        Ok(data)
    } else {
        Err(KernelError::NotImage {
            what: what.to_owned(),
        })
    }
}

/// Offset of the x86 boot protocol's "HdrS" magic, its version, and its
/// `xloadflags` (bit 0: the kernel has a 64-bit entry point).
const BZ_HEADER_MAGIC: usize = 0x202;
const BZ_VERSION: usize = 0x206;
const BZ_XLOADFLAGS: usize = 0x236;

/// Check that what an amd64 package ships as the kernel is a bzImage the
/// microvm can enter in long mode (boot protocol 2.12 or later with
/// `XLF_KERNEL_64`); it is kept as it is.
pub fn check_bzimage(data: Vec<u8>, what: &str) -> Result<Vec<u8>, KernelError> {
    let magic = data.get(BZ_HEADER_MAGIC..BZ_HEADER_MAGIC + 4) == Some(b"HdrS".as_slice());
    let version = data
        .get(BZ_VERSION..BZ_VERSION + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]));
    let xload = data.get(BZ_XLOADFLAGS..BZ_XLOADFLAGS + 2);
    match (magic, version, xload) {
        (true, Some(v), Some(x)) if v >= 0x020c && x[0] & 1 != 0 => Ok(data),
        _ => Err(KernelError::NotBzImage {
            what: what.to_owned(),
        }),
    }
}

/// EFI zboot: "MZ", "zimg" at 4, payload offset and size (le32) at 8 and 12,
/// the compression name (NUL-terminated) at 0x18.
fn unwrap_zboot(data: &[u8], what: &str) -> Result<Vec<u8>, KernelError> {
    let bad = |message: &str| KernelError::BadZboot {
        what: what.to_owned(),
        message: message.to_owned(),
    };
    let le32 = |at: usize| -> Result<usize, KernelError> {
        let b = data
            .get(at..at + 4)
            .ok_or_else(|| bad("truncated header"))?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let offset = le32(8)?;
    let size = le32(12)?;
    let payload = data
        .get(offset..offset.saturating_add(size))
        .ok_or_else(|| bad("payload outside the file"))?;
    let name = data
        .get(0x18..0x20)
        .ok_or_else(|| bad("truncated header"))?;
    let name: String = name
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    decompress(payload, &name, what)
}

/// Module name from a file name: `virtio-rng.ko.xz` → `virtio_rng`.
pub fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = [".ko.xz", ".ko.zst", ".ko.gz", ".ko"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))?;
    Some(stem.replace('-', "_"))
}

/// Decompress a module file's contents according to its name.
pub fn decompress_module(path: &str, data: &[u8]) -> Result<Vec<u8>, KernelError> {
    let format = if path.ends_with(".ko.xz") {
        "xz"
    } else if path.ends_with(".ko.zst") {
        "zstd"
    } else if path.ends_with(".ko.gz") {
        "gzip"
    } else {
        return Ok(data.to_vec());
    };
    decompress(data, format, path)
}

/// The `depends=` list of a module's `.modinfo` section.
pub fn module_depends(ko: &[u8], file: &str) -> Result<Vec<String>, KernelError> {
    let bad = |message: String| KernelError::BadModule {
        file: file.to_owned(),
        message,
    };
    let elf = object::File::parse(ko).map_err(|e| bad(format!("not an ELF object: {e}")))?;
    let section = elf
        .section_by_name(".modinfo")
        .ok_or_else(|| bad("no .modinfo section".into()))?;
    let data = section
        .data()
        .map_err(|e| bad(format!(".modinfo unreadable: {e}")))?;
    let mut deps = Vec::new();
    for field in data.split(|&b| b == 0) {
        if let Some(list) = field.strip_prefix(b"depends=") {
            deps.extend(
                String::from_utf8_lossy(list)
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(|d| d.replace('-', "_")),
            );
        }
    }
    Ok(deps)
}

/// A module ready for the initramfs: its name and uncompressed `.ko` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    pub data: Vec<u8>,
}

/// The kernel package's modules: file contents (compressed as shipped) by
/// module name, and the names of built-in modules.
#[derive(Debug, Default)]
pub struct ModuleTree {
    pub files: BTreeMap<String, (String, Vec<u8>)>,
    pub builtin: HashSet<String>,
    pub package: String,
}

impl ModuleTree {
    /// Record a file from the package: a module or `modules.builtin`.
    pub fn add(&mut self, path: &str, data: Vec<u8>) {
        if path.ends_with("/modules.builtin") {
            for line in String::from_utf8_lossy(&data).lines() {
                if let Some(name) = module_name(line.trim()) {
                    self.builtin.insert(name);
                }
            }
        } else if let Some(name) = module_name(path) {
            self.files.insert(name, (path.to_owned(), data));
        }
    }

    /// The modules needed for `wanted`, dependencies first; built-in ones are
    /// skipped.
    pub fn load_order(&self, wanted: &[&str]) -> Result<Vec<Module>, KernelError> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        for w in wanted {
            self.visit(&w.replace('-', "_"), "the image", &mut seen, &mut order)?;
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        needed_by: &str,
        seen: &mut HashSet<String>,
        order: &mut Vec<Module>,
    ) -> Result<(), KernelError> {
        if !seen.insert(name.to_owned()) || self.builtin.contains(name) {
            return Ok(());
        }
        let Some((path, raw)) = self.files.get(name) else {
            return Err(KernelError::ModuleMissing {
                module: name.to_owned(),
                needed_by: needed_by.to_owned(),
                package: self.package.clone(),
            });
        };
        let data = decompress_module(path, raw)?;
        for dep in module_depends(&data, path)? {
            self.visit(&dep, name, seen, order)?;
        }
        order.push(Module {
            name: name.to_owned(),
            data,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn fake_image() -> Vec<u8> {
        let mut img = vec![0u8; 0x100];
        img[0..2].copy_from_slice(b"MZ");
        img[0x30..0x38].copy_from_slice(b"RISCV\0\0\0");
        img[0x38..0x3c].copy_from_slice(IMAGE_MAGIC2);
        img
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn raw_gzip_and_zboot_images_are_accepted() {
        let img = fake_image();
        assert_eq!(to_raw_image(img.clone(), "raw").unwrap(), img);
        assert_eq!(to_raw_image(gzip(&img), "gz").unwrap(), img);
        let payload = gzip(&img);
        let mut z = vec![0u8; 0x40];
        z[0..2].copy_from_slice(b"MZ");
        z[4..8].copy_from_slice(b"zimg");
        z[8..12].copy_from_slice(&0x40u32.to_le_bytes());
        z[12..16].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        z[0x18..0x1c].copy_from_slice(b"gzip");
        z.extend_from_slice(&payload);
        assert_eq!(to_raw_image(z.clone(), "zboot").unwrap(), img);
        z[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            to_raw_image(z, "zboot"),
            Err(KernelError::BadZboot { .. })
        ));
    }

    #[test]
    fn non_images_are_rejected() {
        assert!(to_raw_image(b"\x7fELF".to_vec(), "elf").is_err());
        assert!(to_raw_image(Vec::new(), "empty").is_err());
        assert!(to_raw_image(vec![0x1f, 0x8b, 0, 0], "badgz").is_err());
    }

    /// The first bytes of a bzImage: "HdrS", protocol 2.15, XLF_KERNEL_64.
    fn fake_bzimage() -> Vec<u8> {
        let mut img = vec![0u8; 0x400];
        img[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        img[0x236] = 1;
        img
    }

    #[test]
    fn bzimages_with_a_64_bit_entry_are_accepted() {
        let img = fake_bzimage();
        assert_eq!(check_bzimage(img.clone(), "bz").unwrap(), img);
        let mut old = img.clone();
        old[0x206..0x208].copy_from_slice(&0x020bu16.to_le_bytes());
        let mut no64 = img.clone();
        no64[0x236] = 0;
        for bad in [old, no64, fake_image(), b"HdrS".to_vec(), Vec::new()] {
            let e = check_bzimage(bad, "vmlinuz").unwrap_err();
            assert!(matches!(e, KernelError::NotBzImage { .. }), "{e}");
            assert!(e.to_string().contains("vmlinuz"), "{e}");
        }
    }

    #[test]
    fn module_names_normalise_dashes_and_extensions() {
        assert_eq!(
            module_name("/usr/lib/modules/6.12/kernel/drivers/char/hw_random/virtio-rng.ko.xz")
                .as_deref(),
            Some("virtio_rng")
        );
        assert_eq!(
            module_name("kernel/drivers/virtio/virtio.ko").as_deref(),
            Some("virtio")
        );
        assert_eq!(module_name("/usr/lib/modules/6.12/modules.order"), None);
    }

    /// A minimal ELF64 relocatable object with a `.modinfo` section, written
    /// with `object`'s writer-free layout by hand: header, section data,
    /// section names, section headers.
    fn fake_ko(modinfo: &[u8]) -> Vec<u8> {
        let shstrtab = b"\0.modinfo\0.shstrtab\0";
        let data_off = 64usize;
        let names_off = data_off + modinfo.len();
        let sh_off = (names_off + shstrtab.len()).next_multiple_of(8);
        let mut f = vec![0u8; sh_off + 3 * 64];
        f[0..4].copy_from_slice(b"\x7fELF");
        f[4] = 2; // 64-bit
        f[5] = 1; // little endian
        f[6] = 1;
        f[16..18].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
        f[18..20].copy_from_slice(&243u16.to_le_bytes()); // EM_RISCV
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[40..48].copy_from_slice(&(sh_off as u64).to_le_bytes());
        f[52..54].copy_from_slice(&64u16.to_le_bytes());
        f[58..60].copy_from_slice(&64u16.to_le_bytes());
        f[60..62].copy_from_slice(&3u16.to_le_bytes());
        f[62..64].copy_from_slice(&2u16.to_le_bytes());
        f[data_off..names_off].copy_from_slice(modinfo);
        f[names_off..names_off + shstrtab.len()].copy_from_slice(shstrtab);
        let mut sh = |i: usize, name: u32, kind: u32, off: usize, size: usize| {
            let b = sh_off + i * 64;
            f[b..b + 4].copy_from_slice(&name.to_le_bytes());
            f[b + 4..b + 8].copy_from_slice(&kind.to_le_bytes());
            f[b + 24..b + 32].copy_from_slice(&(off as u64).to_le_bytes());
            f[b + 32..b + 40].copy_from_slice(&(size as u64).to_le_bytes());
            f[b + 48..b + 56].copy_from_slice(&1u64.to_le_bytes());
        };
        sh(1, 1, 1, data_off, modinfo.len());
        sh(2, 10, 3, names_off, shstrtab.len());
        f
    }

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        liblzma::read::XzEncoder::new(data, 1)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn modinfo_depends_are_read() {
        let ko = fake_ko(b"license=GPL\0depends=net_failover,virtio-ring\0name=virtio_net\0");
        assert_eq!(
            module_depends(&ko, "virtio_net.ko").unwrap(),
            vec!["net_failover", "virtio_ring"]
        );
        assert!(module_depends(b"junk", "junk.ko").is_err());
    }

    #[test]
    fn load_order_puts_dependencies_first_and_skips_builtins() {
        let mut tree = ModuleTree {
            package: "linux-image-test".into(),
            ..Default::default()
        };
        let m = "/usr/lib/modules/6.12/kernel";
        tree.add(
            &format!("{m}/drivers/net/virtio_net.ko.xz"),
            xz(&fake_ko(b"depends=net_failover,virtio\0")),
        );
        tree.add(
            &format!("{m}/net/core/net_failover.ko.xz"),
            xz(&fake_ko(b"depends=failover\0")),
        );
        tree.add(
            &format!("{m}/net/core/failover.ko.xz"),
            xz(&fake_ko(b"depends=\0")),
        );
        tree.add(
            &format!("{m}/drivers/virtio/virtio_mmio.ko.xz"),
            xz(&fake_ko(b"depends=virtio\0")),
        );
        tree.add(
            "/usr/lib/modules/6.12/modules.builtin",
            b"kernel/drivers/virtio/virtio.ko\nkernel/drivers/char/virtio_console.ko\n".to_vec(),
        );
        let order: Vec<String> = tree
            .load_order(&["virtio_mmio", "virtio_net", "virtio_console"])
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(
            order,
            vec!["virtio_mmio", "failover", "net_failover", "virtio_net"]
        );
        let e = tree.load_order(&["virtio_blk"]).unwrap_err();
        assert!(e.to_string().contains("virtio_blk"), "{e}");
    }
}
