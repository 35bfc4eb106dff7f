//! The accelerator seam: a board asks an [`Accelerator`] for vCPUs and runs
//! each through the [`Vcpu`] trait, whatever executes the guest's
//! instructions — KVM on the host CPU (`vessel-kvm`) or a software CPU
//! (`vessel-riscv`). This is QEMU's TCG/KVM split and Cloud Hypervisor's
//! `hypervisor` crate, kept narrow: only what both engines really do.
//!
//! What crosses the seam is a [`VcpuExit`]:
//! - a hardware vCPU traps device accesses and hands them out as
//!   [`VcpuExit::Mmio`] / [`VcpuExit::Io`]; [`dispatch`] sends them to the
//!   machine's [`IoBuses`] in one place, so no runner knows which engine it
//!   drives. A software CPU reaches its devices from inside its interpreter
//!   and never returns these;
//! - the rest are events that end a `run` call: the vCPU halted, the guest
//!   powered off or asked for a reset, the guest crashed beyond recovery,
//!   or `run` returned without a guest event (a kick, a time slice used up).
//!
//! Architecture-specific set-up (x86 CPUID, MSRs and registers; RISC-V boot
//! registers) stays with the concrete vCPU type, before the board hands it
//! to a runner that only sees the trait.

use crate::bus::Bus;

/// The direction and data of a trapped device access.
#[derive(Debug, PartialEq, Eq)]
pub enum Access<'a> {
    /// The guest reads: fill `data` (its length is the access size).
    Read(&'a mut [u8]),
    /// The guest writes `data`.
    Write(&'a [u8]),
}

/// Why [`Vcpu::run`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum VcpuExit<'a> {
    /// A memory-mapped device access the engine trapped (hardware vCPUs).
    Mmio { addr: u64, access: Access<'a> },
    /// An x86 port access the engine trapped (hardware vCPUs).
    Io { port: u16, access: Access<'a> },
    /// The vCPU halted (x86 HLT, RISC-V WFI) with no interrupt pending; it
    /// runs again when an interrupt arrives. Whether that ends the VM is
    /// the board's call (KVM without an in-kernel LAPIC: nothing can wake it).
    Halted,
    /// The guest powered the machine off.
    Shutdown,
    /// The guest asked for a reset.
    Reset,
    /// The guest can no longer make progress (an x86 triple fault, a RISC-V
    /// trap vector that itself faults); the text says where and why.
    Crashed(String),
    /// `run` returned without a guest event: the vCPU was kicked (a pause
    /// or stop request) or a software CPU used up its time slice. The
    /// runner checks its run state and calls `run` again.
    Interrupted,
}

/// One virtual CPU, as a runner sees it.
pub trait Vcpu: Send {
    /// What went wrong in the engine (not in the guest).
    type Error: std::error::Error + Send + Sync + 'static;

    /// This vCPU's index in its VM (0 = the boot CPU).
    fn id(&self) -> usize;

    /// Run the guest until the next [`VcpuExit`]. A `Mmio`/`Io` exit
    /// borrows the vCPU: complete it (see [`dispatch`]) before the next call.
    fn run(&mut self) -> Result<VcpuExit<'_>, Self::Error>;
}

/// What creates vCPUs for a VM.
pub trait Accelerator {
    /// The vCPUs this accelerator makes.
    type Vcpu: Vcpu;
    /// Why it could not make one.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Short name for logs and `--engine`: `"kvm"`, `"riscv-interp"`.
    fn name(&self) -> &'static str;

    /// Create vCPU `id` (0 = the boot CPU). Ids must be distinct and below
    /// the accelerator's limit.
    fn create_vcpu(&self, id: usize) -> Result<Self::Vcpu, Self::Error>;
}

/// Where trapped device accesses go.
#[derive(Default)]
pub struct IoBuses {
    /// x86 I/O ports.
    pub pio: Bus,
    /// Memory-mapped devices.
    pub mmio: Bus,
}

/// What the runner does with an exit after [`dispatch`].
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Call [`Vcpu::run`] again (after checking pause/stop requests).
    Run,
    /// An event the board must handle (halt, power-off, reset, crash).
    Event(VcpuEvent),
}

/// The exits that are not device accesses, owned (no borrow of the vCPU).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuEvent {
    Halted,
    Shutdown,
    Reset,
    Crashed(String),
}

