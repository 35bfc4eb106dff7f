#!/usr/bin/env python3
"""Top guest functions from a vessel guest profile (VESSEL_PROFILE=PATH).

Usage: profile.py PROFILE SYMBOLS [--from T0] [--to T1] [--phase NAME] [--top N]

PROFILE is the file the riscv64 board writes (see
crates/boards/src/riscv64/profile.rs); SYMBOLS is a System.map or the
guest's /proc/kallsyms (lines `addr type name [module]`; module symbols
count too). --from/--to keep the windows whose middle lies in [T0, T1]
(Unix seconds); --phase NAME takes T0 and T1 from PROFILE.phases (lines
`name t0 t1`, written by bench/devices/io.py). Prints the share of samples
per function (kernel pcs are mapped to the symbol below them; user-mode
samples are one line per privilege), and for the chosen windows the
instructions per second, idle time, the run-loop thread's CPU time and its
MMIO accesses.
"""
import argparse
import bisect
import collections
import sys

PRIVS = {"U": "user", "S": "supervisor", "M": "machine (OpenSBI)"}


def load_symbols(path):
    """Sorted (addr, name) of text symbols."""
    syms = []
    with open(path, errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3 or parts[1] not in "tTwW":
                continue
            try:
                addr = int(parts[0], 16)
            except ValueError:
                continue
            if addr == 0:
                continue
            name = parts[2]
            if len(parts) > 3:
                name += " " + parts[3]
            syms.append((addr, name))
    syms.sort()
    return syms


def read_windows(path):
    """[(start, end, samples, instructions, idle, [(priv, pc, count)])]."""
    windows = []
    cur = None
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts or parts[0].startswith("#") or parts[0] == "total":
                continue
            if parts[0] == "window":
                kv = dict(zip(parts[3::2], parts[4::2]))
                cur = (float(parts[1]), float(parts[2]), int(kv["samples"]),
                       int(kv["instructions"]), float(kv["idle"]), [],
                       float(kv.get("user", 0)), float(kv.get("sys", 0)), int(kv.get("mmio", 0)))
                windows.append(cur)
            elif cur is not None and len(parts) == 3:
                cur[5].append((parts[0], int(parts[1], 16), int(parts[2])))
    return windows


def phase_times(profile, name):
    with open(profile + ".phases") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[0] == name:
                return float(parts[1]), float(parts[2])
    sys.exit(f"{profile}.phases: no phase {name}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("profile")
    p.add_argument("symbols")
    p.add_argument("--from", dest="t0", type=float, default=float("-inf"))
    p.add_argument("--to", dest="t1", type=float, default=float("inf"))
    p.add_argument("--phase")
    p.add_argument("--top", type=int, default=25)
    a = p.parse_args()
    if a.phase:
        a.t0, a.t1 = phase_times(a.profile, a.phase)

    syms = load_symbols(a.symbols)
    addrs = [s[0] for s in syms]
    chosen = [w for w in read_windows(a.profile) if a.t0 <= (w[0] + w[1]) / 2 <= a.t1]
    if not chosen:
        sys.exit("no windows in that time range")
    funcs = collections.Counter()
    privs = collections.Counter()
    total = 0
    for rows in (w[5] for w in chosen):
        for priv, pc, count in rows:
            total += count
            privs[priv] += count
            if priv != "S" or not syms:
                funcs[f"[{PRIVS.get(priv, priv)}]"] += count
                continue
            i = bisect.bisect_right(addrs, pc) - 1
            funcs[syms[i][1] if i >= 0 else f"[unknown {pc:#x}]"] += count
    span = chosen[-1][1] - chosen[0][0]
    insts = sum(w[3] for w in chosen)
    idle = sum(w[4] for w in chosen)
    user = sum(w[6] for w in chosen)
    system = sum(w[7] for w in chosen)
    mmio = sum(w[8] for w in chosen)
    print(f"{len(chosen)} windows, {span:.2f} s, {total} samples, "
          f"{insts / max(span, 1e-9) / 1e6:.1f} M guest instructions/s, idle {idle:.2f} s")
    print(f"run-loop thread: user {user:.2f} s, sys {system:.2f} s "
          f"({insts / max(user + system, 1e-9) / 1e6:.1f} M instructions per CPU s); "
          f"{mmio} MMIO accesses ({mmio / max(span, 1e-9):.0f}/s, "
          f"one per {insts / max(mmio, 1):.0f} instructions)")
    print("by privilege: " + ", ".join(
        f"{PRIVS.get(k, k)} {100 * v / total:.1f}%" for k, v in privs.most_common()))
    for name, count in funcs.most_common(a.top):
        print(f"{100 * count / total:6.2f}%  {count:8d}  {name}")


if __name__ == "__main__":
    main()
