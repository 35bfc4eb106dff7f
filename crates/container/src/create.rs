//! `create` and `run`: the runtime side of building a container.

use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use vessel_sandbox::cgroups::Cgroup;
use vessel_sandbox::namespaces::{NsFile, clone_flag};

use crate::hooks;
use crate::init::InitCtx;
use crate::state::{ContainerDir, OCI_VERSION, Saved, StateDoc, Status, proc_stat, rfc3339_nanos};
use crate::{Error, Result};

/// Options of `create` (runc's flags).
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// A connected socket to send the pty master on instead of
    /// `console_socket` (the foreground `run` keeps the other end).
    pub console_fd: Option<std::sync::Arc<OwnedFd>>,
    pub preserve_fds: u32,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    /// `--systemd-cgroup`: cgroupsPath is `slice:prefix:name`.
    pub systemd_cgroup: bool,
    /// The caller waits for the container itself (`run` in the foreground),
    /// so no monitor process is needed.
    pub foreground: bool,
}

/// What `create` made.
#[derive(Debug)]
pub struct Created {
    pub pid: i32,
    /// With `foreground`: the pidfd of the init, our child.
    pub pidfd: Option<OwnedFd>,
}

/// The cgroup path of a container (runc's rules, cgroupfs driver).
pub fn cgroup_path(spec: &Spec, id: &str, systemd: bool) -> PathBuf {
    let p = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .unwrap_or_default();
    let s = p.to_string_lossy();
    if s.is_empty() {
        return PathBuf::from(format!("/vessel/{id}"));
    }
    if systemd || (!s.starts_with('/') && s.split(':').count() == 3) {
        // slice:prefix:name -> /slice/prefix-name.scope
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() == 3 {
            let slice = if parts[0].is_empty() {
                "system.slice"
            } else {
                parts[0]
            };
            let unit = if parts[1].is_empty() {
                parts[2].to_string()
            } else {
                format!("{}-{}.scope", parts[1], parts[2])
            };
            return Path::new("/").join(slice).join(unit);
        }
    }
    Path::new("/").join(p)
}

/// Builds the runtime-spec state document.
pub fn state_doc(saved: &Saved, status: Status, exit: Option<i32>) -> StateDoc {
    StateDoc {
        oci_version: OCI_VERSION.into(),
        id: saved.id.clone(),
        status,
        pid: if status == Status::Stopped {
            0
        } else {
            saved.pid
        },
        bundle: saved.bundle.clone(),
        rootfs: saved.rootfs.clone(),
        created: rfc3339_nanos(saved.created, saved.created_nanos),
        annotations: saved.annotations.clone(),
        exit_status: exit,
    }
}

/// Raw clone(2) without CLONE_VM: a fork that can also create namespaces.
fn clone_process(flags: CloneFlags) -> std::io::Result<i32> {
    // SAFETY: clone without CLONE_VM and a NULL stack behaves like fork: the
    // child gets a copy-on-write copy of this single-threaded process.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags.bits() | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(pid as i32)
}

/// Cleans up a half-made container when `create` fails.
struct Undo<'a> {
    dir: Option<ContainerDir>,
    cgroup: Option<&'a Cgroup>,
    pid: i32,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.pid > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            if let Some(fd) = hooks::pidfd_open(self.pid) {
                hooks::wait_pidfd(&fd, 5000);
            }
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(self.pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        }
        if let Some(cg) = self.cgroup {
            crate::ops::destroy_cgroup(cg);
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.remove();
        }
    }
}

