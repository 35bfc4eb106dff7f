//! virtio-input (virtio 1.2 §5.8) as a power button: the guest sees an
//! input device with one key, `KEY_POWER`, as a PC guest sees the ACPI
//! power button. The VMM presses it ([`ButtonHandle::press`]) to ask the
//! guest to shut down; a guest listening on its evdev node (busybox
//! `acpid`, systemd-logind) powers off.
//!
//! Queues: the eventq (0), which the driver fills with 8-byte buffers that
//! the device returns holding one `virtio_input_event` each, and the
//! statusq (1), where the driver reports LED and similar state: drained
//! and ignored (a button has no LEDs).
//!
//! Events are produced on the VMM's thread (the control socket's), so the
//! queue state lives behind a mutex shared with the transport's calls, in
//! the order state, then queue.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use virtio_queue::{QueueOwnedT, QueueT};

use crate::virtio::chain::{self, Cursor};
use crate::virtio::{
    ActiveQueues, DeviceError, VirtioDevice, complete, drain_queue, lock, read_config_bytes,
};

/// The virtio device id of an input device.
pub const DEVICE_TYPE: u32 = 18;

const EVENTQ: usize = 0;
const STATUSQ: usize = 1;
const QUEUE_SIZE: u16 = 64;

/// Config space selects (virtio 1.2 §5.8.5).
pub mod select {
    pub const UNSET: u8 = 0x00;
    pub const ID_NAME: u8 = 0x01;
    pub const ID_SERIAL: u8 = 0x02;
    pub const ID_DEVIDS: u8 = 0x03;
    pub const PROP_BITS: u8 = 0x10;
    pub const EV_BITS: u8 = 0x11;
    pub const ABS_INFO: u8 = 0x12;
}

/// Linux input event types and codes (`linux/input-event-codes.h`).
pub mod codes {
    pub const EV_SYN: u16 = 0x00;
    pub const EV_KEY: u16 = 0x01;
    pub const SYN_REPORT: u16 = 0;
    pub const KEY_POWER: u16 = 116;
    /// `BUS_VIRTUAL`, the bus type Linux gives virtio input devices.
    pub const BUS_VIRTUAL: u16 = 0x06;
}

/// The name the guest sees (`/sys/class/input/*/name`).
pub const NAME: &str = "vessel power button";
const SERIAL: &str = "vessel-0";
/// Size of `virtio_input_config`: select, subsel, size, 5 reserved, u[128].
const CONFIG_SIZE: usize = 136;
const PAYLOAD: usize = 8;
/// Size of one `virtio_input_event` (le16 type, le16 code, le32 value).
pub const EVENT_SIZE: usize = 8;
/// Events held while the guest has no buffer posted: eight presses. More
/// are dropped (a guest that never reads cannot make the VMM grow).
const MAX_PENDING: usize = 32;

/// Errors of the input device.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    #[error("the guest has no virtio-input driver running (it did not set up the power button)")]
    NotReady,
    #[error("the guest has not read the previous presses of the power button")]
    Full,
    #[error("the guest broke the power button's event queue; it must reset the device")]
    Broken,
}

/// One `virtio_input_event`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: u16,
    pub code: u16,
    pub value: u32,
}

impl Event {
    pub fn to_bytes(self) -> [u8; EVENT_SIZE] {
        let mut b = [0u8; EVENT_SIZE];
        b[0..2].copy_from_slice(&self.kind.to_le_bytes());
        b[2..4].copy_from_slice(&self.code.to_le_bytes());
        b[4..8].copy_from_slice(&self.value.to_le_bytes());
        b
    }

