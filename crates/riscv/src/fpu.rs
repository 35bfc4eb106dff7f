//! F and D arithmetic on Berkeley SoftFloat 3 built with its RISC-V
//! specialisation: results, canonical NaNs, integer-conversion saturation and
//! exception flags are exactly RISC-V's. Rounding mode and flags are SoftFloat
//! thread-local state, set before and read after each operation.
//!
//! Values are raw bit patterns; single-precision values use the low 32 bits
//! (NaN-boxing is done by the executor).

use crate::decode::{FmaOp, FpOp};
use sf::{float32_t, float64_t};
use softfloat_sys as sf;

pub(crate) const CANONICAL_NAN_32: u64 = 0x7fc0_0000;
pub(crate) const CANONICAL_NAN_64: u64 = 0x7ff8_0000_0000_0000;
const FLAG_INVALID: u8 = 0x10;

/// Call a SoftFloat function.
macro_rules! soft {
    ($f:ident($($a:expr),*)) => {
        // SAFETY: SoftFloat functions are pure C code on values passed by
        // value; they only touch SoftFloat's thread-local rounding mode and flags.
        unsafe { sf::$f($($a),*) }
    };
}

fn f32v(v: u64) -> float32_t {
    float32_t { v: v as u32 }
}
fn f64v(v: u64) -> float64_t {
    float64_t { v }
}

/// Run `op` with rounding mode `rm` (0..=4) and return its result and the flags it raised.
fn with_rm<T>(rm: u8, op: impl FnOnce() -> T) -> (T, u8) {
    soft!(softfloat_roundingMode_write_helper(rm));
    soft!(softfloat_exceptionFlags_write_helper(0));
    let r = op();
    let flags = soft!(softfloat_exceptionFlags_read_helper());
    (r, flags & 0x1f)
}

fn is_nan(v: u64, double: bool) -> bool {
    if double {
        (v >> 52) & 0x7ff == 0x7ff && v & ((1 << 52) - 1) != 0
    } else {
        (v >> 23) & 0xff == 0xff && v & ((1 << 23) - 1) != 0
    }
}

fn is_snan(v: u64, double: bool) -> bool {
    if double {
        is_nan(v, true) && v & (1 << 51) == 0
    } else {
        is_nan(v, false) && v & (1 << 22) == 0
    }
}

fn sign_bit(double: bool) -> u64 {
    if double { 1 << 63 } else { 1 << 31 }
}

/// Fused multiply-add family.
pub(crate) fn fma(op: FmaOp, double: bool, a: u64, b: u64, c: u64, rm: u8) -> (u64, u8) {
    let s = sign_bit(double);
    let (a, c) = match op {
        FmaOp::Madd => (a, c),
        FmaOp::Msub => (a, c ^ s),
        FmaOp::Nmsub => (a ^ s, c),
        FmaOp::Nmadd => (a ^ s, c ^ s),
    };
    with_rm(rm, || {
        if double {
            soft!(f64_mulAdd(f64v(a), f64v(b), f64v(c))).v
        } else {
            soft!(f32_mulAdd(f32v(a), f32v(b), f32v(c))).v as u64
        }
    })
}

/// Result of an OP-FP instruction: a float register value (unboxed for
/// singles) or an integer register value.
pub(crate) enum FpResult {
    Float(u64),
    Int(u64),
}

