/* The D extension: rounding, flags, conversions between precisions and to
 * integers, NaN rules, fclass, FMA, and 64-bit loads/stores. */
#include "common.h"
#define FD(reg, bits) li t0, bits; fmv.d.x reg, t0
#define CHECKD(n, freg, bits) fmv.x.d a0, freg; CHECK(n, a0, bits)
#define CHECKFLAGS(n, val) csrr a0, fflags; CHECK(n, a0, val); csrw fflags, zero
#define ONE 0x3ff0000000000000
#define TWO 0x4000000000000000
#define THREE 0x4008000000000000
#define EPS53 0x3ca0000000000000
#define QNAN 0x7ff8000000000000
#define SNAN 0x7ff0000000000001
START
tests:
    li t0, 0x2000; csrs mstatus, t0; csrw fcsr, zero
    FD(fa1, ONE); FD(fa2, TWO)
    fadd.d fa0, fa1, fa2; CHECKD(1, fa0, THREE); CHECKFLAGS(2, 0)
    /* 1 + 2^-53 is a tie */
    FD(fa2, EPS53)
    fadd.d fa0, fa1, fa2, rne; CHECKD(3, fa0, ONE); CHECKFLAGS(4, 1)
    fadd.d fa0, fa1, fa2, rup; CHECKD(5, fa0, 0x3ff0000000000001)
    fadd.d fa0, fa1, fa2, rmm; CHECKD(6, fa0, 0x3ff0000000000001)
    fadd.d fa0, fa1, fa2, rtz; CHECKD(7, fa0, ONE)
    fsub.d fa0, fa1, fa2, rdn; CHECKD(8, fa0, 0x3fefffffffffffff)
    csrwi frm, 2; fsub.d fa0, fa1, fa2; CHECKD(9, fa0, 0x3fefffffffffffff); csrwi frm, 0
    csrwi frm, 6
    EXPECT_TRAP(10, fmul.d fa0, fa1, fa2)
    CHECK(11, s9, 2)
    csrwi frm, 0; csrw fflags, zero
    /* division, sqrt, flags */
    FD(fa3, 0x4024000000000000)   /* 10 */
    fdiv.d fa0, fa1, fa3; CHECKD(12, fa0, 0x3fb999999999999a); CHECKFLAGS(13, 1)
    fdiv.d fa0, fa1, fa3, rtz; CHECKD(14, fa0, 0x3fb9999999999999)
    fmv.d.x fa4, zero; fdiv.d fa0, fa1, fa4; CHECKD(15, fa0, 0x7ff0000000000000); CHECKFLAGS(16, 9)
    fneg.d fa5, fa1; fsqrt.d fa0, fa5; CHECKD(17, fa0, QNAN); CHECKFLAGS(18, 0x10)
    FD(fa3, TWO); fsqrt.d fa0, fa3; CHECKD(19, fa0, 0x3ff6a09e667f3bcd); CHECKFLAGS(20, 1)
    FD(fa3, 0x7fefffffffffffff); fadd.d fa0, fa3, fa3; CHECKD(21, fa0, 0x7ff0000000000000); CHECKFLAGS(22, 5)
    FD(fa3, 0x0010000000000000); FD(fa4, 0x3fd0000000000001)
    fmul.d fa0, fa3, fa4; CHECKFLAGS(23, 3)
    /* precision conversions */
    FD(fa3, 0x3fb999999999999a)   /* 0.1 */
    fcvt.s.d fa0, fa3; fmv.x.d a0, fa0; CHECK(24, a0, 0xffffffff3dcccccd); CHECKFLAGS(25, 1)
    fcvt.s.d fa0, fa3, rtz; fmv.x.w a0, fa0; CHECK(26, a0, 0x3dcccccc); csrw fflags, zero
    fcvt.d.s fa5, fa0; CHECKD(27, fa5, 0x3fb9999980000000); CHECKFLAGS(28, 0)
    FD(fa3, 0x47efffffffffffff); fcvt.s.d fa0, fa3; fmv.x.w a0, fa0; CHECK(29, a0, 0x7f800000); CHECKFLAGS(30, 5)
    FD(fa3, SNAN); fcvt.s.d fa0, fa3; fmv.x.w a0, fa0; CHECK(31, a0, 0x7fc00000); CHECKFLAGS(32, 0x10)
    li t0, 0x7f800001; fmv.w.x fa0, t0; fcvt.d.s fa5, fa0; CHECKD(33, fa5, QNAN); CHECKFLAGS(34, 0x10)
    li t0, 0x3f800000; fmv.d.x fa0, t0; fcvt.d.s fa5, fa0; CHECKD(35, fa5, QNAN)   /* unboxed */
    /* double -> int */
    FD(fa3, 0xc004000000000000)   /* -2.5 */
    fcvt.l.d a0, fa3, rne; CHECK(36, a0, -2)
    fcvt.l.d a0, fa3, rmm; CHECK(37, a0, -3)
    fcvt.l.d a0, fa3, rup; CHECK(38, a0, -2)
    fcvt.w.d a0, fa3, rdn; CHECK(39, a0, -3)
    fcvt.lu.d a0, fa3, rtz; CHECK(40, a0, 0); CHECKFLAGS(41, 0x11)
    FD(fa3, 0x43e0000000000000)   /* 2^63 */
    fcvt.l.d a0, fa3, rtz; CHECK(42, a0, 0x7fffffffffffffff); CHECKFLAGS(43, 0x10)
    fcvt.lu.d a0, fa3, rtz; CHECK(44, a0, 0x8000000000000000); CHECKFLAGS(45, 0)
    FD(fa3, 0x41f0000000000000)   /* 2^32 */
    fcvt.wu.d a0, fa3, rtz; CHECK(46, a0, -1); CHECKFLAGS(47, 0x10)
    fcvt.w.d a0, fa3, rtz; CHECK(48, a0, 0x7fffffff)
    FD(fa3, QNAN); fcvt.w.d a0, fa3; CHECK(49, a0, 0x7fffffff); fcvt.lu.d a0, fa3; CHECK(50, a0, -1)
    FD(fa3, 0xfff0000000000000); fcvt.w.d a0, fa3; CHECK(51, a0, 0xffffffff80000000)
    csrw fflags, zero; FD(fa3, 0x41efffffffe00000)   /* 4294967295 */
    fcvt.wu.d a0, fa3; CHECK(52, a0, -1); CHECKFLAGS(53, 0)
    /* int -> double */
    li a1, 0x7fffffffffffffff; fcvt.d.l fa0, a1; CHECKD(54, fa0, 0x43e0000000000000); CHECKFLAGS(55, 1)
    fcvt.d.l fa0, a1, rtz; CHECKD(56, fa0, 0x43dfffffffffffff)
    li a1, -1; fcvt.d.lu fa0, a1; CHECKD(57, fa0, 0x43f0000000000000)
    fcvt.d.w fa0, a1; CHECKD(58, fa0, 0xbff0000000000000)
    fcvt.d.wu fa0, a1; CHECKD(59, fa0, 0x41efffffffe00000); CHECKFLAGS(60, 1)
    csrw fflags, zero
    /* min / max / compares */
    FD(fa3, SNAN); FD(fa4, TWO)
    fmax.d fa0, fa3, fa4; CHECKD(61, fa0, TWO); CHECKFLAGS(62, 0x10)
    FD(fa3, QNAN); fmin.d fa0, fa3, fa3; CHECKD(63, fa0, QNAN); CHECKFLAGS(64, 0)
    fmv.d.x fa3, zero; fneg.d fa4, fa3
    fmin.d fa0, fa3, fa4; CHECKD(65, fa0, 0x8000000000000000)
    fmax.d fa0, fa4, fa3; CHECKD(66, fa0, 0)
    FD(fa3, QNAN); FD(fa4, ONE)
    fle.d a0, fa3, fa4; CHECK(67, a0, 0); CHECKFLAGS(68, 0x10)
    feq.d a0, fa3, fa4; CHECK(69, a0, 0); CHECKFLAGS(70, 0)
    FD(fa3, TWO); flt.d a0, fa4, fa3; CHECK(71, a0, 1)
    /* fclass */
    FD(fa3, 0xfff0000000000000); fclass.d a0, fa3; CHECK(72, a0, 1)
    FD(fa3, 0x8000000000000001); fclass.d a0, fa3; CHECK(73, a0, 4)
    FD(fa3, SNAN); fclass.d a0, fa3; CHECK(74, a0, 0x100)
    FD(fa3, QNAN); fclass.d a0, fa3; CHECK(75, a0, 0x200)
    FD(fa3, 0x7ff0000000000000); fclass.d a0, fa3; CHECK(76, a0, 0x80)
    /* fma */
    FD(fa1, TWO); FD(fa2, THREE); FD(fa3, ONE)
    fmadd.d fa0, fa1, fa2, fa3; CHECKD(77, fa0, 0x401c000000000000)
    fnmadd.d fa0, fa1, fa2, fa3; CHECKD(78, fa0, 0xc01c000000000000)
    fmsub.d fa0, fa1, fa2, fa3; CHECKD(79, fa0, 0x4014000000000000)
    fnmsub.d fa0, fa1, fa2, fa3; CHECKD(80, fa0, 0xc014000000000000)
    FD(fa1, 0x3ff0000000000001); FD(fa2, 0x3feffffffffffffe); FD(fa3, 0xbff0000000000000)
    fmadd.d fa0, fa1, fa2, fa3; CHECKD(81, fa0, 0xb970000000000000)
    /* loads and stores */
    la a1, dbuf; li t0, 0x0123456789abcdef; sd t0, 0(a1)
    fld fa0, 0(a1); fsd fa0, 8(a1); ld a0, 8(a1); CHECK(82, a0, 0x0123456789abcdef)
    fsgnjn.d fa0, fa0, fa0; CHECKD(83, fa0, 0x8123456789abcdef)
    j pass
END
.data
.align 4
dbuf: .space 16
