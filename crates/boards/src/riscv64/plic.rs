//! The SiFive PLIC as QEMU's virt board has it: sources 1 to 96,
//! priorities 0..=7, two contexts per hart (M-mode then S-mode), level-
//! triggered sources with claim/complete gateways.
//!
//! Register map (offsets from the PLIC base):
//! - `0x000000 + 4 * source`: priority
//! - `0x001000`: pending bits (read-only)
//! - `0x002000 + 0x80 * context`: enable bits
//! - `0x200000 + 0x1000 * context`: threshold; `+ 4`: claim / complete

use std::sync::{Arc, Mutex, MutexGuard};

use vessel_machine::{BusDevice, IrqLine};

use super::layout::{PLIC_NUM_PRIORITIES, PLIC_NUM_SOURCES};
use super::wires::Harts;

const PRIORITY: u64 = 0x0;
const PENDING: u64 = 0x1000;
const ENABLE: u64 = 0x2000;
const ENABLE_STRIDE: u64 = 0x80;
const CONTEXT: u64 = 0x20_0000;
const CONTEXT_STRIDE: u64 = 0x1000;

const WORDS: usize = PLIC_NUM_SOURCES.div_ceil(32) as usize;
const PRIORITY_MASK: u32 = (PLIC_NUM_PRIORITIES + 1).next_power_of_two() - 1;

struct Context {
    enable: [u32; WORDS],
    threshold: u32,
}

/// The PLIC's state. Devices reach it through [`PlicSource`] lines, harts
/// through the MMIO registers of [`PlicMmio`].
pub struct Plic {
    priority: [u32; PLIC_NUM_SOURCES as usize],
    /// The level each device drives.
    level: [u32; WORDS],
    pending: [u32; WORDS],
    claimed: [u32; WORDS],
    contexts: Vec<Context>,
    harts: Harts,
    /// The output last driven per context, to drive only changes.
    outputs: Vec<bool>,
}

fn bit(source: u32) -> (usize, u32) {
    ((source / 32) as usize, 1 << (source % 32))
}

impl Plic {
    pub fn new(harts: Harts) -> Self {
        let contexts = (0..2 * harts.len())
            .map(|_| Context {
                enable: [0; WORDS],
                threshold: 0,
            })
            .collect();
        Self {
            priority: [0; PLIC_NUM_SOURCES as usize],
            level: [0; WORDS],
            pending: [0; WORDS],
            claimed: [0; WORDS],
            outputs: vec![false; 2 * harts.len()],
            contexts,
            harts,
        }
    }

    /// A device drives `source` to `high` (sources 1..=96; others ignored).
    pub fn set_level(&mut self, source: u32, high: bool) {
        if source == 0 || source >= PLIC_NUM_SOURCES {
            return;
        }
        let (w, b) = bit(source);
        if high {
            self.level[w] |= b;
            // A claimed source re-pends only once the handler completes it.
            if self.claimed[w] & b == 0 {
                self.pending[w] |= b;
            }
        } else {
            self.level[w] &= !b;
            self.pending[w] &= !b;
        }
        self.update();
    }

    /// The highest-priority source pending and enabled for `context` above
    /// its threshold; 0 if none.
    fn best(&self, context: usize) -> u32 {
        let ctx = &self.contexts[context];
        let mut best = 0;
        let mut best_prio = ctx.threshold;
        for w in 0..WORDS {
            let mut bits = self.pending[w] & !self.claimed[w] & ctx.enable[w];
            while bits != 0 {
                let source = w as u32 * 32 + bits.trailing_zeros();
                bits &= bits - 1;
                let prio = self.priority[source as usize];
                if prio > best_prio {
                    best = source;
                    best_prio = prio;
                }
            }
        }
        best
    }

