//! The microvm's legacy devices on I/O ports: a 16550 serial port at 0x3f8
//! (rust-vmm's `vm-superio`, its interrupt on IRQ 4 through an irqfd) and
//! an i8042 keyboard controller whose reset command ends the VM cleanly.

use std::io::Write;
use std::sync::Arc;

use vessel_kvm::{ExitReason, IrqFd, VmControl};
use vessel_machine::BusDevice;
use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};

/// COM1: port base, register count and ISA IRQ.
pub const SERIAL_PORT: u64 = 0x3f8;
pub const SERIAL_PORT_LEN: u64 = 8;
pub const SERIAL_IRQ: u32 = 4;
/// The i8042 occupies ports 0x60–0x64.
pub const I8042_PORT: u64 = 0x60;
pub const I8042_PORT_LEN: u64 = 5;

/// The serial port's interrupt, raised through an irqfd.
pub struct IrqTrigger(pub Arc<IrqFd>);

impl Trigger for IrqTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.trigger()
    }
}

/// Where the guest's serial output goes.
pub type SerialOut = Box<dyn Write + Send>;

/// A 16550 UART on the port bus.
pub struct SerialDevice {
    serial: Serial<IrqTrigger, NoEvents, SerialOut>,
}

impl SerialDevice {
    pub fn new(irq: Arc<IrqFd>, out: SerialOut) -> Self {
        Self {
            serial: Serial::new(IrqTrigger(irq), out),
        }
    }

    /// Bytes for the guest to read (the console's input); returns how many
    /// fit in the receive FIFO.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        self.serial.enqueue_raw_bytes(bytes).unwrap_or(0)
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (Some(first), Ok(reg)) = (data.first_mut(), u8::try_from(offset)) {
            *first = self.serial.read(reg);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Some(&value), Ok(reg)) = (data.first(), u8::try_from(offset)) {
            // An output error (a closed pipe) must not stop the guest: the
            // byte is dropped as a real UART with nothing attached would.
            let _ = self.serial.write(reg, value);
            let _ = self.serial.writer_mut().flush();
        }
    }
}

/// The parts of an i8042 a microVM needs: a status register that says "no
/// data", and the CPU reset command (0xfe on the command port), which ends
/// the VM with [`ExitReason::Reset`].
pub struct I8042 {
    control: VmControl,
}

/// Offset of the command/status port (0x64) from 0x60.
const I8042_COMMAND: u64 = 4;
const I8042_CMD_RESET_CPU: u8 = 0xfe;

impl I8042 {
    pub fn new(control: VmControl) -> Self {
        Self { control }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Status 0: output buffer empty, input buffer empty.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == I8042_COMMAND && data.first() == Some(&I8042_CMD_RESET_CPU) {
            self.control.request_exit(ExitReason::Reset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reset_command_ends_the_vm_and_nothing_else_does() {
        let control = VmControl::new();
        let mut dev = I8042::new(control.clone());
        dev.write(0, &[0xfe]);
        dev.write(I8042_COMMAND, &[0x20]);
        dev.write(I8042_COMMAND, &[]);
        assert_eq!(control.exit_reason(), None);
        let mut status = [0xaa];
        dev.read(I8042_COMMAND, &mut status);
        assert_eq!(status, [0]);
        dev.write(I8042_COMMAND, &[0xfe]);
        assert_eq!(control.exit_reason(), Some(ExitReason::Reset));
    }
}
