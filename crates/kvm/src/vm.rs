//! A KVM virtual machine: the `/dev/kvm` handle, the VM file descriptor,
//! guest memory slots, the in-kernel interrupt controller and PIT, and the
//! vCPU file descriptors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vessel_machine::GuestMemoryMmap;
use vessel_machine::vm_memory::{
    GuestAddress, GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress,
};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::irq::IrqFd;

/// The device node KVM is normally reached through.
pub const DEFAULT_KVM_PATH: &str = "/dev/kvm";

/// Errors of creating and configuring a KVM VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(
        "cannot open {path}: {source}; KVM needs the kvm module loaded (kvm_intel or kvm_amd) \
         and read/write access to the device (run as root or join the kvm group); \
         `vessel host-check` says whether this host has KVM"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("KVM API version {0} is not the stable version 12 this VMM speaks")]
    ApiVersion(i32),
    #[error("cannot create a KVM VM: {0}")]
    CreateVm(#[source] kvm_ioctls::Error),
    #[error(
        "{requested} vCPUs asked for, but this host's KVM allows at most {max} per VM: \
         ask for fewer vCPUs"
    )]
    TooManyVcpus { requested: usize, max: usize },
    #[error("cannot register guest memory slot {slot} ({size:#x} bytes at {base:#x}): {source}")]
    MemorySlot {
        slot: u32,
        base: u64,
        size: u64,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error(
        "guest memory has {regions} regions but KVM offers only {max} memory slots: \
         use fewer memory regions"
    )]
    TooManySlots { regions: usize, max: usize },
    #[error("cannot create the in-kernel {what}: {source}")]
    Irqchip {
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("cannot create an eventfd for {what}: {source}")]
    EventFd {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot register an irqfd for GSI {gsi}: {source}")]
    Irqfd {
        gsi: u32,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("cannot register an ioeventfd at {addr:#x}: {source}")]
    Ioeventfd {
        addr: u64,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("cannot create vCPU {id}: {source}")]
    CreateVcpu {
        id: u64,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("cannot read the CPUID leaves KVM supports: {0}")]
    SupportedCpuid(#[source] kvm_ioctls::Error),
}

/// Where an ioeventfd listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoEventSpace {
    /// An x86 I/O port.
    Pio(u16),
    /// A guest-physical MMIO address.
    Mmio(u64),
}

/// One KVM virtual machine.
pub struct KvmVm {
    kvm: Kvm,
    fd: Arc<VmFd>,
}

