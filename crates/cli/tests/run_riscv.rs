//! End-to-end: `vessel run --arch riscv64` on small bare-metal programs
//! assembled at test time with Debian's riscv64-unknown-elf-gcc, and the
//! command's answers to bad input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const VESSEL: &str = env!("CARGO_BIN_EXE_vessel");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vessel-run-riscv-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn assemble(name: &str, source: &str) -> Option<PathBuf> {
    vessel_testkit::riscv::assemble(&scratch(name), name, source)
}

/// Run vessel with `stdin` as console input. coreutils' `timeout` stops a
/// guest that never powers off (status 124), so a broken run fails the test
/// instead of hanging it.
fn vessel(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new("timeout")
        .args(["300", VESSEL])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // The guest may stop before reading everything: ignore a broken pipe.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

use vessel_testkit::riscv::{POWEROFF, raw_binary, uart_program as program};

#[test]
fn bare_metal_prints_and_powers_off() {
    let Some(elf) = assemble("hello", &program("hello from riscv64\\n", POWEROFF)) else {
        return;
    };
    // Both an ELF (loaded by its program headers) and a raw binary.
    for fw in [elf.clone(), raw_binary(&elf)] {
        let out = vessel(
            &[
                "run",
                "--arch",
                "riscv64",
                "--firmware",
                fw.to_str().unwrap(),
            ],
            b"",
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout,
            "hello from riscv64\n",
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn fail_code_from_the_test_device_is_the_exit_status() {
    let tail =
        "    li t0, 0x100000\n    li t1, (42 << 16) | 0x3333\n    sw t1, 0(t0)\n    j park\n";
    let Some(elf) = assemble("fail", &program("failing\\n", tail)) else {
        return;
    };
    let out = vessel(&["run", "--firmware", elf.to_str().unwrap()], b"");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "failing\n");
    assert_eq!(out.status.code(), Some(42));
    assert!(String::from_utf8_lossy(&out.stderr).contains("code 42"));
}

/// Echo UART input back until 'q', with the UART's receive interrupt through
/// the PLIC waking a WFI; then power off. Also checks the boot registers.
#[test]
fn console_input_reaches_the_guest_through_plic_interrupts() {
    let source = r#"
    .section .text
    .globl _start
_start:
    csrr t0, mhartid
    bnez t0, park
    # a2 points at fw_dynamic_info: magic "OSBI", version 2
    ld t1, 0(a2)
    li t2, 0x4942534f
    bne t1, t2, fail
    ld t1, 8(a2)
    li t2, 2
    bne t1, t2, fail
    # a1 points at a device tree (magic 0xd00dfeed, big-endian)
    lwu t1, 0(a1)
    li t2, 0xedfe0dd0
    bne t1, t2, fail
    li s0, 0x10000000
    li t1, 1
    sb t1, 1(s0)            # UART IER: receive data interrupt
    li s2, 0x0c000000
    li t1, 1
    sw t1, 40(s2)           # priority of source 10
    li t1, 0x2000
    add t1, s2, t1
    li t2, 1 << 10
    sw t2, 0(t1)            # enable source 10 for context 0 (hart 0 M)
    li t1, 0x800
    csrs mie, t1            # MEIE; mstatus.MIE stays off: WFI still wakes
wait:
    wfi
    li t1, 0x200004
    add t1, s2, t1
    lw t3, 0(t1)            # claim
    beqz t3, wait
drain:
    lbu t4, 5(s0)
    andi t4, t4, 1
    beqz t4, done
    lbu a0, 0(s0)
    li t5, 'q'
    beq a0, t5, off
    addi a0, a0, 1          # echo the next letter
    sb a0, 0(s0)
    j drain
done:
    sw t3, 0(t1)            # complete
    j wait
off:
    li t0, 0x100000
    li t1, 0x5555
    sw t1, 0(t0)
    j park
fail:
    li t0, 0x100000
    li t1, (7 << 16) | 0x3333
    sw t1, 0(t0)
park:
    wfi
    j park
"#;
    let Some(elf) = assemble("echo", source) else {
        return;
    };
    let out = vessel(
        &["run", "--cpus", "2", "--firmware", elf.to_str().unwrap()],
        b"HAL q",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "IBM!",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
}

/// The console shows Linux's panic report: vessel stops with status 4, even
/// when the guest then resets itself (as a kernel booted with panic=N does).
#[test]
fn kernel_panic_line_stops_the_machine() {
    let reset = "    li t0, 0x100000\n    li t1, 0x7777\n    sw t1, 0(t0)\n    j park\n";
    let line = "[    1.5] Kernel panic - not syncing: Attempted to kill init!\\r\\n";
    let end = "[    1.6] ---[ end Kernel panic - not syncing: Attempted to kill init! ]---\\r\\n";
    let full = format!("{line}{end}");
    // The whole report; the panic line then a reset; the panic line alone
    // (vessel gives the rest of the report a grace period, then stops).
    for (name, msg, tail) in [
        ("panic", full.as_str(), "    j park\n"),
        ("panic-reset", line, reset),
        ("panic-line", line, "    j park\n"),
    ] {
        let Some(elf) = assemble(name, &program(msg, tail)) else {
            return;
        };
        let out = vessel(&["run", "--firmware", elf.to_str().unwrap()], b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{name}: {err}");
        assert!(
            err.contains("kernel panicked: Kernel panic - not syncing: Attempted to kill init!"),
            "{name}: {err}"
        );
    }
}

#[test]
fn ctrl_a_x_quits() {
    let Some(elf) = assemble("idle", &program("idle\\n", "    j park\n")) else {
        return;
    };
    let out = vessel(&["run", "--firmware", elf.to_str().unwrap()], b"\x01x");
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// On a terminal (a pty from util-linux's `script`) the console is raw: the
/// guest gets Ctrl-A x at once, without a newline, and the terminal does not
/// echo it. In cooked mode the input would wait for a newline and the run
/// would never end (the test's `timeout` then fails it).
#[test]
fn terminal_console_is_raw() {
    use std::io::Read;
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIP: util-linux `script` (Debian's bsdutils) is missing: no pty to test with");
        return;
    }
    let Some(elf) = assemble("tty", &program("idle\\n", "    j park\n")) else {
        return;
    };
    let cmd = format!("{VESSEL} run --firmware {}", elf.display());
    let mut child = Command::new("timeout")
        .args(["300", "script", "-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    // The guest prints only once vessel has set up the terminal.
    while !String::from_utf8_lossy(&seen).contains("idle") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "vessel ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    child.stdin.as_mut().unwrap().write_all(b"\x01x").unwrap();
    stdout.read_to_end(&mut seen).unwrap();
    let status = child.wait().unwrap();
    drop(child.stdin.take());
    assert_eq!(status.code(), Some(0), "{}", String::from_utf8_lossy(&seen));
    let text = String::from_utf8_lossy(&seen);
    assert!(!text.contains("^A"), "the terminal echoed input: {text:?}");
}

/// SIGTERM stops the machine through its normal exit path (exit 0, as QEMU).
#[test]
fn sigterm_stops_the_machine() {
    use std::io::Read;
    let Some(elf) = assemble("term", &program("idle\\n", "    j park\n")) else {
        return;
    };
    // `timeout` forwards the SIGTERM it gets to vessel.
    let mut child = Command::new("timeout")
        .args(["300", VESSEL, "run", "--firmware"])
        .arg(&elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = [0u8; 5];
    stdout.read_exact(&mut seen).unwrap();
    assert_eq!(&seen, b"idle\n");
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child, which has not been waited for yet,
    // so the pid cannot have been reused.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("terminating on signal 15"), "{err}");
}

#[test]
fn emulator_fault_names_the_pc() {
    // A trap vector that itself faults: the CPU gives up.
    let source =
        "    .globl _start\n_start:\n    li t0, 0x1000\n    csrw mtvec, t0\n    ld t1, 0(zero)\n";
    let Some(elf) = assemble("fault", source) else {
        return;
    };
    let out = vessel(&["run", "--firmware", elf.to_str().unwrap()], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("emulator fault") && err.contains("pc 0x"),
        "{err}"
    );
}

/// One clear line on stderr, a non-zero status, no panic.
fn assert_clear_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
}

fn fake_firmware(dir: &Path) -> PathBuf {
    let fw = dir.join("fw.bin");
    std::fs::write(&fw, [0x73, 0x00, 0x50, 0x10]).unwrap(); // wfi
    fw
}

#[test]
fn missing_kernel() {
    let dir = scratch("missing");
    let fw = fake_firmware(&dir);
    let out = vessel(
        &[
            "run",
            "--firmware",
            fw.to_str().unwrap(),
            "--kernel",
            "/nonexistent/Image",
        ],
        b"",
    );
    assert_clear_error(&out, "cannot read kernel /nonexistent/Image");
}

#[test]
fn truncated_kernel() {
    let dir = scratch("truncated");
    let fw = fake_firmware(&dir);
    let k = dir.join("Image");
    std::fs::write(&k, b"MZ\0\0 only a few bytes of a kernel").unwrap();
    let out = vessel(
        &[
            "run",
            "--firmware",
            fw.to_str().unwrap(),
            "--kernel",
            k.to_str().unwrap(),
        ],
        b"",
    );
    assert_clear_error(&out, "shorter than the 64-byte RISC-V Image header");
}

#[test]
fn firmware_that_is_not_riscv() {
    let dir = scratch("x86fw");
    // This test binary itself is an x86-64 (or at least non-RISC-V) ELF.
    let me = std::env::current_exe().unwrap();
    let out = vessel(&["run", "--firmware", me.to_str().unwrap()], b"");
    assert_clear_error(&out, "ELF file");
    let mbr = dir.join("mbr.bin");
    let mut sector = vec![0u8; 512];
    sector[510] = 0x55;
    sector[511] = 0xaa;
    std::fs::write(&mbr, sector).unwrap();
    let out = vessel(&["run", "--firmware", mbr.to_str().unwrap()], b"");
    assert_clear_error(&out, "x86 boot sector");
    let empty = dir.join("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    let out = vessel(&["run", "--firmware", empty.to_str().unwrap()], b"");
    assert_clear_error(&out, "is empty");
}

#[test]
fn memory_too_small_for_the_images() {
    let dir = scratch("small");
    let fw = fake_firmware(&dir);
    let initrd = dir.join("initrd");
    std::fs::write(&initrd, vec![0u8; 8 << 20]).unwrap();
    let out = vessel(
        &[
            "run",
            "--firmware",
            fw.to_str().unwrap(),
            "--initrd",
            initrd.to_str().unwrap(),
            "--memory",
            "8M",
        ],
        b"",
    );
    assert_clear_error(&out, "memory too small for the images");
}

#[test]
fn unknown_image_name() {
    let cache = scratch("empty-cache");
    let out = Command::new(VESSEL)
        .args(["run", "no-such-image"])
        .env("XDG_CACHE_HOME", &cache)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_clear_error(&out, "vessel image fetch no-such-image");
}

#[test]
fn bad_flags() {
    let out = vessel(&["run", "--firmware", "x", "--frobnicate"], b"");
    assert_clear_error(&out, "--frobnicate");
    assert_eq!(out.status.code(), Some(2));
    let out = vessel(&["run", "--firmware", "x", "--memory", "lots"], b"");
    assert_clear_error(&out, "invalid size 'lots'");
    let out = vessel(&["run", "--firmware", "x", "--cpus", "9"], b"");
    assert_clear_error(&out, "--cpus");
}
