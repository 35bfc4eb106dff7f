# SMP guest: the boot CPU finds the CPU count in the MP table, starts the
# other CPUs with INIT and SIPI through its local APIC (they enter a
# real-mode trampoline at 0x10000 and go straight to long mode), and waits
# until each has printed "cpu <apic id> up". Then it prints "all up" and
# resets through the i8042.
#
#   cpus <n from the MP table>
#   cpu <id> up                (once per application processor, any order)
#   all up

        .include "common.S"

        .set LAPIC, 0xfee00000
        .set TRAMPOLINE, 0x10000

        .text
        .globl _start
_start:
        # Find the MP floating pointer ("_MP_") in the EBDA.
        mov $0x9fc00, %eax
1:      cmpl $0x5f504d5f, (%rax)
        je 2f
        add $16, %eax
        cmp $0xa0000, %eax
        jb 1b
        lea s_nomp(%rip), %rsi
        call puts
        jmp reset
2:      mov 4(%rax), %eax               # physical address of "PCMP"
        cmpl $0x504d4350, (%rax)
        jne 1b
        movzwl 34(%rax), %ecx           # entry count
        lea 44(%rax), %rdx
        xor %r12d, %r12d                # processors
3:      test %ecx, %ecx
        jz 5f
        cmpb $0, (%rdx)
        jne 4f
        inc %r12d
        add $12, %rdx                   # 20-byte processor entry
4:      add $8, %rdx
        dec %ecx
        jmp 3b
5:      lea s_cpus(%rip), %rsi
        call puts
        mov %r12, %rdi
        call puthex
        call putnl

        # Copy the trampoline below 1 MiB and give it our page tables.
        lea tramp_start(%rip), %rsi
        mov $TRAMPOLINE, %edi
        mov $(tramp_end - tramp_start), %ecx
        rep movsb
        mov %cr3, %rax
        mov %eax, TRAMPOLINE + (tramp_cr3 - tramp_start)

        # Enable our LAPIC, then INIT and SIPI to all but ourselves.
        mov $LAPIC, %ebx
        movl $0x1ff, 0xf0(%rbx)
        movl $0, 0x310(%rbx)
        movl $0x000c4500, 0x300(%rbx)   # INIT, assert, all excluding self
        movl $(0x000c4600 | (TRAMPOLINE >> 12)), 0x300(%rbx)   # SIPI

        dec %r12d                       # application processors to wait for
6:      pause
        cmp ap_count(%rip), %r12d
        jne 6b
        call lock_print
        lea s_allup(%rip), %rsi
        call puts
        movb $0, print_lock(%rip)
        jmp reset

# lock_print: take the serial port's spinlock.
lock_print:
        mov $1, %al
        xchg %al, print_lock(%rip)
        test %al, %al
        jz 1f
        pause
        jmp lock_print
1:      ret

# Application processors arrive here in long mode.
        .code64
ap_long:
        mov $0x10, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov $1, %eax
        lock xadd %eax, ap_index(%rip)
        inc %eax
        shl $12, %eax
        lea ap_stacks(%rip), %rsp
        add %rax, %rsp
        mov $LAPIC, %eax
        mov 0x20(%rax), %ebx
        shr $24, %ebx                   # our APIC id
        call lock_print
        lea s_cpu(%rip), %rsi
        call puts
        mov %rbx, %rdi
        call puthex
        lea s_up(%rip), %rsi
        call puts
        movb $0, print_lock(%rip)
        lock incl ap_count(%rip)
1:      cli
        hlt
        jmp 1b

# The real-mode trampoline, copied to TRAMPOLINE; CS = TRAMPOLINE >> 4, IP = 0.
        .code16
tramp_start:
        cli
        mov %cs, %ax
        mov %ax, %ds
        lgdtl (tramp_gdtr - tramp_start)
        mov $0x20, %eax                 # CR4.PAE
        mov %eax, %cr4
        movl (tramp_cr3 - tramp_start), %eax
        mov %eax, %cr3
        mov $0xc0000080, %ecx           # EFER.LME
        rdmsr
        or $0x100, %eax
        wrmsr
        mov %cr0, %eax
        or $0x80000001, %eax            # PG | PE: long mode, compatibility
        mov %eax, %cr0
        ljmpl $0x08, $ap_long           # into the 64-bit code segment
        .align 4
tramp_cr3:
        .long 0
tramp_gdtr:
        .word gdt_end - gdt - 1
        .long gdt
tramp_end:
        .code64

        .section .rodata
s_nomp:  .asciz "no MP table\n"
s_cpus:  .asciz "cpus "
s_cpu:   .asciz "cpu "
s_up:    .asciz " up\n"
s_allup: .asciz "all up\n"

        .data
        .align 16
gdt:    .quad 0
        .quad 0x00af9a000000ffff        # 0x08: 64-bit code
        .quad 0x00cf92000000ffff        # 0x10: data
gdt_end:
print_lock:
        .byte 0
        .align 4
ap_index:
        .long 0
ap_count:
        .long 0

        .bss
        .align 4096
ap_stacks:
        .skip 4096 * 33
