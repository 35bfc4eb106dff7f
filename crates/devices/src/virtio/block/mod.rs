//! virtio-blk (virtio 1.2 §5.2) over a [`DiskBackend`]: read, write, flush,
//! get-id, discard and write-zeroes; read-only disks.
//!
//! Requests are served inline when the driver notifies (on the vCPU thread
//! on the emulator, on an ioeventfd worker on KVM). A flush completes only
//! after the back end's fdatasync returned: what the guest was told is
//! flushed is on the host's disk.

use crate::block::{BlockError, DiskBackend};

use super::chain::{Chain, Cursor, total_len};
use super::{ActiveQueues, DeviceError, Interrupt, VirtioDevice, device_type, drain_queue};
use vessel_machine::GuestMemoryMmap;

/// Feature bits (virtio 1.2 §5.2.3).
pub mod features {
    pub const SIZE_MAX: u64 = 1 << 1;
    pub const SEG_MAX: u64 = 1 << 2;
    pub const RO: u64 = 1 << 5;
    pub const FLUSH: u64 = 1 << 9;
    pub const DISCARD: u64 = 1 << 13;
    pub const WRITE_ZEROES: u64 = 1 << 14;
}

/// Request types.
pub mod req {
    pub const IN: u32 = 0;
    pub const OUT: u32 = 1;
    pub const FLUSH: u32 = 4;
    pub const GET_ID: u32 = 8;
    pub const DISCARD: u32 = 11;
    pub const WRITE_ZEROES: u32 = 13;
}

/// Status bytes.
pub const S_OK: u8 = 0;
pub const S_IOERR: u8 = 1;
pub const S_UNSUPP: u8 = 2;

pub const SECTOR_SIZE: u64 = 512;
/// Serial (GET_ID) length.
pub const ID_BYTES: usize = 20;
const QUEUE_SIZE: u16 = 256;
/// Largest segment the driver may use (size_max).
const SIZE_MAX: u32 = 1 << 20;
/// Most data segments per request (seg_max): the queue minus header and status.
const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Discard / write-zeroes limits advertised in config space.
const MAX_DISCARD_SECTORS: u32 = u32::MAX / SECTOR_SIZE as u32;
const MAX_DISCARD_SEG: u32 = 1;
/// Requests move data through a bounce buffer of at most this size.
const CHUNK: usize = 256 * 1024;

/// What a virtio-blk device is told by the user.
#[derive(Clone, Debug, Default)]
pub struct BlockOptions {
    pub read_only: bool,
    /// Returned to GET_ID (at most 20 bytes); Linux shows it as
    /// /sys/block/vdX/serial and /dev/disk/by-id/virtio-SERIAL.
    pub serial: Option<String>,
}

/// A virtio block device.
pub struct Block {
    disk: Box<dyn DiskBackend>,
    read_only: bool,
    serial: [u8; ID_BYTES],
    sectors: u64,
    config: Vec<u8>,
    active: Option<ActiveQueues>,
    scratch: Vec<u8>,
}

impl Block {
    pub fn new(disk: Box<dyn DiskBackend>, opts: BlockOptions) -> Result<Self, BlockError> {
        let mut serial = [0u8; ID_BYTES];
        if let Some(s) = &opts.serial {
            if s.len() > ID_BYTES {
                return Err(BlockError::SerialTooLong(s.clone()));
            }
            serial[..s.len()].copy_from_slice(s.as_bytes());
        }
        let sectors = disk.size() / SECTOR_SIZE;
        let mut config = vec![0u8; 60];
        config[0..8].copy_from_slice(&sectors.to_le_bytes());
        config[8..12].copy_from_slice(&SIZE_MAX.to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        config[36..40].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
        config[40..44].copy_from_slice(&MAX_DISCARD_SEG.to_le_bytes());
        config[44..48].copy_from_slice(&1u32.to_le_bytes());
        config[48..52].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
        config[52..56].copy_from_slice(&MAX_DISCARD_SEG.to_le_bytes());
        config[56] = 1; // write_zeroes_may_unmap
        Ok(Self {
            disk,
            read_only: opts.read_only,
            serial,
            sectors,
            config,
            active: None,
            scratch: Vec::new(),
        })
    }

    /// Capacity in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }
}

/// Why a request failed: the status to return, and a log-once key.
struct Fail(u8, &'static str);

/// One request's context.
struct Request<'a> {
    disk: &'a mut dyn DiskBackend,
    scratch: &'a mut Vec<u8>,
    read_only: bool,
    serial: &'a [u8; ID_BYTES],
    sectors: u64,
}

impl Request<'_> {
    /// Byte range of `[sector, sector + bytes/512)`, checked against capacity.
    fn range(&self, sector: u64, bytes: u64) -> Result<u64, Fail> {
        let off = sector
            .checked_mul(SECTOR_SIZE)
            .ok_or(Fail(S_IOERR, "sector beyond capacity"))?;
        let end = off
            .checked_add(bytes)
            .ok_or(Fail(S_IOERR, "sector beyond capacity"))?;
        if end > self.sectors * SECTOR_SIZE {
            return Err(Fail(S_IOERR, "sector beyond capacity"));
        }
        Ok(off)
    }

