/* The programs of the warm Python (zygote/py_exec.c, zygote/pyzygote.c), embedded in the
 * server so that one binary is the whole installation. PY_EXEC_PATH and PYZYGOTE_PATH are set
 * by the Makefile. */
    .section .rodata
    .balign 64
    .globl py_exec_image
    .type py_exec_image, @object
py_exec_image:
    .incbin PY_EXEC_PATH
    .globl py_exec_image_end
py_exec_image_end:
    .size py_exec_image, py_exec_image_end - py_exec_image
    .balign 64
    .globl pyzygote_image
    .type pyzygote_image, @object
pyzygote_image:
    .incbin PYZYGOTE_PATH
    .globl pyzygote_image_end
pyzygote_image_end:
    .size pyzygote_image, pyzygote_image_end - pyzygote_image
    .section .note.GNU-stack, "", @progbits
