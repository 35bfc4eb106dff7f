# virtio-blk guest: a polling driver for the virtio-mmio (version 2) block
# device in the first slot (0xd0000000). It reads sector 0 and prints the
# NUL-terminated text at its start and the sum of its bytes, then writes a
# pattern to sector 1 and resets through the i8042.
#
#   virtio magic ok|bad / virtio device <id>
#   read status <s>
#   sector0 <text> <byte sum>
#   write status <s>
#   done

        .include "common.S"
        .include "virtio.S"

        .text
        .globl _start
_start:
        mov $MMIO, %ebx
        cmpl $0x74726976, 0x000(%rbx)   # "virt"
        jne bad_device
        cmpl $2, 0x004(%rbx)            # version 2
        jne bad_device
        lea s_device(%rip), %rsi
        call puts
        mov 0x008(%rbx), %edi           # device id (2 = block)
        call puthex
        call putnl
        cmpl $2, 0x008(%rbx)
        jne bad_device

        call setup                      # VERSION_1, queue 0 (virtio.S)
        jz reset

        # Read sector 0: header, 512 device-writable bytes, status.
        movl $0, hdr(%rip)              # VIRTIO_BLK_T_IN
        movq $0, hdr+8(%rip)            # sector 0
        lea sector(%rip), %rdx
        mov $2, %r8d                    # data descriptor flags: WRITE
        call submit
        lea s_read(%rip), %rsi
        call puts
        movzbl status(%rip), %edi
        call puthex
        call putnl
        lea s_sector0(%rip), %rsi
        call puts
        lea sector(%rip), %rsi
        call puts
        call putsp
        xor %eax, %eax
        xor %ecx, %ecx
1:      movzbl sector(%rcx), %edx
        add %rdx, %rax
        inc %ecx
        cmp $512, %ecx
        jb 1b
        mov %rax, %rdi
        call puthex
        call putnl

        # Write sector 1: a pattern (i * 3 + 1) & 0xff after a message.
        xor %ecx, %ecx
2:      lea (%rcx,%rcx,2), %eax
        inc %eax
        mov %al, outbuf(%rcx)
        inc %ecx
        cmp $512, %ecx
        jb 2b
        lea s_message(%rip), %rsi
        lea outbuf(%rip), %rdi
3:      movb (%rsi), %al
        movb %al, (%rdi)
        inc %rsi
        inc %rdi
        test %al, %al
        jnz 3b
        movl $1, hdr(%rip)              # VIRTIO_BLK_T_OUT
        movq $1, hdr+8(%rip)            # sector 1
        lea outbuf(%rip), %rdx
        xor %r8d, %r8d                  # data descriptor: device-readable
        call submit
        lea s_write(%rip), %rsi
        call puts
        movzbl status(%rip), %edi
        call puthex
        call putnl
        lea s_done(%rip), %rsi
        call puts
        jmp reset

# submit: one request through descriptors 0-2; %rdx = data buffer (512
# bytes), %r8w = its extra flags. Waits for the used ring to move.
submit:
        movb $0xff, status(%rip)
        lea desc(%rip), %rdi
        lea hdr(%rip), %rax
        mov %rax, 0(%rdi)               # desc 0: header, 16 bytes, NEXT
        movl $16, 8(%rdi)
        movw $1, 12(%rdi)
        movw $1, 14(%rdi)
        mov %rdx, 16(%rdi)              # desc 1: data, 512 bytes, NEXT | flags
        movl $512, 24(%rdi)
        mov %r8w, %ax
        or $1, %ax
        mov %ax, 28(%rdi)
        movw $2, 30(%rdi)
        lea status(%rip), %rax
        mov %rax, 32(%rdi)              # desc 2: status byte, WRITE
        movl $1, 40(%rdi)
        movw $2, 44(%rdi)
        movw $0, 46(%rdi)
        jmp kick                        # offer descriptor 0, wait (virtio.S)

bad_device:
        lea s_bad(%rip), %rsi
        call puts
        jmp reset

        .section .rodata
s_device:  .asciz "virtio device "
s_read:    .asciz "read status "
s_sector0: .asciz "sector0 "
s_write:   .asciz "write status "
s_done:    .asciz "done\n"
s_message: .asciz "written by the vessel x86 guest"

        .data
        .align 16
hdr:    .long 0, 0
        .quad 0
status: .byte 0

        .bss
        .align 512
sector: .skip 512
outbuf: .skip 512
        .skip 1                         # a NUL after sector 0's text, always
