#!/usr/bin/env python3
"""Paravirtual I/O benchmark: vessel's virtio-blk and virtio-net against QEMU's.

Boots the same riscv64 guest (Debian's OpenSBI + kernel + the image's busybox
initramfs) under vessel and under qemu-system-riscv64 -M virt, interleaved,
RUNS times each, with one virtio-blk disk and one virtio-net NIC on a tap.
In the guest:

  - dd if=/dev/zero of=/dev/vda bs=1M count=N oflag=direct   (disk write)
  - dd if=/dev/vda of=/dev/null bs=1M count=N iflag=direct    (disk read)
  - busybox httpd serves a NET_MIB file from tmpfs, which this script
    fetches over HTTP/1.0                                       (TCP guest -> host)
  - nc HOST 5002 > /dev/null                                  (TCP host -> guest)

Disk MB/s come from the guest's /proc/uptime read before and after each dd
(10 ms resolution; the guest clock follows the host's wall clock on both
VMMs); TCP MB/s are measured by this script on the host side: the
fetch from the request to end of stream, the download from accept to the
guest's close after the last byte.

Must run inside a network namespace whose tap TAP has HOST/24 (io.sh sets
that up). Prints a Markdown table; MB = 10^6 bytes.

Usage: io.py --vessel PATH --firmware F --kernel K --initrd-dir D ...
"""
import argparse
import os
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HOST = "10.0.2.1"
GUEST = "10.0.2.15"
DOWN_PORT = 5002
STAMP = re.compile(rb"^(bench-disk-(?:write|read|end)) ([0-9.]+)\r?$", re.M)
KSYMS = re.compile(rb"^bench-kallsyms ([0-9]+)\r?$", re.M)



class Server:
    """One listener per direction; each run is one connection on each."""

    def __init__(self, net_bytes):
        self.net_bytes = net_bytes
        self.down = socket.create_server((HOST, DOWN_PORT), reuse_port=True)
        self.results = {}

    def start(self):
        self.results = {}
        self.walls = {}
        self.fetched = threading.Event()
        threading.Thread(target=self._upload, daemon=True).start()
        threading.Thread(target=self._download, daemon=True).start()

    def _upload(self):
        deadline = time.monotonic() + 3600
        while True:
            try:
                conn = socket.create_connection((GUEST, 80), timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.5)
        with conn:
            conn.settimeout(None)
            w0 = time.time()
            t0 = time.monotonic()
            conn.sendall(b"GET /up HTTP/1.0\r\n\r\n")
            n, head = 0, b""
            while True:
                b = conn.recv(1 << 20)
                if not b:
                    break
                if head is not None:
                    head += b
                    end = head.find(b"\r\n\r\n")
                    if end < 0:
                        continue
                    n += len(head) - end - 4
                    head = None
                else:
                    n += len(b)
            t1 = time.monotonic()
        self.walls["up"] = (w0, time.time())
        self.results["up"] = (n, t1 - t0)
        self.fetched.set()

    def _download(self):
        conn, _ = self.down.accept()
        # The guest's download waits for the fetch, so they never overlap.
        self.fetched.wait()
        with conn:
            w0 = time.time()
            t0 = time.monotonic()
            chunk = b"\x5a" * (1 << 20)
            left = self.net_bytes
            while left > 0:
                k = min(left, len(chunk))
                conn.sendall(chunk[:k])
                left -= k
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(65536):
                pass
            t1 = time.monotonic()
        self.walls["down"] = (w0, time.time())
        self.results["down"] = (self.net_bytes, t1 - t0)


