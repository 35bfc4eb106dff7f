//! A template JIT: hot decoded blocks become x86-64 code.
//!
//! The interpreter's decoded blocks (`hart.rs`) are the unit. Once a block
//! has run [`HOT`] times it is compiled, instruction by instruction, into
//! one host function; afterwards the run loop calls that function instead
//! of dispatching each operation. Guest registers stay in `Hart::x` (every
//! instruction loads its operands from there and stores its result back),
//! so the interpreter and compiled code can take turns at any block
//! boundary and a trap leaves exactly the state the interpreter would.
//!
//! - Integer ALU, shifts, `mul`/`mulh`/`mulhu`, Zba adds, Zbb rotates,
//!   min/max, `sext.b`/`sext.h` and `rev8`, `lui`/`auipc`, branches and
//!   jumps are compiled inline.
//! - Loads and stores first try a one-page cache held in host registers
//!   (one for stack and frame loads, one for other loads, one for stores),
//!   then the software TLB out of line (same entries as `mmu.rs`): on a hit
//!   to a RAM page with the access aligned, and for stores with no LR
//!   reservation active anywhere, one host access. Everything else (a
//!   miss, a device, a misaligned access, a fault) calls
//!   `Hart::load`/`Hart::store` out of line, which fills the TLB or traps.
//! - `fence` is inline (an `mfence` when it orders stores before loads).
//!   So are `csrrs`/`csrrc` on `sstatus` that read it or move SIE only
//!   (Linux's irq save and restore), in S or M mode; when one turns SIE
//!   on, a call asks whether an interrupt is now deliverable.
//!   AMOs but min/max are one locked host instruction (or a `cmpxchg`
//!   loop) on the store path's fast case, the executor otherwise.
//! - A block that is one instruction straddling two pages calls the
//!   interpreter to step it (both halves fetched afresh each time) and goes
//!   on through the jump cache.
//! - LR/SC are inline for a hart alone with its reservation (see
//!   [`reserve`]), the executor otherwise.
//! - Every other operation (FP, min/max AMOs, CSRs, system
//!   instructions, division) calls the interpreter's executor for that one
//!   instruction, with pc and instret brought up to date first.
//!
//! A compiled function returns [`NEXT`] (pc is the successor; with
//! [`NEXT_UNCHAINED`] after a block that may have changed privilege or
//! translation), [`CHECK_IRQ`] or [`WFI`] (after an executor call asked for
//! it), or [`TRAP`] (pc is the faulting instruction, `Hart::jit_trap` holds
//! the trap and instret counts only the instructions before it). It updates
//! `Hart::instret` itself, and runs at most the number of instructions it
//! is given before the run loop must look at interrupts.
//!
//! Blocks go on into each other without the run loop, passing the
//! successor's pc in r13 (the hart's pc is stored only on the way out): a
//! direct exit to the same guest page ends in a link slot, a direct jump
//! the run loop rewrites (see [`LINK_JUMP`]); an indirect jump, or a direct
//! one to another page, looks its target up in the jump cache (pc to code,
//! tagged with `Hart::jump_tag`). Both are dropped at once when
//! `Hart::link_epoch` moves (`fence.i`, a reused mapping).
//!
//! Code lives in one anonymous mapping per hart, in two halves: each
//! block's main line (with its TLB lookups) in the first, its cold paths
//! (`Hart` method calls, executor fallbacks, trap exits) in the second, the
//! jumps between them fixed up when the block is placed, so the code a
//! guest runs most sits densely in the host's caches. When a half is full
//! the mapping is reused from the start and every block's code becomes
//! stale (a generation number), to be compiled again when hot. Code evicted from
//! the block cache stays correct for its address until then. Hosts other
//! than x86-64 and `VESSEL_JIT=0` run the interpreter alone.

use crate::Mmio;
use crate::csr::ms;
use crate::decode::{AluOp, AmoOp, CsrOp, Instruction, LoadOp};
use crate::fastop::Op;
use crate::hart::Hart;
use dynasmrt::x64::{Rq, X64Relocation};
use dynasmrt::{DynamicLabel, DynasmApi, DynasmLabelApi, VecAssembler, dynasm};
use std::ffi::c_void;

/// Runs of a decoded block before it is compiled, by default (a boot
/// compiles about 100,000 blocks; 4, 16 and 64 gave the same boot time).
pub(crate) const HOT: u32 = 16;
/// Size of each hart's code mapping (reserved, touched as it fills): a
/// Debian boot fills it about twice. Unit tests use a small one, so they
/// also reuse it.
const REGION_SIZE: usize = if cfg!(test) { 256 << 10 } else { 16 << 20 };
/// More than the code of any block (32 instructions of at most ~200 bytes).
const MAX_BLOCK_CODE: usize = 64 << 10;
/// Sets of the jump cache (indirect jump targets to code): 2^JUMP_BITS,
/// of two entries each.
const JUMP_BITS: u32 = 14;
const JUMP_SETS: usize = 1 << JUMP_BITS;

/// One jump-cache entry: target pc, the tag it holds under, its code.
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct JumpEntry {
    pc: u64,
    tag: u64,
    code: u64,
    _pad: u64,
}

/// A set of the jump cache, one host cache line: the entry filled last
/// first. Two targets whose pcs hash alike both stay, so a guest that
/// goes back and forth between them does not leave compiled code each
/// time (with one entry a set, about 60 pairs of the ~2,000 targets of a
/// Linux network path did).
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct JumpSet([JumpEntry; 2]);

/// The jump-cache set of target `pc`: a multiplicative hash of its low
/// 32 bits (compiled code computes the same with one `imul`), so targets
/// spread over megabytes of code collide no more than chance has it.
fn jump_index(pc: u64) -> usize {
    ((pc as u32).wrapping_mul(JUMP_HASH) >> (32 - JUMP_BITS)) as usize
}

/// Fibonacci hashing's 32-bit multiplier (2^32 / the golden ratio, odd).
const JUMP_HASH: u32 = 0x9e37_79b1;

/// The opcode of a link slot's jump (`jmp rel32`). A link slot is the end
/// of a direct exit: `cmp dword [hart's link epoch], imm32` (the epoch the
/// slot holds for: 0, never one, while empty), `jne rel32` to the exit,
/// then that jump, which goes to the exit too until the run loop rewrites
/// it to go to the successor. The epoch is an immediate and the jump
/// direct, so following a link loads nothing from the code mapping and
/// leaves the host's branch predictor nothing hard to guess.
const LINK_JUMP: u8 = 0xe9;
/// Bytes from the start of the link check's immediate to the jump: the
/// immediate (4) and the `jne rel32` (6).
const LINK_CHECK: usize = 10;

/// The block ran to its end; pc is its successor.
pub(crate) const NEXT: u64 = 0;
/// An instruction may have changed interrupt enables or pending bits.
pub(crate) const CHECK_IRQ: u64 = 1;
/// WFI with nothing pending.
pub(crate) const WFI: u64 = 2;
/// An instruction trapped: the trap is in `Hart::jit_trap`.
pub(crate) const TRAP: u64 = 3;
/// As [`NEXT`], after an instruction that may have changed privilege or
/// translation: pc must be translated again before the next block.
pub(crate) const NEXT_UNCHAINED: u64 = 4;

/// A compiled block: `(hart, &mut &mut dyn Mmio, instructions it may run
/// before interrupts are looked at)` to a status.
pub(crate) type BlockFn = unsafe extern "C" fn(*mut Hart, *mut c_void, u64) -> u64;

/// A compiled block: where the run loop calls it, and where linked blocks
/// jump into it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Compiled {
    pub call: BlockFn,
    pub link_entry: usize,
    /// The JIT generation the code belongs to.
    pub generation: u64,
}

/// What the compiler needs to know of a decoded block besides its operations.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockInfo {
    pub paddr: u64,
    /// The guest pc it was entered at (names the code in a perf map).
    pub pc: u64,
    /// See `Block::chains` in `hart.rs`.
    pub chains: bool,
}

/// Where compiled code finds the hart's state: byte offsets into [`Hart`]
/// and addresses that stay put for the hart's life.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub x: i32,
    pub pc: i32,
    pub instret: i32,
    pub tlb_epoch: i32,
    pub tlb_load_base: i32,
    pub tlb_store_base: i32,
    /// The TLB's entry array (a boxed slice: it never moves).
    pub tlb_entries: usize,
    pub tlb_entry_shift: u8,
    pub tlb_set_mask: u32,
    pub entry_vpn: i32,
    pub entry_epoch: i32,
    pub entry_host: i32,
    /// The count of active LR reservations (an `AtomicU32` in shared RAM state).
    pub resv_active: usize,
    /// This hart's reservation slot (an `AtomicU64`: the reserved 8-byte
    /// granule's physical address, or `u64::MAX`).
    pub resv_slot: usize,
    /// Guest physical address minus host address, for RAM (one region).
    pub ram_delta: u64,
    /// Link slots hold this epoch while valid (`Hart::link_epoch`).
    pub link_epoch: i32,
    /// Where a block leaves the address of the link slot it could not take.
    pub exit_slot: i32,
    /// The tag valid jump-cache entries carry (`Hart::jump_tag`).
    pub jump_tag: i32,
    /// Set to 1 when a jump through the jump cache misses it.
    pub jump_miss: i32,
    /// The privilege level (a byte).
    pub prv: i32,
    /// `mstatus` (of which `sstatus` is a view).
    pub mstatus: i32,
    /// Where the hart itself is, from rbx (0 until [`Layout::biased`]).
    pub hart: i32,
}

impl Layout {
    /// The layout as compiled code sees it: rbx points `bias` bytes into
    /// the hart, so that every guest register is within a signed byte of
    /// it (`[rbx - 128]` to `[rbx + 120]`) and an access to one is 3 or 4
    /// bytes instead of 7 or 8. The hart itself is at `rbx + hart` (a
    /// biased layout stays as it is).
    fn biased(&self) -> Layout {
        let bias = self.x + 128;
        Layout {
            x: self.x - bias,
            pc: self.pc - bias,
            instret: self.instret - bias,
            tlb_epoch: self.tlb_epoch - bias,
            tlb_load_base: self.tlb_load_base - bias,
            tlb_store_base: self.tlb_store_base - bias,
            link_epoch: self.link_epoch - bias,
            exit_slot: self.exit_slot - bias,
            jump_tag: self.jump_tag - bias,
            jump_miss: self.jump_miss - bias,
            prv: self.prv - bias,
            mstatus: self.mstatus - bias,
            hart: self.hart - bias,
            ..*self
        }
    }
}

/// One hart's code mapping: compiled blocks' main lines in the first
/// `REGION_SIZE` bytes, their out-of-line (cold) paths in the next, so
/// that the code a guest runs most sits densely in the host's caches.
struct Region {
    base: *mut u8,
    used: usize,
    cold_used: usize,
}

// SAFETY: the mapping is owned by one `Region` and only its hart's thread
// writes or runs it; moving the owner to another thread moves all use.
unsafe impl Send for Region {}

impl Region {
    fn new() -> Option<Region> {
        // SAFETY: a fresh anonymous private mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * REGION_SIZE,
                libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        Some(Region {
            base: p.cast(),
            used: 0,
            cold_used: 0,
        })
    }

    /// Whether a block of up to `MAX_BLOCK_CODE` bytes in each half fits.
    fn has_room(&self) -> bool {
        self.used.max(self.cold_used) + MAX_BLOCK_CODE <= REGION_SIZE
    }

    /// Copy a block in: `hot` to the first half, `cold` to the second (each
    /// 16-byte aligned); their addresses, or `None` when they do not fit.
    fn push(&mut self, hot: &[u8], cold: &[u8]) -> Option<(*mut u8, *mut u8)> {
        let h = self.used.next_multiple_of(16);
        let c = self.cold_used.next_multiple_of(16);
        if h + hot.len() > REGION_SIZE || c + cold.len() > REGION_SIZE {
            return None;
        }
        // SAFETY: both ranges are inside the mapping (checked above), which
        // is writable, and the sources are separate Rust buffers.
        let (hp, cp) = unsafe {
            let hp = self.base.add(h);
            let cp = self.base.add(REGION_SIZE + c);
            std::ptr::copy_nonoverlapping(hot.as_ptr(), hp, hot.len());
            std::ptr::copy_nonoverlapping(cold.as_ptr(), cp, cold.len());
            (hp, cp)
        };
        self.used = h + hot.len();
        self.cold_used = c + cold.len();
        Some((hp, cp))
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `base` is the mapping made in `new`, of `2 * REGION_SIZE` bytes;
        // no compiled code runs once its hart (the owner) is dropped.
        unsafe { libc::munmap(self.base.cast(), 2 * REGION_SIZE) };
    }
}

/// The compiler and its code mapping, one per hart.
pub(crate) struct Jit {
    region: Region,
    layout: Layout,
    /// Runs of a block before it is compiled.
    pub(crate) hot: u32,
    /// Operations compiled code hands to the executor, by index (this generation's).
    ops: Vec<(Op, u32)>,
    /// The jump cache: indirect jumps (`jalr`) look their target pc up here
    /// and go straight to its code while the entry's tag is current.
    /// Zeroed memory (allocated lazily by the system) is all invalid entries.
    jumps: Vec<JumpSet>,
    /// Bumped when the mapping is reused: older code is stale.
    pub(crate) generation: u64,
    /// Blocks compiled so far (all generations).
    pub(crate) compiled: u64,
    /// Link slots filled so far.
    pub(crate) links: u64,
    /// Jump-cache entries filled so far.
    pub(crate) remembered: u64,
    /// `VESSEL_PERF_MAP=1`: `/tmp/perf-PID.map`, where `perf report` finds
    /// a name (`guest_PC`) for each compiled block.
    perf_map: Option<std::io::BufWriter<std::fs::File>>,
}

impl std::fmt::Debug for Jit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jit")
            .field("generation", &self.generation)
            .field("compiled", &self.compiled)
            .finish()
    }
}

