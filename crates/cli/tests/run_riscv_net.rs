//! End-to-end: Debian's riscv64 kernel on vessel's emulator talks TCP and
//! ICMP over `--net tap=NAME,mac=MAC` to a host-side server.
//!
//! The test makes its own network namespace (`ip netns add`) with a tap in
//! it (10.0.2.1/24), runs vessel inside it (`ip netns exec`) and serves from
//! a thread that joined the namespace (`setns`): all traffic stays in that
//! namespace. The guest (10.0.2.15, the cached `debian-riscv64` image, one
//! boot) checks its MAC, pings the host, serves 16 MiB of random bytes
//! with busybox httpd that the host fetches (the guest prints their
//! sha256), and receives 16 MiB of the host's pattern with nc (printing
//! the sha256 of what arrived). The host compares both digests
//! with what it received and sent, and checks that checksum and TCP
//! segmentation offloads were negotiated and used (frames above the MTU
//! crossed the tap both ways). The namespace (and with it the tap) is
//! deleted on every path by a guard.
//!
//! Skips with a printed reason when not root, without `ip`, without
//! `/dev/net/tun`, or without the image and a reachable archive.

mod common;

use common::{image_or_skip, pattern};

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vessel_images::READY_MARKER;
use vessel_images::download::sha256_hex;

const VESSEL: &str = env!("CARGO_BIN_EXE_vessel");
const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
const TAP: &str = "vtap0";
const MAC: &str = "52:54:00:12:34:57";
const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
const RECV_PORT: u16 = 5002;
const SIZE: usize = 16 << 20;

/// A network namespace, deleted (with the tap in it) when dropped.
struct Netns {
    name: String,
}

impl Netns {
    fn create() -> Result<Self, String> {
        let name = format!("vessel-net-{}", std::process::id());
        ip(&["netns", "add", &name])?;
        let ns = Self { name };
        // From here on, the guard deletes the namespace on any failure.
        ns.exec_ip(&["link", "set", "lo", "up"])?;
        ns.exec_ip(&["tuntap", "add", "dev", TAP, "mode", "tap"])?;
        ns.exec_ip(&["addr", "add", "10.0.2.1/24", "dev", TAP])?;
        ns.exec_ip(&["link", "set", TAP, "up"])?;
        Ok(ns)
    }

    fn exec_ip(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip(&all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("cannot delete network namespace {}: {e}", self.name);
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

fn skip_reason() -> Option<String> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces and a tap)".into());
    }
    if Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        return Some("the ip command (iproute2) is missing".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing (modprobe tun)".into());
    }
    None
}

/// What the host-side server saw.
#[derive(Debug)]
enum Served {
    /// The guest's upload: byte count, sha256, and the tap's counters of
    /// frames from the guest during it.
    Received(usize, String, Frames),
    /// The download was written in full and the guest closed; the tap's
    /// counters of frames to the guest during it.
    Sent(Frames),
    Failed(String),
}

/// Bytes and frames a tap counted in one direction.
#[derive(Debug, Clone, Copy, Default)]
struct Frames {
    bytes: u64,
    packets: u64,
}

impl Frames {
    fn average(&self) -> u64 {
        self.bytes / self.packets.max(1)
    }
}

