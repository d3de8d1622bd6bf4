/* Internal interface between the attention dispatcher and the per-ISA kernels. */
#ifndef KVC_ATTN_H
#define KVC_ATTN_H

#include "kvc.h"

/* One kv head and its `r` query heads: q/out are r rows of d floats; k/v point
 * at the head's first row; weights (NULL or r rows of wstride floats). */
typedef struct kvc__attn_job {
    const float *q;
    const void *k, *v;
    float *out;
    float *weights;
    size_t wstride;
    size_t row_stride; /* elements */
    uint32_t r, d, n;
    float scale;
    kvc_dtype dtype;
} kvc__attn_job;

typedef void (*kvc__attn_fn)(const kvc__attn_job *job);

void kvc__attn_scalar(const kvc__attn_job *job);
#if defined(__x86_64__) || defined(_M_X64)
void kvc__attn_avx2(const kvc__attn_job *job);
void kvc__attn_avx512(const kvc__attn_job *job);
#endif
#if defined(__aarch64__)
void kvc__attn_neon(const kvc__attn_job *job);
#endif

#endif