impl Jit {
    /// A JIT for this host, or `None`: not x86-64, `VESSEL_JIT=0`, or no
    /// executable mapping to be had.
    pub(crate) fn new(layout: Layout, hot: u32) -> Option<Jit> {
        if !cfg!(target_arch = "x86_64") || std::env::var_os("VESSEL_JIT").is_some_and(|v| v == "0")
        {
            return None;
        }
        Some(Jit {
            region: Region::new()?,
            layout,
            hot,
            ops: Vec::new(),
            jumps: vec![JumpSet::default(); JUMP_SETS],
            generation: 1,
            compiled: 0,
            links: 0,
            remembered: 0,
            perf_map: perf_map(),
        })
    }

    /// Compile a decoded block. `None` only if it cannot be assembled,
    /// which is a bug. When the mapping had to be reused, the generation
    /// changes: every older block and link is stale.
    pub(crate) fn compile(&mut self, block: &BlockInfo, insts: &[(Op, u32)]) -> Option<Compiled> {
        if !self.region.has_room() {
            self.retire_code();
        }
        let jumps = self.jumps.as_ptr() as usize;
        let a = assemble(&self.layout, block, insts, &mut self.ops, jumps)?;
        let (hot, cold) = a.code.split_at(a.cold);
        let (p, c) = self.region.push(hot, cold)?;
        // The jumps between the two parts, as placed: an offset's address
        // in the part it belongs to (`hot`: the first).
        let at = |off: usize, hot: bool| {
            if hot {
                p as i64 + off as i64
            } else {
                c as i64 + (off - a.cold) as i64
            }
        };
        for &(end, target) in &a.crossings {
            let (from_hot, to_hot) = (end - 4 < a.cold, target < a.cold);
            if from_hot == to_hot {
                continue;
            }
            let rel = i32::try_from(at(target, to_hot) - at(end, from_hot)).ok()?;
            // SAFETY: `end - 4 .. end` is the displacement of a jump the
            // block's code holds, just copied into the mapping (into the
            // part `from_hot` says); nothing runs this code yet.
            unsafe {
                (at(end - 4, from_hot) as *mut u8)
                    .cast::<i32>()
                    .write_unaligned(rel)
            };
        }
        self.compiled += 1;
        if let Some(f) = self.perf_map.as_mut() {
            use std::io::Write;
            // Best effort: a profiling aid, never worth failing a guest for.
            let _ = writeln!(f, "{:x} {:x} guest_{:x}", p as usize, hot.len(), block.pc);
            let _ = writeln!(
                f,
                "{:x} {:x} guest_{:x}_cold",
                c as usize,
                cold.len(),
                block.pc
            );
            let _ = f.flush();
        }
        let entry = a.entry;
        // SAFETY: `p` holds a complete function assembled for the
        // `BlockFn` signature (System V: hart in rdi, mmio in rsi, budget in
        // rdx, status in rax; callee-saved registers restored), in
        // executable memory.
        let call = unsafe { std::mem::transmute::<*const u8, BlockFn>(p) };
        Some(Compiled {
            call,
            link_entry: p as usize + entry,
            generation: self.generation,
        })
    }

    /// Make every compiled block, link and executor operation stale (a new
    /// generation) and reuse the mapping from its start. Code already
    /// running stays intact until the next compile.
    pub(crate) fn retire_code(&mut self) {
        self.region.used = 0;
        self.region.cold_used = 0;
        self.ops.clear();
        self.generation += 1;
    }

    /// Remember that `pc`, under the translation and privilege `tag`
    /// stands for, runs `code`.
    pub(crate) fn remember_jump(&mut self, pc: u64, tag: u64, code: &Compiled) {
        if code.generation != self.generation {
            return;
        }
        let entry = JumpEntry {
            pc,
            tag,
            code: code.link_entry as u64,
            _pad: 0,
        };
        let set = &mut self.jumps[jump_index(pc)].0;
        if set[0].pc != pc {
            // The entry filled before moves to the second way (where this
            // pc may have been).
            set[1] = set[0];
        }
        set[0] = entry;
        self.remembered += 1;
    }

    /// The executor operation number `index` of the current generation.
    pub(crate) fn op(&self, index: usize) -> Option<(Op, u32)> {
        self.ops.get(index).copied()
    }

    /// Fill the link slot at `slot` (the address of its jump, left by a
    /// block of generation `slot_generation` that just returned) with
    /// `to`'s entry, valid for `epoch` (its low 32 bits, never 0): the jump
    /// now goes there. Nothing happens if the mapping was reused since: the
    /// slot's memory may hold other code now.
    pub(crate) fn link(&mut self, slot: usize, slot_generation: u64, to: &Compiled, epoch: u64) {
        let base = self.region.base as usize;
        let inside = slot >= base + LINK_CHECK && slot + 5 <= base + self.region.used;
        if !inside || slot_generation != self.generation || to.generation != self.generation {
            return;
        }
        let p = slot as *mut u8;
        // The jump's displacement counts from its end; the mapping is far
        // smaller than 2 GiB.
        let Ok(rel) = i32::try_from(to.link_entry as i64 - (slot as i64 + 5)) else {
            return;
        };
        // SAFETY: `slot - LINK_CHECK .. slot + 5` is inside the used part
        // of this hart's mapping (checked above), the end of a link slot of
        // a block of the current generation (so not overwritten since), as
        // the opcodes checked first confirm. Written only here, while no
        // compiled code runs (x86 keeps instruction fetch coherent with
        // these stores).
        unsafe {
            if p.read() != LINK_JUMP || p.sub(6).read() != 0x0f || p.sub(5).read() != 0x85 {
                return;
            }
            p.add(1).cast::<i32>().write_unaligned(rel);
            p.sub(LINK_CHECK)
                .cast::<u32>()
                .write_unaligned(epoch as u32);
        }
        self.links += 1;
    }
}

/// The perf map file if `VESSEL_PERF_MAP=1` asks for one (and it opens).
fn perf_map() -> Option<std::io::BufWriter<std::fs::File>> {
    if std::env::var_os("VESSEL_PERF_MAP").is_none_or(|v| v != "1") {
        return None;
    }
    let path = format!("/tmp/perf-{}.map", std::process::id());
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        Ok(f) => Some(std::io::BufWriter::new(f)),
        Err(e) => {
            eprintln!("vessel: VESSEL_PERF_MAP: cannot open {path}: {e}; no perf map");
            None
        }
    }
}

/// Result of an out-of-line load: the value (zero-extended) and 1, or 0 on a trap.
#[repr(C)]
struct Loaded {
    value: u64,
    ok: u64,
}

/// Out-of-line load for compiled code.
///
/// # Safety
/// `hart` is the running hart and `mmio` points at its `&mut dyn Mmio`,
/// both exclusively borrowed by the caller of the compiled block.
unsafe extern "C" fn load_slow(
    hart: *mut Hart,
    mmio: *mut c_void,
    vaddr: u64,
    size: u64,
) -> Loaded {
    // SAFETY: per the function's contract.
    let (hart, mmio) = unsafe { (&mut *hart, &mut *(mmio as *mut &mut dyn Mmio)) };
    match hart.load(*mmio, vaddr, size as u8) {
        Ok(value) => Loaded { value, ok: 1 },
        Err(t) => {
            hart.jit_trap = Some(t);
            Loaded { value: 0, ok: 0 }
        }
    }
}

/// Out-of-line store for compiled code: 1, or 0 on a trap.
///
/// # Safety
/// As for [`load_slow`].
unsafe extern "C" fn store_slow(
    hart: *mut Hart,
    mmio: *mut c_void,
    vaddr: u64,
    size: u64,
    value: u64,
) -> u64 {
    // SAFETY: per the function's contract.
    let (hart, mmio) = unsafe { (&mut *hart, &mut *(mmio as *mut &mut dyn Mmio)) };
    match hart.store(*mmio, vaddr, size as u8, value) {
        Ok(()) => 1,
        Err(t) => {
            hart.jit_trap = Some(t);
            0
        }
    }
}

/// One instruction through the interpreter's executor (pc and instret are
/// current): a status as a compiled block returns it.
///
/// # Safety
/// As for [`load_slow`].
unsafe extern "C" fn exec_one(hart: *mut Hart, mmio: *mut c_void, index: u64) -> u64 {
    // SAFETY: per the function's contract.
    let (hart, mmio) = unsafe { (&mut *hart, &mut *(mmio as *mut &mut dyn Mmio)) };
    hart.jit_exec_one(*mmio, index as usize)
}

/// The instruction at pc, which straddles two pages, through the
/// interpreter (pc and instret are current): a status as a compiled block
/// returns it.
///
/// # Safety
/// As for [`load_slow`].
unsafe extern "C" fn step_one(hart: *mut Hart, mmio: *mut c_void) -> u64 {
    // SAFETY: per the function's contract.
    let (hart, mmio) = unsafe { (&mut *hart, &mut *(mmio as *mut &mut dyn Mmio)) };
    hart.jit_step(*mmio)
}

/// Whether an interrupt is deliverable now (1) or not (0), for compiled
/// code that has just turned interrupts on.
///
/// # Safety
/// `hart` is the running hart, exclusively borrowed by the caller of the
/// compiled block.
unsafe extern "C" fn interrupt_deliverable(hart: *mut Hart) -> u64 {
    // SAFETY: per the function's contract.
    let hart = unsafe { &*hart };
    u64::from(hart.pending_interrupt().is_some())
}

/// How a compiled instruction reaches memory.
#[derive(Clone, Copy)]
enum Mem {
    Load {
        rd: u8,
        rs1: u8,
        imm: i32,
        size: u8,
        signed: bool,
    },
    Store {
        rs1: u8,
        rs2: u8,
        imm: i32,
        size: u8,
    },
}

/// What one operation compiles to.
#[derive(Clone, Copy)]
enum Kind {
    /// Straight-line integer code (no memory, no pc change).
    Alu,
    Mem(Mem),
    /// Ends the block with pc set.
    Jump,
    /// An AMO with a host atomic inline, the executor otherwise.
    Amo(Amo),
    /// LR or SC with the reservation taken or checked inline, the
    /// executor otherwise.
    Reserve(Reserve),
    /// An access to `sstatus` that reads it or moves SIE only inline, the
    /// executor otherwise.
    Status(Status),
    /// Through the executor.
    Call,
}

/// An AMO compiled inline: swap, add, xor, and, or (min and max go through
/// the executor).
#[derive(Clone, Copy)]
struct Amo {
    op: AmoOp,
    rd: u8,
    rs1: u8,
    rs2: u8,
    double: bool,
}

/// `lr`/`sc` compiled inline (see [`reserve`]).
#[derive(Clone, Copy)]
struct Reserve {
    sc: bool,
    rd: u8,
    rs1: u8,
    rs2: u8,
    double: bool,
}

/// `csrrs`/`csrrc` (register or immediate) on `sstatus`: Linux's
/// `local_irq_save`/`restore` and friends, which turn SIE off and on.
#[derive(Clone, Copy)]
struct Status {
    op: CsrOp,
    rd: u8,
    src: u8,
}

/// The way through the executor of an operation compiled inline, when it
/// is not the fast case: at `label`, back to the main line at `back`.
struct Fallback {
    label: DynamicLabel,
    back: DynamicLabel,
    /// Byte offset of the instruction from the block's first.
    off: i32,
    /// Its executor operation number.
    index: usize,
}

/// After an inline `sstatus` write that turned SIE on: at `label`, ask
/// whether an interrupt is now deliverable; if so leave the block with
/// `CHECK_IRQ` (the instruction at `next` bytes retired), else go on at
/// `back`.
struct IrqCheck {
    label: DynamicLabel,
    back: DynamicLabel,
    next: i32,
}

fn kind(op: &Op) -> Kind {
    use Instruction as I;
    match *op {
        Op::Ld { rd, rs1, imm } => Kind::Mem(Mem::Load {
            rd,
            rs1,
            imm,
            size: 8,
            signed: false,
        }),
        Op::Lw { rd, rs1, imm } => Kind::Mem(Mem::Load {
            rd,
            rs1,
            imm,
            size: 4,
            signed: true,
        }),
        Op::Lwu { rd, rs1, imm } => Kind::Mem(Mem::Load {
            rd,
            rs1,
            imm,
            size: 4,
            signed: false,
        }),
        Op::Lhu { rd, rs1, imm } => Kind::Mem(Mem::Load {
            rd,
            rs1,
            imm,
            size: 2,
            signed: false,
        }),
        Op::Lbu { rd, rs1, imm } => Kind::Mem(Mem::Load {
            rd,
            rs1,
            imm,
            size: 1,
            signed: false,
        }),
        Op::Sd { rs1, rs2, imm } => Kind::Mem(Mem::Store {
            rs1,
            rs2,
            imm,
            size: 8,
        }),
        Op::Sw { rs1, rs2, imm } => Kind::Mem(Mem::Store {
            rs1,
            rs2,
            imm,
            size: 4,
        }),
        Op::Sh { rs1, rs2, imm } => Kind::Mem(Mem::Store {
            rs1,
            rs2,
            imm,
            size: 2,
        }),
        Op::Sb { rs1, rs2, imm } => Kind::Mem(Mem::Store {
            rs1,
            rs2,
            imm,
            size: 1,
        }),
        Op::Other(I::Load {
            op: LoadOp::B,
            rd,
            rs1,
            imm,
        }) => Kind::Mem(Mem::Load {
            rd,
            rs1,
            imm,
            size: 1,
            signed: true,
        }),
        Op::Other(I::Load {
            op: LoadOp::H,
            rd,
            rs1,
            imm,
        }) => Kind::Mem(Mem::Load {
            rd,
            rs1,
            imm,
            size: 2,
            signed: true,
        }),
        Op::Beq { .. }
        | Op::Bne { .. }
        | Op::Blt { .. }
        | Op::Bge { .. }
        | Op::Bltu { .. }
        | Op::Bgeu { .. }
        | Op::Jal { .. }
        | Op::Jalr { .. } => Kind::Jump,
        Op::Other(I::Amo {
            op: op @ (AmoOp::Swap | AmoOp::Add | AmoOp::Xor | AmoOp::And | AmoOp::Or),
            rd,
            rs1,
            rs2,
            double,
        }) => Kind::Amo(Amo {
            op,
            rd,
            rs1,
            rs2,
            double,
        }),
        Op::Other(I::Lr { rd, rs1, double }) => Kind::Reserve(Reserve {
            sc: false,
            rd,
            rs1,
            rs2: 0,
            double,
        }),
        Op::Other(I::Sc {
            rd,
            rs1,
            rs2,
            double,
        }) => Kind::Reserve(Reserve {
            sc: true,
            rd,
            rs1,
            rs2,
            double,
        }),
        Op::Other(I::Csr {
            op: op @ (CsrOp::Rs | CsrOp::Rc | CsrOp::Rsi | CsrOp::Rci),
            rd,
            src,
            csr: crate::csr::addr::SSTATUS,
        }) => Kind::Status(Status { op, rd, src }),
        Op::Other(inst) => {
            if alu_other(&inst) {
                Kind::Alu
            } else {
                Kind::Call
            }
        }
        _ => Kind::Alu,
    }
}

