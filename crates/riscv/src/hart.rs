//! One hart: architectural state, the run loop, the decoded-instruction cache
//! and the tracer.

use crate::csr::{Csrs, MENVCFG_STCE, irqbit};
use crate::decode::{Instruction, decode, decode_compressed};
use crate::fastop::{Op, lower};
use crate::jit::{self, BlockFn, BlockInfo, Compiled, Jit};
use crate::mmu::Tlb;
use crate::trap::{CpuFault, Exit, cause};
use crate::{Clock, HartIrq, Mmio, Ram};
use std::sync::Arc;

/// The largest paging mode a hart supports (it supports all smaller ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MmuMode {
    Sv39,
    #[default]
    Sv48,
}

/// What a hart is: its id, its largest MMU mode and whether it compiles
/// hot code. The ISA is fixed: see [`Hart::isa_string`].
#[derive(Clone, Debug, Default)]
pub struct HartConfig {
    pub hart_id: u64,
    pub mmu: MmuMode,
    pub jit: JitMode,
}

/// Whether a hart compiles hot blocks to host code (`jit.rs`).
/// `VESSEL_JIT=0` in the environment turns it off for every hart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JitMode {
    /// Interpret everything.
    Off,
    /// Compile a decoded block once it has run this many times (at least 1).
    After(u32),
}

impl Default for JitMode {
    fn default() -> JitMode {
        JitMode::After(jit::HOT)
    }
}

/// How often (in instructions) the run loop looks at interrupt wires and
/// timers: at most a few tens of microseconds of guest time. Every look
/// ends a chain of compiled blocks (and the block that does not fit the
/// rest of the interval is interpreted), so 256 cost a fifth of a guest's
/// network throughput.
const IRQ_CHECK_INTERVAL: u64 = 4096;
/// Traps in a row without one retired instruction before the hart gives up.
const MAX_TRAPS_WITHOUT_PROGRESS: u32 = 64;

const ICACHE_BITS: usize = 12;
const ICACHE_SIZE: usize = 1 << ICACHE_BITS;

/// Decoded-block slots: 16 Ki thrashed on a Debian boot (its hot kernel
/// code is larger), 64 Ki took a third off the boot's CPU time.
const BLOCK_BITS: usize = 16;
const BLOCKS: usize = 1 << BLOCK_BITS;
/// Slots are allocated in chunks of this many on first use, so a small
/// guest does not pay for the whole cache.
const CHUNK_BITS: usize = 10;
/// Most instructions in one decoded block.
const BLOCK_MAX: usize = 32;

/// A decoded basic block: straight-line instructions from `paddr` up to the
/// first control transfer, CSR access, system instruction, or the page end.
/// Valid while `epoch` equals the hart's block epoch (bumped by `fence.i`).
#[derive(Clone, Debug)]
struct Block {
    paddr: u64,
    epoch: u64,
    /// Each operation with its raw bits (16 or 32; the length follows from them).
    insts: Vec<(Op, u32)>,
    /// No instruction in it can change privilege, translation or the block
    /// epoch, so its successor on the same guest page may run without a new
    /// fetch translation.
    chains: bool,
    /// Its compiled code, if it has been hot.
    code: Option<Compiled>,
    /// Runs since it was decoded (counted up to the JIT's threshold).
    hits: u32,
}

impl Block {
    const EMPTY: Block = Block {
        paddr: u64::MAX,
        epoch: 0,
        insts: Vec::new(),
        chains: false,
        code: None,
        hits: 0,
    };
}

/// Slot an empty chunk reads as (never valid: epoch 0 is never current).
static EMPTY_BLOCK: Block = Block::EMPTY;

/// The decoded-block cache: `BLOCKS` slots in pairs (2-way sets) chosen by
/// a hash of the physical address ([`block_index`]), in chunks allocated
/// when a block is first stored in them. A new block takes the set's first
/// way and moves the block there to the second, so two hot blocks that
/// share a set both stay (direct-mapped, such pairs evicted each other
/// thousands of times a second under a guest's network stack, each time
/// decoded again and interpreted until hot).
struct BlockCache {
    chunks: Box<[Option<Box<[Block]>>]>,
}

impl BlockCache {
    fn new() -> BlockCache {
        BlockCache {
            chunks: (0..BLOCKS >> CHUNK_BITS).map(|_| None).collect(),
        }
    }

    /// Move the block in the first way of a set (slot `idx`, even) to the
    /// second (whose block is dropped), before a new block takes `idx`.
    fn demote(&mut self, idx: usize) {
        if let Some(chunk) = self.chunks[idx >> CHUNK_BITS].as_mut() {
            let i = idx & ((1 << CHUNK_BITS) - 1);
            if chunk[i].paddr != u64::MAX {
                chunk.swap(i, i + 1);
            }
        }
    }
}

impl std::ops::Index<usize> for BlockCache {
    type Output = Block;
    #[inline(always)]
    fn index(&self, idx: usize) -> &Block {
        match &self.chunks[idx >> CHUNK_BITS] {
            Some(chunk) => &chunk[idx & ((1 << CHUNK_BITS) - 1)],
            None => &EMPTY_BLOCK,
        }
    }
}

