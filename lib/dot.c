/* The f32 dot product of the policies that compare keys (keydiff, rkv).
 * Its own translation unit, not an inline helper: gcc -O2 vectorises the
 * eight partial sums of `blocks` (written as scalars: an array of
 * accumulators, or sixteen, it leaves scalar) only when they stand in a
 * function of their own, without the tail loop and outside the callers'
 * loops. A single running sum would have to stay scalar, since reordering
 * it changes the result; this order is fixed, so results are reproducible. */
#include <stdint.h>

#include "policy_util.h"

static float blocks(const float *restrict a, const float *restrict b, uint32_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    for (uint32_t t = 0; t + 8 <= n; t += 8) {
        s0 += a[t] * b[t];
        s1 += a[t + 1] * b[t + 1];
        s2 += a[t + 2] * b[t + 2];
        s3 += a[t + 3] * b[t + 3];
        s4 += a[t + 4] * b[t + 4];
        s5 += a[t + 5] * b[t + 5];
        s6 += a[t + 6] * b[t + 6];
        s7 += a[t + 7] * b[t + 7];
    }
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
}

float kvc__dot_f32(const float *a, const float *b, uint32_t n) {
    float s = blocks(a, b, n);
    for (uint32_t t = n & ~7u; t < n; t++) s += a[t] * b[t];
    return s;
}