impl KvmVm {
    /// Open KVM at `path` (normally [`DEFAULT_KVM_PATH`]) and create an empty VM.
    pub fn new(path: &Path) -> Result<Self, VmError> {
        use std::os::unix::ffi::OsStrExt;
        let open_error = |source| VmError::Open {
            path: path.to_path_buf(),
            source,
        };
        let cpath = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| open_error(kvm_ioctls::Error::new(libc::EINVAL)))?;
        let kvm = Kvm::new_with_path(cpath.as_c_str()).map_err(open_error)?;
        let version = kvm.get_api_version();
        if version != 12 {
            return Err(VmError::ApiVersion(version));
        }
        let fd = kvm.create_vm().map_err(VmError::CreateVm)?;
        Ok(Self {
            kvm,
            fd: Arc::new(fd),
        })
    }

    /// The KVM system handle.
    pub fn kvm(&self) -> &Kvm {
        &self.kvm
    }

    /// The VM file descriptor.
    pub fn fd(&self) -> &Arc<VmFd> {
        &self.fd
    }

    /// The most vCPUs KVM accepts in one VM on this host.
    pub fn max_vcpus(&self) -> usize {
        self.kvm.get_max_vcpus()
    }

    /// Refuse a vCPU count this host's KVM cannot run, before creating any.
    pub fn check_vcpu_count(&self, requested: usize) -> Result<(), VmError> {
        let max = self.max_vcpus();
        if requested == 0 || requested > max {
            return Err(VmError::TooManyVcpus { requested, max });
        }
        Ok(())
    }

    /// Give the guest its memory: one KVM memory slot per region.
    ///
    /// `memory` must outlive the VM: keep it alongside the [`KvmVm`].
    pub fn register_memory(&self, memory: &GuestMemoryMmap) -> Result<(), VmError> {
        let regions = memory.num_regions();
        let max = self.kvm.get_nr_memslots();
        if regions > max {
            return Err(VmError::TooManySlots { regions, max });
        }
        for (slot, region) in memory.iter().enumerate() {
            let slot = slot as u32;
            let base = region.start_addr().0;
            let size = region.len();
            let host = region
                .get_host_address(MemoryRegionAddress(0))
                .map_err(|_| VmError::MemorySlot {
                    slot,
                    base,
                    size,
                    source: kvm_ioctls::Error::new(libc::EFAULT),
                })?;
            let desc = kvm_userspace_memory_region {
                slot,
                guest_phys_addr: base,
                memory_size: size,
                userspace_addr: host as u64,
                flags: 0,
            };
            // SAFETY: the region is a live mapping of `size` bytes owned by
            // `memory`, which the caller keeps alive as long as the VM (the
            // board stores both together and drops the VM first).
            unsafe { self.fd.set_user_memory_region(desc) }.map_err(|source| {
                VmError::MemorySlot {
                    slot,
                    base,
                    size,
                    source,
                }
            })?;
        }
        Ok(())
    }

    /// Create the in-kernel interrupt controllers (PIC, IOAPIC, a LAPIC per
    /// vCPU) and the PIT. Must come before any vCPU is created.
    #[cfg(target_arch = "x86_64")]
    pub fn create_irqchip_and_pit(&self, tss_address: u64) -> Result<(), VmError> {
        self.fd
            .set_tss_address(tss_address as usize)
            .map_err(|source| VmError::Irqchip {
                what: "TSS area",
                source,
            })?;
        self.fd
            .create_irq_chip()
            .map_err(|source| VmError::Irqchip {
                what: "IRQ chip (PIC, IOAPIC, LAPIC)",
                source,
            })?;
        let pit = kvm_bindings::kvm_pit_config {
            flags: kvm_bindings::KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        self.fd.create_pit2(pit).map_err(|source| VmError::Irqchip {
            what: "PIT (i8254)",
            source,
        })
    }

    /// An interrupt line into GSI `gsi` of the in-kernel irqchip, backed by an irqfd.
    pub fn irqfd(&self, gsi: u32) -> Result<Arc<IrqFd>, VmError> {
        let event = EventFd::new(EFD_NONBLOCK).map_err(|source| VmError::EventFd {
            what: "an irqfd",
            source,
        })?;
        self.fd
            .register_irqfd(&event, gsi)
            .map_err(|source| VmError::Irqfd { gsi, source })?;
        Ok(Arc::new(IrqFd::new(event, gsi)))
    }

    /// An eventfd KVM signals, without leaving the guest, whenever the guest
    /// writes to `addr` (a virtio queue notify register, for instance):
    /// any write, or with `datamatch` only a 4-byte write of that value.
    pub fn ioeventfd(
        &self,
        addr: IoEventSpace,
        datamatch: Option<u32>,
    ) -> Result<EventFd, VmError> {
        let event = EventFd::new(EFD_NONBLOCK).map_err(|source| VmError::EventFd {
            what: "an ioeventfd",
            source,
        })?;
        let (kaddr, raw) = match addr {
            IoEventSpace::Pio(port) => (
                kvm_ioctls::IoEventAddress::Pio(u64::from(port)),
                u64::from(port),
            ),
            IoEventSpace::Mmio(a) => (kvm_ioctls::IoEventAddress::Mmio(a), a),
        };
        match datamatch {
            Some(value) => self.fd.register_ioevent(&event, &kaddr, value),
            None => self
                .fd
                .register_ioevent(&event, &kaddr, kvm_ioctls::NoDatamatch),
        }
        .map_err(|source| VmError::Ioeventfd { addr: raw, source })?;
        Ok(event)
    }

    /// Create vCPU `id` (its APIC id on x86).
    pub fn create_vcpu(&self, id: u64) -> Result<VcpuFd, VmError> {
        self.fd
            .create_vcpu(id)
            .map_err(|source| VmError::CreateVcpu { id, source })
    }

    /// The CPUID leaves KVM can present to a guest on this host.
    #[cfg(target_arch = "x86_64")]
    pub fn supported_cpuid(&self) -> Result<kvm_bindings::CpuId, VmError> {
        self.kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map_err(VmError::SupportedCpuid)
    }
}

/// Whether guest address `addr` is backed by guest RAM.
pub fn is_ram(memory: &GuestMemoryMmap, addr: u64) -> bool {
    memory.address_in_range(GuestAddress(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_device_node_is_a_clear_error() {
        let err = KvmVm::new(Path::new("/nonexistent/kvm"))
            .err()
            .expect("must fail");
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/kvm"), "{msg}");
        assert!(msg.contains("host-check"), "{msg}");
    }

    #[test]
    fn vcpu_counts_beyond_kvm_are_refused() {
        let vm = match KvmVm::new(Path::new(DEFAULT_KVM_PATH)) {
            Ok(vm) => vm,
            Err(e) => {
                eprintln!("skipped: no usable KVM here: {e}");
                return;
            }
        };
        let max = vm.max_vcpus();
        assert!(max >= 1);
        vm.check_vcpu_count(1).unwrap();
        vm.check_vcpu_count(max).unwrap();
        let err = vm.check_vcpu_count(max + 1).unwrap_err();
        assert!(
            matches!(err, VmError::TooManyVcpus { requested, max: m } if requested == max + 1 && m == max)
        );
        assert!(vm.check_vcpu_count(0).is_err());
    }

    #[test]
    fn memory_irqchip_and_irqfd_register() {
        let vm = match KvmVm::new(Path::new(DEFAULT_KVM_PATH)) {
            Ok(vm) => vm,
            Err(e) => {
                eprintln!("skipped: no usable KVM here: {e}");
                return;
            }
        };
        let mem = vessel_machine::create_guest_memory(&[(0, 1 << 20), (1 << 32, 1 << 20)]).unwrap();
        vm.register_memory(&mem).unwrap();
        assert!(is_ram(&mem, 0x1000));
        assert!(!is_ram(&mem, 0x20_0000));
        #[cfg(target_arch = "x86_64")]
        vm.create_irqchip_and_pit(0xfffb_d000).unwrap();
        let line = vm.irqfd(4).unwrap();
        assert_eq!(line.gsi(), 4);
        vm.ioeventfd(IoEventSpace::Mmio(0xd000_0050), None).unwrap();
        vm.ioeventfd(IoEventSpace::Mmio(0xd000_1050), Some(1))
            .unwrap();
        vm.create_vcpu(0).unwrap();
    }
}