    pub fn from_bytes(b: [u8; EVENT_SIZE]) -> Self {
        Self {
            kind: u16::from_le_bytes([b[0], b[1]]),
            code: u16::from_le_bytes([b[2], b[3]]),
            value: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// The events of one press: key down, report, key up, report.
pub fn press_events() -> [Event; 4] {
    use codes::*;
    let syn = Event {
        kind: EV_SYN,
        code: SYN_REPORT,
        value: 0,
    };
    let key = |value| Event {
        kind: EV_KEY,
        code: KEY_POWER,
        value,
    };
    [key(1), syn, key(0), syn]
}

#[derive(Default)]
struct Shared {
    pending: VecDeque<Event>,
    active: Option<ActiveQueues>,
}

/// The power button device, for the transport.
pub struct PowerButton {
    shared: Arc<Mutex<Shared>>,
    select: u8,
    subsel: u8,
}

/// Presses the button from any thread.
#[derive(Clone)]
pub struct ButtonHandle {
    shared: Arc<Mutex<Shared>>,
}

impl PowerButton {
    /// The device and a handle that presses it.
    pub fn new() -> (Self, ButtonHandle) {
        let shared = Arc::new(Mutex::new(Shared::default()));
        (
            Self {
                shared: shared.clone(),
                select: select::UNSET,
                subsel: 0,
            },
            ButtonHandle { shared },
        )
    }

    /// The payload and its size for the current select/subsel.
    fn payload(&self) -> Vec<u8> {
        use codes::*;
        match (self.select, self.subsel) {
            (select::ID_NAME, 0) => NAME.as_bytes().to_vec(),
            (select::ID_SERIAL, 0) => SERIAL.as_bytes().to_vec(),
            (select::ID_DEVIDS, 0) => {
                // bustype, vendor, product, version.
                let mut v = Vec::with_capacity(8);
                for x in [BUS_VIRTUAL, 0, 1, 1] {
                    v.extend_from_slice(&x.to_le_bytes());
                }
                v
            }
            // No input properties: size 0.
            (select::EV_BITS, s) if u16::from(s) == EV_KEY => bitmap(KEY_POWER),
            (select::EV_BITS, s) if u16::from(s) == EV_SYN => bitmap(SYN_REPORT),
            _ => Vec::new(),
        }
    }
}

/// A bitmap with only `bit` set, as short as it can be.
fn bitmap(bit: u16) -> Vec<u8> {
    let mut v = vec![0u8; usize::from(bit / 8) + 1];
    v[usize::from(bit / 8)] = 1 << (bit % 8);
    v
}

impl ButtonHandle {
    /// Whether a guest driver set the device up (DRIVER_OK) and has not
    /// reset it since: only then can a press reach the guest.
    pub fn driver_ready(&self) -> bool {
        lock(&self.shared)
            .active
            .as_ref()
            .is_some_and(|a| !a.interrupt.needs_reset())
    }

    /// Press and release the power button: four events go to the guest
    /// now, or as soon as it posts buffers.
    pub fn press(&self) -> Result<(), InputError> {
        let mut s = lock(&self.shared);
        let Some(active) = s.active.clone() else {
            return Err(InputError::NotReady);
        };
        if active.interrupt.needs_reset() {
            return Err(InputError::Broken);
        }
        let events = press_events();
        if s.pending.len() + events.len() > MAX_PENDING {
            return Err(InputError::Full);
        }
        s.pending.extend(events);
        if let Err(what) = deliver(&mut s) {
            active.interrupt.set_needs_reset(what);
            return Err(InputError::Broken);
        }
        Ok(())
    }
}

/// Move pending events into the guest's eventq buffers, one per buffer.
/// An error means the ring itself is broken.
fn deliver(s: &mut Shared) -> Result<(), &'static str> {
    let Some(active) = s.active.clone() else {
        return Ok(());
    };
    let int = &active.interrupt;
    if s.pending.is_empty() || int.needs_reset() {
        return Ok(());
    }
    let mem = &active.mem;
    let Some(queue) = active.queues.get(EVENTQ) else {
        return Ok(());
    };
    let mut q = lock(queue);
    if !q.ready() {
        return Ok(());
    }
    while let Some(&event) = s.pending.front() {
        let next = q
            .iter(mem)
            .map_err(|_| "available index runs more than a queue ahead")?
            .next();
        let Some(desc_chain) = next else {
            // Out of buffers: ask to be told when the guest posts more.
            if q.enable_notification(mem)
                .map_err(|_| "cannot write avail_event")?
            {
                continue;
            }
            break;
        };
        let head = desc_chain.head_index();
        let len = match chain::parse(desc_chain, mem) {
            Ok(c) if chain::total_len(&c.writable) >= EVENT_SIZE as u64 => {
                let mut w = Cursor::new(mem, &c.writable);
                match w.write(&event.to_bytes()) {
                    Ok(()) => {
                        s.pending.pop_front();
                        EVENT_SIZE as u32
                    }
                    Err(_) => 0,
                }
            }
            Ok(_) => {
                int.warn_once(
                    "event buffer too small",
                    format_args!(
                        "eventq: a buffer shorter than {EVENT_SIZE} bytes; returned empty"
                    ),
                );
                0
            }
            Err(e) => {
                int.warn_once(e.kind(), format_args!("eventq: {e}"));
                0
            }
        };
        complete(&mut q, mem, int, head, len)?;
    }
    Ok(())
}

impl VirtioDevice for PowerButton {
    fn device_type(&self) -> u32 {
        DEVICE_TYPE
    }

    fn features(&self) -> u64 {
        0
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE, QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut cfg = [0u8; CONFIG_SIZE];
        cfg[0] = self.select;
        cfg[1] = self.subsel;
        let payload = self.payload();
        let n = payload.len().min(CONFIG_SIZE - PAYLOAD);
        cfg[2] = n as u8;
        cfg[PAYLOAD..PAYLOAD + n].copy_from_slice(&payload[..n]);
        read_config_bytes(&cfg, offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // Only select (0) and subsel (1) are the driver's; other bytes are
        // read-only and writes to them are dropped.
        for (i, &b) in data.iter().enumerate() {
            match offset.checked_add(i as u64) {
                Some(0) => self.select = b,
                Some(1) => self.subsel = b,
                _ => {}
            }
        }
    }

    fn activate(&mut self, queues: ActiveQueues) -> Result<(), DeviceError> {
        let mut s = lock(&self.shared);
        s.active = Some(queues);
        s.pending.clear();
        Ok(())
    }

    fn process_queue(&mut self, index: usize) -> Result<(), DeviceError> {
        let mut s = lock(&self.shared);
        match index {
            EVENTQ => deliver(&mut s).map_err(|what| DeviceError::BrokenQueue {
                queue: EVENTQ,
                what,
            }),
            STATUSQ => {
                let Some(active) = s.active.clone() else {
                    return Ok(());
                };
                drop(s);
                // LED and other status reports: nothing to act on.
                drain_queue(&active, STATUSQ, |_, _| 0)
            }
            _ => Ok(()),
        }
    }

    fn reset(&mut self) {
        let mut s = lock(&self.shared);
        s.active = None;
        s.pending.clear();
        self.select = select::UNSET;
        self.subsel = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::mmio::regs;
    use crate::virtio::testdriver::{Driver, WRITE};
    use crate::virtio::testutil::memory;
    use vessel_machine::BusDevice;

    fn driver(mem: &vessel_machine::GuestMemoryMmap) -> (Driver<'_>, ButtonHandle) {
        let (dev, button) = PowerButton::new();
        let mut d = Driver::new(mem, Box::new(dev));
        d.init(0, &[16, 16]);
        (d, button)
    }

    fn cfg(d: &mut Driver<'_>, sel: u8, subsel: u8) -> Vec<u8> {
        d.mmio.write(regs::CONFIG, &[sel]);
        d.mmio.write(regs::CONFIG + 1, &[subsel]);
        let mut size = [0u8];
        d.mmio.read(regs::CONFIG + 2, &mut size);
        let mut out = vec![0u8; usize::from(size[0])];
        for (i, b) in out.iter_mut().enumerate() {
            let mut x = [0u8];
            d.mmio.read(regs::CONFIG + 8 + i as u64, &mut x);
            *b = x[0];
        }
        out
    }

    fn event_at(d: &Driver<'_>, addr: u64) -> Event {
        Event::from_bytes(d.read_bytes(addr, EVENT_SIZE).try_into().unwrap())
    }

    #[test]
    fn config_space_describes_a_power_button() {
        let mem = memory();
        let (mut d, _) = driver(&mem);
        assert_eq!(d.r(regs::DEVICE_ID), DEVICE_TYPE);
        assert_eq!(cfg(&mut d, select::ID_NAME, 0), NAME.as_bytes());
        assert_eq!(cfg(&mut d, select::ID_SERIAL, 0), SERIAL.as_bytes());
        assert_eq!(cfg(&mut d, select::ID_DEVIDS, 0), [6, 0, 0, 0, 1, 0, 1, 0]);
        assert_eq!(cfg(&mut d, select::PROP_BITS, 0), [0u8; 0]);
        let keys = cfg(&mut d, select::EV_BITS, codes::EV_KEY as u8);
        assert_eq!(keys.len(), 15);
        for bit in 0..keys.len() * 8 {
            let set = keys[bit / 8] & (1 << (bit % 8)) != 0;
            assert_eq!(set, bit == 116, "key bit {bit}");
        }
        assert_eq!(cfg(&mut d, select::EV_BITS, codes::EV_SYN as u8), [1]);
        // No relative axes, no absolute axes, nothing for unknown selects.
        assert!(cfg(&mut d, select::EV_BITS, 2).is_empty());
        assert!(cfg(&mut d, select::ABS_INFO, 0).is_empty());
        assert!(cfg(&mut d, 0x7f, 0xff).is_empty());
        assert!(
            cfg(&mut d, select::ID_NAME, 1).is_empty(),
            "subsel must be 0"
        );
    }

    #[test]
    fn writes_past_select_and_subsel_are_ignored() {
        let mem = memory();
        let (mut d, _) = driver(&mem);
        cfg(&mut d, select::ID_NAME, 0);
        // A 4-byte write over select, subsel, size and a reserved byte.
        d.mmio.write(regs::CONFIG, &[select::ID_SERIAL, 0, 99, 99]);
        let mut size = [0u8];
        d.mmio.read(regs::CONFIG + 2, &mut size);
        assert_eq!(usize::from(size[0]), SERIAL.len());
        // Far past the config space, and at an offset that would overflow.
        d.mmio.write(regs::CONFIG + 200, &[1]);
        d.mmio.write(regs::CONFIG + 0xf00, &[1, 2, 3, 4]);
        assert_eq!(cfg(&mut d, select::ID_SERIAL, 0), SERIAL.as_bytes());
    }

    #[test]
    fn a_press_fills_posted_buffers_with_key_and_syn_events() {
        let mem = memory();
        let (dev, button) = PowerButton::new();
        assert_eq!(button.press(), Err(InputError::NotReady), "no driver yet");
        let mut d = Driver::new(&mem, Box::new(dev));
        d.init(0, &[16, 16]);
        assert!(button.driver_ready());
        for i in 0..6u64 {
            d.add(0, &[(0x8_0000 + i * 0x100, EVENT_SIZE as u32, WRITE)]);
        }
        d.notify(0);
        assert_eq!(d.used_idx(0), 0, "nothing to say before a press");
        button.press().unwrap();
        assert_eq!(d.used_idx(0), 4);
        assert!(d.irq.is_high());
        let got: Vec<Event> = (0..4)
            .map(|i| {
                let (id, len) = d.used(0, i);
                assert_eq!(len, EVENT_SIZE as u32);
                event_at(&d, 0x8_0000 + u64::from(id) * 0x100)
            })
            .collect();
        assert_eq!(got, press_events());
        assert_eq!(got[0].kind, codes::EV_KEY);
        assert_eq!(got[0].code, codes::KEY_POWER);
        assert_eq!(got[0].value, 1);
        assert_eq!(got[2].value, 0);
    }

    #[test]
    fn events_wait_for_buffers_and_stay_bounded() {
        let mem = memory();
        let (mut d, button) = driver(&mem);
        // No buffers: the press waits.
        button.press().unwrap();
        assert_eq!(d.used_idx(0), 0);
        d.add(0, &[(0x8_0000, 8, WRITE)]);
        d.add(0, &[(0x8_0100, 8, WRITE)]);
        d.notify(0);
        assert_eq!(d.used_idx(0), 2);
        assert_eq!(event_at(&d, 0x8_0100), press_events()[1]);
        // The guest never posts more: presses pile up to a bound, then fail.
        let mut ok = 0;
        while button.press().is_ok() {
            ok += 1;
            assert!(ok < 100, "pending events must be bounded");
        }
        assert_eq!(button.press(), Err(InputError::Full));
        d.add(0, &[(0x8_0200, 8, WRITE)]);
        d.notify(0);
        assert_eq!(event_at(&d, 0x8_0200), press_events()[2], "order kept");
    }

    #[test]
    fn broken_chains_are_returned_empty_and_the_event_kept() {
        let mem = memory();
        let (mut d, button) = driver(&mem);
        // Outside memory, too short, read-only, readable after writable,
        // then a good one.
        d.add(0, &[(0xfff_0000, 8, WRITE)]);
        d.add(0, &[(0x8_0000, 4, WRITE)]);
        d.add(0, &[(0x8_0000, 8, 0)]);
        d.add(0, &[(0x8_0000, 8, WRITE), (0x8_0100, 8, 0)]);
        d.add(0, &[(0x8_0200, 8, WRITE)]);
        d.notify(0);
        button.press().unwrap();
        assert_eq!(d.used_idx(0), 5);
        for i in 0..4 {
            assert_eq!(d.used(0, i).1, 0, "chain {i} returned empty");
        }
        assert_eq!(d.used(0, 4).1, 8);
        assert_eq!(event_at(&d, 0x8_0200), press_events()[0]);
        assert!(!d.needs_reset());
        // A buffer split in two 4-byte halves holds one event.
        d.add(0, &[(0x8_0300, 4, WRITE), (0x8_0400, 4, WRITE)]);
        d.notify(0);
        let mut b = d.read_bytes(0x8_0300, 4);
        b.extend(d.read_bytes(0x8_0400, 4));
        assert_eq!(Event::from_bytes(b.try_into().unwrap()), press_events()[1]);
    }

    #[test]
    fn runaway_avail_index_needs_reset_and_press_says_so() {
        let mem = memory();
        let (mut d, button) = driver(&mem);
        d.queues[0].avail.idx().store(100);
        button.press().unwrap_err();
        assert!(d.needs_reset());
        assert!(!button.driver_ready());
        assert_eq!(button.press(), Err(InputError::Broken));
        // A reset and a new set-up bring it back.
        d.init(0, &[16, 16]);
        assert!(button.driver_ready());
        d.add(0, &[(0x8_0000, 8, WRITE)]);
        d.notify(0);
        button.press().unwrap();
        assert_eq!(d.used_idx(0), 1);
    }

    #[test]
    fn statusq_is_drained_and_ignored() {
        let mem = memory();
        let (mut d, button) = driver(&mem);
        d.write_bytes(0x9_0000, &Event::to_bytes(press_events()[0]));
        d.submit(1, &[(0x9_0000, 8, 0)]);
        d.submit(1, &[(0xfff_0000, 8, 0)]);
        assert_eq!(d.used_idx(1), 2);
        assert_eq!(d.used(1, 0).1, 0);
        assert!(!d.needs_reset());
        assert!(button.driver_ready());
        // A runaway statusq index breaks the device.
        d.queues[1].avail.idx().store(200);
        d.notify(1);
        assert!(d.needs_reset());
    }

    #[test]
    fn reset_forgets_pending_events() {
        let mem = memory();
        let (mut d, button) = driver(&mem);
        button.press().unwrap();
        d.w(regs::STATUS, 0);
        assert_eq!(button.press(), Err(InputError::NotReady));
        d.init(0, &[16, 16]);
        d.submit(0, &[(0x8_0000, 8, WRITE)]);
        assert_eq!(d.used_idx(0), 0, "the old press was dropped at reset");
    }
}
