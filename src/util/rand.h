/* rand — cryptographic randomness (getrandom) and identifiers. Thread-safe. */
#ifndef SQLFS_UTIL_RAND_H
#define SQLFS_UTIL_RAND_H

#include <stddef.h>
#include <stdint.h>

#define UUID_STR_LEN 37

/* Fills buf with n random bytes. 0 or -errno. */
__attribute__((warn_unused_result)) int rand_bytes(void *buf, size_t n);
/* Writes a lowercase random UUIDv4 ("xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx") into out. */
__attribute__((warn_unused_result)) int rand_uuid(char out[UUID_STR_LEN]);
/* Lowercase hex of n bytes into out (2n+1 bytes). */
void hex_encode(const uint8_t *in, size_t n, char *out);
/* Parses 2n hex digits into out; -EINVAL on a bad digit or length. */
__attribute__((warn_unused_result)) int hex_decode(const char *in, size_t inlen, uint8_t *out,
                                                   size_t n);
/* True when s is a lowercase canonical UUID string. */
int uuid_valid(const char *s);

#endif
