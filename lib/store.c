/* STORE mode: the cache owns K/V. append converts and stores one token (after
 * making room), attend runs the dispatched kernel and feeds the policy. */
#include "internal.h"

#include <math.h>
#include <string.h>

#include "attn/attn.h"
#include "convert.h"

void kvc__store_row(kvc_cache *c, void *base, uint32_t h, uint32_t slot, const float *x) {
    char *row = (char *)base + ((size_t)h * c->head_stride + (size_t)slot * c->row_stride) * c->esize;
    if (c->dtype == KVC_DTYPE_F32) {
        memcpy(row, x, (size_t)c->d * 4);
    } else if (c->dtype == KVC_DTYPE_Q8) {
        kvc__quantize_q8(x, c->d, row);
    } else {
        uint16_t *r = (uint16_t *)(void *)row;
        for (uint32_t i = 0; i < c->d; i++)
            r[i] = c->dtype == KVC_DTYPE_F16 ? kvc__f32_to_f16(x[i]) : kvc__f32_to_bf16(x[i]);
    }
}

int kvc_cache_append(kvc_cache *c, int64_t pos, const float *k, const float *v) {
    if (!c) return KVC_EINVAL;
    if (c->mode != KVC_MODE_STORE)
        return kvc__fail(c, KVC_EMODE, "append needs a STORE-mode cache; INDEX mode uses kvc_cache_reserve");
    int rc = kvc__check_token(c, pos, k, v, true);
    if (rc) return rc;
    if ((rc = kvc__prepare(c))) return rc;
    if ((rc = kvc__make_room(c, NULL))) return rc;
    uint32_t slot = c->len;
    for (uint32_t h = 0; h < c->n_kv; h++) {
        kvc__store_row(c, c->k, h, slot, k + (size_t)h * c->d);
        kvc__store_row(c, c->v, h, slot, v + (size_t)h * c->d);
    }
    for (uint32_t g = 0; g < c->n_groups; g++) kvc__insert(c, g, slot, pos, k, v);
    memset(c->attended, 0, c->n_kv); /* weights computed before this token no longer match the slots */
    c->len++;
    c->appended++;
    c->last_pos = pos;
    c->stats.appends++;
    return KVC_OK;
}

/* Record a failure of kvc_cache_attend_heads(). Several threads may run it on
 * one cache and fail at once: whoever claims the message buffer writes it,
 * the others leave it, so the buffer is never written concurrently. */
static int heads_fail(kvc_cache *c, int status, const char *msg) {
    int idle = 0;
    if (atomic_compare_exchange_strong_explicit(&c->err_busy, &idle, 1, memory_order_acquire,
                                                memory_order_relaxed)) {
        kvc__fail(c, status, "%s", msg);
        atomic_store_explicit(&c->err_busy, 0, memory_order_release);
    }
    return status;
}

/* `heads`: called from kvc_cache_attend_heads(), which may run concurrently. */
static int attend_check(kvc_cache *c, const float *q, float *out, bool heads) {
    const char *msg = NULL;
    int status = KVC_OK;
    if (!c) return KVC_EINVAL;
    if (c->mode != KVC_MODE_STORE)
        status = KVC_EMODE, msg = "attend needs a STORE-mode cache; in INDEX mode the engine attends";
    else if (!q || !out)
        status = KVC_EINVAL, msg = "q and out must not be NULL";
    else if (!c->frozen || c->len == 0)
        status = KVC_EEMPTY, msg = "attend on an empty cache: append a token first";
    if (!status) return KVC_OK;
    return heads ? heads_fail(c, status, msg) : kvc__fail(c, status, "%s", msg);
}

int kvc_cache_attend_heads(kvc_cache *c, const float *q, float *out, uint32_t kv_begin, uint32_t kv_end) {
    int rc = attend_check(c, q, out, true);
    if (rc) return rc;
    if (kv_begin >= kv_end || kv_end > c->n_kv)
        return heads_fail(c, KVC_ERANGE, "attend_heads: kv-head range must satisfy begin < end <= n_kv_heads");
    uint32_t ratio = c->n_q / c->n_kv;
    size_t first = (size_t)kv_begin * ratio * c->d, count = (size_t)(kv_end - kv_begin) * ratio * c->d;
    /* no writes to the cache but the heads' own weights and flags: concurrent
     * calls on disjoint ranges are safe */
    if (kvc__check_finite(q + first, count))
        return heads_fail(c, KVC_ENONFINITE, "NaN or Inf in q: nothing computed");
    kvc_attn_layout L = {c->n_q, c->n_kv, c->d, c->len, c->dtype, c->row_stride, c->head_stride, c->scale};
    float *w = (c->pol.needs & KVC_NEED_ATTN) ? c->weights : NULL;
    kvc__attention_heads(&L, kv_begin, kv_end, q, c->k, c->v, out, w, c->cap);
    /* every input is finite, so a non-finite output means f32 overflowed */
    bool ok = kvc__check_finite(out + first, count) == KVC_OK;
    memset(c->attended + kv_begin, ok, kv_end - kv_begin);
    if (!ok)
        return heads_fail(c, KVC_ERANGE,
                          "attention overflows f32 (|scale * q.k| or the weighted sum of V exceeds 3.4e38): "
                          "out is not usable and nothing reaches the policy; scale q, K or V down");
    return KVC_OK;
}

