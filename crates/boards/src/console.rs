//! The guest console on the host's stdio, for any board with a UART.
//!
//! - [`RawTerminal`] puts a terminal stdin into raw mode and restores it when
//!   dropped (also on errors and panics: the guard unwinds with the stack and
//!   a panic hook restores it too).
//! - [`spawn_input`] reads stdin on its own thread and hands bytes to the
//!   guest, handling QEMU's escapes: `Ctrl-A x` quits, `Ctrl-A Ctrl-A` sends
//!   one Ctrl-A. End of input leaves the guest running.
//! - [`ConsoleOutput`] copies guest output to stdout and watches it for the
//!   kernel's panic line.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::sync::{Mutex, Once};

use rustix::termios::{OptionalActions, Termios, isatty, tcgetattr, tcsetattr};

/// The settings to put back, shared with the panic hook.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);
static HOOK: Once = Once::new();

fn restore_saved() {
    let saved = SAVED.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(t) = saved {
        let _ = tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &t);
    }
}

/// Raw mode on a terminal stdin for as long as the guard lives.
pub struct RawTerminal {
    active: bool,
}

impl RawTerminal {
    /// Enter raw mode if stdin is a terminal; otherwise do nothing.
    pub fn enter() -> std::io::Result<Self> {
        let stdin = std::io::stdin();
        if !isatty(stdin.as_fd()) {
            return Ok(Self { active: false });
        }
        let original = tcgetattr(stdin.as_fd())?;
        let mut raw = original.clone();
        raw.make_raw();
        *SAVED.lock().unwrap_or_else(|p| p.into_inner()) = Some(original);
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore_saved();
                previous(info);
            }));
        });
        tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw)?;
        Ok(Self { active: true })
    }

    pub fn is_raw(&self) -> bool {
        self.active
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if self.active {
            restore_saved();
        }
    }
}

const CTRL_A: u8 = 0x01;

/// QEMU's console escapes, byte by byte.
#[derive(Default)]
pub struct Escapes {
    after_ctrl_a: bool,
}

/// What one input byte turns into.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// Send this byte to the guest.
    Byte(u8),
    /// Nothing to send (an escape in progress or an unknown escape).
    Nothing,
    /// The user asked to quit.
    Quit,
}

impl Escapes {
    pub fn feed(&mut self, b: u8) -> Input {
        if self.after_ctrl_a {
            self.after_ctrl_a = false;
            return match b {
                b'x' | b'X' => Input::Quit,
                CTRL_A => Input::Byte(CTRL_A),
                _ => Input::Nothing,
            };
        }
        if b == CTRL_A {
            self.after_ctrl_a = true;
            return Input::Nothing;
        }
        Input::Byte(b)
    }
}

/// Read stdin on a thread: `deliver` gets guest input (it may block until
/// the guest has room), `quit` is called once on `Ctrl-A x`.
pub fn spawn_input<D, Q>(mut deliver: D, quit: Q) -> std::io::Result<()>
where
    D: FnMut(&[u8]) + Send + 'static,
    Q: FnOnce() + Send + 'static,
{
    std::thread::Builder::new()
        .name("console-input".into())
        .spawn(move || {
            let mut escapes = Escapes::default();
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 256];
            let mut quit = Some(quit);
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) => return, // EOF: the guest keeps running
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                };
                let mut out = Vec::with_capacity(n);
                for &b in &buf[..n] {
                    match escapes.feed(b) {
                        Input::Byte(b) => out.push(b),
                        Input::Nothing => {}
                        Input::Quit => {
                            if !out.is_empty() {
                                deliver(&out);
                            }
                            if let Some(q) = quit.take() {
                                q();
                            }
                            return;
                        }
                    }
                }
                if !out.is_empty() {
                    deliver(&out);
                }
            }
        })?;
    Ok(())
}

/// Call `stop` (on a thread of its own) when SIGTERM or SIGHUP arrives, so
/// the machine stops through its normal exit path and the terminal is
/// restored, as QEMU does ("terminating on signal").
pub fn on_termination<F>(stop: F) -> std::io::Result<()>
where
    F: Fn(i32) + Send + 'static,
{
    use signal_hook::consts::{SIGHUP, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                stop(signal);
            }
        })?;
    Ok(())
}

