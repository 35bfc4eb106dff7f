//! Instruction decoding: raw bits into a typed [`Instruction`].
//!
//! Both 32-bit and compressed (RVC) encodings decode into the same enum; a
//! compressed instruction becomes its 32-bit expansion. Anything that is not a
//! valid RV64GC encoding decodes to [`Instruction::Illegal`] carrying the raw
//! bits (the value the trap writes to `xtval`). `Display` prints a disassembly.

use std::fmt;

/// Integer ALU operations (OP, OP-IMM, OP-32, OP-IMM-32, and M).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AluOp {
    Add,
    Sub,
    Sll,
    Slt,
    Sltu,
    Xor,
    Srl,
    Sra,
    Or,
    And,
    Mul,
    Mulh,
    Mulhsu,
    Mulhu,
    Div,
    Divu,
    Rem,
    Remu,
    // Zba
    Sh1add,
    Sh2add,
    Sh3add,
    /// add.uw (OP-32 only)
    AddUw,
    Sh1addUw,
    Sh2addUw,
    Sh3addUw,
    /// slli.uw (OP-IMM-32 only)
    SllUw,
    // Zbb
    Andn,
    Orn,
    Xnor,
    Clz,
    Ctz,
    Cpop,
    Max,
    Maxu,
    Min,
    Minu,
    SextB,
    SextH,
    ZextH,
    Rol,
    Ror,
    OrcB,
    Rev8,
    // Zbs
    Bclr,
    Bext,
    Binv,
    Bset,
}

impl AluOp {
    /// Operations with one source register (the immediate field is part of the opcode).
    pub fn is_unary(self) -> bool {
        matches!(
            self,
            AluOp::Clz
                | AluOp::Ctz
                | AluOp::Cpop
                | AluOp::SextB
                | AluOp::SextH
                | AluOp::ZextH
                | AluOp::OrcB
                | AluOp::Rev8
        )
    }
}

/// Conditional branches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BranchOp {
    Eq,
    Ne,
    Lt,
    Ge,
    Ltu,
    Geu,
}

/// Integer loads: width and signedness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadOp {
    B,
    H,
    W,
    D,
    Bu,
    Hu,
    Wu,
}

impl LoadOp {
    /// Access size in bytes.
    pub fn size(self) -> u8 {
        match self {
            LoadOp::B | LoadOp::Bu => 1,
            LoadOp::H | LoadOp::Hu => 2,
            LoadOp::W | LoadOp::Wu => 4,
            LoadOp::D => 8,
        }
    }
}

/// CSR instructions; the `I` forms take a 5-bit immediate instead of rs1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsrOp {
    Rw,
    Rs,
    Rc,
    Rwi,
    Rsi,
    Rci,
}

/// Atomic memory operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmoOp {
    Swap,
    Add,
    Xor,
    And,
    Or,
    Min,
    Max,
    Minu,
    Maxu,
}

/// Fused multiply-add variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FmaOp {
    Madd,
    Msub,
    Nmsub,
    Nmadd,
}

/// Floating-point operations (OP-FP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FpOp {
    Add,
    Sub,
    Mul,
    Div,
    Sqrt,
    SgnJ,
    SgnJn,
    SgnJx,
    Min,
    Max,
    /// fcvt.w.fmt and friends: float to integer.
    CvtW,
    CvtWu,
    CvtL,
    CvtLu,
    /// fcvt.fmt.w and friends: integer to float.
    CvtFromW,
    CvtFromWu,
    CvtFromL,
    CvtFromLu,
    /// fcvt.s.d (fmt S) or fcvt.d.s (fmt D): from the other precision.
    CvtFmt,
    /// fmv.x.w / fmv.x.d
    MvToX,
    /// fmv.w.x / fmv.d.x
    MvFromX,
    Eq,
    Lt,
    Le,
    Class,
}