    /// Drive each context's output line from the current state.
    fn update(&mut self) {
        for context in 0..self.contexts.len() {
            let on = self.best(context) != 0;
            if on != self.outputs[context] {
                self.outputs[context] = on;
                let hart = &self.harts[context / 2];
                if context % 2 == 0 {
                    hart.set_meip(on);
                } else {
                    hart.set_seip(on);
                }
            }
        }
    }

    fn claim(&mut self, context: usize) -> u32 {
        let source = self.best(context);
        if source != 0 {
            let (w, b) = bit(source);
            self.pending[w] &= !b;
            self.claimed[w] |= b;
            self.update();
        }
        source
    }

    fn complete(&mut self, context: usize, source: u32) {
        if source == 0 || source >= PLIC_NUM_SOURCES {
            return;
        }
        let (w, b) = bit(source);
        if self.contexts[context].enable[w] & b == 0 {
            return;
        }
        self.claimed[w] &= !b;
        // Level-triggered: a device still asserting its line pends again.
        if self.level[w] & b != 0 {
            self.pending[w] |= b;
        }
        self.update();
    }

    fn read32(&mut self, offset: u64) -> u32 {
        let nctx = self.contexts.len() as u64;
        match offset {
            o if o < PENDING => self
                .priority
                .get(((o - PRIORITY) / 4) as usize)
                .copied()
                .unwrap_or(0),
            o if o < PENDING + 4 * WORDS as u64 => self.pending[((o - PENDING) / 4) as usize],
            o if (ENABLE..ENABLE + ENABLE_STRIDE * nctx).contains(&o) => {
                let ctx = ((o - ENABLE) / ENABLE_STRIDE) as usize;
                let word = ((o - ENABLE) % ENABLE_STRIDE / 4) as usize;
                self.contexts[ctx].enable.get(word).copied().unwrap_or(0)
            }
            o if (CONTEXT..CONTEXT + CONTEXT_STRIDE * nctx).contains(&o) => {
                let ctx = ((o - CONTEXT) / CONTEXT_STRIDE) as usize;
                match (o - CONTEXT) % CONTEXT_STRIDE {
                    0 => self.contexts[ctx].threshold,
                    4 => self.claim(ctx),
                    _ => 0,
                }
            }
            _ => 0,
        }
    }

    fn write32(&mut self, offset: u64, value: u32) {
        let nctx = self.contexts.len() as u64;
        match offset {
            o if o < PENDING => {
                let source = ((o - PRIORITY) / 4) as usize;
                if source != 0
                    && let Some(p) = self.priority.get_mut(source)
                {
                    *p = value & PRIORITY_MASK;
                    self.update();
                }
            }
            o if (ENABLE..ENABLE + ENABLE_STRIDE * nctx).contains(&o) => {
                let ctx = ((o - ENABLE) / ENABLE_STRIDE) as usize;
                let word = ((o - ENABLE) % ENABLE_STRIDE / 4) as usize;
                if let Some(e) = self.contexts[ctx].enable.get_mut(word) {
                    // Source 0 does not exist and cannot be enabled.
                    *e = if word == 0 { value & !1 } else { value };
                    self.update();
                }
            }
            o if (CONTEXT..CONTEXT + CONTEXT_STRIDE * nctx).contains(&o) => {
                let ctx = ((o - CONTEXT) / CONTEXT_STRIDE) as usize;
                match (o - CONTEXT) % CONTEXT_STRIDE {
                    0 => {
                        self.contexts[ctx].threshold = value & PRIORITY_MASK;
                        self.update();
                    }
                    4 => self.complete(ctx, value),
                    _ => {}
                }
            }
            // Pending bits are read-only.
            _ => {}
        }
    }
}

/// A shared PLIC.
pub type SharedPlic = Arc<Mutex<Plic>>;

fn lock(plic: &Mutex<Plic>) -> MutexGuard<'_, Plic> {
    plic.lock().unwrap_or_else(|p| p.into_inner())
}

/// The PLIC's registers on the bus.
pub struct PlicMmio(pub SharedPlic);

