//! The host check on recorded `/proc` and `/sys` samples of three hosts.

use std::path::PathBuf;

use vessel_hostcheck::container::CgroupMode;
use vessel_hostcheck::{Probe, Report, Verdict, check};

fn recorded(name: &str) -> Report {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    check(&Probe::recorded(dir)).expect("recorded host is complete")
}

#[test]
fn intel_host_with_vtx_and_kvm_intel() {
    let r = recorded("vmx-kvm");
    assert_eq!(r.cpu.vendor, "GenuineIntel");
    assert_eq!(r.cpu.count, 4);
    assert_eq!(r.cpu.extensions, vec!["vmx"]);
    assert!(!r.cpu.hypervisor);
    assert!(r.kvm.present && r.kvm.hardware_assisted);
    assert_eq!(r.kvm.nested_layer, None);
    assert_eq!(r.engines.kvm.verdict, Verdict::Ok, "{:?}", r.engines.kvm);
    assert!(r.engines.kvm.reason.contains("hardware-assisted (vmx)"));
    assert_eq!(r.containers.cgroup.mode, CgroupMode::V2);
    assert!(
        r.containers
            .cgroup
            .controllers
            .contains(&"memory".to_string())
    );
    assert_eq!(
        r.engines.container.verdict,
        Verdict::Ok,
        "{:?}",
        r.engines.container
    );
    assert_eq!(r.engines.emu.verdict, Verdict::Ok);
    assert_eq!(r.pick.x86_64.as_deref(), Some("kvm"));
    assert_eq!(r.pick.riscv64.as_deref(), Some("emu"));
}

#[test]
fn cloud_vm_without_dev_kvm() {
    let r = recorded("no-kvm");
    assert!(r.cpu.extensions.is_empty());
    assert!(r.cpu.hypervisor);
    assert!(!r.kvm.present && !r.kvm.hardware_assisted);
    assert_eq!(r.kvm.guest_speed_ratio, None);
    assert_eq!(r.engines.kvm.verdict, Verdict::Unavailable);
    assert!(r.engines.kvm.reason.contains("/dev/kvm does not exist"));
    let fix = r.engines.kvm.fix.as_deref().unwrap();
    assert!(fix.contains("nested virtualization"), "{fix}");
    // Unprivileged, no overlayfs, no time namespace: containers work partly.
    assert_eq!(r.engines.container.verdict, Verdict::Degraded);
    let reason = &r.engines.container.reason;
    assert!(reason.contains("not running as root"), "{reason}");
    assert!(reason.contains("no time namespaces"), "{reason}");
    assert!(reason.contains("no overlayfs"), "{reason}");
    assert_eq!(r.pick.x86_64, None, "nothing runs x86_64 guests here");
    assert_eq!(r.pick.riscv64.as_deref(), Some("emu"));
}

#[test]
fn nested_kvm_layer_without_extensions() {
    let r = recorded("nested-pvm");
    assert_eq!(r.cpu.vendor, "AuthenticAMD");
    assert!(r.cpu.extensions.is_empty());
    assert!(r.kvm.present && !r.kvm.hardware_assisted);
    assert_eq!(r.kvm.nested_layer.as_deref(), Some("kvm_pvm"));
    assert_eq!(r.engines.kvm.verdict, Verdict::Degraded);
    assert!(r.engines.kvm.reason.contains("kvm_pvm"));
    assert_eq!(r.containers.cgroup.mode, CgroupMode::Hybrid);
    assert_eq!(
        r.containers.cgroup.unified_mount.as_deref(),
        Some("/sys/fs/cgroup/unified")
    );
    assert_eq!(
        r.engines.container.verdict,
        Verdict::Ok,
        "{:?}",
        r.engines.container
    );
    assert_eq!(r.engines.emu.verdict, Verdict::Ok);
    assert_eq!(r.pick.x86_64.as_deref(), Some("kvm"));
}

#[test]
fn a_root_without_proc_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = check(&Probe::recorded(dir.path())).unwrap_err().to_string();
    assert!(err.contains("proc/cpuinfo"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
}
