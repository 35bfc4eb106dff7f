//! The whole fetch against a fake Debian archive on 127.0.0.1: an InRelease
//! signed with a key the test makes (gpg), a Packages.xz, and .debs built
//! with dpkg-deb. Checks the pipeline offline: signature, checksums, kernel
//! resolution, module dependencies, the cache and its reuse, and what a
//! tampered package or a foreign signature does.

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use vessel_images::download::{DownloadError, sha256_hex};
use vessel_images::release::ReleaseError;
use vessel_images::{FetchOptions, ImageError};

type Hits = Arc<Mutex<HashMap<String, usize>>>;

/// Serve `files` over HTTP/1.1 on 127.0.0.1; counts requests per path.
fn serve(files: HashMap<String, Vec<u8>>) -> (String, Hits) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let files = Arc::new(files);
    let hits: Hits = Arc::default();
    let hits2 = Arc::clone(&hits);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let files = Arc::clone(&files);
            let hits = Arc::clone(&hits2);
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                let reply = match files.get(&path) {
                    Some(body) => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(body);
                        r
                    }
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = stream.write_all(&reply);
            });
        }
    });
    (format!("http://{addr}/debian"), hits)
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Stop the gpg-agent a test's GNUPGHOME started.
struct Agent(PathBuf);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.0)
            .args(["--kill", "all"])
            .output();
    }
}

/// A throwaway signing key; returns (GNUPGHOME, exported public keyring).
fn make_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let home = dir.join(format!("gnupg-{name}"));
    std::fs::create_dir_all(&home).unwrap();
    run(Command::new("chmod").arg("700").arg(&home));
    run(Command::new("gpg")
        .env("GNUPGHOME", &home)
        .args([
            "--batch",
            "--quiet",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
        ])
        .arg(format!("vessel test {name} <{name}@test.invalid>"))
        .args(["ed25519", "sign", "never"]));
    let keyring = dir.join(format!("{name}.gpg"));
    let key = run(Command::new("gpg")
        .env("GNUPGHOME", &home)
        .args(["--batch", "--export"]));
    std::fs::write(&keyring, key).unwrap();
    (home, keyring)
}

fn clearsign(home: &Path, text: &str, dir: &Path) -> Vec<u8> {
    let release = dir.join("Release");
    std::fs::write(&release, text).unwrap();
    let out = dir.join("InRelease");
    let _ = std::fs::remove_file(&out);
    run(Command::new("gpg")
        .env("GNUPGHOME", home)
        .args(["--batch", "--yes", "--quiet", "--clearsign", "-o"])
        .arg(&out)
        .arg(&release));
    std::fs::read(out).unwrap()
}

