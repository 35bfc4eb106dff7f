//! The ns16550a UART: rust-vmm's `vm-superio` serial model, wired to a PLIC
//! source as a level (the line is high while an enabled interrupt condition
//! is pending, as on real hardware and in QEMU).

use std::io::Write;
use std::sync::Arc;

use vessel_machine::{BusDevice, IrqLine};
use vm_superio::Trigger;
use vm_superio::serial::{NoEvents, Serial};

/// vm-superio signals edges through a `Trigger`; the board computes the
/// level from the register state after each access instead.
pub struct NoTrigger;

impl Trigger for NoTrigger {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        Ok(())
    }
}

const IER_RDA: u8 = 0x01;
const IER_THR: u8 = 0x02;
const IIR_RDA: u8 = 0x04;
const IIR_THR: u8 = 0x02;

pub struct Uart {
    serial: Serial<NoTrigger, NoEvents, Box<dyn Write + Send>>,
    irq: Arc<dyn IrqLine>,
    level: bool,
}

impl Uart {
    pub fn new(irq: Arc<dyn IrqLine>, out: Box<dyn Write + Send>) -> Self {
        Self {
            serial: Serial::new(NoTrigger, out),
            irq,
            level: false,
        }
    }

    fn update_irq(&mut self) {
        let state = self.serial.state();
        let ier = state.interrupt_enable;
        let iir = state.interrupt_identification;
        let level = (ier & IER_RDA != 0 && iir & IIR_RDA != 0)
            || (ier & IER_THR != 0 && iir & IIR_THR != 0);
        if level != self.level {
            self.level = level;
            self.irq.set_level(level);
        }
    }

    /// Queue console input for the guest; returns how many bytes fit in the
    /// receive FIFO (0 when it is full: try again once the guest read some).
    pub fn enqueue(&mut self, input: &[u8]) -> usize {
        let n = self.serial.enqueue_raw_bytes(input).unwrap_or(0);
        self.update_irq();
        n
    }
}

impl BusDevice for Uart {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset < 8 && !data.is_empty() {
            data[0] = self.serial.read(offset as u8);
            self.update_irq();
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset < 8 && !data.is_empty() {
            // An output error (a closed stdout) loses the byte, as a UART
            // with nothing on the line would.
            let _ = self.serial.write(offset as u8, data[0]);
            self.update_irq();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Default)]
    struct Line(AtomicBool);
    impl IrqLine for Line {
        fn set_level(&self, high: bool) {
            self.0.store(high, Ordering::SeqCst)
        }
    }

    #[derive(Clone, Default)]
    struct Out(Arc<Mutex<Vec<u8>>>);
    impl Write for Out {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn uart() -> (Uart, Arc<Line>, Out) {
        let line = Arc::new(Line::default());
        let out = Out::default();
        (Uart::new(line.clone(), Box::new(out.clone())), line, out)
    }

    fn r(u: &mut Uart, o: u64) -> u8 {
        let mut b = [0u8];
        u.read(o, &mut b);
        b[0]
    }

    #[test]
    fn transmits_bytes() {
        let (mut u, line, out) = uart();
        for b in b"hi\n" {
            u.write(0, &[*b]);
        }
        assert_eq!(&*out.0.lock().unwrap(), b"hi\n");
        assert_eq!(r(&mut u, 5) & 0x60, 0x60, "THR empty and idle");
        assert!(!line.0.load(Ordering::SeqCst), "no interrupt enabled");
    }

    #[test]
    fn receive_interrupt_is_a_level_until_the_fifo_drains() {
        let (mut u, line, _) = uart();
        u.write(1, &[IER_RDA]);
        assert_eq!(u.enqueue(b"ab"), 2);
        assert!(line.0.load(Ordering::SeqCst));
        assert_eq!(r(&mut u, 5) & 1, 1, "data ready");
        assert_eq!(r(&mut u, 0), b'a');
        assert_eq!(r(&mut u, 0), b'b');
        assert!(!line.0.load(Ordering::SeqCst));
        assert_eq!(r(&mut u, 5) & 1, 0);
    }

    #[test]
    fn masked_interrupts_keep_the_line_low() {
        let (mut u, line, _) = uart();
        u.enqueue(b"x");
        assert!(!line.0.load(Ordering::SeqCst));
        // Enabling with data waiting raises it, as a real 16550 does.
        u.write(1, &[IER_RDA]);
        assert!(line.0.load(Ordering::SeqCst));
        u.write(1, &[0]);
        assert!(!line.0.load(Ordering::SeqCst));
    }

    #[test]
    fn thr_empty_interrupt_fires_on_enable_and_clears_on_iir_read() {
        let (mut u, line, _) = uart();
        u.write(1, &[IER_THR]);
        assert!(line.0.load(Ordering::SeqCst));
        assert_eq!(r(&mut u, 2) & 0x0f, IIR_THR);
        assert!(!line.0.load(Ordering::SeqCst));
    }

    #[test]
    fn a_full_fifo_takes_what_fits() {
        let (mut u, _, _) = uart();
        let big = [b'z'; 100];
        let n = u.enqueue(&big);
        assert!(n > 0 && n < 100);
        assert_eq!(u.enqueue(&big), 0);
    }
}
