# Boot-protocol guest: reports what the VMM handed it in boot_params
# (rsi at entry) on the serial port, then resets through the i8042.
#
#   hdrs ok|bad
#   e820 <count>
#   e820 <addr> <size> <type>      (once per entry)
#   cmdline <size> <string>
#   initrd <addr> <size> <byte sum>
#   done

        .include "common.S"

        .text
        .globl _start
_start:
        mov %rsi, %r12                  # struct boot_params *

        lea s_hdrs(%rip), %rsi
        call puts
        lea s_ok(%rip), %rsi
        cmpl $0x53726448, 0x202(%r12)   # hdr.header == "HdrS"
        je 1f
        lea s_bad(%rip), %rsi
1:      call puts

        lea s_e820(%rip), %rsi
        call puts
        movzbl 0x1e8(%r12), %r13d       # e820_entries
        mov %r13, %rdi
        call puthex
        call putnl
        lea 0x2d0(%r12), %r14           # e820_table
2:      test %r13d, %r13d
        jz 3f
        lea s_e820(%rip), %rsi
        call puts
        mov 0(%r14), %rdi
        call puthex
        call putsp
        mov 8(%r14), %rdi
        call puthex
        call putsp
        mov 16(%r14), %edi
        call puthex
        call putnl
        add $20, %r14
        dec %r13d
        jmp 2b

3:      lea s_cmdline(%rip), %rsi
        call puts
        mov 0x238(%r12), %edi           # hdr.cmdline_size
        call puthex
        call putsp
        mov 0x228(%r12), %esi           # hdr.cmd_line_ptr
        call puts
        call putnl

        lea s_initrd(%rip), %rsi
        call puts
        mov 0x218(%r12), %r13d          # hdr.ramdisk_image
        mov 0x21c(%r12), %r14d          # hdr.ramdisk_size
        mov %r13, %rdi
        call puthex
        call putsp
        mov %r14, %rdi
        call puthex
        call putsp
        xor %eax, %eax                  # sum of the initrd's bytes
        xor %ecx, %ecx
4:      cmp %r14, %rcx
        jae 5f
        movzbl (%r13,%rcx), %edx
        add %rdx, %rax
        inc %rcx
        jmp 4b
5:      mov %rax, %rdi
        call puthex
        call putnl

        lea s_done(%rip), %rsi
        call puts
        jmp reset

        .section .rodata
s_hdrs:    .asciz "hdrs "
s_ok:      .asciz "ok\n"
s_bad:     .asciz "bad\n"
s_e820:    .asciz "e820 "
s_cmdline: .asciz "cmdline "
s_initrd:  .asciz "initrd "
s_done:    .asciz "done\n"
