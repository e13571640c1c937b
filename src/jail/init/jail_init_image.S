/* The statically linked jail init (jail_init.c), embedded in the server so that one binary is
 * the whole installation. JAIL_INIT_PATH is set by the Makefile. */
    .section .rodata
    .balign 64
    .globl jail_init_image
    .type jail_init_image, @object
jail_init_image:
    .incbin JAIL_INIT_PATH
    .globl jail_init_image_end
jail_init_image_end:
    .size jail_init_image, jail_init_image_end - jail_init_image
    .section .note.GNU-stack, "", @progbits
