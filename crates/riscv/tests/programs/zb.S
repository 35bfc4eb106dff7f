/* Zba, Zbb, Zbs: every instruction once or more, with edge cases. */
#include "common.h"
.option arch, +zba, +zbb, +zbs
START
tests:
    li a0, 0xffffffff00000005; li a1, 0x100
    sh1add a2, a0, a1; CHECK(1, a2, 0xfffffffe0000010a)
    sh2add a2, a0, a1; CHECK(2, a2, 0xfffffffc00000114)
    sh3add a2, a0, a1; CHECK(3, a2, 0xfffffff800000128)
    add.uw a2, a0, a1; CHECK(4, a2, 0x105)
    sh1add.uw a2, a0, a1; CHECK(5, a2, 0x10a)
    sh3add.uw a2, a0, a1; CHECK(6, a2, 0x128)
    li a0, 0x80000001; slli.uw a2, a0, 4; CHECK(7, a2, 0x800000010)
    zext.w a2, a0; CHECK(8, a2, 0x80000001)
    /* Zbb logic */
    li a0, 0xff00; li a1, 0x0ff0
    andn a2, a0, a1; CHECK(9, a2, 0xf000)
    orn a2, a0, a1; CHECK(10, a2, 0xffffffffffffff0f)
    xnor a2, a0, a1; CHECK(11, a2, 0xffffffffffff0f0f)
    /* counts */
    li a0, 0x0000100000000000; clz a2, a0; CHECK(12, a2, 19); ctz a2, a0; CHECK(13, a2, 44)
    clz a2, zero; CHECK(14, a2, 64); ctz a2, zero; CHECK(15, a2, 64)
    li a0, 0xf0f0f0f0f0f0f0f0; cpop a2, a0; CHECK(16, a2, 32)
    li a0, 0xffffffff00010000; clzw a2, a0; CHECK(17, a2, 15); ctzw a2, a0; CHECK(18, a2, 16); cpopw a2, a0; CHECK(19, a2, 1)
    clzw a2, zero; CHECK(20, a2, 32)
    /* min/max */
    li a0, -1; li a1, 1
    max a2, a0, a1; CHECK(21, a2, 1); maxu a2, a0, a1; CHECK(22, a2, -1)
    min a2, a0, a1; CHECK(23, a2, -1); minu a2, a0, a1; CHECK(24, a2, 1)
    /* extensions */
    li a0, 0x1234567890abcdef
    sext.b a2, a0; CHECK(25, a2, 0xffffffffffffffef)
    sext.h a2, a0; CHECK(26, a2, 0xffffffffffffcdef)
    zext.h a2, a0; CHECK(27, a2, 0xcdef)
    /* rotates */
    rol a2, a0, a1; CHECK(28, a2, 0x2468acf121579bde)
    ror a2, a0, a1; CHECK(29, a2, 0x891a2b3c4855e6f7)
    rori a2, a0, 4; CHECK(30, a2, 0xf1234567890abcde)
    li a1, 33; rolw a2, a0, a1; CHECK(31, a2, 0x21579bdf)
    rorw a2, a0, a1; CHECK(32, a2, 0xffffffffc855e6f7)
    roriw a2, a0, 4; CHECK(33, a2, 0xfffffffff90abcde)
    /* orc.b, rev8 */
    li a0, 0x0100ff0000300000; orc.b a2, a0; CHECK(34, a2, 0xff00ff0000ff0000)
    li a0, 0x0102030405060708; rev8 a2, a0; CHECK(35, a2, 0x0807060504030201)
    /* Zbs */
    li a0, 0xf0; li a1, 68
    bclr a2, a0, a1; CHECK(36, a2, 0xe0)
    bext a2, a0, a1; CHECK(37, a2, 1)
    binv a2, a0, a1; CHECK(38, a2, 0xe0)
    bset a2, a0, a1; CHECK(39, a2, 0xf0)
    bseti a2, a0, 63; CHECK(40, a2, 0x80000000000000f0)
    bclri a2, a0, 7; CHECK(41, a2, 0x70)
    binvi a2, a0, 0; CHECK(42, a2, 0xf1)
    bexti a2, a0, 3; CHECK(43, a2, 0)
    j pass
END