/// `create`: builds the container and leaves its init waiting for `start`.
pub fn create(opts: &CreateOpts) -> Result<Created> {
    let bundle = fs::canonicalize(&opts.bundle).map_err(|source| Error::Io {
        what: "cannot open bundle",
        path: opts.bundle.clone(),
        source,
    })?;
    let mut spec = crate::spec::load(&bundle)?;
    let lsm = crate::lsm::plan(&mut spec, &mut |w| crate::warn(&w));
    let rootfs =
        fs::canonicalize(crate::spec::rootfs(&bundle, &spec)).map_err(|source| Error::Io {
            what: "cannot open root.path",
            path: crate::spec::rootfs(&bundle, &spec),
            source,
        })?;
    let cg_path = cgroup_path(&spec, &opts.id, opts.systemd_cgroup);
    let cgroup = Cgroup::new(&cg_path)?;
    let dir = ContainerDir::create(&opts.root, &opts.id)?;
    let mut undo = Undo {
        dir: None,
        cgroup: None,
        pid: 0,
    };
    let dir_path = dir.dir.clone();
    undo.dir = Some(dir);
    let dir = undo.dir.as_ref().ok_or(Error::Internal("state dir"))?;

    nix::unistd::mkfifo(&dir.fifo(), nix::sys::stat::Mode::from_bits_truncate(0o622)).map_err(
        |e| Error::Io {
            what: "cannot create the exec fifo",
            path: dir.fifo(),
            source: e.into(),
        },
    )?;
    let _ = fs::set_permissions(
        dir.fifo(),
        std::os::unix::fs::PermissionsExt::from_mode(0o622),
    );
    let created = crate::state::now();
    let mut saved = Saved {
        id: opts.id.clone(),
        pid: 0,
        start_time: 0,
        bundle: bundle.clone(),
        rootfs: rootfs.clone(),
        created: created.0,
        created_nanos: created.1,
        cgroup_path: cg_path,
        annotations: spec.annotations().clone().unwrap_or_default(),
        status: Status::Creating,
        config: serde_json::to_value(&spec)
            .map_err(|e| Error::Internal(Box::leak(e.to_string().into_boxed_str())))?,
    };
    dir.save(&saved)?;

    // Namespaces: new ones by clone flags, joined ones by setns.
    let linux = spec.linux().as_ref().ok_or(Error::Internal("linux"))?;
    let mut joins = Vec::new();
    let mut new_flags = CloneFlags::empty();
    let mut pid_join = None;
    for ns in linux.namespaces().iter().flatten() {
        match ns.path() {
            Some(p) if ns.typ() == LinuxNamespaceType::Pid => {
                pid_join = Some(NsFile::open(ns.typ(), p)?)
            }
            Some(p) => joins.push(NsFile::open(ns.typ(), p)?),
            None => new_flags |= clone_flag(ns.typ()),
        }
    }
    joins.sort_by_key(|n| n.kind != LinuxNamespaceType::User);
    let new_cgroupns = new_flags.contains(CloneFlags::CLONE_NEWCGROUP);
    new_flags.remove(CloneFlags::CLONE_NEWCGROUP);
    let new_userns = new_flags.contains(CloneFlags::CLONE_NEWUSER);
    let user_joined = joins.iter().any(|n| n.kind == LinuxNamespaceType::User);
    let (clone_flags, unshare_after) = if user_joined {
        let pid = new_flags & CloneFlags::CLONE_NEWPID;
        (pid, new_flags - pid)
    } else {
        (new_flags, CloneFlags::empty())
    };

    let terminal = spec.process().as_ref().and_then(|p| p.terminal());
    let console = match (&opts.console_socket, terminal) {
        (_, Some(true)) if opts.console_fd.is_some() => {
            let fd = opts
                .console_fd
                .as_ref()
                .ok_or(Error::Internal("console fd"))?;
            Some(fd.try_clone().map_err(|source| Error::Io {
                what: "cannot duplicate the console socket",
                path: PathBuf::from("socketpair"),
                source,
            })?)
        }
        (Some(p), Some(true)) => Some(crate::console::connect(p).map_err(|source| Error::Io {
            what: "cannot connect to the console socket",
            path: p.clone(),
            source,
        })?),
        (None, Some(true)) if !opts.foreground => {
            return Err(Error::Usage(
                "cannot allocate tty if vessel-runtime will detach without setting console socket: process.terminal is true; pass --console-socket (or set terminal to false)".into(),
            ));
        }
        _ => None,
    };
    let mut extra_fds = opts.preserve_fds;
    let mut extra_env = Vec::new();
    if let Some(n) = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        extra_fds = extra_fds.max(n);
        extra_env.push(format!("LISTEN_FDS={n}"));
        extra_env.push("LISTEN_PID=1".into());
    }
    let state_dir_fd = {
        let f = fs::File::open(&dir_path).map_err(|source| Error::Io {
            what: "cannot open",
            path: dir_path.clone(),
            source,
        })?;
        OwnedFd::from(f)
    };
    let hooks = spec.hooks().clone().unwrap_or_default();
    let has_runtime_hooks = hooks.prestart().as_ref().is_some_and(|h| !h.is_empty())
        || hooks
            .create_runtime()
            .as_ref()
            .is_some_and(|h| !h.is_empty());
    // The init waits for a go from this process only when it needs
    // something from it: id maps written (new user namespace) or the state
    // JSON for its hooks. Otherwise it builds the container meanwhile.
    let wait_go = new_userns
        || hooks
            .create_container()
            .as_ref()
            .is_some_and(|h| !h.is_empty())
        || hooks
            .start_container()
            .as_ref()
            .is_some_and(|h| !h.is_empty());
    let ctx = InitCtx {
        spec: spec.clone(),
        bundle: bundle.clone(),
        rootfs,
        cgroup: cgroup.clone(),
        state_dir: state_dir_fd,
        no_pivot: opts.no_pivot,
        joins,
        unshare_after,
        new_cgroupns,
        new_userns,
        console,
        extra_fds,
        extra_env,
        has_runtime_hooks,
        lock_fd: dir.lock_fd(),
        join_cgroup: !new_userns,
        lsm,
        wait_go,
    };
    let lock_fd = dir.lock_fd();
    let (parent_sock, child_sock) = crate::sync::pair()?;

    // The cgroup is made and limited before the init exists; the init then
    // joins it itself (see `Cgroup::join_self`), which is much cheaper than
    // this process moving it in. In a new user namespace the init has no
    // rights on the host's cgroup files, so this process moves it.
    undo.cgroup = Some(&cgroup);
    cgroup.create_for(linux.resources().as_ref())?;
    if let Some(res) = linux.resources() {
        cgroup.apply(&with_default_devices(
            res,
            linux.devices().as_deref().unwrap_or_default(),
        ))?;
    }

    let pid = if !opts.foreground {
        spawn_with_monitor(
            ctx,
            child_sock,
            clone_flags,
            pid_join.as_ref(),
            &dir_path,
            lock_fd,
        )?
    } else {
        spawn(ctx, child_sock, clone_flags, pid_join.as_ref())?
    };
    undo.pid = pid;
    let pidfd = if opts.foreground {
        hooks::pidfd_open(pid)
    } else {
        None
    };

    if new_userns {
        cgroup.add_pid(pid)?;
        vessel_sandbox::namespaces::write_id_maps(
            pid,
            linux.uid_mappings().as_deref().unwrap_or_default(),
            linux.gid_mappings().as_deref().unwrap_or_default(),
        )?;
    }
    saved.pid = pid;
    saved.start_time = proc_stat(pid).map(|s| s.1).unwrap_or(0);
    let doc = state_doc(&saved, Status::Creating, None);
    let state_json = serde_json::to_vec(&doc).unwrap_or_default();
    if wait_go {
        let mut go = b"go".to_vec();
        go.extend_from_slice(&state_json);
        parent_sock.send(&go)?;
    }
    loop {
        let msg = parent_sock.recv().map_err(|e| match e {
            crate::sync::SyncError::Closed => {
                Error::Init("the container init exited during setup".into())
            }
            e => e.into(),
        })?;
        if msg == b"hooks" {
            hooks::run_all("prestart", hooks.prestart().as_ref(), &state_json)?;
            hooks::run_all(
                "createRuntime",
                hooks.create_runtime().as_ref(),
                &state_json,
            )?;
            parent_sock.send(b"go")?;
        } else if msg == b"ready" {
            break;
        } else if let Some(e) = msg.strip_prefix(b"ERR ".as_slice()) {
            return Err(Error::Init(String::from_utf8_lossy(e).into_owned()));
        } else {
            return Err(Error::Internal("unexpected message from init"));
        }
    }
    saved.status = Status::Created;
    dir.save(&saved)?;
    if let Some(p) = &opts.pid_file {
        write_pid_file(p, pid)?;
    }
    // Success: keep everything.
    undo.pid = 0;
    undo.cgroup = None;
    undo.dir = None;
    Ok(Created { pid, pidfd })
}

