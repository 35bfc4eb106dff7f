//! Network back ends for virtio-net: anything that moves whole Ethernet
//! frames, each with a 12-byte virtio-net header in front.

pub mod tap;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;

pub use tap::{Tap, TapError};

/// A parsed `--net tap=NAME[,mac=MAC][,offload=on|off]` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetSpec {
    pub tap: String,
    /// `None`: a random 52:54:00:xx:xx:xx address.
    pub mac: Option<[u8; 6]>,
    /// Offer checksum and TCP segmentation offloads (default on).
    pub offload: bool,
}

/// Errors in a `--net` value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetSpecError {
    #[error("--net needs tap=NAME: tap=NAME[,mac=MAC]")]
    NoTap,
    #[error("--net option {0:?} is not one of tap=NAME, mac=MAC, offload=on|off")]
    UnknownOption(String),
    #[error("--net mac {0:?} is not six hex bytes like 52:54:00:12:34:56")]
    BadMac(String),
    #[error("--net tap name {0:?} must be 1 to 15 characters without '/' or spaces")]
    BadName(String),
}

impl std::str::FromStr for NetSpec {
    type Err = NetSpecError;

    fn from_str(s: &str) -> Result<Self, NetSpecError> {
        let mut tap = None;
        let mut mac = None;
        let mut offload = true;
        for opt in s.split(',') {
            match opt.split_once('=') {
                Some(("tap", n)) => {
                    if n.is_empty() || n.len() > 15 || n.contains(['/', ' ', '\0']) {
                        return Err(NetSpecError::BadName(n.to_string()));
                    }
                    tap = Some(n.to_string());
                }
                Some(("mac", m)) => {
                    mac = Some(
                        crate::virtio::net::parse_mac(m)
                            .map_err(|_| NetSpecError::BadMac(m.to_string()))?,
                    )
                }
                Some(("offload", "on")) => offload = true,
                Some(("offload", "off")) => offload = false,
                _ => return Err(NetSpecError::UnknownOption(opt.to_string())),
            }
        }
        Ok(NetSpec {
            tap: tap.ok_or(NetSpecError::NoTap)?,
            mac,
            offload,
        })
    }
}

/// Errors building a net device from a [`NetSpec`].
#[derive(Debug, thiserror::Error)]
pub enum NetOpenError {
    #[error(transparent)]
    Tap(#[from] TapError),
    #[error(transparent)]
    Net(#[from] crate::virtio::net::NetError),
}

impl NetSpec {
    /// Open (or create) the tap and build the virtio-net device.
    pub fn open(&self) -> Result<crate::virtio::net::Net, NetOpenError> {
        let tap = Tap::open(&self.tap)?;
        let mac = self.mac.unwrap_or_else(crate::virtio::net::random_mac);
        let net = crate::virtio::net::Net::new(Box::new(tap), mac)?;
        Ok(if self.offload {
            net
        } else {
            net.without_offloads()
        })
    }
}

/// A frame-at-a-time, non-blocking packet back end.
pub trait FrameBackend: Send + Sync {
    /// Read one frame (header included); `WouldBlock` when none is queued.
    fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Write one frame (header included).
    fn write_frame(&self, buf: &[u8]) -> io::Result<usize>;
    /// A descriptor that polls readable when a frame is queued.
    fn poll_fd(&self) -> RawFd;
    /// A name for logs and thread names.
    fn name(&self) -> &str;
    /// The offloads ([`tap::offload`] flags) the guest accepted, so the
    /// back end may hand over partially checksummed and segmentation
    /// offload frames. Back ends that cannot do this keep sending complete
    /// frames, which is always allowed.
    fn set_offload(&self, _flags: u32) -> io::Result<()> {
        Ok(())
    }
}

impl FrameBackend for Tap {
    fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read(buf)
    }
    fn write_frame(&self, buf: &[u8]) -> io::Result<usize> {
        self.write(buf)
    }
    fn poll_fd(&self) -> RawFd {
        self.as_raw_fd()
    }
    fn name(&self) -> &str {
        Tap::name(self)
    }
    fn set_offload(&self, flags: u32) -> io::Result<()> {
        Tap::set_offload(self, flags)
    }
}

/// One end of a datagram socket pair as a back end: each datagram is a
/// frame. Used by tests and fuzzing, and usable to connect two guests.
pub struct DatagramBackend {
    sock: UnixDatagram,
}

impl DatagramBackend {
    /// Wrap `sock`, switching it to non-blocking mode.
    pub fn new(sock: UnixDatagram) -> io::Result<Self> {
        sock.set_nonblocking(true)?;
        Ok(Self { sock })
    }
}

impl FrameBackend for DatagramBackend {
    fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.recv(buf)
    }
    fn write_frame(&self, buf: &[u8]) -> io::Result<usize> {
        self.sock.send(buf)
    }
    fn poll_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
    fn name(&self) -> &str {
        "socket"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_net_specs() {
        let s: NetSpec = "tap=vm0,mac=52:54:00:00:00:01".parse().unwrap();
        assert_eq!(s.tap, "vm0");
        assert_eq!(s.mac, Some([0x52, 0x54, 0, 0, 0, 1]));
        assert!(s.offload);
        let s: NetSpec = "tap=vm1,offload=off".parse().unwrap();
        assert_eq!(s.mac, None);
        assert!(!s.offload);
        assert!(matches!(
            "tap=a,offload=maybe".parse::<NetSpec>(),
            Err(NetSpecError::UnknownOption(_))
        ));
        assert_eq!(
            "mac=52:54:00:00:00:01".parse::<NetSpec>(),
            Err(NetSpecError::NoTap)
        );
        assert!(matches!(
            "tap=a,mac=1:2".parse::<NetSpec>(),
            Err(NetSpecError::BadMac(_))
        ));
        assert!(matches!(
            "tap=a,x=1".parse::<NetSpec>(),
            Err(NetSpecError::UnknownOption(_))
        ));
        assert!(matches!(
            "tap=a/b".parse::<NetSpec>(),
            Err(NetSpecError::BadName(_))
        ));
    }
}
