//! The executor: one instruction's effect on the hart.

use crate::Mmio;
use crate::csr::{addr as csra, ms};
use crate::decode::{AluOp, AmoOp, BranchOp, CsrOp, FpOp, Instruction, LoadOp};
use crate::fpu::{self, CANONICAL_NAN_32, FpResult};
use crate::hart::{Flow, Hart};
use crate::mmu::Access;
use crate::trap::{Trap, cause};

#[inline(always)]
fn alu(op: AluOp, a: u64, b: u64) -> u64 {
    match op {
        AluOp::Add => a.wrapping_add(b),
        AluOp::Sub => a.wrapping_sub(b),
        AluOp::Sll => a << (b & 63),
        AluOp::Slt => ((a as i64) < (b as i64)) as u64,
        AluOp::Sltu => (a < b) as u64,
        AluOp::Xor => a ^ b,
        AluOp::Srl => a >> (b & 63),
        AluOp::Sra => ((a as i64) >> (b & 63)) as u64,
        AluOp::Or => a | b,
        AluOp::And => a & b,
        AluOp::Mul => a.wrapping_mul(b),
        AluOp::Mulh => ((a as i64 as i128 * b as i64 as i128) >> 64) as u64,
        AluOp::Mulhsu => ((a as i64 as i128).wrapping_mul(b as i128) >> 64) as u64,
        AluOp::Mulhu => ((a as u128 * b as u128) >> 64) as u64,
        AluOp::Div => {
            if b == 0 {
                u64::MAX
            } else {
                (a as i64).wrapping_div(b as i64) as u64
            }
        }
        AluOp::Divu => a.checked_div(b).unwrap_or(u64::MAX),
        AluOp::Rem => {
            if b == 0 {
                a
            } else {
                (a as i64).wrapping_rem(b as i64) as u64
            }
        }
        AluOp::Remu => {
            if b == 0 {
                a
            } else {
                a % b
            }
        }
        AluOp::Sh1add => (a << 1).wrapping_add(b),
        AluOp::Sh2add => (a << 2).wrapping_add(b),
        AluOp::Sh3add => (a << 3).wrapping_add(b),
        AluOp::AddUw => (a as u32 as u64).wrapping_add(b),
        AluOp::Sh1addUw => ((a as u32 as u64) << 1).wrapping_add(b),
        AluOp::Sh2addUw => ((a as u32 as u64) << 2).wrapping_add(b),
        AluOp::Sh3addUw => ((a as u32 as u64) << 3).wrapping_add(b),
        AluOp::SllUw => (a as u32 as u64) << (b & 63),
        AluOp::Andn => a & !b,
        AluOp::Orn => a | !b,
        AluOp::Xnor => !(a ^ b),
        AluOp::Clz => a.leading_zeros() as u64,
        AluOp::Ctz => a.trailing_zeros() as u64,
        AluOp::Cpop => a.count_ones() as u64,
        AluOp::Max => (a as i64).max(b as i64) as u64,
        AluOp::Maxu => a.max(b),
        AluOp::Min => (a as i64).min(b as i64) as u64,
        AluOp::Minu => a.min(b),
        AluOp::SextB => a as i8 as i64 as u64,
        AluOp::SextH => a as i16 as i64 as u64,
        AluOp::ZextH => a & 0xffff,
        AluOp::Rol => a.rotate_left((b & 63) as u32),
        AluOp::Ror => a.rotate_right((b & 63) as u32),
        AluOp::OrcB => {
            let mut r = 0u64;
            for i in 0..8 {
                if (a >> (8 * i)) & 0xff != 0 {
                    r |= 0xff << (8 * i);
                }
            }
            r
        }
        AluOp::Rev8 => a.swap_bytes(),
        AluOp::Bclr => a & !(1 << (b & 63)),
        AluOp::Bext => (a >> (b & 63)) & 1,
        AluOp::Binv => a ^ (1 << (b & 63)),
        AluOp::Bset => a | (1 << (b & 63)),
    }
}

