/* Kernel dispatch (compiled with baseline flags): picks the best ISA the CPU
 * and OS support once, honours KVC_FORCE_ISA, and validates the public
 * arguments. Every table entry is a kernel compiled into this build, and the
 * scalar one is always there, so the chosen function is never NULL. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn.h"
#include "internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KVC__X86 1
#include <cpuid.h>
#endif

typedef struct {
    const char *name;
    kvc__attn_fn fn;
    bool (*supported)(void);
    bool opt_in; /* usable, but "auto" passes it over (see isas[]) */
} isa_entry;

static bool always(void) { return true; }

#ifdef KVC__X86
/* XCR0: which register states the OS saves on context switch. A CPU may
 * have AVX-512 while the OS (or hypervisor) leaves ZMM state disabled; then
 * the instructions fault, so cpuid bits alone are not enough. */
static uint64_t xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static bool leaf7(uint32_t *ebx) {
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7) return false;
    __cpuid_count(7, 0, a, b, c, d);
    *ebx = b;
    return true;
}

/* AVX2 + FMA + F16C, with XMM and YMM state enabled. */
static bool has_avx2(void) {
    unsigned a, b, c, d;
    uint32_t b7;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const unsigned need1 = (1u << 12) | (1u << 27) | (1u << 28) | (1u << 29); /* FMA OSXSAVE AVX F16C */
    if ((c & need1) != need1) return false;
    if ((xcr0() & 0x6) != 0x6) return false;
    return leaf7(&b7) && (b7 & (1u << 5)); /* AVX2 */
}

/* AVX-512 F, DQ, BW, VL, with opmask and both ZMM state components enabled. */
static bool has_avx512(void) {
    uint32_t b7;
    if (!has_avx2() || (xcr0() & 0xe6) != 0xe6) return false;
    const uint32_t need7 = (1u << 16) | (1u << 17) | (1u << 30) | (1u << 31);
    return leaf7(&b7) && (b7 & need7) == need7;
}

/* AVX-512 VNNI (leaf 7 ECX bit 11); BF16 (leaf 7 subleaf 1 EAX bit 5). */
static bool has_avx512_vnni(void) {
    unsigned a, b, c, d;
    if (!has_avx512()) return false;
    __cpuid_count(7, 0, a, b, c, d);
    return (c >> 11) & 1;
}
static bool has_avx512_bf16(void) {
    unsigned a, b, c, d;
    if (!has_avx512_vnni()) return false;
    __cpuid_count(7, 0, a, b, c, d);
    if (a < 1) return false; /* no subleaf 1 */
    __cpuid_count(7, 1, a, b, c, d);
    return (a >> 5) & 1;
}
#endif

/* Ordered from least to most preferred. avx512_bf16 is opt-in: on the Intel
 * Xeon (family 6, model 207) it was measured on, its two vdpbf16ps per 32
 * elements made bf16 decode 10-12% slower than avx512_vnni's widen-and-FMA
 * (docs/performance.md), and it rounds the query; force it by name. */
static const isa_entry isas[] = {
    {"scalar", kvc__attn_scalar, always, false},
#ifdef KVC__X86
    {"avx2", kvc__attn_avx2, has_avx2, false},
    {"avx512", kvc__attn_avx512, has_avx512, false},
    {"avx512_vnni", kvc__attn_avx512_vnni, has_avx512_vnni, false},
    {"avx512_bf16", kvc__attn_avx512_bf16, has_avx512_bf16, true},
#endif
#if defined(__aarch64__)
    {"neon", kvc__attn_neon, always, false}, /* NEON is mandatory on AArch64 */
#endif
};
#define N_ISAS (sizeof isas / sizeof isas[0])

static _Atomic(const isa_entry *) active;

static const isa_entry *best(void) {
    for (size_t i = N_ISAS; i-- > 0;)
        if (!isas[i].opt_in && isas[i].supported()) return &isas[i];
    return &isas[0];
}

static const isa_entry *pick(void) {
    const isa_entry *e = atomic_load_explicit(&active, memory_order_acquire);
    if (e) return e;
    const char *force = getenv("KVC_FORCE_ISA");
    e = best();
    if (force && *force && strcmp(force, "auto") != 0)
        for (size_t i = 0; i < N_ISAS; i++)
            if (strcmp(force, isas[i].name) == 0 && isas[i].supported()) e = &isas[i];
    /* threads racing here all compute the same answer */
    atomic_store_explicit(&active, e, memory_order_release);
    return e;
}

const char *kvc_active_isa(void) { return pick()->name; }

size_t kvc_row_bytes(kvc_dtype dtype, uint32_t head_dim) {
    return (unsigned)dtype > KVC_DTYPE_Q8 ? 0 : kvc__row_bytes(dtype, head_dim);
}

int kvc_set_isa(const char *isa) {
    if (!isa || strcmp(isa, "auto") == 0) {
        atomic_store_explicit(&active, best(), memory_order_release);
        return KVC_OK;
    }
    for (size_t i = 0; i < N_ISAS; i++)
        if (strcmp(isa, isas[i].name) == 0) {
            if (!isas[i].supported()) return KVC_ENOTSUP;
            atomic_store_explicit(&active, &isas[i], memory_order_release);
            return KVC_OK;
        }
    static const char *const known[] = {"avx2", "avx512", "avx512_vnni", "avx512_bf16", "neon"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(isa, known[i]) == 0) return KVC_ENOTSUP;
    return KVC_EUNKNOWN;
}

