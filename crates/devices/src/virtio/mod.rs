//! virtio: the device side of the virtio 1.2 specification.
//!
//! [`mmio::VirtioMmio`] is the transport (the "version 2" MMIO register
//! layout); each device type implements [`VirtioDevice`] and sees only guest
//! memory, its queues and an [`Interrupt`].

pub mod block;
pub mod chain;
pub mod console;
pub mod mmio;
pub mod net;
pub mod rng;
#[cfg(test)]
pub(crate) mod testdriver;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use vessel_machine::{GuestMemoryMmap, IrqLine};
use virtio_queue::Queue;

/// Feature bits of the transport and ring layout (virtio 1.2 §6).
pub mod features {
    /// The driver follows virtio 1.x (required: vessel has no legacy mode).
    pub const VERSION_1: u64 = 1 << 32;
    /// Indirect descriptor tables.
    pub const RING_INDIRECT_DESC: u64 = 1 << 28;
    /// used_event / avail_event notification suppression.
    pub const RING_EVENT_IDX: u64 = 1 << 29;
}

/// Device type ids (virtio 1.2 §5).
pub mod device_type {
    pub const NET: u32 = 1;
    pub const BLOCK: u32 = 2;
    pub const CONSOLE: u32 = 3;
    pub const RNG: u32 = 4;
}

/// InterruptStatus bits.
pub const INT_USED_RING: u32 = 1;
pub const INT_CONFIG: u32 = 2;

/// A queue shared between the transport (register accesses) and the device
/// (request processing, possibly on a worker thread).
pub type SharedQueue = Arc<Mutex<Queue>>;

/// Lock a queue or a device's state, even if a previous holder panicked:
/// the state is plain data and one failed request must not stop all later ones.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A device's interrupt state: InterruptStatus, the level on the board's
/// interrupt line (high while InterruptStatus != 0) and DEVICE_NEEDS_RESET.
///
/// Shared by the transport and the device's workers; every method may be
/// called from any thread.
pub struct Interrupt {
    state: Mutex<IntState>,
    irq: Arc<dyn IrqLine>,
    logged: Mutex<HashSet<&'static str>>,
    name: String,
}

#[derive(Default)]
struct IntState {
    status: u32,
    needs_reset: bool,
    config_generation: u32,
}

impl Interrupt {
    pub fn new(irq: Arc<dyn IrqLine>, name: impl Into<String>) -> Self {
        Self {
            state: Mutex::new(IntState::default()),
            irq,
            logged: Mutex::new(HashSet::new()),
            name: name.into(),
        }
    }

    fn raise(&self, bits: u32) {
        let mut s = lock(&self.state);
        s.status |= bits;
        self.irq.set_level(true);
    }

    /// The device put buffers in a used ring.
    pub fn signal_used(&self) {
        self.raise(INT_USED_RING);
    }

    /// The configuration space changed.
    pub fn signal_config(&self) {
        {
            let mut s = lock(&self.state);
            s.config_generation = s.config_generation.wrapping_add(1);
        }
        self.raise(INT_CONFIG);
    }

    /// The device met a state it cannot recover from without a reset (a
    /// broken ring): set DEVICE_NEEDS_RESET and tell the driver.
    pub fn set_needs_reset(&self, why: &'static str) {
        self.warn_once(why, format_args!("device needs reset: {why}"));
        lock(&self.state).needs_reset = true;
        self.raise(INT_CONFIG);
    }

    pub fn needs_reset(&self) -> bool {
        lock(&self.state).needs_reset
    }

    pub fn status(&self) -> u32 {
        lock(&self.state).status
    }

    pub fn config_generation(&self) -> u32 {
        lock(&self.state).config_generation
    }

    /// InterruptACK: clear `bits`; lower the line once nothing is pending.
    pub fn ack(&self, bits: u32) {
        let mut s = lock(&self.state);
        s.status &= !bits;
        self.irq.set_level(s.status != 0);
    }

    /// Device reset: nothing pending, line low.
    pub fn reset(&self) {
        let mut s = lock(&self.state);
        s.status = 0;
        s.needs_reset = false;
        self.irq.set_level(false);
    }

    /// Log a guest error once per kind and device: a hostile guest must not
    /// flood the host's log.
    pub fn warn_once(&self, kind: &'static str, msg: std::fmt::Arguments<'_>) {
        if lock(&self.logged).insert(kind) {
            log::warn!("{}: {msg} (logged once)", self.name);
        }
    }
}

