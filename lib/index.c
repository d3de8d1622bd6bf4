/* INDEX mode: the engine owns K/V. reserve hands out the slot to write (after
 * making room) and reports what was evicted; observe accumulates attention
 * mass that the policy receives, averaged, before the next eviction. */
#include "internal.h"

#include <math.h>
#include <string.h>

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
    bool stats = (c->pol.needs & (KVC_NEED_KEY_STATS | KVC_NEED_VALUE_STATS | KVC_NEED_KEYS | KVC_NEED_VALUES)) != 0;
    if (stats && (!k || !v))
        return kvc__fail(c, KVC_EINVAL, "policy '%s' reads the token's keys or values: pass k and v to reserve",
                         c->pol.name);
    int rc = kvc__check_token(c, pos, stats ? k : NULL, stats ? v : NULL, false);
    if (rc) return rc;
    if ((rc = kvc__prepare(c))) return rc;
    /* fail a policy that never evicts before the pending observations are consumed */
    if (c->len >= c->cap && !c->pol.select && !c->pol.score) return kvc__make_room(c, evicted);
    flush_observations(c);
    if ((rc = kvc__make_room(c, evicted))) return rc;
    for (uint32_t g = 0; g < c->n_groups; g++) {
        slots[g] = take_free(c, g);
        if (slots[g] >= c->high[g]) c->high[g] = slots[g] + 1;
        kvc__insert(c, g, slots[g], pos, stats ? k : NULL, stats ? v : NULL);
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

void kvc__index_evict(kvc_cache *c, uint32_t g, const uint32_t *victims, uint32_t n) {
    size_t gi = (size_t)g * c->cap;
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < c->block; j++) {
            uint32_t s = victims[i] + j;
            c->pos[gi + s] = -1;
            c->seq[gi + s] = 0;
            c->freemap[(size_t)g * c->words + s / 64] |= 1ull << (s % 64);
        }
}