/// Execute an OP-FP operation on raw operands. `a`/`b` are float bit patterns,
/// except for the from-integer conversions and fmv.*.x, where `a` is the integer.
pub(crate) fn op(op: FpOp, double: bool, a: u64, b: u64, rm: u8) -> (FpResult, u8) {
    use FpResult::{Float, Int};
    let d = double;
    match op {
        FpOp::Add | FpOp::Sub | FpOp::Mul | FpOp::Div | FpOp::Sqrt => {
            let (r, fl) = with_rm(rm, || {
                if d {
                    let (x, y) = (f64v(a), f64v(b));
                    match op {
                        FpOp::Add => soft!(f64_add(x, y)).v,
                        FpOp::Sub => soft!(f64_sub(x, y)).v,
                        FpOp::Mul => soft!(f64_mul(x, y)).v,
                        FpOp::Div => soft!(f64_div(x, y)).v,
                        _ => soft!(f64_sqrt(x)).v,
                    }
                } else {
                    let (x, y) = (f32v(a), f32v(b));
                    (match op {
                        FpOp::Add => soft!(f32_add(x, y)).v,
                        FpOp::Sub => soft!(f32_sub(x, y)).v,
                        FpOp::Mul => soft!(f32_mul(x, y)).v,
                        FpOp::Div => soft!(f32_div(x, y)).v,
                        _ => soft!(f32_sqrt(x)).v,
                    }) as u64
                }
            });
            (Float(r), fl)
        }
        FpOp::SgnJ | FpOp::SgnJn | FpOp::SgnJx => {
            let s = sign_bit(d);
            let sign = match op {
                FpOp::SgnJ => b & s,
                FpOp::SgnJn => !b & s,
                _ => (a ^ b) & s,
            };
            (Float((a & !s) | sign), 0)
        }
        FpOp::Min | FpOp::Max => {
            let mut fl = 0;
            if is_snan(a, d) || is_snan(b, d) {
                fl = FLAG_INVALID;
            }
            let r = match (is_nan(a, d), is_nan(b, d)) {
                (true, true) => {
                    if d {
                        CANONICAL_NAN_64
                    } else {
                        CANONICAL_NAN_32
                    }
                }
                (true, false) => b,
                (false, true) => a,
                (false, false) => {
                    let s = sign_bit(d);
                    let both_zero = (a | b) & !s == 0;
                    let a_less = if both_zero {
                        a & s != 0 && b & s == 0
                    } else {
                        with_rm(0, || {
                            if d {
                                soft!(f64_lt_quiet(f64v(a), f64v(b)))
                            } else {
                                soft!(f32_lt_quiet(f32v(a), f32v(b)))
                            }
                        })
                        .0
                    };
                    match (op == FpOp::Min, a_less) {
                        (true, true) | (false, false) => a,
                        _ => b,
                    }
                }
            };
            (Float(r), fl)
        }
        FpOp::Eq | FpOp::Lt | FpOp::Le => {
            let (r, fl) = with_rm(0, || {
                if d {
                    let (x, y) = (f64v(a), f64v(b));
                    match op {
                        FpOp::Eq => soft!(f64_eq(x, y)),
                        FpOp::Lt => soft!(f64_lt(x, y)),
                        _ => soft!(f64_le(x, y)),
                    }
                } else {
                    let (x, y) = (f32v(a), f32v(b));
                    match op {
                        FpOp::Eq => soft!(f32_eq(x, y)),
                        FpOp::Lt => soft!(f32_lt(x, y)),
                        _ => soft!(f32_le(x, y)),
                    }
                }
            });
            (Int(r as u64), fl)
        }
        FpOp::CvtW | FpOp::CvtWu | FpOp::CvtL | FpOp::CvtLu => {
            let (r, fl) = with_rm(rm, || {
                if d {
                    let x = f64v(a);
                    match op {
                        FpOp::CvtW => soft!(f64_to_i32(x, rm, true)) as i32 as i64 as u64,
                        FpOp::CvtWu => soft!(f64_to_ui32(x, rm, true)) as u32 as i32 as i64 as u64,
                        FpOp::CvtL => soft!(f64_to_i64(x, rm, true)) as u64,
                        _ => soft!(f64_to_ui64(x, rm, true)) as u64,
                    }
                } else {
                    let x = f32v(a);
                    match op {
                        FpOp::CvtW => soft!(f32_to_i32(x, rm, true)) as i32 as i64 as u64,
                        FpOp::CvtWu => soft!(f32_to_ui32(x, rm, true)) as u32 as i32 as i64 as u64,
                        FpOp::CvtL => soft!(f32_to_i64(x, rm, true)) as u64,
                        _ => soft!(f32_to_ui64(x, rm, true)) as u64,
                    }
                }
            });
            (Int(r), fl)
        }
        FpOp::CvtFromW | FpOp::CvtFromWu | FpOp::CvtFromL | FpOp::CvtFromLu => {
            let (r, fl) = with_rm(rm, || {
                if d {
                    match op {
                        FpOp::CvtFromW => soft!(i32_to_f64(a as i32)).v,
                        FpOp::CvtFromWu => soft!(ui32_to_f64(a as u32)).v,
                        FpOp::CvtFromL => soft!(i64_to_f64(a as i64)).v,
                        _ => soft!(ui64_to_f64(a)).v,
                    }
                } else {
                    (match op {
                        FpOp::CvtFromW => soft!(i32_to_f32(a as i32)).v,
                        FpOp::CvtFromWu => soft!(ui32_to_f32(a as u32)).v,
                        FpOp::CvtFromL => soft!(i64_to_f32(a as i64)).v,
                        _ => soft!(ui64_to_f32(a)).v,
                    }) as u64
                }
            });
            (Float(r), fl)
        }
        FpOp::CvtFmt => {
            let (r, fl) = with_rm(rm, || {
                if d {
                    soft!(f32_to_f64(f32v(a))).v
                } else {
                    soft!(f64_to_f32(f64v(a))).v as u64
                }
            });
            (Float(r), fl)
        }
        FpOp::MvToX => {
            let v = if d { a } else { a as u32 as i32 as i64 as u64 };
            (Int(v), 0)
        }
        FpOp::MvFromX => (Float(if d { a } else { a & 0xffff_ffff }), 0),
        FpOp::Class => (Int(classify(a, d)), 0),
    }
}

