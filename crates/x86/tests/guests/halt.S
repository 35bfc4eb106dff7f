# Halting guest: prints "ready" and halts with interrupts off, forever. Only
# the host can end it (a shutdown that kicks the vCPU out of the in-kernel HLT).

        .include "common.S"

        .text
        .globl _start
_start:
        lea s_ready(%rip), %rsi
        call puts
1:      cli
        hlt
        jmp 1b

        .section .rodata
s_ready: .asciz "ready\n"
