#include "common.h"
START
tests:
    li a0, -1; li a1, -1
    mul a2, a0, a1; CHECK(1, a2, 1)
    mulh a2, a0, a1; CHECK(2, a2, 0)
    mulhu a2, a0, a1; CHECK(3, a2, 0xfffffffffffffffe)
    mulhsu a2, a0, a1; CHECK(4, a2, -1)
    li a0, 0x8000000000000000; mulh a2, a0, a0; CHECK(5, a2, 0x4000000000000000)
    li a0, 0x123456789; li a1, 0x987654321; mul a2, a0, a1; CHECK(6, a2, 0xd77d742cce1833a9)
    mulhu a2, a0, a1; CHECK(7, a2, 0xa)
    li a0, 0x7fffffff; li a1, 2; mulw a2, a0, a1; CHECK(8, a2, -2)
    /* division */
    li a0, -7; li a1, 2
    div a2, a0, a1; CHECK(9, a2, -3)
    rem a2, a0, a1; CHECK(10, a2, -1)
    divu a2, a0, a1; CHECK(11, a2, 0x7ffffffffffffffc)
    remu a2, a0, a1; CHECK(12, a2, 1)
    /* by zero */
    li a1, 0
    div a2, a0, a1; CHECK(13, a2, -1)
    divu a2, a0, a1; CHECK(14, a2, -1)
    rem a2, a0, a1; CHECK(15, a2, -7)
    remu a2, a0, a1; CHECK(16, a2, -7)
    divw a2, a0, a1; CHECK(17, a2, -1)
    divuw a2, a0, a1; CHECK(18, a2, -1)
    remw a2, a0, a1; CHECK(19, a2, -7)
    li a0, 0x80000005; remuw a2, a0, a1; CHECK(20, a2, 0xffffffff80000005)
    /* overflow */
    li a0, 0x8000000000000000; li a1, -1
    div a2, a0, a1; CHECK(21, a2, 0x8000000000000000)
    rem a2, a0, a1; CHECK(22, a2, 0)
    li a0, 0x80000000; divw a2, a0, a1; CHECK(23, a2, 0xffffffff80000000)
    remw a2, a0, a1; CHECK(24, a2, 0)
    /* W forms use the low 32 bits only */
    li a0, 0x100000010; li a1, 0x200000004; divuw a2, a0, a1; CHECK(25, a2, 4)
    li a0, -20; li a1, 6; divw a2, a0, a1; CHECK(26, a2, -3)
    remw a2, a0, a1; CHECK(27, a2, -2)
    j pass
END