#[inline(always)]
fn alu32(op: AluOp, a: u64, b: u64) -> u64 {
    // Zba's .uw forms and zext.h produce 64-bit results.
    if matches!(
        op,
        AluOp::AddUw
            | AluOp::Sh1addUw
            | AluOp::Sh2addUw
            | AluOp::Sh3addUw
            | AluOp::SllUw
            | AluOp::ZextH
    ) {
        return alu(op, a, b);
    }
    let (x, y) = (a as u32, b as u32);
    let r: u32 = match op {
        AluOp::Add => x.wrapping_add(y),
        AluOp::Sub => x.wrapping_sub(y),
        AluOp::Sll => x << (y & 31),
        AluOp::Srl => x >> (y & 31),
        AluOp::Sra => ((x as i32) >> (y & 31)) as u32,
        AluOp::Mul => x.wrapping_mul(y),
        AluOp::Div => {
            if y == 0 {
                u32::MAX
            } else {
                (x as i32).wrapping_div(y as i32) as u32
            }
        }
        AluOp::Divu => x.checked_div(y).unwrap_or(u32::MAX),
        AluOp::Rem => {
            if y == 0 {
                x
            } else {
                (x as i32).wrapping_rem(y as i32) as u32
            }
        }
        AluOp::Remu => {
            if y == 0 {
                x
            } else {
                x % y
            }
        }
        AluOp::Clz => x.leading_zeros(),
        AluOp::Ctz => x.trailing_zeros(),
        AluOp::Cpop => x.count_ones(),
        AluOp::Rol => x.rotate_left(y & 31),
        AluOp::Ror => x.rotate_right(y & 31),
        // Not produced by the decoder for the 32-bit forms.
        _ => alu(op, a, b) as u32,
    };
    r as i32 as i64 as u64
}

fn amo(op: AmoOp, double: bool, old: u64, src: u64) -> u64 {
    if double {
        match op {
            AmoOp::Swap => src,
            AmoOp::Add => old.wrapping_add(src),
            AmoOp::Xor => old ^ src,
            AmoOp::And => old & src,
            AmoOp::Or => old | src,
            AmoOp::Min => (old as i64).min(src as i64) as u64,
            AmoOp::Max => (old as i64).max(src as i64) as u64,
            AmoOp::Minu => old.min(src),
            AmoOp::Maxu => old.max(src),
        }
    } else {
        let (o, s) = (old as u32, src as u32);
        (match op {
            AmoOp::Swap => s,
            AmoOp::Add => o.wrapping_add(s),
            AmoOp::Xor => o ^ s,
            AmoOp::And => o & s,
            AmoOp::Or => o | s,
            AmoOp::Min => (o as i32).min(s as i32) as u32,
            AmoOp::Max => (o as i32).max(s as i32) as u32,
            AmoOp::Minu => o.min(s),
            AmoOp::Maxu => o.max(s),
        }) as u64
    }
}

fn sext32(v: u64) -> u64 {
    v as u32 as i32 as i64 as u64
}

impl Hart {
    #[inline(always)]
    pub(crate) fn r(&self, i: u8) -> u64 {
        self.x[(i & 31) as usize]
    }

    #[inline(always)]
    pub(crate) fn w(&mut self, i: u8, v: u64) {
        if i != 0 {
            self.x[(i & 31) as usize] = v;
        }
    }

    fn illegal(&self) -> Trap {
        Trap::new(cause::ILLEGAL_INSTRUCTION, self.cur_raw as u64)
    }

    /// A float operand: doubles as is, singles unboxed (bad boxing = canonical NaN).
    #[inline(always)]
    fn fr(&self, i: u8, double: bool) -> u64 {
        let v = self.f[(i & 31) as usize];
        if double {
            v
        } else if v >> 32 == 0xffff_ffff {
            v & 0xffff_ffff
        } else {
            CANONICAL_NAN_32
        }
    }

    /// Write a float register (singles NaN-boxed) and mark FS dirty.
    #[inline(always)]
    fn fw(&mut self, i: u8, v: u64, double: bool) {
        self.f[(i & 31) as usize] = if double {
            v
        } else {
            0xffff_ffff_0000_0000 | (v & 0xffff_ffff)
        };
        self.csr.mstatus |= ms::FS_DIRTY;
    }

    #[inline(always)]
    fn fp_enabled(&self) -> Result<(), Trap> {
        if self.csr.mstatus & ms::FS == 0 {
            Err(self.illegal())
        } else {
            Ok(())
        }
    }

    /// Resolve a rounding mode: 7 = dynamic (frm); 5, 6 and bad frm are illegal.
    fn rounding(&self, rm: u8) -> Result<u8, Trap> {
        let r = if rm == 7 { self.csr.frm } else { rm };
        if r > 4 { Err(self.illegal()) } else { Ok(r) }
    }

    fn raise_flags(&mut self, fl: u8) {
        if fl != 0 {
            self.csr.fflags |= fl;
            self.csr.mstatus |= ms::FS_DIRTY;
        }
    }

