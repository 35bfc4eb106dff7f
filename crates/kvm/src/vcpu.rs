//! The KVM side of the accelerator seam: [`KvmVcpu`] is a
//! [`vessel_machine::Vcpu`] (one `KVM_RUN` per `run`, its exits mapped to
//! [`VcpuExit`]), and [`KvmVm`] is an [`Accelerator`] that creates them.

use kvm_ioctls::{VcpuExit as KvmExit, VcpuFd};
use vessel_machine::{Accelerator, Access, Vcpu, VcpuExit};

use crate::vm::{KvmVm, VmError};

/// What went wrong in KVM itself (not in the guest).
#[derive(Debug, thiserror::Error)]
pub enum KvmVcpuError {
    #[error(
        "vCPU {id}: KVM could not enter the guest (hardware reason {reason:#x} on host CPU {cpu})"
    )]
    FailEntry { id: usize, reason: u64, cpu: u32 },
    #[error("vCPU {id}: KVM internal error (an instruction the host cannot emulate?)")]
    Internal { id: usize },
    #[error("vCPU {id}: system event {kind} that vessel does not handle")]
    SystemEvent { id: usize, kind: u32 },
    #[error("vCPU {id}: unexpected exit {exit}")]
    Unexpected { id: usize, exit: String },
    #[error("vCPU {id}: KVM_RUN failed: {source}")]
    Run {
        id: usize,
        #[source]
        source: kvm_ioctls::Error,
    },
}

/// A KVM vCPU behind the seam. Architecture set-up (registers, CPUID, MSRs)
/// goes through [`fd`](Self::fd) before the vCPU is handed to a runner.
pub struct KvmVcpu {
    id: usize,
    fd: VcpuFd,
}

impl KvmVcpu {
    /// Wrap a vCPU KVM created as number `id`.
    pub fn new(id: usize, fd: VcpuFd) -> Self {
        Self { id, fd }
    }

    /// The KVM file descriptor, for architecture set-up.
    pub fn fd(&self) -> &VcpuFd {
        &self.fd
    }
}

impl Vcpu for KvmVcpu {
    type Error = KvmVcpuError;

    fn id(&self) -> usize {
        self.id
    }

    fn run(&mut self) -> Result<VcpuExit<'_>, KvmVcpuError> {
        let id = self.id;
        match self.fd.run() {
            Ok(exit) => map_exit(id, exit),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                Ok(VcpuExit::Interrupted)
            }
            Err(source) => Err(KvmVcpuError::Run { id, source }),
        }
    }
}

/// kvm-ioctls' exit as vessel's engine-neutral one.
fn map_exit(id: usize, exit: KvmExit<'_>) -> Result<VcpuExit<'_>, KvmVcpuError> {
    Ok(match exit {
        KvmExit::IoOut(port, data) => VcpuExit::Io {
            port,
            access: Access::Write(data),
        },
        KvmExit::IoIn(port, data) => VcpuExit::Io {
            port,
            access: Access::Read(data),
        },
        KvmExit::MmioWrite(addr, data) => VcpuExit::Mmio {
            addr,
            access: Access::Write(data),
        },
        KvmExit::MmioRead(addr, data) => VcpuExit::Mmio {
            addr,
            access: Access::Read(data),
        },
        KvmExit::Hlt => VcpuExit::Halted,
        KvmExit::Shutdown => VcpuExit::Crashed(format!(
            "vCPU {id}: the guest triple-faulted (KVM_EXIT_SHUTDOWN)"
        )),
        KvmExit::SystemEvent(kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN, _) => VcpuExit::Shutdown,
        KvmExit::SystemEvent(kvm_bindings::KVM_SYSTEM_EVENT_RESET, _) => VcpuExit::Reset,
        KvmExit::SystemEvent(kind, _) => return Err(KvmVcpuError::SystemEvent { id, kind }),
        KvmExit::Intr => VcpuExit::Interrupted,
        KvmExit::FailEntry(reason, cpu) => {
            return Err(KvmVcpuError::FailEntry { id, reason, cpu });
        }
        KvmExit::InternalError => return Err(KvmVcpuError::Internal { id }),
        other => {
            return Err(KvmVcpuError::Unexpected {
                id,
                exit: format!("{other:?}"),
            });
        }
    })
}

impl Accelerator for KvmVm {
    type Vcpu = KvmVcpu;
    type Error = VmError;

    fn name(&self) -> &'static str {
        "kvm"
    }

    fn create_vcpu(&self, id: usize) -> Result<KvmVcpu, VmError> {
        let fd = KvmVm::create_vcpu(self, id as u64)?;
        Ok(KvmVcpu::new(id, fd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_and_mmio_exits_keep_their_data() {
        let mut buf = [1u8, 2];
        match map_exit(0, KvmExit::IoOut(0x3f8, &buf[..1])).unwrap() {
            VcpuExit::Io {
                port: 0x3f8,
                access: Access::Write(d),
            } => assert_eq!(d, [1]),
            other => panic!("{other:?}"),
        }
        match map_exit(0, KvmExit::MmioRead(0xd000_0000, &mut buf)).unwrap() {
            VcpuExit::Mmio {
                addr: 0xd000_0000,
                access: Access::Read(d),
            } => d.fill(9),
            other => panic!("{other:?}"),
        }
        assert_eq!(buf, [9, 9]);
    }

    #[test]
    fn guest_events_and_kvm_failures() {
        assert_eq!(map_exit(0, KvmExit::Hlt).unwrap(), VcpuExit::Halted);
        assert_eq!(map_exit(0, KvmExit::Intr).unwrap(), VcpuExit::Interrupted);
        let off = KvmExit::SystemEvent(kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN, &[]);
        assert_eq!(map_exit(0, off).unwrap(), VcpuExit::Shutdown);
        let reset = KvmExit::SystemEvent(kvm_bindings::KVM_SYSTEM_EVENT_RESET, &[]);
        assert_eq!(map_exit(0, reset).unwrap(), VcpuExit::Reset);
        match map_exit(2, KvmExit::Shutdown).unwrap() {
            VcpuExit::Crashed(why) => assert!(why.contains("vCPU 2") && why.contains("triple")),
            other => panic!("{other:?}"),
        }
        let err = map_exit(1, KvmExit::FailEntry(0x21, 3)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "vCPU 1: KVM could not enter the guest (hardware reason 0x21 on host CPU 3)"
        );
        assert!(matches!(
            map_exit(1, KvmExit::InternalError),
            Err(KvmVcpuError::Internal { id: 1 })
        ));
        assert!(matches!(
            map_exit(1, KvmExit::SystemEvent(99, &[])),
            Err(KvmVcpuError::SystemEvent { id: 1, kind: 99 })
        ));
    }
}
