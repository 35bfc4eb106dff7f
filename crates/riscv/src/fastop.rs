//! Decoded instructions lowered to a flat operation set for the block runner.
//!
//! [`Instruction`] nests the ALU operation, load width and branch condition
//! inside its variants, so executing `addi` costs two dispatches (variant,
//! then operation). The hottest forms get their own [`Op`] variant here, one
//! dispatch each; everything else keeps its [`Instruction`] and goes through
//! the general executor. Both paths give exactly the same results.

use crate::Mmio;
use crate::decode::{AluOp, BranchOp, Instruction, LoadOp};
use crate::hart::{Flow, Hart};
use crate::trap::Trap;

/// One operation of a decoded block.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    Addi {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Addiw {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Andi {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Ori {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Xori {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Slli {
        rd: u8,
        rs1: u8,
        sh: u8,
    },
    Srli {
        rd: u8,
        rs1: u8,
        sh: u8,
    },
    Srai {
        rd: u8,
        rs1: u8,
        sh: u8,
    },
    Add {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Sub {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    And {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Or {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Xor {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Sltu {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Addw {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Lui {
        rd: u8,
        imm: i32,
    },
    Auipc {
        rd: u8,
        imm: i32,
    },
    Ld {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Lw {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Lwu {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Lbu {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Sd {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    Sw {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    Sb {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    Beq {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    Bne {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    Blt {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    Bge {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    Bltu {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    Bgeu {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    Jal {
        rd: u8,
        imm: i32,
    },
    Jalr {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Sltiu {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Slliw {
        rd: u8,
        rs1: u8,
        sh: u8,
    },
    Srliw {
        rd: u8,
        rs1: u8,
        sh: u8,
    },
    Sraiw {
        rd: u8,
        rs1: u8,
        sh: u8,
    },
    Subw {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Lhu {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Sh {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    /// Everything else: the general executor.
    Other(Instruction),
}

/// Lower a decoded instruction to its block operation.
pub(crate) fn lower(inst: Instruction) -> Op {
    use Instruction as I;
    match inst {
        I::OpImm { op, rd, rs1, imm } => match op {
            AluOp::Add => Op::Addi { rd, rs1, imm },
            AluOp::And => Op::Andi { rd, rs1, imm },
            AluOp::Or => Op::Ori { rd, rs1, imm },
            AluOp::Xor => Op::Xori { rd, rs1, imm },
            AluOp::Sltu => Op::Sltiu { rd, rs1, imm },
            AluOp::Sll => Op::Slli {
                rd,
                rs1,
                sh: (imm & 63) as u8,
            },
            AluOp::Srl => Op::Srli {
                rd,
                rs1,
                sh: (imm & 63) as u8,
            },
            AluOp::Sra => Op::Srai {
                rd,
                rs1,
                sh: (imm & 63) as u8,
            },
            _ => Op::Other(inst),
        },
        I::OpImm32 { op, rd, rs1, imm } => match op {
            AluOp::Add => Op::Addiw { rd, rs1, imm },
            AluOp::Sll => Op::Slliw {
                rd,
                rs1,
                sh: (imm & 31) as u8,
            },
            AluOp::Srl => Op::Srliw {
                rd,
                rs1,
                sh: (imm & 31) as u8,
            },
            AluOp::Sra => Op::Sraiw {
                rd,
                rs1,
                sh: (imm & 31) as u8,
            },
            _ => Op::Other(inst),
        },
        I::Op { op, rd, rs1, rs2 } => match op {
            AluOp::Add => Op::Add { rd, rs1, rs2 },
            AluOp::Sub => Op::Sub { rd, rs1, rs2 },
            AluOp::And => Op::And { rd, rs1, rs2 },
            AluOp::Or => Op::Or { rd, rs1, rs2 },
            AluOp::Xor => Op::Xor { rd, rs1, rs2 },
            AluOp::Sltu => Op::Sltu { rd, rs1, rs2 },
            _ => Op::Other(inst),
        },
        I::Op32 { op, rd, rs1, rs2 } => match op {
            AluOp::Add => Op::Addw { rd, rs1, rs2 },
            AluOp::Sub => Op::Subw { rd, rs1, rs2 },
            _ => Op::Other(inst),
        },
        I::Lui { rd, imm } => Op::Lui { rd, imm },
        I::Auipc { rd, imm } => Op::Auipc { rd, imm },
        I::Load { op, rd, rs1, imm } => match op {
            LoadOp::D => Op::Ld { rd, rs1, imm },
            LoadOp::W => Op::Lw { rd, rs1, imm },
            LoadOp::Wu => Op::Lwu { rd, rs1, imm },
            LoadOp::Bu => Op::Lbu { rd, rs1, imm },
            LoadOp::Hu => Op::Lhu { rd, rs1, imm },
            _ => Op::Other(inst),
        },
        I::Store {
            size,
            rs1,
            rs2,
            imm,
        } => match size {
            8 => Op::Sd { rs1, rs2, imm },
            4 => Op::Sw { rs1, rs2, imm },
            2 => Op::Sh { rs1, rs2, imm },
            1 => Op::Sb { rs1, rs2, imm },
            _ => Op::Other(inst),
        },
        I::Branch { op, rs1, rs2, imm } => match op {
            BranchOp::Eq => Op::Beq { rs1, rs2, imm },
            BranchOp::Ne => Op::Bne { rs1, rs2, imm },
            BranchOp::Lt => Op::Blt { rs1, rs2, imm },
            BranchOp::Ge => Op::Bge { rs1, rs2, imm },
            BranchOp::Ltu => Op::Bltu { rs1, rs2, imm },
            BranchOp::Geu => Op::Bgeu { rs1, rs2, imm },
        },
        I::Jal { rd, imm } => Op::Jal { rd, imm },
        I::Jalr { rd, rs1, imm } => Op::Jalr { rd, rs1, imm },
        _ => Op::Other(inst),
    }
}

impl Hart {
    /// Execute one block operation (of `len` bytes at pc, raw bits `raw`):
    /// the same effect as [`Hart::execute`] on the instruction it was lowered from.
    #[inline(always)]
    pub(crate) fn exec_op(
        &mut self,
        op: Op,
        len: u64,
        raw: u32,
        mmio: &mut dyn Mmio,
    ) -> Result<Flow, Trap> {
        let pc = self.pc;
        let next = pc.wrapping_add(len);
        let sx = |imm: i32| imm as i64 as u64;
        match op {
            Op::Addi { rd, rs1, imm } => self.w(rd, self.r(rs1).wrapping_add(sx(imm))),
            Op::Addiw { rd, rs1, imm } => self.w(
                rd,
                (self.r(rs1) as u32).wrapping_add(imm as u32) as i32 as i64 as u64,
            ),
            Op::Andi { rd, rs1, imm } => self.w(rd, self.r(rs1) & sx(imm)),
            Op::Ori { rd, rs1, imm } => self.w(rd, self.r(rs1) | sx(imm)),
            Op::Xori { rd, rs1, imm } => self.w(rd, self.r(rs1) ^ sx(imm)),
            Op::Slli { rd, rs1, sh } => self.w(rd, self.r(rs1) << (sh & 63)),
            Op::Srli { rd, rs1, sh } => self.w(rd, self.r(rs1) >> (sh & 63)),
            Op::Srai { rd, rs1, sh } => self.w(rd, ((self.r(rs1) as i64) >> (sh & 63)) as u64),
            Op::Sltiu { rd, rs1, imm } => self.w(rd, (self.r(rs1) < sx(imm)) as u64),
            Op::Slliw { rd, rs1, sh } => {
                self.w(rd, ((self.r(rs1) as u32) << (sh & 31)) as i32 as i64 as u64)
            }
            Op::Srliw { rd, rs1, sh } => {
                self.w(rd, ((self.r(rs1) as u32) >> (sh & 31)) as i32 as i64 as u64)
            }
            Op::Sraiw { rd, rs1, sh } => {
                self.w(rd, ((self.r(rs1) as i32) >> (sh & 31)) as i64 as u64)
            }
            Op::Add { rd, rs1, rs2 } => self.w(rd, self.r(rs1).wrapping_add(self.r(rs2))),
            Op::Sub { rd, rs1, rs2 } => self.w(rd, self.r(rs1).wrapping_sub(self.r(rs2))),
            Op::And { rd, rs1, rs2 } => self.w(rd, self.r(rs1) & self.r(rs2)),
            Op::Or { rd, rs1, rs2 } => self.w(rd, self.r(rs1) | self.r(rs2)),
            Op::Xor { rd, rs1, rs2 } => self.w(rd, self.r(rs1) ^ self.r(rs2)),
            Op::Sltu { rd, rs1, rs2 } => self.w(rd, (self.r(rs1) < self.r(rs2)) as u64),
            Op::Addw { rd, rs1, rs2 } => self.w(
                rd,
                (self.r(rs1) as u32).wrapping_add(self.r(rs2) as u32) as i32 as i64 as u64,
            ),
            Op::Subw { rd, rs1, rs2 } => self.w(
                rd,
                (self.r(rs1) as u32).wrapping_sub(self.r(rs2) as u32) as i32 as i64 as u64,
            ),
            Op::Lui { rd, imm } => self.w(rd, sx(imm)),
            Op::Auipc { rd, imm } => self.w(rd, pc.wrapping_add(sx(imm))),
            Op::Ld { rd, rs1, imm } => {
                let v = self.load(mmio, self.r(rs1).wrapping_add(sx(imm)), 8)?;
                self.w(rd, v);
            }
            Op::Lw { rd, rs1, imm } => {
                let v = self.load(mmio, self.r(rs1).wrapping_add(sx(imm)), 4)?;
                self.w(rd, v as i32 as i64 as u64);
            }
            Op::Lwu { rd, rs1, imm } => {
                let v = self.load(mmio, self.r(rs1).wrapping_add(sx(imm)), 4)?;
                self.w(rd, v);
            }
            Op::Lbu { rd, rs1, imm } => {
                let v = self.load(mmio, self.r(rs1).wrapping_add(sx(imm)), 1)?;
                self.w(rd, v);
            }
            Op::Lhu { rd, rs1, imm } => {
                let v = self.load(mmio, self.r(rs1).wrapping_add(sx(imm)), 2)?;
                self.w(rd, v);
            }
            Op::Sh { rs1, rs2, imm } => {
                self.store(mmio, self.r(rs1).wrapping_add(sx(imm)), 2, self.r(rs2))?
            }
            Op::Sd { rs1, rs2, imm } => {
                self.store(mmio, self.r(rs1).wrapping_add(sx(imm)), 8, self.r(rs2))?
            }
            Op::Sw { rs1, rs2, imm } => {
                self.store(mmio, self.r(rs1).wrapping_add(sx(imm)), 4, self.r(rs2))?
            }
            Op::Sb { rs1, rs2, imm } => {
                self.store(mmio, self.r(rs1).wrapping_add(sx(imm)), 1, self.r(rs2))?
            }
            Op::Beq { rs1, rs2, imm } => {
                return Ok(self.branch(self.r(rs1) == self.r(rs2), pc, imm, next));
            }
            Op::Bne { rs1, rs2, imm } => {
                return Ok(self.branch(self.r(rs1) != self.r(rs2), pc, imm, next));
            }
            Op::Blt { rs1, rs2, imm } => {
                return Ok(self.branch((self.r(rs1) as i64) < (self.r(rs2) as i64), pc, imm, next));
            }
            Op::Bge { rs1, rs2, imm } => {
                return Ok(self.branch(
                    (self.r(rs1) as i64) >= (self.r(rs2) as i64),
                    pc,
                    imm,
                    next,
                ));
            }
            Op::Bltu { rs1, rs2, imm } => {
                return Ok(self.branch(self.r(rs1) < self.r(rs2), pc, imm, next));
            }
            Op::Bgeu { rs1, rs2, imm } => {
                return Ok(self.branch(self.r(rs1) >= self.r(rs2), pc, imm, next));
            }
            Op::Jal { rd, imm } => {
                self.w(rd, next);
                self.pc = pc.wrapping_add(sx(imm));
                return Ok(Flow::Next);
            }
            Op::Jalr { rd, rs1, imm } => {
                let t = self.r(rs1).wrapping_add(sx(imm)) & !1;
                self.w(rd, next);
                self.pc = t;
                return Ok(Flow::Next);
            }
            Op::Other(inst) => return self.execute_other(inst, len, raw, mmio),
        }
        self.pc = next;
        Ok(Flow::Next)
    }

    /// A conditional branch: pc moves to the target if `taken`, else to `next`.
    #[inline(always)]
    fn branch(&mut self, taken: bool, pc: u64, imm: i32, next: u64) -> Flow {
        self.pc = if taken {
            pc.wrapping_add(imm as i64 as u64)
        } else {
            next
        };
        Flow::Next
    }

    /// The general executor, kept out of line so the hot loop stays small.
    #[inline(never)]
    fn execute_other(
        &mut self,
        inst: Instruction,
        len: u64,
        raw: u32,
        mmio: &mut dyn Mmio,
    ) -> Result<Flow, Trap> {
        self.cur_raw = raw;
        self.execute(inst, len, mmio)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, decode_compressed};
    use crate::{Clock, HartConfig, HartIrq, NoMmio, Ram};
    use vessel_machine::create_guest_memory;

    const BASE: u64 = 0x8000_0000;

    fn hart(ram: &Ram) -> Hart {
        Hart::new(
            HartConfig::default(),
            ram.clone(),
            Clock::new(10_000_000),
            HartIrq::new(),
        )
    }

    /// xorshift64: a fixed pseudo-random sequence, so failures reproduce.
    fn next(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    /// Every instruction with its own operation gives exactly what the general
    /// executor gives: registers, pc, memory and traps, on random encodings
    /// and register values (half of them pointing into RAM so loads and
    /// stores hit, the rest faulting).
    #[test]
    fn lowered_ops_match_the_general_executor() {
        let mem_a = create_guest_memory(&[(BASE, 1 << 16)]).unwrap();
        let mem_b = create_guest_memory(&[(BASE, 1 << 16)]).unwrap();
        let (ram_a, ram_b) = (Ram::new(&mem_a).unwrap(), Ram::new(&mem_b).unwrap());
        let (mut a, mut b) = (hart(&ram_a), hart(&ram_b));
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut lowered = 0;
        for round in 0..200_000u32 {
            let raw = next(&mut seed) as u32;
            let (inst, len) = if round % 2 == 0 {
                (decode(raw | 3), 4)
            } else {
                (decode_compressed(raw as u16), 2)
            };
            if raw as u16 & 3 == 3 && len == 2 {
                continue;
            }
            let op = lower(inst);
            if matches!(op, Op::Other(_)) {
                continue;
            }
            lowered += 1;
            let pc = BASE + (next(&mut seed) & 0xfffe);
            for i in 1..32 {
                let v = next(&mut seed);
                let v = if v & 1 == 0 {
                    BASE + (v >> 1) % (1 << 16)
                } else {
                    v
                };
                a.set_reg(i, v);
                b.set_reg(i, v);
            }
            a.set_pc(pc);
            b.set_pc(pc);
            let ra = a.execute(inst, len, &mut NoMmio);
            let rb = b.exec_op(op, len, raw, &mut NoMmio);
            assert_eq!(ra, rb, "{inst}: result");
            assert_eq!(a.pc(), b.pc(), "{inst}: pc");
            for i in 0..32 {
                assert_eq!(a.reg(i), b.reg(i), "{inst}: x{i}");
            }
            if !matches!(
                op,
                Op::Sd { .. } | Op::Sw { .. } | Op::Sh { .. } | Op::Sb { .. }
            ) {
                continue;
            }
            let (mut ma, mut mb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
            ram_a.read_bytes(BASE, &mut ma).unwrap();
            ram_b.read_bytes(BASE, &mut mb).unwrap();
            assert!(ma == mb, "{inst}: memory");
        }
        assert!(
            lowered > 10_000,
            "only {lowered} lowered instructions tried"
        );
    }
}
