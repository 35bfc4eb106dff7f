//! Building the initramfs: a gzip-compressed newc cpio archive.
//!
//! [`InitramfsBuilder`] holds a file tree in memory (files, directories,
//! symlinks, device nodes) and writes it in path order, parents first.
//! [`InitramfsBuilder::busybox_base`] makes vessel's standard guest: busybox,
//! the virtio modules and an `/init` that loads them, prints
//! `vessel-init: ready`, runs `/etc/vessel/init.d/*` if any (else a shell on
//! the console), then powers off.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::kernel::Module;

/// The line `/init` prints once modules are loaded; tests wait for it.
pub const READY_MARKER: &str = "vessel-init: ready";

/// Errors building an initramfs.
#[derive(Debug, Error)]
pub enum InitramfsError {
    #[error(
        "bad guest path {path:?}: {reason} (use an absolute path like /etc/vessel/init.d/10-test)"
    )]
    BadPath { path: String, reason: &'static str },
    #[error("{path} is larger than the 4 GiB a cpio newc entry can hold")]
    TooLarge { path: String },
    #[error("writing initramfs {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One node in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File { data: Vec<u8>, mode: u32 },
    Dir { mode: u32 },
    Symlink { target: String },
    CharDev { mode: u32, major: u32, minor: u32 },
}

/// An in-memory file tree written out as a newc cpio archive.
#[derive(Debug, Clone, Default)]
pub struct InitramfsBuilder {
    nodes: BTreeMap<String, Node>,
}

/// Validate and normalise a guest path to `a/b/c` (no leading slash).
fn clean(path: &str) -> Result<String, InitramfsError> {
    let bad = |reason| InitramfsError::BadPath {
        path: path.to_owned(),
        reason,
    };
    if !path.starts_with('/') {
        return Err(bad("not absolute"));
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return Err(bad("names the root directory"));
    }
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(bad("contains . or .."));
    }
    if path.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    Ok(parts.join("/"))
}

/// Common busybox applets linked at build time; `/init` also runs
/// `busybox --install -s` so every applet the binary has is on PATH.
const APPLETS: &[&str] = &[
    "bin/sh",
    "bin/ash",
    "bin/cat",
    "bin/cp",
    "bin/dmesg",
    "bin/echo",
    "bin/grep",
    "bin/ln",
    "bin/ls",
    "bin/mkdir",
    "bin/mknod",
    "bin/mount",
    "bin/mv",
    "bin/ps",
    "bin/rm",
    "bin/sed",
    "bin/sleep",
    "bin/sync",
    "bin/umount",
    "bin/uname",
    "sbin/insmod",
    "sbin/lsmod",
    "sbin/rmmod",
    "sbin/poweroff",
    "sbin/reboot",
    "sbin/halt",
    "sbin/mdev",
    "usr/bin/setsid",
    "usr/bin/cttyhack",
    "usr/bin/nproc",
    "usr/bin/sha256sum",
    "usr/bin/md5sum",
    "usr/bin/head",
    "usr/bin/tail",
    "usr/bin/wc",
    "usr/bin/env",
    "usr/bin/awk",
    "usr/bin/find",
    "usr/bin/xargs",
    "usr/bin/vi",
];

/// The init script of the standard image. `/etc/vessel/modules` lists the
/// modules to load, in dependency order.
pub const INIT_SCRIPT: &str = r#"#!/bin/sh
# vessel's initramfs init: mount the kernel filesystems, load the virtio
# modules, then run /etc/vessel/init.d/* (or a shell) and power off.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox --install -s 2>/dev/null
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s
mkdir -p /dev/pts /tmp /run
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /tmp 2>/dev/null
if [ -f /etc/vessel/modules ]; then
    for m in $(cat /etc/vessel/modules); do
        insmod "/lib/modules/$m.ko" || echo "vessel-init: insmod $m failed"
    done
fi
# With console=hvc0 the kernel gave init the UART: hvc0 appears only once
# virtio_mmio is loaded. /dev/console is hvc0 from then on; reopen it (it
# stays the UART without console=hvc0).
if (exec </dev/console) 2>/dev/null; then
    exec </dev/console >/dev/console 2>&1
fi
# vessel.root=DEV on the kernel command line: mount that ext4 disk and make
# it the root (only from the initramfs, which carries this marker file).
root=""
for arg in $(cat /proc/cmdline); do
    case "$arg" in vessel.root=*) root="${arg#vessel.root=}" ;; esac
