//! virtio-net (virtio 1.2 §5.1) over a tap interface.
//!
//! Each direction has a worker thread, as QEMU's I/O thread and Cloud
//! Hypervisor's queue workers serve them. Receive polls the tap and a
//! wake-up eventfd, copies each frame into the next receive buffers and
//! raises the interrupt. Transmit is woken by the driver's notify, so the
//! vCPU goes on running the guest while the frame goes through the host's
//! network stack, and the frames the guest queues meanwhile go out in one
//! pass with one interrupt (with event-idx the driver does not notify
//! again until the pass ends).
//!
//! Offloads, as QEMU and Firecracker offer them over a tap: checksum
//! (CSUM / GUEST_CSUM) and TCP segmentation (HOST_TSO4/6, GUEST_TSO4/6, ECN).
//! What the driver accepts for receive is passed to the tap
//! (TUNSETOFFLOAD), so the host kernel hands over partially checksummed
//! frames of up to 64 KiB that the guest finishes; Linux then posts
//! 64 KiB receive buffers ("big packets"). For transmit, the guest's
//! virtio-net header goes to the tap as is when it asks only for what was
//! negotiated (the host kernel checks the offsets); otherwise the frame is
//! dropped. Without offloads every header is cleared both ways.
//!
//! Mergeable receive buffers (MRG_RXBUF), as QEMU and Firecracker offer
//! them: a frame may fill several receive chains; the first carries the
//! header with num_buffers, all but the last are filled completely, and all
//! of them reach the used ring with one index update. Linux then posts
//! small single-page buffers instead of 64 KiB chains for every frame (an
//! ACK no longer costs a 17-page buffer). The header is 12 bytes either way
//! (virtio 1.x).
//!
//! A tap write that finds the back end full (EAGAIN, ENOBUFS) waits until
//! the back end is writable again, as QEMU does: the transmit ring fills
//! and the guest's stack holds back, nothing is dropped. Frames that no
//! receive buffers can hold, or that a reset cut off, are counted in
//! [`NetCounters`] (logged when the device goes away).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use virtio_queue::{QueueOwnedT, QueueT};

use super::chain::{self, Chain, Cursor, total_len};
use super::{
    ActiveQueues, DeviceError, VirtioDevice, device_type, drain_queue, lock, publish_used,
};
use crate::net::FrameBackend;
use crate::net::tap::VNET_HDR_LEN;

/// Feature bits (virtio 1.2 §5.1.3).
pub mod features {
    pub const CSUM: u64 = 1 << 0;
    pub const GUEST_CSUM: u64 = 1 << 1;
    pub const MAC: u64 = 1 << 5;
    pub const GUEST_TSO4: u64 = 1 << 7;
    pub const GUEST_TSO6: u64 = 1 << 8;
    pub const GUEST_ECN: u64 = 1 << 9;
    pub const HOST_TSO4: u64 = 1 << 11;
    pub const HOST_TSO6: u64 = 1 << 12;
    pub const HOST_ECN: u64 = 1 << 13;
    /// Mergeable receive buffers.
    pub const MRG_RXBUF: u64 = 1 << 15;
    pub const STATUS: u64 = 1 << 16;
    /// The offloads offered.
    pub const OFFLOADS: u64 =
        CSUM | GUEST_CSUM | GUEST_TSO4 | GUEST_TSO6 | GUEST_ECN | HOST_TSO4 | HOST_TSO6 | HOST_ECN;
}

/// virtio_net_hdr fields (virtio 1.2 §5.1.6).
mod hdr {
    pub const F_NEEDS_CSUM: u8 = 1;
    pub const F_DATA_VALID: u8 = 2;
    pub const GSO_NONE: u8 = 0;
    pub const GSO_TCPV4: u8 = 1;
    pub const GSO_TCPV6: u8 = 4;
    pub const GSO_ECN: u8 = 0x80;
}

/// The tap offload flags for what the driver accepted on receive: TSO
/// only with checksum offload (the spec makes GUEST_TSO* depend on
/// GUEST_CSUM), ECN only with TSO.
pub fn tap_offloads(acked: u64) -> u32 {
    use crate::net::tap::offload;
    if acked & features::GUEST_CSUM == 0 {
        return 0;
    }
    let mut f = offload::CSUM;
    if acked & features::GUEST_TSO4 != 0 {
        f |= offload::TSO4;
    }
    if acked & features::GUEST_TSO6 != 0 {
        f |= offload::TSO6;
    }
    if acked & features::GUEST_ECN != 0 && f & (offload::TSO4 | offload::TSO6) != 0 {
        f |= offload::TSO_ECN;
    }
    f
}

/// Check a transmit header against the features the driver accepted:
/// `Some(header to hand to the tap)`, or `None` when the guest asks for an
/// offload it did not negotiate (the frame is dropped).
fn tx_header(h: &[u8], acked: u64) -> Option<[u8; VNET_HDR_LEN]> {
    let mut out = [0u8; VNET_HDR_LEN];
    let flags = h[0];
    let gso = h[1];
    let needs_csum = flags & hdr::F_NEEDS_CSUM != 0;
    if needs_csum && acked & features::CSUM == 0 {
        return None;
    }
    let base = gso & !hdr::GSO_ECN;
    let allowed = match base {
        hdr::GSO_NONE => gso == hdr::GSO_NONE,
        hdr::GSO_TCPV4 => acked & features::HOST_TSO4 != 0,
        hdr::GSO_TCPV6 => acked & features::HOST_TSO6 != 0,
        _ => false,
    };
    let ecn_ok = gso & hdr::GSO_ECN == 0 || acked & features::HOST_ECN != 0;
    // Segmentation needs the checksum offload (the spec's dependency).
    if !allowed || !ecn_ok || (base != hdr::GSO_NONE && !needs_csum) {
        return None;
    }
    if needs_csum {
        out[0] = hdr::F_NEEDS_CSUM;
        // csum_start, csum_offset.
        out[6..10].copy_from_slice(&h[6..10]);
    }
    if base != hdr::GSO_NONE {
        out[1] = gso;
        // hdr_len, gso_size.
        out[2..6].copy_from_slice(&h[2..6]);
    }
    Some(out)
}

