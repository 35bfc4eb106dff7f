//! Device rules on cgroup v2: v2 has no `devices.allow`/`devices.deny`
//! files; the kernel asks a BPF_PROG_TYPE_CGROUP_DEVICE program attached to
//! the cgroup instead. As runc does, the OCI rules are compiled into such a
//! program: the rules are tried last to first and the first that matches
//! decides (so a later rule overrides an earlier one, as the v1 files
//! behave); no match denies.
//!
//! The program sees `struct bpf_cgroup_dev_ctx { u32 access_type; u32
//! major; u32 minor; }` with `access_type = access << 16 | type` (type 1
//! block, 2 char; access 1 mknod, 2 read, 4 write) and returns 1 to allow.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::CgroupError;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// One BPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

// Opcodes (class | op | source).
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const MOV32_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
const MOV32_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

fn access_bits(access: &str) -> i32 {
    let mut a = 0;
    for c in access.chars() {
        a |= match c {
            'm' => 1,
            'r' => 2,
            'w' => 4,
            _ => 0,
        };
    }
    a
}

/// The instructions of one rule: `None` for a rule that can never match
/// (an access string with none of r, w, m).
fn rule(r: &LinuxDeviceCgroup) -> Option<Vec<Insn>> {
    let access = access_bits(r.access().as_deref().unwrap_or("rwm"));
    if access == 0 {
        return None;
    }
    // Each test jumps to the end of this rule's block when it fails; the
    // offsets are filled in once the block's length is known.
    let mut tests: Vec<Insn> = Vec::new();
    let ty = match r.typ() {
        Some(LinuxDeviceType::B) => Some(1),
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => Some(2),
        Some(LinuxDeviceType::P) => return None, // fifos are not devices to the kernel
        Some(LinuxDeviceType::A) | None => None,
    };
    if let Some(t) = ty {
        tests.push(insn(JNE_K, 2, 0, 0, t));
    }
    if access != 7 {
        // (R3 & access) != R3: the request wants more than the rule gives.
        tests.push(insn(MOV32_X, 1, 3, 0, 0));
        tests.push(insn(AND32_K, 1, 0, 0, access));
        tests.push(insn(JNE_X, 1, 3, 0, 0));
    }
    if let Some(m) = r.major().filter(|m| *m >= 0) {
        tests.push(insn(JNE_K, 4, 0, 0, i32::try_from(m).ok()?));
    }
    if let Some(m) = r.minor().filter(|m| *m >= 0) {
        tests.push(insn(JNE_K, 5, 0, 0, i32::try_from(m).ok()?));
    }
    let n = tests.len();
    let mut out = Vec::with_capacity(n + 2);
    for (i, mut t) in tests.into_iter().enumerate() {
        if t.code == JNE_K || t.code == JNE_X {
            // From the instruction after this one to the first after the block.
            t.off = (n - i - 1 + 2) as i16;
        }
        out.push(t);
    }
    out.push(insn(MOV32_K, 0, 0, 0, i32::from(r.allow())));
    out.push(insn(EXIT, 0, 0, 0, 0));
    Some(out)
}

