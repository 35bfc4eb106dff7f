//! The CPU: vendor, model, and the virtualization extensions it advertises.

use serde::Serialize;

use crate::{HostCheckError, Probe};

/// What `/proc/cpuinfo` says about the CPU.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CpuFacts {
    /// `GenuineIntel`, `AuthenticAMD`, ... (or the architecture's equivalent).
    pub vendor: String,
    pub model: String,
    /// Logical CPUs.
    pub count: usize,
    /// Hardware virtualization extensions: `vmx` (Intel VT-x), `svm` (AMD-V).
    pub extensions: Vec<String>,
    /// Second-level address translation: `ept` (Intel) or `npt` (AMD).
    pub slat: Vec<String>,
    /// The CPU says it runs under a hypervisor: this host is itself a VM.
    pub hypervisor: bool,
}

impl CpuFacts {
    pub fn has_extensions(&self) -> bool {
        !self.extensions.is_empty()
    }
}

pub fn probe(probe: &Probe) -> Result<CpuFacts, HostCheckError> {
    Ok(parse_cpuinfo(&probe.read_required("/proc/cpuinfo")?))
}

/// Parse `/proc/cpuinfo` (x86 field names; other architectures fill what they have).
pub fn parse_cpuinfo(text: &str) -> CpuFacts {
    let mut vendor = None;
    let mut model = None;
    let mut flags: Vec<&str> = Vec::new();
    let mut count = 0;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => count += 1,
            "vendor_id" | "mvendorid" if vendor.is_none() => vendor = Some(value.to_string()),
            "model name" | "uarch" if model.is_none() => model = Some(value.to_string()),
            "flags" if flags.is_empty() => flags = value.split_whitespace().collect(),
            _ => {}
        }
    }
    let has = |f: &str| flags.contains(&f);
    let pick = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .filter(|n| has(n))
            .map(|n| n.to_string())
            .collect()
    };
    CpuFacts {
        vendor: vendor.unwrap_or_else(|| "unknown".into()),
        model: model.unwrap_or_else(|| "unknown".into()),
        count: count.max(1),
        extensions: pick(&["vmx", "svm"]),
        slat: pick(&["ept", "npt"]),
        hypervisor: has("hypervisor"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTEL: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz\nflags\t\t: fpu vme vmx ssse3 ept vpid lm\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz\nflags\t\t: fpu vme vmx ssse3 ept vpid lm\n";

    #[test]
    fn intel_with_vtx() {
        let cpu = parse_cpuinfo(INTEL);
        assert_eq!(cpu.vendor, "GenuineIntel");
        assert_eq!(cpu.model, "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz");
        assert_eq!(cpu.count, 2);
        assert_eq!(cpu.extensions, vec!["vmx"]);
        assert_eq!(cpu.slat, vec!["ept"]);
        assert!(!cpu.hypervisor);
        assert!(cpu.has_extensions());
    }

    #[test]
    fn amd_guest_without_svm() {
        let cpu = parse_cpuinfo(
            "processor : 0\nvendor_id : AuthenticAMD\nmodel name : AMD EPYC\nflags : fpu lm hypervisor vmmcall\n",
        );
        assert_eq!(cpu.vendor, "AuthenticAMD");
        assert!(cpu.extensions.is_empty());
        assert!(cpu.hypervisor);
        assert!(!cpu.has_extensions());
    }

    #[test]
    fn flag_names_match_whole_words_only() {
        // "vmxe" or "svm_lock" must not count as vmx/svm.
        let cpu = parse_cpuinfo("processor: 0\nflags: vmxe svm_lock nptx\n");
        assert!(cpu.extensions.is_empty());
        assert!(cpu.slat.is_empty());
    }

    #[test]
    fn garbage_is_not_a_panic() {
        let cpu = parse_cpuinfo("\u{0}\u{1}:::\nflags\nprocessor");
        assert_eq!(cpu.vendor, "unknown");
        assert_eq!(cpu.count, 1);
    }
}