/// Complete a device-access exit on `buses` and tell the runner what next.
///
/// Unclaimed reads return all ones and unclaimed writes are dropped, as on
/// a PC or an SoC bus with no decoder: a guest poking at nothing cannot stop
/// the VMM.
pub fn dispatch(exit: VcpuExit<'_>, buses: &IoBuses) -> Next {
    fn access(bus: &Bus, addr: u64, access: Access<'_>) {
        match access {
            Access::Read(data) => {
                if bus.read(addr, data).is_err() {
                    data.fill(0xff);
                }
            }
            Access::Write(data) => {
                let _ = bus.write(addr, data);
            }
        }
    }
    match exit {
        VcpuExit::Mmio { addr, access: a } => {
            access(&buses.mmio, addr, a);
            Next::Run
        }
        VcpuExit::Io { port, access: a } => {
            access(&buses.pio, u64::from(port), a);
            Next::Run
        }
        VcpuExit::Interrupted => Next::Run,
        VcpuExit::Halted => Next::Event(VcpuEvent::Halted),
        VcpuExit::Shutdown => Next::Event(VcpuEvent::Shutdown),
        VcpuExit::Reset => Next::Event(VcpuEvent::Reset),
        VcpuExit::Crashed(why) => Next::Event(VcpuEvent::Crashed(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::BusDevice;
    use std::sync::{Arc, Mutex};

    /// A register file: 8 bytes, reads return what was written.
    struct Reg(Arc<Mutex<[u8; 8]>>);

    impl BusDevice for Reg {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            let r = self.0.lock().unwrap();
            let o = offset as usize;
            data.copy_from_slice(&r[o..o + data.len()]);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            let mut r = self.0.lock().unwrap();
            let o = offset as usize;
            r[o..o + data.len()].copy_from_slice(data);
        }
    }

    /// A scripted vCPU: replays exits the way a hardware vCPU would,
    /// keeping the data buffer of its last access (like KVM's `kvm_run`).
    struct Scripted {
        script: Vec<&'static str>,
        buf: [u8; 4],
    }

    #[derive(Debug, thiserror::Error)]
    #[error("script ran out")]
    struct Done;

    impl Vcpu for Scripted {
        type Error = Done;
        fn id(&self) -> usize {
            3
        }
        fn run(&mut self) -> Result<VcpuExit<'_>, Done> {
            let step = if self.script.is_empty() {
                return Err(Done);
            } else {
                self.script.remove(0)
            };
            Ok(match step {
                "mmio-write" => {
                    self.buf = 0x1234_5678u32.to_le_bytes();
                    VcpuExit::Mmio {
                        addr: 0x1000,
                        access: Access::Write(&self.buf),
                    }
                }
                "mmio-read" => VcpuExit::Mmio {
                    addr: 0x1000,
                    access: Access::Read(&mut self.buf),
                },
                "io-read-nothing" => VcpuExit::Io {
                    port: 0x80,
                    access: Access::Read(&mut self.buf[..2]),
                },
                "kick" => VcpuExit::Interrupted,
                "hlt" => VcpuExit::Halted,
                "reset" => VcpuExit::Reset,
                "off" => VcpuExit::Shutdown,
                _ => VcpuExit::Crashed(format!("vCPU {}: bad step", self.id())),
            })
        }
    }

    /// The engine-neutral loop a runner writes: run, dispatch, repeat.
    fn drive<V: Vcpu>(vcpu: &mut V, buses: &IoBuses) -> Result<Vec<VcpuEvent>, V::Error> {
        let mut events = Vec::new();
        loop {
            match vcpu.run() {
                Ok(exit) => {
                    if let Next::Event(e) = dispatch(exit, buses) {
                        events.push(e);
                    }
                }
                Err(e) => {
                    return if events.is_empty() {
                        Err(e)
                    } else {
                        Ok(events)
                    };
                }
            }
        }
    }

    #[test]
    fn mmio_exits_reach_the_bus_and_reads_come_back() {
        let reg = Arc::new(Mutex::new([0u8; 8]));
        let mut buses = IoBuses::default();
        buses
            .mmio
            .insert(0x1000, 8, Arc::new(Mutex::new(Reg(reg.clone()))))
            .unwrap();
        let mut v = Scripted {
            script: vec!["mmio-write", "kick", "mmio-read", "io-read-nothing", "hlt"],
            buf: [0; 4],
        };
        let events = drive(&mut v, &buses).unwrap();
        assert_eq!(reg.lock().unwrap()[..4], 0x1234_5678u32.to_le_bytes());
        assert_eq!(events, vec![VcpuEvent::Halted]);
        // The unclaimed port read filled only its two bytes with ones; the
        // rest is the MMIO read's data, read back from the register.
        assert_eq!(v.buf, [0xff, 0xff, 0x34, 0x12]);
    }

    #[test]
    fn events_are_handed_to_the_board() {
        let buses = IoBuses::default();
        let mut v = Scripted {
            script: vec!["off", "reset", "hlt", "boom"],
            buf: [0; 4],
        };
        assert_eq!(
            drive(&mut v, &buses).unwrap(),
            vec![
                VcpuEvent::Shutdown,
                VcpuEvent::Reset,
                VcpuEvent::Halted,
                VcpuEvent::Crashed("vCPU 3: bad step".into()),
            ]
        );
    }

    #[test]
    fn unclaimed_writes_are_dropped_and_engine_errors_surface() {
        let buses = IoBuses::default();
        let mut v = Scripted {
            script: vec!["mmio-write"],
            buf: [0; 4],
        };
        // No device at 0x1000: the write is dropped, the loop goes on, and
        // the engine's own error reaches the caller.
        assert!(drive(&mut v, &buses).is_err());
    }
}
