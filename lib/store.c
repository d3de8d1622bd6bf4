/* STORE mode: the cache owns K/V. append converts and stores one token (after
 * making room), attend runs the dispatched kernel and feeds the policy. */
#include "internal.h"

#include <math.h>
#include <string.h>

#include "convert.h"

int kvc__check_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return KVC_ENONFINITE;
    return KVC_OK;
}

static void head_stats(const float *k, const float *v, uint32_t d, uint32_t needs, float st[3]) {
    if (needs & KVC_NEED_KEY_STATS) {
        double ss = 0.0;
        for (uint32_t i = 0; i < d; i++) ss += (double)k[i] * k[i];
        st[0] = (float)sqrt(ss);
    }
    if (needs & KVC_NEED_VALUE_STATS) {
        float lo = v[0], hi = v[0];
        double l1 = 0.0;
        for (uint32_t i = 0; i < d; i++) {
            lo = v[i] < lo ? v[i] : lo;
            hi = v[i] > hi ? v[i] : hi;
            l1 += fabs((double)v[i]);
        }
        st[1] = hi - lo;
        st[2] = (float)l1;
    }
}

void kvc__token_stats(const kvc_cache *c, uint32_t g, const float *k, const float *v, kvc_token *tok) {
    uint32_t needs = c->pol.needs & (KVC_NEED_KEY_STATS | KVC_NEED_VALUE_STATS);
    tok->key_norm = tok->value_range = tok->value_l1 = 0.0f;
    if (!needs || !k || !v) return;
    uint32_t h0 = c->n_groups == 1 ? 0 : g, h1 = c->n_groups == 1 ? c->n_kv : g + 1;
    float sum[3] = {0, 0, 0};
    for (uint32_t h = h0; h < h1; h++) {
        float st[3] = {0, 0, 0};
        head_stats(k + (size_t)h * c->d, v + (size_t)h * c->d, c->d, needs, st);
        for (int i = 0; i < 3; i++) sum[i] += st[i];
    }
    float inv = 1.0f / (float)(h1 - h0);
    tok->key_norm = sum[0] * inv;
    tok->value_range = sum[1] * inv;
    tok->value_l1 = sum[2] * inv;
}

static void store_row(kvc_cache *c, void *base, uint32_t h, uint32_t slot, const float *x) {
    char *row = (char *)base + ((size_t)h * c->head_stride + (size_t)slot * c->row_stride) * c->esize;
    if (c->dtype == KVC_DTYPE_F32) {
        memcpy(row, x, (size_t)c->d * 4);
    } else {
        uint16_t *r = (uint16_t *)(void *)row;
        for (uint32_t i = 0; i < c->d; i++)
            r[i] = c->dtype == KVC_DTYPE_F16 ? kvc__f32_to_f16(x[i]) : kvc__f32_to_bf16(x[i]);
    }
}

static int check_token(kvc_cache *c, int64_t pos, const float *k, const float *v, bool need_kv) {
    if (need_kv && (!k || !v)) return kvc__fail(c, KVC_EINVAL, "k and v must not be NULL");
    if (pos < 0) return kvc__fail(c, KVC_EINVAL, "position %lld is negative", (long long)pos);
    if (pos <= c->last_pos)
        return kvc__fail(c, KVC_EORDER, "position %lld is not greater than the previous position %lld",
                         (long long)pos, (long long)c->last_pos);
    size_t n = (size_t)c->n_kv * c->d;
    if (k && kvc__check_finite(k, n)) return kvc__fail(c, KVC_ENONFINITE, "NaN or Inf in k at position %lld", (long long)pos);
    if (v && kvc__check_finite(v, n)) return kvc__fail(c, KVC_ENONFINITE, "NaN or Inf in v at position %lld", (long long)pos);
    if (need_kv && c->dtype != KVC_DTYPE_F32) {
        /* a finite value that rounds to Inf in 16 bits would poison every score of its head */
        float lim = c->dtype == KVC_DTYPE_F16 ? 65520.0f : 0x1.ffp+127f;
        for (size_t i = 0; i < 2 * n; i++) {
            float x = i < n ? k[i] : v[i - n];
            if (!(fabsf(x) < lim))
                return kvc__fail(c, KVC_ERANGE, "%s[%zu] = %g overflows the %s storage type (position %lld)",
                                 i < n ? "k" : "v", i % n, (double)x, c->dtype == KVC_DTYPE_F16 ? "f16" : "bf16",
                                 (long long)pos);
        }
    }
    return KVC_OK;
}