done
if [ -n "$root" ] && [ -f /etc/vessel/in-initramfs ]; then
    if [ -f /etc/vessel/modules.disk ]; then
        for m in $(cat /etc/vessel/modules.disk); do
            insmod "/lib/modules/$m.ko" || echo "vessel-init: insmod $m failed"
        done
    fi
    mkdir -p /newroot
    if mount -t ext4 "$root" /newroot && [ -x /newroot/sbin/init ]; then
        umount /dev/pts /tmp /proc /sys 2>/dev/null
        umount /dev 2>/dev/null
        exec switch_root /newroot /sbin/init
    fi
    echo "vessel-init: cannot mount $root as the root disk; staying in the initramfs"
fi
hostname vessel 2>/dev/null
# The power button (virtio-input KEY_POWER, what `vessel stop` presses):
# busybox acpid maps it to PWRF and runs /run/acpi/PWRF/00000080, which
# powers off cleanly. /run is a tmpfs: nothing is written to a root disk.
if ls /dev/input/event* >/dev/null 2>&1; then
    mkdir -p /run
    mount -t tmpfs tmpfs /run 2>/dev/null
    mkdir -p /run/acpi/PWRF
    cat >/run/acpi/PWRF/00000080 <<'EOF'
#!/bin/sh
echo "vessel-init: power button pressed; powering off" >/dev/console
# Everything but init and this script: TERM, then KILL what is left.
kill -TERM -1 2>/dev/null
sleep 1
kill -KILL -1 2>/dev/null
mount -o remount,ro / 2>/dev/null
sync
echo "vessel-init: powering off" >/dev/console
case "$(uname -m)" in
    x86_64) reboot -f ;;
    *) poweroff -f ;;
esac
EOF
    chmod 755 /run/acpi/PWRF/00000080
    if acpid -c /run/acpi -l /dev/null -p /run/acpid.pid; then
        # acpid opens the event devices after it forks: a press before
        # that would be lost, so "ready" waits until it has them open.
        n=0
        while [ "$n" -lt 100 ]; do
            p="$(cat /run/acpid.pid 2>/dev/null)"
            [ -n "$p" ] && ls -l "/proc/$p/fd" 2>/dev/null | grep -q /dev/input/ && break
            sleep 0.1
            n=$((n + 1))
        done
    else
        echo "vessel-init: acpid failed; the power button is ignored"
    fi
