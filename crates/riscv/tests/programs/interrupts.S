/* Interrupts: CLINT timer and software interrupts in M-mode through a
 * vectored mtvec, WFI wake-up, priority (MSI before MTI), enable rules per
 * mode, delegation of SSI/STI to S-mode, and the Sstc stimecmp timer. */
#include "common.h"
#define CLINT 0x2000000
#define MTIMECMP (CLINT + 0x4000)
#define MTIME (CLINT + 0xbff8)
/* Wait (bounded) until the handlers have counted `n` interrupts in s7. */
#define WAIT_FOR(check, n) \
    li a5, 400; 1: li t0, n; bge s7, t0, 2f; wfi; addi a5, a5, -1; bnez a5, 1b; li gp, check; j fail; 2:
#define ARM_MTIMER(ticks) \
    li a0, MTIME; ld a1, 0(a0); addi a1, a1, ticks; li a0, MTIMECMP; sd a1, 0(a0)

START
tests:
    la t0, m_vec; ori t0, t0, 1; csrw mtvec, t0
    li s6, 0; li s7, 0
    /* 1. M timer interrupt */
    ARM_MTIMER(1000)
    li t0, 0x80; csrs mie, t0; csrsi mstatus, 8
    WAIT_FOR(1, 1)
    CHECK(2, s9, 0x8000000000000007); CHECK(3, s8, 3)
    csrci mstatus, 8
    /* 2. WFI wakes on a pending enabled interrupt even with MIE = 0, without a trap */
    li s7, 0
    ARM_MTIMER(500)
    li a5, 400
1:  wfi; csrr a0, mip; andi a0, a0, 0x80; bnez a0, 2f; addi a5, a5, -1; bnez a5, 1b; li gp, 4; j fail
2:  CHECK(5, s7, 0)
    li a0, MTIMECMP; li a1, -1; sd a1, 0(a0)
    csrr a0, mip; andi a0, a0, 0x80; CHECK(6, a0, 0)
    /* 3. priority: MSI is taken before MTI */
    li s6, 0; li s7, 0
    li t0, 0x88; csrs mie, t0
    li a0, CLINT; li a1, 1; sw a1, 0(a0)
    li a0, MTIMECMP; sd zero, 0(a0)
    csrr a0, mip; andi a0, a0, 0x88; CHECK(7, a0, 0x88)
    csrsi mstatus, 8
    nop
    csrci mstatus, 8
    CHECK(8, s7, 2); CHECK(9, s6, 0x0307)
    /* 4. an M interrupt preempts S-mode even with mstatus.MIE = 0 */
    li s6, 0; li s7, 0
    li a0, CLINT; li a1, 1; sw a1, 0(a0)
    la t5, 3f
    ENTER_MODE(1, 2f)
2:  nop; nop
    la t5, 3f; ecall
3:  CHECK(10, s7, 1); CHECK(11, s6, 3); CHECK(12, s8, 1)
    csrw mie, zero
    /* 5. a delegated SSI is not taken in M, and is taken in S */
    li s6, 0; li s7, 0
    la t0, s_int; csrw stvec, t0
    li t0, 0x222; csrw mideleg, t0
    li t0, 0x2; csrs mie, t0; csrs mip, t0; csrsi mstatus, 0xa   /* MIE and SIE */
    nop; nop
    CHECK(13, s7, 0)
    csrci mstatus, 8
    la t5, 3f
    ENTER_MODE(1, 2f)
2:  WAIT_FOR(14, 1)
    mv a4, s9; mv a3, s8
    la t5, 3f; ecall
3:  CHECK(15, s6, 1); CHECK(16, a4, 0x8000000000000001); CHECK(17, a3, 1)
    /* 6. a non-delegated SSI goes to M */
    li s6, 0; li s7, 0
    csrw mideleg, zero
    li t0, 0x2; csrs mip, t0; csrsi mstatus, 8
    nop
    csrci mstatus, 8
    CHECK(18, s7, 1); CHECK(19, s9, 0x8000000000000001)
    /* 7. Sstc: S-mode programs stimecmp and takes STI */
    li s6, 0; li s7, 0
    li t0, 0x8000000000000000; csrw menvcfg, t0
    li t0, 2; csrw mcounteren, t0
    li t0, 0x222; csrw mideleg, t0
    li t0, 0x20; csrw mie, t0
    la t5, 3f
    ENTER_MODE(1, 2f)
2:  csrsi sstatus, 2
    rdtime a1; addi a1, a1, 1000; csrw stimecmp, a1
    csrr a0, sip; andi a0, a0, 0x20; CHECK(20, a0, 0)
    WAIT_FOR(21, 1)
    csrr a0, sip; andi a0, a0, 0x20; CHECK(22, a0, 0)
    mv a4, s9
    la t5, 3f; ecall
3:  CHECK(23, s6, 5); CHECK(24, a4, 0x8000000000000005)
    /* with Sstc on, mip.STIP is not software-writable */
    csrw mie, zero
    li t0, 0x20; csrs mip, t0; csrr a0, mip; andi a0, a0, 0x20; CHECK(25, a0, 0)
    j pass

.option push
.option norvc
.align 8
m_vec:
    j m_trap            /* 0: exceptions */
    j m_int             /* 1: SSI */
    j m_int
    j m_int             /* 3: MSI */
    j m_int
    j m_int             /* 5: STI */
    j m_int
    j m_int             /* 7: MTI */
    j m_int
    j m_int             /* 9: SEI */
    j m_int
    j m_int             /* 11: MEI */
.option pop

m_int:
    csrr s9, mcause; csrr s11, mepc; csrr s8, mstatus; srli s8, s8, 11; andi s8, s8, 3
    addi s7, s7, 1; slli s6, s6, 8; andi t3, s9, 0xff; or s6, s6, t3
    li t4, 7; bne t3, t4, 1f; li t3, MTIMECMP; li t4, -1; sd t4, 0(t3); j 3f
1:  li t4, 3; bne t3, t4, 2f; li t3, CLINT; sw zero, 0(t3); j 3f
2:  li t4, 1; bne t3, t4, 3f; csrci mip, 2
3:  mret

.align 4
s_int:
    csrr s9, scause; csrr s11, sepc; csrr s8, sstatus; srli s8, s8, 8; andi s8, s8, 1
    addi s7, s7, 1; slli s6, s6, 8; andi t3, s9, 0xff; or s6, s6, t3
    li t4, 5; bne t3, t4, 1f; li t4, -1; csrw stimecmp, t4; j 3f
1:  li t4, 1; bne t3, t4, 3f; csrci sip, 2
3:  sret
END