/// Which general instructions have inline code.
fn alu_other(inst: &Instruction) -> bool {
    use AluOp as A;
    use Instruction as I;
    match inst {
        I::Fence { .. } => true,
        I::OpImm { op, .. } => matches!(op, A::Slt | A::Ror | A::SextB | A::SextH | A::Rev8),
        I::OpImm32 { op, .. } => matches!(op, A::Ror),
        I::Op { op, .. } => matches!(
            op,
            A::Slt
                | A::Rol
                | A::Ror
                | A::Max
                | A::Maxu
                | A::Min
                | A::Minu
                | A::Sll
                | A::Srl
                | A::Sra
                | A::Mul
                | A::Mulh
                | A::Mulhu
                | A::Sh1add
                | A::Sh2add
                | A::Sh3add
                | A::Andn
                | A::Orn
                | A::Xnor
        ),
        I::Op32 { op, .. } => matches!(op, A::Sll | A::Srl | A::Sra | A::Mul | A::Rol | A::Ror),
        _ => false,
    }
}

/// A trap exit to emit after the block's main line.
struct TrapExit {
    label: DynamicLabel,
    /// Byte offset of the faulting instruction from the block's first.
    off: i32,
    /// Instructions retired since instret was last brought up to date.
    retired: i32,
}

/// The out-of-line paths of one load or store, emitted after the block's
/// main line: the TLB lookup when the page cache misses, and the call to
/// the `Hart` method when that misses too.
struct Slow {
    /// The TLB lookup (virtual page number in rax, address in rsi).
    fill: DynamicLabel,
    /// Back to the main line's access through the page cache.
    hit: DynamicLabel,
    /// The `Hart` method (address in rsi).
    label: DynamicLabel,
    /// Back to the main line after the access.
    back: DynamicLabel,
    trap: DynamicLabel,
    mem: Mem,
    /// A store (or AMO) whose page the store page cache may take only
    /// while no LR reservation is active anywhere (see [`memory`]).
    unreserved: bool,
}

/// Where a block's exits go, for [`direct_exit`].
struct Exits {
    /// The epilogue (status in rax).
    exit: DynamicLabel,
    /// The block leaves privilege and translation alone, so a successor on
    /// the same guest page is on the same physical page.
    chains: bool,
    /// Offset of the block's first instruction in its page.
    page_off: i32,
    /// Address of the jump cache.
    jumps: usize,
}

type Asm = VecAssembler<X64Relocation>;

/// Jumps between a block's main line and its cold part: (a label right
/// after the jump's `rel32`, its target), fixed up when the two parts are
/// placed apart.
type Crossings = Vec<(DynamicLabel, DynamicLabel)>;

/// Note that the jump just emitted (with a `rel32`: dynasm emits that form
/// for every jump to a dynamic label) goes to `to`, which may lie in the
/// other part of the block.
fn crossing(a: &mut Asm, cross: &mut Crossings, to: DynamicLabel) {
    let after = a.new_dynamic_label();
    dynasm!(a ; .arch x64 ; =>after);
    cross.push((after, to));
}

/// An assembled block: its code, where linked blocks enter it, where its
/// cold part starts, and the jumps between the parts as (end of the jump's
/// `rel32`, target) offsets.
struct Assembled {
    code: Vec<u8>,
    entry: usize,
    cold: usize,
    crossings: Vec<(usize, usize)>,
}

/// Assemble one block. Registers: rbx = the hart, biased (see
/// [`Layout::biased`]: the offsets the code uses are the biased layout's),
/// r12 = mmio, r13 =
/// pc of the block's first instruction, r14 = TLB entries, r15 =
/// instructions left; r9/r10, rdi/r8 and r11/rbp are the page caches (see
/// [`memory`]); rax, rcx, rdx, rsi are scratch (and rdi, r8 around calls).
/// Guest registers are `[rbx + x + 8 * n]`, a byte's displacement each,
/// emitted through [`x`].
/// `ops` collects the operations that go through the executor (their
/// index is what the code passes).
fn assemble(
    l: &Layout,
    b: &BlockInfo,
    insts: &[(Op, u32)],
    ops: &mut Vec<(Op, u32)>,
    jumps: usize,
) -> Option<Assembled> {
    let l = &l.biased();
    let mut a: Asm = VecAssembler::new(0);
    let mut cross = Crossings::new();
    let exit = a.new_dynamic_label();
    let bail = a.new_dynamic_label();
    let entry = a.new_dynamic_label();
    let mut e = Exits {
        exit,
        chains: b.chains,
        page_off: (b.paddr & 0xfff) as i32,
        jumps,
    };
    let xr = |r: u8| l.x + 8 * i32::from(r & 31);
    // A block of no decoded instructions is one that straddles pages.
    let n = (insts.len() as i32).max(1);
    dynasm!(a
        ; .arch x64
        ; push rbx
        ; push r12
        ; push r13
        ; push r14
        ; push r15
        ; push rbp
        // Keeps rsp 16-byte aligned at the helpers' calls.
        ; sub rsp, 8
        ; lea rbx, [rdi - l.hart]
        ; mov r12, rsi
        ; mov r15, rdx
        ; mov r14, QWORD l.tlb_entries as i64
    );
    forget_pages(&mut a);
    dynasm!(a
        ; .arch x64
        ; mov r13, QWORD [rbx + l.pc]
        // Linked blocks enter here: r13 is the block's pc (the hart's may
        // be stale), r15 counts the instructions left before the run loop
        // must look at interrupts.
        ; =>entry
        ; sub r15, n
        ; jb =>bail
    );
    if insts.is_empty() {
        straddle(&mut a, l, &mut e);
    }
    let mut traps: Vec<TrapExit> = Vec::new();
    let mut slows: Vec<Slow> = Vec::new();
    // The TLB lookups of inline AMOs and LR/SC, the executor ways of every inline
    // operation, the interrupt checks of inline `sstatus` writes.
    let mut amo_fills: Vec<Slow> = Vec::new();
    let mut fallbacks: Vec<Fallback> = Vec::new();
    let mut irq_checks: Vec<IrqCheck> = Vec::new();
    let mut off: i32 = 0;
    // Instructions retired since instret was last updated.
    let mut pending: i32 = 0;
    let mut ended = insts.is_empty();
    for (i, &(op, raw)) in insts.iter().enumerate() {
        let len: i32 = if raw & 3 == 3 { 4 } else { 2 };
        match kind(&op) {
            Kind::Alu => alu(&mut a, &op, off, xr),
            Kind::Mem(m) => {
                let trap = a.new_dynamic_label();
                traps.push(TrapExit {
                    label: trap,
                    off,
                    retired: pending,
                });
                let slow = a.new_dynamic_label();
                let back = a.new_dynamic_label();
                let fill = a.new_dynamic_label();
                let hit = a.new_dynamic_label();
                memory(&mut a, &mut cross, m, [slow, fill, hit], xr);
                dynasm!(a ; .arch x64 ; =>back);
                if let Mem::Load {
                    rd, size, signed, ..
                } = m
                {
                    load_tail(&mut a, rd, size, signed, xr);
                }
                slows.push(Slow {
                    fill,
                    hit,
                    label: slow,
                    back,
                    trap,
                    mem: m,
                    unreserved: matches!(m, Mem::Store { .. }),
                });
            }
            Kind::Jump => {
                jump(&mut a, l, &mut e, &op, off, len, pending + 1);
                ended = true;
                break;
            }
            k @ (Kind::Amo(_) | Kind::Reserve(_)) => {
                // The executor takes over on the slow path: instret must
                // be current there.
                sync_instret(&mut a, l, pending);
                pending = 0;
                let index = ops.len();
                ops.push((op, raw));
                let fill = match k {
                    Kind::Amo(amo) => atomic(&mut a, &mut cross, amo, xr),
                    Kind::Reserve(r) => reserve(&mut a, &mut cross, l, r, xr),
                    _ => unreachable!("only AMOs and LR/SC come here"),
                };
                fallbacks.push(Fallback {
                    label: fill.label,
                    back: fill.back,
                    off,
                    index,
                });
                amo_fills.push(fill);
            }
            Kind::Status(c) => {
                // As for AMOs: instret is current for the executor.
                sync_instret(&mut a, l, pending);
                pending = 0;
                let index = ops.len();
                ops.push((op, raw));
                let fallback = Fallback {
                    label: a.new_dynamic_label(),
                    back: a.new_dynamic_label(),
                    off,
                    index,
                };
                if let Some(check) = status(&mut a, &mut cross, l, c, &fallback, off + len, xr) {
                    irq_checks.push(check);
                }
                fallbacks.push(fallback);
            }
            Kind::Call => {
                let index = ops.len();
                ops.push((op, raw));
                sync_instret(&mut a, l, pending);
                pending = 0;
                executor_call(&mut a, &mut cross, l, off, index, exit);
                off += len;
                // The executor retired it and moved pc (also for the jumps
                // and system instructions that end blocks). After one that
                // may change privilege or translation, the run loop must
                // translate pc again.
                if i + 1 == insts.len() {
                    if !b.chains {
                        dynasm!(a ; .arch x64 ; mov eax, NEXT_UNCHAINED as i32);
                    }
                    dynasm!(a ; .arch x64 ; jmp =>exit);
                    ended = true;
                    break;
                }
                continue;
            }
        }
        pending += 1;
        off += len;
    }
    if !ended {
        // Ran off the end (length limit or page end): pc is the next one.
        sync_instret(&mut a, l, pending);
        direct_exit(&mut a, l, &mut e, off);
    }
    dynasm!(a
        ; .arch x64
        ; =>bail
        ; mov QWORD [rbx + l.pc], r13
        ; xor eax, eax
        ; =>exit
        ; add rsp, 8
        ; pop rbp
        ; pop r15
        ; pop r14
        ; pop r13
        ; pop r12
        ; pop rbx
        ; ret
    );
    // TLB lookups after page-cache misses stay with the main line: they
    // run often (a page cache holds one page).
    for s in &slows {
        fill_path(&mut a, &mut cross, l, s);
    }
    for f in &amo_fills {
        fill_path(&mut a, &mut cross, l, f);
    }
    // The cold part: everything below runs only off the main line.
    let cold = a.new_dynamic_label();
    dynasm!(a ; .arch x64 ; =>cold);
    for s in &slows {
        slow_path(&mut a, &mut cross, l, s, xr);
    }
    for f in &fallbacks {
        fallback(&mut a, &mut cross, l, f, exit);
    }
    for c in &irq_checks {
        irq_check(&mut a, &mut cross, l, c, exit);
    }
    for t in &traps {
        dynasm!(a
            ; .arch x64
            ; =>t.label
            ; lea rax, [r13 + t.off]
            ; mov QWORD [rbx + l.pc], rax
        );
        sync_instret(&mut a, l, t.retired);
        dynasm!(a ; .arch x64 ; mov eax, TRAP as i32 ; jmp =>exit);
        crossing(&mut a, &mut cross, exit);
    }
    let offset = |a: &Asm, label: DynamicLabel| a.labels().resolve_dynamic(label).ok().map(|o| o.0);
    let entry = offset(&a, entry)?;
    let cold = offset(&a, cold)?;
    let crossings = cross
        .iter()
        .map(|&(after, to)| Some((offset(&a, after)?, offset(&a, to)?)))
        .collect::<Option<Vec<_>>>()?;
    Some(Assembled {
        code: a.finalize().ok()?,
        entry,
        cold,
        crossings,
    })
}

/// An x86-64 instruction with a guest register as its memory operand,
/// `[rbx + disp]`, encoded here: dynasm gives every displacement it is
/// handed at run time 32 bits, and guest registers, within a signed byte
/// of rbx (see [`Layout::biased`]), need one.
#[derive(Clone, Copy)]
enum X {
    /// `mov r64, [x]`
    Load,
    /// `mov r32, [x]` (zero-extends)
    Load32,
    /// `mov [x], r64`
    Store,
    /// `add r64, [x]`
    Add,
    Sub,
    And,
    Or,
    Xor,
    Cmp,
    /// `add r32, [x]`
    Add32,
    Sub32,
    /// `imul r64, [x]`
    Imul,
    Imul32,
    /// `imul qword [x]`: rdx:rax = rax * [x], signed (the register is ignored)
    ImulWide,
    /// `mul qword [x]`, unsigned
    MulWide,
    /// `movsx r64, byte [x]`
    Sext8,
    Sext16,
}

/// Emit `op` with register `reg` and the guest register at `disp` from rbx.
fn x(a: &mut Asm, op: X, reg: Rq, disp: i32) {
    let (wide, opcode, field): (bool, &[u8], u8) = match op {
        X::Load => (true, &[0x8b], reg as u8),
        X::Load32 => (false, &[0x8b], reg as u8),
        X::Store => (true, &[0x89], reg as u8),
        X::Add => (true, &[0x03], reg as u8),
        X::Sub => (true, &[0x2b], reg as u8),
        X::And => (true, &[0x23], reg as u8),
        X::Or => (true, &[0x0b], reg as u8),
        X::Xor => (true, &[0x33], reg as u8),
        X::Cmp => (true, &[0x3b], reg as u8),
        X::Add32 => (false, &[0x03], reg as u8),
        X::Sub32 => (false, &[0x2b], reg as u8),
        X::Imul => (true, &[0x0f, 0xaf], reg as u8),
        X::Imul32 => (false, &[0x0f, 0xaf], reg as u8),
        X::ImulWide => (true, &[0xf7], 5),
        X::MulWide => (true, &[0xf7], 4),
        X::Sext8 => (true, &[0x0f, 0xbe], reg as u8),
        X::Sext16 => (true, &[0x0f, 0xbf], reg as u8),
    };
    modrm(a, wide, opcode, field, disp);
}

