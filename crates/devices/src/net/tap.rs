//! Linux tap interfaces (`/dev/net/tun`, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR).
//!
//! Opening a tap that does not exist creates it (the kernel does this when
//! the caller has CAP_NET_ADMIN); such a tap disappears when vessel exits.
//! A persistent tap made with `ip tuntap add NAME mode tap user USER` can be
//! used without privileges by that user.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;

/// The virtio-net header the tap exchanges with us (virtio 1.x: 12 bytes).
pub const VNET_HDR_LEN: usize = 12;

/// TUNSETOFFLOAD flags: what the reader of the tap (the guest) can take.
pub mod offload {
    /// Frames may carry a partial checksum (NEEDS_CSUM) or DATA_VALID.
    pub const CSUM: u32 = 0x01;
    /// TCP over IPv4 segmentation offload (frames up to 64 KiB).
    pub const TSO4: u32 = 0x02;
    /// TCP over IPv6 segmentation offload.
    pub const TSO6: u32 = 0x04;
    /// TSO with the ECN CWR bit.
    pub const TSO_ECN: u32 = 0x08;
}

/// Errors opening a tap.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("tap interface name {0:?} is empty or longer than 15 bytes")]
    BadName(String),
    #[error(
        "cannot open /dev/net/tun: {0}; load the tun module (modprobe tun), and run as root or with access to /dev/net/tun"
    )]
    OpenTun(#[source] io::Error),
    #[error(
        "cannot create or attach tap {name}: {source}; creating a tap needs CAP_NET_ADMIN, or make a persistent one first: ip tuntap add {name} mode tap user $USER"
    )]
    SetIff {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot configure tap {name} ({what}): {source}")]
    Configure {
        name: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn ifreq(name: &str, flags: libc::c_short) -> IfReq {
    let mut r = IfReq {
        name: [0; 16],
        flags,
        _pad: [0; 22],
    };
    r.name[..name.len()].copy_from_slice(name.as_bytes());
    r
}

/// An open tap: frames with a 12-byte virtio-net header in front.
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Open (creating it if allowed) the tap `name`, non-blocking, with
    /// 12-byte virtio-net headers and no offloads (until [`Tap::set_offload`]),
    /// and bring its link up.
    pub fn open(name: &str) -> Result<Self, TapError> {
        if name.is_empty() || name.len() > 15 || name.contains('/') || name.contains('\0') {
            return Err(TapError::BadName(name.to_string()));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(TapError::OpenTun)?;
        let req = ifreq(name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
        // SAFETY: TUNSETIFF reads (and writes back) one struct ifreq, which
        // `req` is, laid out as the kernel expects (16-byte name, then flags).
        let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &req) };
        if r < 0 {
            return Err(TapError::SetIff {
                name: name.to_string(),
                source: io::Error::last_os_error(),
            });
        }
        let tap = Self {
            file,
            name: name.to_string(),
        };
        let hdr_len = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int from the pointer.
        let r = unsafe { libc::ioctl(tap.file.as_raw_fd(), TUNSETVNETHDRSZ, &hdr_len) };
        tap.check(r, "virtio-net header size")?;
        // No offloads until a driver asks for them: the kernel hands us
        // complete, checksummed frames.
        tap.set_offload(0).map_err(|source| TapError::Configure {
            name: name.to_string(),
            what: "offloads",
            source,
        })?;
        if let Err(e) = tap.set_up() {
            log::warn!(
                "tap {name}: cannot bring the link up ({e}); do it with ip link set {name} up"
            );
        }
        Ok(tap)
    }

    fn check(&self, r: libc::c_int, what: &'static str) -> Result<(), TapError> {
        if r < 0 {
            Err(TapError::Configure {
                name: self.name.clone(),
                what,
                source: io::Error::last_os_error(),
            })
        } else {
            Ok(())
        }
    }

    /// Set IFF_UP on the interface.
    pub fn set_up(&self) -> io::Result<()> {
        // SAFETY: a plain socket call; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh socket we own.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut req = ifreq(&self.name, 0);
        // SAFETY: SIOCGIFFLAGS fills the flags of one struct ifreq.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        if req.flags & libc::IFF_UP as libc::c_short != 0 {
            return Ok(());
        }
        req.flags |= libc::IFF_UP as libc::c_short;
        // SAFETY: SIOCSIFFLAGS reads one struct ifreq.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Tell the kernel which offloads the reader handles ([`offload`]
    /// flags): with none, every frame read is complete and checksummed.
    pub fn set_offload(&self, flags: u32) -> io::Result<()> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        let r = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                TUNSETOFFLOAD,
                libc::c_ulong::from(flags),
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Read one frame (header included); `WouldBlock` when none is queued.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe { libc::read(self.file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Write one frame (header included).
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
        let n = unsafe { libc::write(self.file.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_refused_before_any_syscall() {
        for n in ["", "a-very-long-tap-name", "a/b"] {
            assert!(matches!(Tap::open(n), Err(TapError::BadName(_))), "{n:?}");
        }
    }

    #[test]
    fn opens_a_new_tap_when_allowed() {
        let name = format!("vstap{}", std::process::id() % 100_000);
        match Tap::open(&name) {
            Ok(t) => {
                assert_eq!(t.name(), name);
                assert!(std::path::Path::new(&format!("/sys/class/net/{name}")).exists());
                drop(t);
                // Not persistent: it goes away with its last file descriptor.
                assert!(!std::path::Path::new(&format!("/sys/class/net/{name}")).exists());
            }
            Err(e) => eprintln!("SKIP: cannot open a tap here: {e}"),
        }
    }
}
