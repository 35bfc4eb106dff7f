//! The x86_64 microvm on KVM: build it from a [`VmConfig`], start its vCPU
//! threads, pause, resume, stop or wait for the guest to end.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use vessel_kvm::{
    DEFAULT_KVM_PATH, ExitReason, IoBuses, IoEventSpace, IrqFd, KvmVcpu, KvmVm, RunError,
    RunningVcpus, VmControl, VmError,
};
use vessel_machine::{
    Accelerator, BusDevice, BusError, GuestMemoryMmap, MemoryError, create_guest_memory,
};

use vessel_devices::block::{BlockError, DiskSpec};
use vessel_devices::net::FrameBackend;
use vessel_devices::virtio::net::{Net, NetError};
use vessel_devices::{VirtioDevice, VirtioMmio};

use crate::acpi::{self, AcpiError};
use crate::boot::{BootError, BootInfo, load_linux};
use crate::cpu::{CpuError, setup_boot_vcpu_long_mode, setup_vcpu, write_boot_tables};
use crate::layout::{
    KVM_TSS_ADDRESS, MIN_MEMORY, MMIO_GAP_END, VIRTIO_MMIO_SLOT, VIRTIO_MMIO_START, ram_ranges,
};
use crate::legacy::{
    I8042, I8042_PORT, I8042_PORT_LEN, SERIAL_IRQ, SERIAL_PORT, SERIAL_PORT_LEN, SerialDevice,
    SerialOut,
};
use crate::mptable::{self, MpTableError};
use crate::notify::{self, NotifyWorker};