/// REX prefix (if any), opcode, ModRM for `[rbx + disp]` with `field` in
/// its reg bits, and the displacement: one byte when it fits.
fn modrm(a: &mut Asm, wide: bool, opcode: &[u8], field: u8, disp: i32) {
    let rex = 0x40 | (u8::from(wide) << 3) | ((field >> 3) << 2);
    if rex != 0x40 {
        a.push(rex);
    }
    a.extend(opcode.iter().copied());
    // rm = 3 (rbx): no SIB byte; mod 1 = disp8, 2 = disp32.
    if let Ok(d) = i8::try_from(disp) {
        a.push(0x40 | (field & 7) << 3 | 3);
        a.push(d as u8);
    } else {
        a.push(0x80 | (field & 7) << 3 | 3);
        a.extend(disp.to_le_bytes());
    }
}

/// `add reg, imm` (64-bit), in its one-byte form when the immediate fits
/// (dynasm gives run-time immediates 32 bits), nothing for 0.
fn add_imm(a: &mut Asm, reg: Rq, imm: i32) {
    let r = reg as u8;
    if imm == 0 {
        return;
    }
    if let Ok(i) = i8::try_from(imm) {
        // REX.W (+B for r8-r15), 83 /0 ib, ModRM mod = 3.
        a.push(0x48 | (r >> 3));
        a.push(0x83);
        a.push(0xc0 | (r & 7));
        a.push(i as u8);
    } else {
        dynasm!(a ; .arch x64 ; add Rq(reg), imm);
    }
}

/// `cmp qword [rbx + disp], imm` (the immediate sign-extended).
fn x_cmp_imm(a: &mut Asm, disp: i32, imm: i32) {
    if let Ok(i) = i8::try_from(imm) {
        modrm(a, true, &[0x83], 7, disp);
        a.push(i as u8);
    } else {
        modrm(a, true, &[0x81], 7, disp);
        a.extend(imm.to_le_bytes());
    }
}

fn sync_instret(a: &mut Asm, l: &Layout, n: i32) {
    if n > 0 {
        dynasm!(a ; .arch x64 ; add QWORD [rbx + l.instret], n);
    }
}

/// Register-register operations that take their second operand in rcx
/// (shift counts, and the ones that combine both operands in registers).
fn by_rcx(op: AluOp) -> bool {
    use AluOp as A;
    matches!(
        op,
        A::Sll
            | A::Srl
            | A::Sra
            | A::Rol
            | A::Ror
            | A::Max
            | A::Maxu
            | A::Min
            | A::Minu
            | A::Andn
            | A::Orn
    )
}

/// Store rax into guest register `rd` (x0 stays zero).
fn put(a: &mut Asm, rd: u8, xr: impl Fn(u8) -> i32) {
    if rd & 31 != 0 {
        x(a, X::Store, Rq::RAX, xr(rd));
    }
}

/// Straight-line integer operations: each arm leaves the result in rax
/// and names its destination register.
fn alu(a: &mut Asm, op: &Op, off: i32, xr: impl Fn(u8) -> i32 + Copy) {
    use AluOp as A;
    use Instruction as I;
    let rd = match *op {
        Op::Addi { rd, rs1, imm } => {
            x(a, X::Load, Rq::RAX, xr(rs1));
            add_imm(a, Rq::RAX, imm);
            rd
        }
        Op::Addiw { rd, rs1, imm } => {
            x(a, X::Load32, Rq::RAX, xr(rs1));
            dynasm!(a ; .arch x64 ; add eax, imm ; movsxd rax, eax);
            rd
        }
        Op::Andi { rd, rs1, imm } => {
            x(a, X::Load, Rq::RAX, xr(rs1));
            dynasm!(a ; .arch x64 ; and rax, imm);
            rd
        }
        Op::Ori { rd, rs1, imm } => {
            x(a, X::Load, Rq::RAX, xr(rs1));
            dynasm!(a ; .arch x64 ; or rax, imm);
            rd
        }
        Op::Xori { rd, rs1, imm } => {
            x(a, X::Load, Rq::RAX, xr(rs1));
            dynasm!(a ; .arch x64 ; xor rax, imm);
            rd
        }
        Op::Slli { rd, rs1, sh } => {
            x(a, X::Load, Rq::RAX, xr(rs1));
            dynasm!(a ; .arch x64 ; shl rax, (sh & 63) as i8);
            rd
        }
        Op::Srli { rd, rs1, sh } => {
            x(a, X::Load, Rq::RAX, xr(rs1));
            dynasm!(a ; .arch x64 ; shr rax, (sh & 63) as i8);
            rd
        }
        Op::Srai { rd, rs1, sh } => {
            x(a, X::Load, Rq::RAX, xr(rs1));
            dynasm!(a ; .arch x64 ; sar rax, (sh & 63) as i8);
            rd
        }
        Op::Sltiu { rd, rs1, imm } => {
            dynasm!(a ; .arch x64 ; xor eax, eax);
            x_cmp_imm(a, xr(rs1), imm);
            dynasm!(a ; .arch x64 ; setb al);
            rd
        }
        Op::Slliw { rd, rs1, sh } => {
            x(a, X::Load32, Rq::RAX, xr(rs1));
            dynasm!(a ; .arch x64 ; shl eax, (sh & 31) as i8 ; movsxd rax, eax);
            rd
        }
        Op::Srliw { rd, rs1, sh } => {
            x(a, X::Load32, Rq::RAX, xr(rs1));
            dynasm!(a ; .arch x64 ; shr eax, (sh & 31) as i8 ; movsxd rax, eax);
            rd
        }
        Op::Sraiw { rd, rs1, sh } => {
            x(a, X::Load32, Rq::RAX, xr(rs1));
            dynasm!(a ; .arch x64 ; sar eax, (sh & 31) as i8 ; movsxd rax, eax);
            rd
        }
        Op::Add { rd, rs1, rs2 } => {
            x(a, X::Load, Rq::RAX, xr(rs1));
            x(a, X::Add, Rq::RAX, xr(rs2));
            rd
        }
        Op::Sub { rd, rs1, rs2 } => {
            x(a, X::Load, Rq::RAX, xr(rs1));
            x(a, X::Sub, Rq::RAX, xr(rs2));
            rd
        }
        Op::And { rd, rs1, rs2 } => {
            x(a, X::Load, Rq::RAX, xr(rs1));
            x(a, X::And, Rq::RAX, xr(rs2));
            rd
        }
        Op::Or { rd, rs1, rs2 } => {
            x(a, X::Load, Rq::RAX, xr(rs1));
            x(a, X::Or, Rq::RAX, xr(rs2));
            rd
        }
        Op::Xor { rd, rs1, rs2 } => {
            x(a, X::Load, Rq::RAX, xr(rs1));
            x(a, X::Xor, Rq::RAX, xr(rs2));
            rd
        }
        Op::Sltu { rd, rs1, rs2 } => {
            x(a, X::Load, Rq::RCX, xr(rs1));
            dynasm!(a ; .arch x64 ; xor eax, eax);
            x(a, X::Cmp, Rq::RCX, xr(rs2));
            dynasm!(a ; .arch x64 ; setb al);
            rd
        }
        Op::Addw { rd, rs1, rs2 } => {
            x(a, X::Load32, Rq::RAX, xr(rs1));
            x(a, X::Add32, Rq::RAX, xr(rs2));
            dynasm!(a ; .arch x64 ; movsxd rax, eax);
            rd
        }
        Op::Subw { rd, rs1, rs2 } => {
            x(a, X::Load32, Rq::RAX, xr(rs1));
            x(a, X::Sub32, Rq::RAX, xr(rs2));
            dynasm!(a ; .arch x64 ; movsxd rax, eax);
            rd
        }
        Op::Lui { rd, imm } => {
            dynasm!(a ; .arch x64 ; mov rax, QWORD i64::from(imm));
            rd
        }
        Op::Auipc { rd, imm } => {
            dynasm!(a ; .arch x64 ; lea rax, [r13 + off] ; add rax, imm);
            rd
        }
        Op::Other(I::OpImm { op, rd, rs1, imm }) => {
            match op {
                A::Slt => {
                    dynasm!(a ; .arch x64 ; xor eax, eax);
                    x_cmp_imm(a, xr(rs1), imm);
                    dynasm!(a ; .arch x64 ; setl al);
                }
                A::Ror => {
                    x(a, X::Load, Rq::RAX, xr(rs1));
                    dynasm!(a ; .arch x64 ; ror rax, (imm & 63) as i8);
                }
                A::SextB => x(a, X::Sext8, Rq::RAX, xr(rs1)),
                A::SextH => x(a, X::Sext16, Rq::RAX, xr(rs1)),
                A::Rev8 => {
                    x(a, X::Load, Rq::RAX, xr(rs1));
                    dynasm!(a ; .arch x64 ; bswap rax);
                }
                _ => unreachable!("alu_other admits only the operations above"),
            }
            rd
        }
        Op::Other(I::OpImm32 {
            op: _,
            rd,
            rs1,
            imm,
        }) => {
            // roriw, the only one alu_other admits.
            x(a, X::Load32, Rq::RAX, xr(rs1));
            dynasm!(a ; .arch x64 ; ror eax, (imm & 31) as i8 ; movsxd rax, eax);
            rd
        }
        Op::Other(I::Op { op, rd, rs1, rs2 }) => {
            x(a, X::Load, Rq::RAX, xr(rs1));
            if by_rcx(op) {
                x(a, X::Load, Rq::RCX, xr(rs2));
            }
            match op {
                A::Slt => {
                    dynasm!(a ; .arch x64 ; xor ecx, ecx);
                    x(a, X::Cmp, Rq::RAX, xr(rs2));
                    dynasm!(a ; .arch x64 ; setl cl ; mov rax, rcx);
                }
                A::Sll => dynasm!(a ; .arch x64 ; shl rax, cl),
                A::Srl => dynasm!(a ; .arch x64 ; shr rax, cl),
                A::Sra => dynasm!(a ; .arch x64 ; sar rax, cl),
                A::Rol => dynasm!(a ; .arch x64 ; rol rax, cl),
                A::Ror => dynasm!(a ; .arch x64 ; ror rax, cl),
                A::Max => dynasm!(a ; .arch x64 ; cmp rax, rcx ; cmovl rax, rcx),
                A::Maxu => dynasm!(a ; .arch x64 ; cmp rax, rcx ; cmovb rax, rcx),
                A::Min => dynasm!(a ; .arch x64 ; cmp rax, rcx ; cmovg rax, rcx),
                A::Minu => dynasm!(a ; .arch x64 ; cmp rax, rcx ; cmova rax, rcx),
                A::Andn => dynasm!(a ; .arch x64 ; not rcx ; and rax, rcx),
                A::Orn => dynasm!(a ; .arch x64 ; not rcx ; or rax, rcx),
                A::Mul => x(a, X::Imul, Rq::RAX, xr(rs2)),
                A::Mulh | A::Mulhu => {
                    let wide = if op == A::Mulh {
                        X::ImulWide
                    } else {
                        X::MulWide
                    };
                    x(a, wide, Rq::RAX, xr(rs2));
                    dynasm!(a ; .arch x64 ; mov rax, rdx);
                }
                A::Sh1add | A::Sh2add | A::Sh3add => {
                    let sh = match op {
                        A::Sh1add => 1,
                        A::Sh2add => 2,
                        _ => 3,
                    };
                    dynasm!(a ; .arch x64 ; shl rax, sh);
                    x(a, X::Add, Rq::RAX, xr(rs2));
                }
                A::Xnor => {
                    x(a, X::Xor, Rq::RAX, xr(rs2));
                    dynasm!(a ; .arch x64 ; not rax);
                }
                _ => unreachable!("alu_other admits only the operations above"),
            }
            rd
        }
        Op::Other(I::Fence { store_load }) => {
            // See the executor: only store-before-load needs a host fence.
            if store_load {
                dynasm!(a ; .arch x64 ; mfence);
            }
            0
        }
        Op::Other(I::Op32 { op, rd, rs1, rs2 }) => {
            x(a, X::Load32, Rq::RAX, xr(rs1));
            if by_rcx(op) {
                x(a, X::Load, Rq::RCX, xr(rs2));
            }
            match op {
                A::Sll => dynasm!(a ; .arch x64 ; shl eax, cl),
                A::Srl => dynasm!(a ; .arch x64 ; shr eax, cl),
                A::Sra => dynasm!(a ; .arch x64 ; sar eax, cl),
                A::Rol => dynasm!(a ; .arch x64 ; rol eax, cl),
                A::Ror => dynasm!(a ; .arch x64 ; ror eax, cl),
                A::Mul => x(a, X::Imul32, Rq::RAX, xr(rs2)),
                _ => unreachable!("alu_other admits only the operations above"),
            }
            dynasm!(a ; .arch x64 ; movsxd rax, eax);
            rd
        }
        _ => unreachable!("kind() sends only ALU operations here"),
    };
    put(a, rd, xr);
}