/* acc[j] = ((add ? acc[j] : 0) + sum over nh rows (`stride` apart) of
 * w[row][j]) * scale, in one pass over blocks of 8 slots whose partial sums
 * stay in registers (written as scalars so that gcc and clang both vectorise
 * them at -O2: 4x faster than summing row by row). The additions run in row
 * order, as a row-by-row sum would. */
static void sum_rows(float *restrict acc, const float *restrict w, size_t stride, uint32_t nh, uint32_t n, bool add,
                     float scale) {
    uint32_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const float *r = w + j;
        float *o = acc + j;
        float a0 = r[0], a1 = r[1], a2 = r[2], a3 = r[3], a4 = r[4], a5 = r[5], a6 = r[6], a7 = r[7];
        if (add) {
            a0 = o[0] + a0, a1 = o[1] + a1, a2 = o[2] + a2, a3 = o[3] + a3;
            a4 = o[4] + a4, a5 = o[5] + a5, a6 = o[6] + a6, a7 = o[7] + a7;
        }
        for (uint32_t h = 1; h < nh; h++) {
            r += stride;
            a0 += r[0], a1 += r[1], a2 += r[2], a3 += r[3], a4 += r[4], a5 += r[5], a6 += r[6], a7 += r[7];
        }
        o[0] = a0 * scale, o[1] = a1 * scale, o[2] = a2 * scale, o[3] = a3 * scale;
        o[4] = a4 * scale, o[5] = a5 * scale, o[6] = a6 * scale, o[7] = a7 * scale;
    }
    for (; j < n; j++) {
        float a = add ? acc[j] + w[j] : w[j];
        for (uint32_t h = 1; h < nh; h++) a += w[h * stride + j];
        acc[j] = a * scale;
    }
}

/* mass = mean over the nh query-head rows of weights starting at w. */
static void group_mass(float *restrict mass, const float *restrict w, size_t stride, uint32_t nh, uint32_t n) {
    sum_rows(mass, w, stride, nh, n, false, 1.0f / (float)nh);
}

/* Is the sum of n masses (each a mean of softmax weights, in [0, 1]) finite?
 * A NaN or Inf anywhere makes it so; finite values cannot overflow it. */
static bool masses_finite(const float *m, uint32_t n) {
    float s = 0.0f;
    for (uint32_t j = 0; j < n; j++) s += m[j];
    return isfinite(s);
}

/* The end of an attention step. The per-group masses in c->mass are final
 * (for policies that asked for them): check them all, and only then hand
 * them over, so that a policy never sees a non-finite mass. */
static int feed_policy(kvc_cache *c, const float *q) {
    uint32_t n = c->len;
    if (c->pol.needs & KVC_NEED_ATTN) {
        for (uint32_t g = 0; g < c->n_groups; g++)
            if (!masses_finite(c->mass + (size_t)g * c->cap, n))
                return kvc__fail(c, KVC_ERANGE, "attention weights of group %u overflowed f32: nothing reaches "
                                                "the policy; scale q or K down", g);
        if (c->pol.on_attend)
            for (uint32_t g = 0; g < c->n_groups; g++)
                c->pol.on_attend(c->pstate, g, c->mass + (size_t)g * c->cap, n);
    }
    kvc__window_push(c, q);
    memset(c->attended, 0, c->n_kv); /* the weights are used up */
    c->stats.attends++;
    return KVC_OK;
}

int kvc_cache_attend_finish(kvc_cache *c, const float *q) {
    if (!c) return KVC_EINVAL;
    if (c->mode != KVC_MODE_STORE)
        return kvc__fail(c, KVC_EMODE, "attend_finish needs a STORE-mode cache; in INDEX mode the engine attends");
    if (!q) return kvc__fail(c, KVC_EINVAL, "q must not be NULL");
    if (!c->frozen || c->len == 0) return kvc__fail(c, KVC_EEMPTY, "attend_finish on an empty cache: append a token first");
    /* q may enter the query window: reject what attend_heads rejected */
    if (kvc__check_finite(q, (size_t)c->n_q * c->d))
        return kvc__fail(c, KVC_ENONFINITE, "NaN or Inf in q: nothing handed to the policy");
    for (uint32_t h = 0; h < c->n_kv; h++)
        if (!c->attended[h])
            return kvc__fail(c, KVC_ESTATE,
                             "attend_finish: kv head %u was not attended since the last append or finish: call "
                             "kvc_cache_attend_heads for every kv head first", h);
    if (c->pol.needs & KVC_NEED_ATTN) {
        uint32_t ratio = c->n_q / c->n_kv, n = c->len;
        for (uint32_t g = 0; g < c->n_groups; g++) {
            /* group mass: mean over the query heads that read this group's slots */
            uint32_t h0 = c->n_groups == 1 ? 0 : g * ratio, h1 = c->n_groups == 1 ? c->n_q : h0 + ratio;
            group_mass(c->mass + (size_t)g * c->cap, c->weights + (size_t)h0 * c->cap, c->cap, h1 - h0, n);
        }
    }
    return feed_policy(c, q);
}

