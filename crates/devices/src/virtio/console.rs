//! virtio-console (virtio 1.2 §5.3) with one port: the guest's `hvc0`.
//!
//! Output (transmitq) goes to a host writer inline, when the driver
//! notifies. Input comes from a host reader on a worker thread, which fills
//! the receiveq and raises the interrupt itself; bytes that arrive while the
//! guest has no buffer posted wait (up to 64 KiB) until it posts one.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use virtio_queue::{QueueOwnedT, QueueT};

use super::chain::{self, Cursor};
use super::{ActiveQueues, DeviceError, VirtioDevice, complete, device_type, drain_queue, lock};

const RX: usize = 0;
const TX: usize = 1;
const QUEUE_SIZE: u16 = 64;
/// Input held for the guest while it has no receive buffer.
const MAX_PENDING: usize = 64 * 1024;
/// Output taken from one transmit chain (Linux sends at most a page).
const MAX_OUTPUT: u64 = 1 << 20;

/// Errors of the console device.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot start the virtio-console input thread: {0}")]
    Thread(#[source] std::io::Error),
}

#[derive(Default)]
struct Input {
    pending: VecDeque<u8>,
    active: Option<ActiveQueues>,
}

/// The console device.
pub struct Console {
    output: Box<dyn Write + Send>,
    input: Arc<Mutex<Input>>,
    active: Option<ActiveQueues>,
    buf: Vec<u8>,
}

impl Console {
    /// A console writing guest output to `output` and, if given, feeding
    /// `input` to the guest from a worker thread.
    pub fn new(
        output: Box<dyn Write + Send>,
        input: Option<Box<dyn Read + Send>>,
    ) -> Result<Self, ConsoleError> {
        let shared = Arc::new(Mutex::new(Input::default()));
        if let Some(mut reader) = input {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("virtio-console-in".into())
                .spawn(move || {
                    let mut buf = [0u8; 1024];
                    loop {
                        let n = match reader.read(&mut buf) {
                            Ok(0) => return,
                            Ok(n) => n,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            Err(e) => {
                                log::warn!("virtio-console: input stopped: {e}");
                                return;
                            }
                        };
                        let mut inp = lock(&shared);
                        let room = MAX_PENDING.saturating_sub(inp.pending.len());
                        if room < n {
                            log::warn!(
                                "virtio-console: guest not reading; dropped {} bytes",
                                n - room
                            );
                        }
                        inp.pending.extend(&buf[..n.min(room)]);
                        deliver(&mut inp);
                    }
                })
                .map_err(ConsoleError::Thread)?;
        }
        Ok(Self {
            output,
            input: shared,
            active: None,
            buf: Vec::new(),
        })
    }
}

/// Move pending input into the guest's receive buffers.
fn deliver(inp: &mut Input) {
    let Some(active) = inp.active.clone() else {
        return;
    };
    if inp.pending.is_empty() {
        return;
    }
    let int = &active.interrupt;
    if int.needs_reset() {
        return;
    }
    let mem = &active.mem;
    let Some(queue) = active.queues.get(RX) else {
        return;
    };
    let mut q = lock(queue);
    if !q.ready() {
        return;
    }
    let r: Result<(), &'static str> = (|| {
        while !inp.pending.is_empty() {
            let next = q
                .iter(mem)
                .map_err(|_| "available index runs more than a queue ahead")?
                .next();
            let Some(desc_chain) = next else {
                // Out of buffers: ask to be notified when the guest posts more.
                if q.enable_notification(mem)
                    .map_err(|_| "cannot write avail_event")?
                {
                    continue;
                }
                break;
            };
            let head = desc_chain.head_index();
            let len = match chain::parse(desc_chain, mem) {
                Ok(c) => {
                    let mut w = Cursor::new(mem, &c.writable);
                    let n = (w.remaining() as usize).min(inp.pending.len());
                    let bytes: Vec<u8> = inp.pending.iter().take(n).copied().collect();
                    if w.write(&bytes).is_ok() {
                        inp.pending.drain(..n);
                        n as u32
                    } else {
                        0
                    }
                }
                Err(e) => {
                    int.warn_once(e.kind(), format_args!("receiveq: {e}"));
                    0
                }
            };
            complete(&mut q, mem, int, head, len)?;
        }
        Ok(())
    })();
    if let Err(what) = r {
        int.set_needs_reset(what);
    }
}

impl VirtioDevice for Console {
    fn device_type(&self) -> u32 {
        device_type::CONSOLE
    }

    fn features(&self) -> u64 {
        0
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE, QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // cols, rows (unused without VIRTIO_CONSOLE_F_SIZE), max_nr_ports = 1.
        let mut cfg = [0u8; 12];
        cfg[4..8].copy_from_slice(&1u32.to_le_bytes());
        super::read_config_bytes(&cfg, offset, data);
    }