    /// Execute `inst` (of `len` bytes at pc). On a trap nothing has changed.
    #[inline(always)]
    pub(crate) fn execute(
        &mut self,
        inst: Instruction,
        len: u64,
        mmio: &mut dyn Mmio,
    ) -> Result<Flow, Trap> {
        use Instruction as I;
        let pc = self.pc;
        let next = pc.wrapping_add(len);
        match inst {
            I::Lui { rd, imm } => self.w(rd, imm as i64 as u64),
            I::Auipc { rd, imm } => self.w(rd, pc.wrapping_add(imm as i64 as u64)),
            I::Jal { rd, imm } => {
                self.w(rd, next);
                self.pc = pc.wrapping_add(imm as i64 as u64);
                return Ok(Flow::Next);
            }
            I::Jalr { rd, rs1, imm } => {
                let t = self.r(rs1).wrapping_add(imm as i64 as u64) & !1;
                self.w(rd, next);
                self.pc = t;
                return Ok(Flow::Next);
            }
            I::Branch { op, rs1, rs2, imm } => {
                let (a, b) = (self.r(rs1), self.r(rs2));
                let taken = match op {
                    BranchOp::Eq => a == b,
                    BranchOp::Ne => a != b,
                    BranchOp::Lt => (a as i64) < (b as i64),
                    BranchOp::Ge => (a as i64) >= (b as i64),
                    BranchOp::Ltu => a < b,
                    BranchOp::Geu => a >= b,
                };
                self.pc = if taken {
                    pc.wrapping_add(imm as i64 as u64)
                } else {
                    next
                };
                return Ok(Flow::Next);
            }
            I::Load { op, rd, rs1, imm } => {
                let a = self.r(rs1).wrapping_add(imm as i64 as u64);
                // One arm per width so each inlined fast path has a constant size.
                let v = match op {
                    LoadOp::B => self.load(mmio, a, 1)? as i8 as i64 as u64,
                    LoadOp::Bu => self.load(mmio, a, 1)?,
                    LoadOp::H => self.load(mmio, a, 2)? as i16 as i64 as u64,
                    LoadOp::Hu => self.load(mmio, a, 2)?,
                    LoadOp::W => self.load(mmio, a, 4)? as i32 as i64 as u64,
                    LoadOp::Wu => self.load(mmio, a, 4)?,
                    LoadOp::D => self.load(mmio, a, 8)?,
                };
                self.w(rd, v);
            }
            I::Store {
                size,
                rs1,
                rs2,
                imm,
            } => {
                let a = self.r(rs1).wrapping_add(imm as i64 as u64);
                let v = self.r(rs2);
                match size {
                    1 => self.store(mmio, a, 1, v)?,
                    2 => self.store(mmio, a, 2, v)?,
                    4 => self.store(mmio, a, 4, v)?,
                    _ => self.store(mmio, a, 8, v)?,
                }
            }
            I::OpImm { op, rd, rs1, imm } => self.w(rd, alu(op, self.r(rs1), imm as i64 as u64)),
            I::OpImm32 { op, rd, rs1, imm } => {
                self.w(rd, alu32(op, self.r(rs1), imm as i64 as u64))
            }
            I::Op { op, rd, rs1, rs2 } => self.w(rd, alu(op, self.r(rs1), self.r(rs2))),
            I::Op32 { op, rd, rs1, rs2 } => self.w(rd, alu32(op, self.r(rs1), self.r(rs2))),
            // Other harts run on this thread, between blocks; device
            // threads see guest memory, and x86 lets a load pass an
            // earlier store only without this.
            I::Fence { store_load } => {
                if store_load {
                    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
                }
            }
            I::FenceI => self.code_changed(),
            I::Ecall => {
                let c = match self.prv {
                    0 => cause::ECALL_U,
                    1 => cause::ECALL_U + 1,
                    _ => cause::ECALL_U + 3,
                };
                return Err(Trap::new(c, 0));
            }
            I::Ebreak => return Err(Trap::new(cause::BREAKPOINT, pc)),
            I::Mret => {
                if self.prv != 3 {
                    return Err(self.illegal());
                }
                self.do_mret();
                return Ok(Flow::CheckIrq);
            }
            I::Sret => {
                if self.prv == 0 || (self.prv == 1 && self.csr.mstatus & ms::TSR != 0) {
                    return Err(self.illegal());
                }
                self.do_sret();
                return Ok(Flow::CheckIrq);
            }
            I::Wfi => {
                if self.prv == 0 || (self.prv == 1 && self.csr.mstatus & ms::TW != 0) {
                    return Err(self.illegal());
                }
                self.pc = next;
                return Ok(if self.wfi_wakeup() {
                    Flow::CheckIrq
                } else {
                    Flow::Wfi
                });
            }
            I::SfenceVma { .. } => {
                if self.prv == 0 || (self.prv == 1 && self.csr.mstatus & ms::TVM != 0) {
                    return Err(self.illegal());
                }
                self.tlb_flush();
            }
            I::Csr { op, rd, src, csr } => {
                let old = self.csr_read(csr)?;
                let operand = match op {
                    CsrOp::Rw | CsrOp::Rs | CsrOp::Rc => self.r(src),
                    _ => src as u64,
                };
                let write = match op {
                    CsrOp::Rw | CsrOp::Rwi => Some(operand),
                    _ if src == 0 => None,
                    _ => {
                        // Read-modify-write of mip uses the software SEIP bit only.
                        let base = if csr == csra::MIP {
                            (old & !crate::csr::irqbit::SEI)
                                | (self.csr.mip & crate::csr::irqbit::SEI)
                        } else {
                            old
                        };
                        Some(match op {
                            CsrOp::Rs | CsrOp::Rsi => base | operand,
                            _ => base & !operand,
                        })
                    }
                };
                let mstatus_before = self.csr.mstatus;
                if let Some(v) = write {
                    self.csr_write(csr, v)?;
                }
                self.w(rd, old);
                self.pc = next;
                // Only a write that may make an interrupt deliverable needs
                // the run loop to look now: an enable bit turned on in
                // mstatus/sstatus, or any write to the interrupt CSRs, and
                // only if one is deliverable now (later ones are found by
                // the run loop's periodic look). Turning interrupts off, the
                // common case, and turning them back on with none pending
                // (Linux's irq-restore, thousands of times a second) go on
                // without leaving compiled code.
                let irq = write.is_some()
                    && match csr {
                        csra::MSTATUS | csra::SSTATUS => {
                            self.csr.mstatus & !mstatus_before & (ms::MIE | ms::SIE) != 0
                        }
                        csra::MIE
                        | csra::SIE
                        | csra::MIP
                        | csra::SIP
                        | csra::MIDELEG
                        | csra::STIMECMP
                        | csra::MENVCFG => true,
                        _ => false,
                    }
                    && self.pending_interrupt().is_some();
                return Ok(if irq { Flow::CheckIrq } else { Flow::Next });
            }
            I::Lr { rd, rs1, double } => {
                let a = self.r(rs1);
                let size = if double { 8 } else { 4 };
                if a & (size as u64 - 1) != 0 {
                    return Err(Trap::new(cause::LOAD_MISALIGNED, a));
                }
                let pa = self.data_paddr(a, Access::Load)?;
                let v = self.load(mmio, a, size)?;
                self.ram.reserve(self.config.hart_id, pa);
                self.w(rd, if double { v } else { sext32(v) });
            }
            I::Sc {
                rd,
                rs1,
                rs2,
                double,
            } => {
                let a = self.r(rs1);
                let size = if double { 8 } else { 4 };
                if a & (size as u64 - 1) != 0 {
                    return Err(Trap::new(cause::STORE_MISALIGNED, a));
                }
                let pa = self.data_paddr(a, Access::Store)?;
                if self.ram.take_reservation(self.config.hart_id, pa) {
                    self.store(mmio, a, size, self.r(rs2))?;
                    self.w(rd, 0);
                } else {
                    self.w(rd, 1);
                }
            }
            I::Amo {
                op,
                rd,
                rs1,
                rs2,
                double,
            } => {
                let a = self.r(rs1);
                let size = if double { 8 } else { 4 };
                if a & (size as u64 - 1) != 0 {
                    return Err(Trap::new(cause::STORE_MISALIGNED, a));
                }
                self.data_paddr(a, Access::Store)?;
                let old = self.load(mmio, a, size)?;
                let new = amo(op, double, old, self.r(rs2));
                self.store(mmio, a, size, new)?;
                self.w(rd, if double { old } else { sext32(old) });
            }
            I::FLoad {
                rd,
                rs1,
                imm,
                double,
            } => {
                self.fp_enabled()?;
                let a = self.r(rs1).wrapping_add(imm as i64 as u64);
                let v = self.load(mmio, a, if double { 8 } else { 4 })?;
                self.fw(rd, v, double);
            }
            I::FStore {
                rs1,
                rs2,
                imm,
                double,
            } => {
                self.fp_enabled()?;
                let a = self.r(rs1).wrapping_add(imm as i64 as u64);
                let v = self.f[(rs2 & 31) as usize];
                self.store(mmio, a, if double { 8 } else { 4 }, v)?;
            }
            I::Fma {
                op,
                rd,
                rs1,
                rs2,
                rs3,
                rm,
                double,
            } => {
                self.fp_enabled()?;
                let rm = self.rounding(rm)?;
                let (a, b, c) = (
                    self.fr(rs1, double),
                    self.fr(rs2, double),
                    self.fr(rs3, double),
                );
                let (r, fl) = fpu::fma(op, double, a, b, c, rm);
                self.fw(rd, r, double);
                self.raise_flags(fl);
            }
            I::Fp {
                op,
                rd,
                rs1,
                rs2,
                rm,
                double,
            } => self.exec_fp(op, rd, rs1, rs2, rm, double)?,
            I::Illegal { raw } => return Err(Trap::new(cause::ILLEGAL_INSTRUCTION, raw as u64)),
        }
        self.pc = next;
        Ok(Flow::Next)
    }

