#include "common.h"
START
tests:
    /* illegal instruction: cause 2, tval = the instruction bits, epc = its address */
    EXPECT_TRAP(1, 10: .word 0xffffffff)
    CHECK(2, s9, 2); CHECK(3, s10, 0xffffffff)
    la t0, 10b; sub t0, s11, t0; CHECK(4, t0, 0)
    /* a 16-bit illegal instruction: tval holds its 16 bits */
    EXPECT_TRAP(5, .half 0x0000)
    CHECK(6, s9, 2); CHECK(7, s10, 0)
    EXPECT_TRAP(8, .half 0x4002)   /* c.lwsp x0: reserved */
    CHECK(9, s9, 2); CHECK(10, s10, 0x4002)
    /* ecall from M: cause 11, tval 0 */
    li s10, 77
    EXPECT_TRAP(11, ecall)
    CHECK(12, s9, 11); CHECK(13, s10, 0); CHECK(14, s8, 3)
    /* ebreak: cause 3, tval = pc */
    EXPECT_TRAP(15, 11: ebreak)
    CHECK(16, s9, 3); la t0, 11b; sub t0, s10, t0; CHECK(17, t0, 0)
    /* c.ebreak too */
    EXPECT_TRAP(18, c.ebreak)
    CHECK(19, s9, 3)
    /* load / store access faults: cause 5 / 7, tval = address */
    li a0, 0x40
    EXPECT_TRAP(20, ld a1, 0(a0))
    CHECK(21, s9, 5); CHECK(22, s10, 0x40)
    EXPECT_TRAP(23, sw a1, 4(a0))
    CHECK(24, s9, 7); CHECK(25, s10, 0x44)
    /* instruction access fault: cause 1, tval = epc = target */
    EXPECT_TRAP(26, li a0, 0x1000; jr a0)
    CHECK(27, s9, 1); CHECK(28, s10, 0x1000); CHECK(29, s11, 0x1000)

    /* ecall from S and U reach M with causes 9 and 8 and MPP = mode */
    la t5, 1f; li s9, -1
    ENTER_MODE(1, 2f)
2:  ecall
1:  CHECK(30, s9, 9); CHECK(31, s8, 1)
    la t5, 1f; li s9, -1
    ENTER_MODE(0, 2f)
2:  ecall
1:  CHECK(32, s9, 8); CHECK(33, s8, 0)

    /* delegation: U ecall goes to S (stvec), S ecall still to M */
    li t0, 0x100; csrw medeleg, t0
    csrr t0, medeleg; CHECK(34, t0, 0x100)
    la t0, s_trap; csrw stvec, t0
    la t5, 1f; li s9, -1
    ENTER_MODE(0, 2f)
2:  ecall                       /* U -> S handler, resumes at 1f in S */
1:  mv a0, s9; mv a1, s8; mv a2, s11
    la t5, 3f; li s9, -1
    ecall                       /* S -> M handler, resumes at 3f in M */
3:  CHECK(35, a0, 8); CHECK(36, a1, 0); CHECK(37, s9, 9); CHECK(38, s8, 1)
    la t0, 2b; sub t0, a2, t0; CHECK(39, t0, 0)
    csrr t0, scause; CHECK(40, t0, 8)
    csrw medeleg, zero
    /* medeleg cannot delegate ecall from M (bit 11) */
    li t0, -1; csrw medeleg, t0; csrr t0, medeleg; CHECK(41, t0, 0xb3ff); csrw medeleg, zero

    /* mret: MIE <- MPIE, MPIE <- 1, MPP <- U */
    li t0, 0x1888; csrc mstatus, t0
    li t0, 0x1880; csrs mstatus, t0   /* MPP = M, MPIE = 1, MIE = 0 */
    la t0, 1f; csrw mepc, t0; mret
1:  csrr t0, mstatus; li t1, 0x1888; and t0, t0, t1; CHECK(42, t0, 0x88)
    csrci mstatus, 8
    /* mret to S clears MPRV */
    li t0, 0x20000; csrs mstatus, t0
    la t5, 1f; li s9, -1
    ENTER_MODE(1, 2f)
2:  ecall
1:  csrr t0, mstatus; srli t0, t0, 17; andi t0, t0, 1; CHECK(43, t0, 0)

    /* sret: SIE <- SPIE, SPIE <- 1, SPP <- U, and lands in U */
    la t5, 1f; li s9, -1
    ENTER_MODE(1, 2f)
2:  li t0, 0x122; csrc sstatus, t0; li t0, 0x20; csrs sstatus, t0   /* SPP=U SPIE=1 SIE=0 */
    la t0, 3f; csrw sepc, t0; sret
3:  ecall                                   /* from U: cause 8 */
1:  CHECK(44, s9, 8)
    csrr t0, mstatus; li t1, 0x122; and t0, t0, t1; CHECK(45, t0, 0x22)
    li t0, 2; csrc mstatus, t0

    /* TSR: sret in S is illegal */
    li t0, 0x400000; csrs mstatus, t0
    la t5, 1f; li s9, -1
    ENTER_MODE(1, 2f)
2:  sret
1:  CHECK(46, s9, 2); CHECK(47, s10, 0x10200073); CHECK(48, s8, 1)
    li t0, 0x400000; csrc mstatus, t0
    /* M-mode CSR from S is illegal, tval = instruction bits */
    la t5, 1f; li s9, -1
    ENTER_MODE(1, 2f)
2:  csrr a0, mstatus
1:  CHECK(49, s9, 2); CHECK(50, s10, 0x30002573)
    /* mret and wfi from U are illegal */
    la t5, 1f; li s9, -1
    ENTER_MODE(0, 2f)
2:  mret
1:  CHECK(51, s9, 2)
    la t5, 1f; li s9, -1
    ENTER_MODE(0, 2f)
2:  wfi
1:  CHECK(52, s9, 2); CHECK(53, s10, 0x10500073)
    /* vectored mtvec: exceptions still go to the base */
    la t0, m_trap; ori t0, t0, 1; csrw mtvec, t0
    EXPECT_TRAP(54, ecall)
    CHECK(55, s9, 11)
    j pass
END
