# Power-button guest: finds the virtio-input device, offers its event queue
# eight 8-byte buffers, prints "button ready", then "tick <n>" lines (one
# per 2^28 TSC cycles, a tenth to a quarter of a second) while it polls the
# used ring. On KEY_POWER pressed (EV_KEY, code 116, value 1) it prints
# "power button" and resets through the i8042, which is how the microvm
# powers off. Other events are offered back to the device. Nobody pressing
# it for 1200 ticks (a test that failed and left it running) ends it too.

        .include "common.S"
        .include "virtio.S"

        .set EV_KEY, 1
        .set KEY_POWER, 116
        .set INPUT_ID, 18
        .set TICKS, 1200

        .text
        .globl _start
_start:
        mov $MMIO, %ebx
        xor %r12d, %r12d
1:      cmpl $0x74726976, 0x000(%rbx)   # "virt"
        jne none
        cmpl $INPUT_ID, 0x008(%rbx)
        je found
        add $0x1000, %rbx
        inc %r12
        cmp $SLOTS, %r12
        jb 1b
none:   lea s_none(%rip), %rsi
        call puts
        jmp reset

found:
        call setup
        jz reset
        xor %ecx, %ecx                  # descriptor i: events[i], 8 bytes, WRITE
2:      mov %rcx, %rdi
        shl $4, %rdi
        lea desc(%rip), %rax
        add %rax, %rdi
        lea events(%rip), %rax
        lea (%rax,%rcx,8), %rax
        mov %rax, 0(%rdi)
        movl $8, 8(%rdi)
        movw $2, 12(%rdi)
        movw $0, 14(%rdi)
        lea avail+4(%rip), %rdi
        mov %cx, (%rdi,%rcx,2)          # avail.ring[i] = i
        inc %ecx
        cmp $QSIZE, %ecx
        jb 2b
        mfence
        movw $QSIZE, avail+2(%rip)      # publish all
        mfence
        movl $0, 0x050(%rbx)            # QueueNotify 0
        lea s_ready(%rip), %rsi
        call puts

        xor %r13d, %r13d                # used entries seen
        xor %r14d, %r14d                # ticks printed
        rdtsc
        shl $32, %rdx
        or %rax, %rdx
        mov %rdx, %r15                  # TSC at the last tick
poll:   movzwl used+2(%rip), %eax
        cmp %r13w, %ax
        jne event
        rdtsc
        shl $32, %rdx
        or %rax, %rdx
        mov %rdx, %rax
        sub %r15, %rax
        cmp $(1 << 28), %rax
        jb poll
        mov %rdx, %r15
        inc %r14
        cmp $TICKS, %r14
        ja give_up
        lea s_tick(%rip), %rsi
        call puts
        mov %r14, %rdi
        call puthex
        call putnl
        jmp poll
give_up:
        lea s_gave_up(%rip), %rsi
        call puts
        jmp reset

event:  mov %r13d, %eax
        and $(QSIZE - 1), %eax
        lea used+4(%rip), %rdi
        mov (%rdi,%rax,8), %r8d         # used.ring[seen].id
        and $(QSIZE - 1), %r8d
        inc %r13d
        lea events(%rip), %rdi
        lea (%rdi,%r8,8), %rdi
        cmpw $EV_KEY, 0(%rdi)
        jne again
        cmpw $KEY_POWER, 2(%rdi)
        jne again
        cmpl $1, 4(%rdi)
        jne again
        lea s_power(%rip), %rsi
        call puts
        jmp reset
again:  movzwl avail+2(%rip), %eax      # offer the buffer back
        mov %eax, %ecx
        and $(QSIZE - 1), %ecx
        lea avail+4(%rip), %rdi
        mov %r8w, (%rdi,%rcx,2)
        inc %eax
        mfence
        mov %ax, avail+2(%rip)
        mfence
        movl $0, 0x050(%rbx)
        jmp poll

        .section .rodata
s_none:  .asciz "no virtio-input device\n"
s_ready: .asciz "button ready\n"
s_tick:  .asciz "tick "
s_power: .asciz "power button\n"
s_gave_up: .asciz "nobody pressed the button; giving up\n"

        .bss
        .align 16
events: .skip 8 * QSIZE
