//! The container's file system view, built inside its mount namespace:
//! propagation, the rootfs bind mount, config mounts, devices, pivot_root
//! (or a move + chroot with `--no-pivot`), masked and read-only paths.

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, symlink};
use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

/// Errors while building the container's file system.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("cannot mount {what} on {target}: {source}")]
    Mount {
        what: String,
        target: PathBuf,
        source: nix::Error,
    },
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot {what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error("{path}: too many levels of symbolic links inside the rootfs")]
    Loop { path: PathBuf },
}

/// One parsed mount option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOpt {
    Set(MsFlags),
    Clear(MsFlags),
    Propagation(MsFlags),
    Data(String),
    Ignore,
}

/// Parses one OCI mount option as mount(8) would. `None` for options vessel
/// does not support (idmapped mounts).
pub fn parse_option(o: &str) -> Option<MountOpt> {
    use MountOpt::*;
    Some(match o {
        "ro" => Set(MsFlags::MS_RDONLY),
        "rw" => Clear(MsFlags::MS_RDONLY),
        "nosuid" => Set(MsFlags::MS_NOSUID),
        "suid" => Clear(MsFlags::MS_NOSUID),
        "nodev" => Set(MsFlags::MS_NODEV),
        "dev" => Clear(MsFlags::MS_NODEV),
        "noexec" => Set(MsFlags::MS_NOEXEC),
        "exec" => Clear(MsFlags::MS_NOEXEC),
        "sync" => Set(MsFlags::MS_SYNCHRONOUS),
        "async" => Clear(MsFlags::MS_SYNCHRONOUS),
        "dirsync" => Set(MsFlags::MS_DIRSYNC),
        "remount" => Set(MsFlags::MS_REMOUNT),
        "mand" => Set(MsFlags::MS_MANDLOCK),
        "nomand" => Clear(MsFlags::MS_MANDLOCK),
        "noatime" => Set(MsFlags::MS_NOATIME),
        "atime" => Clear(MsFlags::MS_NOATIME),
        "nodiratime" => Set(MsFlags::MS_NODIRATIME),
        "diratime" => Clear(MsFlags::MS_NODIRATIME),
        "relatime" => Set(MsFlags::MS_RELATIME),
        "norelatime" => Clear(MsFlags::MS_RELATIME),
        "strictatime" => Set(MsFlags::MS_STRICTATIME),
        "nostrictatime" => Clear(MsFlags::MS_STRICTATIME),
        "bind" => Set(MsFlags::MS_BIND),
        "rbind" => Set(MsFlags::MS_BIND | MsFlags::MS_REC),
        "tmpcopyup" | "defaults" => Ignore,
        "idmap" | "ridmap" => return None,
        p => match propagation_flags(p) {
            Some(f) => Propagation(f),
            None => Data(p.to_string()),
        },
    })
}

/// Flags of a propagation name (`rslave`, `private`, ...).
pub fn propagation_flags(p: &str) -> Option<MsFlags> {
    let (rec, base) = match p.strip_prefix('r') {
        Some(b) if matches!(b, "shared" | "slave" | "private" | "unbindable") => {
            (MsFlags::MS_REC, b)
        }
        _ => (MsFlags::empty(), p),
    };
    let f = match base {
        "shared" => MsFlags::MS_SHARED,
        "slave" => MsFlags::MS_SLAVE,
        "private" => MsFlags::MS_PRIVATE,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        _ => return None,
    };
    Some(f | rec)
}

/// Flags, propagation and data of a mount's options.
pub fn mount_flags(opts: &[String]) -> (MsFlags, Vec<MsFlags>, String) {
    let mut flags = MsFlags::empty();
    let mut props = Vec::new();
    let mut data = Vec::new();
    for o in opts {
        match parse_option(o) {
            Some(MountOpt::Set(f)) => flags |= f,
            Some(MountOpt::Clear(f)) => flags &= !f,
            Some(MountOpt::Propagation(f)) => props.push(f),
            Some(MountOpt::Data(d)) => data.push(d),
            Some(MountOpt::Ignore) | None => {}
        }
    }
    (flags, props, data.join(","))
}