/* One job per kv head (split into blocks of at most MAXH query heads).
 * Heads stored one after the other go one at a time, each a sequential pass;
 * heads whose rows interleave (token-major: head_stride below a head's span)
 * go KVC__MAXJ at a time, so the kernel reads each tile of all of them while
 * their rows sit side by side, instead of striding through memory per head. */
int kvc__attention_heads(const kvc_attn_layout *L, uint32_t kv_begin, uint32_t kv_end, const float *q,
                         const void *k, const void *v, float *out, float *weights, size_t weights_stride) {
    kvc__attn_fn fn = pick()->fn;
    const uint32_t r = L->n_q_heads / L->n_kv_heads, d = L->head_dim;
    const size_t esz = kvc__esize(L->dtype);
    const float scale = L->scale > 0.0f ? L->scale : 1.0f / sqrtf((float)d);
    const bool interleaved = kv_end - kv_begin > 1 && L->head_stride < (size_t)L->n_keys * L->row_stride;
    const uint32_t batch = interleaved ? KVC__MAXJ : 1;
    kvc__attn_job jobs[KVC__MAXJ];
    uint32_t nj = 0;
    for (uint32_t h = kv_begin; h < kv_end; h++)
        for (uint32_t h0 = 0; h0 < r; h0 += MAXH) {
            kvc__attn_job *job = &jobs[nj++];
            const size_t qh = (size_t)h * r + h0; /* first query head of the job */
            job->q = q + qh * d;
            job->k = (const char *)k + (size_t)h * L->head_stride * esz;
            job->v = (const char *)v + (size_t)h * L->head_stride * esz;
            job->out = out + qh * d;
            job->weights = weights ? weights + qh * weights_stride : NULL;
            job->wstride = weights_stride;
            job->row_stride = L->row_stride;
            job->r = r - h0 < MAXH ? r - h0 : MAXH;
            job->d = d;
            job->n = L->n_keys;
            job->scale = scale;
            job->dtype = L->dtype;
            if (nj == batch) {
                fn(jobs, nj);
                nj = 0;
            }
        }
    if (nj) fn(jobs, nj);
    return KVC_OK;
}

/* Elements spanned by `rows` rows of `len` elements, `stride` apart, into
 * *span; false when that, in bytes of `esz`, passes PTRDIFF_MAX (beyond it
 * pointer arithmetic is undefined, and a wrapped size would let a layout
 * through that makes the kernels read the wrong memory). */
static bool span_ok(size_t rows, size_t stride, size_t len, size_t esz, size_t *span) {
    size_t e, bytes;
    if (!kvc__mul(rows - 1, stride, &e) || !kvc__add(e, len, &e) || !kvc__mul(e, esz, &bytes) ||
        bytes > PTRDIFF_MAX)
        return false;
    if (span) *span = e;
    return true;
}

static int check_layout(const kvc_attn_layout *L, const float *q, const void *k, const void *v, const float *out,
                        const float *weights, size_t weights_stride) {
    if (!L || !q || !k || !v || !out) return KVC_EINVAL;
    if (!L->n_q_heads || !L->n_kv_heads || !L->head_dim || !L->n_keys) return KVC_EINVAL;
    if (L->n_q_heads % L->n_kv_heads || (unsigned)L->dtype > KVC_DTYPE_Q8) return KVC_EINVAL;
    /* a row: head_dim elements (Q8: head_dim bytes, then its f32 scale) */
    const size_t esz = kvc__esize(L->dtype), row = kvc__row_bytes(L->dtype, L->head_dim) / esz;
    if (L->row_stride < row) return KVC_EINVAL;
    if (weights && weights_stride < L->n_keys) return KVC_EINVAL;
    if (!(L->scale >= 0.0f) || isinf(L->scale)) return KVC_EINVAL;
    /* every offset the kernels form must fit: one head's rows, all heads, q/out, weights */
    size_t head;
    if (!span_ok(L->n_keys, L->row_stride, row, esz, &head) ||
        !span_ok(L->n_kv_heads, L->head_stride, head, esz, NULL) ||
        !span_ok(L->n_q_heads, L->head_dim, L->head_dim, sizeof(float), NULL) ||
        (weights && !span_ok(L->n_q_heads, weights_stride, L->n_keys, sizeof(float), NULL)))
        return KVC_EOVERFLOW;
    /* K and V are only read: heads may interleave or overlap (token-major
     * rows, a K shared by several heads); only a span that cannot be
     * addressed is refused (above). */
    return KVC_OK;
}

int kvc_attention(const kvc_attn_layout *L, const float *q, const void *k, const void *v, float *out,
                  float *weights, size_t weights_stride) {
    int rc = check_layout(L, q, k, v, out, weights, weights_stride);
    if (rc) return rc;
    return kvc__attention_heads(L, 0, L->n_kv_heads, q, k, v, out, weights, weights_stride);
}

int kvc_attention_heads(const kvc_attn_layout *L, uint32_t kv_begin, uint32_t kv_end, const float *q, const void *k,
                        const void *v, float *out, float *weights, size_t weights_stride) {
    int rc = check_layout(L, q, k, v, out, weights, weights_stride);
    if (rc) return rc;
    if (kv_begin >= kv_end || kv_end > L->n_kv_heads) return KVC_ERANGE;
    return kvc__attention_heads(L, kv_begin, kv_end, q, k, v, out, weights, weights_stride);
}
