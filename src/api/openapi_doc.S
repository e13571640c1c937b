/* docs/openapi.json, the API's OpenAPI document, embedded in the server so that GET
 * /openapi.json needs no file at run time (api/openapi.c). OPENAPI_DOC_PATH is set by the
 * Makefile. */
    .section .rodata
    .globl openapi_doc
    .type openapi_doc, @object
openapi_doc:
    .incbin OPENAPI_DOC_PATH
    .globl openapi_doc_end
openapi_doc_end:
    .size openapi_doc, openapi_doc_end - openapi_doc
    .section .note.GNU-stack, "", @progbits