/// Resolves `unsafe_path` inside `root` as if `root` were `/`: symbolic
/// links in the container's rootfs cannot point the runtime at host files.
pub fn secure_join(root: &Path, unsafe_path: &Path) -> Result<PathBuf, RootfsError> {
    let mut out = PathBuf::new();
    let mut pending: Vec<PathBuf> = vec![unsafe_path.to_owned()];
    let mut hops = 0;
    while let Some(p) = pending.pop() {
        let mut comps: Vec<Component> = p.components().collect();
        comps.reverse();
        while let Some(c) = comps.pop() {
            match c {
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    out.pop();
                }
                Component::Normal(name) => {
                    let candidate = root.join(&out).join(name);
                    match fs::symlink_metadata(&candidate) {
                        Ok(md) if md.file_type().is_symlink() => {
                            hops += 1;
                            if hops > 255 {
                                return Err(RootfsError::Loop {
                                    path: unsafe_path.to_owned(),
                                });
                            }
                            let target =
                                fs::read_link(&candidate).map_err(|source| RootfsError::Io {
                                    what: "read link",
                                    path: candidate.clone(),
                                    source,
                                })?;
                            if target.is_absolute() {
                                out.clear();
                            }
                            // Resolve the target, then the rest of this path.
                            let rest: PathBuf = comps.iter().rev().collect();
                            pending.push(rest);
                            pending.push(target);
                            comps.clear();
                        }
                        _ => out.push(name),
                    }
                }
            }
        }
    }
    Ok(root.join(out))
}

fn mnt(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), RootfsError> {
    mount(src, target, fstype, flags, data).map_err(|source| RootfsError::Mount {
        what: match (fstype, src) {
            (Some(t), _) => t.to_string(),
            (None, Some(s)) => s.display().to_string(),
            (None, None) => format!("(flags {flags:?})"),
        },
        target: target.to_owned(),
        source,
    })
}

fn mkdir_all(p: &Path) -> Result<(), RootfsError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(p)
        .map_err(|source| RootfsError::Io {
            what: "create directory",
            path: p.to_owned(),
            source,
        })
}

fn touch(p: &Path) -> Result<(), RootfsError> {
    if let Some(parent) = p.parent() {
        mkdir_all(parent)?;
    }
    if p.exists() {
        return Ok(());
    }
    fs::File::create(p)
        .map(|_| ())
        .map_err(|source| RootfsError::Io {
            what: "create mount point",
            path: p.to_owned(),
            source,
        })
}

/// Locked flags of the mount at `p` (a remount must keep them in a user namespace).
fn locked_flags(p: &Path) -> MsFlags {
    let mut f = MsFlags::empty();
    if let Ok(st) = nix::sys::statvfs::statvfs(p) {
        use nix::sys::statvfs::FsFlags;
        let fl = st.flags();
        if fl.contains(FsFlags::ST_NOSUID) {
            f |= MsFlags::MS_NOSUID;
        }
        if fl.contains(FsFlags::ST_NODEV) {
            f |= MsFlags::MS_NODEV;
        }
        if fl.contains(FsFlags::ST_NOEXEC) {
            f |= MsFlags::MS_NOEXEC;
        }
    }
    f
}

/// Like [`secure_join`], but the last component is not followed: for
/// creating or replacing a symlink or device node itself.
fn join_no_follow(root: &Path, p: &Path) -> Result<PathBuf, RootfsError> {
    let parent = secure_join(root, p.parent().unwrap_or(Path::new("/")))?;
    Ok(match p.file_name() {
        Some(name) => parent.join(name),
        None => parent,
    })
}

