/* Common includes for unit tests (cmocka). Each test file defines main() running its group. */
#ifndef SQLFS_TESTS_UNIT_H
#define SQLFS_TESTS_UNIT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#endif