/// fclass: one bit set for the class of `v`.
pub(crate) fn classify(v: u64, double: bool) -> u64 {
    let (sign, exp, frac, exp_max, quiet_bit) = if double {
        (
            v >> 63,
            (v >> 52) & 0x7ff,
            v & ((1 << 52) - 1),
            0x7ff,
            1u64 << 51,
        )
    } else {
        (
            (v >> 31) & 1,
            (v >> 23) & 0xff,
            v & ((1 << 23) - 1),
            0xff,
            1u64 << 22,
        )
    };
    let neg = sign == 1;
    let bit = if exp == exp_max {
        if frac == 0 {
            if neg { 0 } else { 7 }
        } else if frac & quiet_bit != 0 {
            9
        } else {
            8
        }
    } else if exp == 0 {
        match (frac == 0, neg) {
            (true, true) => 3,
            (true, false) => 4,
            (false, true) => 2,
            (false, false) => 5,
        }
    } else if neg {
        1
    } else {
        6
    };
    1 << bit
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f32) -> u64 {
        v.to_bits() as u64
    }

    #[test]
    fn rounding_modes_and_flags() {
        // 1 + 2^-24 is exactly between 1 and the next float: RNE -> 1, RUP -> next.
        let a = f(1.0);
        let b = f(f32::from_bits(0x3380_0000)); // 2^-24
        let (FpResult::Float(r), fl) = op(FpOp::Add, false, a, b, 0) else {
            panic!()
        };
        assert_eq!((r, fl), (f(1.0), 1));
        let (FpResult::Float(r), _) = op(FpOp::Add, false, a, b, 3) else {
            panic!()
        };
        assert_eq!(r, 0x3f80_0001);
        // Division by zero sets DZ and gives infinity.
        let (FpResult::Float(r), fl) = op(FpOp::Div, false, a, f(0.0), 0) else {
            panic!()
        };
        assert_eq!((r, fl), (f(f32::INFINITY), 8));
        // 0/0 is the canonical NaN with NV.
        let (FpResult::Float(r), fl) = op(FpOp::Div, true, 0, 0, 0) else {
            panic!()
        };
        assert_eq!((r, fl), (CANONICAL_NAN_64, 0x10));
    }

    #[test]
    fn conversions_saturate() {
        let (FpResult::Int(r), fl) = op(FpOp::CvtW, false, f(3e9), 0, 1) else {
            panic!()
        };
        assert_eq!((r, fl), (0x7fff_ffff, 0x10));
        let (FpResult::Int(r), fl) = op(FpOp::CvtWu, false, f(-1.0), 0, 1) else {
            panic!()
        };
        assert_eq!((r, fl), (0, 0x10));
        let (FpResult::Int(r), _) = op(FpOp::CvtWu, false, f(f32::NAN), 0, 1) else {
            panic!()
        };
        assert_eq!(r, u64::MAX, "NaN -> 0xffffffff sign-extended");
        let (FpResult::Int(r), fl) = op(FpOp::CvtL, true, (-2.5f64).to_bits(), 0, 4) else {
            panic!()
        };
        assert_eq!((r as i64, fl), (-3, 1), "RMM rounds ties away");
    }

    #[test]
    fn min_max_nan_rules() {
        let snan = 0x7f80_0001;
        let (FpResult::Float(r), fl) = op(FpOp::Min, false, snan, f(2.0), 0) else {
            panic!()
        };
        assert_eq!((r, fl), (f(2.0), 0x10));
        let (FpResult::Float(r), fl) = op(FpOp::Max, false, CANONICAL_NAN_32, CANONICAL_NAN_32, 0)
        else {
            panic!()
        };
        assert_eq!((r, fl), (CANONICAL_NAN_32, 0));
        let (FpResult::Float(r), _) = op(FpOp::Min, false, f(0.0), f(-0.0), 0) else {
            panic!()
        };
        assert_eq!(r, f(-0.0));
    }

    #[test]
    fn classes() {
        assert_eq!(classify(f(f32::NEG_INFINITY), false), 1);
        assert_eq!(classify(f(-0.0), false), 1 << 3);
        assert_eq!(classify(1, false), 1 << 5);
        assert_eq!(classify(0x7f80_0001, false), 1 << 8);
        assert_eq!(classify(CANONICAL_NAN_64, true), 1 << 9);
        assert_eq!(classify(1.5f64.to_bits(), true), 1 << 6);
    }
}
