# A polling virtio-mmio driver's pieces, shared by the test guests that
# drive a device: the slots, queue 0's rings, feature negotiation and a kick.

        .set MMIO, 0xd0000000
        .set SLOTS, 19
        .set QSIZE, 8

        .text
# setup: negotiate VIRTIO_F_VERSION_1 alone and give queue 0 fresh rings.
# Returns with ZF clear on success; prints "bad device" and ZF set if not.
setup:
        lea desc(%rip), %rdi            # zero the rings
        mov $(3 * 4096), %ecx
        xor %eax, %eax
        rep stosb
        movl $0, 0x070(%rbx)            # reset
        movl $1, 0x070(%rbx)            # ACKNOWLEDGE
        movl $3, 0x070(%rbx)            # | DRIVER
        movl $1, 0x024(%rbx)            # driver features, high word:
        movl $1, 0x020(%rbx)            #   VIRTIO_F_VERSION_1 only
        movl $0, 0x024(%rbx)
        movl $0, 0x020(%rbx)
        movl $11, 0x070(%rbx)           # | FEATURES_OK
        testl $8, 0x070(%rbx)
        jz 9f
        movl $0, 0x030(%rbx)            # queue 0
        cmpl $QSIZE, 0x034(%rbx)
        jb 9f
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
        or $1, %eax                     # ZF clear
        ret
9:      lea s_bad(%rip), %rsi
        call puts
        xor %eax, %eax                  # ZF set
        ret

# kick: offer the chain at descriptor 0 on queue 0 and wait until the
# device has used it. Returns the used length in %eax.
kick:
        movzwl avail+2(%rip), %eax
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
2:      dec %eax
        and $(QSIZE - 1), %eax
        lea used+4(%rip), %rdi
        mov 4(%rdi,%rax,8), %eax        # used.ring[idx - 1].len
        ret


        .section .rodata
s_bad:      .asciz "bad device\n"

        .bss
        .align 4096
desc:   .skip 4096
avail:  .skip 4096
used:   .skip 4096
        .text
