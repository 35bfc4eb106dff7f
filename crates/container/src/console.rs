//! The console socket protocol (runc's): with `terminal: true` the init
//! opens a pty in the container's devpts, binds the slave to /dev/console,
//! and sends the master over the `--console-socket` Unix socket with
//! SCM_RIGHTS (payload: the slave's name).

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use oci_spec::runtime::Spec;

use crate::init::InitError;

/// Connects to the console socket (done by the runtime before the clone).
pub fn connect(path: &Path) -> Result<OwnedFd, std::io::Error> {
    UnixStream::connect(path).map(OwnedFd::from)
}

fn err(what: &str) -> impl FnOnce(std::io::Error) -> InitError + '_ {
    move |e| InitError::Other(format!("console: cannot {what}: {e}"))
}

fn last(what: &str) -> InitError {
    err(what)(std::io::Error::last_os_error())
}

/// Opens the pty, binds its slave to /dev/console, sends the master, and
/// returns the slave.
pub fn setup(rootfs: &Path, socket: &OwnedFd, spec: &Spec) -> Result<OwnedFd, InitError> {
    open_and_send(rootfs, socket, spec, true)
}

/// For `exec`: a new pty in the container's devpts (we are chrooted in it).
pub fn setup_exec(socket: &OwnedFd, spec: &Spec) -> Result<OwnedFd, InitError> {
    open_and_send(Path::new("/"), socket, spec, false)
}

fn open_and_send(
    rootfs: &Path,
    socket: &OwnedFd,
    spec: &Spec,
    bind_console: bool,
) -> Result<OwnedFd, InitError> {
    let container_ptmx = rootfs.join("dev/pts/ptmx");
    let ptmx = if container_ptmx.exists() {
        container_ptmx
    } else {
        PathBuf::from("/dev/ptmx")
    };
    let c = std::ffi::CString::new(ptmx.as_os_str().as_encoded_bytes())
        .map_err(|_| InitError::Other("console: bad ptmx path".into()))?;
    // SAFETY: open with a NUL-terminated path we own.
    let m = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if m < 0 {
        return Err(last("open ptmx"));
    }
    // SAFETY: the fd was just opened and is ours.
    let master = unsafe { OwnedFd::from_raw_fd(m) };
    // SAFETY: unlockpt/ioctl on the master fd we own.
    if unsafe { libc::unlockpt(master.as_raw_fd()) } != 0 {
        return Err(last("unlock the pty"));
    }
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes the pty number into the u32 we pass.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) } != 0 {
        return Err(last("get the pty number"));
    }
    // SAFETY: TIOCGPTPEER opens the slave side and returns a new fd.
    let s = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY,
        )
    };
    if s < 0 {
        return Err(last("open the pty slave"));
    }
    // SAFETY: the fd was just returned by the kernel and is ours.
    let slave = unsafe { OwnedFd::from_raw_fd(s) };
    if let Some(size) = spec.process().as_ref().and_then(|p| p.console_size()) {
        let ws = libc::winsize {
            ws_row: size.height() as u16,
            ws_col: size.width() as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads the winsize struct we pass.
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    if bind_console {
        let console = crate::rootfs::secure_join(rootfs, Path::new("/dev/console"))?;
        if !console.exists() {
            std::fs::File::create(&console).map_err(err("create /dev/console"))?;
        }
        let slave_path = PathBuf::from(format!("/proc/self/fd/{}", slave.as_raw_fd()));
        nix::mount::mount(
            Some(&slave_path),
            &console,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            InitError::Other(format!("console: cannot bind the pty to /dev/console: {e}"))
        })?;
    }
    let name = format!("/dev/pts/{n}");
    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(name.as_bytes())],
        &cmsg,
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| {
        InitError::Other(format!(
            "console: cannot send the pty master over the console socket: {e}"
        ))
    })?;
    Ok(slave)
}

/// Makes the pty slave the controlling terminal and stdio of this process.
pub fn make_controlling(slave: OwnedFd) -> Result<(), InitError> {
    let _ = nix::unistd::setsid();
    // SAFETY: TIOCSCTTY on the slave fd we own; arg 0 = do not steal.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(last("make the pty the controlling terminal"));
    }
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard fds of this process.
        if unsafe { libc::dup2(slave.as_raw_fd(), fd) } < 0 {
            return Err(last("attach stdio to the pty"));
        }
    }
    Ok(())
}
