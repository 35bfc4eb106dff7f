# Triple-fault guest: prints "ready", loads an empty IDT and executes ud2.
# The #UD cannot be delivered, nor the #DF after it: the CPU shuts down,
# which KVM reports as KVM_EXIT_SHUTDOWN.

        .include "common.S"

        .text
        .globl _start
_start:
        lea s_ready(%rip), %rsi
        call puts
        lidt empty_idtr(%rip)
        ud2

        .section .rodata
s_ready: .asciz "ready\n"
        .align 16
empty_idtr:
        .word 0
        .quad 0
