/* Shared macros for the instruction test programs.
 *
 * Conventions:
 *   gp  = number of the current check (reported on failure)
 *   t5  = where a trap handler resumes (set by EXPECT_TRAP)
 *   s9, s10, s11 = cause, tval, epc of the last trap taken
 *   s8  = privilege the last trap came from (M handler: MPP; S handler: SPP)
 * The M-mode handler resumes at t5 in M-mode; the S-mode handler resumes at t5 in S-mode.
 */
#define TEST_DEVICE 0x100000

#define CHECK(n, reg, val) \
    li gp, n; li t6, val; bne reg, t6, fail

/* Run the instructions in `insn`, which must trap; resume after them. */
#define EXPECT_TRAP(n, ...) \
    la t5, 9f; li s9, -1; __VA_ARGS__; 9: li gp, n; li t6, -1; beq s9, t6, fail

#define START \
    .section .text.init; .globl _start; _start: \
    la t0, m_trap; csrw mtvec, t0; li gp, 0; j tests

/* Common handlers and pass/fail: include once at the end of a program. */
#define END \
pass: li t0, TEST_DEVICE; li t1, 0x5555; sw t1, 0(t0); 1: j 1b; \
fail: li t0, TEST_DEVICE; slli t1, gp, 16; li t2, 0x3333; or t1, t1, t2; sw t1, 0(t0); 2: j 2b; \
.align 4; \
m_trap: csrr s9, mcause; csrr s10, mtval; csrr s11, mepc; \
    csrr s8, mstatus; srli s8, s8, 11; andi s8, s8, 3; \
    csrw mepc, t5; li t4, 0x1800; csrs mstatus, t4; mret; \
.align 4; \
s_trap: csrr s9, scause; csrr s10, stval; csrr s11, sepc; \
    csrr s8, sstatus; srli s8, s8, 8; andi s8, s8, 1; \
    csrw sepc, t5; li t4, 0x100; csrs sstatus, t4; sret

/* Drop from M to mode `mpp` (0 = U, 1 = S) at label `target`. */
#define ENTER_MODE(mpp, target) \
    li t0, 0x1800; csrc mstatus, t0; li t0, (mpp) << 11; csrs mstatus, t0; \
    la t0, target; csrw mepc, t0; mret
