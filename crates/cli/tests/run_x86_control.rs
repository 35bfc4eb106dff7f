//! End-to-end: an x86_64 microvm under `vessel run --control-socket
//! --console-log --exit-file`, as the daemon starts it, driven with
//! vessel-control's client (the daemon's). Small test guests
//! (crates/x86/tests/guests) run on KVM, hardware-assisted or not:
//!
//! - `button`: drives the microvm's virtio-input power button. Pause parks
//!   its vCPU, resume lets it tick again, and `shutdown` presses the button:
//!   the guest sees KEY_POWER and powers off (the i8042 reset), and the exit
//!   record says `reset`, the guest's own end, not a VMM stop.
//! - `echo`: console input from an attached writer reaches its serial port.
//! - `ticker` has no virtio-input driver: `shutdown` ends the VMM, reason
//!   `shutdown`.
//!
//! Skipped, with the reason, when /dev/kvm cannot be opened or binutils are
//! missing.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vessel_control::client;
use vessel_control::protocol::{Request, RunState};
use vessel_testkit::x86::{build_named, kvm_usable};

const VESSEL: &str = env!("CARGO_BIN_EXE_vessel");
const T: Duration = Duration::from_secs(30);

struct Guest {
    dir: PathBuf,
    sock: PathBuf,
    child: Child,
}

impl Guest {
    /// Start the test guest `name` under a control socket, or None (after
    /// saying why) when this host cannot run it.
    fn start(test: &str, name: &str) -> Option<Guest> {
        if !kvm_usable(test) {
            return None;
        }
        let dir =
            std::env::temp_dir().join(format!("vessel-x86-control-{}-{name}", std::process::id()));
        let elf = build_named(&dir, name)?;
        let sock = dir.join("control.sock");
        // coreutils' timeout only ends a hung run (the test then fails).
        let mut child = Command::new("timeout")
            .arg("300")
            .arg(VESSEL)
            .args([
                "run", "--arch", "x86_64", "--engine", "kvm", "--memory", "64M",
            ])
            .arg("--kernel")
            .arg(&elf)
            .arg("--control-socket")
            .arg(&sock)
            .arg("--console-log")
            .arg(dir.join("console.log"))
            .arg("--exit-file")
            .arg(dir.join("exit.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        while client::status(&sock, Duration::from_secs(5)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("vessel ended before serving its control socket: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Guest { dir, sock, child })
    }

    fn call(&self, request: Request) -> Result<(), String> {
        client::call(&self.sock, &request, T)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn state(&self) -> RunState {
        client::status(&self.sock, T).unwrap().state
    }

    fn attach(&self, write: bool) -> UnixStream {
        client::attach(&self.sock, write, 1 << 20).unwrap()
    }

    /// Wait for the process; its stderr, and the exit record.
    fn finish(mut self) -> (String, vessel_control::ExitRecord, String) {
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "vessel exited with {status}: {err}");
        let record = vessel_control::read_exit_record(&self.dir.join("exit.json"))
            .unwrap()
            .expect("no exit record");
        let log = std::fs::read_to_string(self.dir.join("console.log")).unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
        (err, record, log)
    }
}

/// Read the console stream until `marker` shows after `from` (or the
/// stream ends): whether it showed.
fn read_until(stream: &mut impl Read, out: &mut String, from: usize, marker: &str) -> bool {
    let mut buf = [0u8; 4096];
    while !out[from.min(out.len())..].contains(marker) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    true
}

#[test]
fn pause_resume_and_the_power_button_of_an_x86_guest() {
    let test = "pause_resume_and_the_power_button_of_an_x86_guest";
    let Some(guest) = Guest::start(test, "button") else {
        return;
    };
    let mut console = guest.attach(false);
    let mut out = String::new();
    assert!(
        read_until(&mut console, &mut out, 0, "button ready"),
        "the guest never set its button up:\n{out}"
    );
    assert!(read_until(&mut console, &mut out, 0, "tick "), "{out}");
    assert_eq!(guest.state(), RunState::Running);

    guest.call(Request::Pause {}).unwrap();
    assert_eq!(guest.state(), RunState::Paused);
    let again = guest.call(Request::Pause {}).unwrap_err();
    assert!(again.contains("already paused"), "{again}");
    guest.call(Request::Resume {}).unwrap();
    assert_eq!(guest.state(), RunState::Running);
    let again = guest.call(Request::Resume {}).unwrap_err();
    assert!(again.contains("not paused"), "{again}");
    // It runs again: a new tick comes.
    let mark = out.len();
    assert!(read_until(&mut console, &mut out, mark, "tick "), "{out}");

    guest.call(Request::Shutdown {}).unwrap();
    // The console stream ends when the VMM does.
    read_until(&mut console, &mut out, 0, "\u{0}never\u{0}");
    let (err, record, log) = guest.finish();
    eprintln!("--- console ---\n{out}\n--- stderr ---\n{err}---");
    assert!(
        out.contains("power button\n"),
        "the guest did not see KEY_POWER:\n{out}"
    );
    assert_eq!(record.reason, "reset", "{record:?}");
    assert_eq!(record.code, 0);
    assert!(
        log.contains("button ready") && log.contains("power button"),
        "{log}"
    );
}

#[test]
fn console_input_from_an_attached_writer_reaches_the_x86_serial_port() {
    let test = "console_input_from_an_attached_writer_reaches_the_x86_serial_port";
    let Some(guest) = Guest::start(test, "echo") else {
        return;
    };
    let mut console = guest.attach(true);
    let mut out = String::new();
    assert!(read_until(&mut console, &mut out, 0, "ready\n"), "{out}");
    // A second writer is refused while this one is attached.
    assert!(client::attach(&guest.sock, true, 0).is_err());
    console.write_all(b"hello x86\n").unwrap();
    assert!(
        read_until(&mut console, &mut out, 0, "HELLO X86\n"),
        "{out}"
    );
    read_until(&mut console, &mut out, 0, "\u{0}never\u{0}");
    let (_, record, _) = guest.finish();
    assert_eq!(record.reason, "reset", "{record:?}");
}

#[test]
fn shutdown_ends_an_x86_guest_without_a_button_driver() {
    let test = "shutdown_ends_an_x86_guest_without_a_button_driver";
    let Some(guest) = Guest::start(test, "ticker") else {
        return;
    };
    let mut console = guest.attach(false);
    let mut out = String::new();
    assert!(read_until(&mut console, &mut out, 0, "tick "), "{out}");
    guest.call(Request::Shutdown {}).unwrap();
    read_until(&mut console, &mut out, 0, "\u{0}never\u{0}");
    let (err, record, _) = guest.finish();
    assert_eq!(record.reason, "shutdown", "{record:?} {err}");
    assert_eq!(record.code, 0);
    assert!(err.contains("supervisor's request"), "{err}");
}