/// Clear what the driver did not negotiate from a received frame's header
/// and set num_buffers to 1 (with MRG_RXBUF, delivery sets the real count).
fn rx_header(h: &mut [u8], acked: u64) {
    if acked & features::GUEST_CSUM == 0 {
        h[..10].fill(0);
    } else {
        h[0] &= hdr::F_NEEDS_CSUM | hdr::F_DATA_VALID;
    }
    h[10..12].copy_from_slice(&1u16.to_le_bytes());
}

const RX: usize = 0;
const TX: usize = 1;
const QUEUE_SIZE: u16 = 256;
/// The largest frame (with its header) we move: 64 KiB plus header and
/// Ethernet header, far above any MTU without offloads.
const MAX_FRAME: usize = 65_562;

/// Errors of the net device.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("bad MAC address {0:?}: use six hex bytes like 52:54:00:12:34:56")]
    BadMac(String),
    #[error("cannot create the virtio-net wake-up eventfd: {0}")]
    EventFd(#[source] std::io::Error),
}

/// Parse `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], NetError> {
    let bad = || NetError::BadMac(s.to_string());
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return Err(bad());
        }
        *m = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

/// A locally administered unicast MAC in QEMU's 52:54:00 range.
pub fn random_mac() -> [u8; 6] {
    let mut r = [0u8; 3];
    let _ = super::rng::fill_random(&mut r);
    [0x52, 0x54, 0x00, r[0], r[1], r[2]]
}

struct EventFd(OwnedFd);

