# Echo guest: prints "ready", then reads the serial port (polling the line
# status register) and echoes each byte upper-cased until a newline, then
# resets through the i8042.

        .include "common.S"

        .text
        .globl _start
_start:
        lea s_ready(%rip), %rsi
        call puts
1:      mov $COM1_LSR, %dx
        in %dx, %al
        test $1, %al                    # data ready
        jz 1b
        mov $COM1, %dx
        in %dx, %al
        movzbl %al, %edi
        cmp $'a', %dil
        jb 2f
        cmp $'z', %dil
        ja 2f
        sub $('a' - 'A'), %dil
2:      push %rdi
        call putc
        pop %rdi
        cmp $'\n', %dil
        jne 1b
        jmp reset

        .section .rodata
s_ready: .asciz "ready\n"
