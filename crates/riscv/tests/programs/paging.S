/* Sv39 (or Sv48 with -DSV48) paging from S- and U-mode: permissions, A/D
 * (Svade: a clear A, or D on a store, is a page fault), SUM, MXR, faults and
 * their tvals, sfence.vma. Page faults are delegated to S-mode. */
#include "common.h"

#define V 0x01
#define R 0x02
#define W 0x04
#define X 0x08
#define U 0x10
#define A 0x40
#define D 0x80
#define PTE(table, idx, target, flags) \
    la t0, target; srli t0, t0, 12; slli t0, t0, 10; ori t0, t0, flags; \
    la t1, table; li t2, (idx) * 8; add t1, t1, t2; sd t0, 0(t1)
#define PTEA(table, idx, addr, flags) \
    li t0, addr; srli t0, t0, 12; slli t0, t0, 10; ori t0, t0, flags; \
    la t1, table; li t2, (idx) * 8; add t1, t1, t2; sd t0, 0(t1)

#define VA 0x40000000

START
tests:
    /* data: pg0 starts with 0x1111..., pg1 with 0x2222... */
    la t0, pg0; li t1, 0x1111111111111111; sd t1, 0(t0)
    la t0, pg1; li t1, 0x2222222222222222; sd t1, 0(t0)
    /* root: [0] identity gigapage for devices, [1] -> l1, [2] identity gigapage for RAM */
    PTEA(root, 0, 0, V|R|W|A|D)
    PTE(root, 1, l1, V)
    PTEA(root, 2, 0x80000000, V|R|W|X|A|D)
    PTE(l1, 0, l0, V)
    PTE(l0, 0, pg0, V|R|W|A|D)
    PTE(l0, 1, pg1, V|R|A)
    PTE(l0, 2, pg0, V|R|W|A)
    PTE(l0, 3, pg1, V|R|W|U|A|D)
    PTE(l0, 4, pg1, V|X|A)
    PTE(l0, 5, pg1, V|R)
    /* l0[6] stays invalid */
    PTE(l0, 7, user_code, V|R|X|U|A)
#ifdef SV48
    PTE(root4, 0, root, V)
    la t0, root4; srli t0, t0, 12; li t1, 9 << 60; or t0, t0, t1; csrw satp, t0
    csrr a0, satp; srli a0, a0, 60; CHECK(1, a0, 9)
#else
    la t0, root; srli t0, t0, 12; li t1, 8 << 60; or t0, t0, t1; csrw satp, t0
    csrr a0, satp; srli a0, a0, 60; CHECK(1, a0, 8)
#endif
    sfence.vma
    li t0, (1 << 12) | (1 << 13) | (1 << 15); csrw medeleg, t0
    la t0, s_trap; csrw stvec, t0
    ENTER_MODE(1, s_tests)

s_tests:
    li s0, VA
    ld a0, 0(s0); CHECK(2, a0, 0x1111111111111111)
    li t0, 0x5a5a; sd t0, 8(s0); la t1, pg0; ld a0, 8(t1); CHECK(3, a0, 0x5a5a)
    /* read-only page: store page fault, tval = address, from S */
    li s1, VA + 0x1000
    EXPECT_TRAP(4, sd t0, 16(s1))
    CHECK(5, s9, 15); addi t0, s1, 16; CHECK(6, s10, VA + 0x1010); CHECK(7, s8, 1)
    ld a0, 0(s1); CHECK(8, a0, 0x2222222222222222)
    /* D clear: loads work, stores fault */
    li s1, VA + 0x2000
    ld a0, 0(s1); CHECK(9, a0, 0x1111111111111111)
    EXPECT_TRAP(10, sw t0, 0(s1))
    CHECK(11, s9, 15); CHECK(12, s10, VA + 0x2000)
    /* user page: no access from S without SUM, never executable from S */
    li s1, VA + 0x3000
    EXPECT_TRAP(13, ld a0, 0(s1))
    CHECK(14, s9, 13); CHECK(15, s10, VA + 0x3000)
    li t0, 0x40000; csrs sstatus, t0
    ld a0, 0(s1); CHECK(16, a0, 0x2222222222222222)
    EXPECT_TRAP(17, jalr s1)
    CHECK(18, s9, 12); CHECK(19, s10, VA + 0x3000); CHECK(20, s11, VA + 0x3000)
    li t0, 0x40000; csrc sstatus, t0
    /* execute-only page: loads need MXR */
    li s1, VA + 0x4000
    EXPECT_TRAP(21, ld a0, 0(s1))
    CHECK(22, s9, 13)
    li t0, 0x80000; csrs sstatus, t0
    ld a0, 0(s1); CHECK(23, a0, 0x2222222222222222)
    li t0, 0x80000; csrc sstatus, t0
    EXPECT_TRAP(24, ld a0, 0(s1))
    CHECK(25, s9, 13)
    /* A clear: page fault */
    li s1, VA + 0x5000
    EXPECT_TRAP(26, lw a0, 4(s1))
    CHECK(27, s9, 13); CHECK(28, s10, VA + 0x5004)
    /* invalid PTE */
    li s1, VA + 0x6000
    EXPECT_TRAP(29, sb a0, 7(s1))
    CHECK(30, s9, 15); CHECK(31, s10, VA + 0x6007)
    /* a misaligned store into a read-only page stores nothing */
    li s1, VA + 0xffc; li t0, -1
    EXPECT_TRAP(32, sd t0, 0(s1))
    CHECK(33, s9, 15)
    la t1, pg0 + 0xffc; lw a0, 0(t1); CHECK(34, a0, 0)
    /* a misaligned load across two good pages works */
    li s1, VA + 0xffc
    ld a0, 0(s1); CHECK(35, a0, 0x2222222200000000)
    /* addresses that are not sign-extended fault */
#ifdef SV48
    li s1, 0x800000000000
#else
    li s1, 0x8000000000
#endif
    EXPECT_TRAP(36, ld a0, 0(s1))
    CHECK(37, s9, 13)
#ifdef SV48
    /* Sv48: a valid canonical address above 512 GiB reaches an invalid PTE */
    li s1, 0x8000000000
    EXPECT_TRAP(38, ld a0, 0(s1))
    CHECK(39, s9, 13); CHECK(40, s10, 0x8000000000)
#endif
    /* U-mode: user page readable, supervisor page not */
    li a1, VA + 0x3000; li a3, VA
    la t5, 1f; li s9, -1
    li t0, 0x100; csrc sstatus, t0          /* SPP = U */
    la t0, user_code; la t1, user_code_page; sub t0, t0, t1
    li t1, VA + 0x7000; add t0, t0, t1; csrw sepc, t0
    sret
1:  CHECK(41, s9, 13); CHECK(42, s10, VA); CHECK(43, s8, 0); CHECK(44, a0, 0x2222222222222222)
    /* sfence.vma makes a changed PTE visible */
    PTE(l0, 0, pg1, V|R|W|A|D)
    sfence.vma
    li s0, VA; ld a0, 0(s0); CHECK(45, a0, 0x2222222222222222)
    j pass
END

.text
.align 12
user_code_page:
user_code:
    ld a0, 0(a1)
    ld a2, 0(a3)
    j .
.align 12

.bss
.align 12
#ifdef SV48
root4: .space 4096
#endif
root: .space 4096
l1: .space 4096
l0: .space 4096
pg0: .space 4096
pg1: .space 4096
