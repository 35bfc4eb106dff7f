/* A benchmark loop (not a correctness test): integer ALU, loads, stores and
 * a taken branch, 8 instructions per iteration, with paging off in M-mode. */
#include "common.h"
START
tests:
    li a0, 25000000; la a1, buf; li a2, 0
1:  ld a3, 0(a1)
    add a2, a2, a3
    addi a3, a3, 1
    sd a3, 0(a1)
    xor a4, a2, a0
    srli a4, a4, 3
    addi a0, a0, -1
    bnez a0, 1b
    j pass
END
.data
.align 3
buf: .dword 0