/// The device cgroup rules of a container: the config's rules, then (as
/// runc) allow the default devices, ptys and the config's linux.devices.
pub fn with_default_devices(
    res: &oci_spec::runtime::LinuxResources,
    devices: &[oci_spec::runtime::LinuxDevice],
) -> oci_spec::runtime::LinuxResources {
    use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType};
    let Some(rules) = res.devices() else {
        return res.clone();
    };
    let mut rules = rules.clone();
    let allow = |t: LinuxDeviceType,
                 major: Option<i64>,
                 minor: Option<i64>,
                 access: &str|
     -> Option<LinuxDeviceCgroup> {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(t)
            .access(access);
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().ok()
    };
    let mut extra: Vec<Option<LinuxDeviceCgroup>> = vec![
        allow(LinuxDeviceType::C, None, None, "m"),
        allow(LinuxDeviceType::B, None, None, "m"),
        allow(LinuxDeviceType::C, Some(136), None, "rwm"),
        allow(LinuxDeviceType::C, Some(5), Some(2), "rwm"),
        allow(LinuxDeviceType::C, Some(5), Some(1), "rwm"),
    ];
    for (_, major, minor) in crate::rootfs::default_devices() {
        extra.push(allow(
            LinuxDeviceType::C,
            Some(major as i64),
            Some(minor as i64),
            "rwm",
        ));
    }
    for d in devices {
        extra.push(Some(LinuxDeviceCgroup::from(d)));
    }
    rules.extend(extra.into_iter().flatten());
    let mut out = res.clone();
    out.set_devices(Some(rules));
    out
}

