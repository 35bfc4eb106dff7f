//! Helpers for the end-to-end tests: assemble a test guest with GNU as/ld,
//! capture its serial output, and run it with a watchdog so a broken guest
//! fails the test instead of hanging it.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vessel_x86::{ExitReason, Microvm, VmConfig};

/// A generous bound for guests that finish in milliseconds even on an
/// instruction-by-instruction KVM: hitting it means the guest hung.
pub const WATCHDOG: Duration = Duration::from_secs(120);

pub use vessel_testkit::x86::kvm_usable;

/// A test guest assembled into a 64-bit ELF, in a temporary directory.
pub struct Guest {
    pub dir: tempfile::TempDir,
    pub elf: PathBuf,
}

/// Assemble and link `tests/guests/<name>.S`. `None` (after saying why) when
/// this host has no GNU binutils.
pub fn build_guest(name: &str) -> Option<Guest> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let elf = vessel_testkit::x86::build_named(dir.path(), name)?;
    Some(Guest { dir, elf })
}

/// A callback on each complete line of serial output.
pub type LineHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Serial output captured in memory; `on_line` sees each complete line.
#[derive(Clone, Default)]
pub struct Capture {
    pub bytes: Arc<Mutex<Vec<u8>>>,
    on_line: Option<LineHook>,
}

impl Capture {
    pub fn with_line_hook(hook: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Self {
            bytes: Arc::default(),
            on_line: Some(Arc::new(hook)),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut bytes = self.bytes.lock().unwrap();
        for &b in buf {
            bytes.push(b);
            if b == b'\n'
                && let Some(hook) = &self.on_line
            {
                let start = bytes[..bytes.len() - 1]
                    .iter()
                    .rposition(|&c| c == b'\n')
                    .map_or(0, |i| i + 1);
                let line = String::from_utf8_lossy(&bytes[start..bytes.len() - 1]).into_owned();
                drop(bytes);
                hook(&line);
                bytes = self.bytes.lock().unwrap();
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A config for `guest` whose serial output goes to `capture`.
pub fn config(guest: &Guest, capture: &Capture) -> VmConfig {
    let mut config = VmConfig::new(&guest.elf);
    config.memory = 64 << 20;
    config.serial_out = Box::new(capture.clone());
    config
}

/// Start `vm` and wait for it to stop, failing the test if the guest hangs.
pub fn run_guarded(vm: Microvm, capture: &Capture) -> ExitReason {
    let running = vm.start().expect("the vCPUs start");
    let control = running.control();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(running.wait());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(reason) => reason,
        Err(_) => {
            control.request_exit(ExitReason::Failed("test watchdog".into()));
            let _ = rx.recv_timeout(Duration::from_secs(10));
            panic!(
                "the guest did not finish within {WATCHDOG:?}; serial output:\n{}",
                capture.text()
            );
        }
    }
}
