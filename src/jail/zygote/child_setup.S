/* child_setup.py, embedded in the zygote program (pyzygote.c), NUL-terminated.
 * CHILD_SETUP_PATH is set by the Makefile. */
    .section .rodata
    .globl child_setup_source
    .type child_setup_source, @object
child_setup_source:
    .incbin CHILD_SETUP_PATH
    .globl child_setup_source_end
child_setup_source_end:
    .byte 0
    .size child_setup_source, child_setup_source_end - child_setup_source
    .section .note.GNU-stack, "", @progbits