int kvc_cache_attend(kvc_cache *c, const float *q, float *out) {
    int rc = attend_check(c, q, out, false);
    if (rc) return rc;
    if (kvc__check_finite(q, (size_t)c->n_q * c->d))
        return kvc__fail(c, KVC_ENONFINITE, "NaN or Inf in q: nothing computed");
    if (!(c->pol.needs & KVC_NEED_ATTN)) {
        if ((rc = kvc_cache_attend_heads(c, q, out, 0, c->n_kv))) return rc;
        return kvc_cache_attend_finish(c, q);
    }
    /* Same result as attend_heads + attend_finish, one kv head at a time: its
     * query heads' weights are averaged while still in L1/L2 instead of being
     * read back from L3 after the whole pass (the split calls cannot do this:
     * concurrent attend_heads must not write anything but their own rows). */
    const uint32_t ratio = c->n_q / c->n_kv, n = c->len;
    for (uint32_t h = 0; h < c->n_kv; h++) {
        if ((rc = kvc_cache_attend_heads(c, q, out, h, h + 1))) return rc;
        const float *w = c->weights + (size_t)h * ratio * c->cap;
        if (c->n_groups > 1) /* head scope: kv head h is group h */
            group_mass(c->mass + (size_t)h * c->cap, w, c->cap, ratio, n);
        else /* shared scope: sum every query head in order, mean at the end */
            sum_rows(c->mass, w, c->cap, ratio, n, h > 0, h + 1 == c->n_kv ? 1.0f / (float)c->n_q : 1.0f);
    }
    return feed_policy(c, q);
}

int kvc_cache_read(const kvc_cache *c, uint32_t kv_head, uint32_t slot, float *k, float *v) {
    if (!c) return KVC_EINVAL;
    if (c->mode != KVC_MODE_STORE) return KVC_EMODE;
    if (kv_head >= c->n_kv || slot >= c->len) return KVC_ERANGE;
    for (int which = 0; which < 2; which++) {
        float *dst = which ? v : k;
        if (!dst) continue;
        const char *row = (const char *)(which ? c->v : c->k) +
                          ((size_t)kv_head * c->head_stride + (size_t)slot * c->row_stride) * c->esize;
        const float sc = kvc__row_scale(row, c->d, c->dtype);
        for (uint32_t i = 0; i < c->d; i++) {
            if (c->dtype == KVC_DTYPE_F32)
                dst[i] = ((const float *)(const void *)row)[i];
            else if (c->dtype == KVC_DTYPE_Q8)
                dst[i] = sc * (float)((const int8_t *)(const void *)row)[i];
            else if (c->dtype == KVC_DTYPE_F16)
                dst[i] = kvc__f16_to_f32(((const uint16_t *)(const void *)row)[i]);
            else
                dst[i] = kvc__bf16_to_f32(((const uint16_t *)(const void *)row)[i]);
        }
    }
    return KVC_OK;
}

/* Move the resident of slot `from` to `to` within group g (STORE mode). */
static void move_slot(kvc_cache *c, uint32_t g, uint32_t from, uint32_t to) {
    size_t gi = (size_t)g * c->cap;
    c->pos[gi + to] = c->pos[gi + from];
    c->seq[gi + to] = c->seq[gi + from];
    c->pos[gi + from] = -1;
    c->seq[gi + from] = 0;
    uint32_t h0 = c->n_groups == 1 ? 0 : g, h1 = c->n_groups == 1 ? c->n_kv : g + 1;
    size_t row = (size_t)c->row_stride * c->esize;
    for (uint32_t h = h0; h < h1; h++) {
        size_t base = (size_t)h * c->head_stride * c->esize;
        memcpy((char *)c->k + base + to * row, (char *)c->k + base + from * row, row);
        memcpy((char *)c->v + base + to * row, (char *)c->v + base + from * row, row);
    }
    if (c->pol.on_move) c->pol.on_move(c->pstate, g, from, to);
}

void kvc__store_evict(kvc_cache *c, uint32_t g, const uint32_t *victims, uint32_t n) {
    size_t gi = (size_t)g * c->cap;
    uint32_t B = c->block, len = c->len;
    for (uint32_t i = 0; i < n; i++) {
        /* descending order: the last unit is never a victim still to come */
        uint32_t s0 = victims[i], last = len - B;
        for (uint32_t j = 0; j < B; j++) {
            if (s0 != last)
                move_slot(c, g, last + j, s0 + j);
            else {
                c->pos[gi + s0 + j] = -1;
                c->seq[gi + s0 + j] = 0;
            }
        }
        len -= B;
    }
}