/// Branches and jumps: set pc (and the link register).
fn jump(a: &mut Asm, l: &Layout, e: &mut Exits, op: &Op, off: i32, len: i32, retired: i32) {
    let xr = |r: u8| l.x + 8 * i32::from(r & 31);
    let next = off + len;
    match *op {
        Op::Jal { rd, imm } => {
            dynasm!(a ; .arch x64 ; lea rax, [r13 + next]);
            put(a, rd, xr);
            sync_instret(a, l, retired);
            direct_exit(a, l, e, off + imm);
        }
        Op::Jalr { rd, rs1, imm } => {
            // The target first: rd may be rs1.
            x(a, X::Load, Rq::RCX, xr(rs1));
            add_imm(a, Rq::RCX, imm);
            dynasm!(a ; .arch x64 ; and rcx, -2 ; lea rax, [r13 + next]);
            put(a, rd, xr);
            sync_instret(a, l, retired);
            if e.chains {
                jump_cache(a, l, e);
            }
            dynasm!(a
                ; .arch x64
                ; mov QWORD [rbx + l.pc], rcx
                ; xor eax, eax
                ; jmp =>e.exit
            );
        }
        Op::Beq { rs1, rs2, imm }
        | Op::Bne { rs1, rs2, imm }
        | Op::Blt { rs1, rs2, imm }
        | Op::Bge { rs1, rs2, imm }
        | Op::Bltu { rs1, rs2, imm }
        | Op::Bgeu { rs1, rs2, imm } => {
            // instret first: its `add` changes the flags.
            sync_instret(a, l, retired);
            let taken = a.new_dynamic_label();
            x(a, X::Load, Rq::RAX, xr(rs1));
            x(a, X::Cmp, Rq::RAX, xr(rs2));
            match *op {
                Op::Beq { .. } => dynasm!(a ; .arch x64 ; je =>taken),
                Op::Bne { .. } => dynasm!(a ; .arch x64 ; jne =>taken),
                Op::Blt { .. } => dynasm!(a ; .arch x64 ; jl =>taken),
                Op::Bge { .. } => dynasm!(a ; .arch x64 ; jge =>taken),
                Op::Bltu { .. } => dynasm!(a ; .arch x64 ; jb =>taken),
                _ => dynasm!(a ; .arch x64 ; jae =>taken),
            }
            direct_exit(a, l, e, next);
            dynasm!(a ; .arch x64 ; =>taken);
            direct_exit(a, l, e, off + imm);
        }
        _ => unreachable!("kind() sends only jumps here"),
    }
}

/// Look the target pc (in rcx) up in the jump cache and go straight to its
/// code if the entry is current; otherwise note the miss for the run loop
/// (which then remembers the block it finds there) and fall through.
/// Only for blocks that leave privilege and translation alone: the tag
/// says under which the entry holds.
fn jump_cache(a: &mut Asm, l: &Layout, e: &Exits) {
    let miss = a.new_dynamic_label();
    let second = a.new_dynamic_label();
    let entry = std::mem::size_of::<JumpEntry>() as i32;
    dynasm!(a
        ; .arch x64
        ; imul eax, ecx, JUMP_HASH as i32
        ; shr eax, (32 - JUMP_BITS) as i8
        ; shl eax, std::mem::size_of::<JumpSet>().trailing_zeros() as i8
        ; mov rdx, QWORD e.jumps as i64
        ; add rax, rdx
        ; mov rdx, QWORD [rbx + l.jump_tag]
        ; cmp rcx, QWORD [rax]
        ; jne =>second
        ; cmp rdx, QWORD [rax + 8]
        ; jne =>miss
        ; mov r13, rcx
        ; jmp QWORD [rax + 16]
        ; =>second
        ; cmp rcx, QWORD [rax + entry]
        ; jne =>miss
        ; cmp rdx, QWORD [rax + entry + 8]
        ; jne =>miss
        ; mov r13, rcx
        ; jmp QWORD [rax + entry + 16]
        ; =>miss
        ; mov QWORD [rbx + l.jump_miss], 1
    );
}

/// Leave the block for pc = its first instruction's pc + `target` bytes
/// (instret already current). A target on the same guest page gets a link
/// slot: while the slot holds the current link epoch, the jump goes
/// straight to the successor's code; otherwise the slot's address is left
/// in `Hart::jit_exit_slot` for the run loop to fill, and the block returns.
/// A target on another page (a call, a fall-through off the page end) is
/// found through the jump cache, as indirect jumps are: its page may map
/// elsewhere by the next time.
fn direct_exit(a: &mut Asm, l: &Layout, e: &mut Exits, target: i32) {
    let same_page = (0..0x1000).contains(&(e.page_off + target));
    if !e.chains {
        dynasm!(a
            ; .arch x64
            ; lea rax, [r13 + target]
            ; mov QWORD [rbx + l.pc], rax
        );
    } else if !same_page {
        // r13 becomes the successor's pc, as its code expects.
        dynasm!(a
            ; .arch x64
            ; lea r13, [r13 + target]
            ; mov rcx, r13
        );
        jump_cache(a, l, e);
        dynasm!(a ; .arch x64 ; mov QWORD [rbx + l.pc], r13);
    } else {
        // A link slot (see `LINK_JUMP`): empty, it holds epoch 0.
        let jump = a.new_dynamic_label();
        let miss = a.new_dynamic_label();
        let empty: i32 = 0;
        dynasm!(a
            ; .arch x64
            ; lea r13, [r13 + target]
            ; cmp DWORD [rbx + l.link_epoch], DWORD empty
            ; jne =>miss
            ; =>jump
            ; jmp =>miss
            ; =>miss
            ; mov QWORD [rbx + l.pc], r13
            ; lea rax, [=>jump]
            ; mov QWORD [rbx + l.exit_slot], rax
        );
    }
    dynasm!(a ; .arch x64 ; xor eax, eax ; jmp =>e.exit);
}

/// The main line of a load or store: the address in rsi; `slow` unless it
/// is aligned; then a one-page cache (a virtual page number and where its
/// host page is, see [`page_cache`]), `fill` on a miss (which comes back
/// to `hit`), and the host access.
///
/// The page caches hold a page the TLB had for this access type when
/// compiled code last looked. They are emptied (set to -1, never a page
/// number) when the run loop enters compiled code and after every call out
/// of it, which covers every change of privilege, translation or TLB: those
/// happen only in helpers or outside compiled code. Linked blocks keep them.
///
/// The store page cache also stands for "no LR reservation is active
/// anywhere" (a write must otherwise go through `Hart::store`, which breaks
/// the ones it hits): the TLB lookup fills it for stores and AMOs only
/// while none is, and an inline `lr` empties it. Other harts run only
/// between the run loop's turns, after which the caches start empty.
fn memory(
    a: &mut Asm,
    cross: &mut Crossings,
    m: Mem,
    [slow, fill, hit]: [DynamicLabel; 3],
    xr: impl Fn(u8) -> i32 + Copy,
) {
    let (rs1, imm, size) = match m {
        Mem::Load { rs1, imm, size, .. } | Mem::Store { rs1, imm, size, .. } => (rs1, imm, size),
    };
    x(a, X::Load, Rq::RSI, xr(rs1));
    add_imm(a, Rq::RSI, imm);
    if size > 1 {
        dynasm!(a ; .arch x64 ; test esi, i32::from(size - 1) ; jnz =>slow);
        crossing(a, cross, slow);
    }
    let (tag, host) = page_cache(m);
    match m {
        Mem::Load { size, .. } => {
            page_check(a, cross, tag, fill, hit);
            match size {
                1 => dynasm!(a ; .arch x64 ; movzx eax, BYTE [Rq(host) + rsi]),
                2 => dynasm!(a ; .arch x64 ; movzx eax, WORD [Rq(host) + rsi]),
                4 => dynasm!(a ; .arch x64 ; mov eax, DWORD [Rq(host) + rsi]),
                _ => dynasm!(a ; .arch x64 ; mov rax, QWORD [Rq(host) + rsi]),
            }
        }
        Mem::Store { rs2, size, .. } => {
            page_check(a, cross, tag, fill, hit);
            x(a, X::Load, Rq::RAX, xr(rs2));
            match size {
                1 => dynasm!(a ; .arch x64 ; mov BYTE [Rq(host) + rsi], al),
                2 => dynasm!(a ; .arch x64 ; mov WORD [Rq(host) + rsi], ax),
                4 => dynasm!(a ; .arch x64 ; mov DWORD [Rq(host) + rsi], eax),
                _ => dynasm!(a ; .arch x64 ; mov QWORD [Rq(host) + rsi], rax),
            }
        }
    }
}

/// The main line of an inline AMO: like a store's (aligned, no LR
/// reservation active anywhere, the store page cache or the TLB), then one
/// locked host instruction (or a `lock cmpxchg` loop for and/or/xor),
/// which keeps it atomic against device threads too.
fn atomic(a: &mut Asm, cross: &mut Crossings, m: Amo, xr: impl Fn(u8) -> i32 + Copy) -> Slow {
    let mem = Mem::Store {
        rs1: m.rs1,
        rs2: m.rs2,
        imm: 0,
        size: if m.double { 8 } else { 4 },
    };
    let (slow, host) = atomic_entry(a, cross, mem, true, xr);
    x(a, X::Load, Rq::RAX, xr(m.rs2));
    match (m.op, m.double) {
        (AmoOp::Add, true) => dynasm!(a ; .arch x64 ; lock xadd QWORD [Rq(host) + rsi], rax),
        (AmoOp::Add, false) => dynasm!(a ; .arch x64 ; lock xadd DWORD [Rq(host) + rsi], eax),
        (AmoOp::Swap, true) => dynasm!(a ; .arch x64 ; xchg QWORD [Rq(host) + rsi], rax),
        (AmoOp::Swap, false) => dynasm!(a ; .arch x64 ; xchg DWORD [Rq(host) + rsi], eax),
        (op, double) => {
            // rax = the old value, rdx = the new one, rcx = the operand.
            let retry = a.new_dynamic_label();
            dynasm!(a ; .arch x64 ; mov rcx, rax);
            if double {
                dynasm!(a ; .arch x64 ; mov rax, QWORD [Rq(host) + rsi] ; =>retry ; mov rdx, rax);
            } else {
                dynasm!(a ; .arch x64 ; mov eax, DWORD [Rq(host) + rsi] ; =>retry ; mov edx, eax);
            }
            match op {
                AmoOp::Xor => dynasm!(a ; .arch x64 ; xor rdx, rcx),
                AmoOp::And => dynasm!(a ; .arch x64 ; and rdx, rcx),
                _ => dynasm!(a ; .arch x64 ; or rdx, rcx),
            }
            if double {
                dynasm!(a ; .arch x64 ; lock cmpxchg QWORD [Rq(host) + rsi], rdx ; jne =>retry);
            } else {
                dynasm!(a ; .arch x64 ; lock cmpxchg DWORD [Rq(host) + rsi], edx ; jne =>retry);
            }
        }
    }
    if !m.double {
        dynasm!(a ; .arch x64 ; movsxd rax, eax);
    }
    put(a, m.rd, xr);
    dynasm!(a ; .arch x64 ; =>slow.back);
    slow
}

/// The start of an AMO's or LR/SC's main line (address `[rs1]`, no
/// offset): the address in rsi, the executor (the returned `label`) unless
/// it is aligned, the page-cache check for `mem`'s cache (`fill`/`hit`).
/// Returns the paths to emit out of line and the cache's host register.
fn atomic_entry(
    a: &mut Asm,
    cross: &mut Crossings,
    mem: Mem,
    unreserved: bool,
    xr: impl Fn(u8) -> i32 + Copy,
) -> (Slow, Rq) {
    let (rs1, size) = match mem {
        Mem::Load { rs1, size, .. } | Mem::Store { rs1, size, .. } => (rs1, size),
    };
    let fallback = a.new_dynamic_label();
    let slow = Slow {
        fill: a.new_dynamic_label(),
        hit: a.new_dynamic_label(),
        label: fallback,
        back: a.new_dynamic_label(),
        trap: fallback,
        mem,
        unreserved,
    };
    let (tag, host) = page_cache(mem);
    x(a, X::Load, Rq::RSI, xr(rs1));
    dynasm!(a ; .arch x64 ; test esi, i32::from(size - 1) ; jnz =>fallback);
    crossing(a, cross, fallback);
    page_check(a, cross, tag, slow.fill, slow.hit);
    (slow, host)
}

/// The main line of `lr` and `sc`, for one hart alone with its
/// reservation (the executor has every other case: a misaligned address,
/// a page not in the page cache or the TLB, another hart's reservation).
///
/// - `lr`: an aligned load through the load page cache, then this hart's
///   reservation slot gets the granule's physical address (RAM's host
///   address plus `ram_delta`), and the count of active reservations goes
///   up if the slot was empty.
/// - `sc`: when exactly one reservation is active and it is this hart's,
///   on this granule: the slot is emptied, the count goes down, the store
///   goes through the store page cache and rd = 0. Otherwise the executor
///   decides (failure, rd = 1, and the reservation gone).
fn reserve(
    a: &mut Asm,
    cross: &mut Crossings,
    l: &Layout,
    r: Reserve,
    xr: impl Fn(u8) -> i32 + Copy,
) -> Slow {
    let size: u8 = if r.double { 8 } else { 4 };
    let mem = if r.sc {
        Mem::Store {
            rs1: r.rs1,
            rs2: r.rs2,
            imm: 0,
            size,
        }
    } else {
        Mem::Load {
            rd: r.rd,
            rs1: r.rs1,
            imm: 0,
            size,
            signed: true,
        }
    };
    // The store page cache may take the page while SC's own reservation is
    // active: it is gone when the inline SC goes on, and the executor
    // (the fallback) empties the caches.
    let (slow, host) = atomic_entry(a, cross, mem, false, xr);
    let fallback = slow.label;
    // rcx = the granule's physical address.
    dynasm!(a
        ; .arch x64
        ; lea rcx, [Rq(host) + rsi]
        ; mov rdx, QWORD l.ram_delta as i64
        ; add rcx, rdx
        ; and rcx, -8
        ; mov rdx, QWORD l.resv_slot as i64
    );
    if r.sc {
        dynasm!(a
            ; .arch x64
            ; cmp rcx, QWORD [rdx]
            ; jne =>fallback
        );
        crossing(a, cross, fallback);
        dynasm!(a
            ; .arch x64
            ; mov rax, QWORD l.resv_active as i64
            ; cmp DWORD [rax], 1
            ; jne =>fallback
        );
        crossing(a, cross, fallback);
        dynasm!(a
            ; .arch x64
            ; mov QWORD [rdx], -1
            ; lock dec DWORD [rax]
        );
        x(a, X::Load, Rq::RAX, xr(r.rs2));
        if r.double {
            dynasm!(a ; .arch x64 ; mov QWORD [Rq(host) + rsi], rax);
        } else {
            dynasm!(a ; .arch x64 ; mov DWORD [Rq(host) + rsi], eax);
        }
        dynasm!(a ; .arch x64 ; xor eax, eax);
    } else {
        let held = a.new_dynamic_label();
        if r.double {
            dynasm!(a ; .arch x64 ; mov rax, QWORD [Rq(host) + rsi]);
        } else {
            dynasm!(a ; .arch x64 ; movsxd rax, DWORD [Rq(host) + rsi]);
        }
        dynasm!(a
            ; .arch x64
            ; xchg QWORD [rdx], rcx
            ; cmp rcx, -1
            ; jne =>held
            ; mov rcx, QWORD l.resv_active as i64
            ; lock inc DWORD [rcx]
            ; =>held
            // Stores must now see the reservation (see `memory`).
            ; mov r11, -1
        );
    }
    put(a, r.rd, xr);
    dynasm!(a ; .arch x64 ; =>slow.back);
    slow
}

