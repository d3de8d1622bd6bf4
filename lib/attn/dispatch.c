/* Kernel dispatch (compiled with baseline flags): picks the best ISA the CPU
 * supports once, honours KVC_FORCE_ISA, and validates the public arguments. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn/attn.h"
#include "internal.h"

typedef struct {
    const char *name;
    kvc__attn_fn fn;
    bool (*supported)(void);
} isa_entry;

static bool always(void) { return true; }

static const isa_entry isas[] = {
    {"scalar", kvc__attn_scalar, always},
};
#define N_ISAS (sizeof isas / sizeof isas[0])

static const isa_entry *active;

static const isa_entry *best(void) {
    for (size_t i = N_ISAS; i-- > 0;)
        if (isas[i].supported()) return &isas[i];
    return &isas[0];
}

static const isa_entry *pick(void) {
    const isa_entry *e = active;
    if (e) return e;
    const char *force = getenv("KVC_FORCE_ISA");
    e = best();
    if (force && *force && strcmp(force, "auto") != 0)
        for (size_t i = 0; i < N_ISAS; i++)
            if (strcmp(force, isas[i].name) == 0 && isas[i].supported()) e = &isas[i];
    active = e; /* benign race: every thread computes the same answer */
    return e;
}

const char *kvc_active_isa(void) { return pick()->name; }

int kvc_set_isa(const char *isa) {
    if (!isa || strcmp(isa, "auto") == 0) {
        active = best();
        return KVC_OK;
    }
    for (size_t i = 0; i < N_ISAS; i++)
        if (strcmp(isa, isas[i].name) == 0) {
            if (!isas[i].supported()) return KVC_ENOTSUP;
            active = &isas[i];
            return KVC_OK;
        }
    static const char *const known[] = {"avx2", "avx512", "neon"};
    for (size_t i = 0; i < 3; i++)
        if (strcmp(isa, known[i]) == 0) return KVC_ENOTSUP;
    return KVC_EUNKNOWN;
}

int kvc__attention_heads(const kvc_attn_layout *L, uint32_t kv_begin, uint32_t kv_end, const float *q,
                         const void *k, const void *v, float *out, float *weights, size_t weights_stride) {
    kvc__attn_fn fn = pick()->fn;
    uint32_t r = L->n_q_heads / L->n_kv_heads;
    size_t esz = L->dtype == KVC_DTYPE_F32 ? 4 : 2;
    float scale = L->scale > 0.0f ? L->scale : 1.0f / sqrtf((float)L->head_dim);
    for (uint32_t h = kv_begin; h < kv_end; h++) {
        kvc__attn_job job;
        job.q = q + (size_t)h * r * L->head_dim;
        job.k = (const char *)k + (size_t)h * L->head_stride * esz;
        job.v = (const char *)v + (size_t)h * L->head_stride * esz;
        job.out = out + (size_t)h * r * L->head_dim;
        job.weights = weights ? weights + (size_t)h * r * weights_stride : NULL;
        job.wstride = weights_stride;
        job.row_stride = L->row_stride;
        job.r = r;
        job.d = L->head_dim;
        job.n = L->n_keys;
        job.scale = scale;
        job.dtype = L->dtype;
        fn(&job);
    }
    return KVC_OK;
}

static int check_layout(const kvc_attn_layout *L, const float *q, const void *k, const void *v, const float *out,
                        const float *weights, size_t weights_stride) {
    if (!L || !q || !k || !v || !out) return KVC_EINVAL;
    if (!L->n_q_heads || !L->n_kv_heads || !L->head_dim || !L->n_keys) return KVC_EINVAL;
    if (L->n_q_heads % L->n_kv_heads || (unsigned)L->dtype > KVC_DTYPE_BF16) return KVC_EINVAL;
    if (L->row_stride < L->head_dim) return KVC_EINVAL;
    if (L->n_kv_heads > 1 && L->head_stride < (size_t)(L->n_keys - 1) * L->row_stride + L->head_dim)
        return KVC_EINVAL;
    if (weights && weights_stride < L->n_keys) return KVC_EINVAL;
    if (!(L->scale >= 0.0f) || isinf(L->scale)) return KVC_EINVAL;
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