/// The tap's counters: (from the guest, to the guest). The tap's "rx" is
/// what the guest transmitted.
fn tap_counters(ns: &str) -> Result<(Frames, Frames), String> {
    let dir = format!("/sys/class/net/{TAP}/statistics");
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat"])
        .args(["rx_bytes", "rx_packets", "tx_bytes", "tx_packets"].map(|f| format!("{dir}/{f}")))
        .output()
        .map_err(|e| format!("reading tap counters: {e}"))?;
    let v: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if v.len() != 4 {
        return Err(format!(
            "reading tap counters: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok((
        Frames {
            bytes: v[0],
            packets: v[1],
        },
        Frames {
            bytes: v[2],
            packets: v[3],
        },
    ))
}

fn delta(a: Frames, b: Frames) -> Frames {
    Frames {
        bytes: b.bytes - a.bytes,
        packets: b.packets - a.packets,
    }
}

/// Join the namespace `ns` (this thread only), bind the download port,
/// say ready, then fetch the guest's upload from its httpd (which sends
/// with sendfile, in large writes), and write `data` to the downloader and
/// wait for its close. The tap's counters are read around each transfer.
fn serve(
    ns: String,
    data: Vec<u8>,
    ready: mpsc::Sender<Result<(), String>>,
) -> mpsc::Receiver<Served> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let setup = || -> Result<TcpListener, String> {
            let path = Path::new("/run/netns").join(&ns);
            let f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            // SAFETY: setns on a namespace file we hold open; it changes
            // this thread's network namespace only.
            if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!("setns: {}", std::io::Error::last_os_error()));
            }
            TcpListener::bind(SocketAddrV4::new(HOST_IP, RECV_PORT))
                .map_err(|e| format!("bind {RECV_PORT}: {e}"))
        };
        let down = match setup() {
            Ok(l) => {
                let _ = ready.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        // The guest's upload first: fetch it from the guest's httpd once
        // that answers (connecting fails fast until the guest is up; the
        // retries are bounded), then serve the download.
        let r = (|| -> Result<(Vec<u8>, Frames), String> {
            let guest = SocketAddrV4::new(GUEST_IP, 80);
            let mut s = None;
            for _ in 0..1800 {
                match TcpStream::connect_timeout(&guest.into(), Duration::from_secs(2)) {
                    Ok(c) => {
                        s = Some(c);
                        break;
                    }
                    Err(_) => std::thread::sleep(Duration::from_secs(1)),
                }
            }
            let mut s = s.ok_or("the guest's httpd never answered")?;
            eprintln!("host: fetching the upload from the guest's httpd");
            let (before, _) = tap_counters(&ns)?;
            s.write_all(b"GET /up HTTP/1.0\r\n\r\n")
                .map_err(|e| e.to_string())?;
            let mut got = Vec::with_capacity(SIZE + 512);
            s.read_to_end(&mut got).map_err(|e| e.to_string())?;
            let (after, _) = tap_counters(&ns)?;
            let end = got
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .ok_or("no end of the HTTP headers")?;
            let head = String::from_utf8_lossy(&got[..end]).to_string();
            if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
                return Err(format!("the guest's httpd answered {head:?}"));
            }
            Ok((got[end + 4..].to_vec(), delta(before, after)))
        })();
        let _ = tx.send(match r {
            Ok((got, frames)) => Served::Received(got.len(), sha256_hex(&got), frames),
            Err(e) => Served::Failed(format!("upload: {e}")),
        });
        let r = (|| -> Result<Frames, String> {
            let (mut s, peer) = down.accept().map_err(|e| e.to_string())?;
            eprintln!("host: download connection from {peer}");
            let (_, before) = tap_counters(&ns)?;
            s.write_all(&data).map_err(|e| e.to_string())?;
            s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
            // The guest closes once it has read everything.
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).map_err(|e| e.to_string())?;
            let (_, after) = tap_counters(&ns)?;
            Ok(delta(before, after))
        })();
        let _ = tx.send(match r {
            Ok(frames) => Served::Sent(frames),
            Err(e) => Served::Failed(format!("download: {e}")),
        });
    });
    rx
}

const SCRIPT: &str = r#"#!/bin/sh
echo "net-mac=$(cat /sys/class/net/eth0/address)"
echo "net-features=$(cat /sys/class/net/eth0/device/features)"
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ping -c 3 10.0.2.1 && echo net-ping-ok
mkdir -p /tmp/www
dd if=/dev/urandom of=/tmp/www/up bs=1048576 count=16 2>/dev/null
echo "net-up-sum=$(sha256sum /tmp/www/up | cut -d' ' -f1)"
httpd -p 80 -h /tmp/www && echo net-httpd-up
# The host fetches /up first, then serves this download.
nc 10.0.2.1 5002 < /dev/null > /tmp/down
echo "net-down-sum=$(sha256sum /tmp/down | cut -d' ' -f1) size=$(wc -c < /tmp/down | tr -d ' ')"
echo net-done
"#;

