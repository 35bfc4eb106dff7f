//! virtio-net (virtio 1.2 §5.1) over a tap interface.
//!
//! Transmit runs inline when the driver notifies the transmit queue. Receive
//! runs on a worker thread that polls the tap and a wake-up eventfd, copies
//! each frame into the next receive buffer and raises the interrupt.
//!
//! Offloads, as QEMU and Firecracker offer them over a tap: checksum
//! (CSUM / GUEST_CSUM) and TCP segmentation (HOST_TSO4/6, GUEST_TSO4/6, ECN).
//! What the driver accepts for receive is passed to the tap
//! (TUNSETOFFLOAD), so the host kernel hands over partially checksummed
//! frames of up to 64 KiB that the guest finishes; Linux then posts
//! 64 KiB receive buffers ("big packets"). For transmit, the guest's
//! virtio-net header goes to the tap as is when it asks only for what was
//! negotiated (the host kernel checks the offsets); otherwise the frame is
//! dropped. Without offloads every header is cleared both ways. Mergeable
//! receive buffers are not offered.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use virtio_queue::{QueueOwnedT, QueueT};

use super::chain::{self, Cursor};
use super::{ActiveQueues, DeviceError, VirtioDevice, complete, device_type, drain_queue, lock};
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
/// and set num_buffers to 1 (one buffer per frame: no MRG_RXBUF).
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
}

/// State the receive worker shares with the device.
struct Shared {
    tap: Box<dyn FrameBackend>,
    wake: EventFd,
    stop: Mutex<bool>,
}

/// The network device.
pub struct Net {
    shared: Arc<Shared>,
    mac: [u8; 6],
    offloads: bool,
    active: Option<ActiveQueues>,
    worker: Option<JoinHandle<()>>,
    tx_buf: Vec<u8>,
}

impl Net {
    /// A network device on `backend` (usually a [`crate::net::Tap`]) with
    /// MAC address `mac`.
    pub fn new(backend: Box<dyn FrameBackend>, mac: [u8; 6]) -> Result<Self, NetError> {
        Ok(Self {
            shared: Arc::new(Shared {
                tap: backend,
                wake: EventFd::new().map_err(NetError::EventFd)?,
                stop: Mutex::new(false),
            }),
            mac,
            offloads: true,
            active: None,
            worker: None,
            tx_buf: Vec::new(),
        })
    }

    /// Offer no checksum or segmentation offloads (`--net ...,offload=off`):
    /// the guest computes every checksum and sends MTU-sized frames.
    pub fn without_offloads(mut self) -> Self {
        self.offloads = false;
        self
    }

    fn stop_worker(&mut self) {
        if let Some(w) = self.worker.take() {
            *lock(&self.shared.stop) = true;
            self.shared.wake.signal();
            let _ = w.join();
            *lock(&self.shared.stop) = false;
        }
    }

    fn transmit(&mut self) -> Result<(), DeviceError> {
        let Some(active) = &self.active else {
            return Ok(());
        };
        let tap = &self.shared.tap;
        let buf = &mut self.tx_buf;
        let int = active.interrupt.clone();
        let acked = active.acked_features;
        drain_queue(active, TX, |mem, c| {
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
            if let Err(e) = tap.write_frame(buf) {
                int.warn_once(
                    "tap write",
                    format_args!("tap write failed: {e}; frame dropped"),
                );
            }
            0
        })
    }
}