/// What a device gets when the driver sets DRIVER_OK.
#[derive(Clone)]
pub struct ActiveQueues {
    pub mem: GuestMemoryMmap,
    /// One entry per queue of the device, in queue-index order.
    pub queues: Vec<SharedQueue>,
    pub interrupt: Arc<Interrupt>,
    /// The features the driver accepted.
    pub acked_features: u64,
}

/// Errors a device reports to the transport.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("the driver activated {got} queues, the device needs {want}")]
    QueueCount { got: usize, want: usize },
    #[error("queue {0} is not ready: the driver must set QueueReady before DRIVER_OK")]
    QueueNotReady(usize),
    #[error("cannot start the device's worker thread: {0}")]
    Worker(#[source] std::io::Error),
    #[error("broken virtqueue {queue}: {what}")]
    BrokenQueue { queue: usize, what: &'static str },
}

/// One virtio device type (block, net, console, rng …), transport-neutral.
pub trait VirtioDevice: Send {
    /// The virtio device id (e.g. 2 for block).
    fn device_type(&self) -> u32;
    /// Device-specific feature bits offered; the transport adds VERSION_1,
    /// RING_EVENT_IDX and RING_INDIRECT_DESC.
    fn features(&self) -> u64;
    /// The maximum size of each queue (powers of two); its length is the queue count.
    fn queue_max_sizes(&self) -> Vec<u16>;
    /// Read the device-specific configuration space at `offset`. Bytes past
    /// its end read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Write the configuration space. Most devices ignore this.
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// The driver set DRIVER_OK: start serving the queues.
    fn activate(&mut self, queues: ActiveQueues) -> Result<(), DeviceError>;
    /// The driver notified queue `index` (QueueNotify, or an ioeventfd).
    /// An error means the queue is broken: the transport sets
    /// DEVICE_NEEDS_RESET.
    fn process_queue(&mut self, index: usize) -> Result<(), DeviceError>;
    /// Device reset: stop workers, forget the queues. After it the device
    /// can be activated again.
    fn reset(&mut self);
}

/// Copy the bytes of a little-endian config structure at `offset` into `data`,
/// zero-filling past its end.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if start >= config.len() {
        return;
    }
    let n = data.len().min(config.len() - start);
    data[..n].copy_from_slice(&config[start..start + n]);
}

/// Add the used element for `head`, and raise the used-ring interrupt if the
/// driver wants one (event-idx aware).
pub fn complete(
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    interrupt: &Interrupt,
    head: u16,
    len: u32,
) -> Result<(), &'static str> {
    publish_used(queue, mem, interrupt, &[(head, len)])
}

/// VRING_AVAIL_F_NO_INTERRUPT: without event-idx, the driver asks for no
/// used-ring interrupts.
const AVAIL_F_NO_INTERRUPT: u16 = 1;

/// Put `used` ((head, length) pairs) in the used ring in order and make them
/// visible to the driver with a single index update, then raise the
/// used-ring interrupt once if the driver asked for one: with event-idx,
/// when the new used index passes `used_event`; without, unless the driver
/// set VRING_AVAIL_F_NO_INTERRUPT.
///
/// One index update matters for buffers that belong together (a frame
/// spread over mergeable receive buffers): a driver polling concurrently
/// must never see part of them. Every head is checked against the queue
/// size; an error means the ring is unusable.
pub fn publish_used(
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    interrupt: &Interrupt,
    used: &[(u16, u32)],
) -> Result<(), &'static str> {
    use std::num::Wrapping;
    use std::sync::atomic::{Ordering, fence};
    use vessel_machine::vm_memory::{Address, Bytes, GuestAddress};
    use virtio_queue::QueueT;
    if used.is_empty() {
        return Ok(());
    }
    let size = queue.size();
    if size == 0 || used.len() > usize::from(size) {
        return Err("more used buffers than the queue holds");
    }
    let ring = GuestAddress(queue.used_ring());
    let old = Wrapping(queue.next_used());
    for (k, &(head, len)) in used.iter().enumerate() {
        if head >= size {
            return Err("used buffer head beyond the queue size");
        }
        let slot = (old + Wrapping(k as u16)).0 % size;
        let mut elem = [0u8; 8];
        elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        elem[4..].copy_from_slice(&len.to_le_bytes());
        let addr = ring
            .checked_add(4 + 8 * u64::from(slot))
            .ok_or("used ring address overflows")?;
        mem.write_slice(&elem, addr)
            .map_err(|_| "cannot write the used ring")?;
    }
    let new = old + Wrapping(used.len() as u16);
    let idx_addr = ring.checked_add(2).ok_or("used ring address overflows")?;
    // Release: the elements are visible before the index that covers them.
    mem.store(new.0.to_le(), idx_addr, Ordering::Release)
        .map_err(|_| "cannot write the used ring")?;
    queue.set_next_used(new.0);
    // The index store must be visible before used_event / flags are read
    // (the driver does the mirror image), or an interrupt can be lost.
    fence(Ordering::SeqCst);
    let avail = GuestAddress(queue.avail_ring());
    let notify = if queue.event_idx_enabled() {
        let at = avail
            .checked_add(4 + 2 * u64::from(size))
            .ok_or("available ring address overflows")?;
        let used_event = Wrapping(u16::from_le(
            mem.load::<u16>(at, Ordering::Acquire)
                .map_err(|_| "cannot read used_event")?,
        ));
        // vring_need_event: did the index pass used_event in this batch?
        (new - used_event - Wrapping(1)) < (new - old)
    } else {
        let flags = u16::from_le(
            mem.load::<u16>(avail, Ordering::Acquire)
                .map_err(|_| "cannot read the available ring flags")?,
        );
        flags & AVAIL_F_NO_INTERRUPT == 0
    };
    if notify {
        interrupt.signal_used();
    }
    Ok(())
}

