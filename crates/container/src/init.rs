//! The container's init, from clone to execve. It runs in the cloned child
//! (no exec of the runtime binary: the child is already the runtime), so
//! everything it needs was computed by the parent before the clone.
//!
//! Protocol with the parent on the sync socket: join the cgroup the parent
//! made, wait for `go` only when needed (id maps of a new user namespace
//! are written; the message carries the state JSON for createContainer and
//! startContainer hooks), build the container, optionally ask the parent to run createRuntime
//! hooks (`hooks` / `go`), report `ready` or `ERR <message>`, then block on
//! the exec fifo until `start`, and exec the process.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::Spec;
use vessel_sandbox::cgroups::Cgroup;
use vessel_sandbox::namespaces::NsFile;

use crate::sync::Sync;

/// What the child needs, prepared by the parent.
pub struct InitCtx {
    pub spec: Spec,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub cgroup: Cgroup,
    /// The state directory (holds exec.fifo), opened before the clone.
    pub state_dir: OwnedFd,
    pub no_pivot: bool,
    /// Namespaces to join by path (user first), opened by the parent.
    pub joins: Vec<NsFile>,
    /// Namespaces to create after joining (when a user namespace is joined).
    pub unshare_after: CloneFlags,
    pub new_cgroupns: bool,
    pub new_userns: bool,
    pub console: Option<OwnedFd>,
    /// Extra fds (from fd 3) passed to the process.
    pub extra_fds: u32,
    pub extra_env: Vec<String>,
    pub has_runtime_hooks: bool,
    /// The parent's state-dir lock fd: closed first thing in the child.
    pub lock_fd: RawFd,
    /// The init moves itself into `cgroup` (false: the parent does it).
    pub join_cgroup: bool,
    /// Wait for the parent's `go` (with the state JSON) before building.
    pub wait_go: bool,
    /// AppArmor/SELinux labels to apply at exec.
    pub lsm: crate::lsm::Plan,
}