/// Writes the pid file atomically (runc's format: the pid, no newline).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("vessel-tmp");
    fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(pid.to_string().as_bytes()))
        .and_then(|_| fs::rename(&tmp, path))
        .map_err(|source| Error::Io {
            what: "cannot write pid file",
            path: path.to_owned(),
            source,
        })
}

fn clone_into(
    ctx: InitCtx,
    child_sock: crate::sync::Sync,
    flags: CloneFlags,
    pid_join: Option<&NsFile>,
) -> Result<i32> {
    let restore = match pid_join {
        Some(ns) => {
            let own = NsFile::open(LinuxNamespaceType::Pid, Path::new("/proc/self/ns/pid"))?;
            ns.join()?;
            Some(own)
        }
        None => None,
    };
    let res = clone_process(flags);
    if let Ok(0) = res {
        crate::init::main(ctx, child_sock);
    }
    if let Some(own) = restore {
        own.join()?;
    }
    res.map_err(|source| Error::Clone { flags, source })
}

fn spawn(
    ctx: InitCtx,
    child_sock: crate::sync::Sync,
    flags: CloneFlags,
    pid_join: Option<&NsFile>,
) -> Result<i32> {
    clone_into(ctx, child_sock, flags, pid_join)
}

/// Forks a small monitor that clones the init, waits for it, and records
/// its exit status in the state directory. Returns the init's pid.
///
/// When our caller is a subreaper (containerd's shim, conmon) it must be
/// the one to reap the init, as with runc. The monitor finds out without
/// delaying `create`: it waits for this process to exit and looks at its
/// own new parent. If that is our caller, the caller is a subreaper and
/// the monitor exits without reaping, so the init (even a zombie one) is
/// handed to the caller; otherwise it stays and records the status.
fn spawn_with_monitor(
    ctx: InitCtx,
    child_sock: crate::sync::Sync,
    flags: CloneFlags,
    pid_join: Option<&NsFile>,
    dir: &Path,
    lock_fd: std::os::fd::RawFd,
) -> Result<i32> {
    let creator_pid = nix::unistd::getpid().as_raw();
    let caller = nix::unistd::getppid().as_raw();
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Io {
        what: "cannot create pipe",
        path: PathBuf::from("pipe"),
        source: e.into(),
    })?;
    // SAFETY: single-threaded process; the monitor only clones, waits and
    // writes a file before _exit.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(r);
            let creator = hooks::pidfd_open(creator_pid);
            let _ = nix::unistd::setsid();
            let pid = clone_into(ctx, child_sock, flags, pid_join).unwrap_or(-1);
            let _ = nix::unistd::write(&w, &pid.to_ne_bytes());
            drop(w);
            // SAFETY: the monitor must not keep the state lock alive.
            unsafe { libc::close(lock_fd) };
            let _ = lock_fd;
            if pid <= 0 {
                // SAFETY: end the monitor without destructors.
                unsafe { libc::_exit(1) }
            }
            // Let go of the caller's stdio so that it sees EOF.
            if let Ok(null) = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                for fd in 0..3 {
                    // SAFETY: dup2 onto our own standard fds.
                    unsafe { libc::dup2(null.as_raw_fd(), fd) };
                }
            }
            // Keep only the creator's pidfd, as fd 3: the monitor must not
            // hold the sync socket or the caller's pipes open.
            let creator = creator.map(|fd| {
                let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
                if raw != 3 {
                    // SAFETY: dup2 of our own pidfd onto fd 3, then close it.
                    unsafe {
                        libc::dup2(raw, 3);
                        libc::close(raw);
                    }
                }
                // SAFETY: fd 3 now holds the pidfd and nothing else owns it.
                unsafe { OwnedFd::from_raw_fd(3) }
            });
            let first_closed: u32 = if creator.is_some() { 4 } else { 3 };
            // SAFETY: close_range closes this process's own fds from there
            // up; the monitor needs none of them.
            unsafe { libc::syscall(libc::SYS_close_range, first_closed, u32::MAX, 0u32) };
            if caller > 1
                && let Some(fd) = &creator
            {
                hooks::wait_pidfd(fd, -1);
                if nix::unistd::getppid().as_raw() == caller {
                    // SAFETY: end the monitor without destructors; the
                    // caller, a subreaper, inherits the init.
                    unsafe { libc::_exit(0) }
                }
            }
            drop(creator);
            let status = loop {
                match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
                    Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => break c,
                    Ok(nix::sys::wait::WaitStatus::Signaled(_, s, _)) => break 128 + s as i32,
                    Ok(_) => continue,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break 255,
                }
            };
            record_exit(dir, status);
            // SAFETY: end the monitor without destructors.
            unsafe { libc::_exit(0) }
        }
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            drop(w);
            let mut buf = [0u8; 4];
            let n = nix::unistd::read(r.as_raw_fd(), &mut buf).unwrap_or(0);
            let pid = if n == 4 { i32::from_ne_bytes(buf) } else { -1 };
            if pid <= 0 {
                return Err(Error::Init(
                    "the monitor could not start the container init".into(),
                ));
            }
            Ok(pid)
        }
        Err(e) => Err(Error::Io {
            what: "cannot fork the monitor",
            path: PathBuf::from("fork"),
            source: e.into(),
        }),
    }
}