/* Record the token in slot `slot` of group g and tell the policy. */
static void insert(kvc_cache *c, uint32_t g, uint32_t slot, int64_t pos, const float *k, const float *v) {
    size_t gi = (size_t)g * c->cap;
    c->pos[gi + slot] = pos;
    c->seq[gi + slot] = c->appended;
    if (c->pol.on_insert) {
        kvc_token tok;
        tok.pos = pos;
        tok.seq = c->appended;
        kvc__token_stats(c, g, k, v, &tok);
        c->pol.on_insert(c->pstate, g, slot, &tok);
    }
}

int kvc_cache_append(kvc_cache *c, int64_t pos, const float *k, const float *v) {
    if (!c) return KVC_EINVAL;
    if (c->mode != KVC_MODE_STORE)
        return kvc__fail(c, KVC_EMODE, "append needs a STORE-mode cache; INDEX mode uses kvc_cache_reserve");
    int rc = check_token(c, pos, k, v, true);
    if (rc) return rc;
    if ((rc = kvc__prepare(c))) return rc;
    if ((rc = kvc__make_room(c, NULL))) return rc;
    uint32_t slot = c->len;
    for (uint32_t h = 0; h < c->n_kv; h++) {
        store_row(c, c->k, h, slot, k + (size_t)h * c->d);
        store_row(c, c->v, h, slot, v + (size_t)h * c->d);
    }
    for (uint32_t g = 0; g < c->n_groups; g++) insert(c, g, slot, pos, k, v);
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
    /* no writes to the cache itself here: concurrent calls on disjoint ranges are safe */
    if (kvc__check_finite(q + (size_t)kv_begin * ratio * c->d, (size_t)(kv_end - kv_begin) * ratio * c->d))
        return heads_fail(c, KVC_ENONFINITE, "NaN or Inf in q: nothing computed");
    kvc_attn_layout L = {c->n_q, c->n_kv, c->d, c->len, c->dtype, c->row_stride, c->head_stride, c->scale};
    float *w = (c->pol.needs & KVC_NEED_ATTN) ? c->weights : NULL;
    return kvc__attention_heads(&L, kv_begin, kv_end, q, c->k, c->v, out, w, c->cap);
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

/* What attend_finish does once the policy has had the weights. */
static void attend_done(kvc_cache *c, const float *q) {
    if (c->qring) {
        size_t qn = (size_t)c->n_q * c->d;
        memcpy(c->qring + (size_t)c->qring_head * qn, q, qn * sizeof *q);
        c->qring_head = (c->qring_head + 1) % c->qwin;
        if (c->qring_n < c->qwin) c->qring_n++;
    }
    c->stats.attends++;
}

int kvc_cache_attend_finish(kvc_cache *c, const float *q) {
    int rc = attend_check(c, q, c ? c->mass : NULL, false);
    if (rc) return rc;
    /* q may enter the query window: reject what attend_heads rejected */
    if (kvc__check_finite(q, (size_t)c->n_q * c->d))
        return kvc__fail(c, KVC_ENONFINITE, "NaN or Inf in q: nothing handed to the policy");
    if (c->pol.needs & KVC_NEED_ATTN) {
        uint32_t ratio = c->n_q / c->n_kv, n = c->len;
        for (uint32_t g = 0; g < c->n_groups; g++) {
            /* group mass: mean over the query heads that read this group's slots */
            uint32_t h0 = c->n_groups == 1 ? 0 : g * ratio, h1 = c->n_groups == 1 ? c->n_q : h0 + ratio;
            group_mass(c->mass, c->weights + (size_t)h0 * c->cap, c->cap, h1 - h0, n);
            if (c->pol.on_attend) c->pol.on_attend(c->pstate, g, c->mass, n);
        }
    }
    attend_done(c, q);
    return KVC_OK;
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
        if (c->n_groups > 1) { /* head scope: kv head h is group h */
            group_mass(c->mass, w, c->cap, ratio, n);
            if (c->pol.on_attend) c->pol.on_attend(c->pstate, h, c->mass, n);
        } else { /* shared scope: sum every query head in order, mean at the end */
            sum_rows(c->mass, w, c->cap, ratio, n, h > 0, h + 1 == c->n_kv ? 1.0f / (float)c->n_q : 1.0f);
        }
    }
    if (c->n_groups == 1 && c->pol.on_attend) c->pol.on_attend(c->pstate, 0, c->mass, n);
    attend_done(c, q);
    return KVC_OK;
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
        for (uint32_t i = 0; i < c->d; i++) {
            if (c->dtype == KVC_DTYPE_F32)
                dst[i] = ((const float *)(const void *)row)[i];
            else if (c->dtype == KVC_DTYPE_F16)
                dst[i] = kvc__f16_to_f32(((const uint16_t *)(const void *)row)[i]);
            else
                dst[i] = kvc__bf16_to_f32(((const uint16_t *)(const void *)row)[i]);
        }
    }
    return KVC_OK;
}