    fn activate(&mut self, queues: ActiveQueues) -> Result<(), DeviceError> {
        self.active = Some(queues.clone());
        let mut inp = lock(&self.input);
        inp.active = Some(queues);
        deliver(&mut inp);
        Ok(())
    }

    fn process_queue(&mut self, index: usize) -> Result<(), DeviceError> {
        match index {
            RX => {
                deliver(&mut lock(&self.input));
                Ok(())
            }
            TX => {
                let Some(active) = &self.active else {
                    return Ok(());
                };
                let out = &mut self.output;
                let buf = &mut self.buf;
                let int = active.interrupt.clone();
                drain_queue(active, TX, |mem, c| {
                    let mut r = Cursor::new(mem, &c.readable);
                    if r.remaining() > MAX_OUTPUT {
                        int.warn_once(
                            "console output chain too long",
                            format_args!(
                                "transmit chain of {} bytes; only the first {MAX_OUTPUT} are written",
                                r.remaining()
                            ),
                        );
                    }
                    let mut left = r.remaining().min(MAX_OUTPUT);
                    // Bounded copies: a chain may claim up to 4 GiB.
                    while left > 0 {
                        let n = left.min(64 * 1024) as usize;
                        left -= n as u64;
                        buf.resize(n, 0);
                        if r.read(buf).is_err() {
                            break;
                        }
                        if let Err(e) = out.write_all(buf) {
                            int.warn_once("console output", format_args!("output failed: {e}"));
                            break;
                        }
                    }
                    let _ = out.flush();
                    0
                })
            }
            _ => Ok(()),
        }
    }

    fn reset(&mut self) {
        self.active = None;
        let mut inp = lock(&self.input);
        inp.active = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::testdriver::{Driver, WRITE};
    use crate::virtio::testutil::memory;
    use std::os::unix::net::UnixStream;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Wait (up to 10 s, polling) for a condition a worker thread makes true.
    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..10_000 {
            if f() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("timed out waiting for {what}");
    }

    #[test]
    fn output_reaches_the_writer() {
        let mem = memory();
        let sink = Sink::default();
        let dev = Console::new(Box::new(sink.clone()), None).unwrap();
        let mut d = Driver::new(&mem, Box::new(dev));
        d.init(0, &[64, 64]);
        assert_eq!(
            d.r(crate::virtio::mmio::regs::CONFIG + 4),
            1,
            "max_nr_ports"
        );
        d.write_bytes(0x8_0000, b"hello, ");
        d.write_bytes(0x9_0000, b"hvc0\n");
        d.submit(TX, &[(0x8_0000, 7, 0), (0x9_0000, 5, 0)]);
        assert_eq!(&*lock(&sink.0), b"hello, hvc0\n");
        assert_eq!(d.used_idx(TX), 1);
        // A chain outside guest memory is dropped, not written.
        d.submit(TX, &[(0xfff_0000, 7, 0)]);
        assert_eq!(d.used_idx(TX), 2);
        assert_eq!(lock(&sink.0).len(), 12);
    }

    #[test]
    fn input_from_the_host_fills_receive_buffers() {
        let mem = memory();
        let (mut host, dev_end) = UnixStream::pair().unwrap();
        let dev = Console::new(Box::new(std::io::sink()), Some(Box::new(dev_end))).unwrap();
        let input = dev.input.clone();
        let mut d = Driver::new(&mem, Box::new(dev));
        d.init(0, &[64, 64]);
        // Input before any buffer is posted waits in the device.
        host.write_all(b"ls -l\n").unwrap();
        wait_for("input to be buffered", || lock(&input).pending.len() >= 6);
        d.submit(RX, &[(0x8_0000, 4, WRITE)]);
        assert_eq!(d.used(RX, 0).1, 4);
        assert_eq!(d.read_bytes(0x8_0000, 4), b"ls -");
        d.submit(RX, &[(0x9_0000, 64, WRITE)]);
        assert_eq!(d.used(RX, 1).1, 2);
        assert_eq!(d.read_bytes(0x9_0000, 2), b"l\n");
        // With a buffer posted, the worker delivers and interrupts by itself.
        d.add(RX, &[(0xa_0000, 64, WRITE)]);
        d.w(crate::virtio::mmio::regs::INTERRUPT_ACK, 1);
        host.write_all(b"x").unwrap();
        wait_for("the worker to use the buffer", || d.used_idx(RX) == 3);
        assert_eq!(d.read_bytes(0xa_0000, 1), b"x");
        assert!(d.irq.is_high());
    }
}
