//! Running a container in the foreground, as `runc run` does: create,
//! start, forward signals, wait, delete. With `process.terminal` and no
//! console socket the runtime allocates the pty itself (the init sends the
//! master back over a socket pair) and copies this process's stdin and
//! stdout to it, with the terminal in raw mode and its size followed.
//!
//! [`run_container`] is the entry point of `vessel run --container`: a
//! bundle, or a rootfs and a command for which a default config is made.

use std::io::{IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use oci_spec::runtime::{LinuxMemoryBuilder, LinuxResources};

use crate::create::{CreateOpts, create, record_exit};
use crate::ops::{delete, start};
use crate::{Error, Result};

/// Signals the foreground runtime passes on to the container's process.
const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

fn sys(what: &str) -> impl FnOnce(nix::Error) -> Error + '_ {
    move |source| Error::Sys {
        what: what.to_string(),
        source,
    }
}

/// A supervisor that takes the container's terminal instead of this
/// process's stdin and stdout (`vessel run --container --control-socket`:
/// the console goes to the control socket's clients and log).
pub trait Supervision {
    /// The container's process runs: its host pid, and the master of its
    /// pty when it has a terminal (the supervisor copies it both ways).
    fn started(&self, pid: i32, pty: Option<OwnedFd>);
    /// The process ended with `code`; `oom_kills` is how many processes
    /// the memory cgroup's OOM killer ended.
    fn ended(&self, code: i32, oom_kills: u64) {
        let _ = (code, oom_kills);
    }
}

/// `run`: create, start, wait for the process in the foreground, record
/// its exit status, and (unless `keep`) delete the container. Returns the
/// exit code (128+signal for a killed process, so 137 after an OOM kill).
pub fn run(opts: &CreateOpts, keep: bool) -> Result<i32> {
    run_with(opts, keep, None)
}

/// [`run`], with the terminal given to `supervision` when there is one.
pub fn run_with(
    opts: &CreateOpts,
    keep: bool,
    supervision: Option<&dyn Supervision>,
) -> Result<i32> {
    let bundle = std::fs::canonicalize(&opts.bundle).map_err(|source| Error::Io {
        what: "cannot open bundle",
        path: opts.bundle.clone(),
        source,
    })?;
    let spec = crate::spec::load(&bundle)?;
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let mut o = opts.clone();
    o.foreground = true;
    let mut ours = None;
    if terminal && o.console_socket.is_none() && o.console_fd.is_none() {
        let (a, b) = UnixStream::pair().map_err(|source| Error::Io {
            what: "cannot create the console socket pair",
            path: PathBuf::from("socketpair"),
            source,
        })?;
        o.console_fd = Some(Arc::new(OwnedFd::from(b)));
        ours = Some(a);
    }
    let created = create(&o)?;
    // Our copy of the init's end: closed, so a dead init reads as EOF.
    drop(o.console_fd.take());
    let mut master = match ours {
        Some(sock) => match recv_master(&sock) {
            Ok(m) => {
                // Sized before the process starts and asks.
                copy_winsize(&m);
                Some(m)
            }
            Err(e) => {
                let _ = delete(&opts.root, &opts.id, true);
                return Err(e);
            }
        },
        None => None,
    };
    // Signals are caught from here on (the init, already cloned, keeps the
    // default mask) and passed on to the container's process.
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.add(Signal::SIGWINCH);
    let mut old = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut old))
        .map_err(sys("block signals"))?;
    let result = (|| {
        let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(sys("create a signalfd"))?;
        start(&opts.root, &opts.id)?;
        let pid = created.pid;
        let pidfd = created
            .pidfd
            .as_ref()
            .ok_or(Error::Internal("no pidfd for the container process"))?;
        if let Some(s) = supervision {
            s.started(pid, master.take());
        }
        match &master {
            Some(m) => proxy_pty(pid, pidfd, &sfd, m),
            None => wait_forwarding(pid, pidfd, &sfd),
        }
    })();
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    let code = match result.and_then(|()| reap(created.pid)) {
        Ok(c) => c,
        Err(e) => {
            let _ = delete(&opts.root, &opts.id, true);
            return Err(e);
        }
    };
    record_exit(&opts.root.join(&opts.id), code);
    if let Some(s) = supervision {
        let oom_kills = crate::ops::Container::open(&opts.root, &opts.id)
            .map(|c| c.cgroup.oom_kills())
            .unwrap_or(0);
        s.ended(code, oom_kills);
    }
    if !keep {
        delete(&opts.root, &opts.id, true)?;
    }
    Ok(code)
}

