# ACPI guest: follows boot_params.acpi_rsdp_addr to the RSDP, checks every
# table's signature and checksum on the way (RSDP, XSDT, each table it
# lists, the DSDT the FADT points to), counts the enabled LAPICs in the
# MADT, and compares the MADT's IOAPIC id with the id register of the
# IOAPIC itself.
#
#   rsdp ok|bad
#   xsdt <entries>
#   <signature> ok|bad          (each XSDT entry, and DSDT after FACP)
#   lapics <n>
#   ioapic <MADT id> <IOAPIC id register>
#   done

        .include "common.S"

        .set IOAPIC, 0xfec00000

        .text
        .globl _start
_start:
        mov 0x70(%rsi), %r12            # boot_params.acpi_rsdp_addr
        lea s_rsdp(%rip), %rsi
        call puts
        movabs $0x2052545020445352, %rax   # "RSD PTR "
        cmp %rax, (%r12)
        jne 1f
        mov %r12, %rsi
        mov $20, %ecx
        call sum
        jnz 1f
        mov %r12, %rsi
        mov $36, %ecx
        call sum
        jnz 1f
        lea s_ok(%rip), %rsi
        jmp 2f
1:      lea s_bad(%rip), %rsi
        call puts
        jmp reset
2:      call puts

        mov 24(%r12), %r13              # XSDT
        cmpl $0x54445358, (%r13)        # "XSDT"
        jne bad
        mov %r13, %rsi
        mov 4(%r13), %ecx
        call sum
        jnz bad
        lea s_xsdt(%rip), %rsi
        call puts
        mov 4(%r13), %r14d
        sub $36, %r14d
        shr $3, %r14d                   # entries
        mov %r14, %rdi
        call puthex
        call putnl
        lea 36(%r13), %r15
3:      test %r14d, %r14d
        jz 5f
        mov (%r15), %rdi
        call check_table
        mov (%r15), %rdi
        cmpl $0x50434146, (%rdi)        # "FACP": check its DSDT too
        jne 4f
        mov 140(%rdi), %rdi             # X_DSDT
        call check_table
4:      add $8, %r15
        dec %r14d
        jmp 3b

5:      lea s_lapics(%rip), %rsi
        call puts
        mov lapics(%rip), %edi
        call puthex
        call putnl
        lea s_ioapic(%rip), %rsi
        call puts
        movzbl ioapic_id(%rip), %edi
        call puthex
        call putsp
        mov $IOAPIC, %eax               # (zero-extended: below 4 GiB)
        movl $0, (%rax)                 # IOREGSEL: register 0, the id
        mov 0x10(%rax), %edi            # IOWIN
        shr $24, %edi
        and $0xf, %edi
        call puthex
        call putnl
        lea s_done(%rip), %rsi
        call puts
        jmp reset

bad:    lea s_bad(%rip), %rsi
        call puts
        jmp reset

# check_table: print the signature of the table at %rdi and whether its
# checksum holds; count enabled LAPICs if it is the MADT.
check_table:
        push %rbx
        mov %rdi, %rbx
        xor %ecx, %ecx
1:      movzbl (%rbx,%rcx), %edi
        push %rcx
        call putc
        pop %rcx
        inc %ecx
        cmp $4, %ecx
        jb 1b
        mov %rbx, %rsi
        mov 4(%rbx), %ecx
        call sum
        lea s_tok(%rip), %rsi
        jz 2f
        lea s_tbad(%rip), %rsi
2:      call puts
        cmpl $0x43495041, (%rbx)        # "APIC"
        jne 5f
        mov 4(%rbx), %ecx
        lea (%rbx,%rcx), %rdx           # end of the MADT
        lea 44(%rbx), %rsi
3:      cmp %rdx, %rsi
        jae 5f
        cmpb $0, (%rsi)                 # processor local APIC
        jne 4f
        testb $1, 4(%rsi)               # enabled
        jz 4f
        incl lapics(%rip)
4:      cmpb $1, (%rsi)                 # I/O APIC: remember its id
        jne 6f
        movzbl 2(%rsi), %eax
        mov %al, ioapic_id(%rip)
6:      movzbl 1(%rsi), %eax
        test %eax, %eax
        jz 5f                           # a zero-length entry would loop
        add %rax, %rsi
        jmp 3b
5:      pop %rbx
        ret

# sum: ZF set when the %ecx bytes at %rsi add up to 0 (mod 256).
sum:
        xor %eax, %eax
1:      add (%rsi), %al
        inc %rsi
        dec %ecx
        jnz 1b
        test %al, %al
        ret

        .section .rodata
s_rsdp:   .asciz "rsdp "
s_ok:     .asciz "ok\n"
s_bad:    .asciz "bad\n"
s_xsdt:   .asciz "xsdt "
s_tok:    .asciz " ok\n"
s_tbad:   .asciz " bad\n"
s_lapics: .asciz "lapics "
s_ioapic: .asciz "ioapic "
s_done:   .asciz "done\n"

        .data
lapics: .long 0
ioapic_id: .byte 0xff
