/* Helpers shared by the built-in policies: their state is a header followed
 * by per-(group, slot) arrays. */
#ifndef KVC_POLICY_UTIL_H
#define KVC_POLICY_UTIL_H

#include "kvc.h"

#define KVC__POLICY_INIT(nm, nd) .abi_version = KVC_POLICY_ABI, .struct_size = sizeof(kvc_policy), .name = nm, .needs = nd

/* Bytes of `arrays` per-slot arrays of `elem` bytes each (n_groups x capacity). */
static inline size_t kvc__slot_arrays(const kvc_policy_ctx *ctx, size_t arrays, size_t elem) {
    return arrays * (size_t)ctx->n_groups * ctx->capacity * elem;
}

/* Header sizes rounded to 64 bytes, so the arrays after a state header stay aligned. */
static inline size_t kvc__hdr(size_t header) { return (header + 63) & ~(size_t)63; }
static inline void *kvc__past_hdr(void *state, size_t header) { return (char *)state + kvc__hdr(header); }

#endif