/// Waits for the container's process (our child) and returns its exit code.
fn reap(pid: i32) -> Result<i32> {
    let pid = nix::unistd::Pid::from_raw(pid);
    loop {
        match nix::sys::wait::waitpid(pid, None) {
            Ok(ws) => {
                if let Some(c) = crate::exit_code(ws) {
                    return Ok(c);
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(sys("wait for the container process")(e)),
        }
    }
}

/// Receives the pty master the init sends (runc's console socket message).
fn recv_master(sock: &UnixStream) -> Result<OwnedFd> {
    let mut name = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(sys("receive the pty master from the container init"))?;
    for c in msg.cmsgs().map_err(sys("read the console message"))? {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(&fd) = fds.first()
        {
            // SAFETY: the kernel just installed this fd in our table.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Err(Error::Init(
        "the container init sent no pty master on the console socket".into(),
    ))
}

/// Passes caught signals on to `pid` until the process exits.
fn wait_forwarding(pid: i32, pidfd: &OwnedFd, sfd: &SignalFd) -> Result<()> {
    loop {
        let mut fds = [
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(sys("wait for the container process")(e)),
            Ok(_) => {}
        }
        if ready(&fds[0]) {
            return Ok(());
        }
        if ready(&fds[1]) {
            forward(pid, sfd, None);
        }
    }
}

fn ready(p: &PollFd) -> bool {
    p.revents().is_some_and(|r| !r.is_empty())
}

/// Reads pending signals and sends each to `pid`; SIGWINCH resizes `pty`.
fn forward(pid: i32, sfd: &SignalFd, pty: Option<&OwnedFd>) {
    while let Ok(Some(info)) = sfd.read_signal() {
        let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
            continue;
        };
        if sig == Signal::SIGWINCH {
            if let Some(m) = pty {
                copy_winsize(m);
            }
            continue;
        }
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// Gives the pty the size of our terminal (when stdin is one).
fn copy_winsize(master: &OwnedFd) {
    // SAFETY: winsize is plain data; TIOCGWINSZ fills it, TIOCSWINSZ reads it.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Puts the terminal on stdin in raw mode until dropped.
struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    fn enter() -> Self {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let Ok(orig) = tcgetattr(stdin.as_fd()) else {
            return RawMode(None);
        };
        let mut raw = orig.clone();
        cfmakeraw(&mut raw);
        if tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).is_err() {
            return RawMode(None);
        }
        RawMode(Some(orig))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

fn write_all_fd(fd: BorrowedFd<'_>, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(0) => return false,
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => {
                let mut p = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = poll(&mut p, PollTimeout::NONE);
            }
            Err(_) => return false,
        }
    }
    true
}

/// Copies stdin to the pty and the pty to stdout until the process exits,
/// passing signals on and following the terminal's size.
fn proxy_pty(pid: i32, pidfd: &OwnedFd, sfd: &SignalFd, master: &OwnedFd) -> Result<()> {
    let _raw = RawMode::enter();
    copy_winsize(master);
    // SAFETY: fcntl on the master fd we own: make reads non-blocking.
    unsafe {
        let fl = libc::fcntl(master.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(master.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut stdin_open = true;
    let mut buf = vec![0u8; 16 * 1024];
    let drain = |buf: &mut [u8]| {
        // The process is gone: copy what the pty still holds.
        while let Ok(n) = nix::unistd::read(master.as_raw_fd(), buf) {
            if n == 0 || !write_all_fd(stdout.as_fd(), &buf[..n]) {
                break;
            }
        }
        let _ = stdout.lock().flush();
    };
    loop {
        let mut fds = vec![
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(master.as_fd(), PollFlags::POLLIN),
        ];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(sys("wait for the container process")(e)),
            Ok(_) => {}
        }
        if ready(&fds[1]) {
            forward(pid, sfd, Some(master));
        }
        if ready(&fds[2]) {
            match nix::unistd::read(master.as_raw_fd(), &mut buf) {
                Ok(n) if n > 0 => {
                    if !write_all_fd(stdout.as_fd(), &buf[..n]) {
                        // Nobody reads our output any more: stop copying it.
                    }
                }
                Ok(_) | Err(nix::errno::Errno::EIO) => {
                    // Every slave fd is closed: wait for the exit alone.
                    let mut p = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
                    let _ = poll(&mut p, PollTimeout::NONE);
                    drain(&mut buf);
                    return Ok(());
                }
                Err(_) => {}
            }
        }
        if stdin_open && fds.len() > 3 && ready(&fds[3]) {
            match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
                Ok(n) if n > 0 => {
                    if !write_all_fd(master.as_fd(), &buf[..n]) {
                        stdin_open = false;
                    }
                }
                Ok(_) => {
                    // End of our input: the terminal's end-of-file character,
                    // as a user typing Ctrl-D would send it.
                    let _ = write_all_fd(master.as_fd(), &[4]);
                    stdin_open = false;
                }
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                Err(_) => stdin_open = false,
            }
        }
        if ready(&fds[0]) {
            drain(&mut buf);
            return Ok(());
        }
    }
}

/// What `vessel run --container` runs.
#[derive(Debug, Clone, Default)]
pub struct ContainerRun {
    /// Runtime state directory (one subdirectory per container).
    pub root: PathBuf,
    /// Container id; a unique one is made when `None`.
    pub id: Option<String>,
    /// An OCI bundle (config.json and its rootfs)...
    pub bundle: Option<PathBuf>,
    /// ...or a root file system, for which a default config is made (as
    /// `vessel-runtime spec` writes it) running `args`.
    pub rootfs: Option<PathBuf>,
    /// The command and its arguments (with `rootfs`; default `sh`).
    pub args: Vec<String>,
    /// Memory limit in bytes (with `rootfs`).
    pub memory: Option<u64>,
    /// Host name (with `rootfs`; default the container id).
    pub hostname: Option<String>,
    /// Whether the process gets a terminal (with `rootfs`; `None`: when
    /// stdin is a terminal).
    pub terminal: Option<bool>,
}

/// Writes the default config for `rootfs` into `dir` (a new bundle), with
/// `c`'s command, terminal, host name (default `id`) and memory limit.
pub fn write_default_bundle(c: &ContainerRun, rootfs: &Path, id: &str, dir: &Path) -> Result<()> {
    let rootfs = std::fs::canonicalize(rootfs).map_err(|source| Error::Io {
        what: "cannot open the rootfs",
        path: rootfs.to_owned(),
        source,
    })?;
    if !rootfs.is_dir() {
        return Err(Error::Usage(format!(
            "--rootfs {}: not a directory; give the directory that holds the container's /bin, /etc, ...",
            rootfs.display()
        )));
    }
    let mut spec = crate::spec::default_spec(false);
    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path(rootfs);
    spec.set_root(Some(root));
    let mut process = spec.process().clone().unwrap_or_default();
    if !c.args.is_empty() {
        process.set_args(Some(c.args.clone()));
    }
    // SAFETY: isatty only queries fd 0.
    let tty = c
        .terminal
        .unwrap_or_else(|| unsafe { libc::isatty(0) } == 1);
    process.set_terminal(Some(tty));
    spec.set_process(Some(process));
    spec.set_hostname(Some(c.hostname.clone().unwrap_or_else(|| id.to_string())));
    if let Some(limit) = c.memory {
        let limit = i64::try_from(limit)
            .map_err(|_| Error::Usage(format!("--memory {limit}: too large")))?;
        let mut linux = spec.linux().clone().unwrap_or_default();
        let mut res: LinuxResources = linux.resources().clone().unwrap_or_default();
        let mem = LinuxMemoryBuilder::default()
            .limit(limit)
            .build()
            .map_err(|e| Error::Usage(format!("--memory {limit}: {e}")))?;
        res.set_memory(Some(mem));
        linux.set_resources(Some(res));
        spec.set_linux(Some(linux));
    }
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        what: "cannot create the bundle directory",
        path: dir.to_owned(),
        source,
    })?;
    let text = serde_json::to_vec_pretty(&spec)
        .map_err(|e| Error::Usage(format!("cannot write the default config: {e}")))?;
    std::fs::write(dir.join("config.json"), text).map_err(|source| Error::Io {
        what: "cannot write",
        path: dir.join("config.json"),
        source,
    })
}

/// Runs a container in the foreground and returns its exit code (the
/// process's, or 128+signal when it was killed).
pub fn run_container(c: &ContainerRun) -> Result<i32> {
    run_container_with(c, None)
}

/// [`run_container`] under a [`Supervision`] that takes its terminal.
pub fn run_container_with(c: &ContainerRun, supervision: Option<&dyn Supervision>) -> Result<i32> {
    let id = match &c.id {
        Some(id) => id.clone(),
        None => format!(
            "vessel-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ),
    };
    crate::state::check_id(&id)?;
    let mut opts = CreateOpts {
        root: c.root.clone(),
        id: id.clone(),
        ..Default::default()
    };
    match (&c.bundle, &c.rootfs) {
        (Some(_), Some(_)) => Err(Error::Usage(
            "give either --bundle or --rootfs, not both".into(),
        )),
        (None, None) => Err(Error::Usage(
            "a container needs --bundle DIR (with config.json) or --rootfs DIR".into(),
        )),
        (Some(bundle), None) => {
            if !c.args.is_empty() || c.memory.is_some() || c.hostname.is_some() {
                return Err(Error::Usage(
                    "with --bundle the command, memory limit and host name come from config.json; use --rootfs to give them on the command line".into(),
                ));
            }
            opts.bundle = bundle.clone();
            run_with(&opts, false, supervision)
        }
        (None, Some(rootfs)) => {
            // The generated bundle lives beside the state, under a name
            // that is not a container id, and goes with the container.
            let dir = c.root.join(format!(".bundle-{id}"));
            let res = write_default_bundle(c, rootfs, &id, &dir).and_then(|()| {
                opts.bundle = dir.clone();
                run_with(&opts, false, supervision)
            });
            let _ = std::fs::remove_dir_all(&dir);
            res
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bundle_has_the_rootfs_command_limit_and_hostname() {
        let tmp = std::env::temp_dir().join(format!("vessel-fg-{}", std::process::id()));
        let rootfs = tmp.join("rootfs");
        std::fs::create_dir_all(&rootfs).expect("mkdir");
        let c = ContainerRun {
            args: vec!["echo".into(), "hi".into()],
            memory: Some(64 << 20),
            hostname: Some("box".into()),
            terminal: Some(false),
            ..Default::default()
        };
        let dir = tmp.join("bundle");
        write_default_bundle(&c, &rootfs, "id1", &dir).expect("bundle");
        let spec = crate::spec::load(&dir).expect("valid config");
        let p = spec.process().clone().expect("process");
        assert_eq!(p.args().clone().expect("args"), vec!["echo", "hi"]);
        assert_eq!(p.terminal(), Some(false));
        assert_eq!(spec.hostname().as_deref(), Some("box"));
        let limit = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit());
        assert_eq!(limit, Some(64 << 20));
        assert_eq!(
            spec.root().as_ref().map(|r| r.path().clone()),
            Some(std::fs::canonicalize(&rootfs).expect("canon"))
        );
        std::fs::remove_dir_all(&tmp).expect("cleanup");
    }

    #[test]
    fn bundle_and_rootfs_together_are_refused() {
        let c = ContainerRun {
            bundle: Some("/b".into()),
            rootfs: Some("/r".into()),
            id: Some("x".into()),
            ..Default::default()
        };
        let e = run_container(&c).expect_err("both");
        assert!(e.to_string().contains("not both"), "{e}");
    }

    #[test]
    fn a_rootfs_that_is_not_a_directory_is_refused() {
        let f = std::env::temp_dir().join(format!("vessel-fg-file-{}", std::process::id()));
        std::fs::write(&f, "x").expect("file");
        let c = ContainerRun::default();
        let e = write_default_bundle(&c, &f, "id", &f.with_extension("b")).expect_err("file");
        assert!(e.to_string().contains("not a directory"), "{e}");
        std::fs::remove_file(&f).expect("cleanup");
    }
}
