//! KVM: is `/dev/kvm` there, can vessel open it, and is it really
//! hardware-assisted? The last question is answered by measurement: a tiny
//! guest runs a counted loop, and its speed is compared with the same loop on
//! the host.

mod speed;

use serde::Serialize;

use crate::Probe;
use crate::cpu::CpuFacts;

pub use speed::{GuestSpeed, SpeedError, measure_guest_speed};

/// The KVM modules whose presence says which back end serves `/dev/kvm`.
const MODULES: [&str; 4] = ["kvm", "kvm_intel", "kvm_amd", "kvm_pvm"];

/// What vessel found out about KVM.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KvmFacts {
    /// `/dev/kvm` exists.
    pub present: bool,
    /// vessel could open it (read-write), when probed live.
    pub openable: Option<bool>,
    /// Why it could not be opened.
    pub open_error: Option<String>,
    /// `KVM_GET_API_VERSION` (12 on every Linux since 2.6.22).
    pub api_version: Option<i32>,
    /// The most vCPUs one VM may have.
    pub max_vcpus: Option<usize>,
    /// Loaded KVM modules (`kvm_intel`, `kvm_amd`, `kvm_pvm`, ...).
    pub modules: Vec<String>,
    /// A nested software layer serves `/dev/kvm` instead of VT-x/AMD-V.
    pub nested_layer: Option<String>,
    /// Guests run on VT-x/AMD-V: the CPU has the extension and KVM's
    /// hardware module drives it.
    pub hardware_assisted: bool,
    /// Guest loop speed divided by the host's speed on the same loop (1.0 is
    /// native speed); `null` when no guest could be run.
    pub guest_speed_ratio: Option<f64>,
    /// Guest instructions per second measured on that loop.
    pub guest_instructions_per_second: Option<f64>,
    /// Why the speed measurement did not run or failed.
    pub speed_error: Option<String>,
}

pub fn probe(probe: &Probe, cpu: &CpuFacts) -> KvmFacts {
    let present = probe.exists("/dev/kvm");
    let modules: Vec<String> = MODULES
        .iter()
        .filter(|m| probe.exists(&format!("/sys/module/{m}")))
        .map(|m| m.to_string())
        .collect();
    let has = |m: &str| modules.iter().any(|x| x == m);
    let nested_layer = has("kvm_pvm").then(|| "kvm_pvm".to_string());
    let hw_module = (cpu.extensions.iter().any(|e| e == "vmx") && has("kvm_intel"))
        || (cpu.extensions.iter().any(|e| e == "svm") && has("kvm_amd"));
    let mut facts = KvmFacts {
        present,
        openable: None,
        open_error: None,
        api_version: None,
        max_vcpus: None,
        modules,
        nested_layer,
        hardware_assisted: present && hw_module,
        guest_speed_ratio: None,
        guest_instructions_per_second: None,
        speed_error: None,
    };
    if !probe.is_live() || !present {
        return facts;
    }
    match kvm_ioctls::Kvm::new() {
        Ok(kvm) => {
            facts.openable = Some(true);
            facts.api_version = Some(kvm.get_api_version());
            facts.max_vcpus = Some(kvm.get_max_vcpus());
            match measure_guest_speed(&kvm) {
                Ok(speed) => {
                    facts.guest_speed_ratio = Some(speed.ratio());
                    facts.guest_instructions_per_second = Some(speed.guest_instructions_per_second);
                }
                Err(e) => facts.speed_error = Some(e.to_string()),
            }
        }
        Err(e) => {
            facts.openable = Some(false);
            facts.open_error = Some(e.to_string());
        }
    }
    // A hardware module that runs guests at a small fraction of the host's
    // speed is not giving hardware assistance, whatever it is called.
    if let Some(ratio) = facts.guest_speed_ratio
        && ratio < speed::HARDWARE_MIN_RATIO
    {
        facts.hardware_assisted = false;
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::parse_cpuinfo;

    fn fake_root(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            if f.starts_with("sys/module/") {
                std::fs::create_dir_all(&p).unwrap();
            } else {
                std::fs::write(&p, "").unwrap();
            }
        }
        dir
    }

    #[test]
    fn hardware_needs_both_the_flag_and_the_module() {
        let vmx = parse_cpuinfo("processor: 0\nflags: vmx ept\n");
        let root = fake_root(&["dev/kvm", "sys/module/kvm", "sys/module/kvm_intel"]);
        let facts = probe(&Probe::recorded(root.path()), &vmx);
        assert!(facts.present && facts.hardware_assisted);
        assert_eq!(facts.modules, vec!["kvm", "kvm_intel"]);
        assert_eq!(facts.nested_layer, None);
        assert_eq!(facts.guest_speed_ratio, None, "recorded hosts run no guest");

        let plain = parse_cpuinfo("processor: 0\nflags: lm hypervisor\n");
        let root = fake_root(&["dev/kvm", "sys/module/kvm", "sys/module/kvm_pvm"]);
        let facts = probe(&Probe::recorded(root.path()), &plain);
        assert!(facts.present && !facts.hardware_assisted);
        assert_eq!(facts.nested_layer.as_deref(), Some("kvm_pvm"));
    }

    #[test]
    fn no_dev_kvm() {
        let svm = parse_cpuinfo("processor: 0\nflags: svm npt\n");
        let root = fake_root(&["sys/module/kvm_amd"]);
        let facts = probe(&Probe::recorded(root.path()), &svm);
        assert!(!facts.present && !facts.hardware_assisted);
    }
}
