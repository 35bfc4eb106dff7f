/* The C extension: every RV64C instruction, written with explicit c.* mnemonics. */
#include "common.h"
START
tests:
    c.li a0, -7; CHECK(1, a0, -7)
    c.addi a0, 3; CHECK(2, a0, -4)
    c.addiw a0, 1; CHECK(3, a0, -3)
    c.lui a1, 0x1f; CHECK(4, a1, 0x1f000)
    c.lui a1, 0xfffff; CHECK(5, a1, -4096)
    mv s0, sp; la sp, stack_top
    c.addi16sp sp, -64; la t0, stack_top - 64
    sub t1, sp, t0; CHECK(7, t1, 0)
    c.addi4spn a2, sp, 16; addi t0, sp, 16; sub t1, a2, t0; CHECK(8, t1, 0)
    li a3, 0x123456789abcdef0
    c.sdsp a3, 8(sp); c.ldsp a4, 8(sp); CHECK(9, a4, 0x123456789abcdef0)
    c.swsp a3, 4(sp); c.lwsp a4, 4(sp); CHECK(10, a4, 0xffffffff9abcdef0)
    mv a2, sp
    c.sd a3, 16(a2); c.ld a5, 16(a2); CHECK(11, a5, 0x123456789abcdef0)
    c.sw a3, 24(a2); c.lw a5, 24(a2); CHECK(12, a5, 0xffffffff9abcdef0)
    li t0, 0x6000; csrs mstatus, t0
    li t0, 0x4010000000000000; fmv.d.x fa0, t0
    c.fsd fa0, 32(a2); c.fld fa1, 32(a2); fmv.x.d a5, fa1; CHECK(13, a5, 0x4010000000000000)
    c.fsdsp fa0, 40(sp); c.fldsp fa2, 40(sp); fmv.x.d a5, fa2; CHECK(14, a5, 0x4010000000000000)
    /* ALU */
    li a0, 0xf0; li a1, 0x3c
    c.mv a2, a0; CHECK(15, a2, 0xf0)
    c.add a2, a1; CHECK(16, a2, 0x12c)
    c.mv a2, a0; c.sub a2, a1; CHECK(17, a2, 0xb4)
    c.mv a2, a0; c.xor a2, a1; CHECK(18, a2, 0xcc)
    c.mv a2, a0; c.or a2, a1; CHECK(19, a2, 0xfc)
    c.mv a2, a0; c.and a2, a1; CHECK(20, a2, 0x30)
    c.mv a2, a0; c.andi a2, -16; CHECK(21, a2, 0xf0)
    li a2, 0x7fffffff; c.addw a2, a1; CHECK(22, a2, 0xffffffff8000003b)
    li a2, 0x80000000; c.subw a2, a1; CHECK(23, a2, 0x7fffffc4)
    li a2, 1; c.slli a2, 63; CHECK(24, a2, 0x8000000000000000)
    c.srai a2, 3; CHECK(25, a2, 0xf000000000000000)
    c.srli a2, 60; CHECK(26, a2, 0xf)
    /* control flow */
    li gp, 27; li a0, 0
    c.beqz a0, 1f; j fail
1:  c.bnez a0, fail
    li a0, 1; c.bnez a0, 1f; j fail
1:  c.j 1f; j fail
1:  la a0, 2f; c.jr a0; j fail
2:  la a0, 3f; c.jalr a0; 4: j fail
3:  la t0, 4b; sub t0, ra, t0; CHECK(28, t0, 0)
    c.nop
    mv sp, s0
    j pass
END
.data
.align 4
stack: .space 256
stack_top:
