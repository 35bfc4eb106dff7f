#include "common.h"
START
tests:
    la a0, word
    li a1, 5; sd a1, 0(a0)
    li a2, 3; amoadd.d a3, a2, (a0); CHECK(1, a3, 5)
    ld a3, 0(a0); CHECK(2, a3, 8)
    li a2, -1; amoswap.d a3, a2, (a0); CHECK(3, a3, 8)
    li a2, 1; amomin.d a3, a2, (a0); ld a3, 0(a0); CHECK(4, a3, -1)
    amominu.d a3, a2, (a0); ld a3, 0(a0); CHECK(5, a3, 1)
    li a2, -5; amomax.d a3, a2, (a0); ld a3, 0(a0); CHECK(6, a3, 1)
    amomaxu.d a3, a2, (a0); ld a3, 0(a0); CHECK(7, a3, -5)
    li a2, 0xff; amoand.d a3, a2, (a0); ld a3, 0(a0); CHECK(8, a3, 0xfb)
    li a2, 0x100; amoor.d a3, a2, (a0); ld a3, 0(a0); CHECK(9, a3, 0x1fb)
    li a2, 0x1ff; amoxor.d a3, a2, (a0); ld a3, 0(a0); CHECK(10, a3, 0x004)
    /* word AMOs sign-extend the old value and leave the upper word alone */
    li a1, 0x11111111ffffffff; sd a1, 0(a0)
    li a2, 1; amoadd.w a3, a2, (a0); CHECK(11, a3, -1)
    ld a3, 0(a0); CHECK(12, a3, 0x1111111100000000)
    li a2, -1; amomaxu.w a3, a2, (a0); lw a3, 0(a0); CHECK(13, a3, -1)
    li a2, 7; amomin.w a3, a2, (a0); lw a3, 0(a0); CHECK(14, a3, -1)
    /* LR/SC success */
    li a1, 10; sd a1, 0(a0)
    lr.d a3, (a0); addi a3, a3, 1; sc.d a4, a3, (a0); CHECK(15, a4, 0)
    ld a3, 0(a0); CHECK(16, a3, 11)
    /* SC without a reservation fails and does not store */
    li a3, 99; sc.d a4, a3, (a0); CHECK(17, a4, 1)
    ld a3, 0(a0); CHECK(18, a3, 11)
    /* SC after an intervening store to the reserved address fails */
    lr.d a3, (a0); li a5, 42; sd a5, 0(a0); sc.d a4, a3, (a0); CHECK(19, a4, 1)
    ld a3, 0(a0); CHECK(20, a3, 42)
    /* a second SC after a successful one fails */
    lr.w a3, (a0); sc.w a4, a3, (a0); CHECK(21, a4, 0); sc.w a4, a3, (a0); CHECK(22, a4, 1)
    /* a store elsewhere keeps the reservation */
    la a6, other; lr.d a3, (a0); sd a5, 0(a6); sc.d a4, a3, (a0); CHECK(23, a4, 0)
    /* lr.w sign-extends */
    li a1, 0x80000000; sw a1, 0(a0); lr.w a3, (a0); CHECK(24, a3, 0xffffffff80000000)
    /* misaligned AMO: store/AMO address misaligned (6), tval = address */
    addi a1, a0, 1
    EXPECT_TRAP(25, amoadd.w a3, a2, (a1))
    CHECK(26, s9, 6); sub t0, s10, a1; CHECK(27, t0, 0)
    j pass
END
.data
.align 4
word: .dword 0, 0
other: .dword 0