/// Mounts one config mount below `rootfs` (before pivot_root).
fn mount_one(
    rootfs: &Path,
    bundle: &Path,
    m: &Mount,
    cgroup: &vessel_sandbox::cgroups::Cgroup,
) -> Result<(), RootfsError> {
    let opts = m.options().clone().unwrap_or_default();
    let (flags, props, data) = mount_flags(&opts);
    let typ = m.typ().as_deref().unwrap_or("");
    let dest = secure_join(rootfs, m.destination())?;
    let is_bind = typ == "bind" || flags.contains(MsFlags::MS_BIND);
    if is_bind {
        let src = m.source().clone().unwrap_or_default();
        let src = if src.is_absolute() {
            src
        } else {
            bundle.join(src)
        };
        if src.is_dir() {
            mkdir_all(&dest)?;
        } else {
            touch(&dest)?;
        }
        let bind = MsFlags::MS_BIND | (flags & MsFlags::MS_REC);
        mnt(Some(&src), &dest, None, bind, None)?;
        let extra = flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() {
            let f = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | extra | locked_flags(&dest);
            mnt(None, &dest, None, f, None)?;
        }
    } else if typ == "cgroup" || typ == "cgroup2" {
        mount_cgroup(&dest, flags, cgroup)?;
    } else {
        mkdir_all(&dest)?;
        let src = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
        let data = (!data.is_empty()).then_some(data.as_str());
        let fstype = if typ.is_empty() { None } else { Some(typ) };
        mnt(
            Some(&src),
            &dest,
            fstype,
            flags & !MsFlags::MS_REMOUNT,
            data,
        )?;
    }
    for p in props {
        mnt(None, &dest, None, p, None)?;
    }
    Ok(())
}

/// Gives the container its own cgroups at `dest`: on v2 the cgroup2 file
/// system, on v1 a tmpfs with each hierarchy's container directory bound
/// in (as runc does without a cgroup namespace).
fn mount_cgroup(
    dest: &Path,
    flags: MsFlags,
    cg: &vessel_sandbox::cgroups::Cgroup,
) -> Result<(), RootfsError> {
    mkdir_all(dest)?;
    let ro = flags & MsFlags::MS_RDONLY;
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if let Some(v2) = cg.v2_dir() {
        mnt(Some(v2), dest, None, MsFlags::MS_BIND, None)?;
        if !ro.is_empty() {
            mnt(
                None,
                dest,
                None,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | base | ro,
                None,
            )?;
        }
        return Ok(());
    }
    mnt(
        Some(Path::new("tmpfs")),
        dest,
        Some("tmpfs"),
        base,
        Some("mode=755"),
    )?;
    for (h, dir) in cg.v1_dirs() {
        let Some(name) = h.mount.file_name() else {
            continue;
        };
        let sub = dest.join(name);
        mkdir_all(&sub)?;
        if dir.is_dir() {
            mnt(Some(dir), &sub, None, MsFlags::MS_BIND, None)?;
            mnt(
                None,
                &sub,
                None,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | base | ro,
                None,
            )?;
        }
        // Joined hierarchies (cpu,cpuacct) are reachable under each name.
        if h.controllers.len() > 1 {
            for c in &h.controllers {
                let link = dest.join(c);
                if link != sub && !link.exists() {
                    let _ = symlink(name, &link);
                }
            }
        }
    }
    if !ro.is_empty() {
        mnt(
            None,
            dest,
            None,
            MsFlags::MS_REMOUNT | base | ro,
            Some("mode=755"),
        )?;
    }
    Ok(())
}