/// Copy one frame into the next receive buffer. `Ok(false)`: no buffer.
fn receive_one(active: &ActiveQueues, frame: &[u8]) -> Result<bool, &'static str> {
    let mem = &active.mem;
    let int = &active.interrupt;
    let Some(queue) = active.queues.get(RX) else {
        return Ok(false);
    };
    let mut q = lock(queue);
    if !q.ready() {
        return Ok(false);
    }
    loop {
        let next = q
            .iter(mem)
            .map_err(|_| "available index runs more than a queue ahead")?
            .next();
        let Some(desc_chain) = next else {
            if q.enable_notification(mem)
                .map_err(|_| "cannot write avail_event")?
            {
                continue;
            }
            return Ok(false);
        };
        let head = desc_chain.head_index();
        // A broken or too small buffer goes back empty; the frame waits
        // for the next one.
        let len = match chain::parse(desc_chain, mem) {
            Ok(c) => {
                let mut w = Cursor::new(mem, &c.writable);
                if w.remaining() < frame.len() as u64 {
                    int.warn_once(
                        "rx buffer too small",
                        format_args!(
                            "receive buffer of {} bytes for a {}-byte frame; returned empty",
                            w.remaining(),
                            frame.len()
                        ),
                    );
                    None
                } else if w.write(frame).is_ok() {
                    Some(frame.len() as u32)
                } else {
                    None
                }
            }
            Err(e) => {
                int.warn_once(e.kind(), format_args!("receive queue: {e}"));
                None
            }
        };
        complete(&mut q, mem, int, head, len.unwrap_or(0))?;
        if len.is_some() {
            return Ok(true);
        }
    }
}

fn rx_worker(shared: Arc<Shared>, active: ActiveQueues) {
    let mut frame = vec![0u8; MAX_FRAME];
    let mut pending: Option<usize> = None;
    let int = active.interrupt.clone();
    let acked = active.acked_features;
    loop {
        if *lock(&shared.stop) {
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
            match receive_one(&active, &frame[..n]) {
                Ok(true) => pending = None,
                Ok(false) => {
                    pending = Some(n);
                    break;
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
        let mut fds = [
            libc::pollfd {
                fd: shared.wake.0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: shared.tap.poll_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let nfds = if pending.is_some() || int.needs_reset() {
            1
        } else {
            2
        };
        // SAFETY: `fds` holds `nfds` valid pollfd entries.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), nfds, -1) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                int.warn_once("poll", format_args!("poll failed: {e}"));
                return;
            }
        }
        if fds[0].revents != 0 {
            shared.wake.drain();
        }
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        device_type::NET
    }

    fn features(&self) -> u64 {
        let offloads = if self.offloads { features::OFFLOADS } else { 0 };
        features::MAC | features::STATUS | offloads
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
        self.stop_worker();
        let offloads = tap_offloads(queues.acked_features);
        if let Err(e) = self.shared.tap.set_offload(offloads) {
            // Complete frames are always fine for the guest: go on without.
            queues.interrupt.warn_once(
                "tap offloads",
                format_args!("cannot set tap offloads {offloads:#x}: {e}; using none"),
            );
            let _ = self.shared.tap.set_offload(0);
        }
        let shared = self.shared.clone();
        let q = queues.clone();
        let worker = std::thread::Builder::new()
            .name(format!("virtio-net-rx-{}", self.shared.tap.name()))
            .spawn(move || rx_worker(shared, q))
            .map_err(DeviceError::Worker)?;
        self.worker = Some(worker);
        self.active = Some(queues);
        Ok(())
    }

    fn process_queue(&mut self, index: usize) -> Result<(), DeviceError> {
        match index {
            RX => {
                self.shared.wake.signal();
                Ok(())
            }
            TX => self.transmit(),
            _ => Ok(()),
        }
    }

    fn reset(&mut self) {
        self.stop_worker();
        self.active = None;
        // Until the next driver negotiates, the tap hands over complete frames.
        let _ = self.shared.tap.set_offload(0);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop_worker();
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
        assert_eq!(d.used_idx(TX), 1);
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
        assert_eq!(f & (1 << 15 | 1 << 10 | 1 << 14), 0, "no MRG_RXBUF, UFO");
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
        assert_eq!(d.used_idx(TX), 1);
        let seen = host.recv_containing(b"vessel-tx-frame");
        assert_eq!(seen, out);

        // A runt and an oversized transmit chain are dropped, not fatal.
        d.submit(TX, &[(0x8_0000, 4, 0)]);
        d.submit(TX, &[(0x8_0000, 0x7_0000, 0)]);
        assert_eq!(d.used_idx(TX), 3);
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
