/* Regression tests for the holes found by the v0.1.0 adversarial review:
 * each test failed (or crashed) before its fix. */
#include <stdint.h>
#include <stdlib.h>

#include "kvc.h"
#include "test.h"

/* A layout whose offsets wrap size_t must be refused: the kernels would
 * form those offsets and read (or write) somewhere else entirely. The
 * strides below wrap to small offsets, so before the check they "worked". */
TEST(regress_attention_layout_overflow) {
    float q[8] = {0}, out[8], w[16];
    float kv[64] = {0};
    const size_t half = SIZE_MAX / 2 + 1, quarter = half / 2; /* 2^63, 2^62 on 64-bit */
    const kvc_attn_layout ok = {2, 1, 4, 3, KVC_DTYPE_F32, 4, 12, 0.0f};
    kvc_attn_layout L = ok;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, w, 3), KVC_OK);
    /* the review's case: (n_keys - 1) * row_stride = 2 * 2^63 wraps to 0 */
    L.row_stride = half;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_EOVERFLOW);
    L.n_q_heads = 2, L.n_kv_heads = 2, L.head_stride = 16;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_EOVERFLOW);
    /* elements fit, bytes do not: 2 * 2^62 floats */
    L = ok, L.row_stride = quarter;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_EOVERFLOW);
    L.dtype = KVC_DTYPE_F16;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_EOVERFLOW);
    /* the head stride: head 1 at 2^62 + 16 floats wraps to 64 bytes */
    L = ok, L.n_kv_heads = 2, L.n_q_heads = 2, L.head_stride = quarter + 16;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_EOVERFLOW);
    CHECK_EQ(kvc_attention_heads(&L, 0, 1, q, kv, kv, out, NULL, 0), KVC_EOVERFLOW);
    /* the weights rows: row 1 at 2^62 floats wraps onto row 0 */
    L = ok;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, w, quarter), KVC_EOVERFLOW);
    CHECK_EQ(kvc_attention_heads(&L, 0, 1, q, kv, kv, out, w, quarter), KVC_EOVERFLOW);
    /* a stride that is never applied cannot overflow: one key, one kv head */
    L = ok, L.n_keys = 1, L.row_stride = SIZE_MAX, L.head_stride = SIZE_MAX;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, w, 1), KVC_OK);
}
