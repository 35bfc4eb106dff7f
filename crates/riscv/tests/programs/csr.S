#include "common.h"
START
tests:
    csrr a0, misa; CHECK(1, a0, 0x800000000014112d)
    csrr a0, mhartid; CHECK(2, a0, 0)
    csrr a0, mvendorid; CHECK(3, a0, 0)
    csrr a0, mconfigptr; CHECK(4, a0, 0)
    /* UXL = SXL = 64-bit */
    csrr a0, mstatus; srli a0, a0, 32; andi a0, a0, 0xf; CHECK(5, a0, 0xa)
    /* MPP is WARL: 2 is not a mode, the old value stays */
    li t0, 0x1800; csrc mstatus, t0; li t0, 0x800; csrs mstatus, t0
    li t0, 0x1000; csrc mstatus, t0  /* MPP = 1 */
    csrr a0, mstatus; li t0, 0x1800; and a0, a0, t0; CHECK(6, a0, 0x800)
    csrr t1, mstatus; li t0, 0x1800; not t2, t0; and t1, t1, t2; li t0, 0x1000; or t1, t1, t0; csrw mstatus, t1  /* try MPP = 2 */
    csrr a0, mstatus; li t0, 0x1800; and a0, a0, t0; CHECK(7, a0, 0x800)
    li t0, 0x1800; csrs mstatus, t0
    /* FS and SD */
    li t0, 0x6000; csrs mstatus, t0; csrr a0, mstatus; srli a0, a0, 63; CHECK(8, a0, 1)
    li t0, 0x6000; csrc mstatus, t0; csrr a0, mstatus; srli a0, a0, 63; CHECK(9, a0, 0)
    EXPECT_TRAP(10, fadd.d fa0, fa0, fa0)
    CHECK(11, s9, 2)
    EXPECT_TRAP(12, csrr a0, fcsr)
    CHECK(13, s9, 2)
    li t0, 0x2000; csrs mstatus, t0       /* FS = initial */
    fmv.d.x fa0, zero
    csrr a0, mstatus; srli a0, a0, 13; andi a0, a0, 3; CHECK(14, a0, 3)
    /* fcsr fields */
    csrwi frm, 3; csrwi fflags, 0x1f; csrr a0, fcsr; CHECK(15, a0, 0x7f)
    li t0, 0xff; csrw fcsr, t0; csrr a0, frm; CHECK(16, a0, 7); csrr a0, fflags; CHECK(17, a0, 0x1f)
    csrw fcsr, zero
    /* satp WARL */
    li t0, (9 << 60) | 0x12345; csrw satp, t0; csrr a0, satp; CHECK(18, a0, (9 << 60) | 0x12345)
    li t0, (10 << 60) | 0x1; csrw satp, t0; csrr a0, satp; CHECK(19, a0, (9 << 60) | 0x12345)
    li t0, (1 << 60); csrw satp, t0; csrr a0, satp; CHECK(20, a0, (9 << 60) | 0x12345)
    csrw satp, zero; csrr a0, satp; CHECK(21, a0, 0)
    /* csrrw returns the old value */
    li t0, 0x1234; csrw mscratch, t0; li t1, 0x5678; csrrw a0, mscratch, t1; CHECK(22, a0, 0x1234)
    csrrsi a0, mscratch, 1; CHECK(23, a0, 0x5678); csrr a0, mscratch; CHECK(24, a0, 0x5679)
    csrrci a0, mscratch, 0x19; csrr a0, mscratch; CHECK(25, a0, 0x5660)
    /* read-only CSRs: reading with csrrs x0 is fine, writing is illegal */
    csrrs a0, mhartid, zero; CHECK(26, a0, 0)
    EXPECT_TRAP(27, csrw mhartid, t0)
    CHECK(28, s9, 2)
    EXPECT_TRAP(29, csrrsi a0, cycle, 1)
    CHECK(30, s9, 2)
    /* unknown CSR */
    EXPECT_TRAP(31, csrr a0, 0x7c0)
    CHECK(32, s9, 2); CHECK(33, s10, 0x7c002573)
    /* instret counts retired instructions; a write takes effect for the next one */
    rdinstret a0; nop; rdinstret a1; sub a1, a1, a0; CHECK(34, a1, 2)
    li t0, 100; csrw minstret, t0; csrr a0, minstret; CHECK(35, a0, 100)
    rdcycle a0; rdcycle a1; bgeu a0, a1, fail
    /* time advances */
    rdtime a0; li a2, 10000000