/// Errors inside init (sent to the parent as text).
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Ns(#[from] vessel_sandbox::namespaces::NamespaceError),
    #[error(transparent)]
    Rootfs(#[from] crate::rootfs::RootfsError),
    #[error(transparent)]
    Process(#[from] crate::process::ProcessError),
    #[error(transparent)]
    Knob(#[from] vessel_sandbox::process::ProcessError),
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
    #[error(transparent)]
    Cgroup(#[from] vessel_sandbox::cgroups::CgroupError),
    #[error(transparent)]
    Lsm(#[from] crate::lsm::LsmError),
    #[error("{0}")]
    Other(String),
}

fn sys(what: &str) -> impl FnOnce(nix::Error) -> InitError + '_ {
    move |e| InitError::Other(format!("cannot {what}: {e}"))
}

/// The child's entry point. Never returns.
pub fn main(ctx: InitCtx, sock: Sync) -> ! {
    // SAFETY: closes our copy of the lock fd; the parent keeps its own.
    unsafe { libc::close(ctx.lock_fd) };
    match setup(&ctx, &sock) {
        Ok((plan, state_json)) => {
            let _ = sock.send(b"ready");
            drop(sock);
            let err = wait_and_exec(&ctx, &plan, &state_json);
            let _ = writeln!(std::io::stderr(), "vessel-runtime init: {err}");
            // SAFETY: _exit ends this process without running the parent's
            // atexit handlers or destructors (we are a cloned copy).
            unsafe { libc::_exit(127) }
        }
        Err(e) => {
            let _ = sock.send(format!("ERR {e}").as_bytes());
            // SAFETY: as above.
            unsafe { libc::_exit(1) }
        }
    }
}

fn setup(ctx: &InitCtx, sock: &Sync) -> Result<(crate::process::Plan, Vec<u8>), InitError> {
    let state_json = if ctx.wait_go {
        let go = sock.recv()?;
        go.strip_prefix(b"go".as_slice()).unwrap_or(&[]).to_vec()
    } else {
        Vec::new()
    };
    if ctx.join_cgroup {
        ctx.cgroup.join_self()?;
    }
    for ns in &ctx.joins {
        ns.join()?;
    }
    vessel_sandbox::namespaces::unshare(ctx.unshare_after)?;
    if ctx.new_userns {
        // Become root of the new user namespace (the parent mapped it).
        let _ = nix::unistd::setresgid(0.into(), 0.into(), 0.into());
        let _ = nix::unistd::setresuid(0.into(), 0.into(), 0.into());
    }
    if ctx.new_cgroupns {
        vessel_sandbox::namespaces::unshare(CloneFlags::CLONE_NEWCGROUP)?;
    }
    let spec = &ctx.spec;
    if let Some(h) = spec.hostname() {
        nix::unistd::sethostname(h).map_err(sys("set the hostname (needs a uts namespace)"))?;
    }
    if let Some(d) = spec.domainname() {
        let c = CString::new(d.as_bytes())
            .map_err(|_| InitError::Other("domainname holds a NUL byte".into()))?;
        // SAFETY: setdomainname reads `len` bytes from the string we own.
        if unsafe { libc::setdomainname(c.as_ptr(), d.len()) } != 0 {
            return Err(InitError::Other(format!(
                "cannot set the domainname: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    let in_userns = ctx.new_userns
        || ctx
            .joins
            .iter()
            .any(|n| n.kind == oci_spec::runtime::LinuxNamespaceType::User);
    crate::rootfs::prepare(spec, &ctx.bundle, &ctx.rootfs, &ctx.cgroup, in_userns, None)?;
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let mut pty_slave = None;
    if terminal && let Some(sock_fd) = &ctx.console {
        pty_slave = Some(crate::console::setup(&ctx.rootfs, sock_fd, spec)?);
    }
    if ctx.has_runtime_hooks {
        sock.send(b"hooks")?;
        sock.recv()?;
    }
    let hooks = spec.hooks().as_ref();
    crate::hooks::run_all(
        "createContainer",
        hooks.and_then(|h| h.create_container().as_ref()),
        &state_json,
    )?;
    // The attr files are opened while the host's /proc is reachable.
    let mut lsm = crate::lsm::prepare(&ctx.lsm)?;
    crate::rootfs::enter(&ctx.rootfs, ctx.no_pivot)?;
    if let Some(linux) = spec.linux() {
        for (k, v) in linux.sysctl().iter().flatten() {
            vessel_sandbox::process::set_sysctl(k, v)?;
        }
    }
    crate::rootfs::finish(spec)?;
    if let Some(slave) = pty_slave {
        crate::console::make_controlling(slave)?;
    }
    // Only fds 0-2 and the preserved ones reach the process.
    close_range_cloexec(3 + ctx.extra_fds as RawFd);
    for fd in 3..3 + ctx.extra_fds as RawFd {
        clear_cloexec(fd);
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| InitError::Other("process is missing".into()))?;
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let plan = crate::process::plan(process, seccomp, &ctx.extra_env, true)?;
    let set_groups = !in_userns || ctx.new_userns;
    // As runc: labels before the process drops its privileges; the
    // kernel switches to them at the exec.
    crate::lsm::apply(&mut lsm)?;
    crate::process::apply(&plan, set_groups)?;
    Ok((plan, state_json))
}

/// Marks every fd from `from` up close-on-exec.
pub fn close_range_cloexec(from: RawFd) {
    // SAFETY: close_range only changes flags of this process's fds.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            from as u32,
            u32::MAX,
            4u32, /* CLOSE_RANGE_CLOEXEC */
        )
    };
    if rc != 0 {
        for fd in from..1024 {
            // SAFETY: F_SETFD on an fd number; a closed one just fails.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

fn clear_cloexec(fd: RawFd) {
    // SAFETY: F_SETFD on an inherited fd number; a closed one just fails.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
}

fn wait_and_exec(ctx: &InitCtx, plan: &crate::process::Plan, state_json: &[u8]) -> InitError {
    // Blocks until `start` opens the fifo for reading.
    let name = CString::new("exec.fifo").unwrap_or_default();
    // SAFETY: openat with a dir fd we own and a NUL-terminated name.
    let fd = unsafe {
        libc::openat(
            ctx.state_dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return InitError::Other(format!(
            "cannot open the exec fifo: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the fd was just returned by openat and is ours.
    let mut fifo = unsafe { File::from_raw_fd(fd) };
    if let Err(e) = fifo.write_all(b"0") {
        return InitError::Other(format!("cannot write the exec fifo: {e}"));
    }
    drop(fifo);
    let hooks = ctx.spec.hooks().as_ref();
    if let Err(e) = crate::hooks::run_all(
        "startContainer",
        hooks.and_then(|h| h.start_container().as_ref()),
        state_json,
    ) {
        return e.into();
    }
    reset_signals();
    crate::process::exec(plan).into()
}

/// Gives the process the signal state a fresh process has: nothing
/// blocked, SIGPIPE back to its default (the runtime, a Rust program,
/// ignores it, and an ignored signal stays ignored across exec).
pub fn reset_signals() {
    // SAFETY: sigemptyset fills the set we own; sigprocmask and signal
    // change only this process's signal state.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Host path of a file in the rootfs, for messages.
pub fn show(rootfs: &Path, p: &Path) -> String {
    String::from_utf8_lossy(
        rootfs
            .join(p.strip_prefix("/").unwrap_or(p))
            .as_os_str()
            .as_bytes(),
    )
    .into_owned()
}