/// The devices every container gets (runc's list).
pub fn default_devices() -> Vec<(&'static str, u64, u64)> {
    vec![
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
}

#[allow(clippy::too_many_arguments)]
fn make_device(
    rootfs: &Path,
    path: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
    in_userns: bool,
) -> Result<(), RootfsError> {
    let dest = join_no_follow(rootfs, path)?;
    if let Some(parent) = dest.parent() {
        mkdir_all(parent)?;
    }
    if in_userns {
        // mknod is not allowed in a user namespace: bind the host's node.
        touch(&dest)?;
        return mnt(Some(path), &dest, None, MsFlags::MS_BIND, None);
    }
    let _ = fs::remove_file(&dest);
    mknod(
        &dest,
        kind,
        Mode::from_bits_truncate(mode),
        makedev(major, minor),
    )
    .map_err(|source| RootfsError::Sys {
        what: format!("create device {}", dest.display()),
        source,
    })?;
    // mknod applies the umask; set the mode the config asked for.
    let c = CString::new(dest.as_os_str().as_encoded_bytes()).map_err(|_| RootfsError::Io {
        what: "create device",
        path: dest.clone(),
        source: std::io::Error::other("path holds a NUL byte"),
    })?;
    // SAFETY: chmod reads the NUL-terminated path we own for the call.
    unsafe { libc::chmod(c.as_ptr(), mode & 0o7777) };
    if uid.is_some() || gid.is_some() {
        nix::unistd::chown(
            &dest,
            uid.map(nix::unistd::Uid::from_raw),
            gid.map(nix::unistd::Gid::from_raw),
        )
        .map_err(|source| RootfsError::Sys {
            what: format!("chown device {}", dest.display()),
            source,
        })?;
    }
    Ok(())
}

fn device_kind(t: LinuxDeviceType) -> SFlag {
    match t {
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        _ => SFlag::S_IFCHR,
    }
}

/// Creates the default devices, `linux.devices`, and the /dev symlinks.
fn create_devices(
    rootfs: &Path,
    devices: &[LinuxDevice],
    dev_is_bind: bool,
    in_userns: bool,
) -> Result<(), RootfsError> {
    if !dev_is_bind {
        for (p, major, minor) in default_devices() {
            if devices.iter().any(|d| d.path() == Path::new(p)) {
                continue;
            }
            make_device(
                rootfs,
                Path::new(p),
                SFlag::S_IFCHR,
                major,
                minor,
                0o666,
                None,
                None,
                in_userns,
            )?;
        }
        let links = [
            ("/proc/self/fd", "/dev/fd"),
            ("/proc/self/fd/0", "/dev/stdin"),
            ("/proc/self/fd/1", "/dev/stdout"),
            ("/proc/self/fd/2", "/dev/stderr"),
            ("pts/ptmx", "/dev/ptmx"),
        ];
        for (target, link) in links {
            let l = join_no_follow(rootfs, Path::new(link))?;
            let _ = fs::remove_file(&l);
            symlink(target, &l).map_err(|source| RootfsError::Io {
                what: "create symlink",
                path: l.clone(),
                source,
            })?;
        }
    }
    for d in devices {
        make_device(
            rootfs,
            d.path(),
            device_kind(d.typ()),
            d.major() as u64,
            d.minor() as u64,
            d.file_mode().unwrap_or(0o666),
            d.uid(),
            d.gid(),
            in_userns,
        )?;
    }
    Ok(())
}

/// Everything up to (not including) pivot_root: propagation, rootfs bind,
/// mounts, devices, and the console bind mount.
pub fn prepare(
    spec: &Spec,
    bundle: &Path,
    rootfs: &Path,
    cgroup: &vessel_sandbox::cgroups::Cgroup,
    in_userns: bool,
    console: Option<&Path>,
) -> Result<(), RootfsError> {
    let linux = spec.linux().as_ref();
    // Stop mount events from leaking to the host.
    let prop = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(propagation_flags)
        .filter(|f| !f.contains(MsFlags::MS_SHARED))
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    mnt(None, Path::new("/"), None, prop | MsFlags::MS_REC, None)?;
    mnt(
        Some(rootfs),
        rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    let mut dev_is_bind = false;
    for m in spec.mounts().iter().flatten() {
        if m.destination() == Path::new("/dev")
            && (m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind"))
        {
            dev_is_bind = true;
        }
        mount_one(rootfs, bundle, m, cgroup)?;
    }
    let devices = linux.and_then(|l| l.devices().clone()).unwrap_or_default();
    create_devices(rootfs, &devices, dev_is_bind, in_userns)?;
    if let Some(pty) = console {
        let dest = secure_join(rootfs, Path::new("/dev/console"))?;
        touch(&dest)?;
        mnt(Some(pty), &dest, None, MsFlags::MS_BIND, None)?;
    }
    Ok(())
}

/// Makes `rootfs` the root: pivot_root and detach the old root, or (no_pivot)
/// move the rootfs over / and chroot.
pub fn enter(rootfs: &Path, no_pivot: bool) -> Result<(), RootfsError> {
    let sys = |what: &str| {
        let what = what.to_string();
        move |source| RootfsError::Sys { what, source }
    };
    nix::unistd::chdir(rootfs).map_err(sys("chdir to the rootfs"))?;
    if no_pivot {
        mnt(Some(rootfs), Path::new("/"), None, MsFlags::MS_MOVE, None)?;
        nix::unistd::chroot(".").map_err(sys("chroot to the rootfs"))?;
    } else {
        let old = fs::File::open("/").map_err(|source| RootfsError::Io {
            what: "open",
            path: "/".into(),
            source,
        })?;
        nix::unistd::pivot_root(".", ".").map_err(sys("pivot_root to the rootfs"))?;
        nix::unistd::fchdir(std::os::fd::AsRawFd::as_raw_fd(&old))
            .map_err(sys("chdir to the old root"))?;
        // The old root must not propagate the unmount to the host.
        mnt(
            None,
            Path::new("."),
            None,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None,
        )?;
        umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach the old root"))?;
    }
    nix::unistd::chdir("/").map_err(sys("chdir to /"))?;
    Ok(())
}

/// After entering the rootfs: propagation, masked and read-only paths, and
/// the read-only root.
pub fn finish(spec: &Spec) -> Result<(), RootfsError> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    if let Some(f) = linux
        .rootfs_propagation()
        .as_deref()
        .and_then(propagation_flags)
    {
        mnt(None, Path::new("/"), None, f, None)?;
    }
    for p in linux.masked_paths().iter().flatten() {
        let p = Path::new(p);
        match fs::metadata(p) {
            Ok(md) if md.is_dir() => mnt(
                Some(Path::new("tmpfs")),
                p,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None,
            )?,
            Ok(_) => mnt(
                Some(Path::new("/dev/null")),
                p,
                None,
                MsFlags::MS_BIND,
                None,
            )?,
            Err(_) => {}
        }
    }
    for p in linux.readonly_paths().iter().flatten() {
        let p = Path::new(p);
        if !p.exists() {
            continue;
        }
        mnt(Some(p), p, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
        let f = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags(p);
        mnt(None, p, None, f, None)?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        let f = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | locked_flags(Path::new("/"));
        mnt(None, Path::new("/"), None, f, None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let opts: Vec<String> = [
            "nosuid", "rbind", "ro", "rslave", "mode=755", "size=64k", "rw",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (f, props, data) = mount_flags(&opts);
        assert!(f.contains(MsFlags::MS_NOSUID | MsFlags::MS_BIND | MsFlags::MS_REC));
        assert!(!f.contains(MsFlags::MS_RDONLY), "rw after ro clears it");
        assert_eq!(props, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert_eq!(data, "mode=755,size=64k");
        assert_eq!(parse_option("idmap"), None);
    }

    #[test]
    fn secure_join_keeps_symlinks_inside_the_root() {
        let root = std::env::temp_dir().join(format!("vessel-sj-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("a")).expect("mkdir");
        symlink("/etc", root.join("a/abs")).expect("symlink");
        symlink("../../../..", root.join("a/up")).expect("symlink");
        assert_eq!(
            secure_join(&root, Path::new("/a/abs/passwd")).expect("join"),
            root.join("etc/passwd")
        );
        assert_eq!(
            secure_join(&root, Path::new("/a/up/x")).expect("join"),
            root.join("x")
        );
        assert_eq!(
            secure_join(&root, Path::new("../../b")).expect("join"),
            root.join("b")
        );
        fs::remove_dir_all(&root).expect("cleanup");
    }
}
