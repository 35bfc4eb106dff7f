//! End-to-end: `shutdown` on the control socket of a Debian riscv64 guest
//! presses the board's power button (virtio-input KEY_POWER); the image's
//! init (busybox acpid) powers the guest off cleanly, and the exit record
//! says `powered_off`, not a VMM stop.
//!
//! The guest is started as the daemon starts it, `vessel run IMAGE
//! --control-socket --console-log --exit-file`, with the image's own
//! initramfs; the client is vessel-control's, as the daemon's. The button
//! is pressed as soon as init says it is ready (init waits for acpid to
//! open the event device first: a press before that would be lost).

mod common;

use common::image_or_skip;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vessel_control::client;
use vessel_control::protocol::Request;
use vessel_images::{FetchOptions, Manifest, READY_MARKER};

const VESSEL: &str = env!("CARGO_BIN_EXE_vessel");

/// The image, fetched again when the cached one predates the power
/// button's modules (a fetch reuses the cached packages).
fn image_with_button() -> Option<Manifest> {
    let m = image_or_skip()?;
    if m.modules.iter().any(|n| n == "virtio_input") {
        return Some(m);
    }
    match vessel_images::fetch(vessel_images::DEBIAN_RISCV64, &FetchOptions::default()) {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!(
                "SKIP: the cached image has no virtio_input module and refetching failed: {e}"
            );
            None
        }
    }
}

/// Read the console stream until `marker` shows (or the stream ends).
fn read_until(stream: &mut impl Read, out: &mut String, marker: &str) -> bool {
    let mut buf = [0u8; 4096];
    while !out.contains(marker) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    true
}

fn wait_for_socket(path: &Path, child: &mut std::process::Child) {
    while client::status(path, Duration::from_secs(5)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("vessel ended before serving its control socket: {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn shutdown_presses_the_power_button_and_the_guest_powers_off() {
    let Some(m) = image_with_button() else { return };
    let dir = std::env::temp_dir().join(format!("vessel-shutdown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("control.sock");
    let log = dir.join("console.log");
    let exit = dir.join("exit.json");

    // The image's initramfs as this vessel builds it (the cached
    // initrd.gz is as old as the fetch).
    let initrd = dir.join("initrd.gz");
    vessel_images::initramfs_for(&m)
        .unwrap()
        .write_gz(&initrd)
        .unwrap();

    let start = Instant::now();
    // coreutils' timeout only ends a hung run (the test then fails).
    let mut child = Command::new("timeout")
        .arg("1500")
        .arg(VESSEL)
        .args(["run", &m.name, "--cpus", "2", "--control-socket"])
        .arg(&sock)
        .arg("--console-log")
        .arg(&log)
        .arg("--exit-file")
        .arg(&exit)
        .arg("--initrd")
        .arg(&initrd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_socket(&sock, &mut child);
    let mut console = client::attach(&sock, false, 1 << 20).unwrap();
    let mut out = String::new();
    let ready = read_until(&mut console, &mut out, READY_MARKER);
    assert!(ready, "the guest never said {READY_MARKER:?}:\n{out}");
    eprintln!("ready after {:.1} s", start.elapsed().as_secs_f64());

    client::call(&sock, &Request::Shutdown {}, Duration::from_secs(10)).unwrap();
    // The console stream ends when the VMM does.
    read_until(&mut console, &mut out, "\u{0}never\u{0}");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    eprintln!("--- console ---\n{out}\n--- stderr ---\n{err}---");
    eprintln!(
        "boot, button and power-off took {:.1} s",
        start.elapsed().as_secs_f64()
    );

    assert!(status.success(), "vessel exited with {status}");
    assert!(
        out.contains("vessel-init: power button pressed; powering off"),
        "the guest's init did not see the power button"
    );
    let record = vessel_control::read_exit_record(&exit)
        .unwrap()
        .expect("no exit record");
    assert_eq!(record.reason, "powered_off", "{record:?}");
    assert_eq!(record.code, 0);
    let logged = std::fs::read_to_string(&log).unwrap();
    // The button's handler stops every process; init (or the handler)
    // then syncs and powers off: the kernel says so, in the console log.
    assert!(
        logged.contains("vessel-init: power button pressed")
            && logged.contains("reboot: Power down"),
        "the console log lacks the power-off:\n{logged}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
