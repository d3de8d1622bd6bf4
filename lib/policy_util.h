/* Helpers shared by the built-in policies: their state is a header followed
 * by per-(group, slot) arrays. */
#ifndef KVC_POLICY_UTIL_H
#define KVC_POLICY_UTIL_H

#include <math.h>
#include <stdint.h>

#include "kvc.h"

#define KVC__POLICY_INIT(nm, nd) .abi_version = KVC_POLICY_ABI, .struct_size = sizeof(kvc_policy), .name = nm, .needs = nd

/* Bytes of `arrays` per-slot arrays of `elem` bytes each (n_groups x capacity). */
static inline size_t kvc__slot_arrays(const kvc_policy_ctx *ctx, size_t arrays, size_t elem) {
    return arrays * (size_t)ctx->n_groups * ctx->capacity * elem;
}

/* Header sizes rounded to 64 bytes, so the arrays after a state header stay aligned. */
static inline size_t kvc__hdr(size_t header) { return (header + 63) & ~(size_t)63; }
static inline void *kvc__past_hdr(void *state, size_t header) { return (char *)state + kvc__hdr(header); }

/* a . b in f32, vectorised (lib/dot.c). */
float kvc__dot_f32(const float *a, const float *b, uint32_t n);

/* Lowest `k` of `n` unit scores into victims (as candidate slots), ties going
 * to the older unit (the lower index: candidates come in position order) and
 * a NaN counting as -infinity, like the core's own rule for `score`. `idx` is
 * scratch of n entries. Shell sort: no allocation, fine for a few thousand. */
static inline void kvc__evict_lowest(const double *score, uint32_t n, uint32_t k, const uint32_t *candidates,
                                     uint32_t *idx, uint32_t *victims) {
    static const uint32_t gaps[] = {1750, 701, 301, 132, 57, 23, 10, 4, 1};
    if (k == 1) { /* one victim (chunk 1, every append): a scan, not a sort */
        uint32_t best = 0;
        for (uint32_t i = 1; i < n; i++) {
            double a = score[i] == score[i] ? score[i] : -INFINITY, b = score[best] == score[best] ? score[best] : -INFINITY;
            if (a < b) best = i;
        }
        victims[0] = candidates[best];
        return;
    }
    for (uint32_t i = 0; i < n; i++) idx[i] = i;
    for (int gi = 0; gi < 9; gi++) {
        uint32_t gap = gaps[gi];
        for (uint32_t i = gap; i < n; i++) {
            uint32_t x = idx[i], j = i;
            double sx = score[x] == score[x] ? score[x] : -INFINITY;
            for (; j >= gap; j -= gap) {
                uint32_t y = idx[j - gap];
                double sy = score[y] == score[y] ? score[y] : -INFINITY;
                if (!(sx < sy || (sx == sy && x < y))) break;
                idx[j] = y;
            }
            idx[j] = x;
        }
    }
    for (uint32_t i = 0; i < k; i++) victims[i] = candidates[idx[i]];
}

/* Resident slots of one group in position order (positions[s] >= 0), into
 * `order`; returns their count. Insertion into a sorted list by a Shell
 * sort on positions: no allocation. */
static inline uint32_t kvc__residents_by_position(const int64_t *positions, uint32_t cap, uint32_t *order) {
    static const uint32_t gaps[] = {1750, 701, 301, 132, 57, 23, 10, 4, 1};
    uint32_t n = 0;
    for (uint32_t s = 0; s < cap; s++)
        if (positions[s] >= 0) order[n++] = s;
    for (int gi = 0; gi < 9; gi++) {
        uint32_t gap = gaps[gi];
        for (uint32_t i = gap; i < n; i++) {
            uint32_t x = order[i], j = i;
            for (; j >= gap && positions[order[j - gap]] > positions[x]; j -= gap) order[j] = order[j - gap];
            order[j] = x;
        }
    }
    return n;
}
/* The k of n candidate tokens (indices, increasing = oldest first) with the
 * lowest keep(ctx, token) into out: ties go to the older, NaN keeps nothing.
 * Uses `out` as its heap: no scratch. Shared by prefill rules (prefill.c). */
typedef float (*kvc__keep_fn)(const void *ctx, uint32_t token);
void kvc__lowest_k_fn(const uint32_t *cand, uint32_t n, uint32_t k, kvc__keep_fn keep, const void *ctx,
                      uint32_t *out);

#endif