    fn writable_check(&self) -> Result<(), Fail> {
        if self.read_only {
            Err(Fail(S_IOERR, "write to a read-only disk"))
        } else {
            Ok(())
        }
    }

    /// Serve one request; `data_in` are the readable bytes after the header,
    /// `data_out` the writable bytes before the status byte. Returns the
    /// bytes written to `data_out`.
    fn serve(
        &mut self,
        kind: u32,
        sector: u64,
        data_in: &mut Cursor<'_>,
        data_out: &mut Cursor<'_>,
    ) -> Result<u32, Fail> {
        let io = |_| Fail(S_IOERR, "host I/O error");
        let short = |_| Fail(S_IOERR, "guest buffer unreadable");
        match kind {
            req::IN => {
                if data_in.remaining() > 0 {
                    return Err(Fail(
                        S_IOERR,
                        "read request with a driver-readable data buffer",
                    ));
                }
                let len = data_out.remaining();
                if !len.is_multiple_of(SECTOR_SIZE) {
                    return Err(Fail(S_IOERR, "data length not a multiple of 512"));
                }
                let mut off = self.range(sector, len)?;
                let mut left = len;
                while left > 0 {
                    let n = left.min(CHUNK as u64) as usize;
                    self.scratch.resize(n, 0);
                    self.disk.read_at(&mut self.scratch[..n], off).map_err(io)?;
                    data_out.write(&self.scratch[..n]).map_err(short)?;
                    off += n as u64;
                    left -= n as u64;
                }
                Ok(len as u32)
            }
            req::OUT => {
                self.writable_check()?;
                if data_out.remaining() > 0 {
                    return Err(Fail(
                        S_IOERR,
                        "write request with a device-writable data buffer",
                    ));
                }
                let len = data_in.remaining();
                if !len.is_multiple_of(SECTOR_SIZE) {
                    return Err(Fail(S_IOERR, "data length not a multiple of 512"));
                }
                let mut off = self.range(sector, len)?;
                let mut left = len;
                while left > 0 {
                    let n = left.min(CHUNK as u64) as usize;
                    self.scratch.resize(n, 0);
                    data_in.read(&mut self.scratch[..n]).map_err(short)?;
                    self.disk.write_at(&self.scratch[..n], off).map_err(io)?;
                    off += n as u64;
                    left -= n as u64;
                }
                Ok(0)
            }
            req::FLUSH => {
                if !self.read_only {
                    self.disk.flush().map_err(io)?;
                }
                Ok(0)
            }
            req::GET_ID => {
                let n = (data_out.remaining() as usize).min(ID_BYTES);
                data_out.write(&self.serial[..n]).map_err(short)?;
                Ok(n as u32)
            }
            req::DISCARD | req::WRITE_ZEROES => {
                self.writable_check()?;
                let nseg = data_in.remaining() / 16;
                if nseg == 0 || !data_in.remaining().is_multiple_of(16) {
                    return Err(Fail(S_UNSUPP, "malformed discard segment list"));
                }
                if nseg > u64::from(MAX_DISCARD_SEG) {
                    return Err(Fail(S_UNSUPP, "too many discard segments"));
                }
                for _ in 0..nseg {
                    let mut seg = [0u8; 16];
                    data_in.read(&mut seg).map_err(short)?;
                    let s = u64::from_le_bytes(seg[0..8].try_into().unwrap_or_default());
                    let count = u32::from_le_bytes(seg[8..12].try_into().unwrap_or_default());
                    let flags = u32::from_le_bytes(seg[12..16].try_into().unwrap_or_default());
                    // Only write-zeroes has a flag (bit 0: unmap allowed).
                    let allowed = if kind == req::WRITE_ZEROES { 1 } else { 0 };
                    if flags & !allowed != 0 {
                        return Err(Fail(S_UNSUPP, "unknown discard segment flags"));
                    }
                    if count > MAX_DISCARD_SECTORS {
                        return Err(Fail(S_IOERR, "discard segment too large"));
                    }
                    let len = u64::from(count) * SECTOR_SIZE;
                    let off = self.range(s, len)?;
                    if len == 0 {
                        continue;
                    }
                    if kind == req::DISCARD {
                        self.disk.discard(off, len).map_err(io)?;
                    } else {
                        self.disk.write_zeroes(off, len).map_err(io)?;
                    }
                }
                Ok(0)
            }
            _ => Err(Fail(S_UNSUPP, "unsupported request type")),
        }
    }
}