/// The line Linux prints when it panics.
pub const PANIC_MARK: &str = "Kernel panic - not syncing";
/// The line that ends Linux's panic report.
pub const PANIC_END_MARK: &str = "---[ end Kernel panic";

const MAX_LINE: usize = 1024;

/// What the output watcher saw in a finished line.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// The panic line (without the end of line).
    Panic(String),
    /// The end of the panic report.
    PanicEnd,
}

/// Watches console output line by line.
#[derive(Default)]
pub struct PanicWatch {
    line: Vec<u8>,
}

impl PanicWatch {
    pub fn feed(&mut self, bytes: &[u8], mut seen: impl FnMut(Seen)) {
        for &b in bytes {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.line);
                // The end line repeats the panic mark: look for it first.
                if line.contains(PANIC_END_MARK) {
                    seen(Seen::PanicEnd);
                } else if let Some(at) = line.find(PANIC_MARK) {
                    seen(Seen::Panic(line[at..].trim_end().to_string()));
                }
                self.line.clear();
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            }
        }
    }
}

/// Guest output to a writer (stdout), watched for kernel panics.
pub struct ConsoleOutput<W: Write> {
    out: W,
    watch: PanicWatch,
    on_seen: Box<dyn FnMut(Seen) + Send>,
}

impl<W: Write> ConsoleOutput<W> {
    pub fn new(out: W, on_seen: Box<dyn FnMut(Seen) + Send>) -> Self {
        Self {
            out,
            watch: PanicWatch::default(),
            on_seen,
        }
    }
}

impl<W: Write> Write for ConsoleOutput<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.watch.feed(&buf[..n], &mut self.on_seen);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (Vec<u8>, bool) {
        let mut e = Escapes::default();
        let mut out = Vec::new();
        for &b in input {
            match e.feed(b) {
                Input::Byte(b) => out.push(b),
                Input::Nothing => {}
                Input::Quit => return (out, true),
            }
        }
        (out, false)
    }

    #[test]
    fn escapes_as_in_qemu() {
        assert_eq!(run(b"ls\n"), (b"ls\n".to_vec(), false));
        assert_eq!(run(b"a\x01xb"), (b"a".to_vec(), true));
        assert_eq!(run(b"a\x01\x01b"), (b"a\x01b".to_vec(), false));
        assert_eq!(run(b"a\x01qb"), (b"ab".to_vec(), false));
        assert_eq!(
            run(b"\x03"),
            (b"\x03".to_vec(), false),
            "Ctrl-C goes to the guest"
        );
    }

    #[test]
    fn panic_line_is_reported_whole() {
        let mut w = PanicWatch::default();
        let mut seen = Vec::new();
        w.feed(b"[    1.0] Kernel panic - not syncing: VFS: Unable", |s| {
            seen.push(s)
        });
        assert!(seen.is_empty(), "reported at the end of the line");
        w.feed(b" to mount root fs\r\n[ 1.1] CPU: 0\r\n", |s| seen.push(s));
        w.feed(
            b"[ 1.2] ---[ end Kernel panic - not syncing: VFS ]---\r\n",
            |s| seen.push(s),
        );
        assert_eq!(
            seen,
            [
                Seen::Panic("Kernel panic - not syncing: VFS: Unable to mount root fs".into()),
                Seen::PanicEnd
            ]
        );
    }

    #[test]
    fn output_passes_through() {
        let mut seen = 0;
        let mut out = Vec::new();
        {
            let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let c = counter.clone();
            let mut o = ConsoleOutput::new(
                &mut out,
                Box::new(move |_| {
                    c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }),
            );
            o.write_all(b"hello\nKernel panic - not syncing: x\n")
                .unwrap();
            seen += counter.load(std::sync::atomic::Ordering::SeqCst);
        }
        assert_eq!(out, b"hello\nKernel panic - not syncing: x\n");
        assert_eq!(seen, 1);
    }
}
