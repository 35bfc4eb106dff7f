//! End-to-end: Debian's riscv64 kernel on the emulator with its root on
//! virtio-blk, the way a user runs it: `vessel image disk` builds the ext4
//! root disk, `vessel run debian-riscv64 --disk ...` boots from it.
//!
//! Two boots, shared by all the checks (each Linux boot costs a minute or
//! more on the emulator):
//!
//! 1. Raw root disk, `--console virtio --rng`: the guest finds its root on
//!    `/dev/vda`, checksums a file the host put in with `vessel image disk
//!    --add`, shows `hvc0` as the console (`/proc/consoles`), reads a line
//!    the test types on vessel's stdin once the guest asks for it, writes
//!    64 KiB from `/dev/hwrng` to a file, syncs and powers off. The host
//!    finds that file in the image with `debugfs`, with the guest's
//!    checksum, and the filesystem is clean (`e2fsck -fn`).
//! 2. The host writes a file and a new boot script into that image with
//!    `debugfs -w`, then boots a qcow2 overlay on it (`qemu-img create -f
//!    qcow2 -b root.img -F raw`): the guest reads the host's file, the
//!    base's file and boot 1's file through the overlay, writes a file. The
//!    base image is byte-for-byte unchanged (sha256), `qemu-img check`
//!    finds the overlay sound, and the guest's file is in the overlay
//!    (`qemu-img convert` to raw, then `debugfs`), not in the base.
//!
//! Skipped, saying why, when the image cannot be fetched or when debugfs
//! (e2fsprogs) or qemu-img (qemu-utils) is missing.

mod common;

use common::{image_or_skip, pattern};

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

use vessel_images::READY_MARKER;
use vessel_images::download::sha256_hex;

const VESSEL: &str = env!("CARGO_BIN_EXE_vessel");

fn tool_or_skip(tool: &str, package: &str) -> bool {
    let found = Command::new(tool)
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        eprintln!("SKIP: {tool} is not installed (Debian package {package})");
    }
    found
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A file's bytes from an ext4 image, through debugfs; None when it is not there.
fn debugfs_read(image: &Path, guest: &str, scratch: &Path) -> Option<Vec<u8>> {
    let stat = Command::new("debugfs")
        .args(["-R", &format!("stat {guest}")])
        .arg(image)
        .output()
        .unwrap();
    if !stat.status.success() || String::from_utf8_lossy(&stat.stderr).contains("not found") {
        return None;
    }
    let out = scratch.join("debugfs.out");
    let _ = std::fs::remove_file(&out);
    run_ok(
        Command::new("debugfs")
            .args(["-R", &format!("dump {guest} {}", out.display())])
            .arg(image),
    );
    let data = std::fs::read(&out).ok();
    let _ = std::fs::remove_file(&out);
    data
}

/// The value of the guest's `key=value` line.
fn field<'a>(out: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}=");
    out.lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("the guest printed no {key}= line"))
}

/// Run vessel to completion (coreutils' timeout only stops a hung guest:
/// status 124 fails the test). When a console line contains `prompt`,
/// `answer` is typed on vessel's stdin, as a user at the console would.
fn boot(args: &[&str], prompt: Option<(&str, &str)>) -> (ExitStatus, String) {
    let start = Instant::now();
    let mut child = Command::new("timeout")
        .arg("1500")
        .arg(VESSEL)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = Some(child.stdin.take().unwrap());
    let mut stderr = child.stderr.take().unwrap();
    let err_thread = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    let mut out = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut line = Vec::new();
    while lines.read_until(b'\n', &mut line).unwrap() > 0 {
        let text = String::from_utf8_lossy(&line);
        if let Some((want, answer)) = prompt
            && text.contains(want)
            && let Some(mut input) = stdin.take()
        {
            input.write_all(answer.as_bytes()).unwrap();
            input.write_all(b"\n").unwrap();
        }
        out.push_str(&text);
        line.clear();
    }
    drop(stdin);
    let err = err_thread.join().unwrap();
    let status = child.wait().unwrap();
    eprintln!("--- guest console ---\n{out}\n--- stderr ---\n{err}---");
    eprintln!(
        "boot to poweroff took {:.1} s",
        start.elapsed().as_secs_f64()
    );
    (status, out)
}

