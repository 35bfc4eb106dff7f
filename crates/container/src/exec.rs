//! `exec`: a new process inside a running container's namespaces and
//! cgroup, with its own process settings (a process.json or a command line).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxCapabilities, LinuxNamespaceType, Process};
use vessel_sandbox::namespaces::{NsFile, proc_name};

use crate::ops::Container;
use crate::state::Status;
use crate::{Error, Result};

/// Options of `exec` (runc's flags).
#[derive(Debug, Clone, Default)]
pub struct ExecOpts {
    pub root: PathBuf,
    pub id: String,
    pub process: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub tty: bool,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<String>,
    pub preserve_fds: u32,
    pub no_new_privs: bool,
    pub caps: Vec<String>,
    pub args: Vec<String>,
}

/// Reads a process.json; errors name the file and the field.
pub fn load_process(path: &Path) -> Result<Process> {
    let text = std::fs::read(path).map_err(|source| Error::Io {
        what: "cannot read process file",
        path: path.to_owned(),
        source,
    })?;
    let de = &mut serde_json::Deserializer::from_slice(&text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        Error::Spec(crate::spec::SpecError::Field {
            file: path.to_owned(),
            field: e.path().to_string(),
            reason: e.into_inner().to_string(),
        })
    })
}

fn build_process(opts: &ExecOpts, base: Option<&Process>) -> Result<Process> {
    if let Some(p) = &opts.process {
        return load_process(p);
    }
    if opts.args.is_empty() {
        return Err(Error::Usage(
            "exec: give a command or --process FILE".into(),
        ));
    }
    let mut p = base.cloned().unwrap_or_default();
    p.set_args(Some(opts.args.clone()));
    p.set_terminal(Some(opts.tty));
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(opts.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(c) = &opts.cwd {
        p.set_cwd(c.clone());
    }
    if let Some(u) = &opts.user {
        let (uid, gid) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u.as_str(), None),
        };
        let mut user = p.user().clone();
        user.set_uid(
            uid.parse()
                .map_err(|_| Error::Usage(format!("--user {u:?}: want uid[:gid]")))?,
        );
        if let Some(g) = gid {
            user.set_gid(
                g.parse()
                    .map_err(|_| Error::Usage(format!("--user {u:?}: want uid[:gid]")))?,
            );
        }
        p.set_user(user);
    }
    if opts.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !opts.caps.is_empty() {
        let mut caps: LinuxCapabilities = p.capabilities().clone().unwrap_or_default();
        for name in &opts.caps {
            let stripped = name.strip_prefix("CAP_").unwrap_or(name);
            let cap: oci_spec::runtime::Capability = stripped
                .parse()
                .map_err(|_| Error::Usage(format!("--cap {name:?}: unknown capability")))?;
            for set in [
                caps.bounding().clone(),
                caps.effective().clone(),
                caps.permitted().clone(),
            ] {
                let _ = set;
            }
            let add = |s: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = s.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

/// `exec`: returns the process's exit code, or 0 with `detach`.
pub fn exec(opts: &ExecOpts) -> Result<i32> {
    let c = Container::open(&opts.root, &opts.id)?;
    let status = c.status();
    if !matches!(status, Status::Running | Status::Created) {
        return Err(Error::State(format!(
            "cannot exec in container {:?}: it is {status}",
            opts.id
        )));
    }
    let spec = c.spec().ok_or(Error::Internal("saved config"))?;
    let process = build_process(opts, spec.process().as_ref())?;
    let pid = c.saved.pid;
    let mut joins = Vec::new();
    let mut pid_ns = None;
    let mut has_user = false;
    for ns in spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
    {
        let kind = ns.typ();
        let path = PathBuf::from(format!("/proc/{pid}/ns/{}", proc_name(kind)));
        let f = NsFile::open(kind, &path)?;
        match kind {
            LinuxNamespaceType::Pid => pid_ns = Some(f),
            LinuxNamespaceType::User => {
                has_user = true;
                joins.insert(0, f);
            }
            _ => joins.push(f),
        }
    }
    let root_dir = OwnedFd::from(std::fs::File::open(format!("/proc/{pid}/root")).map_err(
        |source| Error::Io {
            what: "cannot open the container root",
            path: PathBuf::from(format!("/proc/{pid}/root")),
            source,
        },
    )?);
    let console = match (&opts.console_socket, process.terminal().unwrap_or(false)) {
        (Some(p), true) => Some(crate::console::connect(p).map_err(|source| Error::Io {
            what: "cannot connect to the console socket",
            path: p.clone(),
            source,
        })?),
        _ => None,
    };
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    let (parent_sock, child_sock) = crate::sync::pair()?;
    if let Some(ns) = &pid_ns {
        ns.join()?;
    }
    // SAFETY: single-threaded process; the child only sets itself up and
    // execs or _exits.
    let child = match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(parent_sock);
            let res = child_setup(
                &joins,
                &root_dir,
                console.as_ref(),
                &process,
                seccomp.as_ref(),
                opts.preserve_fds,
                has_user,
                &child_sock,
            );
            let msg = match res {
                Ok(plan) => {
                    let _ = child_sock.send(b"ready");
                    drop(child_sock);
                    crate::init::reset_signals();
                    crate::process::exec(&plan).to_string()
                }
                Err(e) => {
                    let _ = child_sock.send(format!("ERR {e}").as_bytes());
                    String::new()
                }
            };
            if !msg.is_empty() {
                eprintln!("vessel-runtime exec: {msg}");
            }
            // SAFETY: end the child without the parent's destructors.
            unsafe { libc::_exit(127) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => child,
        Err(e) => {
            return Err(Error::Sys {
                what: "fork the exec process".into(),
                source: e,
            });
        }
    };
    drop(child_sock);
    let kill_child = |e: Error| {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(child, None);
        e
    };
    c.cgroup
        .add_pid(child.as_raw())
        .map_err(|e| kill_child(e.into()))?;
    parent_sock.send(b"go").map_err(|e| kill_child(e.into()))?;
    match parent_sock.recv() {
        Ok(m) if m == b"ready" => {}
        Ok(m) => {
            let text = String::from_utf8_lossy(m.strip_prefix(b"ERR ".as_slice()).unwrap_or(&m))
                .into_owned();
            return Err(kill_child(Error::Init(text)));
        }
        Err(e) => return Err(kill_child(e.into())),
    }
    if let Some(p) = &opts.pid_file {
        crate::create::write_pid_file(p, child.as_raw())?;
    }
    drop(c);
    if opts.detach {
        return Ok(0);
    }
    loop {
        match nix::sys::wait::waitpid(child, None) {
            Ok(ws) => {
                if let Some(code) = crate::exit_code(ws) {
                    return Ok(code);
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(Error::Sys {
                    what: "wait for the exec process".into(),
                    source: e,
                });
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn child_setup(
    joins: &[NsFile],
    root_dir: &OwnedFd,
    console: Option<&OwnedFd>,
    process: &Process,
    seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
    preserve_fds: u32,
    has_user: bool,
    sock: &crate::sync::Sync,
) -> std::result::Result<crate::process::Plan, crate::init::InitError> {
    sock.recv()?;
    for ns in joins {
        ns.join()?;
    }
    if has_user {
        let _ = nix::unistd::setresgid(0.into(), 0.into(), 0.into());
        let _ = nix::unistd::setresuid(0.into(), 0.into(), 0.into());
    }
    nix::unistd::fchdir(root_dir.as_raw_fd())
        .and_then(|_| nix::unistd::chroot("."))
        .map_err(|e| {
            crate::init::InitError::Other(format!("cannot enter the container root: {e}"))
        })?;
    if let Some(sock_fd) = console {
        let spec = oci_spec::runtime::SpecBuilder::default()
            .process(process.clone())
            .build()
            .map_err(|e| crate::init::InitError::Other(e.to_string()))?;
        let slave = crate::console::setup_exec(sock_fd, &spec)?;
        crate::console::make_controlling(slave)?;
    }
    crate::init::close_range_cloexec(3 + preserve_fds as i32);
    for fd in 3..3 + preserve_fds as i32 {
        // SAFETY: F_SETFD on an inherited fd number; a closed one just fails.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
    let plan = crate::process::plan(process, seccomp, &[], true)?;
    crate::process::apply(&plan, true)?;
    Ok(plan)
}