/// One decoded RV64GC instruction. Immediates are sign-extended.
/// `double` selects D (true) or F (false) for the floating-point forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instruction {
    Lui {
        rd: u8,
        imm: i32,
    },
    Auipc {
        rd: u8,
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
    Branch {
        op: BranchOp,
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    Load {
        op: LoadOp,
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    /// `size` is 1, 2, 4 or 8.
    Store {
        size: u8,
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    OpImm {
        op: AluOp,
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    OpImm32 {
        op: AluOp,
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Op {
        op: AluOp,
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Op32 {
        op: AluOp,
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    /// `store_load`: an earlier store must be visible before a later load
    /// (the predecessor set has W or O, the successor set R or I, and it is
    /// not `fence.tso`): the one ordering an x86 host does not keep by itself.
    Fence {
        store_load: bool,
    },
    FenceI,
    Ecall,
    Ebreak,
    Mret,
    Sret,
    Wfi,
    SfenceVma {
        rs1: u8,
        rs2: u8,
    },
    /// `src` is rs1, or the 5-bit immediate for the `I` forms.
    Csr {
        op: CsrOp,
        rd: u8,
        src: u8,
        csr: u16,
    },
    Lr {
        rd: u8,
        rs1: u8,
        double: bool,
    },
    Sc {
        rd: u8,
        rs1: u8,
        rs2: u8,
        double: bool,
    },
    Amo {
        op: AmoOp,
        rd: u8,
        rs1: u8,
        rs2: u8,
        double: bool,
    },
    FLoad {
        rd: u8,
        rs1: u8,
        imm: i32,
        double: bool,
    },
    FStore {
        rs1: u8,
        rs2: u8,
        imm: i32,
        double: bool,
    },
    Fma {
        op: FmaOp,
        rd: u8,
        rs1: u8,
        rs2: u8,
        rs3: u8,
        rm: u8,
        double: bool,
    },
    Fp {
        op: FpOp,
        rd: u8,
        rs1: u8,
        rs2: u8,
        rm: u8,
        double: bool,
    },
    /// Not a valid encoding: the raw bits (16 or 32) go to `xtval`.
    Illegal {
        raw: u32,
    },
}

#[inline(always)]
fn rd(raw: u32) -> u8 {
    ((raw >> 7) & 31) as u8
}
#[inline(always)]
fn rs1(raw: u32) -> u8 {
    ((raw >> 15) & 31) as u8
}
#[inline(always)]
fn rs2(raw: u32) -> u8 {
    ((raw >> 20) & 31) as u8
}
#[inline(always)]
fn funct3(raw: u32) -> u32 {
    (raw >> 12) & 7
}
#[inline(always)]
fn imm_i(raw: u32) -> i32 {
    (raw as i32) >> 20
}
#[inline(always)]
fn imm_s(raw: u32) -> i32 {
    ((raw as i32) >> 25 << 5) | ((raw >> 7) & 31) as i32
}
#[inline(always)]
fn imm_b(raw: u32) -> i32 {
    ((raw as i32) >> 31 << 12)
        | (((raw >> 7) & 1) << 11) as i32
        | (((raw >> 25) & 0x3f) << 5) as i32
        | (((raw >> 8) & 0xf) << 1) as i32
}
#[inline(always)]
fn imm_j(raw: u32) -> i32 {
    ((raw as i32) >> 31 << 20)
        | (raw & 0xff000) as i32
        | (((raw >> 20) & 1) << 11) as i32
        | (((raw >> 21) & 0x3ff) << 1) as i32
}

/// Length in bytes of the instruction whose low 16 bits are `low`.
#[inline(always)]
pub fn instruction_len(low: u16) -> u8 {
    if low & 3 == 3 { 4 } else { 2 }
}

/// Whether a `fence` (base encoding) orders earlier stores before later
/// loads: predecessor W or O (bits 24, 26), successor R or I (bits 21, 23),
/// and not `fence.tso` (fm = 1000), which leaves exactly that order out.
fn fence_orders_store_load(raw: u32) -> bool {
    let pred = (raw >> 24) & 0xf;
    let succ = (raw >> 20) & 0xf;
    let tso = raw >> 28 == 0b1000;
    !tso && pred & 0b0101 != 0 && succ & 0b1010 != 0
}

/// Decode a 32-bit instruction.
pub fn decode(raw: u32) -> Instruction {
    use Instruction as I;
    let ill = I::Illegal { raw };
    let f3 = funct3(raw);
    let f7 = raw >> 25;
    match raw & 0x7f {
        0x37 => I::Lui {
            rd: rd(raw),
            imm: (raw & 0xffff_f000) as i32,
        },
        0x17 => I::Auipc {
            rd: rd(raw),
            imm: (raw & 0xffff_f000) as i32,
        },
        0x6f => I::Jal {
            rd: rd(raw),
            imm: imm_j(raw),
        },
        0x67 if f3 == 0 => I::Jalr {
            rd: rd(raw),
            rs1: rs1(raw),
            imm: imm_i(raw),
        },
        0x63 => {
            let op = match f3 {
                0 => BranchOp::Eq,
                1 => BranchOp::Ne,
                4 => BranchOp::Lt,
                5 => BranchOp::Ge,
                6 => BranchOp::Ltu,
                7 => BranchOp::Geu,
                _ => return ill,
            };
            I::Branch {
                op,
                rs1: rs1(raw),
                rs2: rs2(raw),
                imm: imm_b(raw),
            }
        }
        0x03 => {
            let op = match f3 {
                0 => LoadOp::B,
                1 => LoadOp::H,
                2 => LoadOp::W,
                3 => LoadOp::D,
                4 => LoadOp::Bu,
                5 => LoadOp::Hu,
                6 => LoadOp::Wu,
                _ => return ill,
            };
            I::Load {
                op,
                rd: rd(raw),
                rs1: rs1(raw),
                imm: imm_i(raw),
            }
        }
        0x23 if f3 < 4 => I::Store {
            size: 1 << f3,
            rs1: rs1(raw),
            rs2: rs2(raw),
            imm: imm_s(raw),
        },
        0x13 => {
            let imm = imm_i(raw);
            let f12 = raw >> 20;
            let f6 = raw >> 26;
            let (op, imm) = match f3 {
                0 => (AluOp::Add, imm),
                1 => match (f6, f12) {
                    (_, 0x600) => (AluOp::Clz, 0),
                    (_, 0x601) => (AluOp::Ctz, 0),
                    (_, 0x602) => (AluOp::Cpop, 0),
                    (_, 0x604) => (AluOp::SextB, 0),
                    (_, 0x605) => (AluOp::SextH, 0),
                    (0, _) => (AluOp::Sll, imm & 63),
                    (0x12, _) => (AluOp::Bclr, imm & 63),
                    (0x1a, _) => (AluOp::Binv, imm & 63),
                    (0x0a, _) => (AluOp::Bset, imm & 63),
                    _ => return ill,
                },
                2 => (AluOp::Slt, imm),
                3 => (AluOp::Sltu, imm),
                4 => (AluOp::Xor, imm),
                5 => match (f6, f12) {
                    (_, 0x287) => (AluOp::OrcB, 0),
                    (_, 0x6b8) => (AluOp::Rev8, 0),
                    (0, _) => (AluOp::Srl, imm & 63),
                    (0x10, _) => (AluOp::Sra, imm & 63),
                    (0x12, _) => (AluOp::Bext, imm & 63),
                    (0x18, _) => (AluOp::Ror, imm & 63),
                    _ => return ill,
                },
                6 => (AluOp::Or, imm),
                7 => (AluOp::And, imm),
                _ => return ill,
            };
            I::OpImm {
                op,
                rd: rd(raw),
                rs1: rs1(raw),
                imm,
            }
        }
        0x1b => {
            let imm = imm_i(raw);
            let (op, imm) = match (f3, f7) {
                (0, _) => (AluOp::Add, imm),
                (1, _) if raw >> 20 == 0x600 => (AluOp::Clz, 0),
                (1, _) if raw >> 20 == 0x601 => (AluOp::Ctz, 0),
                (1, _) if raw >> 20 == 0x602 => (AluOp::Cpop, 0),
                (1, 0) => (AluOp::Sll, imm & 31),
                (1, _) if raw >> 26 == 0x02 => (AluOp::SllUw, imm & 63),
                (5, 0) => (AluOp::Srl, imm & 31),
                (5, 0x20) => (AluOp::Sra, imm & 31),
                (5, 0x30) => (AluOp::Ror, imm & 31),
                _ => return ill,
            };
            I::OpImm32 {
                op,
                rd: rd(raw),
                rs1: rs1(raw),
                imm,
            }
        }
        0x33 => {
            let op = match (f7, f3) {
                (0, 0) => AluOp::Add,
                (0x20, 0) => AluOp::Sub,
                (0, 1) => AluOp::Sll,
                (0, 2) => AluOp::Slt,
                (0, 3) => AluOp::Sltu,
                (0, 4) => AluOp::Xor,
                (0, 5) => AluOp::Srl,
                (0x20, 5) => AluOp::Sra,
                (0, 6) => AluOp::Or,
                (0, 7) => AluOp::And,
                (1, 0) => AluOp::Mul,
                (1, 1) => AluOp::Mulh,
                (1, 2) => AluOp::Mulhsu,
                (1, 3) => AluOp::Mulhu,
                (1, 4) => AluOp::Div,
                (1, 5) => AluOp::Divu,
                (1, 6) => AluOp::Rem,
                (1, 7) => AluOp::Remu,
                (0x10, 2) => AluOp::Sh1add,
                (0x10, 4) => AluOp::Sh2add,
                (0x10, 6) => AluOp::Sh3add,
                (0x20, 7) => AluOp::Andn,
                (0x20, 6) => AluOp::Orn,
                (0x20, 4) => AluOp::Xnor,
                (0x05, 4) => AluOp::Min,
                (0x05, 5) => AluOp::Minu,
                (0x05, 6) => AluOp::Max,
                (0x05, 7) => AluOp::Maxu,
                (0x30, 1) => AluOp::Rol,
                (0x30, 5) => AluOp::Ror,
                (0x24, 1) => AluOp::Bclr,
                (0x24, 5) => AluOp::Bext,
                (0x34, 1) => AluOp::Binv,
                (0x14, 1) => AluOp::Bset,
                _ => return ill,
            };
            I::Op {
                op,
                rd: rd(raw),
                rs1: rs1(raw),
                rs2: rs2(raw),
            }
        }
        0x3b => {
            let op = match (f7, f3) {
                (0, 0) => AluOp::Add,
                (0x20, 0) => AluOp::Sub,
                (0, 1) => AluOp::Sll,
                (0, 5) => AluOp::Srl,
                (0x20, 5) => AluOp::Sra,
                (1, 0) => AluOp::Mul,
                (1, 4) => AluOp::Div,
                (1, 5) => AluOp::Divu,
                (1, 6) => AluOp::Rem,
                (1, 7) => AluOp::Remu,
                (0x04, 0) => AluOp::AddUw,
                (0x10, 2) => AluOp::Sh1addUw,
                (0x10, 4) => AluOp::Sh2addUw,
                (0x10, 6) => AluOp::Sh3addUw,
                (0x30, 1) => AluOp::Rol,
                (0x30, 5) => AluOp::Ror,
                (0x04, 4) if rs2(raw) == 0 => AluOp::ZextH,
                _ => return ill,
            };
            I::Op32 {
                op,
                rd: rd(raw),
                rs1: rs1(raw),
                rs2: rs2(raw),
            }
        }
        0x0f => match f3 {
            0 => I::Fence {
                store_load: fence_orders_store_load(raw),
            },
            1 => I::FenceI,
            _ => ill,
        },
        0x73 => match f3 {
            0 => match raw {
                0x0000_0073 => I::Ecall,
                0x0010_0073 => I::Ebreak,
                0x3020_0073 => I::Mret,
                0x1020_0073 => I::Sret,
                0x1050_0073 => I::Wfi,
                _ if f7 == 0x09 && rd(raw) == 0 => I::SfenceVma {
                    rs1: rs1(raw),
                    rs2: rs2(raw),
                },
                _ => ill,
            },
            4 => ill,
            _ => {
                let op = match f3 {
                    1 => CsrOp::Rw,
                    2 => CsrOp::Rs,
                    3 => CsrOp::Rc,
                    5 => CsrOp::Rwi,
                    6 => CsrOp::Rsi,
                    _ => CsrOp::Rci,
                };
                I::Csr {
                    op,
                    rd: rd(raw),
                    src: rs1(raw),
                    csr: (raw >> 20) as u16,
                }
            }
        },
        0x2f => {
            let double = match f3 {
                2 => false,
                3 => true,
                _ => return ill,
            };
            let (rd, rs1, rs2) = (rd(raw), rs1(raw), rs2(raw));
            let op = match raw >> 27 {
                0x02 if rs2 == 0 => return I::Lr { rd, rs1, double },
                0x03 => {
                    return I::Sc {
                        rd,
                        rs1,
                        rs2,
                        double,
                    };
                }
                0x01 => AmoOp::Swap,
                0x00 => AmoOp::Add,
                0x04 => AmoOp::Xor,
                0x0c => AmoOp::And,
                0x08 => AmoOp::Or,
                0x10 => AmoOp::Min,
                0x14 => AmoOp::Max,
                0x18 => AmoOp::Minu,
                0x1c => AmoOp::Maxu,
                _ => return ill,
            };
            I::Amo {
                op,
                rd,
                rs1,
                rs2,
                double,
            }
        }
        0x07 if f3 == 2 || f3 == 3 => I::FLoad {
            rd: rd(raw),
            rs1: rs1(raw),
            imm: imm_i(raw),
            double: f3 == 3,
        },
        0x27 if f3 == 2 || f3 == 3 => I::FStore {
            rs1: rs1(raw),
            rs2: rs2(raw),
            imm: imm_s(raw),
            double: f3 == 3,
        },
        op @ (0x43 | 0x47 | 0x4b | 0x4f) => {
            let fmt = (raw >> 25) & 3;
            if fmt > 1 || f3 == 5 || f3 == 6 {
                return ill;
            }
            let op = match op {
                0x43 => FmaOp::Madd,
                0x47 => FmaOp::Msub,
                0x4b => FmaOp::Nmsub,
                _ => FmaOp::Nmadd,
            };
            I::Fma {
                op,
                rd: rd(raw),
                rs1: rs1(raw),
                rs2: rs2(raw),
                rs3: (raw >> 27) as u8,
                rm: f3 as u8,
                double: fmt == 1,
            }
        }
        0x53 => decode_op_fp(raw),
        _ => ill,
    }
}

fn decode_op_fp(raw: u32) -> Instruction {
    let ill = Instruction::Illegal { raw };
    let fmt = (raw >> 25) & 3;
    if fmt > 1 {
        return ill;
    }
    let double = fmt == 1;
    let rm = funct3(raw);
    let r2 = rs2(raw);
    let rounding = rm != 5 && rm != 6;
    let op = match raw >> 27 {
        0x00 if rounding => FpOp::Add,
        0x01 if rounding => FpOp::Sub,
        0x02 if rounding => FpOp::Mul,
        0x03 if rounding => FpOp::Div,
        0x0b if rounding && r2 == 0 => FpOp::Sqrt,
        0x04 => match rm {
            0 => FpOp::SgnJ,
            1 => FpOp::SgnJn,
            2 => FpOp::SgnJx,
            _ => return ill,
        },
        0x05 => match rm {
            0 => FpOp::Min,
            1 => FpOp::Max,
            _ => return ill,
        },
        0x08 if rounding && r2 == if double { 0 } else { 1 } => FpOp::CvtFmt,
        0x14 => match rm {
            2 => FpOp::Eq,
            1 => FpOp::Lt,
            0 => FpOp::Le,
            _ => return ill,
        },
        0x18 if rounding => match r2 {
            0 => FpOp::CvtW,
            1 => FpOp::CvtWu,
            2 => FpOp::CvtL,
            3 => FpOp::CvtLu,
            _ => return ill,
        },
        0x1a if rounding => match r2 {
            0 => FpOp::CvtFromW,
            1 => FpOp::CvtFromWu,
            2 => FpOp::CvtFromL,
            3 => FpOp::CvtFromLu,
            _ => return ill,
        },
        0x1c if r2 == 0 && rm == 0 => FpOp::MvToX,
        0x1c if r2 == 0 && rm == 1 => FpOp::Class,
        0x1e if r2 == 0 && rm == 0 => FpOp::MvFromX,
        _ => return ill,
    };
    Instruction::Fp {
        op,
        rd: rd(raw),
        rs1: rs1(raw),
        rs2: r2,
        rm: rm as u8,
        double,
    }
}

#[inline(always)]
fn bit(raw: u16, from: u32, to: u32) -> i32 {
    (((raw >> from) & 1) as i32) << to
}

/// Decode a 16-bit compressed instruction into its 32-bit equivalent.
pub fn decode_compressed(raw: u16) -> Instruction {
    use Instruction as I;
    let ill = I::Illegal { raw: raw as u32 };
    let r = raw;
    let f3 = (r >> 13) & 7;
    let rd_full = ((r >> 7) & 31) as u8;
    let rs2_full = ((r >> 2) & 31) as u8;
    let rdp = (((r >> 2) & 7) + 8) as u8; // rd'/rs2' in bits 4:2
    let rs1p = (((r >> 7) & 7) + 8) as u8; // rs1'/rd' in bits 9:7
    // Sign-extended 6-bit immediate imm[5]=12, imm[4:0]=6:2.
    let imm6 = (((((r >> 12) & 1) << 5) | ((r >> 2) & 31)) as i32) << 26 >> 26;
    match (r & 3, f3) {
        (0, 0) => {
            let imm = bit(r, 12, 5)
                | bit(r, 11, 4)
                | ((((r >> 7) & 15) as i32) << 6)
                | bit(r, 6, 2)
                | bit(r, 5, 3);
            if imm == 0 {
                return ill;
            }
            I::OpImm {
                op: AluOp::Add,
                rd: rdp,
                rs1: 2,
                imm,
            }
        }
        (0, 1) | (0, 3) | (0, 5) | (0, 7) => {
            // c.fld / c.ld / c.fsd / c.sd: uimm[5:3]=12:10, [7:6]=6:5
            let imm = ((((r >> 10) & 7) as i32) << 3) | ((((r >> 5) & 3) as i32) << 6);
            match f3 {
                1 => I::FLoad {
                    rd: rdp,
                    rs1: rs1p,
                    imm,
                    double: true,
                },
                3 => I::Load {
                    op: LoadOp::D,
                    rd: rdp,
                    rs1: rs1p,
                    imm,
                },
                5 => I::FStore {
                    rs1: rs1p,
                    rs2: rdp,
                    imm,
                    double: true,
                },
                _ => I::Store {
                    size: 8,
                    rs1: rs1p,
                    rs2: rdp,
                    imm,
                },
            }
        }
        (0, 2) | (0, 6) => {
            // c.lw / c.sw: uimm[5:3]=12:10, [2]=6, [6]=5
            let imm = ((((r >> 10) & 7) as i32) << 3) | bit(r, 6, 2) | bit(r, 5, 6);
            if f3 == 2 {
                I::Load {
                    op: LoadOp::W,
                    rd: rdp,
                    rs1: rs1p,
                    imm,
                }
            } else {
                I::Store {
                    size: 4,
                    rs1: rs1p,
                    rs2: rdp,
                    imm,
                }
            }
        }
        (1, 0) => I::OpImm {
            op: AluOp::Add,
            rd: rd_full,
            rs1: rd_full,
            imm: imm6,
        },
        (1, 1) => {
            if rd_full == 0 {
                return ill;
            }
            I::OpImm32 {
                op: AluOp::Add,
                rd: rd_full,
                rs1: rd_full,
                imm: imm6,
            }
        }
        (1, 2) => I::OpImm {
            op: AluOp::Add,
            rd: rd_full,
            rs1: 0,
            imm: imm6,
        },
        (1, 3) => {
            if rd_full == 2 {
                let imm = ((bit(r, 12, 9)
                    | bit(r, 6, 4)
                    | bit(r, 5, 6)
                    | ((((r >> 3) & 3) as i32) << 7)
                    | bit(r, 2, 5))
                    << 22)
                    >> 22;
                if imm == 0 {
                    return ill;
                }
                I::OpImm {
                    op: AluOp::Add,
                    rd: 2,
                    rs1: 2,
                    imm,
                }
            } else {
                if imm6 == 0 {
                    return ill;
                }
                I::Lui {
                    rd: rd_full,
                    imm: imm6 << 12,
                }
            }
        }
        (1, 4) => {
            let shamt = (((r >> 12) & 1) << 5 | ((r >> 2) & 31)) as i32;
            match (r >> 10) & 3 {
                0 => I::OpImm {
                    op: AluOp::Srl,
                    rd: rs1p,
                    rs1: rs1p,
                    imm: shamt,
                },
                1 => I::OpImm {
                    op: AluOp::Sra,
                    rd: rs1p,
                    rs1: rs1p,
                    imm: shamt,
                },
                2 => I::OpImm {
                    op: AluOp::And,
                    rd: rs1p,
                    rs1: rs1p,
                    imm: imm6,
                },
                _ => {
                    let wide = (r >> 12) & 1 == 1;
                    let sel = (r >> 5) & 3;
                    let (op, w) = match (wide, sel) {
                        (false, 0) => (AluOp::Sub, false),
                        (false, 1) => (AluOp::Xor, false),
                        (false, 2) => (AluOp::Or, false),
                        (false, 3) => (AluOp::And, false),
                        (true, 0) => (AluOp::Sub, true),
                        (true, 1) => (AluOp::Add, true),
                        _ => return ill,
                    };
                    if w {
                        I::Op32 {
                            op,
                            rd: rs1p,
                            rs1: rs1p,
                            rs2: rdp,
                        }
                    } else {
                        I::Op {
                            op,
                            rd: rs1p,
                            rs1: rs1p,
                            rs2: rdp,
                        }
                    }
                }
            }
        }
        (1, 5) => {
            let imm = ((bit(r, 12, 11)
                | bit(r, 11, 4)
                | ((((r >> 9) & 3) as i32) << 8)
                | bit(r, 8, 10)
                | bit(r, 7, 6)
                | bit(r, 6, 7)
                | ((((r >> 3) & 7) as i32) << 1)
                | bit(r, 2, 5))
                << 20)
                >> 20;
            I::Jal { rd: 0, imm }
        }
        (1, 6) | (1, 7) => {
            let imm = ((bit(r, 12, 8)
                | ((((r >> 10) & 3) as i32) << 3)
                | ((((r >> 5) & 3) as i32) << 6)
                | ((((r >> 3) & 3) as i32) << 1)
                | bit(r, 2, 5))
                << 23)
                >> 23;
            I::Branch {
                op: if f3 == 6 { BranchOp::Eq } else { BranchOp::Ne },
                rs1: rs1p,
                rs2: 0,
                imm,
            }
        }
        (2, 0) => I::OpImm {
            op: AluOp::Sll,
            rd: rd_full,
            rs1: rd_full,
            imm: (((r >> 12) & 1) << 5 | ((r >> 2) & 31)) as i32,
        },
        (2, 1) | (2, 3) => {
            // c.fldsp / c.ldsp: uimm[5]=12, [4:3]=6:5, [8:6]=4:2
            let imm =
                bit(r, 12, 5) | ((((r >> 5) & 3) as i32) << 3) | ((((r >> 2) & 7) as i32) << 6);
            if f3 == 1 {
                I::FLoad {
                    rd: rd_full,
                    rs1: 2,
                    imm,
                    double: true,
                }
            } else {
                if rd_full == 0 {
                    return ill;
                }
                I::Load {
                    op: LoadOp::D,
                    rd: rd_full,
                    rs1: 2,
                    imm,
                }
            }
        }
        (2, 2) => {
            // c.lwsp: uimm[5]=12, [4:2]=6:4, [7:6]=3:2
            if rd_full == 0 {
                return ill;
            }
            let imm =
                bit(r, 12, 5) | ((((r >> 4) & 7) as i32) << 2) | ((((r >> 2) & 3) as i32) << 6);
            I::Load {
                op: LoadOp::W,
                rd: rd_full,
                rs1: 2,
                imm,
            }
        }
        (2, 4) => {
            let b12 = (r >> 12) & 1 == 1;
            match (b12, rd_full, rs2_full) {
                (false, 0, 0) => ill,
                (false, rs1, 0) => I::Jalr { rd: 0, rs1, imm: 0 },
                (false, rd, rs2) => I::Op {
                    op: AluOp::Add,
                    rd,
                    rs1: 0,
                    rs2,
                },
                (true, 0, 0) => I::Ebreak,
                (true, rs1, 0) => I::Jalr { rd: 1, rs1, imm: 0 },
                (true, rd, rs2) => I::Op {
                    op: AluOp::Add,
                    rd,
                    rs1: rd,
                    rs2,
                },
            }
        }
        (2, 5) | (2, 7) => {
            // c.fsdsp / c.sdsp: uimm[5:3]=12:10, [8:6]=9:7
            let imm = ((((r >> 10) & 7) as i32) << 3) | ((((r >> 7) & 7) as i32) << 6);
            if f3 == 5 {
                I::FStore {
                    rs1: 2,
                    rs2: rs2_full,
                    imm,
                    double: true,
                }
            } else {
                I::Store {
                    size: 8,
                    rs1: 2,
                    rs2: rs2_full,
                    imm,
                }
            }
        }
        (2, 6) => {
            // c.swsp: uimm[5:2]=12:9, [7:6]=8:7
            let imm = ((((r >> 9) & 15) as i32) << 2) | ((((r >> 7) & 3) as i32) << 6);
            I::Store {
                size: 4,
                rs1: 2,
                rs2: rs2_full,
                imm,
            }
        }
        _ => ill,
    }
}

const ABI: [&str; 32] = [
    "zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2", "a3", "a4",
    "a5", "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "t3", "t4",
    "t5", "t6",
];
const FABI: [&str; 32] = [
    "ft0", "ft1", "ft2", "ft3", "ft4", "ft5", "ft6", "ft7", "fs0", "fs1", "fa0", "fa1", "fa2",
    "fa3", "fa4", "fa5", "fa6", "fa7", "fs2", "fs3", "fs4", "fs5", "fs6", "fs7", "fs8", "fs9",
    "fs10", "fs11", "ft8", "ft9", "ft10", "ft11",
];

fn x(r: u8) -> &'static str {
    ABI[(r & 31) as usize]
}
fn f(r: u8) -> &'static str {
    FABI[(r & 31) as usize]
}

fn alu_name(op: AluOp) -> &'static str {
    match op {
        AluOp::Add => "add",
        AluOp::Sub => "sub",
        AluOp::Sll => "sll",
        AluOp::Slt => "slt",
        AluOp::Sltu => "sltu",
        AluOp::Xor => "xor",
        AluOp::Srl => "srl",
        AluOp::Sra => "sra",
        AluOp::Or => "or",
        AluOp::And => "and",
        AluOp::Mul => "mul",
        AluOp::Mulh => "mulh",
        AluOp::Mulhsu => "mulhsu",
        AluOp::Mulhu => "mulhu",
        AluOp::Div => "div",
        AluOp::Divu => "divu",
        AluOp::Rem => "rem",
        AluOp::Remu => "remu",
        AluOp::Sh1add => "sh1add",
        AluOp::Sh2add => "sh2add",
        AluOp::Sh3add => "sh3add",
        AluOp::AddUw => "add.uw",
        AluOp::Sh1addUw => "sh1add.uw",
        AluOp::Sh2addUw => "sh2add.uw",
        AluOp::Sh3addUw => "sh3add.uw",
        AluOp::SllUw => "slli.uw",
        AluOp::Andn => "andn",
        AluOp::Orn => "orn",
        AluOp::Xnor => "xnor",
        AluOp::Clz => "clz",
        AluOp::Ctz => "ctz",
        AluOp::Cpop => "cpop",
        AluOp::Max => "max",
        AluOp::Maxu => "maxu",
        AluOp::Min => "min",
        AluOp::Minu => "minu",
        AluOp::SextB => "sext.b",
        AluOp::SextH => "sext.h",
        AluOp::ZextH => "zext.h",
        AluOp::Rol => "rol",
        AluOp::Ror => "ror",
        AluOp::OrcB => "orc.b",
        AluOp::Rev8 => "rev8",
        AluOp::Bclr => "bclr",
        AluOp::Bext => "bext",
        AluOp::Binv => "binv",
        AluOp::Bset => "bset",
    }
}

fn rm_suffix(rm: u8) -> &'static str {
    match rm {
        0 => ", rne",
        1 => ", rtz",
        2 => ", rdn",
        3 => ", rup",
        4 => ", rmm",
        _ => "",
    }
}

impl fmt::Display for Instruction {
    fn fmt(&self, w: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Instruction as I;
        match *self {
            I::Lui { rd, imm } => write!(w, "lui {}, {:#x}", x(rd), (imm as u32) >> 12),
            I::Auipc { rd, imm } => write!(w, "auipc {}, {:#x}", x(rd), (imm as u32) >> 12),
            I::Jal { rd, imm } => write!(w, "jal {}, {}", x(rd), imm),
            I::Jalr { rd, rs1, imm } => write!(w, "jalr {}, {}({})", x(rd), imm, x(rs1)),
            I::Branch { op, rs1, rs2, imm } => {
                let n = match op {
                    BranchOp::Eq => "beq",
                    BranchOp::Ne => "bne",
                    BranchOp::Lt => "blt",
                    BranchOp::Ge => "bge",
                    BranchOp::Ltu => "bltu",
                    BranchOp::Geu => "bgeu",
                };
                write!(w, "{n} {}, {}, {}", x(rs1), x(rs2), imm)
            }
            I::Load { op, rd, rs1, imm } => {
                let n = match op {
                    LoadOp::B => "lb",
                    LoadOp::H => "lh",
                    LoadOp::W => "lw",
                    LoadOp::D => "ld",
                    LoadOp::Bu => "lbu",
                    LoadOp::Hu => "lhu",
                    LoadOp::Wu => "lwu",
                };
                write!(w, "{n} {}, {}({})", x(rd), imm, x(rs1))
            }
            I::Store {
                size,
                rs1,
                rs2,
                imm,
            } => {
                let n = match size {
                    1 => "sb",
                    2 => "sh",
                    4 => "sw",
                    _ => "sd",
                };
                write!(w, "{n} {}, {}({})", x(rs2), imm, x(rs1))
            }
            I::OpImm { op, rd, rs1, .. } if op.is_unary() => {
                write!(w, "{} {}, {}", alu_name(op), x(rd), x(rs1))
            }
            I::OpImm { op, rd, rs1, imm } => {
                write!(w, "{}i {}, {}, {}", alu_name(op), x(rd), x(rs1), imm)
            }
            I::OpImm32 { op, rd, rs1, .. } if op.is_unary() => {
                write!(w, "{}w {}, {}", alu_name(op), x(rd), x(rs1))
            }
            I::OpImm32 {
                op: AluOp::SllUw,
                rd,
                rs1,
                imm,
            } => write!(w, "slli.uw {}, {}, {}", x(rd), x(rs1), imm),
            I::OpImm32 { op, rd, rs1, imm } => {
                write!(w, "{}iw {}, {}, {}", alu_name(op), x(rd), x(rs1), imm)
            }
            I::Op { op, rd, rs1, rs2 } => {
                write!(w, "{} {}, {}, {}", alu_name(op), x(rd), x(rs1), x(rs2))
            }
            I::Op32 {
                op: AluOp::ZextH,
                rd,
                rs1,
                ..
            } => write!(w, "zext.h {}, {}", x(rd), x(rs1)),
            I::Op32 { op, rd, rs1, rs2 } if alu_name(op).ends_with(".uw") => {
                write!(w, "{} {}, {}, {}", alu_name(op), x(rd), x(rs1), x(rs2))
            }
            I::Op32 { op, rd, rs1, rs2 } => {
                write!(w, "{}w {}, {}, {}", alu_name(op), x(rd), x(rs1), x(rs2))
            }
            I::Fence { .. } => write!(w, "fence"),
            I::FenceI => write!(w, "fence.i"),
            I::Ecall => write!(w, "ecall"),
            I::Ebreak => write!(w, "ebreak"),
            I::Mret => write!(w, "mret"),
            I::Sret => write!(w, "sret"),
            I::Wfi => write!(w, "wfi"),
            I::SfenceVma { rs1, rs2 } => write!(w, "sfence.vma {}, {}", x(rs1), x(rs2)),
            I::Csr { op, rd, src, csr } => {
                let (n, imm) = match op {
                    CsrOp::Rw => ("csrrw", false),
                    CsrOp::Rs => ("csrrs", false),
                    CsrOp::Rc => ("csrrc", false),
                    CsrOp::Rwi => ("csrrwi", true),
                    CsrOp::Rsi => ("csrrsi", true),
                    CsrOp::Rci => ("csrrci", true),
                };
                if imm {
                    write!(w, "{n} {}, {:#x}, {}", x(rd), csr, src)
                } else {
                    write!(w, "{n} {}, {:#x}, {}", x(rd), csr, x(src))
                }
            }
            I::Lr { rd, rs1, double } => {
                write!(
                    w,
                    "lr.{} {}, ({})",
                    if double { 'd' } else { 'w' },
                    x(rd),
                    x(rs1)
                )
            }
            I::Sc {
                rd,
                rs1,
                rs2,
                double,
            } => write!(
                w,
                "sc.{} {}, {}, ({})",
                if double { 'd' } else { 'w' },
                x(rd),
                x(rs2),
                x(rs1)
            ),
            I::Amo {
                op,
                rd,
                rs1,
                rs2,
                double,
            } => {
                let n = match op {
                    AmoOp::Swap => "amoswap",
                    AmoOp::Add => "amoadd",
                    AmoOp::Xor => "amoxor",
                    AmoOp::And => "amoand",
                    AmoOp::Or => "amoor",
                    AmoOp::Min => "amomin",
                    AmoOp::Max => "amomax",
                    AmoOp::Minu => "amominu",
                    AmoOp::Maxu => "amomaxu",
                };
                let s = if double { 'd' } else { 'w' };
                write!(w, "{n}.{s} {}, {}, ({})", x(rd), x(rs2), x(rs1))
            }
            I::FLoad {
                rd,
                rs1,
                imm,
                double,
            } => write!(
                w,
                "{} {}, {}({})",
                if double { "fld" } else { "flw" },
                f(rd),
                imm,
                x(rs1)
            ),
            I::FStore {
                rs1,
                rs2,
                imm,
                double,
            } => write!(
                w,
                "{} {}, {}({})",
                if double { "fsd" } else { "fsw" },
                f(rs2),
                imm,
                x(rs1)
            ),
            I::Fma {
                op,
                rd,
                rs1,
                rs2,
                rs3,
                rm,
                double,
            } => {
                let n = match op {
                    FmaOp::Madd => "fmadd",
                    FmaOp::Msub => "fmsub",
                    FmaOp::Nmsub => "fnmsub",
                    FmaOp::Nmadd => "fnmadd",
                };
                let s = if double { 'd' } else { 's' };
                write!(
                    w,
                    "{n}.{s} {}, {}, {}, {}{}",
                    f(rd),
                    f(rs1),
                    f(rs2),
                    f(rs3),
                    rm_suffix(rm)
                )
            }
            I::Fp {
                op,
                rd,
                rs1,
                rs2,
                rm,
                double,
            } => fmt_fp(w, op, rd, rs1, rs2, rm, double),
            I::Illegal { raw } => write!(w, "illegal {raw:#010x}"),
        }
    }
}

fn fmt_fp(
    w: &mut fmt::Formatter<'_>,
    op: FpOp,
    rd: u8,
    rs1: u8,
    rs2: u8,
    rm: u8,
    double: bool,
) -> fmt::Result {
    let s = if double { "d" } else { "s" };
    let i = if double { "d" } else { "w" };
    let r = rm_suffix(rm);
    let three = |w: &mut fmt::Formatter<'_>, n: &str, suf: &str| {
        write!(w, "{n}.{s} {}, {}, {}{suf}", f(rd), f(rs1), f(rs2))
    };
    match op {
        FpOp::Add => three(w, "fadd", r),
        FpOp::Sub => three(w, "fsub", r),
        FpOp::Mul => three(w, "fmul", r),
        FpOp::Div => three(w, "fdiv", r),
        FpOp::SgnJ => three(w, "fsgnj", ""),
        FpOp::SgnJn => three(w, "fsgnjn", ""),
        FpOp::SgnJx => three(w, "fsgnjx", ""),
        FpOp::Min => three(w, "fmin", ""),
        FpOp::Max => three(w, "fmax", ""),
        FpOp::Sqrt => write!(w, "fsqrt.{s} {}, {}{r}", f(rd), f(rs1)),
        FpOp::CvtW => write!(w, "fcvt.w.{s} {}, {}{r}", x(rd), f(rs1)),
        FpOp::CvtWu => write!(w, "fcvt.wu.{s} {}, {}{r}", x(rd), f(rs1)),
        FpOp::CvtL => write!(w, "fcvt.l.{s} {}, {}{r}", x(rd), f(rs1)),
        FpOp::CvtLu => write!(w, "fcvt.lu.{s} {}, {}{r}", x(rd), f(rs1)),
        FpOp::CvtFromW => write!(w, "fcvt.{s}.w {}, {}{r}", f(rd), x(rs1)),
        FpOp::CvtFromWu => write!(w, "fcvt.{s}.wu {}, {}{r}", f(rd), x(rs1)),
        FpOp::CvtFromL => write!(w, "fcvt.{s}.l {}, {}{r}", f(rd), x(rs1)),
        FpOp::CvtFromLu => write!(w, "fcvt.{s}.lu {}, {}{r}", f(rd), x(rs1)),
        FpOp::CvtFmt => {
            let from = if double { "s" } else { "d" };
            write!(w, "fcvt.{s}.{from} {}, {}{r}", f(rd), f(rs1))
        }
        FpOp::MvToX => write!(w, "fmv.x.{i} {}, {}", x(rd), f(rs1)),
        FpOp::MvFromX => write!(w, "fmv.{i}.x {}, {}", f(rd), x(rs1)),
        FpOp::Eq => write!(w, "feq.{s} {}, {}, {}", x(rd), f(rs1), f(rs2)),
        FpOp::Lt => write!(w, "flt.{s} {}, {}, {}", x(rd), f(rs1), f(rs2)),
        FpOp::Le => write!(w, "fle.{s} {}, {}, {}", x(rd), f(rs1), f(rs2)),
        FpOp::Class => write!(w, "fclass.{s} {}, {}", x(rd), f(rs1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Instruction as I;

    /// Only a fence that orders stores before loads asks the host for one.
    #[test]
    fn fences_say_whether_they_order_stores_before_loads() {
        for (raw, store_load) in [
            (0x0330_000f, true),  // fence rw, rw
            (0x0120_000f, true),  // fence w, r
            (0x0480_000f, true),  // fence o, i
            (0x0220_000f, false), // fence r, r
            (0x0110_000f, false), // fence w, w
            (0x0310_000f, false), // fence rw, w
            (0x8330_000f, false), // fence.tso
        ] {
            assert_eq!(decode(raw), I::Fence { store_load }, "{raw:#010x}");
        }
    }

    #[test]
    fn base_encodings() {
        // addi a0, a0, -1
        assert_eq!(
            decode(0xfff5_0513),
            I::OpImm {
                op: AluOp::Add,
                rd: 10,
                rs1: 10,
                imm: -1
            }
        );
        // lui a0, 0x80000 (sign-extends on RV64)
        assert_eq!(
            decode(0x8000_0537),
            I::Lui {
                rd: 10,
                imm: i32::MIN
            }
        );
        // jal ra, -4 : 0xffdff0ef
        assert_eq!(decode(0xffdf_f0ef), I::Jal { rd: 1, imm: -4 });
        // beq a0, a1, 16 : 0x00b50863
        assert_eq!(
            decode(0x00b5_0863),
            I::Branch {
                op: BranchOp::Eq,
                rs1: 10,
                rs2: 11,
                imm: 16
            }
        );
        // sd ra, -8(sp) : 0xfe113c23
        assert_eq!(
            decode(0xfe11_3c23),
            I::Store {
                size: 8,
                rs1: 2,
                rs2: 1,
                imm: -8
            }
        );
        // srai a0, a0, 63 : 0x43f55513
        assert_eq!(
            decode(0x43f5_5513),
            I::OpImm {
                op: AluOp::Sra,
                rd: 10,
                rs1: 10,
                imm: 63
            }
        );
        // mulhu a0, a1, a2 : 0x02c5b533
        assert_eq!(
            decode(0x02c5_b533),
            I::Op {
                op: AluOp::Mulhu,
                rd: 10,
                rs1: 11,
                rs2: 12
            }
        );
        // csrrw zero, mtvec, t0 : 0x30529073
        assert_eq!(
            decode(0x3052_9073),
            I::Csr {
                op: CsrOp::Rw,
                rd: 0,
                src: 5,
                csr: 0x305
            }
        );
        assert_eq!(decode(0x3020_0073), I::Mret);
        assert_eq!(decode(0x1200_0073), I::SfenceVma { rs1: 0, rs2: 0 });
        // amoadd.d a0, a1, (a2) : 0x00b6352f
        assert_eq!(
            decode(0x00b6_352f),
            I::Amo {
                op: AmoOp::Add,
                rd: 10,
                rs1: 12,
                rs2: 11,
                double: true
            }
        );
        // fadd.d fa0, fa1, fa2 (dyn) : 0x02c5f553
        assert_eq!(
            decode(0x02c5_f553),
            I::Fp {
                op: FpOp::Add,
                rd: 10,
                rs1: 11,
                rs2: 12,
                rm: 7,
                double: true
            }
        );
    }

    #[test]
    fn illegal_encodings() {
        for raw in [
            0u32,
            0xffff_ffff,
            0x0000_7003, // load funct3 7
            0x4000_1013, // slli with funct6 0x10
            0x02c5_d553, // fadd.d with rm 5
            0x0400_0053, // fmt 2 (half) not implemented
            0x0000_4073, // system funct3 4
            0x1000_202f, // lr.w with rs2 != 0 (rs2 = 0) ... funct5 2 rs2=0 is valid; use funct5 0x1f
        ] {
            let d = decode(raw);
            if raw == 0x1000_202f {
                assert!(matches!(d, I::Lr { .. }));
                continue;
            }
            assert_eq!(d, I::Illegal { raw }, "{raw:#x}");
        }
        assert_eq!(decode(0xf800_202f), I::Illegal { raw: 0xf800_202f });
    }

    #[test]
    fn compressed_encodings() {
        // c.addi4spn a0, sp, 16 : 0x0808
        assert_eq!(
            decode_compressed(0x0808),
            I::OpImm {
                op: AluOp::Add,
                rd: 10,
                rs1: 2,
                imm: 16
            }
        );
        // c.li a0, -1 : 0x557d
        assert_eq!(
            decode_compressed(0x557d),
            I::OpImm {
                op: AluOp::Add,
                rd: 10,
                rs1: 0,
                imm: -1
            }
        );
        // c.addi16sp sp, -64 : 0x7139
        assert_eq!(
            decode_compressed(0x7139),
            I::OpImm {
                op: AluOp::Add,
                rd: 2,
                rs1: 2,
                imm: -64
            }
        );
        // c.ldsp ra, 8(sp) : 0x60a2
        assert_eq!(
            decode_compressed(0x60a2),
            I::Load {
                op: LoadOp::D,
                rd: 1,
                rs1: 2,
                imm: 8
            }
        );
        // c.sdsp ra, 8(sp) : 0xe406
        assert_eq!(
            decode_compressed(0xe406),
            I::Store {
                size: 8,
                rs1: 2,
                rs2: 1,
                imm: 8
            }
        );
        // c.j -2 : 0xbffd
        assert_eq!(decode_compressed(0xbffd), I::Jal { rd: 0, imm: -2 });
        // c.beqz a0, 8 : 0xc501
        assert_eq!(
            decode_compressed(0xc501),
            I::Branch {
                op: BranchOp::Eq,
                rs1: 10,
                rs2: 0,
                imm: 8
            }
        );
        // c.jr ra (ret) : 0x8082
        assert_eq!(
            decode_compressed(0x8082),
            I::Jalr {
                rd: 0,
                rs1: 1,
                imm: 0
            }
        );
        // c.mv a0, a1 : 0x852e
        assert_eq!(
            decode_compressed(0x852e),
            I::Op {
                op: AluOp::Add,
                rd: 10,
                rs1: 0,
                rs2: 11
            }
        );
        // c.ebreak : 0x9002
        assert_eq!(decode_compressed(0x9002), I::Ebreak);
        // c.subw a0, a1 : 0x9d0d
        assert_eq!(
            decode_compressed(0x9d0d),
            I::Op32 {
                op: AluOp::Sub,
                rd: 10,
                rs1: 10,
                rs2: 11
            }
        );
        // c.lui a0, 0xfffff (-1 << 12) : 0x757d
        assert_eq!(decode_compressed(0x757d), I::Lui { rd: 10, imm: -4096 });
        // Illegal: all zeros, c.addi4spn with imm 0, c.lwsp rd=0, c.jr x0, reserved subw-class.
        for raw in [0x0000u16, 0x0010, 0x4002, 0x8002, 0x9d4d] {
            assert_eq!(
                decode_compressed(raw),
                I::Illegal { raw: raw as u32 },
                "{raw:#x}"
            );
        }
    }

    #[test]
    fn bitmanip_encodings() {
        // Encodings from riscv64-unknown-elf-as with +zba,+zbb,+zbs.
        for (raw, text) in [
            (0x6005_9513, "clz a0, a1"),
            (0x6b85_d513, "rev8 a0, a1"),
            (0x20c5_a533, "sh1add a0, a1, a2"),
            (0x2bf5_9513, "bseti a0, a1, 63"),
            (0x08c5_853b, "add.uw a0, a1, a2"),
            (0x6045_d51b, "roriw a0, a1, 4"),
            (0x0805_c53b, "zext.h a0, a1"),
        ] {
            assert_eq!(decode(raw).to_string(), text, "{raw:#x}");
        }
        // zext.h needs rs2 = 0; orc.b has one exact encoding.
        assert_eq!(decode(0x0815_c53b), I::Illegal { raw: 0x0815_c53b });
        assert_eq!(decode(0x2875_d513).to_string(), "orc.b a0, a1");
        assert_eq!(decode(0x2885_d513), I::Illegal { raw: 0x2885_d513 });
    }

    #[test]
    fn any_bits_decode_and_print_without_panicking() {
        for raw in 0..=u16::MAX {
            let _ = decode_compressed(raw).to_string();
        }
        // A cheap deterministic generator (xorshift) over 32-bit words.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let raw = (x as u32) | 3;
            let _ = decode(raw).to_string();
        }
    }

    #[test]
    fn disassembly() {
        assert_eq!(decode(0xfff5_0513).to_string(), "addi a0, a0, -1");
        assert_eq!(decode(0x3052_9073).to_string(), "csrrw zero, 0x305, t0");
        assert_eq!(decode(0x02c5_f553).to_string(), "fadd.d fa0, fa1, fa2");
        assert_eq!(decode(0).to_string(), "illegal 0x00000000");
        assert_eq!(decode_compressed(0x8082).to_string(), "jalr zero, 0(ra)");
    }
}