/// The way through the executor of an inline operation that is not the
/// fast case (for an AMO: a misaligned address, an active reservation, a
/// TLB miss, a device, a fault): as for any executor operation, except
/// that on success instret is taken back by one, as the main line counts
/// the instruction itself.
fn fallback(a: &mut Asm, cross: &mut Crossings, l: &Layout, f: &Fallback, exit: DynamicLabel) {
    dynasm!(a ; .arch x64 ; =>f.label);
    executor_call(a, cross, l, f.off, f.index, exit);
    dynasm!(a
        ; .arch x64
        ; sub QWORD [rbx + l.instret], 1
        ; jmp =>f.back
    );
    crossing(a, cross, f.back);
}

/// The main line of `csrrs`/`csrrc` on `sstatus` (see [`Status`]): in S
/// or M mode, with the FP state not dirty (so no SD bit to make up), rd
/// gets `sstatus`; a write that changes nothing but SIE is done here.
/// Anything else (U mode, another bit, FS dirty) is the executor's, at
/// `f.label`. Returns the interrupt check to emit out of line when the
/// write may turn SIE on.
fn status(
    a: &mut Asm,
    cross: &mut Crossings,
    l: &Layout,
    c: Status,
    f: &Fallback,
    next: i32,
    xr: impl Fn(u8) -> i32 + Copy,
) -> Option<IrqCheck> {
    const SIE: i32 = ms::SIE as i32;
    // Bits of sstatus a write may change here without the executor.
    const OTHERS: i32 = (ms::S_WRITABLE & !ms::SIE) as i32;
    const _: () = assert!(ms::S_WRITABLE >> 31 == 0 && ms::FS >> 31 == 0);
    dynasm!(a
        ; .arch x64
        ; cmp BYTE [rbx + l.prv], 1
        ; jb =>f.label
    );
    crossing(a, cross, f.label);
    dynasm!(a
        ; .arch x64
        ; mov rax, QWORD [rbx + l.mstatus]
        ; mov ecx, eax
        ; and ecx, ms::FS as i32
        ; cmp ecx, ms::FS_DIRTY as i32
        ; je =>f.label
    );
    crossing(a, cross, f.label);
    dynasm!(a
        ; .arch x64
        ; mov rdx, QWORD ms::S_READABLE as i64
        ; and rdx, rax
    );
    // `csrrs rd, sstatus, x0` only reads (and so does an immediate of 0).
    let writes = c.src != 0;
    let may_enable = writes
        && match c.op {
            CsrOp::Rsi => i32::from(c.src) & SIE != 0,
            _ => c.op == CsrOp::Rs,
        };
    if writes {
        // rcx = the new sstatus; rax = mstatus, rdx = the old sstatus.
        match c.op {
            CsrOp::Rs | CsrOp::Rc => x(a, X::Load, Rq::RCX, xr(c.src)),
            _ => dynasm!(a ; .arch x64 ; mov ecx, i32::from(c.src)),
        }
        match c.op {
            CsrOp::Rs | CsrOp::Rsi => dynasm!(a ; .arch x64 ; or rcx, rdx),
            _ => dynasm!(a ; .arch x64 ; not rcx ; and rcx, rdx),
        }
        dynasm!(a
            ; .arch x64
            ; mov rsi, rcx
            ; xor rsi, rdx
            ; test esi, OTHERS
            ; jnz =>f.label
        );
        crossing(a, cross, f.label);
        if may_enable {
            // rsi = SIE if this turns it on.
            dynasm!(a
                ; .arch x64
                ; mov rsi, rax
                ; not rsi
                ; and rsi, rcx
                ; and esi, SIE
            );
        }
        // As `set_mstatus`, which also keeps UXL and SXL set.
        dynasm!(a
            ; .arch x64
            ; and ecx, SIE
            ; and rax, !SIE
            ; or rax, rcx
            ; mov rcx, QWORD (ms::UXL | ms::SXL) as i64
            ; or rax, rcx
            ; mov QWORD [rbx + l.mstatus], rax
        );
    }
    dynasm!(a ; .arch x64 ; mov rax, rdx);
    put(a, c.rd, xr);
    let check = may_enable.then(|| {
        let check = IrqCheck {
            label: a.new_dynamic_label(),
            back: f.back,
            next,
        };
        dynasm!(a ; .arch x64 ; test esi, esi ; jnz =>check.label);
        crossing(a, cross, check.label);
        check
    });
    dynasm!(a ; .arch x64 ; =>f.back);
    check
}

/// Out of line after an inline write turned SIE on: the instruction has
/// retired; if an interrupt is deliverable now, leave with `CHECK_IRQ`
/// and pc at the next instruction (as the executor would), else go back.
fn irq_check(a: &mut Asm, cross: &mut Crossings, l: &Layout, c: &IrqCheck, exit: DynamicLabel) {
    dynasm!(a
        ; .arch x64
        ; =>c.label
        ; lea rdi, [rbx + l.hart]
        ; mov rax, QWORD interrupt_deliverable as *const () as usize as i64
        ; call rax
    );
    forget_pages(a);
    dynasm!(a
        ; .arch x64
        ; test eax, eax
        ; jz =>c.back
    );
    crossing(a, cross, c.back);
    dynasm!(a
        ; .arch x64
        ; add QWORD [rbx + l.instret], 1
        ; lea rax, [r13 + c.next]
        ; mov QWORD [rbx + l.pc], rax
        ; mov eax, CHECK_IRQ as i32
        ; jmp =>exit
    );
    crossing(a, cross, exit);
}

/// The code of a block that is one instruction straddling two pages (no
/// decoded instructions): the interpreter steps it, fetching both halves
/// afresh every time, and the block goes on through the jump cache as a
/// jump to another page does, so chains through such an instruction do
/// not stop at it.
fn straddle(a: &mut Asm, l: &Layout, e: &mut Exits) {
    dynasm!(a
        ; .arch x64
        ; mov QWORD [rbx + l.pc], r13
        ; lea rdi, [rbx + l.hart]
        ; mov rsi, r12
        ; mov rax, QWORD step_one as *const () as usize as i64
        ; call rax
    );
    forget_pages(a);
    dynasm!(a
        ; .arch x64
        ; test rax, rax
        ; jnz =>e.exit
        ; mov rcx, QWORD [rbx + l.pc]
    );
    if e.chains {
        jump_cache(a, l, e);
    }
    dynasm!(a ; .arch x64 ; xor eax, eax ; jmp =>e.exit);
}

/// Run executor operation `index`, the instruction at byte offset `off`
/// (instret already current): pc first, then the call; a status other than
/// `NEXT` leaves through `exit`.
fn executor_call(
    a: &mut Asm,
    cross: &mut Crossings,
    l: &Layout,
    off: i32,
    index: usize,
    exit: DynamicLabel,
) {
    dynasm!(a
        ; .arch x64
        ; lea rax, [r13 + off]
        ; mov QWORD [rbx + l.pc], rax
        ; lea rdi, [rbx + l.hart]
        ; mov rsi, r12
        ; mov rdx, QWORD index as i64
        ; mov rax, QWORD exec_one as *const () as usize as i64
        ; call rax
    );
    // The call clobbered the page caches (and the operation may have
    // changed privilege or translation).
    forget_pages(a);
    dynasm!(a
        ; .arch x64
        ; test rax, rax
        ; jnz =>exit
    );
    crossing(a, cross, exit);
}

/// Empty the page caches (see [`memory`]).
fn forget_pages(a: &mut Asm) {
    dynasm!(a
        ; .arch x64
        ; mov r9, -1
        ; mov rdi, -1
        ; mov r11, -1
    );
}

/// The page cache a load or store uses: (page-number register, register
/// of the host page's address minus the guest page's). Loads from the
/// stack or frame (sp, s0) have their own, so that a function's stack
/// accesses and its other loads do not evict each other's page.
fn page_cache(m: Mem) -> (Rq, Rq) {
    match m {
        Mem::Load { rs1: 2 | 8, .. } => (Rq::R9, Rq::R10),
        Mem::Load { .. } => (Rq::RDI, Rq::R8),
        Mem::Store { .. } => (Rq::R11, Rq::RBP),
    }
}

/// The page-cache check for the address in rsi: `fill` unless its page is
/// the one in `tag`; at `hit` (where `fill` comes back) the host address is
/// rsi plus the cache's host register, which holds the host page's address
/// minus the guest page's.
fn page_check(a: &mut Asm, cross: &mut Crossings, tag: Rq, fill: DynamicLabel, hit: DynamicLabel) {
    dynasm!(a
        ; .arch x64
        ; mov rax, rsi
        ; shr rax, 12
        ; cmp rax, Rq(tag)
        ; jne =>fill
    );
    crossing(a, cross, fill);
    dynasm!(a ; .arch x64 ; =>hit);
}

/// The out-of-line TLB lookup after a page-cache miss (page number in
/// rax, address in rsi): on a hit to a RAM page the page cache takes it and
/// the main line goes on at `hit`; otherwise the `Hart` method.
fn fill_path(a: &mut Asm, cross: &mut Crossings, l: &Layout, s: &Slow) {
    let base = match s.mem {
        Mem::Load { .. } => l.tlb_load_base,
        Mem::Store { .. } => l.tlb_store_base,
    };
    dynasm!(a
        ; .arch x64
        ; =>s.fill
        ; mov ecx, eax
        ; and ecx, l.tlb_set_mask as i32
        ; add rcx, QWORD [rbx + base]
        ; shl rcx, l.tlb_entry_shift as i8
        ; add rcx, r14
        ; cmp rax, QWORD [rcx + l.entry_vpn]
        ; jne =>s.label
    );
    crossing(a, cross, s.label);
    dynasm!(a
        ; .arch x64
        ; mov rdx, QWORD [rbx + l.tlb_epoch]
        ; cmp rdx, QWORD [rcx + l.entry_epoch]
        ; jne =>s.label
    );
    crossing(a, cross, s.label);
    dynasm!(a
        ; .arch x64
        ; mov rcx, QWORD [rcx + l.entry_host]
        ; test rcx, rcx
        ; jz =>s.label
    );
    crossing(a, cross, s.label);
    if s.unreserved {
        // While an LR reservation is active anywhere a write must go
        // through `Hart::store`, which breaks the ones it hits.
        dynasm!(a
            ; .arch x64
            ; mov rdx, QWORD l.resv_active as i64
            ; cmp DWORD [rdx], 0
            ; jne =>s.label
        );
        crossing(a, cross, s.label);
    }
    let (tag, host) = page_cache(s.mem);
    dynasm!(a
        ; .arch x64
        ; mov Rq(tag), rax
        ; shl rax, 12
        ; sub rcx, rax
        ; mov Rq(host), rcx
        ; jmp =>s.hit
    );
    crossing(a, cross, s.hit);
}

/// After the fast or slow path of a load (value zero-extended in rax):
/// sign-extend and write rd. Emitted at the `back` label.
fn load_tail(a: &mut Asm, rd: u8, size: u8, signed: bool, xr: impl Fn(u8) -> i32 + Copy) {
    if signed {
        match size {
            1 => dynasm!(a ; .arch x64 ; movsx rax, al),
            2 => dynasm!(a ; .arch x64 ; movsx rax, ax),
            _ => dynasm!(a ; .arch x64 ; movsxd rax, eax),
        }
    }
    put(a, rd, xr);
}

/// The out-of-line path of a load or store: the `Hart` method, then back
/// to the main line, or to the trap exit.
fn slow_path(
    a: &mut Asm,
    cross: &mut Crossings,
    l: &Layout,
    s: &Slow,
    xr: impl Fn(u8) -> i32 + Copy,
) {
    dynasm!(a
        ; .arch x64
        ; =>s.label
        ; mov rdx, rsi
        ; lea rdi, [rbx + l.hart]
        ; mov rsi, r12
    );
    // Both return whether the access went through: a load in rdx (its
    // value in rax), a store in rax.
    match s.mem {
        Mem::Load { size, .. } => dynasm!(a
            ; .arch x64
            ; mov ecx, i32::from(size)
            ; mov rax, QWORD load_slow as *const () as usize as i64
            ; call rax
            ; mov rcx, rdx
        ),
        Mem::Store { rs2, size, .. } => {
            dynasm!(a ; .arch x64 ; mov ecx, i32::from(size));
            x(a, X::Load, Rq::R8, xr(rs2));
            dynasm!(a ; .arch x64 ; mov rax, QWORD store_slow as *const () as usize as i64 ; call rax ; mov rcx, rax);
        }
    }
    forget_pages(a);
    dynasm!(a
        ; .arch x64
        ; test rcx, rcx
        ; jz =>s.trap
        ; jmp =>s.back
    );
    crossing(a, cross, s.back);
}

#[cfg(test)]
mod tests {
    use crate::decode::{Instruction, decode, decode_compressed};
    use crate::{Clock, Exit, Hart, HartConfig, HartIrq, JitMode, NoMmio, Ram};
    use vessel_machine::create_guest_memory;

