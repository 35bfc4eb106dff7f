//! `vessel run --container`: an OCI container in the foreground, through
//! the `vessel-container` library (`vessel_container::run_container`).
//!
//! The exit status is the container process's (128+signal when it was
//! killed, so 137 after an OOM kill); 1 for errors before it starts.
//!
//! With `--control-socket PATH` the process is the container's monitor, as
//! the daemon runs it (the same socket as a VM's, crates/control): the
//! container's terminal (or, without one, its stdin, stdout and stderr)
//! goes to the console hub (`--console-log`, readers, one writer); status,
//! pause and resume (the cgroup freezer) and shutdown (SIGTERM) are
//! served; `--exit-file` says how it ended: `process_exited`,
//! `process_killed`, `oom` (137 and the memory cgroup counted an OOM
//! kill), `shutdown` or `error`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, bail};
use vessel_container::{ContainerRun, Supervision};
use vessel_control::{ConsoleHub, ControlServer};

use super::Args;
use super::control::{ContainerControl, hub, serve};

/// Default directory for the state of containers that `vessel run` starts.
pub const DEFAULT_ROOT: &str = "/run/vessel/containers";

/// How a container run ended, for the exit file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    code: i32,
    reason: &'static str,
    message: Option<String>,
}

/// The reason for exit `code`: OOM when the cgroup counted an OOM kill and
/// the process died of SIGKILL, `shutdown` after a supervisor's request.
fn outcome(code: i32, oom_kills: u64, shutdown: bool) -> Outcome {
    let (reason, message) = if code == 137 && oom_kills > 0 {
        (
            "oom",
            Some(format!(
                "out of memory: the container's memory cgroup OOM-killed {oom_kills} process(es), \
                 its process with SIGKILL (exit 137); raise its memory limit"
            )),
        )
    } else if shutdown {
        (
            "shutdown",
            Some(format!(
                "stopped at the supervisor's request (SIGTERM); exit code {code}"
            )),
        )
    } else if (129..=128 + 64).contains(&code) {
        (
            "process_killed",
            Some(format!(
                "the container's process was killed by signal {}",
                code - 128
            )),
        )
    } else {
        ("process_exited", None)
    };
    Outcome {
        code,
        reason,
        message,
    }
}

/// Runs the container that `args` describe and returns its exit status.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !args.container {
        bail!("a command after `--` runs in a container: add --container and --rootfs DIR");
    }
    // Flags of machines mean nothing to a container: say so, not ignore.
    let machine_only = [
        ("an image name", args.image.is_some()),
        ("--kernel", args.kernel.is_some()),
        ("--initrd", args.initrd.is_some()),
        ("--firmware", args.firmware.is_some()),
        ("--append", args.append.is_some()),
        ("--disk", !args.disks.is_empty()),
        ("--net", !args.nets.is_empty()),
        ("--rng", args.rng),
    ];
    if let Some((flag, _)) = machine_only.iter().find(|(_, set)| *set) {
        bail!(
            "{flag} is for machines, not containers: drop it, or drop --container to boot a machine"
        );
    }
    let cfg = ContainerRun {
        root: args
            .container_root
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT)),
        id: args.name.clone(),
        bundle: args.bundle.clone(),
        rootfs: args.rootfs.clone(),
        args: args.command.clone(),
        memory: args.memory,
        hostname: args.hostname.clone(),
        terminal: None,
    };
    let result = match &args.control_socket {
        None => vessel_container::run_container(&cfg)
            .map(|code| outcome(code, 0, false))
            .map_err(anyhow::Error::from),
        Some(socket) => supervised(cfg, socket, args.console_log.as_deref()),
    };
    if let Some(path) = &args.exit_file {
        let record = match &result {
            Ok(o) => vessel_control::ExitRecord {
                code: o.code,
                reason: o.reason.to_string(),
                message: o.message.clone(),
                pid: std::process::id(),
                ended_at: vessel_control::unix_now(),
            },
            Err(e) => vessel_control::ExitRecord {
                code: 1,
                reason: "error".to_string(),
                message: Some(format!("{e:#}")),
                pid: std::process::id(),
                ended_at: vessel_control::unix_now(),
            },
        };
        if let Err(e) = vessel_control::write_exit_record(path, &record) {
            eprintln!("vessel: {e}");
        }
    }
    let o = result?;
    Ok(ExitCode::from(o.code.clamp(0, 255) as u8))
}