/// Writes the exit status file if the container still exists.
pub fn record_exit(dir: &Path, status: i32) {
    if dir.join("state.json").exists() {
        let tmp = dir.join(".exit.tmp");
        if fs::write(&tmp, status.to_string()).is_ok() {
            let _ = fs::rename(&tmp, dir.join("exit"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with_cgroups_path(p: &str) -> Spec {
        let mut s = Spec::default();
        let mut l = s.linux().clone().unwrap_or_default();
        l.set_cgroups_path(Some(PathBuf::from(p)));
        s.set_linux(Some(l));
        s
    }

    #[test]
    fn cgroup_paths_follow_runc() {
        assert_eq!(
            cgroup_path(&Spec::default(), "c1", false),
            PathBuf::from("/vessel/c1")
        );
        assert_eq!(
            cgroup_path(&spec_with_cgroups_path("/default/c1"), "c1", false),
            PathBuf::from("/default/c1")
        );
        assert_eq!(
            cgroup_path(&spec_with_cgroups_path("rel/c1"), "c1", false),
            PathBuf::from("/rel/c1")
        );
        assert_eq!(
            cgroup_path(
                &spec_with_cgroups_path("machine.slice:libpod:abc"),
                "abc",
                true
            ),
            PathBuf::from("/machine.slice/libpod-abc.scope")
        );
    }
}