/// A host ELF object whose `.modinfo` says `depends=<deps>`, xz-compressed.
fn module(dir: &Path, name: &str, deps: &str) -> Vec<u8> {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(
        &src,
        format!(
            "__attribute__((section(\".modinfo\"), used)) static const char d[] = \"depends={deps}\";\n\
             __attribute__((section(\".modinfo\"), used)) static const char n[] = \"name={name}\";\n"
        ),
    )
    .unwrap();
    let obj = dir.join(format!("{name}.o"));
    run(Command::new("cc").arg("-c").arg(&src).arg("-o").arg(&obj));
    let mut out = Vec::new();
    liblzma::read::XzEncoder::new(&std::fs::read(obj).unwrap()[..], 1)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn build_deb(dir: &Path, pkg: &str, files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    build_deb_for(dir, "riscv64", pkg, files)
}

fn build_deb_for(dir: &Path, arch: &str, pkg: &str, files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let root = dir.join(format!("root-{arch}-{pkg}"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {pkg}\nVersion: 1\nArchitecture: {arch}\nMaintainer: t <t@test.invalid>\n\
             Description: test\n"
        ),
    )
    .unwrap();
    for (path, data) in files {
        let p = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let deb = dir.join(format!("{arch}-{pkg}.deb"));
    run(Command::new("dpkg-deb")
        .args(["-Zxz", "--root-owner-group", "--build"])
        .arg(&root)
        .arg(&deb));
    std::fs::read(deb).unwrap()
}

fn fake_image() -> Vec<u8> {
    let mut img = vec![0u8; 4096];
    img[0..2].copy_from_slice(b"MZ");
    img[0x30..0x38].copy_from_slice(b"RISCV\0\0\0");
    img[0x38..0x3c].copy_from_slice(b"RSC\x05");
    img
}

struct Archive {
    files: HashMap<String, Vec<u8>>,
    packages_text: String,
}

const KVER: &str = "6.12.0-test-riscv64";

fn make_archive(dir: &Path) -> Archive {
    let m = format!("/usr/lib/modules/{KVER}/kernel");
    let kernel = build_deb(
        dir,
        "linux-image-6.12.0-test-riscv64",
        &[
            (&format!("/boot/vmlinux-{KVER}"), fake_image()),
            (
                &format!("{m}/drivers/virtio/virtio_mmio.ko.xz"),
                module(dir, "virtio_mmio", ""),
            ),
            (
                &format!("{m}/drivers/block/virtio_blk.ko.xz"),
                module(dir, "virtio_blk", ""),
            ),
            (
                &format!("{m}/drivers/net/virtio_net.ko.xz"),
                module(dir, "virtio_net", "net_failover"),
            ),
            (
                &format!("{m}/drivers/net/net_failover.ko.xz"),
                module(dir, "net_failover", "failover"),
            ),
            (
                &format!("{m}/net/core/failover.ko.xz"),
                module(dir, "failover", ""),
            ),
            (
                &format!("{m}/drivers/char/hw_random/virtio-rng.ko.xz"),
                module(dir, "virtio_rng", ""),
            ),
            (
                &format!("{m}/drivers/virtio/virtio_input.ko.xz"),
                module(dir, "virtio_input", ""),
            ),
            (
                &format!("{m}/drivers/input/evdev.ko.xz"),
                module(dir, "evdev", ""),
            ),
            (
                &format!("{m}/fs/ext4/ext4.ko.xz"),
                module(dir, "ext4", "jbd2,mbcache,virtio_blk"),
            ),
            (
                &format!("{m}/crypto/crc32c_generic.ko.xz"),
                module(dir, "crc32c_generic", ""),
            ),
            (&format!("{m}/fs/jbd2/jbd2.ko.xz"), module(dir, "jbd2", "")),
            (&format!("{m}/fs/mbcache.ko.xz"), module(dir, "mbcache", "")),
            (
                &format!("/usr/lib/modules/{KVER}/modules.builtin"),
                b"kernel/drivers/char/virtio_console.ko\n".to_vec(),
            ),
        ],
    );
    let opensbi = build_deb(
        dir,
        "opensbi",
        &[(
            "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin",
            b"fake opensbi".to_vec(),
        )],
    );
    let busybox = build_deb(
        dir,
        "busybox-static",
        &[("/usr/bin/busybox", b"fake busybox".to_vec())],
    );
    let mut files = HashMap::new();
    let mut packages_text = String::new();
    let mut stanza = |name: &str, depends: &str, data: &[u8]| {
        let filename = format!("pool/main/t/{name}_1_riscv64.deb");
        packages_text.push_str(&format!(
            "Package: {name}\nVersion: 1\nArchitecture: riscv64\n{depends}Filename: {filename}\n\
             Size: {}\nSHA256: {}\n\n",
            data.len(),
            sha256_hex(data)
        ));
        files.insert(format!("/debian/{filename}"), data.to_vec());
    };
    stanza("busybox-static", "", &busybox);
    stanza(
        "linux-image-riscv64",
        "Depends: linux-image-6.12.0-test-riscv64 (= 1)\n",
        b"meta",
    );
    stanza(
        "linux-image-6.12.0-test-riscv64",
        "Depends: kmod\n",
        &kernel,
    );
    stanza("opensbi", "", &opensbi);
    Archive {
        files,
        packages_text,
    }
}

fn publish(archive: &Archive, home: &Path, dir: &Path) -> HashMap<String, Vec<u8>> {
    publish_for(archive, "riscv64", home, dir)
}

fn publish_for(archive: &Archive, arch: &str, home: &Path, dir: &Path) -> HashMap<String, Vec<u8>> {
    let mut xz = Vec::new();
    liblzma::read::XzEncoder::new(archive.packages_text.as_bytes(), 6)
        .read_to_end(&mut xz)
        .unwrap();
    let release = format!(
        "Origin: Debian\nSuite: stable\nVersion: 13.0\nCodename: trixie\n\
         Architectures: {arch}\nComponents: main\nSHA256:\n {} {} main/binary-{arch}/Packages.xz\n",
        sha256_hex(&xz),
        xz.len()
    );
    let mut files = archive.files.clone();
    files.insert(
        "/debian/dists/trixie/InRelease".into(),
        clearsign(home, &release, dir),
    );
    files.insert(
        format!("/debian/dists/trixie/main/binary-{arch}/Packages.xz"),
        xz,
    );
    files
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn fetch_from_a_fake_signed_archive() {
    for tool in ["gpg", "gpgv", "dpkg-deb", "cc"] {
        if !have(tool) {
            eprintln!("SKIP: {tool} is not installed (gnupg, gpgv, dpkg, build-essential)");
            return;
        }
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (home, keyring) = make_key(dir, "archive");
    let _agent = Agent(home.clone());
    let archive = make_archive(dir);
    let (base, hits) = serve(publish(&archive, &home, dir));
    let cache = dir.join("cache");
    let opts = FetchOptions {
        mirror: Some(base.clone()),
        cache_root: Some(cache.clone()),
        keyrings: Some(vec![keyring.clone()]),
        ..Default::default()
    };

    let m = vessel_images::fetch("debian-riscv64", &opts).unwrap();
    assert_eq!(m.kernel_version, KVER);
    assert_eq!(
        m.modules,
        vec![
            "virtio_mmio",
            "virtio_blk",
            "failover",
            "net_failover",
            "virtio_net",
            "virtio_rng",
            "virtio_input",
            "evdev"
        ]
    );
    // Disk modules are kept beside the others but not loaded at boot; ones
    // already loaded (virtio_blk) are not repeated.
    assert_eq!(
        m.disk_modules,
        vec!["crc32c_generic", "jbd2", "mbcache", "ext4"]
    );
    assert!(m.modules_dir.join("ext4.ko").is_file());
    assert_eq!(std::fs::read(&m.kernel).unwrap(), fake_image());
    assert_eq!(std::fs::read(&m.firmware).unwrap(), b"fake opensbi");
    assert_eq!(
        m.packages
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        vec![
            "linux-image-6.12.0-test-riscv64",
            "opensbi",
            "busybox-static"
        ]
    );
    let loaded = vessel_images::cache::load_from(&cache, "debian-riscv64").unwrap();
    assert_eq!(loaded, m);
    let initrd = vessel_images::initramfs_for(&m).unwrap();
    let paths: Vec<&str> = initrd.paths().collect();
    assert!(paths.contains(&"lib/modules/virtio_rng.ko"), "{paths:?}");
    assert!(paths.contains(&"bin/busybox"));
    assert!(!paths.contains(&"lib/modules/ext4.ko"), "{paths:?}");

    // A second fetch downloads no package again.
    let deb_hits = |h: &Hits| -> usize {
        h.lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.ends_with(".deb"))
            .map(|(_, n)| n)
            .sum()
    };
    let before = deb_hits(&hits);
    assert_eq!(before, 3);
    // What a killed fetch leaves behind is swept by the next one.
    let leftover = cache.join("debian-riscv64/debs/.partial-killed");
    std::fs::write(&leftover, b"half a download").unwrap();
    vessel_images::fetch("debian-riscv64", &opts).unwrap();
    assert_eq!(
        deb_hits(&hits),
        before,
        "cached packages were downloaded again"
    );
    assert!(!leftover.exists(), "partial download not swept");

    // The same archive signed by a key we do not trust is refused.
    let (stranger, _) = make_key(dir, "stranger");
    let _agent2 = Agent(stranger.clone());
    let (base2, _) = serve(publish(&archive, &stranger, dir));
    let e = vessel_images::fetch(
        "debian-riscv64",
        &FetchOptions {
            mirror: Some(base2),
            ..opts.clone()
        },
    )
    .unwrap_err();
    assert!(
        matches!(e, ImageError::Release(ReleaseError::BadSignature { .. })),
        "{e}"
    );

    // A package whose bytes differ from the signed index: error, and no file left.
    let mut tampered = archive.files.clone();
    let key = tampered
        .keys()
        .find(|k| k.contains("busybox-static"))
        .unwrap()
        .clone();
    let len = tampered[&key].len();
    tampered.get_mut(&key).unwrap()[len - 1] ^= 0xff;
    let tampered = Archive {
        files: tampered,
        packages_text: archive.packages_text.clone(),
    };
    let (base3, _) = serve(publish(&tampered, &home, dir));
    let cache3 = dir.join("cache3");
    let e = vessel_images::fetch(
        "debian-riscv64",
        &FetchOptions {
            mirror: Some(base3),
            cache_root: Some(cache3.clone()),
            ..opts.clone()
        },
    )
    .unwrap_err();
    assert!(
        matches!(e, ImageError::Download(DownloadError::Mismatch { ref url, .. }) if url.contains("busybox-static")),
        "{e}"
    );
    let debs = names_in(&cache3.join("debian-riscv64/debs"));
    assert!(
        !debs
            .iter()
            .any(|n| n.contains("busybox") || n.starts_with(".partial")),
        "{debs:?}"
    );
    assert!(!cache3.join("debian-riscv64/manifest.json").exists());
}

#[test]
fn unknown_image_and_package_missing_from_the_index() {
    for tool in ["gpg", "gpgv"] {
        if !have(tool) {
            eprintln!("SKIP: {tool} is not installed");
            return;
        }
    }
    let e = vessel_images::fetch("windows-95", &FetchOptions::default()).unwrap_err();
    assert!(matches!(e, ImageError::Unknown { .. }), "{e}");

    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (home, keyring) = make_key(dir, "archive");
    let _agent = Agent(home.clone());
    let archive = Archive {
        files: HashMap::new(),
        packages_text: "Package: opensbi\nVersion: 1\nFilename: pool/o.deb\nSize: 1\n\
                        SHA256: 0000000000000000000000000000000000000000000000000000000000000000\n"
            .into(),
    };
    let (base, _) = serve(publish(&archive, &home, dir));
    let e = vessel_images::fetch(
        "debian-riscv64",
        &FetchOptions {
            mirror: Some(base),
            cache_root: Some(dir.join("cache")),
            keyrings: Some(vec![keyring]),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("linux-image-riscv64"), "{e}");
}

/// The first bytes of an x86-64 bzImage: "HdrS", boot protocol 2.15, and
/// `XLF_KERNEL_64` in xloadflags.
fn fake_bzimage() -> Vec<u8> {
    let mut img = vec![0u8; 8192];
    img[0x1fe..0x200].copy_from_slice(&[0x55, 0xaa]);
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    img[0x236] = 1;
    img
}

const KVER_AMD64: &str = "6.12.0-test-cloud-amd64";

/// An amd64 archive shaped like trixie's: the cloud kernel with ext4 and
/// virtio_console built in and the virtio transports as modules.
fn make_amd64_archive(dir: &Path, kernel_image: Vec<u8>) -> Archive {
    let m = format!("/usr/lib/modules/{KVER_AMD64}/kernel");
    let kpkg = format!("linux-image-{KVER_AMD64}");
    let kernel = build_deb_for(
        dir,
        "amd64",
        &kpkg,
        &[
            (&format!("/boot/vmlinuz-{KVER_AMD64}"), kernel_image),
            (
                &format!("/boot/config-{KVER_AMD64}"),
                b"CONFIG_VIRTIO_MMIO=m\n".to_vec(),
            ),
            (
                &format!("{m}/drivers/virtio/virtio_mmio.ko.xz"),
                module(dir, "virtio_mmio", ""),
            ),
            (
                &format!("{m}/drivers/block/virtio_blk.ko.xz"),
                module(dir, "virtio_blk", ""),
            ),
            (
                &format!("{m}/drivers/net/virtio_net.ko.xz"),
                module(dir, "virtio_net", "net_failover"),
            ),
            (
                &format!("{m}/drivers/net/net_failover.ko.xz"),
                module(dir, "net_failover", "failover"),
            ),
            (
                &format!("{m}/net/core/failover.ko.xz"),
                module(dir, "failover", ""),
            ),
            (
                &format!("{m}/drivers/char/hw_random/virtio-rng.ko.xz"),
                module(dir, "virtio_rng", ""),
            ),
            (
                &format!("{m}/drivers/virtio/virtio_input.ko.xz"),
                module(dir, "virtio_input", ""),
            ),
            (
                &format!("{m}/drivers/input/evdev.ko.xz"),
                module(dir, "evdev", ""),
            ),
            (
                &format!("/usr/lib/modules/{KVER_AMD64}/modules.builtin"),
                b"kernel/drivers/char/virtio_console.ko\nkernel/fs/ext4/ext4.ko\n\
                  kernel/crypto/crc32c_generic.ko\n"
                    .to_vec(),
            ),
        ],
    );
    let busybox = build_deb_for(
        dir,
        "amd64",
        "busybox-static",
        &[("/usr/bin/busybox", b"fake amd64 busybox".to_vec())],
    );
    let mut files = HashMap::new();
    let mut packages_text = String::new();
    let mut stanza = |name: &str, depends: &str, data: &[u8]| {
        let filename = format!("pool/main/t/{name}_1_amd64.deb");
        packages_text.push_str(&format!(
            "Package: {name}\nVersion: 1\nArchitecture: amd64\n{depends}Filename: {filename}\n\
             Size: {}\nSHA256: {}\n\n",
            data.len(),
            sha256_hex(data)
        ));
        files.insert(format!("/debian/{filename}"), data.to_vec());
    };
    stanza("busybox-static", "", &busybox);
    // The generic flavour is there too, and must not be taken.
    stanza(
        "linux-image-amd64",
        "Depends: linux-image-6.12.0-test-amd64 (= 1)\n",
        b"meta",
    );
    stanza(
        "linux-image-cloud-amd64",
        &format!("Depends: {kpkg} (= 1)\n"),
        b"meta",
    );
    stanza(&kpkg, "Depends: kmod\n", &kernel);
    Archive {
        files,
        packages_text,
    }
}

#[test]
fn fetch_debian_amd64_from_a_fake_signed_archive() {
    for tool in ["gpg", "gpgv", "dpkg-deb", "cc"] {
        if !have(tool) {
            eprintln!("SKIP: {tool} is not installed (gnupg, gpgv, dpkg, build-essential)");
            return;
        }
    }
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (home, keyring) = make_key(dir, "archive");
    let _agent = Agent(home.clone());
    let archive = make_amd64_archive(dir, fake_bzimage());
    let (base, hits) = serve(publish_for(&archive, "amd64", &home, dir));
    let cache = dir.join("cache");
    let opts = FetchOptions {
        mirror: Some(base),
        cache_root: Some(cache.clone()),
        keyrings: Some(vec![keyring.clone()]),
        ..Default::default()
    };
    let m = vessel_images::fetch(vessel_images::DEBIAN_AMD64, &opts).unwrap();
    assert_eq!(m.name, "debian-amd64");
    assert_eq!(m.arch, "x86_64");
    assert_eq!(m.kernel_version, KVER_AMD64);
    assert_eq!(m.kernel, cache.join("debian-amd64/bzImage"));
    assert_eq!(std::fs::read(&m.kernel).unwrap(), fake_bzimage());
    assert_eq!(m.firmware(), None);
    assert!(m.cmdline.contains("console=ttyS0") && m.cmdline.contains("reboot=k"));
    // Built-in modules (virtio_console, ext4, crc32c) are not carried.
    assert_eq!(
        m.modules,
        vec![
            "virtio_mmio",
            "virtio_blk",
            "failover",
            "net_failover",
            "virtio_net",
            "virtio_rng",
            "virtio_input",
            "evdev"
        ]
    );
    assert!(m.disk_modules.is_empty(), "{:?}", m.disk_modules);
    assert_eq!(
        m.packages
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        vec!["linux-image-6.12.0-test-cloud-amd64", "busybox-static"]
    );
    {
        let h = hits.lock().unwrap();
        assert!(h.contains_key("/debian/dists/trixie/main/binary-amd64/Packages.xz"));
        assert!(!h.keys().any(|p| p.contains("riscv64")), "{h:?}");
    }
    let loaded = vessel_images::cache::load_from(&cache, "debian-amd64").unwrap();
    assert_eq!(loaded, m);
    let initrd = vessel_images::initramfs_for_disk(&m).unwrap();
    let paths: Vec<&str> = initrd.paths().collect();
    for want in [
        "lib/modules/virtio_mmio.ko",
        "lib/modules/virtio_blk.ko",
        "lib/modules/virtio_net.ko",
        "lib/modules/virtio_rng.ko",
        "bin/busybox",
        "init",
    ] {
        assert!(paths.contains(&want), "{want} missing: {paths:?}");
    }

    // A package whose kernel is not a bzImage: one clear error, no manifest.
    let bad = make_amd64_archive(dir, b"\x7fELF not a bzImage".to_vec());
    let (base2, _) = serve(publish_for(&bad, "amd64", &home, dir));
    let cache2 = dir.join("cache2");
    let e = vessel_images::fetch(
        vessel_images::DEBIAN_AMD64,
        &FetchOptions {
            mirror: Some(base2),
            cache_root: Some(cache2.clone()),
            ..opts.clone()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("not an x86-64 bzImage"), "{e}");
    assert!(!cache2.join("debian-amd64/manifest.json").exists());
}
