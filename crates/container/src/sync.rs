//! Messages between the runtime and the container's init over a
//! SOCK_SEQPACKET socket pair (one message per packet).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Errors on the sync socket.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cannot create the sync socket pair: {0}")]
    Create(std::io::Error),
    #[error("sync socket: {0}")]
    Io(std::io::Error),
    #[error("the container init exited during setup without reporting an error")]
    Closed,
}

/// One end of the sync channel.
#[derive(Debug)]
pub struct Sync(pub OwnedFd);

/// Creates the pair (close-on-exec, so the container process never sees it).
pub fn pair() -> Result<(Sync, Sync), SyncError> {
    let mut fds = [0i32; 2];
    // SAFETY: socketpair writes two fds into the array we pass.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(SyncError::Create(std::io::Error::last_os_error()));
    }
    // SAFETY: both fds were just created by the kernel and are owned here.
    Ok(unsafe {
        (
            Sync(OwnedFd::from_raw_fd(fds[0])),
            Sync(OwnedFd::from_raw_fd(fds[1])),
        )
    })
}

impl Sync {
    /// Sends one message.
    pub fn send(&self, msg: &[u8]) -> Result<(), SyncError> {
        loop {
            // SAFETY: send reads `msg.len()` bytes from a live slice.
            let n = unsafe {
                libc::send(
                    self.0.as_raw_fd(),
                    msg.as_ptr().cast(),
                    msg.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n >= 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(SyncError::Io(e));
            }
        }
    }

    /// Receives one message; `Closed` when the other end is gone.
    pub fn recv(&self) -> Result<Vec<u8>, SyncError> {
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: recv writes at most `buf.len()` bytes into our buffer.
            let n =
                unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 {
                buf.truncate(n as usize);
                return Ok(buf);
            }
            if n == 0 {
                return Err(SyncError::Closed);
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(SyncError::Io(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_their_boundaries() {
        let (a, b) = pair().expect("pair");
        a.send(b"go").expect("send");
        a.send(b"ERR boom").expect("send");
        assert_eq!(b.recv().expect("recv"), b"go");
        assert_eq!(b.recv().expect("recv"), b"ERR boom");
        drop(a);
        assert!(matches!(b.recv(), Err(SyncError::Closed)));
    }
}