/// The container under a control socket (see the module's comment).
fn supervised(mut cfg: ContainerRun, socket: &Path, log: Option<&Path>) -> anyhow::Result<Outcome> {
    let Some(id) = cfg.id.clone() else {
        bail!("--control-socket with --container needs --name ID (the container's id)");
    };
    // A rootfs container under a supervisor gets a terminal, for `vessel console`.
    if cfg.rootfs.is_some() {
        cfg.terminal.get_or_insert(true);
    }
    // Threads started from here on inherit this mask, so the signals the
    // foreground run passes on to the container reach its signalfd.
    block_forwarded_signals();
    let hub = hub(log)?;
    let stdio = Stdio::install().context("cannot set up the container's stdio pipes")?;
    let stdin = Arc::new(Mutex::new(File::from(stdio.in_write.try_clone()?)));
    hub.set_input(move |bytes| {
        let mut w = stdin.lock().unwrap_or_else(|p| p.into_inner());
        let _ = w.write_all(bytes);
    });
    let control = Arc::new(ContainerControl::new(cfg.root.clone(), id));
    let monitor = Monitor {
        control: Arc::clone(&control),
        hub: Arc::clone(&hub),
        socket: socket.to_path_buf(),
        server: Mutex::new(None),
        readers: Mutex::new(Vec::new()),
        out_read: Mutex::new(Some(stdio.out_read.try_clone()?)),
        oom_kills: AtomicU64::new(0),
    };
    let result = vessel_container::run_container_with(&cfg, Some(&monitor));
    // Our stdio back: the pipes' last writers are then the container's
    // processes, all gone, so the readers see their end.
    drop(stdio);
    // Not started when the container never ran: its output (errors) still
    // goes to the console log.
    monitor.read_stdio();
    let readers = std::mem::take(&mut *monitor.readers.lock().unwrap_or_else(|p| p.into_inner()));
    for reader in readers {
        join_within(reader, Duration::from_secs(5));
    }
    drop(monitor.server.lock().ok().and_then(|mut s| s.take()));
    let code = result?;
    Ok(outcome(
        code,
        monitor.oom_kills.load(Ordering::SeqCst),
        control.stopping.load(Ordering::SeqCst),
    ))
}

/// What the foreground run tells the monitor.
struct Monitor {
    control: Arc<ContainerControl>,
    hub: Arc<ConsoleHub>,
    socket: PathBuf,
    server: Mutex<Option<ControlServer>>,
    /// The threads copying the container's output to the hub.
    readers: Mutex<Vec<JoinHandle<()>>>,
    /// The read end of the container's stdout and stderr, until a thread
    /// copies it: no thread may run while the container's init is cloned
    /// from this process (it would inherit locks that thread holds).
    out_read: Mutex<Option<OwnedFd>>,
    oom_kills: AtomicU64,
}