impl std::ops::IndexMut<usize> for BlockCache {
    #[inline(always)]
    fn index_mut(&mut self, idx: usize) -> &mut Block {
        let chunk = self.chunks[idx >> CHUNK_BITS]
            .get_or_insert_with(|| (0..1 << CHUNK_BITS).map(|_| Block::EMPTY).collect());
        &mut chunk[idx & ((1 << CHUNK_BITS) - 1)]
    }
}

/// The first slot of the block-cache set of a block at `paddr`: a
/// multiplicative hash, so that hot code spread over megabytes uses every
/// set (taking the address bits directly left most slots unused, as blocks
/// start a dozen bytes apart on average, and made code 128 KiB apart
/// collide).
#[inline(always)]
fn block_index(paddr: u64) -> usize {
    ((paddr >> 1).wrapping_mul(HASH_MULTIPLIER) >> (64 - BLOCK_BITS)) as usize & !1
}

/// Fibonacci hashing's multiplier (2^64 / the golden ratio, odd).
const HASH_MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// Whether a block must end after `inst`.
fn ends_block(inst: &Instruction) -> bool {
    use Instruction as I;
    matches!(
        inst,
        I::Jal { .. }
            | I::Jalr { .. }
            | I::Branch { .. }
            | I::Ecall
            | I::Ebreak
            | I::Mret
            | I::Sret
            | I::Wfi
            | I::SfenceVma { .. }
            | I::FenceI
            | I::Csr {
                csr: crate::csr::addr::SATP,
                ..
            }
            | I::Illegal { .. }
    )
}

/// Whether `op` leaves privilege, instruction-fetch translation and the
/// block epoch alone, whatever its operands (lowered operations never touch
/// them; of the rest, system instructions, `satp` accesses and `fence.i`
/// may; other CSRs change data translation at most, which loads and stores
/// look up afresh).
fn chains_through(op: &Op) -> bool {
    use Instruction as I;
    match op {
        Op::Other(inst) => {
            matches!(
                inst,
                I::Lui { .. }
                    | I::Auipc { .. }
                    | I::Jal { .. }
                    | I::Jalr { .. }
                    | I::Branch { .. }
                    | I::Load { .. }
                    | I::Store { .. }
                    | I::OpImm { .. }
                    | I::OpImm32 { .. }
                    | I::Op { .. }
                    | I::Op32 { .. }
                    | I::Fence { .. }
                    | I::Lr { .. }
                    | I::Sc { .. }
                    | I::Amo { .. }
                    | I::FLoad { .. }
                    | I::FStore { .. }
                    | I::Fma { .. }
                    | I::Fp { .. }
            ) || matches!(inst, I::Csr { csr, .. } if *csr != crate::csr::addr::SATP)
        }
        _ => true,
    }
}

/// A decoded instruction, valid while the bits at `paddr` still equal `raw`
/// (checked on every hit, so writes to code need no explicit invalidation).
#[derive(Clone, Copy, Debug)]
struct CacheEntry {
    paddr: u64,
    raw: u32,
    inst: Instruction,
}

/// Why a decoded block stopped executing.
enum BlockEnd {
    /// It ran to its end (or to the instruction limit).
    Next,
    CheckIrq,
    Wfi,
    Trap(crate::trap::Trap),
}

/// What the executor asks of the run loop after an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Next,
    /// Interrupt enables or pending bits may have changed: check now.
    CheckIrq,
    /// WFI with nothing pending: return to the board.
    Wfi,
}

/// A RISC-V hart (RV64IMAFDC, M/S/U).
pub struct Hart {
    pub(crate) x: [u64; 32],
    pub(crate) f: [u64; 32],
    pub(crate) pc: u64,
    /// Current privilege: 0 = U, 1 = S, 3 = M.
    pub(crate) prv: u8,
    pub(crate) csr: Csrs,
    pub(crate) ram: Ram,
    pub(crate) clock: Arc<Clock>,
    pub(crate) irq: Arc<HartIrq>,
    pub(crate) config: HartConfig,
    pub(crate) tlb: Tlb,
    icache: Box<[CacheEntry]>,
    blocks: BlockCache,
    /// Bumped by `fence.i`: every decoded block becomes stale.
    pub(crate) block_epoch: u64,
    pub(crate) instret: u64,
    /// Raw bits of the instruction being executed (for illegal-instruction tval).
    pub(crate) cur_raw: u32,
    trace: bool,
    traps_in_a_row: u32,
    /// The compiler for hot blocks (`None`: interpreter only).
    pub(crate) jit: Option<Jit>,
    /// The trap a compiled block stopped at (status `jit::TRAP`).
    pub(crate) jit_trap: Option<crate::trap::Trap>,
    /// Link slots between compiled blocks are valid while they hold this;
    /// bumped when code may have changed (`fence.i`, the code mapping reused).
    pub(crate) link_epoch: u64,
    /// The link slot the last compiled block left by, unfilled (0: none).
    jit_exit_slot: usize,
    /// See `refresh_jump_tag` (`mmu.rs`).
    pub(crate) jump_tag: u64,
    /// Set by compiled code when an indirect jump missed the jump cache.
    jit_jump_miss: u64,
}