#[test]
fn debian_linux_moves_16_mib_each_way_over_a_tap() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIP: {why}");
        return;
    }
    let Some(m) = image_or_skip() else { return };
    let dir = std::env::temp_dir().join(format!("vessel-run-riscv-net-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let mut initrd = vessel_images::initramfs_for(&m).unwrap();
    assert!(
        m.modules.iter().any(|x| x == "virtio_net"),
        "the image's initramfs loads virtio_net: {:?}",
        m.modules
    );
    initrd
        .add_file(
            "/etc/vessel/init.d/10-net",
            SCRIPT.as_bytes().to_vec(),
            0o755,
        )
        .unwrap();
    let initrd_path = dir.join("initrd.gz");
    initrd.write_gz(&initrd_path).unwrap();

    let ns = Netns::create().expect("setting up the test's network namespace");
    let down = pattern(SIZE, 0x6e65_7476_6573_7331);
    let down_sum = sha256_hex(&down);
    let (ready_tx, ready_rx) = mpsc::channel();
    let served = serve(ns.name.clone(), down, ready_tx);
    ready_rx.recv().unwrap().expect("host-side server");

    let s = |p: &Path| p.to_str().unwrap().to_string();
    let start = Instant::now();
    let out = Command::new("timeout")
        .args(["1200", "ip", "netns", "exec", &ns.name, VESSEL])
        .args(["run", "--arch", "riscv64", "--memory", "512M"])
        .args(["--firmware", &s(&m.firmware), "--kernel", &s(&m.kernel)])
        .args(["--initrd", &s(&initrd_path)])
        .args(["--append", "console=ttyS0 panic=-1"])
        .args(["--net", &format!("tap={TAP},mac={MAC}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let console = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- guest console ---\n{console}\n--- stderr ---\n{stderr}---");
    eprintln!(
        "boot to poweroff took {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);

    assert!(out.status.success(), "vessel exited with {}", out.status);
    assert!(console.contains(READY_MARKER), "no {READY_MARKER:?} line");
    assert!(
        console.contains(&format!("net-mac={MAC}")),
        "the guest's eth0 has the --net mac"
    );
    assert!(
        console.contains("net-ping-ok"),
        "the guest's ping of 10.0.2.1 failed"
    );

    // The server posts right after each transfer; a guest that got that far
    // ran for seconds more, so this wait is only a guard against a hang.
    let wait = Duration::from_secs(60);
    let (n, sum, up_frames) = match served.recv_timeout(wait) {
        Ok(Served::Received(n, sum, f)) => (n, sum, f),
        Ok(Served::Failed(e)) => panic!("host-side server: {e}"),
        other => panic!("the host received no upload from the guest: {other:?}"),
    };
    assert_eq!(n, SIZE, "bytes the host received from the guest");
    assert!(
        console.contains("net-httpd-up"),
        "the guest's httpd did not start"
    );
    assert!(
        console.contains(&format!("net-up-sum={sum}")),
        "the sha256 of what the host received ({sum}) is not the guest's"
    );
    let down_frames = match served.recv_timeout(wait) {
        Ok(Served::Sent(f)) => f,
        Ok(Served::Failed(e)) => panic!("host-side server: {e}"),
        other => panic!("the host did not finish the download: {other:?}"),
    };
    assert!(
        console.contains(&format!("net-down-sum={down_sum} size={SIZE}")),
        "the guest's sha256 of the download is not the host's {down_sum}"
    );

    // Offloads: the guest took checksum and TSO offloads (virtio feature
    // bits 0 CSUM, 1 GUEST_CSUM, 7 GUEST_TSO4, 11 HOST_TSO4), and frames
    // larger than the 1514-byte MTU frame crossed the tap both ways, so
    // segmentation really happened on the far side (the checksums above
    // show the result is intact).
    let features = console
        .lines()
        .find_map(|l| l.trim().strip_prefix("net-features="))
        .expect("no net-features line");
    let bit = |b: usize| features.as_bytes().get(b) == Some(&b'1');
    assert!(
        bit(0) && bit(1) && bit(7) && bit(11),
        "negotiated virtio-net features {features}"
    );
    eprintln!(
        "tap: guest->host {} frames, {} bytes on average; host->guest {} frames, {} bytes on average",
        up_frames.packets,
        up_frames.average(),
        down_frames.packets,
        down_frames.average()
    );
    assert!(
        up_frames.average() > 1514,
        "the guest's upload came in MTU-sized frames only: {up_frames:?}"
    );
    assert!(
        down_frames.average() > 1514,
        "the download went out in MTU-sized frames only: {down_frames:?}"
    );
    assert!(console.contains("net-done"));
    drop(ns);
}