impl Supervision for Monitor {
    fn started(&self, pid: i32, pty: Option<OwnedFd>) {
        self.control.pid.store(pid, Ordering::SeqCst);
        self.read_stdio();
        if let Some(master) = pty
            && let Err(e) = self.take_pty(master)
        {
            eprintln!("vessel: the container's terminal: {e:#}");
        }
        // The socket answers once the container runs: the supervisor waits
        // for that to know the start worked.
        match serve(&self.socket, self.control.clone(), Arc::clone(&self.hub)) {
            Ok(server) => {
                if let Ok(mut s) = self.server.lock() {
                    *s = Some(server);
                }
            }
            Err(e) => {
                eprintln!("vessel: {e:#}; killing the container");
                // SAFETY: kill(2) on our child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }

    fn ended(&self, _code: i32, oom_kills: u64) {
        self.control.pid.store(0, Ordering::SeqCst);
        self.oom_kills.store(oom_kills, Ordering::SeqCst);
    }
}

impl Monitor {
    /// Start copying the container's stdout and stderr pipe to the hub.
    fn read_stdio(&self) {
        let fd = self.out_read.lock().ok().and_then(|mut f| f.take());
        if let Some(fd) = fd {
            match copy_to_hub(fd, Arc::clone(&self.hub)) {
                Ok(t) => self.keep_reader(t),
                Err(e) => eprintln!("vessel: {e:#}"),
            }
        }
    }

    fn keep_reader(&self, thread: JoinHandle<()>) {
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(thread);
    }

    /// The pty goes to the hub, the writer's input to the pty.
    fn take_pty(&self, master: OwnedFd) -> anyhow::Result<()> {
        // SAFETY: TIOCSWINSZ reads the winsize we own; a pty with no size
        // confuses full-screen programs.
        unsafe {
            let ws = libc::winsize {
                ws_row: 24,
                ws_col: 80,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
        let input = Arc::new(Mutex::new(File::from(master.try_clone()?)));
        self.hub.set_input(move |bytes| {
            let mut w = input.lock().unwrap_or_else(|p| p.into_inner());
            let _ = w.write_all(bytes);
        });
        let reader = copy_to_hub(master, Arc::clone(&self.hub))?;
        self.keep_reader(reader);
        Ok(())
    }
}

/// Copies `fd` to the hub until its end (EOF, or EIO for a pty whose
/// slaves are all closed).
fn copy_to_hub(fd: OwnedFd, hub: Arc<ConsoleHub>) -> anyhow::Result<JoinHandle<()>> {
    let mut file = File::from(fd);
    std::thread::Builder::new()
        .name("console-out".into())
        .spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => hub.output(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        })
        .context("cannot start the console output thread")
}

/// Waits for `thread` at most `limit` (a process that escaped the container
/// may hold the pipe; its output is then lost, not the exit).
fn join_within(thread: JoinHandle<()>, limit: Duration) {
    let step = Duration::from_millis(10);
    let mut waited = Duration::ZERO;
    while !thread.is_finished() && waited < limit {
        std::thread::sleep(step);
        waited += step;
    }
    if thread.is_finished() {
        let _ = thread.join();
    }
}

/// Block the signals the foreground run passes on (see
/// vessel_container::foreground), in this thread and the threads it starts.
fn block_forwarded_signals() {
    // SAFETY: sigset_t is plain data filled by sigemptyset/sigaddset;
    // pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGWINCH,
        ] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// The container's stdin, stdout and stderr as pipes on our fds 0, 1 and 2
/// (the container's init inherits them), until dropped: then our own are
/// back. Our own messages meanwhile go to the console too.
struct Stdio {
    saved: [OwnedFd; 3],
    in_write: OwnedFd,
    out_read: OwnedFd,
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills the two fds we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn dup2(from: &OwnedFd, to: i32) -> std::io::Result<()> {
    // SAFETY: dup2 onto a standard fd; the old one is replaced atomically.
    if unsafe { libc::dup2(from.as_raw_fd(), to) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Stdio {
    fn install() -> std::io::Result<Stdio> {
        let save = |fd: i32| -> std::io::Result<OwnedFd> {
            // SAFETY: F_DUPFD_CLOEXEC makes a new fd that only we own.
            let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: n was just created.
            Ok(unsafe { OwnedFd::from_raw_fd(n) })
        };
        let saved = [save(0)?, save(1)?, save(2)?];
        let (in_read, in_write) = pipe()?;
        let (out_read, out_write) = pipe()?;
        dup2(&in_read, 0)?;
        dup2(&out_write, 1)?;
        dup2(&out_write, 2)?;
        Ok(Stdio {
            saved,
            in_write,
            out_read,
        })
    }
}

impl Drop for Stdio {
    fn drop(&mut self) {
        let _ = std::io::stdout().flush();
        for (fd, saved) in self.saved.iter().enumerate() {
            let _ = dup2(saved, fd as i32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes() {
        assert_eq!(outcome(0, 0, false).reason, "process_exited");
        assert_eq!(outcome(3, 0, false).reason, "process_exited");
        let oom = outcome(137, 1, false);
        assert_eq!((oom.code, oom.reason), (137, "oom"));
        assert!(oom.message.unwrap().contains("memory"));
        assert_eq!(outcome(137, 0, false).reason, "process_killed");
        assert_eq!(outcome(143, 0, true).reason, "shutdown");
        let killed = outcome(130, 0, false);
        assert!(killed.message.unwrap().contains("signal 2"));
        assert_eq!(outcome(137, 2, true).reason, "oom");
    }
}
