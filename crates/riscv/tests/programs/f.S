/* The F extension: exact IEEE results, rounding modes, fflags, NaN-boxing,
 * conversion saturation, min/max and compare NaN rules, fclass, FMA. */
#include "common.h"
#define SX(b) (((b) ^ 0x80000000) - 0x80000000)
#define FS(reg, bits) li t0, bits; fmv.w.x reg, t0
#define CHECKF(n, freg, bits) fmv.x.w a0, freg; CHECK(n, a0, SX(bits))
#define CHECKFLAGS(n, val) csrr a0, fflags; CHECK(n, a0, val); csrw fflags, zero
#define ONE 0x3f800000
#define TWO 0x40000000
#define THREE 0x40400000
#define EPS24 0x33800000
#define QNAN 0x7fc00000
#define SNAN 0x7f800001
START
tests:
    li t0, 0x2000; csrs mstatus, t0; csrw fcsr, zero
    FS(fa1, ONE); FS(fa2, TWO)
    fadd.s fa0, fa1, fa2; CHECKF(1, fa0, THREE); CHECKFLAGS(2, 0)
    /* 1 + 2^-24 is a tie: each rounding mode */
    FS(fa2, EPS24)
    fadd.s fa0, fa1, fa2, rne; CHECKF(3, fa0, ONE); CHECKFLAGS(4, 1)
    fadd.s fa0, fa1, fa2, rtz; CHECKF(5, fa0, ONE)
    fadd.s fa0, fa1, fa2, rdn; CHECKF(6, fa0, ONE)
    fadd.s fa0, fa1, fa2, rup; CHECKF(7, fa0, 0x3f800001)
    fadd.s fa0, fa1, fa2, rmm; CHECKF(8, fa0, 0x3f800001)
    fneg.s fa3, fa1; fneg.s fa4, fa2
    fadd.s fa0, fa3, fa4, rdn; CHECKF(9, fa0, 0xbf800001)
    fadd.s fa0, fa3, fa4, rup; CHECKF(10, fa0, 0xbf800000)
    csrw fflags, zero
    /* dynamic rounding through frm */
    csrwi frm, 3; fadd.s fa0, fa1, fa2; CHECKF(11, fa0, 0x3f800001)
    csrwi frm, 0; fadd.s fa0, fa1, fa2; CHECKF(12, fa0, ONE)
    /* invalid frm with dynamic rm, and static rm 5: illegal instruction */
    csrwi frm, 5
    EXPECT_TRAP(13, fadd.s fa0, fa1, fa2)
    CHECK(14, s9, 2)
    csrwi frm, 0
    EXPECT_TRAP(15, .word 0x00c5d553)
    CHECK(16, s9, 2); CHECK(17, s10, 0x00c5d553)
    csrw fflags, zero
    /* exceptions */
    fmv.w.x fa3, zero
    fdiv.s fa0, fa1, fa3; CHECKF(18, fa0, 0x7f800000); CHECKFLAGS(19, 8)
    fdiv.s fa0, fa3, fa3; CHECKF(20, fa0, QNAN); CHECKFLAGS(21, 0x10)
    fsqrt.s fa0, fa4; CHECKF(22, fa0, QNAN); CHECKFLAGS(23, 0x10)
    FS(fa3, 0x7f000000); FS(fa4, 0x41200000)   /* 2^127, 10 */
    fmul.s fa0, fa3, fa4; CHECKF(24, fa0, 0x7f800000); CHECKFLAGS(25, 5)
    fmul.s fa0, fa3, fa4, rtz; CHECKF(26, fa0, 0x7f7fffff); CHECKFLAGS(27, 5)
    FS(fa3, 0x00800000); FS(fa4, 0x3e800000)   /* smallest normal, 0.25 */
    fmul.s fa0, fa3, fa4; CHECKF(28, fa0, 0x00200000); CHECKFLAGS(29, 0)
    FS(fa4, 0x3e800001)
    fmul.s fa0, fa3, fa4; CHECKFLAGS(30, 3)
    FS(fa3, TWO); fsqrt.s fa0, fa3; CHECKF(31, fa0, 0x3fb504f3); CHECKFLAGS(32, 1)
    /* NaN-boxing */
    li t0, ONE; fmv.d.x fa3, t0                 /* not boxed */
    fadd.s fa0, fa3, fa3; CHECKF(33, fa0, QNAN); CHECKFLAGS(34, 0)
    fsgnjn.s fa0, fa3, fa3; CHECKF(35, fa0, 0xffc00000)
    FS(fa0, ONE); fmv.x.d a0, fa0; CHECK(36, a0, 0xffffffff3f800000)
    FS(fa0, 0xbf800000); fmv.x.w a0, fa0; CHECK(37, a0, 0xffffffffbf800000)
    la a1, fbuf; li t0, 0x12345678; sw t0, 0(a1); li t0, -1; sw t0, 4(a1)
    flw fa0, 0(a1); fmv.x.d a0, fa0; CHECK(38, a0, 0xffffffff12345678)
    fsw fa3, 8(a1); lwu a0, 8(a1); CHECK(39, a0, ONE)
    /* float -> int: rounding and saturation */
    FS(fa3, 0x40200000)                          /* 2.5 */
    fcvt.w.s a0, fa3, rne; CHECK(40, a0, 2)
    fcvt.w.s a0, fa3, rmm; CHECK(41, a0, 3)
    fcvt.w.s a0, fa3, rup; CHECK(42, a0, 3)
    fcvt.w.s a0, fa3, rdn; CHECK(43, a0, 2)
    fneg.s fa3, fa3; fcvt.w.s a0, fa3, rdn; CHECK(44, a0, -3); fcvt.w.s a0, fa3, rtz; CHECK(45, a0, -2)
    CHECKFLAGS(46, 1)
    FS(fa3, 0x4f32d05e)                          /* 3e9 */
    fcvt.w.s a0, fa3, rtz; CHECK(47, a0, 0x7fffffff); CHECKFLAGS(48, 0x10)
    fneg.s fa3, fa3; fcvt.w.s a0, fa3, rtz; CHECK(49, a0, 0xffffffff80000000); CHECKFLAGS(50, 0x10)
    FS(fa3, QNAN); fcvt.w.s a0, fa3, rtz; CHECK(51, a0, 0x7fffffff); CHECKFLAGS(52, 0x10)
    fcvt.l.s a0, fa3, rtz; CHECK(53, a0, 0x7fffffffffffffff)
    fcvt.wu.s a0, fa3, rtz; CHECK(54, a0, -1)
    FS(fa3, 0xbf800000); fcvt.wu.s a0, fa3, rtz; CHECK(55, a0, 0); CHECKFLAGS(56, 0x10)
    FS(fa3, 0xbf000000); fcvt.wu.s a0, fa3, rtz; CHECK(57, a0, 0); CHECKFLAGS(58, 1)
    FS(fa3, 0x4f6e6b28); fcvt.wu.s a0, fa3, rtz; CHECK(59, a0, 0xffffffffee6b2800); CHECKFLAGS(60, 0)
    FS(fa3, 0xff800000); fcvt.l.s a0, fa3, rtz; CHECK(61, a0, 0x8000000000000000)
    FS(fa3, 0x60ad78ec); fcvt.lu.s a0, fa3, rtz; CHECK(62, a0, -1); CHECKFLAGS(63, 0x10)
    /* int -> float */
    li a0, 0x7fffffffffffffff; fcvt.s.l fa0, a0; CHECKF(64, fa0, 0x5f000000); CHECKFLAGS(65, 1)
    li a1, -1; fcvt.s.wu fa0, a1; CHECKF(66, fa0, 0x4f800000)
    fcvt.s.wu fa0, a1, rtz; CHECKF(67, fa0, 0x4f7fffff)
    fcvt.s.w fa0, a1; CHECKF(68, fa0, 0xbf800000)
    li a0, 0x100000001; fcvt.s.w fa0, a0; CHECKF(69, fa0, ONE)
    csrw fflags, zero
    /* min / max */
    FS(fa3, SNAN); FS(fa4, TWO)
    fmin.s fa0, fa3, fa4; CHECKF(70, fa0, TWO); CHECKFLAGS(71, 0x10)
    FS(fa3, QNAN); fmax.s fa0, fa3, fa4; CHECKF(72, fa0, TWO); CHECKFLAGS(73, 0)
    fmax.s fa0, fa3, fa3; CHECKF(74, fa0, QNAN)
    fmv.w.x fa3, zero; fneg.s fa4, fa3
    fmin.s fa0, fa3, fa4; CHECKF(75, fa0, 0x80000000)
    fmax.s fa0, fa4, fa3; CHECKF(76, fa0, 0)
    /* compares */
    FS(fa3, QNAN); FS(fa4, ONE)
    feq.s a0, fa3, fa4; CHECK(77, a0, 0); CHECKFLAGS(78, 0)
    flt.s a0, fa3, fa4; CHECK(79, a0, 0); CHECKFLAGS(80, 0x10)
    FS(fa3, SNAN); feq.s a0, fa3, fa4; CHECKFLAGS(81, 0x10)
    fle.s a0, fa4, fa4; CHECK(82, a0, 1)
    fmv.w.x fa3, zero; fneg.s fa5, fa3; feq.s a0, fa3, fa5; CHECK(83, a0, 1)
    /* fclass */
    FS(fa3, 0xff800000); fclass.s a0, fa3; CHECK(84, a0, 0x1)
    FS(fa3, 0xbf800000); fclass.s a0, fa3; CHECK(85, a0, 0x2)
    FS(fa3, 0x80000001); fclass.s a0, fa3; CHECK(86, a0, 0x4)
    FS(fa3, 0x80000000); fclass.s a0, fa3; CHECK(87, a0, 0x8)
    fmv.w.x fa3, zero; fclass.s a0, fa3; CHECK(88, a0, 0x10)
    FS(fa3, 0x00000001); fclass.s a0, fa3; CHECK(89, a0, 0x20)
    FS(fa3, ONE); fclass.s a0, fa3; CHECK(90, a0, 0x40)
    FS(fa3, 0x7f800000); fclass.s a0, fa3; CHECK(91, a0, 0x80)
    FS(fa3, SNAN); fclass.s a0, fa3; CHECK(92, a0, 0x100)
    FS(fa3, QNAN); fclass.s a0, fa3; CHECK(93, a0, 0x200)
    li t0, ONE; fmv.d.x fa3, t0; fclass.s a0, fa3; CHECK(94, a0, 0x200)
    /* fused multiply-add */
    FS(fa1, TWO); FS(fa2, THREE); FS(fa3, ONE)
    fmadd.s fa0, fa1, fa2, fa3; CHECKF(95, fa0, 0x40e00000)
    fmsub.s fa0, fa1, fa2, fa3; CHECKF(96, fa0, 0x40a00000)
    fnmsub.s fa0, fa1, fa2, fa3; CHECKF(97, fa0, 0xc0a00000)
    fnmadd.s fa0, fa1, fa2, fa3; CHECKF(98, fa0, 0xc0e00000)
    CHECKFLAGS(99, 0)
    FS(fa1, 0x7f800000); fmv.w.x fa2, zero; FS(fa3, QNAN)
    fmadd.s fa0, fa1, fa2, fa3; CHECKF(100, fa0, QNAN); CHECKFLAGS(101, 0x10)
    /* fma is fused: (1 + 2^-23) * (1 - 2^-23) - 1 = -2^-46 exactly */
    FS(fa1, 0x3f800001); FS(fa2, 0x3f7ffffe); FS(fa3, 0xbf800000)
    fmadd.s fa0, fa1, fa2, fa3; CHECKF(102, fa0, 0xa8800000)
    /* sign injection */
    FS(fa1, ONE); FS(fa2, 0xc0000000)
    fsgnj.s fa0, fa1, fa2; CHECKF(103, fa0, 0xbf800000)
    fsgnjx.s fa0, fa2, fa2; CHECKF(104, fa0, 0x40000000)
    fabs.s fa0, fa2; CHECKF(105, fa0, TWO)
    /* FP state writes mark FS dirty */
    li t0, 0x6000; csrc mstatus, t0; li t0, 0x2000; csrs mstatus, t0
    fmv.w.x fa0, zero; csrr a0, mstatus; srli a0, a0, 13; andi a0, a0, 3; CHECK(106, a0, 3)
    j pass
END
.data
.align 4
fbuf: .space 16