impl Block {
    /// Handle one checked chain; returns the used length.
    fn handle(req: &mut Request<'_>, int: &Interrupt, mem: &GuestMemoryMmap, chain: &Chain) -> u32 {
        // The status byte is the last byte of the last writable buffer.
        let Some(last) = chain.writable.iter().rposition(|b| b.len > 0) else {
            int.warn_once(
                "request without a status byte",
                format_args!(
                    "request {} has no writable status byte; dropped",
                    chain.head
                ),
            );
            return 0;
        };
        let mut out_bufs = chain.writable[..=last].to_vec();
        let status_addr = {
            let b = &mut out_bufs[last];
            b.len -= 1;
            b.addr.0.wrapping_add(u64::from(b.len))
        };
        let write_status = |s: u8| {
            use vessel_machine::vm_memory::{Bytes, GuestAddress};
            let _ = mem.write_obj(s, GuestAddress(status_addr));
        };
        let mut data_in = Cursor::new(mem, &chain.readable);
        let mut header = [0u8; 16];
        if data_in.read(&mut header).is_err() {
            int.warn_once(
                "request header too short",
                format_args!("request {}: header shorter than 16 bytes", chain.head),
            );
            write_status(S_IOERR);
            return 1;
        }
        let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let mut sector = [0u8; 8];
        sector.copy_from_slice(&header[8..16]);
        let sector = u64::from_le_bytes(sector);
        let mut data_out = Cursor::new(mem, &out_bufs);
        if total_len(&out_bufs) > u64::from(u32::MAX) - 1 {
            write_status(S_IOERR);
            return 1;
        }
        match req.serve(kind, sector, &mut data_in, &mut data_out) {
            Ok(n) => {
                write_status(S_OK);
                n + 1
            }
            Err(Fail(status, why)) => {
                int.warn_once(
                    why,
                    format_args!(
                        "request {} (type {kind}, sector {sector}) failed: {why}",
                        chain.head
                    ),
                );
                write_status(status);
                // Whatever was written before the failure still counts.
                data_out.done() as u32 + 1
            }
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        device_type::BLOCK
    }

    fn features(&self) -> u64 {
        use features::*;
        let mut f = SIZE_MAX | SEG_MAX | FLUSH;
        if self.read_only {
            f |= RO;
        } else {
            f |= DISCARD | WRITE_ZEROES;
        }
        f
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, queues: ActiveQueues) -> Result<(), DeviceError> {
        self.active = Some(queues);
        Ok(())
    }

    fn process_queue(&mut self, index: usize) -> Result<(), DeviceError> {
        let Some(active) = &self.active else {
            return Ok(());
        };
        let mut req = Request {
            disk: self.disk.as_mut(),
            scratch: &mut self.scratch,
            read_only: self.read_only,
            serial: &self.serial,
            sectors: self.sectors,
        };
        let int = active.interrupt.clone();
        drain_queue(active, index, |mem, chain| {
            Self::handle(&mut req, &int, mem, chain)
        })
    }

    fn reset(&mut self) {
        self.active = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::raw::RawDisk;
    use crate::virtio::mmio::regs;
    use crate::virtio::testdriver::{Driver, WRITE};
    use crate::virtio::testutil::memory;
    use std::path::PathBuf;

    const HDR: u64 = 0x8_0000;
    const DATA: u64 = 0x9_0000;
    const STATUS: u64 = 0xa_0000;

    struct Disk {
        _dir: tempfile::TempDir,
        path: PathBuf,
    }

    fn disk(len: usize) -> Disk {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let data: Vec<u8> = (0..len).map(|i| (i / 512) as u8).collect();
        std::fs::write(&path, data).unwrap();
        Disk { _dir: dir, path }
    }

    fn block(d: &Disk, ro: bool, serial: Option<&str>) -> Box<Block> {
        let backend = RawDisk::open(&d.path, ro).unwrap();
        let opts = BlockOptions {
            read_only: ro,
            serial: serial.map(str::to_string),
        };
        Box::new(Block::new(Box::new(backend), opts).unwrap())
    }

    fn header(drv: &Driver<'_>, kind: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        drv.write_bytes(HDR, &h);
        drv.write_bytes(STATUS, &[0xff]);
    }

    /// Submit a request; returns (status, used len).
    fn request(
        drv: &mut Driver<'_>,
        kind: u32,
        sector: u64,
        data: Option<(u32, bool)>,
    ) -> (u8, u32) {
        header(drv, kind, sector);
        let mut bufs = vec![(HDR, 16, 0)];
        if let Some((len, write)) = data {
            bufs.push((DATA, len, if write { WRITE } else { 0 }));
        }
        bufs.push((STATUS, 1, WRITE));
        let n = drv.used_idx(0);
        drv.submit(0, &bufs);
        assert_eq!(drv.used_idx(0), n.wrapping_add(1), "request completed");
        (drv.read_bytes(STATUS, 1)[0], drv.used(0, n).1)
    }

    #[test]
    fn config_space_and_features() {
        let d = disk(1 << 20);
        let mem = memory();
        let mut drv = Driver::new(&mem, block(&d, false, None));
        assert_eq!(drv.r(regs::CONFIG), 2048);
        assert_eq!(drv.r(regs::CONFIG + 4), 0);
        assert_eq!(drv.r(regs::CONFIG + 12), SEG_MAX);
        let f = drv.device_features();
        assert_ne!(f & features::FLUSH, 0);
        assert_ne!(f & features::DISCARD, 0);
        assert_eq!(f & features::RO, 0);
        let mut ro = Driver::new(&mem, block(&d, true, None));
        let f = ro.device_features();
        assert_ne!(f & features::RO, 0);
        assert_eq!(f & (features::DISCARD | features::WRITE_ZEROES), 0);
    }

    #[test]
    fn write_flush_read_round_trip_reaches_the_file() {
        let d = disk(1 << 20);
        let mem = memory();
        let mut drv = Driver::new(&mem, block(&d, false, None));
        drv.init(0, &[256]);
        let payload: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
        drv.write_bytes(DATA, &payload);
        assert_eq!(
            request(&mut drv, req::OUT, 10, Some((4096, false))),
            (S_OK, 1)
        );
        assert_eq!(request(&mut drv, req::FLUSH, 0, None), (S_OK, 1));
        let file = std::fs::read(&d.path).unwrap();
        assert_eq!(&file[5120..5120 + 4096], &payload[..]);
        drv.write_bytes(DATA, &[0u8; 8192]);
        assert_eq!(
            request(&mut drv, req::IN, 9, Some((8192, true))),
            (S_OK, 8193)
        );
        let back = drv.read_bytes(DATA, 8192);
        assert_eq!(&back[..512], &[9u8; 512][..]);
        assert_eq!(&back[512..4608], &payload[..]);
        assert_eq!(&back[4608..5120], &[18u8; 512][..]);
    }

    #[test]
    fn get_id_returns_the_serial() {
        let d = disk(1 << 16);
        let mem = memory();
        let mut drv = Driver::new(&mem, block(&d, false, Some("vessel-disk-0")));
        drv.init(0, &[256]);
        assert_eq!(
            request(&mut drv, req::GET_ID, 0, Some((20, true))),
            (S_OK, 21)
        );
        let id = drv.read_bytes(DATA, 20);
        assert_eq!(&id[..13], b"vessel-disk-0");
        assert!(id[13..].iter().all(|&b| b == 0));
        let long = "x".repeat(21);
        let backend = RawDisk::open(&d.path, false).unwrap();
        let opts = BlockOptions {
            serial: Some(long),
            ..BlockOptions::default()
        };
        assert!(Block::new(Box::new(backend), opts).is_err());
    }

    #[test]
    fn read_only_disk_refuses_writes_and_keeps_its_bytes() {
        let d = disk(1 << 16);
        let before = std::fs::read(&d.path).unwrap();
        let mem = memory();
        let mut drv = Driver::new(&mem, block(&d, true, None));
        drv.init(features::RO, &[256]);
        drv.write_bytes(DATA, &[0x55; 512]);
        assert_eq!(
            request(&mut drv, req::OUT, 0, Some((512, false))).0,
            S_IOERR
        );
        drv.write_bytes(DATA, &[0u8; 16]);
        assert_eq!(
            request(&mut drv, req::DISCARD, 0, Some((16, false))).0,
            S_IOERR
        );
        assert_eq!(request(&mut drv, req::FLUSH, 0, None).0, S_OK);
        assert_eq!(request(&mut drv, req::IN, 0, Some((512, true))).0, S_OK);
        assert_eq!(std::fs::read(&d.path).unwrap(), before);
    }

    #[test]
    fn out_of_range_and_malformed_requests_fail_cleanly() {
        let d = disk(1 << 16); // 128 sectors
        let mem = memory();
        let mut drv = Driver::new(&mem, block(&d, false, None));
        drv.init(0, &[256]);
        assert_eq!(
            request(&mut drv, req::IN, 128, Some((512, true))).0,
            S_IOERR
        );
        assert_eq!(
            request(&mut drv, req::IN, 127, Some((1024, true))).0,
            S_IOERR
        );
        assert_eq!(
            request(&mut drv, req::IN, u64::MAX, Some((512, true))).0,
            S_IOERR
        );
        assert_eq!(
            request(&mut drv, req::OUT, u64::MAX / 512, Some((512, false))).0,
            S_IOERR
        );
        assert_eq!(
            request(&mut drv, req::IN, 0, Some((100, true))).0,
            S_IOERR,
            "not whole sectors"
        );
        assert_eq!(request(&mut drv, 99, 0, None).0, S_UNSUPP);
        // Data buffers with the wrong direction.
        assert_eq!(request(&mut drv, req::IN, 0, Some((512, false))).0, S_IOERR);
        assert_eq!(request(&mut drv, req::OUT, 0, Some((512, true))).0, S_IOERR);
        // Header too short.
        drv.write_bytes(STATUS, &[0xff]);
        drv.submit(0, &[(HDR, 8, 0), (STATUS, 1, WRITE)]);
        assert_eq!(drv.read_bytes(STATUS, 1)[0], S_IOERR);
        // No status byte at all: completed empty, device still works.
        let n = drv.used_idx(0);
        drv.submit(0, &[(HDR, 16, 0)]);
        assert_eq!(drv.used(0, n).1, 0);
        // A data buffer outside guest memory.
        header(&drv, req::IN, 0);
        let n = drv.used_idx(0);
        drv.submit(
            0,
            &[(HDR, 16, 0), (0xffff_0000, 512, WRITE), (STATUS, 1, WRITE)],
        );
        assert_eq!(drv.used(0, n).1, 0);
        assert_eq!(drv.read_bytes(STATUS, 1)[0], 0xff, "untouched");
        assert!(!drv.needs_reset());
        assert_eq!(request(&mut drv, req::IN, 0, Some((512, true))).0, S_OK);
    }

    #[test]
    fn discard_and_write_zeroes() {
        let d = disk(1 << 16);
        let mem = memory();
        let mut drv = Driver::new(&mem, block(&d, false, None));
        drv.init(features::DISCARD | features::WRITE_ZEROES, &[256]);
        let seg = |sector: u64, n: u32, flags: u32| {
            let mut s = [0u8; 16];
            s[0..8].copy_from_slice(&sector.to_le_bytes());
            s[8..12].copy_from_slice(&n.to_le_bytes());
            s[12..16].copy_from_slice(&flags.to_le_bytes());
            s
        };
        drv.write_bytes(DATA, &seg(8, 8, 0));
        assert_eq!(
            request(&mut drv, req::DISCARD, 0, Some((16, false))).0,
            S_OK
        );
        drv.write_bytes(DATA, &seg(32, 4, 1));
        assert_eq!(
            request(&mut drv, req::WRITE_ZEROES, 0, Some((16, false))).0,
            S_OK
        );
        drv.write_bytes(DATA, &seg(32, 4, 1));
        assert_eq!(
            request(&mut drv, req::DISCARD, 0, Some((16, false))).0,
            S_UNSUPP,
            "unmap flag on discard"
        );
        drv.write_bytes(DATA, &seg(120, 9, 0));
        assert_eq!(
            request(&mut drv, req::WRITE_ZEROES, 0, Some((16, false))).0,
            S_IOERR,
            "beyond capacity"
        );
        assert_eq!(
            request(&mut drv, req::DISCARD, 0, Some((15, false))).0,
            S_UNSUPP
        );
        let f = std::fs::read(&d.path).unwrap();
        assert!(f[8 * 512..16 * 512].iter().all(|&b| b == 0));
        assert!(f[32 * 512..36 * 512].iter().all(|&b| b == 0));
        assert_eq!(f[16 * 512], 16);
        assert_eq!(f[36 * 512], 36);
        assert_eq!(f[120 * 512], 120);
    }

    #[test]
    fn two_disks_on_two_transports_are_independent() {
        let (d1, d2) = (disk(1 << 16), disk(1 << 17));
        let mem1 = memory();
        let mem2 = memory();
        let mut a = Driver::new(&mem1, block(&d1, false, Some("a")));
        let mut b = Driver::new(&mem2, block(&d2, false, Some("b")));
        a.init(0, &[256]);
        b.init(0, &[256]);
        assert_eq!(a.r(regs::CONFIG), 128);
        assert_eq!(b.r(regs::CONFIG), 256);
        a.write_bytes(DATA, &[0xaa; 512]);
        b.write_bytes(DATA, &[0xbb; 512]);
        assert_eq!(request(&mut a, req::OUT, 1, Some((512, false))).0, S_OK);
        assert_eq!(request(&mut b, req::OUT, 1, Some((512, false))).0, S_OK);
        assert_eq!(std::fs::read(&d1.path).unwrap()[512], 0xaa);
        assert_eq!(std::fs::read(&d2.path).unwrap()[512], 0xbb);
    }

    #[test]
    fn indirect_descriptor_tables_work() {
        use virtio_queue::desc::{RawDescriptor, split::Descriptor};
        let d = disk(1 << 16);
        let mem = memory();
        let mut drv = Driver::new(&mem, block(&d, false, None));
        drv.init(crate::virtio::features::RING_INDIRECT_DESC, &[256]);
        header(&drv, req::IN, 3);
        let table = 0xc_0000u64;
        let descs = [
            Descriptor::new(HDR, 16, 1, 1),
            Descriptor::new(DATA, 512, 1 | 2, 2),
            Descriptor::new(STATUS, 1, 2, 0),
        ];
        for (i, dsc) in descs.iter().enumerate() {
            let raw = RawDescriptor::from(*dsc);
            use vessel_machine::vm_memory::{Bytes, GuestAddress};
            mem.write_obj(raw, GuestAddress(table + 16 * i as u64))
                .unwrap();
        }
        drv.submit(0, &[(table, 48, 4)]);
        assert_eq!(drv.used(0, 0).1, 513);
        assert_eq!(drv.read_bytes(STATUS, 1)[0], S_OK);
        assert_eq!(drv.read_bytes(DATA, 512), vec![3u8; 512]);
    }
}
