//! An empty virtio-mmio transport, as QEMU's virt leaves its unused slots:
//! MagicValue "virt", Version 2, DeviceID 0 (no device), VendorID "QEMU".
//! Linux probes it and skips it.

use vessel_machine::BusDevice;

const MAGIC: u32 = 0x7472_6976;
const VERSION: u32 = 2;
const VENDOR: u32 = 0x554d_4551;

pub struct EmptyVirtioSlot;

impl BusDevice for EmptyVirtioSlot {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let value = match offset {
            0x0 => MAGIC,
            0x4 => VERSION,
            0xc => VENDOR,
            _ => 0,
        };
        if data.len() == 4 {
            data.copy_from_slice(&value.to_le_bytes());
        }
    }

    fn write(&mut self, _offset: u64, _data: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(offset: u64) -> u32 {
        let mut b = [0u8; 4];
        EmptyVirtioSlot.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn reads_like_qemus_empty_transport() {
        assert_eq!(&r(0).to_le_bytes(), b"virt");
        assert_eq!(r(4), 2);
        assert_eq!(r(8), 0, "device id 0: no device");
        assert_eq!(r(0xc), 0x554d_4551);
        assert_eq!(r(0x70), 0);
    }
}