impl EventFd {
    fn new() -> std::io::Result<Self> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn signal(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a valid u64.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    fn drain(&self) {
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into a valid u64.
        unsafe { libc::read(self.0.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }

    /// Sleep until this is signalled (then drain it) or `other` (a
    /// descriptor and the poll events wanted of it) is ready. A signal
    /// interrupting the wait is not an error: the caller goes round again.
    fn wait(&self, other: Option<(RawFd, i16)>) -> std::io::Result<()> {
        let (fd, events) = other.unwrap_or((-1, 0));
        let mut fds = [
            libc::pollfd {
                fd: self.0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd,
                events,
                revents: 0,
            },
        ];
        let nfds = if other.is_some() { 2 } else { 1 };
        // SAFETY: `fds` holds `nfds` (at most 2) valid pollfd entries.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), nfds, -1) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        if fds[0].revents != 0 {
            self.drain();
        }
        Ok(())
    }
}

/// What the device moved and what it had to drop, since it was made.
#[derive(Debug, Default)]
pub struct NetCounters {
    /// Frames written to the back end.
    pub tx_frames: AtomicU64,
    /// Transmit frames dropped: back end full for too long, or an error.
    pub tx_dropped: AtomicU64,
    /// Writes retried because the back end was full.
    pub tx_retries: AtomicU64,
    /// Frames delivered to the guest.
    pub rx_frames: AtomicU64,
    /// Received frames dropped: no receive buffers could ever hold them.
    pub rx_dropped: AtomicU64,
}

impl NetCounters {
    fn add(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// (tx_frames, tx_dropped, tx_retries, rx_frames, rx_dropped).
    pub fn snapshot(&self) -> (u64, u64, u64, u64, u64) {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (
            g(&self.tx_frames),
            g(&self.tx_dropped),
            g(&self.tx_retries),
            g(&self.rx_frames),
            g(&self.rx_dropped),
        )
    }
}

/// A write that found the back end full, not broken.
fn backend_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}

/// A worker thread's body.
type Worker = fn(Arc<Shared>, ActiveQueues);

/// State the workers share with the device.
struct Shared {
    tap: Box<dyn FrameBackend>,
    /// Wakes the receive worker (new receive buffers, stop).
    wake: EventFd,
    /// Wakes the transmit worker (the driver's notify, stop).
    tx_wake: EventFd,
    stop: AtomicBool,
    counters: Arc<NetCounters>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// The network device.
pub struct Net {
    shared: Arc<Shared>,
    mac: [u8; 6],
    offloads: bool,
    /// The receive and transmit workers while the device is active.
    workers: Vec<JoinHandle<()>>,
}

impl Net {
    /// A network device on `backend` (usually a [`crate::net::Tap`]) with
    /// MAC address `mac`.
    pub fn new(backend: Box<dyn FrameBackend>, mac: [u8; 6]) -> Result<Self, NetError> {
        Ok(Self {
            shared: Arc::new(Shared {
                tap: backend,
                wake: EventFd::new().map_err(NetError::EventFd)?,
                tx_wake: EventFd::new().map_err(NetError::EventFd)?,
                stop: AtomicBool::new(false),
                counters: Arc::new(NetCounters::default()),
            }),
            mac,
            offloads: true,
            workers: Vec::new(),
        })
    }

    /// The device's frame and drop counters (shared: they keep counting).
    pub fn counters(&self) -> Arc<NetCounters> {
        self.shared.counters.clone()
    }

    /// Offer no checksum or segmentation offloads (`--net ...,offload=off`):
    /// the guest computes every checksum and sends MTU-sized frames.
    pub fn without_offloads(mut self) -> Self {
        self.offloads = false;
        self
    }

    fn stop_workers(&mut self) {
        if self.workers.is_empty() {
            return;
        }
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.signal();
        self.shared.tx_wake.signal();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.shared.stop.store(false, Ordering::Release);
    }
}

/// The transmit worker: each wake-up sends everything the driver queued.
fn tx_worker(shared: Arc<Shared>, active: ActiveQueues) {
    let int = active.interrupt.clone();
    let mut buf = Vec::new();
    loop {
        if shared.stopping() {
            return;
        }
        if !int.needs_reset()
            && let Err(e) = transmit(&shared, &active, &mut buf)
        {
            int.warn_once("device error", format_args!("{e}"));
            int.set_needs_reset("broken virtqueue");
        }
        // A stop may have been signalled (and drained) while a write waited.
        if shared.stopping() {
            return;
        }
        // A failed poll sends this loop round again, as a signal does.
        let _ = shared.tx_wake.wait(None);
    }
}

/// Send every frame on the transmit queue.
fn transmit(shared: &Shared, active: &ActiveQueues, buf: &mut Vec<u8>) -> Result<(), DeviceError> {
    let int = &active.interrupt;
    let counters = &shared.counters;
    let acked = active.acked_features;
    drain_queue(active, TX, |mem, c| {
        if shared.stopping() {
            // A reset is under way: the rest of the ring goes unsent.
            NetCounters::add(&counters.tx_dropped);
            return 0;
        }
        let mut r = Cursor::new(mem, &c.readable);
        let len = r.remaining() as usize;
        if !(VNET_HDR_LEN + 14..=MAX_FRAME).contains(&len) {
            int.warn_once(
                "bad tx frame length",
                format_args!("transmit chain of {len} bytes dropped"),
            );
            return 0;
        }
        buf.resize(len, 0);
        if r.read(buf).is_err() {
            return 0;
        }
        // Never let the guest ask the host kernel for checksumming or
        // segmentation it did not negotiate.
        let Some(h) = tx_header(&buf[..VNET_HDR_LEN], acked) else {
            int.warn_once(
                "tx offload not negotiated",
                format_args!(
                    "transmit header asks for an offload that was not negotiated \
                     (flags {:#x}, gso_type {:#x}); frame dropped",
                    buf[0], buf[1]
                ),
            );
            return 0;
        };
        buf[..VNET_HDR_LEN].copy_from_slice(&h);
        match write_frame(shared, buf) {
            Ok(()) => NetCounters::add(&counters.tx_frames),
            Err(e) => {
                NetCounters::add(&counters.tx_dropped);
                int.warn_once(
                    "tap write",
                    format_args!("tap write failed: {e}; frame dropped (counted)"),
                );
            }
        }
        0
    })
}

/// Write one frame; when the back end is full, wait until it is writable
/// (or the device stops) and retry.
fn write_frame(shared: &Shared, buf: &[u8]) -> std::io::Result<()> {
    loop {
        match shared.tap.write_frame(buf) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if backend_full(&e) => {
                NetCounters::add(&shared.counters.tx_retries);
                // A failed poll sends this loop round again, as a signal does.
                let _ = shared
                    .tx_wake
                    .wait(Some((shared.tap.poll_fd(), libc::POLLOUT)));
                if shared.stopping() {
                    return Err(std::io::Error::other(
                        "device reset while the back end was full",
                    ));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// What became of a received frame.
#[derive(Debug, PartialEq, Eq)]
enum Delivery {
    /// In the guest's receive buffers.
    Delivered,
    /// Not enough buffers yet: the frame waits (notifications are on).
    NoBuffers,
    /// No buffers the driver could post would ever hold it: dropped.
    Dropped,
}

/// The receive side of the worker: the chains taken from the ring for the
/// waiting frame. With mergeable buffers they are gathered (across
/// wake-ups) until the frame fits.
#[derive(Default)]
struct Rx {
    reserved: Vec<Chain>,
    /// Writable bytes of `reserved`.
    room: u64,
}

impl Rx {
    /// Move `frame` (virtio-net header first) into receive buffers. Broken
    /// chains, and chains too small to be used, go back empty.
    fn deliver(
        &mut self,
        active: &ActiveQueues,
        frame: &mut [u8],
        mergeable: bool,
    ) -> Result<Delivery, &'static str> {
        let mem = &active.mem;
        let int = &active.interrupt;
        let Some(queue) = active.queues.get(RX) else {
            return Ok(Delivery::NoBuffers);
        };
        let mut q = lock(queue);
        if !q.ready() {
            return Ok(Delivery::NoBuffers);
        }
        let need = frame.len() as u64;
        let size = usize::from(q.size());
        let mut bad: Vec<(u16, u32)> = Vec::new();
        let outcome = loop {
            if !self.reserved.is_empty() && self.room >= need {
                break Delivery::Delivered;
            }
            if mergeable && self.reserved.len() >= size {
                // Every buffer the ring can hold is too little.
                break Delivery::Dropped;
            }
            let next = q
                .iter(mem)
                .map_err(|_| "available index runs more than a queue ahead")?
                .next();
            let Some(desc_chain) = next else {
                publish_used(&mut q, mem, int, &bad)?;
                bad.clear();
                if q.enable_notification(mem)
                    .map_err(|_| "cannot write avail_event")?
                {
                    continue;
                }
                return Ok(Delivery::NoBuffers);
            };
            let head = desc_chain.head_index();
            match chain::parse(desc_chain, mem) {
                Ok(c) => {
                    let room = total_len(&c.writable);
                    // Without MRG_RXBUF one chain takes the whole frame;
                    // with it, the first must at least hold the header.
                    let min = match (mergeable, self.reserved.is_empty()) {
                        (false, _) => need,
                        (true, true) => VNET_HDR_LEN as u64,
                        (true, false) => 1,
                    };
                    if room < min {
                        int.warn_once(
                            "rx buffer too small",
                            format_args!(
                                "receive buffer of {room} bytes for a {}-byte frame; returned empty",
                                frame.len()
                            ),
                        );
                        bad.push((head, 0));
                    } else {
                        self.room += room;
                        self.reserved.push(c);
                    }
                }
                Err(e) => {
                    int.warn_once(e.kind(), format_args!("receive queue: {e}"));
                    bad.push((head, 0));
                }
            }
            if bad.len() == size {
                publish_used(&mut q, mem, int, &bad)?;
                bad.clear();
            }
        };
        publish_used(&mut q, mem, int, &bad)?;
        if outcome != Delivery::Delivered {
            return Ok(outcome);
        }
        // Take the fewest reserved chains that hold the frame; all but the
        // last are filled completely.
        let mut count = 0;
        let mut room = 0u64;
        while room < need {
            room += total_len(&self.reserved[count].writable);
            count += 1;
        }
        if mergeable && frame.len() >= VNET_HDR_LEN {
            frame[10..12].copy_from_slice(&(count as u16).to_le_bytes());
        }
        let mut used = Vec::with_capacity(count);
        let mut rest: &[u8] = frame;
        for c in self.reserved.drain(..count) {
            let mut w = Cursor::new(mem, &c.writable);
            let n = rest.len().min(w.remaining() as usize);
            w.write(&rest[..n])
                .map_err(|_| "cannot write a receive buffer")?;
            rest = &rest[n..];
            used.push((c.head, n as u32));
        }
        self.room -= room;
        publish_used(&mut q, mem, int, &used)?;
        Ok(Delivery::Delivered)
    }
}

fn rx_worker(shared: Arc<Shared>, active: ActiveQueues) {
    let mut frame = vec![0u8; MAX_FRAME];
    let mut pending: Option<usize> = None;
    let int = active.interrupt.clone();
    let acked = active.acked_features;
    let mergeable = acked & features::MRG_RXBUF != 0;
    let counters = shared.counters.clone();
    let mut rx = Rx::default();
    loop {
        if shared.stopping() {
            return;
        }
        // Move frames while there are frames and buffers.
        loop {
            if int.needs_reset() {
                break;
            }
            let n = match pending {
                Some(n) => n,
                None => match shared.tap.read_frame(&mut frame) {
                    Ok(n) if n > VNET_HDR_LEN => n,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        int.warn_once("tap read", format_args!("tap read failed: {e}"));
                        break;
                    }
                },
            };
            rx_header(&mut frame[..VNET_HDR_LEN], acked);
            match rx.deliver(&active, &mut frame[..n], mergeable) {
                Ok(Delivery::Delivered) => {
                    NetCounters::add(&counters.rx_frames);
                    pending = None;
                }
                Ok(Delivery::NoBuffers) => {
                    pending = Some(n);
                    break;
                }
                Ok(Delivery::Dropped) => {
                    NetCounters::add(&counters.rx_dropped);
                    int.warn_once(
                        "rx frame dropped",
                        format_args!(
                            "a {n}-byte frame does not fit in a full ring of receive buffers; dropped (counted)"
                        ),
                    );
                    pending = None;
                }
                Err(what) => {
                    int.set_needs_reset(what);
                    pending = None;
                    break;
                }
            }
        }
        // Wait for a frame (unless one is already waiting for a buffer) or
        // a wake-up (new receive buffers, stop).
        let tap =
            (pending.is_none() && !int.needs_reset()).then(|| (shared.tap.poll_fd(), libc::POLLIN));
        if let Err(e) = shared.wake.wait(tap) {
            int.warn_once("poll", format_args!("poll failed: {e}"));
            return;
        }
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        device_type::NET
    }

    fn features(&self) -> u64 {
        let offloads = if self.offloads { features::OFFLOADS } else { 0 };
        features::MAC | features::STATUS | features::MRG_RXBUF | offloads
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE, QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // mac[6], status (LINK_UP), max_virtqueue_pairs.
        let mut cfg = [0u8; 10];
        cfg[..6].copy_from_slice(&self.mac);
        cfg[6..8].copy_from_slice(&1u16.to_le_bytes());
        cfg[8..10].copy_from_slice(&1u16.to_le_bytes());
        super::read_config_bytes(&cfg, offset, data);
    }

    fn activate(&mut self, queues: ActiveQueues) -> Result<(), DeviceError> {
        self.stop_workers();
        let offloads = tap_offloads(queues.acked_features);
        if let Err(e) = self.shared.tap.set_offload(offloads) {
            // Complete frames are always fine for the guest: go on without.
            queues.interrupt.warn_once(
                "tap offloads",
                format_args!("cannot set tap offloads {offloads:#x}: {e}; using none"),
            );
            let _ = self.shared.tap.set_offload(0);
        }
        let workers: [(&str, Worker); 2] = [("rx", rx_worker), ("tx", tx_worker)];
        for (what, work) in workers {
            let shared = self.shared.clone();
            let q = queues.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("virtio-net-{what}-{}", self.shared.tap.name()))
                .spawn(move || work(shared, q));
            match spawned {
                Ok(w) => self.workers.push(w),
                Err(e) => {
                    self.stop_workers();
                    return Err(DeviceError::Worker(e));
                }
            }
        }
        Ok(())
    }

    fn process_queue(&mut self, index: usize) -> Result<(), DeviceError> {
        match index {
            RX => {
                self.shared.wake.signal();
                Ok(())
            }
            TX => {
                self.shared.tx_wake.signal();
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn reset(&mut self) {
        self.stop_workers();
        // Until the next driver negotiates, the tap hands over complete frames.
        let _ = self.shared.tap.set_offload(0);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop_workers();
        let (tx, tx_dropped, retries, rx, rx_dropped) = self.shared.counters.snapshot();
        let msg = format!(
            "virtio-net {}: {tx} frames sent ({tx_dropped} dropped, {retries} retried writes), \
             {rx} received ({rx_dropped} dropped)",
            self.shared.tap.name()
        );
        if tx_dropped + rx_dropped > 0 {
            log::warn!("{msg}");
        } else {
            log::info!("{msg}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Tap;
    use crate::virtio::mmio::regs;
    use crate::virtio::testdriver::{Driver, WRITE};
    use crate::virtio::testutil::memory;
    use vessel_machine::BusDevice;

    const ETHERTYPE: u16 = 0x88b5; // IEEE local experimental

    /// An AF_PACKET socket on the tap's host side.
    struct PacketSocket {
        fd: OwnedFd,
        ifindex: i32,
    }

    impl PacketSocket {
        fn open(ifname: &str) -> Self {
            let ifindex: i32 = std::fs::read_to_string(format!("/sys/class/net/{ifname}/ifindex"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let proto = ETHERTYPE.to_be() as i32;
            // SAFETY: plain syscall; checked below.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto) };
            assert!(fd >= 0, "{}", std::io::Error::last_os_error());
            // SAFETY: fresh descriptor.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: sockaddr_ll is plain data; zero is a valid value.
            let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sa.sll_family = libc::AF_PACKET as u16;
            sa.sll_protocol = ETHERTYPE.to_be();
            sa.sll_ifindex = ifindex;
            // SAFETY: `sa` is a valid sockaddr_ll of the given size.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sa as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
            let tv = libc::timeval {
                tv_sec: 10,
                tv_usec: 0,
            };
            // SAFETY: SO_RCVTIMEO takes a timeval.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as u32,
                )
            };
            Self { fd, ifindex }
        }

        fn send(&self, frame: &[u8]) {
            // SAFETY: sockaddr_ll is plain data; zero is a valid value.
            let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sa.sll_family = libc::AF_PACKET as u16;
            sa.sll_protocol = ETHERTYPE.to_be();
            sa.sll_ifindex = self.ifindex;
            sa.sll_halen = 6;
            sa.sll_addr[..6].copy_from_slice(&frame[..6]);
            // SAFETY: `frame` and `sa` are valid for the given lengths.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&sa as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(
                n,
                frame.len() as isize,
                "{}",
                std::io::Error::last_os_error()
            );
        }

        /// Receive frames until one contains `needle` (10 s receive timeout).
        fn recv_containing(&self, needle: &[u8]) -> Vec<u8> {
            let mut buf = vec![0u8; 2048];
            loop {
                // SAFETY: `buf` is valid for writes of its length.
                let n = unsafe {
                    libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
                };
                assert!(
                    n > 0,
                    "no frame from the tap: {}",
                    std::io::Error::last_os_error()
                );
                let f = &buf[..n as usize];
                if f.windows(needle.len()).any(|w| w == needle) {
                    return f.to_vec();
                }
            }
        }
    }

    fn frame(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&ETHERTYPE.to_be_bytes());
        f.extend_from_slice(payload);
        f.resize(f.len().max(60), 0);
        f
    }

    fn tap_or_skip(tag: &str) -> Option<Box<dyn FrameBackend>> {
        let name = format!("vs{tag}{}", std::process::id() % 100_000);
        match Tap::open(&name) {
            Ok(t) => Some(Box::new(t)),
            Err(e) => {
                eprintln!("SKIP: virtio-net tap test needs a tap: {e}");
                None
            }
        }
    }

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
    fn socket_backend_round_trip_and_hostile_receive_buffers() {
        use crate::net::DatagramBackend;
        use std::os::unix::net::UnixDatagram;
        let (dev_end, host) = UnixDatagram::pair().unwrap();
        let backend = DatagramBackend::new(dev_end).unwrap();
        let mem = memory();
        let mac = [2, 0, 0, 4, 5, 6];
        let mut d = Driver::new(&mem, Box::new(Net::new(Box::new(backend), mac).unwrap()));
        d.init(
            features::MAC | crate::virtio::features::RING_EVENT_IDX,
            &[256, 256],
        );

        // TX: a header asking for offloads that were not negotiated drops
        // the frame (the chain is still returned); a plain one goes out.
        let out = frame([0xff; 6], mac, b"tx over a socket");
        let mut hdr = [0u8; VNET_HDR_LEN];
        hdr[0] = 1; // NEEDS_CSUM, never negotiated
        hdr[1] = 4; // GSO_TCPV6, never negotiated
        d.write_bytes(0x8_0000, &hdr);
        d.write_bytes(0x8_0000 + VNET_HDR_LEN as u64, &out);
        // Header and frame in separate buffers, as Linux does.
        let chain = [
            (0x8_0000, VNET_HDR_LEN as u32, 0),
            (0x8_0000 + VNET_HDR_LEN as u64, out.len() as u32, 0),
        ];
        d.submit(TX, &chain);
        wait_for("the transmit chain back", || d.used_idx(TX) == 1);
        host.set_nonblocking(true).unwrap();
        let mut got = vec![0u8; 2048];
        assert!(
            host.recv(&mut got).is_err(),
            "the offload frame was dropped"
        );
        host.set_nonblocking(false).unwrap();
        d.write_bytes(0x8_0000, &[0u8; VNET_HDR_LEN]);
        d.submit(TX, &chain);
        let n = host.recv(&mut got).unwrap();
        assert_eq!(&got[..VNET_HDR_LEN], &[0u8; VNET_HDR_LEN]);
        assert_eq!(&got[VNET_HDR_LEN..n], &out[..]);

        // RX: a buffer outside memory and one too small are returned
        // empty; the frame lands in the first good one.
        d.add(RX, &[(0xfff_0000, 2048, WRITE)]);
        d.add(RX, &[(0x9_0000, 20, WRITE)]);
        d.add(RX, &[(0xa_0000, 2048, WRITE)]);
        d.notify(RX);
        let inbound = frame(mac, [2, 0, 0, 7, 7, 7], b"rx over a socket");
        let mut dgram = vec![0u8; VNET_HDR_LEN];
        dgram.extend_from_slice(&inbound);
        host.send(&dgram).unwrap();
        wait_for("three used receive buffers", || d.used_idx(RX) == 3);
        assert_eq!(d.used(RX, 0).1, 0);
        assert_eq!(d.used(RX, 1).1, 0);
        assert_eq!(d.used(RX, 2).1 as usize, dgram.len());
        let got = d.read_bytes(0xa_0000, dgram.len());
        assert_eq!(&got[VNET_HDR_LEN..], &inbound[..]);
        assert_eq!(&got[10..12], &1u16.to_le_bytes());

        // A frame with no buffer waits; posting one delivers it.
        host.send(&dgram).unwrap();
        d.submit(RX, &[(0xb_0000, 2048, WRITE)]);
        wait_for("the waiting frame", || d.used_idx(RX) == 4);
        assert_eq!(d.used(RX, 3).1 as usize, dgram.len());
        assert!(!d.needs_reset());
    }

    /// A device on one end of a datagram pair (the other end is the host),
    /// with `feats` negotiated and receive / transmit queues of `sizes`.
    fn socket_device<'a>(
        mem: &'a vessel_machine::GuestMemoryMmap,
        feats: u64,
        sizes: &[u16],
    ) -> (
        Driver<'a>,
        std::os::unix::net::UnixDatagram,
        Arc<NetCounters>,
    ) {
        use crate::net::DatagramBackend;
        use std::os::unix::net::UnixDatagram;
        let (dev_end, host) = UnixDatagram::pair().unwrap();
        // A small send buffer, so a test can fill it.
        let sndbuf: libc::c_int = 4096;
        // SAFETY: SO_SNDBUF reads one int from the pointer.
        let r = unsafe {
            libc::setsockopt(
                dev_end.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&sndbuf as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        assert_eq!(r, 0);
        let net = Net::new(
            Box::new(DatagramBackend::new(dev_end).unwrap()),
            [2, 0, 0, 1, 1, 1],
        )
        .unwrap();
        let counters = net.counters();
        let mut d = Driver::new(mem, Box::new(net));
        d.init(feats, sizes);
        (d, host, counters)
    }

    /// A header plus `len` payload bytes counting up.
    fn dgram(len: usize) -> Vec<u8> {
        let mut v = vec![0u8; VNET_HDR_LEN];
        v.extend((0..len).map(|i| (i % 251) as u8));
        v
    }

    #[test]
    fn mergeable_buffers_take_a_frame_in_pieces_published_together() {
        let mem = memory();
        let feats = features::MAC | features::MRG_RXBUF | crate::virtio::features::RING_EVENT_IDX;
        let (mut d, host, counters) = socket_device(&mem, feats, &[16, 16]);
        // Four 1536-byte single-page buffers, as Linux posts them.
        for i in 0..4u64 {
            d.add(RX, &[(0x2_0000 + 0x1000 * i, 1536, WRITE)]);
        }
        d.notify(RX);
        let frame = dgram(4000);
        host.send(&frame).unwrap();
        wait_for("the merged frame", || d.used_idx(RX) >= 3);
        assert_eq!(d.used_idx(RX), 3, "three buffers, one index update");
        let lens: Vec<u32> = (0..3).map(|n| d.used(RX, n).1).collect();
        assert_eq!(lens, [1536, 1536, frame.len() as u32 - 2 * 1536]);
        let mut got = Vec::new();
        for n in 0..3 {
            let (id, len) = d.used(RX, n);
            got.extend(d.read_bytes(0x2_0000 + 0x1000 * u64::from(id), len as usize));
        }
        assert_eq!(&got[10..12], &3u16.to_le_bytes(), "num_buffers");
        assert_eq!(&got[VNET_HDR_LEN..], &frame[VNET_HDR_LEN..]);

        // A frame bigger than the buffers left waits for more, then spans
        // the old one and the new ones.
        let frame = dgram(3000);
        host.send(&frame).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(d.used_idx(RX), 3, "one buffer is not enough: nothing used");
        d.add(RX, &[(0x3_0000, 1024, WRITE)]);
        d.add(RX, &[(0x3_1000, 1024, WRITE)]);
        d.notify(RX);
        wait_for("the waiting frame", || d.used_idx(RX) == 6);
        let (id, len) = d.used(RX, 3);
        assert_eq!((id, len), (3, 1536), "the buffer kept for it comes first");
        assert_eq!(d.used(RX, 4).1, 1024);
        assert_eq!(d.used(RX, 5).1 as usize, frame.len() - 1536 - 1024);
        let first = d.read_bytes(0x2_0000 + 0x3000, 12);
        assert_eq!(&first[10..12], &3u16.to_le_bytes());
        let (_, _, _, rx, rx_dropped) = counters.snapshot();
        assert_eq!((rx, rx_dropped), (2, 0));
        assert!(!d.needs_reset());
    }

    #[test]
    fn mergeable_receive_skips_broken_and_tiny_chains_and_drops_what_never_fits() {
        let mem = memory();
        let (mut d, host, counters) = socket_device(&mem, features::MRG_RXBUF, &[4, 16]);
        // Outside guest memory; a readable-only chain; 8 bytes (no room
        // for the 12-byte header in a first buffer); then a good one.
        d.add(RX, &[(0xfff_0000, 2048, WRITE)]);
        d.add(RX, &[(0x2_0000, 2048, 0)]);
        d.add(RX, &[(0x2_1000, 8, WRITE)]);
        d.add(RX, &[(0x2_2000, 2048, WRITE)]);
        d.notify(RX);
        let frame = dgram(100);
        host.send(&frame).unwrap();
        wait_for("four used buffers", || d.used_idx(RX) == 4);
        for n in 0..3 {
            assert_eq!(d.used(RX, n).1, 0, "bad chain {n} returned empty");
        }
        assert_eq!(d.used(RX, 3), (3, frame.len() as u32));
        let got = d.read_bytes(0x2_2000, frame.len());
        assert_eq!(&got[10..12], &1u16.to_le_bytes());
        assert_eq!(&got[VNET_HDR_LEN..], &frame[VNET_HDR_LEN..]);

        // A 4-entry ring of 64-byte buffers can never hold 1000 bytes: the
        // frame is dropped and counted, the buffers serve the next frame.
        for i in 0..4u64 {
            d.add(RX, &[(0x4_0000 + 0x100 * i, 64, WRITE)]);
        }
        d.notify(RX);
        host.send(&dgram(1000)).unwrap();
        let small = dgram(40);
        host.send(&small).unwrap();
        wait_for("the small frame", || d.used_idx(RX) == 5);
        assert_eq!(d.used(RX, 4), (0, small.len() as u32));
        let (_, _, _, rx, rx_dropped) = counters.snapshot();
        assert_eq!((rx, rx_dropped), (2, 1));
        assert!(!d.needs_reset());
    }

    #[test]
    fn transmit_waits_for_a_full_backend_without_dropping_and_a_reset_ends_the_wait() {
        let mem = memory();
        let (mut d, host, counters) = socket_device(&mem, features::MAC, &[16, 64]);
        let out = dgram(200);
        d.write_bytes(0x8_0000, &out);
        // The socket's small send buffer takes only a few unread
        // datagrams, then the worker's write finds it full and waits; a
        // reader that starts only then lets every frame through.
        let c = counters.clone();
        let reader = std::thread::spawn(move || {
            while c.tx_retries.load(Ordering::Relaxed) == 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            host.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let mut buf = [0u8; 512];
            let mut got = 0u64;
            while got < 40 && host.recv(&mut buf).is_ok() {
                got += 1;
            }
            (host, got)
        });
        for _ in 0..40 {
            d.add(TX, &[(0x8_0000, out.len() as u32, 0)]);
        }
        d.notify(TX);
        let (host, got) = reader.join().unwrap();
        wait_for("40 used transmit chains", || d.used_idx(TX) == 40);
        let (tx, tx_dropped, retries, _, _) = counters.snapshot();
        assert!(retries > 0, "the back end was full at least once");
        assert_eq!((tx, tx_dropped, got), (40, 0, 40), "every frame arrived");

        // Nobody reads: the worker waits for room and the chains stay
        // with the device (the guest's ring fills: back-pressure).
        for _ in 0..40 {
            d.add(TX, &[(0x8_0000, out.len() as u32, 0)]);
        }
        d.notify(TX);
        wait_for("a full back end", || {
            counters.tx_retries.load(Ordering::Relaxed) > retries
        });
        assert!(d.used_idx(TX) < 80, "frames wait for room, not dropped");
        // A reset ends the wait (the frames left are counted as dropped),
        // and the device comes up again.
        d.w(regs::STATUS, 0);
        let (tx2, dropped2, _, _, _) = counters.snapshot();
        assert!(
            tx2 >= 40 && dropped2 > 0 && tx2 + dropped2 <= 80,
            "{tx2} {dropped2}"
        );
        d.init(features::MAC, &[16, 64]);
        assert!(!d.needs_reset());
        drop(host);
    }

    #[test]
    fn mac_parsing_and_config_space() {
        assert_eq!(
            parse_mac("52:54:00:0a:bB:ff").unwrap(),
            [0x52, 0x54, 0, 0xa, 0xbb, 0xff]
        );
        for bad in [
            "52:54:00:0a:bb",
            "52:54:00:0a:bb:fff",
            "zz:54:00:0a:bb:ff",
            "",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
        let m = random_mac();
        assert_eq!(&m[..3], &[0x52, 0x54, 0]);
        let Some(tap) = tap_or_skip("c") else { return };
        let mem = memory();
        let mac = [2, 0, 0, 0xaa, 0xbb, 0xcc];
        let mut d = Driver::new(&mem, Box::new(Net::new(tap, mac).unwrap()));
        let mut got = [0u8; 6];
        d.mmio.read(regs::CONFIG, &mut got);
        assert_eq!(got, mac);
        assert_eq!(d.r(regs::CONFIG + 4) >> 16, 1, "link up");
        let f = d.device_features();
        assert_eq!(f & features::OFFLOADS, features::OFFLOADS);
        assert_eq!(f & features::MRG_RXBUF, features::MRG_RXBUF);
        assert_eq!(f & (1 << 10 | 1 << 14), 0, "no UFO");
    }

    #[test]
    fn transmit_reaches_the_host_and_receive_reaches_the_guest() {
        let Some(tap) = tap_or_skip("t") else { return };
        let name = tap.name().to_string();
        assert_eq!(name, format!("vst{}", std::process::id() % 100_000));
        let host = PacketSocket::open(&name);
        let mem = memory();
        let mac = [2, 0, 0, 1, 2, 3];
        let mut d = Driver::new(&mem, Box::new(Net::new(tap, mac).unwrap()));
        d.init(features::MAC, &[256, 256]);

        // Guest → host.
        let out = frame([0xff; 6], mac, b"vessel-tx-frame");
        d.write_bytes(0x8_0000, &[0u8; VNET_HDR_LEN]);
        d.write_bytes(0x8_0000 + VNET_HDR_LEN as u64, &out);
        d.submit(TX, &[(0x8_0000, (VNET_HDR_LEN + out.len()) as u32, 0)]);
        wait_for("the transmit chain back", || d.used_idx(TX) == 1);
        let seen = host.recv_containing(b"vessel-tx-frame");
        assert_eq!(seen, out);

        // A runt and an oversized transmit chain are dropped, not fatal.
        d.submit(TX, &[(0x8_0000, 4, 0)]);
        d.submit(TX, &[(0x8_0000, 0x7_0000, 0)]);
        wait_for("three transmit chains back", || d.used_idx(TX) == 3);
        assert!(!d.needs_reset());

        // Host → guest: post receive buffers, then send a frame to the tap.
        for i in 0..8u64 {
            d.add(RX, &[(0x10_0000 - 0x800 * (i + 1), 0x800, WRITE)]);
        }
        d.notify(RX);
        let inbound = frame(mac, [2, 0, 0, 9, 9, 9], b"vessel-rx-frame");
        host.send(&inbound);
        // The worker delivers it (kernel chatter such as IPv6 router
        // solicitations may come first): look through the used ring.
        let mut found = false;
        for _ in 0..10_000 {
            for n in 0..d.used_idx(RX) {
                let (id, len) = d.used(RX, n);
                let addr = 0x10_0000 - 0x800 * (u64::from(id) + 1);
                let got = d.read_bytes(addr, len as usize);
                if got.len() > VNET_HDR_LEN && got[VNET_HDR_LEN..] == inbound[..] {
                    assert_eq!(&got[10..12], &1u16.to_le_bytes(), "num_buffers");
                    found = true;
                }
            }
            if found {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(found, "the frame sent to the tap reached a receive buffer");
        assert!(d.irq.is_high());
        // Reset stops the worker; the device can be brought up again.
        d.w(regs::STATUS, 0);
        d.init(features::MAC, &[256, 256]);
        assert!(!d.needs_reset());
    }

    #[test]
    fn offload_headers_follow_the_negotiated_features() {
        use crate::net::tap::offload;
        use features::*;
        assert_eq!(tap_offloads(0), 0);
        assert_eq!(tap_offloads(GUEST_TSO4), 0, "TSO needs GUEST_CSUM");
        assert_eq!(tap_offloads(GUEST_CSUM), offload::CSUM);
        assert_eq!(
            tap_offloads(GUEST_CSUM | GUEST_TSO4 | GUEST_TSO6 | GUEST_ECN),
            offload::CSUM | offload::TSO4 | offload::TSO6 | offload::TSO_ECN
        );
        assert_eq!(tap_offloads(GUEST_CSUM | GUEST_ECN), offload::CSUM);

        // flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers
        let h = |flags: u8, gso: u8| [flags, gso, 54, 0, 0xa8, 5, 34, 0, 16, 0, 9, 9];
        let all = CSUM | HOST_TSO4 | HOST_TSO6 | HOST_ECN;
        assert_eq!(tx_header(&h(0, 0), 0), Some([0; 12]), "plain frame");
        assert_eq!(
            tx_header(&h(2, 0), 0),
            Some([0; 12]),
            "DATA_VALID is dropped"
        );
        assert_eq!(tx_header(&h(1, 0), 0), None, "NEEDS_CSUM without CSUM");
        assert_eq!(
            tx_header(&h(1, 0), CSUM),
            Some([1, 0, 0, 0, 0, 0, 34, 0, 16, 0, 0, 0])
        );
        assert_eq!(tx_header(&h(1, 1), CSUM), None, "TSO4 not negotiated");
        assert_eq!(
            tx_header(&h(1, 1), all),
            Some([1, 1, 54, 0, 0xa8, 5, 34, 0, 16, 0, 0, 0])
        );
        assert_eq!(tx_header(&h(0, 1), all), None, "TSO without NEEDS_CSUM");
        assert_eq!(
            tx_header(&h(1, 4), CSUM | HOST_TSO4),
            None,
            "TSO6 not negotiated"
        );
        assert!(tx_header(&h(1, 4), all).is_some());
        assert_eq!(
            tx_header(&h(1, 0x81), CSUM | HOST_TSO4),
            None,
            "ECN not negotiated"
        );
        assert!(tx_header(&h(1, 0x81), all).is_some());
        assert_eq!(
            tx_header(&h(1, 3), all),
            None,
            "UDP fragmentation is never offered"
        );
        assert_eq!(tx_header(&h(1, 5), all), None, "unknown gso type");

        let mut r = h(3, 1);
        rx_header(&mut r, 0);
        assert_eq!(
            r,
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            "no offloads: cleared"
        );
        let mut r = h(0xff, 1);
        rx_header(&mut r, GUEST_CSUM | GUEST_TSO4);
        assert_eq!(r, [3, 1, 54, 0, 0xa8, 5, 34, 0, 16, 0, 1, 0]);
    }

    #[test]
    fn negotiated_offload_headers_pass_through_both_ways() {
        use crate::net::DatagramBackend;
        use std::os::unix::net::UnixDatagram;
        let (dev_end, host) = UnixDatagram::pair().unwrap();
        let mem = memory();
        let mac = [2, 0, 0, 4, 5, 7];
        let backend = DatagramBackend::new(dev_end).unwrap();
        let mut d = Driver::new(&mem, Box::new(Net::new(Box::new(backend), mac).unwrap()));
        d.init(features::MAC | features::OFFLOADS, &[256, 256]);

        // A 9000-byte TSO frame with a partial checksum goes out as is.
        let out = frame([0xff; 6], mac, &[0x42; 9000]);
        let hdr = [1u8, 1, 54, 0, 0xa8, 5, 34, 0, 16, 0, 0, 0];
        d.write_bytes(0x8_0000, &hdr);
        d.write_bytes(0x8_0000 + VNET_HDR_LEN as u64, &out);
        d.submit(
            TX,
            &[
                (0x8_0000, VNET_HDR_LEN as u32, 0),
                (0x8_0000 + VNET_HDR_LEN as u64, out.len() as u32, 0),
            ],
        );
        let mut got = vec![0u8; 16384];
        let n = host.recv(&mut got).unwrap();
        assert_eq!(&got[..VNET_HDR_LEN], &hdr);
        assert_eq!(&got[VNET_HDR_LEN..n], &out[..]);

        // A 30000-byte GSO frame from the host fills a big-packet buffer
        // chain (header page, then pages), its header kept.
        let inbound = frame(mac, [2, 0, 0, 7, 7, 7], &[0x17; 30_000]);
        let mut dgram = vec![1u8, 1, 54, 0, 0xa8, 5, 34, 0, 16, 0, 0, 0];
        dgram.extend_from_slice(&inbound);
        let bufs: Vec<(u64, u32, u16)> = (0..9u64)
            .map(|i| (0xc_0000 + 0x1000 * i, 0x1000, WRITE))
            .collect();
        d.submit(RX, &bufs);
        host.send(&dgram).unwrap();
        wait_for("the big frame", || d.used_idx(RX) == 1);
        assert_eq!(d.used(RX, 0).1 as usize, dgram.len());
        let got = d.read_bytes(0xc_0000, dgram.len());
        assert_eq!(&got[..10], &dgram[..10]);
        assert_eq!(&got[10..12], &1u16.to_le_bytes(), "num_buffers");
        assert_eq!(&got[VNET_HDR_LEN..], &inbound[..]);
        assert!(!d.needs_reset());
    }
}