def run_once(argv, timeout, marks=None):
    """Run argv to its end; return (stdout, stderr, cpu seconds). The Unix
    time at which each bench-disk stamp first showed goes into `marks`."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    out, err = bytearray(), bytearray()
    fds = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    deadline = time.monotonic() + timeout
    while fds:
        left = deadline - time.monotonic()
        if left <= 0:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise RuntimeError(f"timed out after {timeout} s: {' '.join(argv)}\n"
                               + bytes(out[-3000:]).decode(errors="replace"))
        ready, _, _ = select.select(list(fds), [], [], left)
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                del fds[fd]
            else:
                fds[fd] += chunk
                if marks is not None and fd == proc.stdout.fileno():
                    for m in STAMP.finditer(out):
                        marks.setdefault(m.group(1).decode(), time.time())
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"exit {code}: {' '.join(argv)}\n{bytes(err).decode(errors='replace')}"
                           + bytes(out[-3000:]).decode(errors="replace"))
    return bytes(out), bytes(err), usage.ru_utime + usage.ru_stime


def disk_rates(out, nbytes):
    """(write, read) MB/s from the guest's /proc/uptime stamps around each dd."""
    t = {m.group(1).decode(): float(m.group(2)) for m in STAMP.finditer(out)}
    if len(t) != 3:
        raise RuntimeError("no bench-disk stamps:\n" + out[-3000:].decode(errors="replace"))
    w = t["bench-disk-read"] - t["bench-disk-write"]
    r = t["bench-disk-end"] - t["bench-disk-read"]
    return nbytes / max(w, 0.01) / 1e6, nbytes / max(r, 0.01) / 1e6