impl std::fmt::Debug for Hart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hart")
            .field("hart_id", &self.config.hart_id)
            .field("pc", &format_args!("{:#x}", self.pc))
            .field("prv", &self.prv)
            .field("instret", &self.instret)
            .finish()
    }
}

impl Hart {
    /// A hart in M-mode at pc 0 with all registers zero.
    /// `VESSEL_TRACE=1` in the environment prints every instruction to stderr.
    pub fn new(config: HartConfig, ram: Ram, clock: Arc<Clock>, irq: Arc<HartIrq>) -> Hart {
        let trace = std::env::var_os("VESSEL_TRACE").is_some_and(|v| v == "1");
        let empty = CacheEntry {
            paddr: u64::MAX,
            raw: 0,
            inst: Instruction::Illegal { raw: 0 },
        };
        let mut hart = Hart {
            x: [0; 32],
            f: [0; 32],
            pc: 0,
            prv: 3,
            csr: Csrs::new(),
            ram,
            clock,
            irq,
            config,
            tlb: Tlb::new(),
            icache: vec![empty; ICACHE_SIZE].into_boxed_slice(),
            blocks: BlockCache::new(),
            block_epoch: 1,
            instret: 0,
            cur_raw: 0,
            trace,
            traps_in_a_row: 0,
            jit: None,
            jit_trap: None,
            link_epoch: 1,
            jit_exit_slot: 0,
            jump_tag: 0,
            jit_jump_miss: 0,
        };
        hart.sync_mode();
        hart.jit = match hart.config.jit {
            JitMode::After(n) => Jit::new(hart.jit_layout(), n.max(1)),
            JitMode::Off => None,
        };
        hart
    }

    /// Where compiled code finds this hart's state.
    fn jit_layout(&self) -> jit::Layout {
        let off = |o: usize| i32::try_from(o).expect("Hart fields lie within 2 GiB of its start");
        let tlb = std::mem::offset_of!(Hart, tlb);
        let t = Tlb::layout();
        jit::Layout {
            x: off(std::mem::offset_of!(Hart, x)),
            pc: off(std::mem::offset_of!(Hart, pc)),
            instret: off(std::mem::offset_of!(Hart, instret)),
            tlb_epoch: off(tlb + t.epoch),
            tlb_load_base: off(tlb + t.load_base),
            tlb_store_base: off(tlb + t.store_base),
            tlb_entries: self.tlb.entries_addr(),
            tlb_entry_shift: t.entry_shift,
            tlb_set_mask: t.set_mask,
            entry_vpn: off(t.vpn),
            entry_epoch: off(t.entry_epoch),
            entry_host: off(t.host),
            resv_active: self.ram.reservations_active_addr(),
            resv_slot: self.ram.reservation_slot_addr(self.config.hart_id),
            ram_delta: self.ram.base().wrapping_sub(self.ram.host_addr() as u64),
            link_epoch: off(std::mem::offset_of!(Hart, link_epoch)),
            exit_slot: off(std::mem::offset_of!(Hart, jit_exit_slot)),
            jump_tag: off(std::mem::offset_of!(Hart, jump_tag)),
            jump_miss: off(std::mem::offset_of!(Hart, jit_jump_miss)),
            prv: off(std::mem::offset_of!(Hart, prv)),
            mstatus: off(std::mem::offset_of!(Hart, csr.mstatus)),
            hart: 0,
        }
    }

    /// Blocks compiled to host code so far (0 without the JIT).
    pub fn jit_blocks(&self) -> u64 {
        self.jit.as_ref().map_or(0, |j| j.compiled)
    }

    pub fn hart_id(&self) -> u64 {
        self.config.hart_id
    }
    pub fn pc(&self) -> u64 {
        self.pc
    }
    pub fn set_pc(&mut self, pc: u64) {
        self.pc = pc;
    }
    /// Integer register `i` (0..32; others read 0).
    pub fn reg(&self, i: usize) -> u64 {
        self.x.get(i).copied().unwrap_or(0)
    }
    /// Set integer register `i`; x0 stays 0.
    pub fn set_reg(&mut self, i: usize, v: u64) {
        if i != 0 && i < 32 {
            self.x[i] = v;
        }
    }
    /// Floating-point register `i` as raw bits.
    pub fn freg(&self, i: usize) -> u64 {
        self.f.get(i).copied().unwrap_or(0)
    }
    /// Current privilege level: 0 = U, 1 = S, 3 = M.
    pub fn privilege(&self) -> u8 {
        self.prv
    }
    /// Instructions retired so far.
    pub fn instret(&self) -> u64 {
        self.instret
    }
    /// Turn the instruction tracer on or off (also `VESSEL_TRACE=1`).
    pub fn set_trace(&mut self, on: bool) {
        self.trace = on;
    }

    /// The ISA string for the device tree: exactly what is implemented.
    pub fn isa_string(&self) -> String {
        let mut s = String::from("rv64imafdc");
        for e in &self.isa_extensions()[6..] {
            s.push('_');
            s.push_str(e);
        }
        s
    }

