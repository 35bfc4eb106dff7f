# Shared routines for the test guests (GNU as, AT&T syntax, 64-bit).
# Serial output polls the 16550 at 0x3f8; exit is the i8042 reset command.

        .set COM1, 0x3f8
        .set COM1_LSR, 0x3fd
        .set I8042_CMD, 0x64

        .text
# putc: print the byte in %dil. Clobbers %al, %dx.
putc:
        mov $COM1_LSR, %dx
1:      in %dx, %al
        test $0x20, %al
        jz 1b
        mov $COM1, %dx
        mov %dil, %al
        out %al, %dx
        ret

# puts: print the NUL-terminated string at %rsi. Preserves %rsi.
puts:
        push %rsi
        push %rdi
1:      movzbl (%rsi), %edi
        test %dil, %dil
        jz 2f
        call putc
        inc %rsi
        jmp 1b
2:      pop %rdi
        pop %rsi
        ret

# puthex: print %rdi as 0x-prefixed lowercase hex without leading zeros.
puthex:
        push %rbx
        push %rcx
        push %r8
        mov %rdi, %rbx
        mov $'0', %edi
        call putc
        mov $'x', %edi
        call putc
        mov $60, %ecx
        xor %r8d, %r8d          # set once a non-zero digit was printed
1:      mov %rbx, %rax
        shr %cl, %rax
        and $0xf, %eax
        test %eax, %eax
        jnz 2f
        test %r8d, %r8d
        jnz 2f
        test %ecx, %ecx
        jnz 4f                  # skip leading zeros, but print the last digit
2:      mov $1, %r8d
        cmp $10, %eax
        jb 3f
        add $('a' - '0' - 10), %eax
3:      add $'0', %eax
        mov %eax, %edi
        push %rcx
        call putc
        pop %rcx
4:      sub $4, %ecx
        jns 1b
        pop %r8
        pop %rcx
        pop %rbx
        ret

# space / newline
putsp:
        mov $' ', %edi
        jmp putc
putnl:
        mov $'\n', %edi
        jmp putc

# reset: ask the i8042 to reset the CPU (the VMM ends the VM), then halt.
reset:
        mov $0xfe, %al
        out %al, $I8042_CMD
1:      cli
        hlt
        jmp 1b
