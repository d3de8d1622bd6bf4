/* Internal interface between the attention dispatcher and the per-ISA kernels. */
#ifndef KVC_ATTN_H
#define KVC_ATTN_H

#include <string.h>

#include "kvc.h"

/* The SIMD kernels' register blocks are arrays indexed by compile-time
 * loops: they must be fully unrolled and inlined to live in registers
 * (clang needs its own pragma). */
#if defined(__clang__)
#define AI static inline __attribute__((always_inline))
#define UNROLL _Pragma("clang loop unroll(full)")
#elif defined(__GNUC__)
#define AI static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")
#else
#define AI static inline
#define UNROLL
#endif

/* Bytes per element (Q8: the int8 values; each row also ends in its scale). */
static inline size_t kvc__esize(kvc_dtype dt) { return dt == KVC_DTYPE_F32 ? 4 : dt == KVC_DTYPE_Q8 ? 1 : 2; }
/* Q8: byte offset of a row's f32 scale, after its d int8 values. */
static inline size_t kvc__q8_scale_off(uint32_t d) { return ((size_t)d + 3) & ~(size_t)3; }
/* Bytes one row of d elements spans (what kvc_row_bytes() returns). */
static inline size_t kvc__row_bytes(kvc_dtype dt, uint32_t d) {
    return dt == KVC_DTYPE_Q8 ? kvc__q8_scale_off(d) + 4 : (size_t)d * kvc__esize(dt);
}
/* The scale of a Q8 row (1 for the other dtypes, where it is never used). */
static inline float kvc__row_scale(const void *row, uint32_t d, kvc_dtype dt) {
    float s = 1.0f;
    if (dt == KVC_DTYPE_Q8) memcpy(&s, (const char *)row + kvc__q8_scale_off(d), sizeof s);
    return s;
}

#define KVC__MAXJ 8 /* jobs per kernel call (kv heads read tile by tile together) */

/* One kv head and `r` (<= MAXH) of its query heads: q/out are r rows of d
 * floats; k/v point at the head's first row; weights (NULL or r rows of
 * wstride floats). */
#define TILE 64 /* keys per tile: K+V tile of d=128 f32 is 64 KiB, L2-resident */
#define MAXH 64 /* query heads per pass of the SIMD kernels (scratch: MAXH*TILE floats on the stack) */

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

/* Runs `n` (1..KVC__MAXJ) jobs that share d, n, row_stride, scale and dtype. */
typedef void (*kvc__attn_fn)(const kvc__attn_job *jobs, uint32_t n);

void kvc__attn_scalar(const kvc__attn_job *jobs, uint32_t n);
#if defined(__x86_64__) || defined(_M_X64)
void kvc__attn_avx2(const kvc__attn_job *jobs, uint32_t n);
void kvc__attn_avx512(const kvc__attn_job *jobs, uint32_t n);
void kvc__attn_avx512_vnni(const kvc__attn_job *jobs, uint32_t n);
void kvc__attn_avx512_bf16(const kvc__attn_job *jobs, uint32_t n);
#endif
#if defined(__aarch64__)
void kvc__attn_neon(const kvc__attn_job *jobs, uint32_t n);
#endif

#endif