    /// The extensions for `riscv,isa-extensions`.
    pub fn isa_extensions(&self) -> Vec<&'static str> {
        vec![
            "i", "m", "a", "f", "d", "c", "zicsr", "zifencei", "zicntr", "zba", "zbb", "zbs",
            "sstc",
        ]
    }

    /// The device-tree `mmu-type`.
    pub fn mmu_type(&self) -> &'static str {
        match self.config.mmu {
            MmuMode::Sv39 => "riscv,sv39",
            MmuMode::Sv48 => "riscv,sv48",
        }
    }

    /// Earliest clock tick at which an enabled timer interrupt becomes pending.
    pub fn next_timer_deadline(&self) -> Option<u64> {
        let mut d: Option<u64> = None;
        if self.csr.mie & irqbit::MTI != 0 && self.irq.mtimecmp() != u64::MAX {
            d = Some(self.irq.mtimecmp());
        }
        if self.csr.mie & irqbit::STI != 0
            && self.csr.menvcfg & MENVCFG_STCE != 0
            && self.csr.stimecmp != u64::MAX
        {
            let s = self.csr.stimecmp;
            d = Some(d.map_or(s, |m| m.min(s)));
        }
        d
    }

    /// Drop this hart's LR reservation.
    pub(crate) fn reservation_clear(&mut self) {
        self.ram.clear_reservation(self.config.hart_id);
    }

    /// Run up to `budget` instructions, or until WFI or a fault.
    pub fn run(&mut self, mmio: &mut dyn Mmio, budget: u64) -> Exit {
        let end = self.instret.saturating_add(budget);
        let mut countdown = 0u64;
        // The last compiled block left by a jump (indirect, or to another
        // page) the jump cache did not know: the next compiled block found
        // goes in it.
        let mut jump_miss = false;
        // The link slot the last compiled block left by (0: none), the JIT
        // generation it belongs to and the pc it was going to: filled with
        // the code of the next block if that is the one at this pc and is
        // compiled. Kept when the chain of blocks it ended in had moved to
        // another page, so the run loop translates pc again first.
        let mut link: (usize, u64, u64) = (0, 0, 0);
        loop {
            if countdown == 0 {
                if let Some(c) = self.pending_interrupt() {
                    self.take_trap(cause::INTERRUPT | c, 0);
                    link = (0, 0, 0);
                }
                if self.instret >= end {
                    return Exit::Budget;
                }
                countdown = IRQ_CHECK_INTERVAL.min(end - self.instret);
            }
            // Translate pc once, then run blocks while they chain.
            let (mut paddr, host) = match self.fetch_host() {
                Ok(found) => found,
                Err(t) => {
                    link = (0, 0, 0);
                    if let Some(exit) = self.trap(t) {
                        return exit;
                    }
                    countdown = 0;
                    continue;
                }
            };
            // The guest page this translation covers: while pc stays on it
            // and nothing changed the translation, it still holds.
            let vpage = self.pc & !0xfff;
            let ppage = paddr & !0xfff;
            let host_page = host - (paddr & 0xfff) as usize;
            loop {
                // Find (or build) the decoded block at paddr.
                let mut idx = block_index(paddr);
                if self.blocks[idx].paddr != paddr && self.blocks[idx + 1].paddr == paddr {
                    idx += 1;
                }
                let b = &self.blocks[idx];
                if b.paddr != paddr || b.epoch != self.block_epoch {
                    let host = host_page + (paddr & 0xfff) as usize;
                    if b.paddr == paddr && self.unchanged(idx, host) {
                        // Stale only by `fence.i`, same bits: keep it (and its code).
                        self.blocks[idx].epoch = self.block_epoch;
                    } else {
                        if b.paddr != paddr {
                            // The first way's block moves to the second.
                            self.blocks.demote(idx);
                        }
                        self.build_block(idx, paddr, host);
                    }
                }
                let b = &self.blocks[idx];
                if b.insts.len() as u64 > countdown
                    && self.instret + b.insts.len() as u64 <= end
                    && self
                        .jit
                        .as_ref()
                        .is_some_and(|j| b.code.is_some_and(|c| c.generation == j.generation))
                {
                    // A compiled block that does not fit what is left of
                    // this interval but fits the budget: look at interrupts
                    // now and run it in the next interval, rather than
                    // interpret part of it (its decoded instructions are
                    // cold in the host's caches by now).
                    countdown = 0;
                    break;
                }
                let code = self.compiled(idx, countdown);
                if self.blocks[idx].insts.is_empty() && code.is_none() {
                    // Straddles a page: single-step it (until compiled code
                    // does that, see `jit::straddle`).
                    link = (0, 0, 0);
                    countdown -= 1;
                    match self.step(mmio) {
                        Ok(Flow::Next) => {}
                        Ok(Flow::CheckIrq) => countdown = 0,
                        Ok(Flow::Wfi) => return Exit::Wfi,
                        Err(t) => {
                            if let Some(exit) = self.trap(t) {
                                return exit;
                            }
                            countdown = 0;
                        }
                    }
                    break;
                }
                let mut chains = self.blocks[idx].chains;
                let (done, end_of_block) = match code {
                    Some(code) => {
                        if let Some(jit) = self.jit.as_mut() {
                            if link.0 != 0 && link.2 == self.pc {
                                jit.link(link.0, link.1, &code, self.link_epoch);
                            }
                            if jump_miss {
                                jit.remember_jump(self.pc, self.jump_tag, &code);
                            }
                        }
                        let (done, end, chained) = self.run_compiled(code.call, countdown, mmio);
                        // Linked blocks may have run after this one: the
                        // last one says whether the chain may go on.
                        chains = chained;
                        link = (
                            std::mem::take(&mut self.jit_exit_slot),
                            code.generation,
                            self.pc,
                        );
                        jump_miss = std::mem::take(&mut self.jit_jump_miss) != 0;
                        (done, end)
                    }
                    None => {
                        link = (0, 0, 0);
                        jump_miss = false;
                        // Borrow the block's instructions out of the cache
                        // while they run (nothing executed inside a block
                        // rebuilds blocks).
                        let insts = std::mem::take(&mut self.blocks[idx].insts);
                        let r = self.run_block(&insts, countdown, mmio);
                        self.blocks[idx].insts = insts;
                        r
                    }
                };
                countdown -= done;
                if done > 0 {
                    self.traps_in_a_row = 0;
                }
                match end_of_block {
                    BlockEnd::Next => {}
                    BlockEnd::CheckIrq => {
                        countdown = 0;
                        break;
                    }
                    BlockEnd::Wfi => return Exit::Wfi,
                    BlockEnd::Trap(t) => {
                        if let Some(exit) = self.trap(t) {
                            return exit;
                        }
                        countdown = 0;
                        break;
                    }
                }
                // Chain to the successor without the fetch TLB: the whole
                // block ran (countdown left), its instructions cannot change
                // privilege or translation (`chains`), and pc is on the same
                // guest page, so it maps to the same physical page.
                if countdown == 0 || !chains || self.pc & !0xfff != vpage {
                    break;
                }
                paddr = ppage | (self.pc & 0xfff);
            }
        }
    }

    /// The compiled code of block `idx` if it may run now: the JIT is on,
    /// the tracer off, the whole block fits in `limit`, and it is hot
    /// (compiled on the run that makes it so).
    #[inline(always)]
    fn compiled(&mut self, idx: usize, limit: u64) -> Option<Compiled> {
        let jit = self.jit.as_mut()?;
        let b = &mut self.blocks[idx];
        if b.insts.len() as u64 > limit || self.trace {
            return None;
        }
        if let Some(code) = b.code
            && code.generation == jit.generation
        {
            return Some(code);
        }
        b.hits += 1;
        if b.hits < jit.hot {
            return None;
        }
        b.hits = 0;
        let info = BlockInfo {
            paddr: b.paddr,
            pc: self.pc,
            chains: b.chains,
        };
        let before = jit.generation;
        let code = jit.compile(&info, &b.insts)?;
        b.code = Some(code);
        if jit.generation != before {
            // The mapping was reused: every link slot is gone.
            self.drop_links();
        }
        Some(code)
    }

    /// Guest code may have changed (`fence.i`): decoded blocks become
    /// stale, and with them every link and jump-cache entry.
    pub(crate) fn code_changed(&mut self) {
        self.block_epoch += 1;
        self.drop_links();
    }

    /// Drop every link slot and jump-cache entry at once (they hold the
    /// link epoch, which the jump tag includes).
    fn drop_links(&mut self) {
        self.link_epoch += 1;
        if self.link_epoch as u32 == 0 {
            // Link slots hold the epoch's low 32 bits (and 0 while empty):
            // rather than let a slot from 2^32 epochs ago match, retire all
            // compiled code, and skip 0.
            if let Some(jit) = self.jit.as_mut() {
                jit.retire_code();
            }
            self.link_epoch += 1;
        }
        self.refresh_jump_tag();
    }

    /// Run compiled block code with at most `limit` instructions (it may
    /// go on into linked blocks); returns how many instructions retired,
    /// why it stopped, and whether the next block may run without
    /// translating pc again (as a block's `chains`).
    fn run_compiled(
        &mut self,
        code: BlockFn,
        limit: u64,
        mut mmio: &mut dyn Mmio,
    ) -> (u64, BlockEnd, bool) {
        let before = self.instret;
        let mmio_ref: *mut &mut dyn Mmio = &mut mmio;
        // SAFETY: `code` was compiled by this hart's JIT from a block that is
        // still current (same paddr and epoch, same generation), for this
        // hart's layout; it gets the hart and the device bus exclusively
        // for the call, as its helpers expect, and links only to blocks
        // whose link slots still hold the current link epoch.
        let status = unsafe { code(self, mmio_ref.cast(), limit) };
        let done = self.instret - before;
        let end = match status {
            jit::NEXT | jit::NEXT_UNCHAINED => BlockEnd::Next,
            jit::CHECK_IRQ => BlockEnd::CheckIrq,
            jit::WFI => BlockEnd::Wfi,
            _ => match self.jit_trap.take() {
                Some(t) => BlockEnd::Trap(t),
                None => BlockEnd::CheckIrq,
            },
        };
        (done, end, status == jit::NEXT)
    }

    /// Step the instruction at pc, which straddles two pages, for compiled
    /// code (pc and instret are current): a `jit` status, `NEXT_UNCHAINED`
    /// if it changed privilege, fetch translation or code.
    pub(crate) fn jit_step(&mut self, mmio: &mut dyn Mmio) -> u64 {
        let (tag, epoch) = (self.jump_tag, self.block_epoch);
        match self.step(mmio) {
            Ok(Flow::Next) if self.jump_tag == tag && self.block_epoch == epoch => jit::NEXT,
            Ok(Flow::Next) => jit::NEXT_UNCHAINED,
            Ok(Flow::CheckIrq) => jit::CHECK_IRQ,
            Ok(Flow::Wfi) => jit::WFI,
            Err(t) => {
                self.jit_trap = Some(t);
                jit::TRAP
            }
        }
    }

    /// Execute the JIT's operation number `index` through the executor,
    /// for compiled code (pc and instret are current): a `jit` status.
    pub(crate) fn jit_exec_one(&mut self, mmio: &mut dyn Mmio, index: usize) -> u64 {
        let Some((op, raw)) = self.jit.as_ref().and_then(|j| j.op(index)) else {
            // Compiled code names only operations of its own generation.
            unreachable!("compiled code asked for executor operation {index}, which is not there");
        };
        let len = if raw & 3 == 3 { 4 } else { 2 };
        match self.exec_op(op, len, raw, mmio) {
            Ok(flow) => {
                self.instret += 1;
                match flow {
                    Flow::Next => jit::NEXT,
                    Flow::CheckIrq => jit::CHECK_IRQ,
                    Flow::Wfi => jit::WFI,
                }
            }
            Err(t) => {
                self.jit_trap = Some(t);
                jit::TRAP
            }
        }
    }

    /// Execute up to `limit` instructions of a decoded block; returns how
    /// many retired and why it stopped.
    #[inline(always)]
    fn run_block(
        &mut self,
        insts: &[(Op, u32)],
        limit: u64,
        mmio: &mut dyn Mmio,
    ) -> (u64, BlockEnd) {
        let n = insts
            .len()
            .min(usize::try_from(limit).unwrap_or(usize::MAX));
        let insts = &insts[..n];
        if self.trace {
            return self.run_block_traced(insts, mmio);
        }
        let mut done = 0u64;
        for &(op, raw) in insts {
            let len = if raw & 3 == 3 { 4 } else { 2 };
            let flow = match self.exec_op(op, len, raw, mmio) {
                Ok(f) => f,
                Err(t) => return (done, BlockEnd::Trap(t)),
            };
            // Counted at once: a CSR read of instret in the block sees it.
            self.instret += 1;
            done += 1;
            match flow {
                Flow::Next => {}
                Flow::CheckIrq => return (done, BlockEnd::CheckIrq),
                Flow::Wfi => return (done, BlockEnd::Wfi),
            }
        }
        (done, BlockEnd::Next)
    }

    /// [`Hart::run_block`] with every instruction printed first.
    #[cold]
    fn run_block_traced(&mut self, insts: &[(Op, u32)], mmio: &mut dyn Mmio) -> (u64, BlockEnd) {
        let mut done = 0u64;
        for &(op, raw) in insts {
            self.trace_insn(raw, decode_raw(raw));
            let len = if raw & 3 == 3 { 4 } else { 2 };
            let flow = match self.exec_op(op, len, raw, mmio) {
                Ok(f) => f,
                Err(t) => return (done, BlockEnd::Trap(t)),
            };
            self.instret += 1;
            done += 1;
            match flow {
                Flow::Next => {}
                Flow::CheckIrq => return (done, BlockEnd::CheckIrq),
                Flow::Wfi => return (done, BlockEnd::Wfi),
            }
        }
        (done, BlockEnd::Next)
    }

    /// Take an exception; `Some` if the hart cannot make progress.
    fn trap(&mut self, t: crate::trap::Trap) -> Option<Exit> {
        if self.traps_in_a_row >= MAX_TRAPS_WITHOUT_PROGRESS {
            return Some(Exit::Fault(CpuFault {
                hart_id: self.config.hart_id,
                pc: self.pc,
                cause: t.cause,
                tval: t.tval,
                reason: "the trap handler itself traps without executing \
                         (bad mtvec/stvec or unmapped handler)",
            }));
        }
        self.traps_in_a_row += 1;
        if self.trace {
            eprintln!(
                "[hart {}] trap: {} tval={:#x} at pc={:#x}",
                self.config.hart_id,
                crate::trap::cause_name(t.cause),
                t.tval,
                self.pc
            );
        }
        self.take_trap(t.cause, t.tval);
        None
    }

    /// Whether block `idx` still holds the instructions at host address
    /// `host` (its first byte): after a `fence.i`, most code is what it was,
    /// and comparing raw bits is far cheaper than decoding and compiling again.
    fn unchanged(&self, idx: usize, host: usize) -> bool {
        let insts = &self.blocks[idx].insts;
        if insts.is_empty() {
            return false; // straddled the page end: depends on the first bits
        }
        let mut at = host;
        for &(_, raw) in insts {
            let len = if raw & 3 == 3 { 4 } else { 2 };
            // SAFETY: the block was decoded from this same physical page
            // (same paddr), and its instructions all lie inside the page,
            // which `host` maps whole (from the fetch TLB).
            let now = unsafe { crate::ram::read_host(at as *const u8, len as u8) } as u32;
            if now != raw {
                return false;
            }
            at += len;
        }
        true
    }

    /// Decode the block at `paddr` (host address `host`) into slot `idx`.
    /// Leaves it empty if the first instruction straddles the page end.
    #[inline(never)]
    fn build_block(&mut self, idx: usize, paddr: u64, host: usize) {
        let mut insts = std::mem::take(&mut self.blocks[idx].insts);
        insts.clear();
        let mut off = (paddr & 0xfff) as usize;
        let base = host - off;
        while insts.len() < BLOCK_MAX && off <= 0xffe {
            // SAFETY: `base` is the host address of a whole 4 KiB RAM page
            // (from the fetch TLB) and `off <= 0xffe` leaves 2 bytes.
            let lo = unsafe { crate::ram::read_host((base + off) as *const u8, 2) } as u32;
            let (raw, len) = if lo & 3 == 3 {
                if off > 0xffc {
                    break; // straddles the page end
                }
                // SAFETY: as above, `off <= 0xffc` leaves 4 bytes in the page.
                let raw = unsafe { crate::ram::read_host((base + off) as *const u8, 4) } as u32;
                (raw, 4)
            } else {
                (lo, 2)
            };
            let inst = decode_raw(raw);
            insts.push((lower(inst), raw));
            off += len;
            if ends_block(&inst) {
                break;
            }
        }
        // Evicted code stays correct for its address (links to it may go on
        // until `fence.i` or the code mapping is reused).
        let b = &mut self.blocks[idx];
        b.code = None;
        b.chains = insts.iter().all(|(op, _)| chains_through(op));
        b.insts = insts;
        b.hits = 0;
        b.paddr = paddr;
        b.epoch = self.block_epoch;
    }

    /// Fetch, decode (through the cache) and execute one instruction.
    #[inline(always)]
    fn step(&mut self, mmio: &mut dyn Mmio) -> Result<Flow, crate::trap::Trap> {
        let (raw, paddr) = self.fetch_raw()?;
        let (raw, len) = if raw & 3 == 3 {
            (raw, 4)
        } else {
            (raw & 0xffff, 2)
        };
        let inst = if paddr != u64::MAX {
            let idx = (paddr >> 1) as usize & (ICACHE_SIZE - 1);
            let e = &self.icache[idx];
            if e.paddr == paddr && e.raw == raw {
                e.inst
            } else {
                let inst = decode_raw(raw);
                self.icache[idx] = CacheEntry { paddr, raw, inst };
                inst
            }
        } else {
            decode_raw(raw)
        };
        self.cur_raw = raw;
        if self.trace {
            self.trace_insn(raw, inst);
        }
        let flow = self.execute(inst, len, mmio)?;
        self.instret += 1;
        self.traps_in_a_row = 0;
        Ok(flow)
    }

    #[cold]
    fn trace_insn(&self, raw: u32, inst: Instruction) {
        let mode = match self.prv {
            0 => 'U',
            1 => 'S',
            _ => 'M',
        };
        if raw & 3 == 3 {
            eprintln!(
                "[hart {} {mode}] {:016x}: {raw:08x}      {inst}",
                self.config.hart_id, self.pc
            );
        } else {
            eprintln!(
                "[hart {} {mode}] {:016x}: {raw:04x}          {inst}",
                self.config.hart_id, self.pc
            );
        }
    }
}

