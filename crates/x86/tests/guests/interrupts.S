# Interrupt guest: installs an IDT, enables its local APIC, routes IOAPIC
# pin GSI (below) to vector 0x30, masks the 8259 PIC, says "ready" and
# halts. Each interrupt the VMM raises through an irqfd prints "irq <n>";
# after the second it prints "done" and resets through the i8042. An
# unexpected exception prints "exception <vector>" and resets.

        .include "common.S"

        .set GSI, 5
        .set VECTOR, 0x30
        .set LAPIC, 0xfee00000
        .set IOAPIC, 0xfec00000

        .text
        .globl _start
_start:
        # Exception handlers for vectors 0-31, the device vector, the spurious one.
        xor %ebx, %ebx
1:      lea exc_stubs(%rip), %rax
        imul $16, %rbx, %rcx
        add %rcx, %rax
        mov %ebx, %edi
        call set_gate
        inc %ebx
        cmp $32, %ebx
        jb 1b
        lea on_irq(%rip), %rax
        mov $VECTOR, %edi
        call set_gate
        lea on_spurious(%rip), %rax
        mov $0xff, %edi
        call set_gate
        lidt idtr(%rip)

        # Mask both PICs: only the IOAPIC delivers.
        mov $0xff, %al
        out %al, $0x21
        out %al, $0xa1

        # Enable the local APIC (spurious vector 0xff), accept all priorities.
        mov $LAPIC, %eax
        movl $0x1ff, 0xf0(%rax)
        movl $0, 0x80(%rax)

        # IOAPIC redirection entry GSI: vector, fixed, physical, edge, high,
        # unmasked, to APIC id 0.
        mov $IOAPIC, %eax
        movl $(0x10 + 2 * GSI + 1), (%rax)
        movl $0, 0x10(%rax)
        movl $(0x10 + 2 * GSI), (%rax)
        movl $VECTOR, 0x10(%rax)

        lea s_ready(%rip), %rsi
        call puts
2:      sti
        hlt
        cli
        cmpl $2, irq_count(%rip)
        jb 2b
        lea s_done(%rip), %rsi
        call puts
        jmp reset

# set_gate: IDT entry %edi -> handler at %rax (64-bit interrupt gate).
set_gate:
        lea idt(%rip), %rdx
        shl $4, %rdi
        add %rdi, %rdx
        mov %ax, 0(%rdx)
        mov %cs, %cx
        mov %cx, 2(%rdx)
        movw $0x8e00, 4(%rdx)
        shr $16, %rax
        mov %ax, 6(%rdx)
        shr $16, %rax
        mov %eax, 8(%rdx)
        movl $0, 12(%rdx)
        ret

on_irq:
        push %rax
        push %rcx
        push %rdx
        push %rsi
        push %rdi
        push %r8
        incl irq_count(%rip)
        lea s_irq(%rip), %rsi
        call puts
        mov irq_count(%rip), %edi
        call puthex
        call putnl
        mov $LAPIC, %eax
        movl $0, 0xb0(%rax)             # EOI
        pop %r8
        pop %rdi
        pop %rsi
        pop %rdx
        pop %rcx
        pop %rax
        iretq

on_spurious:
        iretq

# One 16-byte stub per exception vector: push the vector, go report.
        .align 16
exc_stubs:
        .set v, 0
        .rept 32
        .align 16
        push $v
        jmp on_exception
        .set v, v + 1
        .endr

on_exception:
        lea s_exception(%rip), %rsi
        call puts
        pop %rdi
        call puthex
        call putnl
        jmp reset

        .section .rodata
s_ready:     .asciz "ready\n"
s_irq:       .asciz "irq "
s_done:      .asciz "done\n"
s_exception: .asciz "exception "

        .data
        .align 16
idtr:   .word 256 * 16 - 1
        .quad idt
irq_count:
        .long 0

        .bss
        .align 4096
idt:    .skip 256 * 16
