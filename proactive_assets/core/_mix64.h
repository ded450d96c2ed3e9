/* splitmix64's finaliser, as hashing.mix64 computes it in numpy: the stable 64-bit hash of the
 * model's buckets and the evidence's keys, for the compiled modules that include this file. */
#ifndef PROACTIVE_ASSETS_MIX64_H
#define PROACTIVE_ASSETS_MIX64_H
#include <stdint.h>

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBULL;
    x ^= x >> 31;
    return x;
}
#endif