/// Decode 16- or 32-bit raw bits.
#[inline(always)]
fn decode_raw(raw: u32) -> Instruction {
    if raw & 3 == 3 {
        decode(raw)
    } else {
        decode_compressed(raw as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoMmio;

    const BASE: u64 = 0x8000_0000;

    fn hart_with(code: &[(u64, u32)]) -> Hart {
        hart_in(1 << 16, code)
    }

    /// A hart at `BASE` with `size` bytes of RAM holding `code`.
    fn hart_in(size: u64, code: &[(u64, u32)]) -> Hart {
        let mem = vessel_machine::create_guest_memory(&[(BASE, size)]).unwrap();
        let ram = Ram::new(&mem).unwrap();
        for &(off, w) in code {
            ram.write(BASE + off, 4, w as u64).unwrap();
        }
        let mut h = Hart::new(
            HartConfig::default(),
            ram,
            Clock::new(10_000_000),
            HartIrq::new(),
        );
        h.set_pc(BASE);
        h
    }

    #[test]
    fn only_instructions_that_keep_the_translation_chain() {
        for (raw, chains) in [
            (0x0015_0513, true),  // addi a0, a0, 1
            (0x0062_a023, true),  // sw t1, 0(t0)
            (0xff1f_f06f, true),  // j -16
            (0x0000_000f, true),  // fence
            (0x0000_100f, false), // fence.i
            (0x1800_9073, false), // csrw satp, ra
            (0x1005_2073, true),  // csrs sstatus, a0
            (0x3020_0073, false), // mret
            (0x1020_0073, false), // sret
            (0x1200_0073, false), // sfence.vma
            (0x0000_0073, false), // ecall
            (0x0000_0000, false), // illegal
        ] {
            let op = lower(decode_raw(raw));
            assert_eq!(chains_through(&op), chains, "{raw:#010x}");
        }
    }

    /// A loop of chained blocks that rewrites its own first instruction and
    /// runs `fence.i` runs the new instruction on the next round.
    #[test]
    fn chained_blocks_see_code_rewritten_before_fence_i() {
        let mut h = hart_with(&[
            (0, 0x0015_0513),  // addi a0, a0, 1
            (4, 0x0040_006f),  // j +4 (a block that chains to the next)
            (8, 0x0062_a023),  // sw t1, 0(t0)
            (12, 0x0000_100f), // fence.i
            (16, 0xff1f_f06f), // j -16
        ]);
        h.set_reg(5, BASE);
        h.set_reg(6, 0x0645_0513); // addi a0, a0, 100
        assert_eq!(h.run(&mut NoMmio, 6), Exit::Budget);
        assert_eq!(h.reg(10), 101);
    }

    /// Blocks chain across jumps within a page and not across pages; both
    /// give the same result, and the budget still holds exactly.
    #[test]
    fn chaining_across_and_within_pages_keeps_the_count() {
        let mut h = hart_with(&[
            (0xff8, 0x0015_0513),  // addi a0, a0, 1
            (0xffc, 0x0040_006f),  // j +4 (to the next page)
            (0x1000, 0x0015_0513), // addi a0, a0, 1
            (0x1004, 0x0040_006f), // j +4 (same page)
            (0x1008, 0xff1f_f06f), // j -16 (back to the first page)
        ]);
        h.set_pc(BASE + 0xff8);
        assert_eq!(h.run(&mut NoMmio, 1003), Exit::Budget);
        assert_eq!(h.instret(), 1003);
        assert_eq!(h.reg(10), 402);
        assert_eq!(h.pc(), BASE + 0x1004);
    }

    /// A chain that reaches a page through the jump cache and leaves a
    /// block there by a link slot gets the slot filled, although the run
    /// loop last translated pc on another page: here every run is one
    /// round that starts on the first page, and the blocks the slots go
    /// to become hot after the one that jumps there.
    #[test]
    fn a_link_slot_reached_from_another_page_is_filled() {
        let mut h = hart_with(&[
            (0, 0x0000_106f),      // j 0x1000
            (0x1000, 0x0015_0513), // addi a0, a0, 1
            (0x1004, 0x0035_7293), // andi t0, a0, 3
            (0x1008, 0x0002_8663), // beqz t0, 0x1014 (same page: link slots)
            (0x100c, 0x0015_8593), // addi a1, a1, 1
            (0x1010, 0xff1f_e06f), // j 0
            (0x1014, 0x0016_0613), // addi a2, a2, 1
            (0x1018, 0xfe9f_e06f), // j 0
        ]);
        if h.jit.is_none() {
            eprintln!("no JIT on this host: nothing to link");
            return;
        }
        for _ in 0..400 {
            assert_eq!(h.run(&mut NoMmio, 6), Exit::Budget);
        }
        assert_eq!((h.reg(10), h.reg(11), h.reg(12)), (400, 300, 100));
        let links = h.jit.as_ref().map_or(0, |j| j.links);
        assert!(links > 0, "the slots at 0x1008 stayed empty");
    }

    /// Turning interrupts on with one pending takes it before the next
    /// instruction; with none pending the code runs on.
    #[test]
    fn enabling_interrupts_takes_a_pending_one_at_once() {
        for pending in [false, true] {
            let mut h = hart_with(&[
                (0, 0x3004_6073), // csrsi mstatus, MIE
                (4, 0x0015_0513), // addi a0, a0, 1
                (8, 0x0000_006f), // j . (the handler, too)
            ]);
            h.csr.mtvec = BASE + 8;
            h.csr.mie = crate::csr::irqbit::MSI;
            h.irq.set_msip(pending);
            assert_eq!(h.run(&mut NoMmio, 3), Exit::Budget);
            assert_eq!(h.reg(10), u64::from(!pending), "pending {pending}");
            assert_eq!(h.csr.mcause == cause::INTERRUPT | 3, pending);
        }
    }

    /// Two hot blocks whose addresses hash to the same block-cache set
    /// both stay decoded while the code jumps between them.
    #[test]
    fn two_blocks_of_one_set_both_stay() {
        const SIZE: u64 = 4 << 20;
        let a = BASE;
        let b = (BASE + 4..BASE + SIZE)
            .step_by(4)
            .find(|&p| block_index(p) == block_index(a))
            .expect("4 MiB hold another address of the set");
        let mut h = hart_in(
            SIZE,
            &[
                (0, 0x0003_0067),        // jr t1
                (b - BASE, 0x0002_8067), // jr t0
            ],
        );
        h.set_reg(5, a);
        h.set_reg(6, b);
        assert_eq!(h.run(&mut NoMmio, 100), Exit::Budget);
        let set = block_index(a);
        let mut held = [h.blocks[set].paddr, h.blocks[set + 1].paddr];
        held.sort();
        assert_eq!(held, [a, b]);
    }
}