    fn exec_fp(
        &mut self,
        op: FpOp,
        rd: u8,
        rs1: u8,
        rs2: u8,
        rm: u8,
        double: bool,
    ) -> Result<(), Trap> {
        self.fp_enabled()?;
        let uses_rm = matches!(
            op,
            FpOp::Add
                | FpOp::Sub
                | FpOp::Mul
                | FpOp::Div
                | FpOp::Sqrt
                | FpOp::CvtW
                | FpOp::CvtWu
                | FpOp::CvtL
                | FpOp::CvtLu
                | FpOp::CvtFromW
                | FpOp::CvtFromWu
                | FpOp::CvtFromL
                | FpOp::CvtFromLu
                | FpOp::CvtFmt
        );
        let rm = if uses_rm { self.rounding(rm)? } else { 0 };
        let a = match op {
            FpOp::CvtFromW | FpOp::CvtFromWu | FpOp::CvtFromL | FpOp::CvtFromLu | FpOp::MvFromX => {
                self.r(rs1)
            }
            FpOp::MvToX => self.f[(rs1 & 31) as usize],
            // fcvt.d.s reads a single, fcvt.s.d a double.
            FpOp::CvtFmt => self.fr(rs1, !double),
            _ => self.fr(rs1, double),
        };
        let b = self.fr(rs2, double);
        let (res, fl) = fpu::op(op, double, a, b, rm);
        match res {
            FpResult::Float(v) => self.fw(rd, v, double),
            FpResult::Int(v) => self.w(rd, v),
        }
        self.raise_flags(fl);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn division_corner_cases() {
        assert_eq!(alu(AluOp::Div, 7, 0), u64::MAX);
        assert_eq!(alu(AluOp::Rem, 7, 0), 7);
        assert_eq!(alu(AluOp::Div, i64::MIN as u64, u64::MAX), i64::MIN as u64);
        assert_eq!(alu(AluOp::Rem, i64::MIN as u64, u64::MAX), 0);
        assert_eq!(
            alu32(AluOp::Div, i32::MIN as u64, u64::MAX),
            i32::MIN as i64 as u64
        );
        assert_eq!(alu32(AluOp::Divu, 5, 0), u64::MAX);
        assert_eq!(alu32(AluOp::Remu, 0x8000_0005, 0), 0xffff_ffff_8000_0005);
    }

    #[test]
    fn multiply_high() {
        assert_eq!(alu(AluOp::Mulh, u64::MAX, u64::MAX), 0);
        assert_eq!(alu(AluOp::Mulhu, u64::MAX, u64::MAX), u64::MAX - 1);
        assert_eq!(alu(AluOp::Mulhsu, u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(alu(AluOp::Mulh, i64::MIN as u64, i64::MIN as u64), 1 << 62);
    }

    #[test]
    fn amo_word_ops() {
        assert_eq!(amo(AmoOp::Min, false, 0xffff_ffff, 1), 0xffff_ffff);
        assert_eq!(amo(AmoOp::Minu, false, 0xffff_ffff, 1), 1);
        assert_eq!(amo(AmoOp::Add, false, 0xffff_ffff, 1), 0);
    }
}
