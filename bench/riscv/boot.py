#!/usr/bin/env python3
"""Boot benchmark: vessel's riscv64 emulator against qemu-system-riscv64.

Boots Debian's OpenSBI + kernel + an initramfs whose init prints its first
line ("vessel-init: ready"), runs one script that prints a line and then
powers off (`poweroff -f`). Runs vessel and QEMU interleaved, RUNS times each,
with the same firmware, kernel, initramfs, command line and memory; measures
wall time from process start to the init's first line and to process exit.
Prints a Markdown table. See docs/benchmarks.md ("riscv64 emulator").

Usage: boot.py --vessel PATH --firmware F --kernel K --initrd I [--runs 3]
"""
import argparse
import os
import re
import select
import signal
import statistics
import subprocess
import sys
import time

READY = b"vessel-init: ready"
STATS = re.compile(rb"vessel: (\d+) guest instructions in ([0-9.]+) s")


def run_once(argv, timeout):
    """Start argv; return (t_first_line, t_exit, cpu_time, exit_code, stderr)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    out, err = bytearray(), bytearray()
    t_ready = None
    fds = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    deadline = t0 + timeout
    while fds:
        left = deadline - time.monotonic()
        if left <= 0:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise RuntimeError(f"timed out after {timeout} s: {' '.join(argv)}")
        ready, _, _ = select.select(list(fds), [], [], left)
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                del fds[fd]
                continue
            buf = fds[fd]
            buf += chunk
            if t_ready is None and buf is out and READY in out:
                t_ready = time.monotonic() - t0
    _, status, usage = os.wait4(proc.pid, 0)
    t_exit = time.monotonic() - t0
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    if t_ready is None:
        tail = bytes(out[-2000:]).decode(errors="replace")
        raise RuntimeError(f"no '{READY.decode()}' line (exit {code}):\n{tail}")
    return t_ready, t_exit, cpu, code, bytes(err)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vessel", required=True)
    p.add_argument("--qemu", default="qemu-system-riscv64")
    p.add_argument("--firmware", required=True)
    p.add_argument("--kernel", required=True)
    p.add_argument("--initrd", required=True)
    p.add_argument("--append", default="console=ttyS0")
    p.add_argument("--memory", default="512M")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--timeout", type=float, default=900)
    a = p.parse_args()

    vessel = [a.vessel, "run", "--arch", "riscv64", "--firmware", a.firmware,
              "--kernel", a.kernel, "--initrd", a.initrd, "--append", a.append,
              "--memory", a.memory]
    qemu = [a.qemu, "-M", "virt", "-m", a.memory, "-nographic", "-bios", a.firmware,
            "-kernel", a.kernel, "-initrd", a.initrd, "-append", a.append]
    os.environ["VESSEL_STATS"] = "1"

    res = {"vessel": [], "qemu": []}
    for i in range(a.runs):
        for name, argv in (("vessel", vessel), ("qemu", qemu)):
            t_ready, t_exit, cpu, code, err = run_once(argv, a.timeout)
            ips = None
            m = STATS.search(err)
            if name == "vessel" and m:
                ips = int(m.group(1)) / float(m.group(2))
            res[name].append((t_ready, t_exit, ips, cpu))
            extra = f", {ips / 1e6:.1f} M guest instr/s" if ips else ""
            print(f"run {i + 1} {name}: first line {t_ready:.2f} s, exit {t_exit:.2f} s, "
                  f"CPU {cpu:.2f} s (status {code}){extra}", file=sys.stderr, flush=True)
            if code != 0:
                sys.exit(f"{name} exited with status {code}:\n{err.decode(errors='replace')[-2000:]}")

    def med(name, k):
        return statistics.median(r[k] for r in res[name])

    v_ready, v_exit = med("vessel", 0), med("vessel", 1)
    q_ready, q_exit = med("qemu", 0), med("qemu", 1)
    ips = statistics.median(r[2] for r in res["vessel"] if r[2]) if any(
        r[2] for r in res["vessel"]) else float("nan")
    n = a.runs
    print(f"| median of {n} | vessel | QEMU 7.2 (TCG) | vessel / QEMU |")
    print("| --- | --- | --- | --- |")
    print(f"| start → init's first line | {v_ready:.2f} s | {q_ready:.2f} s | {v_ready / q_ready:.1f}x |")
    print(f"| start → exit (poweroff) | {v_exit:.2f} s | {q_exit:.2f} s | {v_exit / q_exit:.1f}x |")
    v_cpu, q_cpu = med("vessel", 3), med("qemu", 3)
    print(f"| CPU time of the process (user + sys) | {v_cpu:.2f} s | {q_cpu:.2f} s | {v_cpu / max(q_cpu, 1e-9):.1f}x |")
    print(f"| vessel guest instructions/s (VESSEL_STATS, wall) | {ips / 1e6:.1f} M | | |")
    print("\nall runs (first line / exit, s): vessel "
          + ", ".join(f"{r[0]:.2f}/{r[1]:.2f}" for r in res["vessel"])
          + "; QEMU " + ", ".join(f"{r[0]:.2f}/{r[1]:.2f}" for r in res["qemu"]))


if __name__ == "__main__":
    main()
