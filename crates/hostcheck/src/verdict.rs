//! From facts to a verdict per engine, and the engine `vessel run` picks.

use serde::Serialize;

use crate::HostFacts;
use crate::container::{CgroupMode, ContainerFacts};
use crate::cpu::CpuFacts;
use crate::kvm::KvmFacts;

/// How well an engine can work on this host.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Works fully.
    Ok,
    /// Works, but slowly or partly: the reason says why.
    Degraded,
    /// Cannot work: the reason says why, `fix` what to do.
    Unavailable,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Degraded => "degraded",
            Verdict::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EngineVerdict {
    pub verdict: Verdict,
    pub reason: String,
    /// What to do about a verdict that is not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl EngineVerdict {
    fn ok(reason: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Ok,
            reason: reason.into(),
            fix: None,
        }
    }
    fn degraded(reason: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Degraded,
            reason: reason.into(),
            fix: Some(fix.into()),
        }
    }
    fn unavailable(reason: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Unavailable,
            reason: reason.into(),
            fix: Some(fix.into()),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Engines {
    pub emu: EngineVerdict,
    pub kvm: EngineVerdict,
    pub container: EngineVerdict,
}

/// The engine `vessel run --engine auto` takes for a guest of each
/// architecture (`null`: none can run it here).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Pick {
    pub riscv64: Option<String>,
    pub x86_64: Option<String>,
}

pub fn judge(
    host: &HostFacts,
    cpu: &CpuFacts,
    kvm: &KvmFacts,
    containers: &ContainerFacts,
) -> Engines {
    Engines {
        emu: EngineVerdict::ok(
            "RISC-V RV64GC machine emulated in software: needs no CPU extension",
        ),
        kvm: judge_kvm(host, cpu, kvm),
        container: judge_container(host, containers),
    }
}

fn judge_kvm(host: &HostFacts, cpu: &CpuFacts, kvm: &KvmFacts) -> EngineVerdict {
    let no_ext_fix = if cpu.has_extensions() {
        format!(
            "load KVM's module for this CPU: modprobe {}",
            if cpu.extensions.iter().any(|e| e == "svm") {
                "kvm_amd"
            } else {
                "kvm_intel"
            }
        )
    } else if cpu.hypervisor {
        "this host is a VM without VT-x/AMD-V: enable nested virtualization on its host".into()
    } else {
        "enable VT-x/AMD-V in the firmware (BIOS/UEFI) setup, then load kvm_intel or kvm_amd".into()
    };
    if host.arch != "x86_64" {
        return EngineVerdict::unavailable(
            format!(
                "vessel's KVM engine runs x86_64 guests on x86_64 hosts; this is {}",
                host.arch
            ),
            "run riscv64 guests on the emu engine",
        );
    }
    if !kvm.present {
        return EngineVerdict::unavailable("/dev/kvm does not exist", no_ext_fix);
    }
    if kvm.openable == Some(false) {
        return EngineVerdict::unavailable(
            format!(
                "cannot open /dev/kvm: {}",
                kvm.open_error.as_deref().unwrap_or("unknown error")
            ),
            "run as root, or add your user to the group that owns /dev/kvm (usually kvm)",
        );
    }
    if let Some(v) = kvm.api_version
        && v != 12
    {
        return EngineVerdict::unavailable(
            format!("/dev/kvm speaks API version {v}, vessel needs 12"),
            "use a Linux kernel whose KVM has the stable API (2.6.22 or later)",
        );
    }
    if let Some(err) = &kvm.speed_error {
        return EngineVerdict::unavailable(
            format!("a test guest could not run: {err}"),
            "check dmesg for KVM errors",
        );
    }
    let speed = kvm.guest_speed_ratio.map(|r| {
        let ips = kvm.guest_instructions_per_second.unwrap_or(0.0);
        format!(
            "a test guest ran at {} of the host's speed ({:.1} M instructions/s)",
            format_ratio(r),
            ips / 1e6
        )
    });
    if kvm.hardware_assisted {
        let ext = cpu.extensions.join("/");
        return EngineVerdict::ok(match speed {
            Some(s) => format!("hardware-assisted ({ext}); {s}"),
            None => format!("hardware-assisted ({ext})"),
        });
    }
    let layer = match &kvm.nested_layer {
        Some(m) => format!("a nested software layer ({m})"),
        None => "KVM without hardware support".to_string(),
    };
    let mut reason = format!("the CPU has no VT-x/AMD-V: /dev/kvm is served by {layer}");
    if let Some(s) = speed {
        reason.push_str("; ");
        reason.push_str(&s);
        if let Some(r) = kvm.guest_speed_ratio.filter(|r| *r > 0.0) {
            reason.push_str(&format!(", about {:.0}x slower", 1.0 / r));
        }
    }
    reason.push_str(": small guests run, Linux guests are too slow to boot");
    EngineVerdict::degraded(reason, no_ext_fix)
}

