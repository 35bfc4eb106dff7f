//! Bad input gets one clear error each, before any guest runs.

mod common;

use std::path::PathBuf;

use common::{Capture, build_guest, config, kvm_usable};
use vessel_kvm::VmError;
use vessel_x86::{BootError, Error, Microvm, VmConfig};

#[test]
fn no_kvm_device_is_a_clear_error() {
    let mut cfg = VmConfig::new("/nonexistent/vmlinux");
    cfg.kvm_path = PathBuf::from("/nonexistent/dev/kvm");
    let err = Microvm::new(cfg).err().expect("no KVM, no VM");
    assert!(matches!(err, Error::Kvm(VmError::Open { .. })), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent/dev/kvm") && msg.contains("host-check"),
        "{msg}"
    );
}

#[test]
fn more_vcpus_than_kvm_allows_is_a_clear_error() {
    if !kvm_usable("more_vcpus_than_kvm_allows_is_a_clear_error") {
        return;
    }
    let max = vessel_kvm::KvmVm::new(std::path::Path::new("/dev/kvm"))
        .unwrap()
        .max_vcpus();
    let mut cfg = VmConfig::new("/nonexistent/vmlinux");
    cfg.vcpus = max + 1;
    let err = Microvm::new(cfg).err().expect("too many vCPUs");
    match &err {
        Error::Kvm(VmError::TooManyVcpus { requested, max: m }) => {
            assert_eq!((*requested, *m), (max + 1, max));
        }
        other => panic!("wrong error: {other}"),
    }
    assert!(err.to_string().contains("fewer vCPUs"));
    // Within KVM's limit but beyond what the board's MP table describes.
    if max > 32 {
        let mut cfg = VmConfig::new("/nonexistent/vmlinux");
        cfg.vcpus = 33;
        let err = Microvm::new(cfg)
            .err()
            .expect("too many vCPUs for the board");
        assert!(matches!(err, Error::MpTable(_)), "{err}");
    }
}

#[test]
fn a_kernel_that_is_neither_elf_nor_bzimage_is_a_clear_error() {
    if !kvm_usable("a_kernel_that_is_neither_elf_nor_bzimage_is_a_clear_error") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("notakernel");
    std::fs::write(&kernel, vec![0x5a; 8192]).unwrap();
    let err = Microvm::new(VmConfig::new(&kernel))
        .err()
        .expect("not a kernel");
    assert!(
        matches!(err, Error::Boot(BootError::NotAKernel { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("notakernel"));
    let missing = Microvm::new(VmConfig::new(dir.path().join("missing")))
        .err()
        .expect("no kernel");
    assert!(
        matches!(missing, Error::Boot(BootError::Open { .. })),
        "{missing}"
    );
}

#[test]
fn an_initrd_that_does_not_fit_is_a_clear_error() {
    if !kvm_usable("an_initrd_that_does_not_fit_is_a_clear_error") {
        return;
    }
    let Some(guest) = build_guest("bootparams") else {
        return;
    };
    let capture = Capture::default();
    let mut cfg = config(&guest, &capture);
    let initrd = guest.dir.path().join("huge.img");
    let f = std::fs::File::create(&initrd).unwrap();
    f.set_len(cfg.memory).unwrap(); // sparse: as big as all of guest RAM
    drop(f);
    cfg.initrd = Some(initrd);
    let err = Microvm::new(cfg).err().expect("initrd too big");
    assert!(
        matches!(err, Error::Boot(BootError::InitrdTooBig { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("huge.img"));
}

#[test]
fn too_little_memory_is_a_clear_error() {
    if !kvm_usable("too_little_memory_is_a_clear_error") {
        return;
    }
    let mut cfg = VmConfig::new("/nonexistent/vmlinux");
    cfg.memory = 1 << 20;
    let err = Microvm::new(cfg).err().expect("1 MiB is too little");
    assert!(matches!(err, Error::MemoryTooSmall(_)), "{err}");
}