/* ---------------------------------------------------------------- INDEX mode */

static uint32_t take_free(kvc_cache *c, uint32_t g) {
    uint64_t *w = c->freemap + (size_t)g * c->words;
    for (uint32_t i = 0; i < c->words; i++)
        if (w[i]) {
            uint64_t x = w[i];
            uint32_t b = 0;
            while (!(x & 1)) {
                x >>= 1;
                b++;
            }
            w[i] &= w[i] - 1;
            return i * 64 + b;
        }
    return UINT32_MAX; /* unreachable: make_room guarantees a free slot */
}

static void flush_observations(kvc_cache *c) {
    bool any = false;
    for (uint32_t g = 0; g < c->n_groups; g++) {
        uint32_t calls = c->obs_calls[g];
        if (!calls) continue;
        any = true;
        float *o = c->obs + (size_t)g * c->cap;
        float inv = 1.0f / (float)calls;
        for (uint32_t s = 0; s < c->cap; s++) o[s] *= inv;
        if (c->pol.on_attend) c->pol.on_attend(c->pstate, g, o, c->cap);
        memset(o, 0, c->cap * sizeof *o);
        c->obs_calls[g] = 0;
    }
    if (any) c->stats.attends++;
}

int kvc_cache_reserve(kvc_cache *c, int64_t pos, const float *k, const float *v, uint32_t *slots,
                      int64_t *evicted) {
    if (!c) return KVC_EINVAL;
    if (c->mode != KVC_MODE_INDEX)
        return kvc__fail(c, KVC_EMODE, "reserve needs an INDEX-mode cache; STORE mode uses kvc_cache_append");
    if (!slots) return kvc__fail(c, KVC_EINVAL, "slots must not be NULL");
    bool stats = (c->pol.needs & (KVC_NEED_KEY_STATS | KVC_NEED_VALUE_STATS)) != 0;
    if (stats && (!k || !v))
        return kvc__fail(c, KVC_EINVAL, "policy '%s' needs key/value statistics: pass k and v to reserve",
                         c->pol.name);
    int rc = check_token(c, pos, stats ? k : NULL, stats ? v : NULL, false);
    if (rc) return rc;
    if ((rc = kvc__prepare(c))) return rc;
    /* fail a policy that never evicts before the pending observations are consumed */
    if (c->len >= c->cap && !c->pol.select && !c->pol.score) return kvc__make_room(c, evicted);
    flush_observations(c);
    if ((rc = kvc__make_room(c, evicted))) return rc;
    for (uint32_t g = 0; g < c->n_groups; g++) {
        slots[g] = take_free(c, g);
        insert(c, g, slots[g], pos, stats ? k : NULL, stats ? v : NULL);
    }
    c->len++;
    c->appended++;
    c->last_pos = pos;
    c->stats.appends++;
    return KVC_OK;
}

int kvc_cache_observe(kvc_cache *c, uint32_t group, const float *mass, uint32_t n) {
    if (!c) return KVC_EINVAL;
    if (c->mode != KVC_MODE_INDEX)
        return kvc__fail(c, KVC_EMODE, "observe needs an INDEX-mode cache; STORE mode feeds attend's weights");
    if (!mass) return kvc__fail(c, KVC_EINVAL, "mass must not be NULL");
    if (group >= kvc_cache_groups(c) || n > c->cap)
        return kvc__fail(c, KVC_ERANGE, "observe(group %u, n %u): groups %u, capacity %u", group, n,
                         kvc_cache_groups(c), c->cap);
    for (uint32_t s = 0; s < n; s++)
        if (!(mass[s] >= 0.0f) || isinf(mass[s]))
            return kvc__fail(c, KVC_ENONFINITE, "mass[%u] = %g: must be finite and >= 0", s, (double)mass[s]);
    if (!c->frozen) return KVC_OK; /* nothing resident yet: nothing to credit */
    float *o = c->obs + (size_t)group * c->cap;
    const int64_t *p = c->pos + (size_t)group * c->cap;
    for (uint32_t s = 0; s < n; s++)
        if (p[s] >= 0) o[s] += mass[s];
    c->obs_calls[group]++;
    return KVC_OK;
}
