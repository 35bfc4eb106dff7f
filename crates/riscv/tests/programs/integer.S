#include "common.h"
START
tests:
    /* add/sub wrap */
    li a0, -1; li a1, 1; add a2, a0, a1; CHECK(1, a2, 0)
    li a0, 0; addi a2, a0, -1; CHECK(2, a2, -1)
    li a0, 0x7fffffffffffffff; addi a2, a0, 1; CHECK(3, a2, 0x8000000000000000)
    sub a2, zero, a1; CHECK(4, a2, -1)
    /* 32-bit ops sign-extend */
    li a0, 0x7fffffff; addiw a2, a0, 1; CHECK(5, a2, 0xffffffff80000000)
    li a0, 0xffffffff; addw a2, a0, zero; CHECK(6, a2, -1)
    li a0, 0x100000000; subw a2, zero, a0; CHECK(7, a2, 0)
    /* shifts */
    li a0, 1; slli a2, a0, 63; CHECK(8, a2, 0x8000000000000000)
    srai a3, a2, 63; CHECK(9, a3, -1)
    srli a3, a2, 63; CHECK(10, a3, 1)
    li a1, 65; sll a3, a0, a1; CHECK(11, a3, 2)
    li a0, 0x80000000; sraiw a3, a0, 4; CHECK(12, a3, 0xfffffffff8000000)
    srliw a3, a0, 4; CHECK(13, a3, 0x08000000)
    li a0, 1; slliw a3, a0, 31; CHECK(14, a3, 0xffffffff80000000)
    li a0, -1; li a1, 36; srlw a3, a0, a1; CHECK(15, a3, 0x0fffffff)
    sraw a3, a0, a1; CHECK(16, a3, -1)
    /* compares */
    li a0, -1; li a1, 1; slt a2, a0, a1; CHECK(17, a2, 1)
    sltu a2, a0, a1; CHECK(18, a2, 0)
    slti a2, a0, 0; CHECK(19, a2, 1)
    sltiu a2, a1, -1; CHECK(20, a2, 1)
    /* logic */
    li a0, 0xff00ff00; li a1, 0x0ff00ff0
    and a2, a0, a1; CHECK(21, a2, 0x0f000f00)
    or a2, a0, a1; CHECK(22, a2, 0xfff0fff0)
    xor a2, a0, a1; CHECK(23, a2, 0xf0f0f0f0)
    xori a2, a0, -1; CHECK(24, a2, 0xffffffff00ff00ff)
    andi a2, a0, 0x7f0; CHECK(25, a2, 0x700)
    /* lui / auipc */
    lui a2, 0x80000; CHECK(26, a2, 0xffffffff80000000)
    1: auipc a2, 0; la a3, 1b; sub a4, a3, a2; CHECK(27, a4, 0)
    /* branches */
    li gp, 28; li a0, -2; li a1, 3
    blt a1, a0, fail; bge a0, a1, fail; bltu a0, a1, fail; bgeu a1, a0, fail
    beq a0, a1, fail; bne a0, a0, fail
    blt a0, a1, 1f; j fail; 1:
    bgeu a0, a1, 1f; j fail; 1:
    /* jal / jalr link and target (bit 0 cleared) */
    jal ra, 1f; 2: j fail; 1: la a3, 2b; sub a4, ra, a3; CHECK(29, a4, 0)
    la a0, 3f; addi a0, a0, 1; jalr ra, 0(a0); 4: j fail; 3: la a3, 4b
    sub a4, ra, a3; CHECK(30, a4, 0)
    /* loads and stores, sign and zero extension */
    la a0, buf; li a1, 0x8182838485868788; sd a1, 0(a0)
    lb a2, 0(a0); CHECK(31, a2, 0xffffffffffffff88)
    lbu a2, 0(a0); CHECK(32, a2, 0x88)
    lh a2, 2(a0); CHECK(33, a2, 0xffffffffffff8586)
    lhu a2, 2(a0); CHECK(34, a2, 0x8586)
    lw a2, 4(a0); CHECK(35, a2, 0xffffffff81828384)
    lwu a2, 4(a0); CHECK(36, a2, 0x81828384)
    ld a2, 0(a0); CHECK(37, a2, 0x8182838485868788)
    sb zero, 7(a0); ld a2, 0(a0); CHECK(38, a2, 0x0082838485868788)
    li a1, 0x1122; sh a1, 0(a0); lhu a2, 0(a0); CHECK(39, a2, 0x1122)
    li a1, 0xdeadbeef; sw a1, 4(a0); lwu a2, 4(a0); CHECK(40, a2, 0xdeadbeef)
    /* misaligned access is handled in hardware */
    li a1, 0x0102030405060708; sd a1, 1(a0); ld a2, 1(a0); CHECK(41, a2, 0x0102030405060708)
    lw a2, 3(a0); CHECK(42, a2, 0x03040506)
    lhu a2, 7(a0); CHECK(43, a2, 0x0102)
    /* misaligned across a page boundary */
    la a0, page_end; addi a0, a0, -3; li a1, 0x1122334455667788; sd a1, 0(a0)
    ld a2, 0(a0); CHECK(44, a2, 0x1122334455667788)
    lbu a2, 3(a0); CHECK(45, a2, 0x55)
    /* self-modifying code: run a routine, rewrite one of its instructions, fence.i, run again */
    jal ra, smc_routine; CHECK(47, a0, 1)
    la t0, smc_insn; li t1, 0x00200513; sw t1, 0(t0); fence.i   /* li a0, 2 */
    jal ra, smc_routine; CHECK(48, a0, 2)
    /* x0 stays zero */
    li a0, 5; add zero, a0, a0; CHECK(46, zero, 0)
    j pass
.option push
.option norvc
smc_routine:
smc_insn:
    li a0, 1
    ret
.option pop
END

.data
.align 3
buf: .dword 0, 0, 0
.align 12
.space 4096
page_end:
.space 16