fn judge_container(host: &HostFacts, c: &ContainerFacts) -> EngineVerdict {
    let missing = c.missing_namespaces();
    if missing.contains(&"mount") || missing.contains(&"pid") {
        return EngineVerdict::unavailable(
            format!("the kernel cannot create {} namespaces", missing.join(", ")),
            "use a kernel built with CONFIG_NAMESPACES, PID_NS and mount namespaces",
        );
    }
    if c.cgroup.mode == CgroupMode::None {
        return EngineVerdict::unavailable(
            "no cgroup filesystem is mounted",
            "mount cgroup2 on /sys/fs/cgroup (mount -t cgroup2 none /sys/fs/cgroup)",
        );
    }
    let mut gaps = Vec::new();
    if !host.root {
        gaps.push(
            "not running as root (vessel-runtime needs root; rootless is not supported yet)"
                .to_string(),
        );
    }
    if !missing.is_empty() {
        gaps.push(format!("no {} namespaces", missing.join(", ")));
    }
    for ctl in ["memory", "cpu", "pids"] {
        if !c.cgroup.controllers.iter().any(|x| x == ctl) {
            gaps.push(format!("no {ctl} cgroup controller"));
        }
    }
    if !c.overlayfs {
        gaps.push("no overlayfs (copy-on-write image layers)".into());
    }
    if !c.seccomp {
        gaps.push("no seccomp (system call filters are skipped)".into());
    }
    let mode = match c.cgroup.mode {
        CgroupMode::V1 => "v1",
        CgroupMode::V2 => "v2",
        CgroupMode::Hybrid => "hybrid",
        CgroupMode::None => "none",
    };
    if gaps.is_empty() {
        EngineVerdict::ok(format!(
            "all namespaces, cgroups {mode}, overlayfs and seccomp are available"
        ))
    } else {
        EngineVerdict::degraded(
            gaps.join("; "),
            if host.root {
                "enable the missing kernel features (see the reason)"
            } else {
                "run vessel as root"
            },
        )
    }
}

pub fn pick(host: &HostFacts, engines: &Engines) -> Pick {
    let usable = |v: &EngineVerdict| v.verdict != Verdict::Unavailable;
    let native_kvm = |arch: &str| host.arch == arch && usable(&engines.kvm);
    Pick {
        riscv64: if native_kvm("riscv64") {
            Some("kvm")
        } else {
            Some("emu")
        }
        .map(String::from),
        x86_64: native_kvm("x86_64").then(|| "kvm".to_string()),
    }
}

/// A ratio for people: 0.00067 → "1/1500", 0.93 → "0.93".
pub fn format_ratio(r: f64) -> String {
    if r > 0.0 && r < 0.1 {
        format!("1/{:.0}", 1.0 / r)
    } else {
        format!("{r:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_ratios_read_as_fractions() {
        assert_eq!(format_ratio(0.0005), "1/2000");
        assert_eq!(format_ratio(0.93), "0.93");
        assert_eq!(format_ratio(0.0), "0.00");
    }
}
