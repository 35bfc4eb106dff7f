//! Network back ends for virtio-net: anything that moves whole Ethernet
//! frames, each with a 12-byte virtio-net header in front.

pub mod tap;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;

pub use tap::{Tap, TapError};

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