/// Boot 1's script, put on the disk with `vessel image disk --add`.
const FIRST: &str = r#"#!/bin/sh
echo "root-mount=$(awk '$2 == "/" { print $1, $3 }' /proc/mounts)"
echo "host-sum=$(sha256sum /root/host.bin | cut -d' ' -f1)"
echo "hvc0-console=$(awk '$1 == "hvc0" && /\(E?C/ { print "yes" }' /proc/consoles)"
cat /proc/consoles
echo "console-prompt: type a line"
if read -r -t 600 line; then
    echo "console-in=$(printf %s "$line" | sha256sum | cut -d' ' -f1)"
else
    echo "console-in=nothing"
fi
head -c 65536 /dev/hwrng > /root/guest.bin
echo "guest-size=$(wc -c < /root/guest.bin | tr -d ' ')"
echo "guest-sum=$(sha256sum /root/guest.bin | cut -d' ' -f1)"
sync
echo first-done
"#;

/// Boot 2's script, written into the image by the host with debugfs.
const SECOND: &str = r#"#!/bin/sh
echo "root-mount=$(awk '$2 == "/" { print $1, $3 }' /proc/mounts)"
echo "host2-sum=$(sha256sum /root/host2.bin | cut -d' ' -f1)"
echo "host-sum=$(sha256sum /root/host.bin | cut -d' ' -f1)"
echo "guest-sum=$(sha256sum /root/guest.bin | cut -d' ' -f1)"
i=0
while [ $i -lt 64 ]; do echo "overlay line $i of the second boot"; i=$((i + 1)); done > /root/overlay.txt
echo "overlay-sum=$(sha256sum /root/overlay.txt | cut -d' ' -f1)"
sync
echo second-done
"#;