def save_profile_extras(profile, disk, out, started, marks, walls):
    """PROFILE.phases: `name t0 t1` per phase (Unix seconds);
    PROFILE.kallsyms: the guest's symbols, which it left at the disk's start."""
    phases = [("run", started, time.time())]
    if len(marks) == 3:
        phases += [("disk-write", marks["bench-disk-write"], marks["bench-disk-read"]),
                   ("disk-read", marks["bench-disk-read"], marks["bench-disk-end"])]
    for name, key in (("net-up", "up"), ("net-down", "down")):
        if key in walls:
            phases.append((name, *walls[key]))
    with open(profile + ".phases", "w") as f:
        for name, t0, t1 in phases:
            f.write(f"{name} {t0:.3f} {t1:.3f}\n")
            print(f"phase {name} {t0:.3f} {t1:.3f} ({t1 - t0:.2f} s)", file=sys.stderr)
    m = KSYMS.search(out)
    if m:
        with open(disk, "rb") as f:
            symbols = f.read(int(m.group(1)))
        with open(profile + ".kallsyms", "wb") as f:
            f.write(symbols)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vessel", required=True)
    p.add_argument("--qemu", default="qemu-system-riscv64")
    p.add_argument("--firmware", required=True)
    p.add_argument("--kernel", required=True)
    p.add_argument("--initrd", required=True, help="initramfs with the bench script")
    p.add_argument("--disk", required=True, help="raw disk image of at least DISK_MIB")
    p.add_argument("--tap", required=True)
    p.add_argument("--memory", default="512M")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--net-mib", type=int, default=32)
    p.add_argument("--disk-mib", type=int, default=256)
    p.add_argument("--plain", action="store_true",
                   help="also run both with net offloads off (vessel offload=off; QEMU csum, "
                        "TSO and mrg_rxbuf off)")
    p.add_argument("--only", help="run only the tools whose name starts with this "
                   "(vessel or QEMU); prints rates, no ratios")
    p.add_argument("--stats", action="store_true",
                   help="print the guest's TCP, interrupt and interface counters per run")
    p.add_argument("--timeout", type=float, default=1800)
    a = p.parse_args()

    server = Server(a.net_mib << 20)
    mac = "52:54:00:12:34:58"
    # No crypto self-tests: they run in the background after boot (about
    # 1.2 billion guest instructions of RSA on this kernel) and on the
    # slower VMM spilled into the disk-write phase.
    append = "console=ttyS0 panic=-1 cryptomgr.notests"
    vessel = [a.vessel, "run", "--arch", "riscv64", "--memory", a.memory,
              "--firmware", a.firmware, "--kernel", a.kernel, "--initrd", a.initrd,
              "--append", append, "--disk", f"{a.disk},format=raw",
              "--net", f"tap={a.tap},mac={mac}"]
    qemu_base = [a.qemu, "-M", "virt", "-m", a.memory, "-smp", "1", "-nographic",
                 "-no-reboot", "-bios", a.firmware, "-kernel", a.kernel, "-initrd", a.initrd,
                 "-append", append,
                 "-drive", f"file={a.disk},format=raw,if=none,id=d0",
                 "-device", "virtio-blk-device,drive=d0",
                 "-netdev", f"tap,id=n0,ifname={a.tap},script=no,downscript=no"]
    qemu_net = f"virtio-net-device,netdev=n0,mac={mac}"
    tools = [("vessel", vessel), ("QEMU", qemu_base + ["-device", qemu_net])]
    if a.plain:
        plain = ",".join(f"{o}=off" for o in ("csum", "guest_csum", "host_tso4", "host_tso6",
                                              "guest_tso4", "guest_tso6", "mrg_rxbuf"))
        tools += [("vessel, offload=off", vessel[:-1] + [vessel[-1] + ",offload=off"]),
                  ("QEMU, offloads off", qemu_base + ["-device", f"{qemu_net},{plain}"])]
    if a.only:
        tools = [t for t in tools if t[0].startswith(a.only)]
        if not tools:
            p.error(f"--only {a.only}: no such tool (vessel or QEMU)")
    keys = ["disk write", "disk read", "TCP guest→host", "TCP host→guest"]
    results = {name: {k: [] for k in keys + ["cpu"]} for name, _ in tools}
    for i in range(a.runs):
        for name, argv in tools:
            server.start()
            marks = {}
            started = time.time()
            out, err, cpu = run_once(argv, a.timeout, marks)
            r = results[name]
            w, rd = disk_rates(out, a.disk_mib << 20)
            r["disk write"].append(w)
            r["disk read"].append(rd)
            if b"bench-done" not in out:
                raise RuntimeError(f"{name}: no bench-done:\n{out[-3000:].decode(errors='replace')}")
            deadline = time.monotonic() + 30
            while len(server.results) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            for k, d in (("TCP guest→host", "up"), ("TCP host→guest", "down")):
                n, secs = server.results.get(d, (0, 0.0))
                if n != a.net_mib << 20 or secs <= 0:
                    raise RuntimeError(f"{name}: {d} moved {n} bytes in {secs} s")
                r[k].append(n / secs / 1e6)
            r["cpu"].append(cpu)
            profile = os.environ.get("VESSEL_PROFILE")
            if profile and name.startswith("vessel"):
                save_profile_extras(profile, a.disk, out, started, marks, server.walls)
            if a.stats:
                for line in out.splitlines():
                    if line.startswith(b"bench-stat "):
                        print(f"{name}: " + line[11:].decode(errors="replace").rstrip(),
                              file=sys.stderr)
            print(f"run {i + 1} {name}: " + ", ".join(
                f"{k} {r[k][-1]:.2f} MB/s" for k in keys) + f", CPU {cpu:.1f} s",
                file=sys.stderr, flush=True)

    med = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in results.items()}
    if a.only:
        for name, _ in tools:
            print(f"{name}: " + ", ".join(f"{k} {med[name][k]:.2f} MB/s" for k in keys)
                  + f", CPU {med[name]['cpu']:.1f} s")
        return
    pairs = [(tools[i][0], tools[i + 1][0]) for i in range(0, len(tools), 2)]
    head = "| |" + "".join(f" {v} | {q} | ratio |" for v, q in pairs)
    print(head)
    print("|" + " --- |" * (1 + 3 * len(pairs)))
    for k in keys:
        row = f"| {k}, MB/s (median of {a.runs}) |"
        for v, q in pairs:
            row += f" {med[v][k]:.2f} | {med[q][k]:.2f} | {med[v][k] / med[q][k]:.2f} |"
        print(row)
    row = "| process CPU time (user+sys), s |"
    for v, q in pairs:
        row += f" {med[v]['cpu']:.1f} | {med[q]['cpu']:.1f} | |"
    print(row)
    for name, _ in tools:
        for k in keys:
            print(f"{name} {k}: " + " ".join(f"{x:.2f}" for x in results[name][k]),
                  file=sys.stderr)


if __name__ == "__main__":
    main()
