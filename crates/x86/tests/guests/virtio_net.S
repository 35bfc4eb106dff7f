# virtio-net guest: a polling driver for the virtio-mmio (version 2) network
# device in the first slot (0xd0000000). It sets up the receive and transmit
# queues, sends one broadcast Ethernet frame (EtherType 0x88b5, a text
# payload) and resets through the i8042 once the device has used it.
#
#   virtio device <id>
#   sent <used index>
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
        cmpl $2, 0x004(%rbx)
        jne bad_device
        lea s_device(%rip), %rsi
        call puts
        mov 0x008(%rbx), %edi
        call puthex
        call putnl
        cmpl $1, 0x008(%rbx)            # 1 = network card
        jne bad_device

        movl $0, 0x070(%rbx)
        movl $1, 0x070(%rbx)
        movl $3, 0x070(%rbx)
        movl $1, 0x024(%rbx)            # VIRTIO_F_VERSION_1 only
        movl $1, 0x020(%rbx)
        movl $0, 0x024(%rbx)
        movl $0, 0x020(%rbx)
        movl $11, 0x070(%rbx)
        testl $8, 0x070(%rbx)
        jz bad_device

        xor %edi, %edi                  # receive queue (no buffers posted)
        lea rx_desc(%rip), %rdx
        call setup_queue
        mov $1, %edi                    # transmit queue
        lea tx_desc(%rip), %rdx
        call setup_queue
        movl $15, 0x070(%rbx)           # DRIVER_OK

        # One descriptor: the 12-byte virtio-net header, then the frame.
        lea tx_desc(%rip), %rdi
        lea packet(%rip), %rax
        mov %rax, 0(%rdi)
        movl $(packet_end - packet), 8(%rdi)
        movw $0, 12(%rdi)
        movw $0, 14(%rdi)
        lea tx_desc+0x1000(%rip), %rdi  # avail ring
        movw $0, 4(%rdi)                # ring[0] = descriptor 0
        mfence
        movw $1, 2(%rdi)                # idx = 1
        mfence
        movl $1, 0x050(%rbx)            # QueueNotify: transmit queue
1:      movzwl tx_desc+0x2000+2(%rip), %eax
        cmp $1, %ax
        je 2f
        pause
        jmp 1b
2:      lea s_sent(%rip), %rsi
        call puts
        movzwl tx_desc+0x2000+2(%rip), %edi
        call puthex
        call putnl
        lea s_done(%rip), %rsi
        call puts
        jmp reset

# setup_queue: queue %edi with descriptor table at %rdx, avail ring at
# %rdx + 0x1000, used ring at %rdx + 0x2000.
setup_queue:
        mov %edi, 0x030(%rbx)
        cmpl $QSIZE, 0x034(%rbx)
        jb bad_device
        movl $QSIZE, 0x038(%rbx)
        mov %edx, 0x080(%rbx)
        movl $0, 0x084(%rbx)
        lea 0x1000(%rdx), %rax
        mov %eax, 0x090(%rbx)
        movl $0, 0x094(%rbx)
        lea 0x2000(%rdx), %rax
        mov %eax, 0x0a0(%rbx)
        movl $0, 0x0a4(%rbx)
        movl $1, 0x044(%rbx)
        ret

bad_device:
        lea s_bad(%rip), %rsi
        call puts
        jmp reset

        .section .rodata
s_device: .asciz "virtio device "
s_bad:    .asciz "bad device\n"
s_sent:   .asciz "sent "
s_done:   .asciz "done\n"

        .data
        .align 16
packet:
        .skip 12                        # struct virtio_net_hdr_v1, all zero
        .byte 0xff, 0xff, 0xff, 0xff, 0xff, 0xff   # destination: broadcast
        .byte 0x52, 0x54, 0x00, 0x12, 0x34, 0x56   # source
        .byte 0x88, 0xb5                # EtherType: local experimental
        .ascii "hello from the vessel x86 guest"
packet_end:

        .bss
        .align 4096
rx_desc: .skip 0x3000
tx_desc: .skip 0x3000
