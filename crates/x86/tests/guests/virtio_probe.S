# virtio probe guest: walks the virtio-mmio slots from 0xd0000000 (4 KiB
# apart) as a driver would, prints each device's id and offered features,
# and drives the two it knows with a polling driver: a block device's
# GET_ID (its serial), and an entropy device's request queue (twice).
#
#   slot <n> id <id> features <low word> <high word>
#   serial <status> <text>               (block devices)
#   rng <used length> <16 bytes in hex>  (entropy devices, twice)
#   done

        .include "common.S"
        .include "virtio.S"

        .text
        .globl _start
_start:
        mov $MMIO, %ebx
        xor %r12d, %r12d
slot:
        cmpl $0x74726976, 0x000(%rbx)   # "virt"
        jne finish
        lea s_slot(%rip), %rsi
        call puts
        mov %r12, %rdi
        call puthex
        lea s_id(%rip), %rsi
        call puts
        mov 0x008(%rbx), %edi
        call puthex
        lea s_features(%rip), %rsi
        call puts
        movl $0, 0x014(%rbx)            # DeviceFeaturesSel 0
        mov 0x010(%rbx), %edi
        call puthex
        call putsp
        movl $1, 0x014(%rbx)            # DeviceFeaturesSel 1
        mov 0x010(%rbx), %edi
        call puthex
        call putnl
        mov 0x008(%rbx), %eax
        cmp $2, %eax
        jne 1f
        call blk_serial
1:      mov 0x008(%rbx), %eax
        cmp $4, %eax
        jne 2f
        call rng_twice
2:      add $0x1000, %rbx
        inc %r12
        cmp $SLOTS, %r12
        jb slot
finish:
        lea s_done(%rip), %rsi
        call puts
        jmp reset

# blk_serial: VIRTIO_BLK_T_GET_ID into a 20-byte buffer.
blk_serial:
        call setup
        jz 9f
        lea idbuf(%rip), %rdi
        mov $24, %ecx
        xor %eax, %eax
        rep stosb
        movl $8, hdr(%rip)              # VIRTIO_BLK_T_GET_ID
        movq $0, hdr+8(%rip)
        movb $0xff, status(%rip)
        lea desc(%rip), %rdi
        lea hdr(%rip), %rax
        mov %rax, 0(%rdi)               # header, 16 bytes, NEXT
        movl $16, 8(%rdi)
        movw $1, 12(%rdi)
        movw $1, 14(%rdi)
        lea idbuf(%rip), %rax
        mov %rax, 16(%rdi)              # id, 20 bytes, WRITE | NEXT
        movl $20, 24(%rdi)
        movw $3, 28(%rdi)
        movw $2, 30(%rdi)
        lea status(%rip), %rax
        mov %rax, 32(%rdi)              # status, WRITE
        movl $1, 40(%rdi)
        movw $2, 44(%rdi)
        movw $0, 46(%rdi)
        call kick
        lea s_serial(%rip), %rsi
        call puts
        movzbl status(%rip), %edi
        call puthex
        call putsp
        lea idbuf(%rip), %rsi
        call puts
        call putnl
9:      movl $0, 0x070(%rbx)            # reset: the device lets go of the rings
        ret

# rng_twice: two 16-byte requests, each printed in hex.
rng_twice:
        call setup
        jz 9f
        mov $2, %r13d
1:      lea rngbuf(%rip), %rdi
        mov $16, %ecx
        xor %eax, %eax
        rep stosb
        lea desc(%rip), %rdi
        lea rngbuf(%rip), %rax
        mov %rax, 0(%rdi)               # 16 bytes, WRITE
        movl $16, 8(%rdi)
        movw $2, 12(%rdi)
        movw $0, 14(%rdi)
        call kick
        mov %eax, %r14d
        lea s_rng(%rip), %rsi
        call puts
        mov %r14, %rdi
        call puthex
        call putsp
        xor %r15d, %r15d
2:      movzbl rngbuf(%r15), %edi
        call putbyte
        inc %r15
        cmp $16, %r15
        jb 2b
        call putnl
        dec %r13d
        jnz 1b
9:      movl $0, 0x070(%rbx)
        ret

# putbyte: %dil as two lowercase hex digits.
putbyte:
        push %rdi
        shr $4, %edi
        call hexdigit
        pop %rdi
        and $0xf, %edi
hexdigit:
        and $0xf, %edi
        cmp $10, %edi
        jb 1f
        add $('a' - '0' - 10), %edi
1:      add $'0', %edi
        jmp putc

        .section .rodata
s_slot:     .asciz "slot "
s_id:       .asciz " id "
s_features: .asciz " features "
s_serial:   .asciz "serial "
s_rng:      .asciz "rng "
s_done:     .asciz "done\n"

        .data
        .align 16
hdr:    .long 0, 0
        .quad 0
status: .byte 0

        .bss
idbuf:  .skip 24
rngbuf: .skip 16
