//! virtio-net over a real tap, end to end with the host kernel: inside a
//! private network namespace (this test thread's only), the host side of the
//! tap gets 10.0.0.1/24; a tiny "guest" driven through the transport answers
//! ARP and echoes UDP at 10.0.0.2. Every frame the host kernel sends must
//! carry complete checksums (no offloads are negotiated), and every echo
//! must come back intact.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::Arc;

use vessel_devices::VirtioMmio;
use vessel_devices::net::Tap;
use vessel_devices::virtio::net::Net;
use vessel_machine::vm_memory::{Bytes, GuestAddress};
use vessel_machine::{BusDevice, GuestMemoryMmap, IrqLine, create_guest_memory};

const HDR: usize = 12;
const QSIZE: u16 = 256;
const RX_BUFS: u16 = 64;
const GUEST_IP: [u8; 4] = [10, 0, 0, 2];
const HOST_IP: [u8; 4] = [10, 0, 0, 1];
const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

struct NoIrq;
impl IrqLine for NoIrq {
    fn set_level(&self, _: bool) {}
}

fn qbase(q: u64) -> u64 {
    0x1_0000 + q * 0x4000
}

struct Guest {
    mmio: VirtioMmio,
    mem: GuestMemoryMmap,
    rx_avail: u16,
    rx_seen: u16,
    tx_avail: u16,
}

impl Guest {
    fn w(&mut self, off: u64, v: u32) {
        self.mmio.write(off, &v.to_le_bytes());
    }

    fn new(tap: Tap) -> Self {
        let mem = create_guest_memory(&[(0, 4 << 20)]).unwrap();
        let net = Net::new(Box::new(tap), MAC).unwrap();
        let mmio = VirtioMmio::new(mem.clone(), Box::new(net), Arc::new(NoIrq));
        let mut g = Self {
            mmio,
            mem,
            rx_avail: 0,
            rx_seen: 0,
            tx_avail: 0,
        };
        g.w(0x70, 3);
        g.w(0x24, 0);
        g.w(0x20, 1 << 5); // MAC
        g.w(0x24, 1);
        g.w(0x20, 1); // VERSION_1
        g.w(0x70, 0xb);
        for q in 0..2u64 {
            let b = qbase(q);
            g.w(0x30, q as u32);
            g.w(0x38, u32::from(QSIZE));
            g.w(0x80, b as u32);
            g.w(0x90, (b + 0x1000) as u32);
            g.w(0xa0, (b + 0x2000) as u32);
            g.w(0x44, 1);
        }
        g.w(0x70, 0xf);
        for i in 0..RX_BUFS {
            g.post_rx(i);
        }
        g.w(0x50, 0);
        g
    }

    fn rx_buf(i: u16) -> u64 {
        0x10_0000 + 0x1000 * u64::from(i)
    }

    fn desc(&self, q: u64, i: u16, addr: u64, len: u32, flags: u16) {
        let d = qbase(q) + 16 * u64::from(i);
        self.mem.write_obj(addr, GuestAddress(d)).unwrap();
        self.mem.write_obj(len, GuestAddress(d + 8)).unwrap();
        self.mem.write_obj(flags, GuestAddress(d + 12)).unwrap();
        self.mem.write_obj(0u16, GuestAddress(d + 14)).unwrap();
    }

    fn publish(&self, q: u64, slot: u16, head: u16, idx: u16) {
        let a = qbase(q) + 0x1000;
        self.mem
            .write_obj(head, GuestAddress(a + 4 + 2 * u64::from(slot % QSIZE)))
            .unwrap();
        self.mem.write_obj(idx, GuestAddress(a + 2)).unwrap();
    }

    fn post_rx(&mut self, i: u16) {
        self.desc(0, i, Self::rx_buf(i), 0x800, 2);
        self.publish(0, self.rx_avail, i, self.rx_avail.wrapping_add(1));
        self.rx_avail = self.rx_avail.wrapping_add(1);
    }

    /// Frames the device has received since the last call (header stripped).
    fn receive(&mut self) -> Vec<Vec<u8>> {
        let used = qbase(0) + 0x2000;
        let idx: u16 = self.mem.read_obj(GuestAddress(used + 2)).unwrap();
        let mut frames = Vec::new();
        while self.rx_seen != idx {
            let e = used + 4 + 8 * u64::from(self.rx_seen % QSIZE);
            let id: u32 = self.mem.read_obj(GuestAddress(e)).unwrap();
            let len: u32 = self.mem.read_obj(GuestAddress(e + 4)).unwrap();
            let mut f = vec![0u8; len as usize];
            self.mem
                .read_slice(&mut f, GuestAddress(Self::rx_buf(id as u16)))
                .unwrap();
            if f.len() > HDR {
                frames.push(f[HDR..].to_vec());
            }
            self.rx_seen = self.rx_seen.wrapping_add(1);
            self.post_rx(id as u16);
        }
        if !frames.is_empty() {
            self.w(0x50, 0);
        }
        frames
    }

    fn send(&mut self, frame: &[u8]) {
        let i = self.tx_avail % QSIZE;
        let buf = 0x30_0000 + 0x1000 * u64::from(i % 64);
        self.mem
            .write_slice(&[0u8; HDR], GuestAddress(buf))
            .unwrap();
        self.mem
            .write_slice(frame, GuestAddress(buf + HDR as u64))
            .unwrap();
        self.desc(1, i, buf, (HDR + frame.len()) as u32, 0);
        self.publish(1, self.tx_avail, i, self.tx_avail.wrapping_add(1));
        self.tx_avail = self.tx_avail.wrapping_add(1);
        self.w(0x50, 1);
    }
}