fi
echo "vessel-init: ready"
ran=0
for s in /etc/vessel/init.d/*; do
    [ -f "$s" ] && [ -x "$s" ] || continue
    ran=1
    "$s"
done
if [ "$ran" = 0 ]; then
    echo "vessel-init: starting a shell; exit it to power off"
    setsid cttyhack sh
fi
# A root disk is left clean, as at unmount: its journal written back, so
# the host can read and change the image (debugfs) before the next boot.
mount -o remount,ro / 2>/dev/null
sync
# The x86_64 microvm has no ACPI power button: it ends on the i8042 reset
# (reboot=k), as Firecracker's guests do.
case "$(uname -m)" in
    x86_64) reboot -f ;;
    *) poweroff -f ;;
esac
"#;

impl InitramfsBuilder {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// vessel's standard image: busybox at `/bin/busybox` with applet links,
    /// `modules` at `/lib/modules/<name>.ko` (unsigned) loaded in the given order, `/init`,
    /// and `/dev/console`.
    pub fn busybox_base(busybox: Vec<u8>, modules: &[Module]) -> Result<Self, InitramfsError> {
        let mut b = Self::new();
        for dir in [
            "/bin",
            "/sbin",
            "/usr/bin",
            "/usr/sbin",
            "/dev",
            "/proc",
            "/sys",
            "/tmp",
            "/run",
            "/root",
            "/mnt",
            "/etc/vessel/init.d",
        ] {
            b.add_dir(dir, 0o755)?;
        }
        b.add_char_device("/dev/console", 0o600, 5, 1)?;
        b.add_char_device("/dev/null", 0o666, 1, 3)?;
        b.add_file("/bin/busybox", busybox, 0o755)?;
        for applet in APPLETS {
            let depth = applet.matches('/').count();
            let target = format!("{}bin/busybox", "../".repeat(depth));
            b.add_symlink(&format!("/{applet}"), &target)?;
        }
        let mut list = String::new();
        for m in modules {
            // Without their signatures: checking one (SHA-256 over the
            // whole module) costs the emulated guest seconds per MB, and
            // Debian's kernel does not enforce them (it notes the taint).
            b.add_file(
                &format!("/lib/modules/{}.ko", m.name),
                crate::disk::strip_module_signature(&m.data).to_vec(),
                0o644,
            )?;
            list.push_str(&m.name);
            list.push('\n');
        }
        b.add_file("/etc/vessel/modules", list.into_bytes(), 0o644)?;
        b.add_file("/etc/vessel/in-initramfs", Vec::new(), 0o644)?;
        b.add_file("/init", INIT_SCRIPT.as_bytes().to_vec(), 0o755)?;
        b.add_file("/etc/hostname", b"vessel\n".to_vec(), 0o644)?;
        Ok(b)
    }

    /// Remove a node (and, for a directory, everything under it).
    pub fn remove(&mut self, guest_path: &str) -> Result<&mut Self, InitramfsError> {
        let p = clean(guest_path)?;
        let prefix = format!("{p}/");
        self.nodes.retain(|k, _| *k != p && !k.starts_with(&prefix));
        Ok(self)
    }

    /// The nodes, keyed by path without leading slash, parents first.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(k, v)| (k.as_str(), v))
    }

    fn add_parents(&mut self, path: &str) {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            self.nodes
                .entry(prefix.clone())
                .or_insert(Node::Dir { mode: 0o755 });
        }
    }

    fn insert(&mut self, path: &str, node: Node) -> Result<&mut Self, InitramfsError> {
        let p = clean(path)?;
        self.add_parents(&p);
        self.nodes.insert(p, node);
        Ok(self)
    }

    /// Add (or replace) a regular file; `mode` holds the permission bits (e.g. 0o755).
    pub fn add_file(
        &mut self,
        guest_path: &str,
        data: Vec<u8>,
        mode: u32,
    ) -> Result<&mut Self, InitramfsError> {
        if u32::try_from(data.len()).is_err() {
            return Err(InitramfsError::TooLarge {
                path: guest_path.to_owned(),
            });
        }
        self.insert(
            guest_path,
            Node::File {
                data,
                mode: mode & 0o7777,
            },
        )
    }

    /// Add a directory (parents are added as needed).
    pub fn add_dir(&mut self, guest_path: &str, mode: u32) -> Result<&mut Self, InitramfsError> {
        self.insert(
            guest_path,
            Node::Dir {
                mode: mode & 0o7777,
            },
        )
    }

    /// Add a symbolic link.
    pub fn add_symlink(
        &mut self,
        guest_path: &str,
        target: &str,
    ) -> Result<&mut Self, InitramfsError> {
        self.insert(
            guest_path,
            Node::Symlink {
                target: target.to_owned(),
            },
        )
    }

    /// Add a character device node.
    pub fn add_char_device(
        &mut self,
        guest_path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<&mut Self, InitramfsError> {
        self.insert(
            guest_path,
            Node::CharDev {
                mode: mode & 0o7777,
                major,
                minor,
            },
        )
    }

    /// The archive's paths (without leading slash), in write order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// Write the uncompressed newc archive.
    pub fn write_cpio<W: Write>(&self, mut out: W) -> std::io::Result<W> {
        for (ino, (path, node)) in self.nodes.iter().enumerate() {
            let base = cpio::NewcBuilder::new(path)
                .ino(ino as u32 + 1)
                .uid(0)
                .gid(0)
                .mtime(0);
            let (builder, data): (_, &[u8]) = match node {
                Node::File { data, mode } => (base.mode(0o100000 | mode).nlink(1), data),
                Node::Dir { mode } => (base.mode(0o040000 | mode).nlink(2), &[]),
                Node::Symlink { target } => (base.mode(0o120777).nlink(1), target.as_bytes()),
                Node::CharDev { mode, major, minor } => (
                    base.mode(0o020000 | mode)
                        .nlink(1)
                        .rdev_major(*major)
                        .rdev_minor(*minor),
                    &[],
                ),
            };
            let mut w = builder.write(out, data.len() as u32);
            w.write_all(data)?;
            out = w.finish()?;
        }
        cpio::newc::trailer(out)
    }

    /// The gzip-compressed archive, as the kernel's `initrd` wants it.
    pub fn to_gz(&self) -> std::io::Result<Vec<u8>> {
        let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        self.write_cpio(enc)?.finish()
    }

    /// Write the gzip-compressed archive to `path` (atomically: a temp file
    /// in the same directory, renamed when complete).
    pub fn write_gz(&self, path: &Path) -> Result<(), InitramfsError> {
        let err = |source| InitramfsError::Write {
            path: path.to_owned(),
            source,
        };
        let data = self.to_gz().map_err(err)?;
        write_atomic(path, &data).map_err(err)
    }
}

/// Write `data` to `path` through a temporary file in the same directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    // tempfile creates 0600; cached images are ordinary readable files.
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::process::{Command, Stdio};

    fn read_back(archive: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut rest = archive;
        loop {
            let mut r = cpio::NewcReader::new(rest).unwrap();
            if r.entry().is_trailer() {
                break;
            }
            let name = r.entry().name().to_owned();
            let mode = r.entry().mode();
            let mut data = Vec::new();
            r.read_to_end(&mut data).unwrap();
            out.push((name, mode, data));
            rest = r.finish().unwrap();
        }
        out
    }

    #[test]
    fn entries_round_trip_with_parents_first() {
        let mut b = InitramfsBuilder::new();
        b.add_file(
            "/etc/vessel/init.d/10-test",
            b"#!/bin/sh\necho hi\n".to_vec(),
            0o755,
        )
        .unwrap();
        b.add_symlink("/bin/sh", "busybox").unwrap();
        b.add_char_device("/dev/console", 0o600, 5, 1).unwrap();
        let mut raw = Vec::new();
        b.write_cpio(&mut raw).unwrap();
        let entries = read_back(&raw);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "bin",
                "bin/sh",
                "dev",
                "dev/console",
                "etc",
                "etc/vessel",
                "etc/vessel/init.d",
                "etc/vessel/init.d/10-test"
            ]
        );
        let script = &entries[7];
        assert_eq!(script.1, 0o100755);
        assert_eq!(script.2, b"#!/bin/sh\necho hi\n");
        assert_eq!(entries[1].1, 0o120777);
        assert_eq!(entries[1].2, b"busybox");
        assert_eq!(entries[3].1, 0o020600);
    }

    #[test]
    fn bad_paths_are_rejected() {
        let mut b = InitramfsBuilder::new();
        assert!(b.add_file("relative", vec![], 0o644).is_err());
        assert!(b.add_file("/a/../b", vec![], 0o644).is_err());
        assert!(b.add_file("/", vec![], 0o644).is_err());
        assert!(b.add_dir("//x//y/", 0o755).is_ok());
        assert_eq!(b.paths().collect::<Vec<_>>(), vec!["x", "x/y"]);
    }

    #[test]
    fn modules_go_in_without_their_signatures() {
        let mut signed = b"\x7fELF module".to_vec();
        signed.extend_from_slice(&[0xAB; 40]);
        signed.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 40]);
        signed.extend_from_slice(b"~Module signature appended~\n");
        let modules = vec![Module {
            name: "virtio_input".into(),
            data: signed,
        }];
        let b = InitramfsBuilder::busybox_base(b"bb".to_vec(), &modules).unwrap();
        let entries = read_back(&b.write_cpio(Vec::new()).unwrap());
        let m = entries
            .iter()
            .find(|e| e.0 == "lib/modules/virtio_input.ko")
            .unwrap();
        assert_eq!(m.2, b"\x7fELF module");
    }

    #[test]
    fn init_script_is_valid_sh_and_handles_the_power_button() {
        assert!(INIT_SCRIPT.contains("acpid -c /run/acpi"));
        assert!(INIT_SCRIPT.contains("PWRF/00000080"));
        match Command::new("sh").args(["-n", "-c", INIT_SCRIPT]).status() {
            Ok(s) => assert!(s.success(), "sh -n rejects the init script"),
            Err(e) => eprintln!("SKIP: no sh to check the init script's syntax: {e}"),
        }
    }

    #[test]
    fn base_image_lists_in_debian_cpio() {
        let modules = vec![Module {
            name: "virtio_mmio".into(),
            data: b"\x7fELF fake".to_vec(),
        }];
        let b = InitramfsBuilder::busybox_base(b"busybox-binary".to_vec(), &modules).unwrap();
        let gz = b.to_gz().unwrap();
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut raw)
            .unwrap();
        let child = Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "SKIP: Debian's cpio is not installed ({e}); checked with the cpio crate only"
                );
                let names: Vec<String> = read_back(&raw).into_iter().map(|e| e.0).collect();
                assert!(names.contains(&"init".to_owned()));
                return;
            }
        };
        child.stdin.take().unwrap().write_all(&raw).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let listing = String::from_utf8(out.stdout).unwrap();
        let names: Vec<&str> = listing.lines().collect();
        for want in [
            "init",
            "bin/busybox",
            "bin/sh",
            "dev/console",
            "lib/modules/virtio_mmio.ko",
            "etc/vessel/modules",
            "usr/bin/cttyhack",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let entries = read_back(&raw);
        let modlist = entries
            .iter()
            .find(|e| e.0 == "etc/vessel/modules")
            .unwrap();
        assert_eq!(modlist.2, b"virtio_mmio\n");
        let link = entries.iter().find(|e| e.0 == "usr/bin/cttyhack").unwrap();
        assert_eq!(link.2, b"../../bin/busybox");
    }
}
