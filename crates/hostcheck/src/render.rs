//! The host check as people read it: aligned, with a reason for anything
//! that is not `ok`.

use std::fmt::Write;

use crate::Report;
use crate::container::CgroupMode;
use crate::verdict::{EngineVerdict, Verdict, format_ratio};

const W: usize = 20;

pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    let mut row = |k: &str, v: &str| {
        let _ = writeln!(out, "  {k:<W$} {v}");
    };
    let yes = |b: bool| if b { "yes" } else { "no" };

    let mut text = String::new();
    let _ = writeln!(text, "Host");
    let cpu = &r.cpu;
    row("architecture", &r.host.arch);
    row("kernel", r.host.kernel.as_deref().unwrap_or("unknown"));
    row("running as root", yes(r.host.root));
    row(
        "CPU",
        &format!("{} ({}), {} logical CPUs", cpu.model, cpu.vendor, cpu.count),
    );
    row(
        "VT-x / AMD-V",
        &if cpu.has_extensions() {
            let slat = if cpu.slat.is_empty() {
                String::new()
            } else {
                format!(", {}", cpu.slat.join(", "))
            };
            format!("yes ({}{slat})", cpu.extensions.join(", "))
        } else {
            "no (neither vmx nor svm in the CPU flags)".into()
        },
    );
    row("host is a VM", yes(cpu.hypervisor));

    let k = &r.kvm;
    row(
        "/dev/kvm",
        &match (k.present, k.openable) {
            (false, _) => "missing".to_string(),
            (true, Some(false)) => format!(
                "present, cannot open: {}",
                k.open_error.as_deref().unwrap_or("?")
            ),
            (true, _) => {
                let api = k
                    .api_version
                    .map(|v| format!(", API {v}"))
                    .unwrap_or_default();
                let max = k
                    .max_vcpus
                    .map(|v| format!(", up to {v} vCPUs"))
                    .unwrap_or_default();
                format!("present{api}{max}")
            }
        },
    );
    if !k.modules.is_empty() {
        row("KVM modules", &k.modules.join(", "));
    }
    if k.present {
        row(
            "hardware-assisted",
            &match (&k.hardware_assisted, &k.nested_layer) {
                (true, _) => "yes".to_string(),
                (false, Some(m)) => format!("no: nested software layer {m}"),
                (false, None) => "no".to_string(),
            },
        );
    }
    if let Some(ratio) = k.guest_speed_ratio {
        let ips = k.guest_instructions_per_second.unwrap_or(0.0);
        row(
            "guest speed",
            &format!(
                "{} of host ({:.1} M instructions/s)",
                format_ratio(ratio),
                ips / 1e6
            ),
        );
    } else if let Some(e) = &k.speed_error {
        row("guest speed", &format!("not measured: {e}"));
    }

    let c = &r.containers;
    let ns_ok: Vec<&str> = c
        .namespaces
        .iter()
        .filter(|(_, v)| **v)
        .map(|(n, _)| n.as_str())
        .collect();
    let missing = c.missing_namespaces();
    row(
        "namespaces",
        &if missing.is_empty() {
            format!("all ({})", ns_ok.join(", "))
        } else {
            format!("{}; missing: {}", ns_ok.join(", "), missing.join(", "))
        },
    );
    let mode = match c.cgroup.mode {
        CgroupMode::V1 => "v1",
        CgroupMode::V2 => "v2",
        CgroupMode::Hybrid => "hybrid (v1 controllers + v2 tree)",
        CgroupMode::None => "not mounted",
    };
    row("cgroups", mode);
    if !c.cgroup.controllers.is_empty() {
        row("cgroup controllers", &c.cgroup.controllers.join(", "));
    }
    row("overlayfs", yes(c.overlayfs));
    row("seccomp", yes(c.seccomp));
    row("/dev/net/tun", yes(c.tun));
    text.push_str(&out);

    let _ = writeln!(text, "\nEngines");
    let engine = |text: &mut String, name: &str, e: &EngineVerdict| {
        let _ = writeln!(text, "  {name:<10} {:<12} {}", e.verdict.as_str(), e.reason);
        if e.verdict != Verdict::Ok
            && let Some(fix) = &e.fix
        {
            let _ = writeln!(text, "  {:<10} {:<12} what to do: {fix}", "", "");
        }
    };
    engine(&mut text, "emu", &r.engines.emu);
    engine(&mut text, "kvm", &r.engines.kvm);
    engine(&mut text, "container", &r.engines.container);

    let _ = writeln!(text, "\nvessel run picks");
    let pick = |arch: &str, p: &Option<String>| match p {
        Some(e) => format!("  {arch:<10} {e}"),
        None => format!("  {arch:<10} none: no engine here runs {arch} guests"),
    };
    let _ = writeln!(text, "{}", pick("riscv64", &r.pick.riscv64));
    let mut x86 = pick("x86_64", &r.pick.x86_64);
    if r.pick.x86_64.is_some() && r.engines.kvm.verdict == Verdict::Degraded {
        x86.push_str(" (degraded: it runs, but slowly; see above)");
    }
    let _ = writeln!(text, "{x86}");
    text
}