/// The one's-complement Internet checksum.
fn csum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn udp_csum(src: &[u8], dst: &[u8], udp: &[u8]) -> u16 {
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(src);
    pseudo.extend_from_slice(dst);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(udp);
    csum(&pseudo, 0)
}

/// Answer one frame like a guest at 10.0.0.2 would; counts checked UDP.
fn answer(frame: &[u8], udp_checked: &mut usize) -> Option<Vec<u8>> {
    if frame.len() < 14 {
        return None;
    }
    let (eth, body) = frame.split_at(14);
    let ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    let mut reply = Vec::new();
    reply.extend_from_slice(&eth[6..12]);
    reply.extend_from_slice(&MAC);
    reply.extend_from_slice(&eth[12..14]);
    match ethertype {
        0x0806 if body.len() >= 28 && body[6..8] == [0, 1] && body[24..28] == GUEST_IP => {
            reply.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
            reply.extend_from_slice(&MAC);
            reply.extend_from_slice(&GUEST_IP);
            reply.extend_from_slice(&body[8..18]);
            Some(reply)
        }
        0x0800 if body.len() >= 28 && body[9] == 17 && body[16..20] == GUEST_IP => {
            let ihl = usize::from(body[0] & 0xf) * 4;
            let total = usize::from(u16::from_be_bytes([body[2], body[3]]));
            assert!(total <= body.len() && ihl >= 20 && total >= ihl + 8);
            let ip = &body[..total];
            assert_eq!(csum(&ip[..ihl], 0), 0, "IPv4 header checksum from the host");
            let udp = &ip[ihl..];
            assert_eq!(
                udp_csum(&ip[12..16], &ip[16..20], udp),
                0,
                "complete UDP checksum from the host (no offload left it partial)"
            );
            *udp_checked += 1;
            let mut ip2 = ip.to_vec();
            ip2[12..16].copy_from_slice(&ip[16..20]);
            ip2[16..20].copy_from_slice(&ip[12..16]);
            ip2[10..12].fill(0);
            let c = csum(&ip2[..ihl], 0);
            ip2[10..12].copy_from_slice(&c.to_be_bytes());
            let u = &mut ip2[ihl..];
            let (sp, dp) = ([u[0], u[1]], [u[2], u[3]]);
            u[0..2].copy_from_slice(&dp);
            u[2..4].copy_from_slice(&sp);
            u[6..8].fill(0);
            let uc = udp_csum(&GUEST_IP, &HOST_IP, u);
            u[6..8].copy_from_slice(&(if uc == 0 { 0xffff } else { uc }).to_be_bytes());
            reply.extend_from_slice(&ip2);
            Some(reply)
        }
        _ => None,
    }
}

/// Give the tap `addr`/24 (SIOCSIFADDR, SIOCSIFNETMASK).
fn set_ipv4(name: &str, addr: [u8; 4]) {
    #[repr(C)]
    struct IfReqAddr {
        name: [u8; 16],
        addr: libc::sockaddr_in,
        _pad: [u8; 8],
    }
    // SAFETY: plain socket call, checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    assert!(fd >= 0);
    for (req, a) in [
        (libc::SIOCSIFADDR, addr),
        (libc::SIOCSIFNETMASK, [255, 255, 255, 0]),
    ] {
        let mut r = IfReqAddr {
            name: [0; 16],
            // SAFETY: sockaddr_in is plain data; zero is valid.
            addr: unsafe { std::mem::zeroed() },
            _pad: [0; 8],
        };
        r.name[..name.len()].copy_from_slice(name.as_bytes());
        r.addr.sin_family = libc::AF_INET as u16;
        r.addr.sin_addr.s_addr = u32::from_ne_bytes(a);
        // SAFETY: the ioctl reads one struct ifreq laid out as above.
        let rc = unsafe { libc::ioctl(fd, req, &r) };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    }
    // SAFETY: closing the socket we opened.
    unsafe { libc::close(fd) };
}

#[test]
fn udp_echo_through_a_tap_in_a_private_namespace() {
    // SAFETY: unshare affects only this test thread's network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        eprintln!(
            "SKIP: cannot create a network namespace ({}); needs root",
            std::io::Error::last_os_error()
        );
        return;
    }
    let tap = match Tap::open("vstap0") {
        Ok(t) => t,
        Err(e) => {
            eprintln!("SKIP: {e}");
            return;
        }
    };
    set_ipv4("vstap0", HOST_IP);
    let mut guest = Guest::new(tap);
    let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::from(HOST_IP), 0)).unwrap();
    sock.set_nonblocking(true).unwrap();
    let dst = SocketAddrV4::new(Ipv4Addr::from(GUEST_IP), 7777);

    let mut udp_checked = 0;
    let mut echoed_bytes = 0usize;
    let mut buf = vec![0u8; 2048];
    for n in 0..300u32 {
        let payload: Vec<u8> = (0..1400u32).map(|i| (i * 7 + n) as u8).collect();
        sock.send_to(&payload, dst).unwrap();
        let mut done = false;
        for _ in 0..20_000 {
            for f in guest.receive() {
                if let Some(r) = answer(&f, &mut udp_checked) {
                    guest.send(&r);
                }
            }
            match sock.recv(&mut buf) {
                Ok(len) => {
                    assert_eq!(&buf[..len], &payload[..], "echo {n} intact");
                    echoed_bytes += len;
                    done = true;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                Err(e) => panic!("recv: {e}"),
            }
        }
        assert!(done, "datagram {n} was echoed");
    }
    assert_eq!(echoed_bytes, 300 * 1400);
    assert!(udp_checked >= 300);
}