/// Errors of building and running a microvm.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kvm(#[from] VmError),
    #[error("guest memory: {0}")]
    Memory(#[from] MemoryError),
    #[error(
        "guest memory of {0} bytes is too small: give the guest at least {min} MiB",
        min = MIN_MEMORY >> 20
    )]
    MemoryTooSmall(u64),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error(transparent)]
    Cpu(#[from] CpuError),
    #[error(transparent)]
    MpTable(#[from] MpTableError),
    #[error(transparent)]
    Acpi(#[from] AcpiError),
    #[error("cannot place a device: {0}")]
    Bus(#[from] BusError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("no virtio-mmio slot left: the microvm has room for {} devices", mptable::IOAPIC_PINS as u32 - VIRTIO_FIRST_GSI)]
    NoVirtioSlot,
    #[error("network device {index}: {source}")]
    Net {
        index: usize,
        #[source]
        source: NetError,
    },
    #[error("disk {path}: {source}")]
    Disk {
        path: PathBuf,
        #[source]
        source: BlockError,
    },
}

/// A virtio-net card for the guest: a frame back end (a tap, or one end of
/// a datagram socket) and its MAC address.
pub struct NetConfig {
    pub backend: Box<dyn FrameBackend>,
    pub mac: [u8; 6],
}

impl NetConfig {
    /// A card on the tap `spec` names (created if missing), with its MAC or
    /// a random 52:54:00:xx:xx:xx one.
    pub fn tap(spec: &vessel_devices::net::NetSpec) -> Result<Self, vessel_devices::net::TapError> {
        Ok(Self {
            backend: Box::new(vessel_devices::net::Tap::open(&spec.tap)?),
            mac: spec
                .mac
                .unwrap_or_else(vessel_devices::virtio::net::random_mac),
        })
    }
}

/// Console input for the guest's serial port; usable while the VM runs.
#[derive(Clone)]
pub struct SerialInput {
    serial: Arc<Mutex<SerialDevice>>,
}

impl SerialInput {
    /// Queue `bytes` for the guest; returns how many fit in the receive FIFO
    /// (0 while it is full: try again once the guest has read some).
    pub fn send(&self, bytes: &[u8]) -> usize {
        self.serial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .enqueue_input(bytes)
    }

    /// Queue all of `bytes`, waiting while the FIFO is full (as a slow
    /// serial line would), until `give_up` says the guest is gone.
    pub fn send_all(&self, mut bytes: &[u8], give_up: &dyn Fn() -> bool) {
        while !bytes.is_empty() {
            let sent = self.send(bytes);
            bytes = &bytes[sent..];
            if sent == 0 {
                if give_up() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
    }

    /// Forward everything read from `input` (stdin, usually) on a thread
    /// named `vessel-serial-in`, waiting while the guest's FIFO is full.
    pub fn forward_from(
        self,
        mut input: impl std::io::Read + Send + 'static,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("vessel-serial-in".into())
            .spawn(move || {
                let mut buf = [0u8; 256];
                while let Ok(n) = input.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    self.send_all(&buf[..n], &|| false);
                }
            })
    }
}

/// What to run.
pub struct VmConfig {
    /// ELF vmlinux or bzImage.
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub cmdline: String,
    /// Guest RAM in bytes.
    pub memory: u64,
    pub vcpus: usize,
    /// The KVM device node (normally `/dev/kvm`).
    pub kvm_path: PathBuf,
    /// Where the guest's serial console output goes.
    pub serial_out: SerialOut,
    /// Where its input comes from (stdin for an interactive console): read
    /// on a `vessel-serial-in` thread. `None`: no console input.
    pub serial_in: Option<Box<dyn std::io::Read + Send>>,
    /// virtio-blk disks, in the order the guest sees them (vda, vdb, …):
    /// raw or qcow2 images, read-only or not, with a serial or not, as
    /// `vessel run --disk PATH[,ro][,format=raw|qcow2][,serial=ID]` gives them.
    pub disks: Vec<DiskSpec>,
    /// virtio-net cards, after the disks in the virtio-mmio slots.
    pub nets: Vec<NetConfig>,
    /// Further virtio devices (a virtio-console, a virtio-rng, …), after the
    /// network cards in the virtio-mmio slots.
    pub virtio: Vec<Box<dyn VirtioDevice>>,
    /// Describe the machine in ACPI tables too (CPUs, IOAPIC, COM1, virtio
    /// slots), for kernels without MP-table or `virtio_mmio.device=` support.
    pub acpi: bool,
}

/// The command line a Linux guest of this board needs: the serial console,
/// reboot through the i8042 (a clean exit), and no waiting on panic.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=1 pci=off";

impl VmConfig {
    /// 128 MiB, one vCPU, console on stdout, the default command line.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        Self {
            kernel: kernel.into(),
            initrd: None,
            cmdline: DEFAULT_CMDLINE.to_string(),
            memory: 128 << 20,
            vcpus: 1,
            kvm_path: PathBuf::from(DEFAULT_KVM_PATH),
            serial_out: Box::new(std::io::stdout()),
            serial_in: None,
            disks: Vec::new(),
            nets: Vec::new(),
            virtio: Vec::new(),
            acpi: true,
        }
    }
}

/// A virtio-mmio slot handed to a device: its MMIO window and its GSI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioSlot {
    pub base: u64,
    pub len: u64,
    pub gsi: u32,
}

/// First GSI used for virtio-mmio devices (ISA IRQs 0–4 are taken or legacy).
const VIRTIO_FIRST_GSI: u32 = 5;

/// How many virtio-mmio slots the microvm has: one per IOAPIC pin from
/// [`VIRTIO_FIRST_GSI`] up.
pub const VIRTIO_SLOTS: u32 = mptable::IOAPIC_PINS as u32 - VIRTIO_FIRST_GSI;

/// The `n`th virtio-mmio slot.
pub(crate) fn virtio_slot(n: u32) -> Result<MmioSlot, Error> {
    if n >= VIRTIO_SLOTS {
        return Err(Error::NoVirtioSlot);
    }
    let base = VIRTIO_MMIO_START + u64::from(n) * VIRTIO_MMIO_SLOT;
    let gsi = VIRTIO_FIRST_GSI + n;
    if base + VIRTIO_MMIO_SLOT > MMIO_GAP_END {
        return Err(Error::NoVirtioSlot);
    }
    Ok(MmioSlot {
        base,
        len: VIRTIO_MMIO_SLOT,
        gsi,
    })
}

/// Put a virtio device behind a virtio-mmio transport in `slot`: its
/// interrupt on an irqfd, its queue notifications on ioeventfds served by a
/// worker thread.
fn attach_virtio(
    vm: &KvmVm,
    buses: &mut IoBuses,
    memory: &GuestMemoryMmap,
    slot: MmioSlot,
    device: Box<dyn VirtioDevice>,
) -> Result<NotifyWorker, Error> {
    let queues = device.queue_max_sizes().len() as u32;
    let irq: Arc<dyn vessel_machine::IrqLine> = vm.irqfd(slot.gsi)?;
    let dev = Arc::new(Mutex::new(VirtioMmio::new(memory.clone(), device, irq)));
    buses.mmio.insert(slot.base, slot.len, dev.clone())?;
    let mut events = Vec::new();
    for q in 0..queues {
        let addr = IoEventSpace::Mmio(slot.base + notify::QUEUE_NOTIFY);
        events.push((q, vm.ioeventfd(addr, Some(q))?));
    }
    let n = (slot.base - VIRTIO_MMIO_START) / VIRTIO_MMIO_SLOT;
    NotifyWorker::spawn(format!("vessel-virtio{n}"), dev, events).map_err(|e| {
        Error::Run(RunError::Spawn {
            id: n,
            reason: format!("virtio notification worker: {e}"),
        })
    })
}

/// A microvm, built and ready to start.
pub struct Microvm {
    vcpus: Vec<KvmVcpu>,
    buses: IoBuses,
    control: VmControl,
    serial: Arc<Mutex<SerialDevice>>,
    boot: BootInfo,
    virtio_slots: u32,
    workers: Vec<NotifyWorker>,
    vm: KvmVm,
    memory: GuestMemoryMmap,
}

impl Microvm {
    /// Create the VM, load the kernel and boot data, and set up the devices
    /// and vCPUs. Nothing runs until [`start`](Self::start).
    pub fn new(config: VmConfig) -> Result<Self, Error> {
        let vm = KvmVm::new(&config.kvm_path)?;
        vm.check_vcpu_count(config.vcpus)?;
        let cpus = u8::try_from(config.vcpus)
            .ok()
            .filter(|&n| n <= mptable::MAX_VCPUS)
            .ok_or(MpTableError::TooManyCpus(config.vcpus))?;
        if config.memory < MIN_MEMORY {
            return Err(Error::MemoryTooSmall(config.memory));
        }
        let memory = create_guest_memory(&ram_ranges(config.memory))?;
        vm.register_memory(&memory)?;
        vm.create_irqchip_and_pit(KVM_TSS_ADDRESS)?;

        let control = VmControl::new();
        let mut buses = IoBuses::default();
        let serial = Arc::new(Mutex::new(SerialDevice::new(
            vm.irqfd(SERIAL_IRQ)?,
            config.serial_out,
        )));
        buses
            .pio
            .insert(SERIAL_PORT, SERIAL_PORT_LEN, serial.clone())?;
        buses.pio.insert(
            I8042_PORT,
            I8042_PORT_LEN,
            Arc::new(Mutex::new(I8042::new(control.clone()))),
        )?;

        // virtio-mmio devices: one 4 KiB slot and one GSI each. Kernels with
        // virtio_mmio built in find them on the command line.
        let mut cmdline = config.cmdline.clone();
        let mut virtio_slots = 0;
        let mut slots = Vec::new();
        let mut workers = Vec::new();
        // Open every disk and card first: a bad one is an error before any
        // device thread starts.
        let mut devices: Vec<Box<dyn VirtioDevice>> = Vec::new();
        for disk in &config.disks {
            let block = disk.open().map_err(|source| Error::Disk {
                path: disk.path.clone(),
                source,
            })?;
            devices.push(Box::new(block));
        }
        for (index, net) in config.nets.into_iter().enumerate() {
            let dev =
                Net::new(net.backend, net.mac).map_err(|source| Error::Net { index, source })?;
            devices.push(Box::new(dev));
        }
        devices.extend(config.virtio);
        for device in devices {
            let slot = virtio_slot(virtio_slots)?;
            virtio_slots += 1;
            slots.push(slot);
            workers.push(attach_virtio(&vm, &mut buses, &memory, slot, device)?);
            cmdline.push_str(&format!(
                " virtio_mmio.device=4K@{:#x}:{}",
                slot.base, slot.gsi
            ));
        }

        let boot = load_linux(
            &memory,
            config.memory,
            &config.kernel,
            config.initrd.as_deref(),
            cmdline.trim_start(),
        )?;
        write_boot_tables(&memory)?;
        mptable::write(&memory, usize::from(cpus))?;
        if config.acpi {
            acpi::write(&memory, cpus, &slots)?;
        }

        let supported = vm.supported_cpuid()?;
        let mut vcpus = Vec::with_capacity(usize::from(cpus));
        for id in 0..cpus {
            // Through the accelerator seam; the x86 set-up then uses the
            // KVM file descriptor, before the runner sees only `Vcpu`.
            let vcpu = Accelerator::create_vcpu(&vm, usize::from(id))?;
            setup_vcpu(vcpu.fd(), id, cpus, &supported)?;
            if id == 0 {
                setup_boot_vcpu_long_mode(vcpu.fd(), boot.entry)?;
            }
            vcpus.push(vcpu);
        }
        if let Some(input) = config.serial_in {
            SerialInput {
                serial: Arc::clone(&serial),
            }
            .forward_from(input)
            .map_err(|e| {
                Error::Run(RunError::Spawn {
                    id: 0,
                    reason: format!("serial input thread: {e}"),
                })
            })?;
        }
        Ok(Self {
            vcpus,
            buses,
            control,
            serial,
            boot,
            virtio_slots,
            workers,
            vm,
            memory,
        })
    }

    /// Where the kernel, initrd and boot data went.
    pub fn boot_info(&self) -> &BootInfo {
        &self.boot
    }

    /// Guest RAM, for devices that do DMA.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }

    /// The KVM VM (for ioeventfds and extra irqfds).
    pub fn kvm_vm(&self) -> &KvmVm {
        &self.vm
    }

    /// An interrupt line into GSI `gsi` of the in-kernel IOAPIC.
    pub fn irq_line(&self, gsi: u32) -> Result<Arc<IrqFd>, Error> {
        Ok(self.vm.irqfd(gsi)?)
    }

    /// Queue console input for the guest's serial port.
    pub fn serial_input(&self, bytes: &[u8]) -> usize {
        self.serial_handle().send(bytes)
    }

    /// A handle for console input that stays usable after [`start`](Self::start).
    pub fn serial_handle(&self) -> SerialInput {
        SerialInput {
            serial: Arc::clone(&self.serial),
        }
    }

    /// Place a device on the MMIO bus.
    pub fn add_mmio_device(
        &mut self,
        base: u64,
        len: u64,
        device: Arc<Mutex<dyn BusDevice>>,
    ) -> Result<(), Error> {
        Ok(self.buses.mmio.insert(base, len, device)?)
    }

    /// Place a device on the port I/O bus.
    pub fn add_pio_device(
        &mut self,
        port: u16,
        len: u16,
        device: Arc<Mutex<dyn BusDevice>>,
    ) -> Result<(), Error> {
        Ok(self
            .buses
            .pio
            .insert(u64::from(port), u64::from(len), device)?)
    }

    /// Reserve the next virtio-mmio slot: a 4 KiB window in the MMIO gap and
    /// a GSI from 5 up. The device is then added with [`add_mmio_device`](Self::add_mmio_device).
    pub fn next_virtio_slot(&mut self) -> Result<MmioSlot, Error> {
        let slot = virtio_slot(self.virtio_slots)?;
        self.virtio_slots += 1;
        Ok(slot)
    }

    /// A handle that stops the VM from elsewhere.
    pub fn control(&self) -> VmControl {
        self.control.clone()
    }

    /// Start every vCPU on its own thread.
    pub fn start(self) -> Result<RunningMicrovm, Error> {
        let vcpus = RunningVcpus::spawn(self.vcpus, Arc::new(self.buses), self.control)?;
        Ok(RunningMicrovm {
            vcpus: Some(vcpus),
            _workers: self.workers,
            boot: self.boot,
            _vm: self.vm,
            _memory: self.memory,
        })
    }
}

/// A microvm whose vCPUs are running.
pub struct RunningMicrovm {
    // Dropped in this order: vCPU threads, notification workers, the VM,
    // then its memory.
    vcpus: Option<RunningVcpus>,
    _workers: Vec<NotifyWorker>,
    boot: BootInfo,
    _vm: KvmVm,
    _memory: GuestMemoryMmap,
}

impl RunningMicrovm {
    fn vcpus(&self) -> &RunningVcpus {
        // Only `wait`/`shutdown` take the vCPUs, and they consume self.
        self.vcpus
            .as_ref()
            .expect("vCPUs present until the VM ends")
    }

    pub fn boot_info(&self) -> &BootInfo {
        &self.boot
    }

    /// A handle that stops the VM from elsewhere.
    pub fn control(&self) -> VmControl {
        self.vcpus().control()
    }

    /// Park every vCPU; returns when all are parked.
    pub fn pause(&self) -> Result<(), Error> {
        Ok(self.vcpus().pause()?)
    }

    pub fn resume(&self) -> Result<(), Error> {
        Ok(self.vcpus().resume()?)
    }

    pub fn is_paused(&self) -> bool {
        self.vcpus().is_paused()
    }

    /// Stop the guest from the host and wait for its vCPUs.
    pub fn shutdown(mut self) -> ExitReason {
        match self.vcpus.take() {
            Some(v) => v.shutdown(),
            None => ExitReason::Stopped,
        }
    }

    /// Wait for the guest to end.
    pub fn wait(mut self) -> ExitReason {
        match self.vcpus.take() {
            Some(v) => v.wait(),
            None => ExitReason::Stopped,
        }
    }
}

/// Build a microvm from `config`, run it, and return why it stopped.
pub fn run_vm(config: VmConfig) -> Result<ExitReason, Error> {
    Ok(Microvm::new(config)?.start()?.wait())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_up_to_the_count_has_a_window_and_a_gsi() {
        for n in 0..VIRTIO_SLOTS {
            let slot = virtio_slot(n).unwrap();
            assert_eq!(slot.gsi, VIRTIO_FIRST_GSI + n);
            assert!(slot.base + slot.len <= MMIO_GAP_END);
        }
        assert!(matches!(
            virtio_slot(VIRTIO_SLOTS),
            Err(Error::NoVirtioSlot)
        ));
    }
}
