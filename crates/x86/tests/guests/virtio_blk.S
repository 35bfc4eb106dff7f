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

        .set MMIO, 0xd0000000
        .set QSIZE, 8

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

        movl $0, 0x070(%rbx)            # reset
        movl $1, 0x070(%rbx)            # ACKNOWLEDGE
        movl $3, 0x070(%rbx)            # | DRIVER
        movl $1, 0x024(%rbx)            # driver features, high word:
        movl $1, 0x020(%rbx)            #   VIRTIO_F_VERSION_1 only
        movl $0, 0x024(%rbx)
        movl $0, 0x020(%rbx)
        movl $11, 0x070(%rbx)           # | FEATURES_OK
        testl $8, 0x070(%rbx)
        jz bad_device

        movl $0, 0x030(%rbx)            # queue 0
        cmpl $QSIZE, 0x034(%rbx)        # QueueNumMax >= QSIZE
        jb bad_device
        movl $QSIZE, 0x038(%rbx)
        lea desc(%rip), %rax
        mov %eax, 0x080(%rbx)
        movl $0, 0x084(%rbx)
        lea avail(%rip), %rax
        mov %eax, 0x090(%rbx)
        movl $0, 0x094(%rbx)
        lea used(%rip), %rax
        mov %eax, 0x0a0(%rbx)
        movl $0, 0x0a4(%rbx)
        movl $1, 0x044(%rbx)            # QueueReady
        movl $15, 0x070(%rbx)           # | DRIVER_OK

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
        movzwl avail+2(%rip), %eax      # avail.ring[idx % QSIZE] = 0
        mov %eax, %ecx
        and $(QSIZE - 1), %ecx
        lea avail+4(%rip), %rdi
        movw $0, (%rdi,%rcx,2)
        inc %eax
        mfence
        mov %ax, avail+2(%rip)          # publish
        mfence
        mov %eax, %r9d
        movl $0, 0x050(%rbx)            # QueueNotify 0
1:      movzwl used+2(%rip), %eax
        cmp %r9w, %ax
        je 2f
        pause
        jmp 1b
2:      ret

bad_device:
        lea s_bad(%rip), %rsi
        call puts
        jmp reset

        .section .rodata
s_device:  .asciz "virtio device "
s_bad:     .asciz "bad device\n"
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
        .align 4096
desc:   .skip 16 * QSIZE
        .align 4096
avail:  .skip 6 + 2 * QSIZE
        .align 4096
used:   .skip 6 + 8 * QSIZE
        .align 512
sector: .skip 512
outbuf: .skip 512
        .skip 1                         # a NUL after sector 0's text, always