impl BusDevice for PlicMmio {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        // Registers are 32 bits wide; 64-bit accesses read two of them.
        if !offset.is_multiple_of(4) || (data.len() != 4 && data.len() != 8) {
            return;
        }
        let mut plic = lock(&self.0);
        for (i, chunk) in data.chunks_mut(4).enumerate() {
            chunk.copy_from_slice(&plic.read32(offset + 4 * i as u64).to_le_bytes());
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if !offset.is_multiple_of(4) || (data.len() != 4 && data.len() != 8) {
            return;
        }
        let mut plic = lock(&self.0);
        for (i, chunk) in data.chunks(4).enumerate() {
            let mut word = [0u8; 4];
            word.copy_from_slice(chunk);
            plic.write32(offset + 4 * i as u64, u32::from_le_bytes(word));
        }
    }
}

/// One PLIC input, as devices see it.
pub struct PlicSource {
    plic: SharedPlic,
    source: u32,
}

impl PlicSource {
    pub fn new(plic: SharedPlic, source: u32) -> Self {
        Self { plic, source }
    }
}

impl IrqLine for PlicSource {
    fn set_level(&self, high: bool) {
        lock(&self.plic).set_level(self.source, high);
    }
}

#[cfg(test)]
mod tests {
    use super::super::wires::testing::{Lines, harts};
    use super::*;

    fn plic(n: usize) -> (Vec<Arc<Lines>>, PlicMmio, SharedPlic) {
        let (lines, dyns) = harts(n);
        let shared = Arc::new(Mutex::new(Plic::new(dyns)));
        (lines, PlicMmio(shared.clone()), shared)
    }

    fn w(m: &mut PlicMmio, offset: u64, v: u32) {
        m.write(offset, &v.to_le_bytes());
    }

