//! virtio-rng (virtio 1.2 §5.4): entropy from the host's `getrandom(2)`.

use super::chain::Cursor;
use super::{ActiveQueues, DeviceError, VirtioDevice, device_type, drain_queue};

/// At most this many bytes per request (Linux asks for at most a page-sized
/// buffer; a bigger one is filled up to here).
const MAX_REQUEST: usize = 64 * 1024;

/// The entropy device: one request queue.
#[derive(Default)]
pub struct Rng {
    active: Option<ActiveQueues>,
    buf: Vec<u8>,
}

impl Rng {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Fill `buf` from the kernel's CSPRNG.
pub(crate) fn fill_random(buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        device_type::RNG
    }

    fn features(&self) -> u64 {
        0
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![256]
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn activate(&mut self, queues: ActiveQueues) -> Result<(), DeviceError> {
        self.active = Some(queues);
        Ok(())
    }

    fn process_queue(&mut self, index: usize) -> Result<(), DeviceError> {
        let Some(active) = &self.active else {
            return Ok(());
        };
        let buf = &mut self.buf;
        drain_queue(active, index, |mem, chain| {
            let mut w = Cursor::new(mem, &chain.writable);
            let n = (w.remaining() as usize).min(MAX_REQUEST);
            buf.resize(n, 0);
            if let Err(e) = fill_random(buf) {
                active
                    .interrupt
                    .warn_once("getrandom", format_args!("getrandom failed: {e}"));
                return 0;
            }
            match w.write(buf) {
                Ok(()) => n as u32,
                Err(_) => 0,
            }
        })
    }

    fn reset(&mut self) {
        self.active = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::testdriver::{Driver, WRITE};
    use crate::virtio::testutil::memory;

    #[test]
    fn fills_writable_buffers_with_entropy() {
        let mem = memory();
        let mut d = Driver::new(&mem, Box::new(Rng::new()));
        d.init(0, &[16]);
        d.write_bytes(0x8_0000, &[0u8; 4096]);
        let h = d.submit(0, &[(0x8_0000, 1000, WRITE), (0x8_1000, 3096, WRITE)]);
        assert_eq!(d.used(0, 0), (u32::from(h), 4096));
        let a = d.read_bytes(0x8_0000, 1000);
        let b = d.read_bytes(0x8_1000, 3096);
        // 4096 random bytes are not all zero, and not all the same.
        assert!(a.iter().chain(&b).any(|&x| x != 0));
        assert!(b.windows(2).any(|w| w[0] != w[1]));
        assert!(d.irq.is_high());
    }

    #[test]
    fn broken_chains_complete_empty() {
        let mem = memory();
        let mut d = Driver::new(&mem, Box::new(Rng::new()));
        d.init(0, &[16]);
        // Outside guest memory, then a read-only buffer, then a good one.
        d.submit(0, &[(0xfff_0000, 16, WRITE)]);
        d.submit(0, &[(0x8_0000, 16, 0)]);
        d.submit(0, &[(0x8_0000, 16, WRITE)]);
        assert_eq!(d.used_idx(0), 3);
        assert_eq!(d.used(0, 0).1, 0);
        assert_eq!(d.used(0, 1).1, 0);
        assert_eq!(d.used(0, 2).1, 16);
        assert!(!d.needs_reset());
    }

    #[test]
    fn runaway_avail_index_needs_reset() {
        let mem = memory();
        let mut d = Driver::new(&mem, Box::new(Rng::new()));
        d.init(0, &[16]);
        // avail.idx 100 ahead of the device on a 16-entry queue.
        d.queues[0].avail.idx().store(100);
        d.notify(0);
        assert!(d.needs_reset());
        assert_eq!(d.used_idx(0), 0);
    }
}