1:  rdtime a1; bne a0, a1, 2f; addi a2, a2, -1; bnez a2, 1b; li gp, 36; j fail
2:
    /* hpm counters read zero */
    li t0, 5; csrw mhpmcounter3, t0; csrr a0, mhpmcounter3; CHECK(37, a0, 0)
    csrr a0, hpmcounter3; CHECK(38, a0, 0); csrr a0, mhpmevent3; CHECK(39, a0, 0)
    /* PMP registers */
    li t0, -1; csrw pmpaddr0, t0; csrr a0, pmpaddr0; CHECK(40, a0, 0x3fffffffffffff)
    li t0, 0x021f; csrw pmpcfg0, t0; csrr a0, pmpcfg0; CHECK(41, a0, 0x1f)
    EXPECT_TRAP(42, csrr a0, pmpcfg1)
    CHECK(43, s9, 2)
    csrw pmpcfg0, zero
    /* WARL masks */
    li t0, -1; csrw menvcfg, t0; csrr a0, menvcfg; CHECK(44, a0, 0x8000000000000001)
    csrw menvcfg, zero
    li t0, -1; csrw mideleg, t0; csrr a0, mideleg; CHECK(45, a0, 0x222)
    csrw mie, t0; csrr a0, mie; CHECK(46, a0, 0xaaa); csrw mie, zero
    csrr a0, sie; CHECK(47, a0, 0); 
    li t0, 0x222; csrw mie, t0; csrr a0, sie; CHECK(48, a0, 0x222); csrw mie, zero
    csrw mideleg, zero
    la t0, m_trap; ori t0, t0, 2; csrw mtvec, t0; csrr a0, mtvec; la t1, m_trap; sub a0, a0, t1; CHECK(49, a0, 0)
    /* mip: STIP writable by M without Sstc enabled */
    li t0, 0x20; csrs mip, t0; csrr a0, mip; andi a0, a0, 0x20; CHECK(50, a0, 0x20); csrc mip, t0
    /* sstatus is a view of mstatus */
    li t0, 0x1800; csrc mstatus, t0     /* MPP = U: keep MPP bits out of the check */
    li t0, -1; csrw sstatus, t0; csrr a0, sstatus; li t1, 0x80000002000c6122; CHECK(51, a0, 0x80000002000c6122)
    csrr a0, mstatus; andi a0, a0, 0x8; CHECK(52, a0, 0)   /* MIE untouched */
    li t0, 0xc0122; csrc sstatus, t0
    /* counter enables from S and U */
    csrw mcounteren, zero
    la t5, 1f; li s9, -1
    ENTER_MODE(1, 2f)
2:  rdcycle a0
1:  CHECK(53, s9, 2)
    li t0, 7; csrw mcounteren, t0; csrw scounteren, zero
    la t5, 1f; li s9, -1
    ENTER_MODE(1, 2f)
2:  rdtime a0; ecall
1:  CHECK(54, s9, 9)
    la t5, 1f; li s9, -1
    ENTER_MODE(0, 2f)
2:  rdtime a0
1:  CHECK(55, s9, 2)
    li t0, 2; csrw scounteren, t0
    la t5, 1f; li s9, -1
    ENTER_MODE(0, 2f)
2:  rdtime a0; ecall
1:  CHECK(56, s9, 8)
    /* stimecmp from S needs menvcfg.STCE */
    la t5, 1f; li s9, -1
    ENTER_MODE(1, 2f)
2:  csrr a0, stimecmp
1:  CHECK(57, s9, 2)
    li t0, 0x8000000000000000; csrw menvcfg, t0
    la t5, 1f; li s9, -1
    ENTER_MODE(1, 2f)
2:  csrr a0, stimecmp; ecall
1:  CHECK(58, s9, 9); CHECK(59, a0, -1)
    j pass
END