    fn r(m: &mut PlicMmio, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        m.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    const fn enable(ctx: u64) -> u64 {
        ENABLE + ENABLE_STRIDE * ctx
    }
    const fn threshold(ctx: u64) -> u64 {
        CONTEXT + CONTEXT_STRIDE * ctx
    }
    const fn claim(ctx: u64) -> u64 {
        threshold(ctx) + 4
    }

    #[test]
    fn claim_complete_of_a_level_source() {
        let (lines, mut m, shared) = plic(1);
        let uart = PlicSource::new(shared, 10);
        w(&mut m, 4 * 10, 1);
        w(&mut m, enable(1), 1 << 10); // S-mode context of hart 0
        uart.set_level(true);
        assert!(lines[0].seip());
        assert!(!lines[0].meip(), "M context has nothing enabled");
        assert_eq!(r(&mut m, PENDING), 1 << 10);
        assert_eq!(r(&mut m, claim(1)), 10);
        assert!(!lines[0].seip(), "claimed sources do not signal");
        assert_eq!(r(&mut m, PENDING), 0);
        assert_eq!(r(&mut m, claim(1)), 0, "nothing else to claim");
        // Still asserted at completion: pends again.
        w(&mut m, claim(1), 10);
        assert!(lines[0].seip());
        assert_eq!(r(&mut m, claim(1)), 10);
        uart.set_level(false);
        w(&mut m, claim(1), 10);
        assert!(!lines[0].seip());
        assert_eq!(r(&mut m, PENDING), 0);
    }

    #[test]
    fn priority_and_threshold_choose_and_mask() {
        let (lines, mut m, shared) = plic(1);
        let a = PlicSource::new(shared.clone(), 3);
        let b = PlicSource::new(shared.clone(), 5);
        w(&mut m, 4 * 3, 2);
        w(&mut m, 4 * 5, 6);
        w(&mut m, enable(0), (1 << 3) | (1 << 5));
        a.set_level(true);
        b.set_level(true);
        assert!(lines[0].meip());
        w(&mut m, threshold(0), 6);
        assert!(!lines[0].meip(), "threshold 6 masks priority 6 and below");
        assert_eq!(r(&mut m, claim(0)), 0);
        w(&mut m, threshold(0), 2);
        assert!(lines[0].meip());
        assert_eq!(r(&mut m, claim(0)), 5, "highest priority first");
        assert!(!lines[0].meip(), "priority 2 is not above threshold 2");
        w(&mut m, threshold(0), 0);
        assert_eq!(r(&mut m, claim(0)), 3);
        // Priority 0 never interrupts; priorities are 3 bits.
        w(&mut m, 4 * 3, 0xff);
        assert_eq!(r(&mut m, 4 * 3), 7);
        w(&mut m, threshold(0), 0x1f);
        assert_eq!(r(&mut m, threshold(0)), 7);
    }

    #[test]
    fn equal_priorities_go_to_the_lowest_source() {
        let (_, mut m, shared) = plic(1);
        for s in [40, 33] {
            w(&mut m, 4 * s, 1);
            PlicSource::new(shared.clone(), s as u32).set_level(true);
        }
        w(&mut m, enable(0) + 4, (1 << 1) | (1 << 8));
        assert_eq!(r(&mut m, PENDING + 4), (1 << 1) | (1 << 8));
        assert_eq!(r(&mut m, claim(0)), 33);
        assert_eq!(r(&mut m, claim(0)), 40);
    }

    #[test]
    fn enables_are_per_context_and_per_hart() {
        let (lines, mut m, shared) = plic(2);
        w(&mut m, 4 * 7, 1);
        w(&mut m, enable(3), 1 << 7); // hart 1, S-mode
        PlicSource::new(shared, 7).set_level(true);
        assert!(lines[1].seip());
        assert!(!lines[1].meip() && !lines[0].meip() && !lines[0].seip());
        assert_eq!(r(&mut m, enable(3)), 1 << 7);
        assert_eq!(r(&mut m, claim(0)), 0, "hart 0 M has it disabled");
        // Completing from a context that has the source disabled is ignored.
        assert_eq!(r(&mut m, claim(3)), 7);
        w(&mut m, claim(0), 7);
        w(&mut m, enable(3), 0);
        w(&mut m, claim(3), 7);
        w(&mut m, enable(3), 1 << 7);
        assert!(!lines[1].seip(), "source still claimed");
        w(&mut m, claim(3), 7);
        assert!(lines[1].seip());
    }

    #[test]
    fn the_last_source_is_96() {
        let (lines, mut m, shared) = plic(1);
        w(&mut m, 4 * 96, 1);
        w(&mut m, enable(0) + 12, 1);
        PlicSource::new(shared.clone(), 97).set_level(true);
        assert!(!lines[0].meip());
        PlicSource::new(shared, 96).set_level(true);
        assert_eq!(r(&mut m, claim(0)), 96);
    }

    #[test]
    fn guest_nonsense_is_harmless() {
        let (lines, mut m, shared) = plic(1);
        w(&mut m, enable(0), u32::MAX);
        assert_eq!(r(&mut m, enable(0)) & 1, 0, "source 0 cannot be enabled");
        w(&mut m, 0, 7);
        assert_eq!(r(&mut m, 0), 0);
        w(&mut m, PENDING, u32::MAX);
        assert_eq!(r(&mut m, PENDING), 0);
        w(&mut m, claim(0), 9999);
        w(&mut m, claim(0), 0);
        w(&mut m, enable(5), 1); // context of a hart that does not exist
        w(&mut m, threshold(9), 1);
        assert_eq!(r(&mut m, claim(9)), 0);
        m.write(2, &[1]);
        let mut b = [0u8; 2];
        m.read(0x1000, &mut b);
        PlicSource::new(shared.clone(), 0).set_level(true);
        PlicSource::new(shared, 500).set_level(true);
        assert!(!lines[0].meip());
    }
}
