/* KVC_DTYPE_Q8 rows: quantisation of one row, the rule the cache applies at
 * append and engines apply to rows they hand to kvc_attention(). */
#include <math.h>
#include <string.h>

#include "attn/attn.h"
#include "internal.h"

/* Round to the nearest integer, ties to even, for |x| <= 2^51: adding and
 * removing 1.5 * 2^52 leaves the rounded value (default rounding mode),
 * without a libm call per element. */
static double rint_even(double x) {
    volatile double t = x + 6755399441055744.0; /* volatile: the sum must be rounded to double */
    return t - 6755399441055744.0;
}

void kvc__quantize_q8(const float *x, uint32_t d, void *row) {
    float amax = 0.0f;
    for (uint32_t i = 0; i < d; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    int8_t *q = row;
    /* in double: 127 / amax stays finite even for subnormal amax */
    const double inv = amax > 0.0f ? 127.0 / (double)amax : 0.0;
    for (uint32_t i = 0; i < d; i++) q[i] = (int8_t)rint_even((double)x[i] * inv); /* |.| <= 127 */
    memset(q + d, 0, kvc__q8_scale_off(d) - d);
    const float s = (float)((double)amax / 127.0);
    memcpy((char *)row + kvc__q8_scale_off(d), &s, sizeof s);
}

int kvc_quantize_q8(const float *x, uint32_t head_dim, void *row) {
    if (!x || !row || !head_dim) return KVC_EINVAL;
    if (kvc__check_finite(x, head_dim)) return KVC_ENONFINITE;
    kvc__quantize_q8(x, head_dim, row);
    return KVC_OK;
}