/// Serve every chain the driver made available on queue `index`: each is
/// checked ([`chain::parse`]) and handed to `handle`, which returns how many
/// bytes it wrote into the chain's writable buffers. A malformed chain is
/// logged once and returned with length 0. The used buffers of a batch are
/// published with one used-index update and at most one interrupt, as the
/// driver asked (event-idx aware). Driver notifications are re-enabled
/// before returning.
///
/// An error means the ring itself is unusable: the caller marks the device
/// as needing reset.
pub fn drain_queue<F>(active: &ActiveQueues, index: usize, mut handle: F) -> Result<(), DeviceError>
where
    F: FnMut(&GuestMemoryMmap, &chain::Chain) -> u32,
{
    use virtio_queue::{QueueOwnedT, QueueT};
    let broken = |what| DeviceError::BrokenQueue { queue: index, what };
    let queue = active.queues.get(index).ok_or(broken("no such queue"))?;
    let mem = &active.mem;
    let int = &active.interrupt;
    let mut q = lock(queue);
    if !q.ready() {
        int.warn_once(
            "queue used before QueueReady",
            format_args!("queue {index} used before QueueReady; ignored"),
        );
        return Ok(());
    }
    let mut used = Vec::new();
    let batch = usize::from(q.size().max(1));
    loop {
        q.disable_notification(mem)
            .map_err(|_| broken("cannot write the used ring flags"))?;
        loop {
            let next = q
                .iter(mem)
                .map_err(|_| broken("available index runs more than a queue ahead"))?
                .next();
            let Some(desc_chain) = next else { break };
            let head = desc_chain.head_index();
            let len = match chain::parse(desc_chain, mem) {
                Ok(c) => handle(mem, &c),
                Err(e) => {
                    int.warn_once(e.kind(), format_args!("queue {index}: {e}"));
                    0
                }
            };
            used.push((head, len));
            // At most a queue's worth per index update (the ring's capacity).
            if used.len() == batch {
                publish_used(&mut q, mem, int, &used).map_err(broken)?;
                used.clear();
            }
        }
        // One index update and at most one interrupt per batch.
        publish_used(&mut q, mem, int, &used).map_err(broken)?;
        used.clear();
        if !q
            .enable_notification(mem)
            .map_err(|_| broken("cannot write avail_event"))?
        {
            return Ok(());
        }
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! A recording interrupt line and guest memory for device tests.
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    #[derive(Default)]
    pub struct TestIrq {
        pub level: AtomicBool,
        pub raised: AtomicUsize,
    }

    impl IrqLine for TestIrq {
        fn set_level(&self, high: bool) {
            if high {
                self.raised.fetch_add(1, Ordering::SeqCst);
            }
            self.level.store(high, Ordering::SeqCst);
        }
    }

    impl TestIrq {
        pub fn is_high(&self) -> bool {
            self.level.load(Ordering::SeqCst)
        }
    }

    pub fn memory() -> GuestMemoryMmap {
        vessel_machine::create_guest_memory(&[(0, 1 << 20)]).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::TestIrq;
    use super::*;

    #[test]
    fn interrupt_level_follows_status() {
        let irq = Arc::new(TestIrq::default());
        let int = Interrupt::new(irq.clone(), "t");
        assert!(!irq.is_high());
        int.signal_used();
        int.signal_config();
        assert!(irq.is_high());
        assert_eq!(int.status(), INT_USED_RING | INT_CONFIG);
        int.ack(INT_USED_RING);
        assert!(irq.is_high(), "config interrupt still pending");
        int.ack(INT_CONFIG);
        assert!(!irq.is_high());
        assert_eq!(int.config_generation(), 1);
        int.set_needs_reset("x");
        assert!(int.needs_reset() && irq.is_high());
        int.reset();
        assert!(!int.needs_reset() && !irq.is_high());
    }

    #[test]
    fn publish_used_batches_checks_heads_and_follows_suppression() {
        use std::sync::atomic::Ordering;
        use vessel_machine::vm_memory::{Bytes, GuestAddress};
        use virtio_queue::QueueT;
        use virtio_queue::mock::MockSplitQueue;
        let mem = testutil::memory();
        let vq = MockSplitQueue::new(&mem, 8);
        let mut q: Queue = vq.create_queue().unwrap();
        let irq = Arc::new(TestIrq::default());
        let int = Interrupt::new(irq.clone(), "t");
        let used = vq.used_addr().0;
        let avail = vq.avail_addr().0;
        let used_idx = |m: &GuestMemoryMmap| m.read_obj::<u16>(GuestAddress(used + 2)).unwrap();

        // Without event-idx: one interrupt for a batch, none when the
        // driver set VRING_AVAIL_F_NO_INTERRUPT.
        publish_used(&mut q, &mem, &int, &[(1, 10), (2, 20), (3, 30)]).unwrap();
        assert_eq!(used_idx(&mem), 3);
        assert_eq!(irq.raised.load(Ordering::SeqCst), 1);
        let elem = |n: u64| {
            let id = mem.read_obj::<u32>(GuestAddress(used + 4 + 8 * n)).unwrap();
            let len = mem.read_obj::<u32>(GuestAddress(used + 8 + 8 * n)).unwrap();
            (id, len)
        };
        assert_eq!([elem(0), elem(1), elem(2)], [(1, 10), (2, 20), (3, 30)]);
        int.ack(INT_USED_RING);
        mem.write_obj(1u16, GuestAddress(avail)).unwrap();
        publish_used(&mut q, &mem, &int, &[(4, 1)]).unwrap();
        assert_eq!(
            irq.raised.load(Ordering::SeqCst),
            1,
            "NO_INTERRUPT honoured"
        );

        // With event-idx: an interrupt only for the batch that passes
        // used_event (here: once index 5 is used).
        q.set_event_idx(true);
        mem.write_obj(5u16, GuestAddress(avail + 4 + 2 * 8))
            .unwrap();
        publish_used(&mut q, &mem, &int, &[(5, 1)]).unwrap();
        assert_eq!(
            irq.raised.load(Ordering::SeqCst),
            1,
            "index 4 is before used_event"
        );
        publish_used(&mut q, &mem, &int, &[(6, 1), (7, 1)]).unwrap();
        assert_eq!(irq.raised.load(Ordering::SeqCst), 2, "5 used in this batch");
        publish_used(&mut q, &mem, &int, &[(0, 1)]).unwrap();
        assert_eq!(
            irq.raised.load(Ordering::SeqCst),
            2,
            "already past used_event"
        );

        // A head beyond the queue, or more buffers than the ring holds:
        // errors, and nothing becomes visible.
        let before = used_idx(&mem);
        assert!(publish_used(&mut q, &mem, &int, &[(8, 1)]).is_err());
        assert!(publish_used(&mut q, &mem, &int, &[(0, 1); 9]).is_err());
        assert_eq!(used_idx(&mem), before);
        // The index wraps at 2^16 like the ring's.
        q.set_next_used(u16::MAX);
        publish_used(&mut q, &mem, &int, &[(1, 1), (2, 2)]).unwrap();
        assert_eq!(used_idx(&mem), 1);
        assert_eq!(elem(u64::from(u16::MAX % 8)), (1, 1));
        assert_eq!(elem(0), (2, 2));
    }

    #[test]
    fn config_reads_zero_fill() {
        let cfg = [1u8, 2, 3, 4];
        let mut out = [0xffu8; 4];
        read_config_bytes(&cfg, 2, &mut out);
        assert_eq!(out, [3, 4, 0, 0]);
        read_config_bytes(&cfg, u64::MAX, &mut out);
        assert_eq!(out, [0; 4]);
    }
}