/// Compiles device rules into a cgroup device program.
pub fn program(rules: &[LinuxDeviceCgroup]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),        // r2 = ctx->access_type
        insn(AND32_K, 2, 0, 0, 0xffff), // r2 = type
        insn(LDX_W, 3, 1, 0, 0),        // r3 = ctx->access_type
        insn(RSH32_K, 3, 0, 0, 16),     // r3 = access
        insn(LDX_W, 4, 1, 4, 0),        // r4 = ctx->major
        insn(LDX_W, 5, 1, 8, 0),        // r5 = ctx->minor
    ];
    for r in rules.iter().rev() {
        if let Some(block) = rule(r) {
            // A rule that matches everything ends the program: the kernel's
            // verifier refuses instructions that can never run.
            let matches_all = block.len() == 2;
            p.extend(block);
            if matches_all {
                return p;
            }
        }
    }
    p.push(insn(MOV32_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

fn bpf_err(what: &str, dir: &Path, detail: String) -> CgroupError {
    CgroupError::Write {
        path: dir.to_owned(),
        value: format!("a BPF device program ({what})"),
        source: std::io::Error::other(detail),
    }
}

/// Loads the program for `rules` and attaches it to the v2 cgroup `dir`.
/// Several programs may be attached (the kernel allows an access only if
/// every one does), so a parent's policy, such as systemd's, still holds.
pub fn attach(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    let insns = program(rules);
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 4096];
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: bpf(BPF_PROG_LOAD) reads `attr` and the instruction and
    // license buffers it points to, and writes at most log_size bytes into
    // `log`; all outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        let verifier = String::from_utf8_lossy(&log);
        let verifier = verifier.trim_end_matches('\0').trim();
        return Err(bpf_err("load", dir, format!("{e}; verifier: {verifier}")));
    }
    // SAFETY: the kernel just returned this fd to us.
    let prog = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cg = std::fs::File::open(dir).map_err(|source| CgroupError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let attr = ProgAttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    // SAFETY: bpf(BPF_PROG_ATTACH) reads `attr`; both fds are open.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    };
    if rc != 0 {
        return Err(bpf_err(
            "attach",
            dir,
            std::io::Error::last_os_error().to_string(),
        ));
    }
    // The attachment holds the program; our fds may close.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    fn r(
        allow: bool,
        t: Option<LinuxDeviceType>,
        maj: Option<i64>,
        min: Option<i64>,
        a: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default().allow(allow).access(a);
        if let Some(t) = t {
            b = b.typ(t);
        }
        if let Some(m) = maj {
            b = b.major(m);
        }
        if let Some(m) = min {
            b = b.minor(m);
        }
        b.build().expect("rule")
    }

    /// Runs the program on one request, as the kernel would (a tiny
    /// interpreter of the instructions `program` emits).
    fn eval(p: &[Insn], typ: u32, access: u32, major: u32, minor: u32) -> u32 {
        let ctx = [(access << 16) | typ, major, minor];
        let mut reg = [0u32; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => reg[dst] = ctx[(i.off / 4) as usize],
                AND32_K => reg[dst] &= i.imm as u32,
                RSH32_K => reg[dst] >>= i.imm,
                MOV32_K => reg[dst] = i.imm as u32,
                MOV32_X => reg[dst] = reg[src],
                JNE_K if reg[dst] != i.imm as u32 => pc += i.off as usize,
                JNE_X if reg[dst] != reg[src] => pc += i.off as usize,
                JNE_K | JNE_X => {}
                EXIT => return reg[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    #[test]
    fn later_rules_override_earlier_ones_and_no_match_denies() {
        use LinuxDeviceType::{B, C};
        let rules = [
            r(false, None, None, None, "rwm"),
            r(true, Some(C), Some(1), Some(3), "rw"),
            r(true, Some(C), Some(136), None, "rwm"),
            r(true, Some(C), None, None, "m"),
            r(false, Some(C), Some(136), Some(7), "w"),
        ];
        let p = program(&rules);
        const R: u32 = 2;
        const W: u32 = 4;
        const M: u32 = 1;
        assert_eq!(eval(&p, 2, R | W, 1, 3), 1, "/dev/null rw");
        assert_eq!(eval(&p, 2, M, 1, 3), 1, "mknod of any char device");
        assert_eq!(eval(&p, 2, R, 1, 5), 0, "/dev/zero is not allowed");
        assert_eq!(eval(&p, 2, R | W, 136, 4), 1, "any pty");
        assert_eq!(eval(&p, 2, W, 136, 7), 0, "the later deny wins");
        assert_eq!(eval(&p, 2, R, 136, 7), 1, "read of pts/7 is still allowed");
        assert_eq!(eval(&p, 1, R, 8, 0), 0, "block devices denied");
        assert_eq!(eval(&p, 1, M, 8, 0), 0, "mknod of block devices denied");
        // Nothing after a rule that matches everything (the verifier
        // refuses unreachable instructions).
        assert_eq!(p.len(), 6 + 8 + 6 + 4 + 8 + 2, "{p:?}");
        let all = program(&[r(true, Some(B), None, None, "rwm")]);
        assert_eq!(eval(&all, 1, R | W, 8, 0), 1);
        assert_eq!(eval(&all, 2, R, 1, 3), 0);
    }

    /// Loads the program for real and attaches it to a cgroup of the v2
    /// tree (a hybrid host's /sys/fs/cgroup/unified, or a v2 host's root):
    /// a child moved in can open /dev/null but not /dev/zero.
    #[test]
    fn the_kernel_enforces_the_program() {
        let base = match super::super::detect_mode() {
            super::super::CgroupMode::Unified => Path::new(super::super::CGROUP_ROOT),
            super::super::CgroupMode::Hybrid => Path::new("/sys/fs/cgroup/unified"),
            super::super::CgroupMode::Legacy => {
                eprintln!("SKIPPED: no cgroup v2 tree on this host");
                return;
            }
        };
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: needs root (bpf, cgroups)");
            return;
        }
        let dir = base.join(format!("vessel-devtest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("v2 cgroup");
        let rules = [
            r(false, None, None, None, "rwm"),
            r(true, Some(LinuxDeviceType::C), Some(1), Some(3), "rw"),
        ];
        let attached = attach(&dir, &rules);
        let outcome = attached.as_ref().ok().map(|_| {
            let procs = std::ffi::CString::new(
                dir.join("cgroup.procs")
                    .into_os_string()
                    .into_encoded_bytes(),
            )
            .expect("path");
            let (rd, wr) = nix::unistd::pipe().expect("pipe");
            // SAFETY: the test harness is multi-threaded: the child only
            // makes raw system calls on buffers made before the fork.
            match unsafe { nix::unistd::fork() }.expect("fork") {
                nix::unistd::ForkResult::Child => {
                    // SAFETY: open/write/close on NUL-terminated paths and
                    // buffers made before the fork; _exit ends the child.
                    unsafe {
                        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                        let joined = fd >= 0 && libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) >= 0;
                        let zero = libc::open(c"/dev/zero".as_ptr(), libc::O_RDONLY);
                        let eperm = zero < 0 && *libc::__errno_location() == libc::EPERM;
                        let msg = [joined as u8 + b'0', null as u8 + b'0', eperm as u8 + b'0'];
                        libc::write(wr.as_raw_fd(), msg.as_ptr().cast(), 3);
                        libc::_exit(0)
                    }
                }
                nix::unistd::ForkResult::Parent { child } => {
                    drop(wr);
                    let _ = nix::sys::wait::waitpid(child, None);
                    let mut buf = [0u8; 8];
                    let n = nix::unistd::read(rd.as_raw_fd(), &mut buf).unwrap_or(0);
                    String::from_utf8_lossy(&buf[..n]).into_owned()
                }
            }
        });
        let _ = std::fs::remove_dir(&dir);
        attached.expect("attach the device program");
        assert_eq!(
            outcome.as_deref(),
            Some("111"),
            "joined, /dev/null opens, /dev/zero is EPERM"
        );
    }
}