    const BASE: u64 = 0x8000_0000;
    const RAM: usize = 1 << 16;
    /// Registers that look like pointers point here, far enough from both
    /// ends that `imm` offsets stay inside: loads and stores hit RAM.
    const DATA: u64 = BASE + 0x1800;
    const DATA_LEN: u64 = 0x5000;
    /// Each case's code starts here (one page of random instructions).
    const CODE: u64 = BASE + 0x8000;

    /// xorshift64: a fixed pseudo-random sequence, so failures reproduce.
    fn next(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    fn hart(ram: &Ram, jit: JitMode) -> Hart {
        let cfg = HartConfig {
            jit,
            ..HartConfig::default()
        };
        Hart::new(cfg, ram.clone(), Clock::new(10_000_000), HartIrq::new())
    }

    /// Random instruction bits, 16 or 32 of them; reads of the time CSR
    /// are left out (they depend on when they run).
    fn random_instruction(s: &mut u64) -> (u32, usize) {
        loop {
            let r = next(s);
            let (raw, len, inst) = if !r.is_multiple_of(3) {
                // A major opcode that decodes, and for register-register
                // forms a funct7 that names an operation.
                const OPCODES: [u32; 16] = [
                    0x03, 0x13, 0x17, 0x1b, 0x23, 0x2f, 0x33, 0x37, 0x3b, 0x63, 0x67, 0x6f, 0x07,
                    0x27, 0x53, 0x0f,
                ];
                const FUNCT7: [u32; 8] = [0x00, 0x20, 0x01, 0x10, 0x05, 0x04, 0x30, 0x24];
                let bits = (r >> 16) as u32;
                let opcode = OPCODES[(r >> 2) as usize % OPCODES.len()];
                let mut raw = (bits & !0x7f) | opcode;
                if opcode == 0x33 || opcode == 0x3b {
                    raw = (raw & 0x01ff_ffff) | (FUNCT7[(r >> 8) as usize % 8] << 25);
                }
                (raw, 4, decode(raw))
            } else {
                let raw = (r >> 8) as u32 & 0xffff;
                if raw & 3 == 3 {
                    continue;
                }
                (raw, 2, decode_compressed(raw as u16))
            };
            if !matches!(inst, Instruction::Csr { .. }) {
                return (raw, len);
            }
        }
    }

    /// Everything the two harts must agree on after a run.
    fn state(h: &Hart, ram: &Ram, exit: Exit) -> String {
        let mut mem = vec![0u8; RAM];
        ram.read_bytes(BASE, &mut mem).unwrap();
        let sum = mem.iter().fold(0xcbf2_9ce4_8422_2325u64, |a, &b| {
            (a ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        format!(
            "exit {exit:?} pc {:#x} prv {} instret {} x {:x?} f {:x?} mstatus {:#x} mepc {:#x} \
             mcause {:#x} mtval {:#x} memory {sum:#x}",
            h.pc, h.prv, h.instret, h.x, h.f, h.csr.mstatus, h.csr.mepc, h.csr.mcause, h.csr.mtval
        )
    }

    /// Put a hart back to the case's starting state.
    fn reset(h: &mut Hart, regs: &[u64; 32], fregs: &[u64; 32]) {
        h.x = *regs;
        h.f = *fregs;
        h.pc = CODE;
        h.prv = 3;
        h.csr = Default::default();
        h.csr.mstatus = 1 << 13; // FS = Initial: FP instructions run
        h.csr.mtvec = BASE; // a `j .` loop: a trap spins there until the budget ends
        h.instret = 0;
        h.jit_trap = None;
        h.sync_mode();
        h.tlb_flush();
        h.code_changed(); // since the last case: what `fence.i` does
        h.reservation_clear();
    }

    /// An interpreting hart and a compiling one (every block compiled on
    /// its first run), each with its own RAM.
    struct Pair {
        ram: [Ram; 2],
        interp: Hart,
        jit: Hart,
    }

    impl Pair {
        fn new() -> Pair {
            let ram = [0, 1]
                .map(|_| Ram::new(&create_guest_memory(&[(BASE, RAM as u64)]).unwrap()).unwrap());
            let interp = hart(&ram[0], JitMode::Off);
            let jit = hart(&ram[1], JitMode::After(1));
            Pair { ram, interp, jit }
        }

        /// Load `image` and the registers into one of the harts, run it for
        /// `budget` instructions, and return its `state`.
        fn run(
            &mut self,
            compiled: bool,
            image: &[u8],
            regs: &[u64; 32],
            fregs: &[u64; 32],
            budget: u64,
        ) -> String {
            self.run_set(compiled, image, regs, fregs, budget, |_| {})
        }

        /// As `run`, with `set` changing the hart after its reset.
        fn run_set(
            &mut self,
            compiled: bool,
            image: &[u8],
            regs: &[u64; 32],
            fregs: &[u64; 32],
            budget: u64,
            set: impl Fn(&mut Hart),
        ) -> String {
            let (h, ram) = if compiled {
                (&mut self.jit, &self.ram[1])
            } else {
                (&mut self.interp, &self.ram[0])
            };
            ram.write_bytes(BASE, image).unwrap();
            reset(h, regs, fregs);
            set(h);
            h.sync_mode();
            let exit = h.run(&mut NoMmio, budget);
            format!(
                "{} sie {:#x} mip {:#x} scause {:#x} sepc {:#x} reservations {:x?}",
                state(h, ram, exit),
                h.csr.mie,
                h.csr.mip,
                h.csr.scause,
                h.csr.sepc,
                ram.reservations(0)
            )
        }
    }

    /// A loop that calls a function (through the jump cache both ways) and,
    /// halfway, rewrites that function and runs
    /// `fence.i`: compiled, links and all, it counts what the interpreter
    /// counts, and the new instruction runs from then on.
    #[test]
    fn links_and_the_jump_cache_follow_code_rewritten_before_fence_i() {
        let code: [u32; 9] = [
            0x0015_0513, // loop: addi a0, a0, 1
            0x0002_80e7, //       jalr ra, 0(t0) (calls f)
            0xfe75_1ce3, //       bne a0, t2, loop
            0x0062_a023, //       sw t1, 0(t0)
            0x0000_100f, //       fence.i
            0xfedf_f06f, //       j loop
            0x0015_8593, // f:    addi a1, a1, 1
            0x0000_8067, //       ret
            0x0645_8593, //       addi a1, a1, 100 (the new first instruction of f)
        ];
        let mut finals = Vec::new();
        for mode in [JitMode::Off, JitMode::After(1)] {
            let mem = create_guest_memory(&[(BASE, RAM as u64)]).unwrap();
            let ram = Ram::new(&mem).unwrap();
            for (i, w) in code.iter().enumerate() {
                ram.write(CODE + 4 * i as u64, 4, u64::from(*w)).unwrap();
            }
            let mut h = hart(&ram, mode);
            h.set_pc(CODE);
            h.set_reg(5, CODE + 0x18); // t0 = &f
            h.set_reg(6, u64::from(code[8])); // t1 = the new instruction
            h.set_reg(7, 500); // t2: rewrite after 500 rounds
            assert_eq!(h.run(&mut NoMmio, 5000), Exit::Budget);
            let rounds = h.reg(10);
            let calls_before = 500;
            assert!(rounds > 800, "{mode:?}: only {rounds} rounds");
            // Calls after the rewrite add 100, except the one in flight.
            let want = calls_before + (rounds - calls_before) * 100;
            assert!(
                h.reg(11).abs_diff(want) <= 100,
                "{mode:?}: a1 = {}, expected about {want}",
                h.reg(11)
            );
            if mode != JitMode::Off {
                assert!(h.jit_blocks() >= 3, "compiled {}", h.jit_blocks());
            }
            finals.push((h.pc(), h.instret(), h.reg(10), h.reg(11), h.reg(1)));
        }
        assert_eq!(finals[0], finals[1], "interpreted vs compiled");
    }

    /// Random blocks run the same compiled as interpreted: registers, FP
    /// registers, pc, privilege, instret, trap CSRs, memory and the exit.
    /// The compiled hart runs each case twice (compiling on the first run,
    /// reusing the code on the second).
    #[test]
    fn compiled_blocks_match_the_interpreter() {
        let mut pair = Pair::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut image = vec![0u8; RAM];
        for case in 0..3000 {
            image.fill(0);
            image[..4].copy_from_slice(&0x0000_006fu32.to_le_bytes()); // j .
            for b in &mut image[(DATA - BASE) as usize..(DATA - BASE + DATA_LEN) as usize] {
                *b = next(&mut seed) as u8;
            }
            let mut at = (CODE - BASE) as usize;
            while at + 4 <= (CODE - BASE) as usize + 0x1000 {
                let (raw, len) = random_instruction(&mut seed);
                image[at..at + len].copy_from_slice(&raw.to_le_bytes()[..len]);
                at += len;
            }
            let mut regs = [0u64; 32];
            let mut fregs = [0u64; 32];
            for i in 1..32 {
                let v = next(&mut seed);
                regs[i] = if !v.is_multiple_of(3) {
                    DATA + 0x800 + (v >> 8) % (DATA_LEN - 0x1000)
                } else {
                    v
                };
                fregs[i] = next(&mut seed);
            }
            let want = pair.run(false, &image, &regs, &fregs, 64);
            for round in 0..2 {
                assert_eq!(
                    pair.run(true, &image, &regs, &fregs, 64),
                    want,
                    "case {case}, round {round}: first instruction {:08x}",
                    u32::from_le_bytes(image[0x8000..0x8004].try_into().unwrap())
                );
            }
        }
        assert!(
            pair.jit.jit_blocks() > 3000,
            "compiled only {}",
            pair.jit.jit_blocks()
        );
    }

    /// Two jump targets of one jump-cache set both stay in it while the
    /// guest jumps back and forth between them, each found by the code
    /// that jumps there.
    #[test]
    fn two_targets_of_one_jump_set_both_stay() {
        const SIZE: u64 = 4 << 20;
        let a = BASE;
        let b = (BASE + 4..BASE + SIZE)
            .step_by(4)
            .find(|&p| super::jump_index(p) == super::jump_index(a))
            .expect("4 MiB hold another target of the set");
        let mem = create_guest_memory(&[(BASE, SIZE)]).unwrap();
        let ram = Ram::new(&mem).unwrap();
        ram.write(a, 4, 0x0003_0067).unwrap(); // jr t1
        ram.write(b, 4, 0x0002_8067).unwrap(); // jr t0
        let mut h = hart(&ram, JitMode::After(1));
        h.set_pc(a);
        h.set_reg(5, a);
        h.set_reg(6, b);
        assert_eq!(h.run(&mut NoMmio, 1000), Exit::Budget);
        assert_eq!(h.pc(), a);
        let jit = h.jit.as_ref().expect("a JIT on this host");
        let set = &jit.jumps[super::jump_index(a)].0;
        let mut held = [set[0].pc, set[1].pc];
        held.sort();
        assert_eq!(held, [a, b]);
        // Both entries are found: nothing more to remember.
        let before = jit.remembered;
        assert_eq!(h.run(&mut NoMmio, 1000), Exit::Budget);
        assert_eq!(h.jit.as_ref().map(|j| j.remembered), Some(before));
    }

    /// Rotates, min/max, sign extension and byte reversal (Zbb) run inline
    /// and agree with the interpreter, for shift amounts and operands
    /// around their edges.
    #[test]
    fn inline_bit_manipulation_matches_the_interpreter() {
        let r = |funct7: u32, funct3: u32, opcode: u32| {
            // rd = a0, rs1 = a1, rs2 = a2
            funct7 << 25 | 12 << 20 | 11 << 15 | funct3 << 12 | 10 << 7 | opcode
        };
        let imm = |imm12: u32, funct3: u32, opcode: u32| {
            imm12 << 20 | 11 << 15 | funct3 << 12 | 10 << 7 | opcode
        };
        let cases = [
            ("rori 0", imm(0x600, 5, 0x13)),
            ("rori 13", imm(0x600 | 13, 5, 0x13)),
            ("rori 63", imm(0x600 | 63, 5, 0x13)),
            ("roriw 0", imm(0x600, 5, 0x1b)),
            ("roriw 31", imm(0x600 | 31, 5, 0x1b)),
            ("sext.b", imm(0x604, 1, 0x13)),
            ("sext.h", imm(0x605, 1, 0x13)),
            ("rev8", imm(0x6b8, 5, 0x13)),
            ("rol", r(0x30, 1, 0x33)),
            ("ror", r(0x30, 5, 0x33)),
            ("rolw", r(0x30, 1, 0x3b)),
            ("rorw", r(0x30, 5, 0x3b)),
            ("min", r(0x05, 4, 0x33)),
            ("minu", r(0x05, 5, 0x33)),
            ("max", r(0x05, 6, 0x33)),
            ("maxu", r(0x05, 7, 0x33)),
        ];
        let values = [
            0,
            1,
            63,
            64,
            0x80,
            0x8000,
            0x8000_0000,
            u64::MAX,
            0x8000_0000_0000_0000,
            0x0123_4567_89ab_cdef,
        ];
        let mut pair = Pair::new();
        for (name, raw) in cases {
            let op = crate::fastop::lower(decode(raw));
            assert!(
                matches!(super::kind(&op), super::Kind::Alu),
                "{name} is compiled inline"
            );
            let mut image = vec![0u8; RAM];
            let at = (CODE - BASE) as usize;
            image[at..at + 4].copy_from_slice(&raw.to_le_bytes());
            image[at + 4..at + 8].copy_from_slice(&0x0000_006fu32.to_le_bytes()); // j .
            for &a in &values {
                for &b in &values {
                    let mut regs = [0u64; 32];
                    regs[11] = a;
                    regs[12] = b;
                    let fregs = [0u64; 32];
                    let want = pair.run(false, &image, &regs, &fregs, 3);
                    assert_eq!(
                        pair.run(true, &image, &regs, &fregs, 3),
                        want,
                        "{name} {a:#x} {b:#x}"
                    );
                }
            }
        }
    }

    /// LR/SC compiled inline agree with the interpreter: a pair that
    /// succeeds, an SC with no reservation, one on another granule, one
    /// after a store to the reserved granule, misaligned addresses, words
    /// (sign-extended) and doublewords, LR twice in a row; registers,
    /// memory and the reservations must agree.
    #[test]
    fn inline_lr_sc_match_the_interpreter() {
        // funct5: LR 0x02, SC 0x03; rd, rs1, rs2 as given.
        let op = |funct5: u32, double: bool, rd: u32, rs1: u32, rs2: u32| {
            funct5 << 27 | rs2 << 20 | rs1 << 15 | (2 + u32::from(double)) << 12 | rd << 7 | 0x2f
        };
        let sd = |rs2: u32, rs1: u32| rs2 << 20 | rs1 << 15 | 3 << 12 | 0x23; // sd rs2, 0(rs1)
        let mut pair = Pair::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for double in [false, true] {
            let lr = |rd, rs1| op(0x02, double, rd, rs1, 0);
            let sc = |rd, rs1, rs2| op(0x03, double, rd, rs1, rs2);
            // a0 = lr (a2); a1 = sc a3, (a2): each program, then j .
            let programs: [(&str, Vec<u32>); 6] = [
                ("lr; sc", vec![lr(10, 12), sc(11, 12, 13)]),
                ("sc alone", vec![sc(11, 12, 13)]),
                ("lr; sc elsewhere", vec![lr(10, 12), sc(11, 14, 13)]),
                ("lr; sd; sc", vec![lr(10, 12), sd(13, 12), sc(11, 12, 13)]),
                ("lr; lr; sc", vec![lr(10, 14), lr(10, 12), sc(11, 12, 13)]),
                (
                    "lr; sc; sc",
                    vec![lr(10, 12), sc(11, 12, 13), sc(15, 12, 13)],
                ),
            ];
            for (name, code) in &programs {
                for misalign in [0u64, 4] {
                    let mut image = vec![0u8; RAM];
                    image[..4].copy_from_slice(&0x0000_006fu32.to_le_bytes()); // j .
                    for b in &mut image[(DATA - BASE) as usize..(DATA - BASE + DATA_LEN) as usize] {
                        *b = next(&mut seed) as u8;
                    }
                    // ld t0, 0(a4); sd t0, 0(a4) twice: the page is in the
                    // TLB for loads and stores, so the inline paths run,
                    // and in the store page cache when the LR comes.
                    let mut words = vec![0x0007_3283, 0x0057_3023, 0x0057_3023];
                    words.extend(code);
                    words.push(0x0000_006f); // j .
                    for (k, w) in words.iter().enumerate() {
                        let at = (CODE - BASE) as usize + 4 * k;
                        image[at..at + 4].copy_from_slice(&w.to_le_bytes());
                    }
                    let mut regs = [0u64; 32];
                    regs[12] = DATA + 0x100 + misalign;
                    regs[13] = 0x8000_0001_ffff_fff3;
                    regs[14] = DATA + 0x200;
                    let fregs = [0u64; 32];
                    let budget = words.len() as u64 + 2;
                    let want = pair.run_set(false, &image, &regs, &fregs, budget, |_| {});
                    assert_eq!(
                        pair.run_set(true, &image, &regs, &fregs, budget, |_| {}),
                        want,
                        "{name} double {double} misalign {misalign}"
                    );
                }
            }
        }
    }

    /// `csrrs`/`csrrc` on `sstatus` agree with the interpreter in U, S and
    /// M mode, with the FP state dirty or not, whatever bits they set or
    /// clear, and with an interrupt pending or not when they turn SIE on.
    #[test]
    fn inline_sstatus_accesses_match_the_interpreter() {
        use crate::csr::{irqbit, ms};
        let csr = |funct3: u32, rd: u32, src: u32| {
            0x100 << 20 | src << 15 | funct3 << 12 | rd << 7 | 0x73
        };
        let cases = [
            ("csrrs a0, sstatus, a1", csr(2, 10, 11)),
            ("csrrc a0, sstatus, a1", csr(3, 10, 11)),
            ("csrrs x0, sstatus, a1", csr(2, 0, 11)),
            ("csrrsi a0, sstatus, SIE", csr(6, 10, 2)),
            ("csrrci a0, sstatus, SIE", csr(7, 10, 2)),
            ("csrrci a0, sstatus, 3", csr(7, 10, 3)),
            ("csrr a0, sstatus", csr(2, 10, 0)),
        ];
        let sum = ms::SUM;
        let mut pair = Pair::new();
        let mut runs = 0;
        for (name, raw) in cases {
            let op = crate::fastop::lower(decode(raw));
            assert!(
                matches!(super::kind(&op), super::Kind::Status(_)),
                "{name} is compiled inline"
            );
            let mut image = vec![0u8; RAM];
            image[..4].copy_from_slice(&0x0000_006fu32.to_le_bytes()); // j . (the trap vectors)
            let at = (CODE - BASE) as usize;
            image[at..at + 4].copy_from_slice(&raw.to_le_bytes());
            image[at + 4..at + 8].copy_from_slice(&0x0017_8793u32.to_le_bytes()); // addi a5, a5, 1
            image[at + 8..at + 12].copy_from_slice(&0x0000_006fu32.to_le_bytes()); // j .
            for prv in [0u8, 1, 3] {
                for status in [0, ms::SIE, ms::FS_DIRTY, ms::SIE | sum, ms::SPIE | ms::SPP] {
                    for operand in [0, ms::SIE, sum, ms::SIE | sum, u64::MAX] {
                        for pending in [false, true] {
                            let mut regs = [0u64; 32];
                            regs[11] = operand;
                            let set = |h: &mut Hart| {
                                h.prv = prv;
                                h.csr.mstatus |= status;
                                h.csr.mstatus &= !(ms::FS & !status);
                                h.csr.stvec = BASE;
                                h.csr.medeleg = !0;
                                h.csr.mideleg = irqbit::S_ALL;
                                h.csr.mie = irqbit::SSI;
                                h.csr.mip = if pending { irqbit::SSI } else { 0 };
                            };
                            let fregs = [0u64; 32];
                            let want = pair.run_set(false, &image, &regs, &fregs, 3, set);
                            let got = pair.run_set(true, &image, &regs, &fregs, 3, set);
                            assert_eq!(
                                got, want,
                                "{name} prv {prv} mstatus {status:#x} operand {operand:#x} pending {pending}"
                            );
                            runs += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(runs, 7 * 3 * 5 * 5 * 2);
    }

    /// A loop through an instruction that straddles two pages runs it in
    /// compiled code (interpreter stepped, chained on through the jump
    /// cache) with the interpreter's results for every budget; one whose
    /// second half lies past the end of RAM takes the same fetch fault.
    #[test]
    fn an_instruction_across_pages_runs_as_the_interpreter_runs_it() {
        let put = |image: &mut [u8], at: u64, w: u32| {
            let at = (at - BASE) as usize;
            image[at..at + 4].copy_from_slice(&w.to_le_bytes());
        };
        let mut image = vec![0u8; RAM];
        put(&mut image, BASE, 0x0000_006f); // j . (the trap vector)
        let top = BASE + 0x8ff6;
        put(&mut image, top, 0x0015_0513); // addi a0, a0, 1
        put(&mut image, top + 4, 0x0016_0613); // addi a2, a2, 1
        put(&mut image, top + 8, 0x0015_8593); // addi a1, a1, 1 (across 0x9000)
        put(&mut image, top + 12, 0xff5f_f06f); // j top
        let end = BASE + RAM as u64 - 2;
        put(&mut image, end - 4, 0x0015_0513); // addi a0, a0, 1
        image[RAM - 2..].copy_from_slice(&[0x93, 0x85]); // the first half of addi a1, a1, 1
        let mut pair = Pair::new();
        let regs = [0u64; 32];
        let fregs = [0u64; 32];
        for (pc, budgets) in [(top, 1..=60), (end - 4, 1..=4)] {
            for budget in budgets {
                let set = |h: &mut Hart| h.pc = pc;
                let want = pair.run_set(false, &image, &regs, &fregs, budget, set);
                let got = pair.run_set(true, &image, &regs, &fregs, budget, set);
                assert_eq!(got, want, "from {pc:#x}, budget {budget}");
            }
        }
        assert!(pair.jit.jit_blocks() >= 3, "the blocks were compiled");
    }

    /// Guest registers are reached with one-byte displacements from rbx:
    /// `add a0, a1, a2` is `mov rax, [rbx-40]; add rax, [rbx-32];
    /// mov [rbx-48], rax` with rbx 128 bytes past `x[0]`.
    #[test]
    fn guest_registers_are_a_byte_from_rbx() {
        let mut layout = test_layout();
        layout.x = 0x40;
        let info = super::BlockInfo {
            paddr: BASE,
            pc: BASE,
            chains: true,
        };
        let add = 0x00c5_8533; // add a0, a1, a2
        let insts = [(crate::fastop::lower(decode(add)), add)];
        let code = super::assemble(&layout, &info, &insts, &mut Vec::new(), 0)
            .unwrap()
            .code;
        let want = [
            0x48, 0x8b, 0x43, 0xd8, // mov rax, [rbx - 40]
            0x48, 0x03, 0x43, 0xe0, // add rax, [rbx - 32]
            0x48, 0x89, 0x43, 0xd0, // mov [rbx - 48], rax
        ];
        assert!(code.windows(want.len()).any(|w| w == want), "{code:02x?}");
        // and the prologue points rbx there: lea rbx, [rdi + 0x40 + 128]
        let lea = [0x48, 0x8d, 0x9f, 0xc0, 0x00, 0x00, 0x00];
        assert!(code.windows(lea.len()).any(|w| w == lea), "{code:02x?}");
    }

    /// A layout with every field at 0: enough to assemble blocks.
    fn test_layout() -> super::Layout {
        super::Layout {
            x: 0,
            pc: 0,
            instret: 0,
            tlb_epoch: 0,
            tlb_load_base: 0,
            tlb_store_base: 0,
            tlb_entries: 0,
            tlb_entry_shift: 5,
            tlb_set_mask: 0,
            entry_vpn: 0,
            entry_epoch: 0,
            entry_host: 0,
            resv_active: 0,
            resv_slot: 0,
            ram_delta: 0,
            link_epoch: 0,
            exit_slot: 0,
            jump_tag: 0,
            jump_miss: 0,
            prv: 0,
            mstatus: 0,
            hart: 0,
        }
    }

    /// A same-page exit gets a link slot of the form `Jit::link` rewrites
    /// (it leaves any other alone): an empty epoch check, then the jump.
    #[test]
    fn a_link_slot_ends_in_the_jump_link_rewrites() {
        let layout = test_layout();
        let info = super::BlockInfo {
            paddr: BASE,
            pc: BASE,
            chains: true,
        };
        let jal = 0x0080_006f; // j +8
        let insts = [(crate::fastop::lower(decode(jal)), jal)];
        let code = super::assemble(&layout, &info, &insts, &mut Vec::new(), 0)
            .unwrap()
            .code;
        // cmp dword [rbx + disp32], 0 (empty); jne rel32; jmp rel32
        let slots: Vec<usize> = (super::LINK_CHECK + 6..code.len() - 5)
            .filter(|&j| {
                code[j] == super::LINK_JUMP
                    && code[j - 6..j - 4] == [0x0f, 0x85]
                    && code[j - super::LINK_CHECK..j - 6] == [0; 4]
                    && code[j - super::LINK_CHECK - 6..j - super::LINK_CHECK - 4] == [0x81, 0xbb]
            })
            .collect();
        assert_eq!(slots.len(), 1, "one link slot in {code:02x?}");
    }

    /// Inline AMOs (each operation, word and doubleword, aligned or not,
    /// with an LR reservation active or not) leave what the executor does.
    #[test]
    fn inline_amos_match_the_interpreter() {
        let amo = |funct5: u32, double: bool, rd: u32, rs1: u32, rs2: u32| {
            funct5 << 27 | rs2 << 20 | rs1 << 15 | (2 + u32::from(double)) << 12 | rd << 7 | 0x2f
        };
        let mut pair = Pair::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        // add, swap, xor, or, and, min (the last through the executor)
        for funct5 in [0x00, 0x01, 0x04, 0x08, 0x0c, 0x10] {
            for double in [false, true] {
                for misalign in [0, 2, 4] {
                    let mut image = vec![0u8; RAM];
                    image[..4].copy_from_slice(&0x0000_006fu32.to_le_bytes()); // j .
                    for b in &mut image[(DATA - BASE) as usize..(DATA - BASE + DATA_LEN) as usize] {
                        *b = next(&mut seed) as u8;
                    }
                    let code = [
                        amo(funct5, double, 10, 12, 11), // amo a0, a1, (a2)
                        amo(funct5, double, 0, 12, 11),  // amo x0, a1, (a2)
                        amo(funct5, double, 13, 12, 10), // amo a3, a0, (a2)
                        0x1007_b72f,                     // lr.d a4, (a5)
                        amo(funct5, double, 16, 12, 11), // amo a6, a1, (a2): reserved
                        0xb020_28f3,                     // csrr a7, minstret
                        0x0000_006f,                     // j .
                    ];
                    for (k, w) in code.iter().enumerate() {
                        let at = (CODE - BASE) as usize + 4 * k;
                        image[at..at + 4].copy_from_slice(&w.to_le_bytes());
                    }
                    let mut regs = [0u64; 32];
                    regs[11] = 0x8000_0001_ffff_fff3;
                    regs[12] = DATA + 0x100 + misalign;
                    regs[15] = DATA + 0x200;
                    let fregs = [0u64; 32];
                    let want = pair.run(false, &image, &regs, &fregs, 20);
                    assert_eq!(
                        pair.run(true, &image, &regs, &fregs, 20),
                        want,
                        "funct5 {funct5:#x} double {double} misalign {misalign}"
                    );
                }
            }
        }
        assert!(pair.jit.jit_blocks() >= 12, "each program compiled");
    }
}
