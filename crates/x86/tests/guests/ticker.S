# Ticking guest: prints "tick <n>" lines forever, busy between them. Used to
# check that pause stops the vCPU and resume lets it go on.

        .include "common.S"

        .text
        .globl _start
_start:
        xor %ebx, %ebx
1:      inc %rbx
        lea s_tick(%rip), %rsi
        call puts
        mov %rbx, %rdi
        call puthex
        call putnl
        mov $2000, %ecx
2:      dec %ecx
        jnz 2b
        jmp 1b

        .section .rodata
s_tick: .asciz "tick "
