//! Helpers shared by vessel's end-to-end tests (a dev-dependency only).
//!
//! Test guests are built at test time from assembly with Debian's tools:
//! `riscv64-unknown-elf-gcc` for bare-metal RISC-V programs and GNU `as`/`ld`
//! for the x86-64 KVM guests. When a tool is missing, the helpers print a
//! `SKIP` line that names the Debian package and return `None`, so a test
//! can return early; a tool that runs but fails is a test failure.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Bare-metal RISC-V programs linked at 0x8000_0000, where the `virt`
/// board's RAM starts.
pub mod riscv {
    use super::*;

    const GCC: &str = "riscv64-unknown-elf-gcc";

    /// Assemble `source` into `dir/name.elf` for `-march=march` (with
    /// `-mabi` chosen to match), linked at 0x8000_0000, or None after saying
    /// why when the cross compiler is not installed.
    pub fn assemble_for(dir: &Path, name: &str, source: &str, march: &str) -> Option<PathBuf> {
        if Command::new(GCC).arg("--version").output().is_err() {
            eprintln!(
                "SKIP: {GCC} is not installed (Debian package gcc-riscv64-unknown-elf, \
                 listed in scripts/packages.txt)"
            );
            return None;
        }
        std::fs::create_dir_all(dir).expect("creating the test's scratch directory");
        let src = dir.join(format!("{name}.S"));
        std::fs::write(&src, source).expect("writing the test program's source");
        let elf = dir.join(format!("{name}.elf"));
        let abi = if march.contains('d') || march.starts_with("rv64g") {
            "lp64d"
        } else {
            "lp64"
        };
        let out = Command::new(GCC)
            .arg(format!("-march={march}"))
            .arg(format!("-mabi={abi}"))
            .args(["-nostdlib", "-nostartfiles", "-static"])
            .args(["-Wl,-Ttext=0x80000000", "-Wl,-N", "-Wl,--no-relax", "-o"])
            .arg(&elf)
            .arg(&src)
            .output()
            .expect("running the cross compiler");
        assert!(
            out.status.success(),
            "{GCC} failed on {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(elf)
    }

    /// [`assemble_for`] with `rv64imac_zicsr`, what the board tests use.
    pub fn assemble(dir: &Path, name: &str, source: &str) -> Option<PathBuf> {
        assemble_for(dir, name, source, "rv64imac_zicsr")
    }

    /// The raw image of an ELF (`objcopy -O binary`), next to it as `.bin`.
    pub fn raw_binary(elf: &Path) -> PathBuf {
        let bin = elf.with_extension("bin");
        let out = Command::new("riscv64-unknown-elf-objcopy")
            .args(["-O", "binary"])
            .arg(elf)
            .arg(&bin)
            .output()
            .expect("running riscv64-unknown-elf-objcopy");
        assert!(
            out.status.success(),
            "objcopy {}: {}",
            elf.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        bin
    }

    /// A program that prints `message` (the body of an assembler string
    /// literal: the Rust string `"hi\\n"` prints a line) on the 16550 UART at 0x1000_0000 from
    /// hart 0, then runs `tail` (assembly; `park` is a label that sleeps
    /// forever, other harts go there at once).
    pub fn uart_program(message: &str, tail: &str) -> String {
        format!(
            r#"
    .section .text
    .globl _start
_start:
    csrr t0, mhartid
    bnez t0, park
    li s0, 0x10000000
    la s1, msg
1:  lbu a0, 0(s1)
    beqz a0, 3f
2:  lbu t1, 5(s0)
    andi t1, t1, 0x20
    beqz t1, 2b
    sb a0, 0(s0)
    addi s1, s1, 1
    j 1b
3:
{tail}
park:
    wfi
    j park
    .section .rodata
msg: .asciz "{message}"
"#
        )
    }

    /// Assembly that powers the `virt` board off through its test device.
    pub const POWEROFF: &str =
        "    li t0, 0x100000\n    li t1, 0x5555\n    sw t1, 0(t0)\n    j park\n";
}

/// x86-64 test guests for the KVM engine (crates/x86/tests/guests).
pub mod x86 {
    use super::*;

    /// The folder of the x86 test guests' sources and linker script.
    pub fn guests_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../x86/tests/guests")
    }

    /// Assemble `src` (which may include files from [`guests_dir`]) and link
    /// it with `guest.ld` into `dir/name.elf`, or None after saying why when
    /// GNU binutils are missing.
    pub fn build(dir: &Path, name: &str, src: &Path) -> Option<PathBuf> {
        std::fs::create_dir_all(dir).expect("creating the test's scratch directory");
        let obj = dir.join(format!("{name}.o"));
        let elf = dir.join(format!("{name}.elf"));
        let status = Command::new("as")
            .arg("--64")
            .arg("-I")
            .arg(guests_dir())
            .arg("-o")
            .arg(&obj)
            .arg(src)
            .status();
        match status {
            Err(e) => {
                eprintln!("SKIP: cannot run GNU as ({e}); install binutils (build-essential)");
                return None;
            }
            Ok(s) => assert!(s.success(), "assembling {} failed", src.display()),
        }
        let status = Command::new("ld")
            .args(["-static", "-nostdlib", "--build-id=none"])
            .args(["-z", "max-page-size=0x1000", "--no-warn-rwx-segments", "-T"])
            .arg(guests_dir().join("guest.ld"))
            .arg("-o")
            .arg(&elf)
            .arg(&obj)
            .status()
            .expect("GNU ld runs where GNU as does");
        assert!(status.success(), "linking {name} failed");
        Some(elf)
    }

    /// [`build`] for the guest `guests_dir()/name.S`.
    pub fn build_named(dir: &Path, name: &str) -> Option<PathBuf> {
        build(dir, name, &guests_dir().join(format!("{name}.S")))
    }

    /// Whether /dev/kvm opens; prints why not (naming `test`) when it does not.
    pub fn kvm_usable(test: &str) -> bool {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
        {
            Ok(_) => true,
            Err(e) => {
                eprintln!("SKIPPED {test}: /dev/kvm cannot be opened ({e}); this test needs KVM");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_assembles_to_an_elf() {
        let dir = std::env::temp_dir().join(format!("vessel-testkit-{}", std::process::id()));
        let source = riscv::uart_program("hello\\n", riscv::POWEROFF);
        let Some(elf) = riscv::assemble(&dir, "hello", &source) else {
            return;
        };
        let bytes = std::fs::read(&elf).unwrap();
        assert_eq!(&bytes[..4], b"\x7fELF");
        let bin = riscv::raw_binary(&elf);
        assert!(std::fs::metadata(&bin).unwrap().len() > 16);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