#[test]
fn debian_linux_boots_from_a_raw_root_disk_then_a_qcow2_overlay() {
    if image_or_skip().is_none()
        || !tool_or_skip("debugfs", "e2fsprogs")
        || !tool_or_skip("qemu-img", "qemu-utils")
    {
        return;
    }
    let dir: PathBuf =
        std::env::temp_dir().join(format!("vessel-run-riscv-rootdisk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();

    // The root disk, built the user's way.
    let host = pattern(256 << 10, 0x7007_d15c_0000_0001);
    std::fs::write(dir.join("host.bin"), &host).unwrap();
    std::fs::write(dir.join("first.sh"), FIRST).unwrap();
    let exec = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(dir.join("first.sh"), exec).unwrap();
    let root = p("root.img");
    run_ok(Command::new(VESSEL).args([
        "image",
        "disk",
        "--add",
        &format!("{}:/root/host.bin", p("host.bin")),
        "--add",
        &format!("{}:/etc/vessel/init.d/10-check", p("first.sh")),
        "-o",
        &root,
    ]));

    // Boot 1: raw root disk, virtio console, rng.
    let typed = "vessel typed this on stdin";
    let (status, out) = boot(
        &[
            "run",
            "debian-riscv64",
            "--disk",
            &format!("{root},serial=root"),
            "--console",
            "virtio",
            "--rng",
        ],
        Some(("console-prompt", typed)),
    );
    assert!(status.success(), "boot 1: vessel exited with {status}");
    assert!(
        out.contains(READY_MARKER),
        "boot 1: no {READY_MARKER:?} line"
    );
    assert!(out.contains("first-done"), "boot 1: the script did not end");
    assert_eq!(
        field(&out, "root-mount"),
        "/dev/vda ext4",
        "root on virtio-blk"
    );
    assert_eq!(
        field(&out, "host-sum"),
        sha256_hex(&host),
        "host file read back"
    );
    assert_eq!(field(&out, "hvc0-console"), "yes", "hvc0 is /dev/console");
    assert_eq!(
        field(&out, "console-in"),
        sha256_hex(typed.as_bytes()),
        "the line typed on stdin reached the guest through hvc0"
    );
    assert_eq!(field(&out, "guest-size"), "65536", "64 KiB from /dev/hwrng");
    let guest_sum = field(&out, "guest-sum").to_string();
    let written = debugfs_read(Path::new(&root), "/root/guest.bin", &dir)
        .expect("the guest's file is not in the image");
    assert_eq!(written.len(), 65536);
    assert_eq!(
        sha256_hex(&written),
        guest_sum,
        "the file in the image is what the guest wrote"
    );
    // Powered off cleanly: no journal left to replay.
    run_ok(Command::new("e2fsck").args(["-fn"]).arg(&root));

    // The host puts a file and the next boot script in with debugfs.
    let host2 = pattern(100_000, 0x7007_d15c_0000_0002);
    std::fs::write(dir.join("host2.bin"), &host2).unwrap();
    std::fs::write(dir.join("second.sh"), SECOND).unwrap();
    let exec = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(dir.join("second.sh"), exec).unwrap();
    let cmds = dir.join("debugfs.cmds");
    std::fs::write(
        &cmds,
        format!(
            "cd /root\nwrite {} host2.bin\ncd /etc/vessel/init.d\nrm 10-check\nwrite {} 10-check\n",
            p("host2.bin"),
            p("second.sh")
        ),
    )
    .unwrap();
    run_ok(
        Command::new("debugfs")
            .arg("-w")
            .arg("-f")
            .arg(&cmds)
            .arg(&root),
    );
    assert_eq!(
        debugfs_read(Path::new(&root), "/root/host2.bin", &dir).as_deref(),
        Some(&host2[..]),
        "debugfs did not write the host's file"
    );

    // Boot 2: a qcow2 overlay on the raw base.
    let base_sum = sha256_hex(&std::fs::read(&root).unwrap());
    let overlay = p("overlay.qcow2");
    run_ok(Command::new("qemu-img").args([
        "create", "-q", "-f", "qcow2", "-b", &root, "-F", "raw", &overlay,
    ]));
    let (status, out) = boot(
        &[
            "run",
            "debian-riscv64",
            "--disk",
            &format!("{overlay},format=qcow2"),
        ],
        None,
    );
    assert!(status.success(), "boot 2: vessel exited with {status}");
    assert!(
        out.contains("second-done"),
        "boot 2: the script did not end"
    );
    assert_eq!(field(&out, "root-mount"), "/dev/vda ext4");
    assert_eq!(
        field(&out, "host2-sum"),
        sha256_hex(&host2),
        "the host's debugfs file"
    );
    assert_eq!(
        field(&out, "host-sum"),
        sha256_hex(&host),
        "the base's file"
    );
    assert_eq!(field(&out, "guest-sum"), guest_sum, "boot 1's file");
    let overlay_sum = field(&out, "overlay-sum").to_string();

    assert_eq!(
        sha256_hex(&std::fs::read(&root).unwrap()),
        base_sum,
        "the base image changed under its overlay"
    );
    assert!(
        debugfs_read(Path::new(&root), "/root/overlay.txt", &dir).is_none(),
        "the guest's write reached the base"
    );
    run_ok(Command::new("qemu-img").args(["check", "-q", "-f", "qcow2", &overlay]));
    let flat = p("flat.img");
    run_ok(Command::new("qemu-img").args(["convert", "-f", "qcow2", "-O", "raw", &overlay, &flat]));
    let written = debugfs_read(Path::new(&flat), "/root/overlay.txt", &dir)
        .expect("the guest's file is not in the overlay");
    assert_eq!(sha256_hex(&written), overlay_sum);
    assert!(
        String::from_utf8_lossy(&written).starts_with("overlay line 0 of the second boot\n"),
        "unexpected content in the overlay's file"
    );
    run_ok(Command::new("e2fsck").args(["-fn"]).arg(&flat));

    std::fs::remove_dir_all(&dir).unwrap();
}
