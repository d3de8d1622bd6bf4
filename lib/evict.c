/* Eviction, shared by both modes: find the candidate units of every group,
 * ask the policy (select, or score + lowest-first), validate everything, and
 * only then change the cache, so a failure leaves it exactly as it was. */
#include "internal.h"

#include <math.h>
#include <string.h>

/* Insertion indices from here on are the recent window (protected). */
static uint64_t recent_start(const kvc_cache *c) { return c->appended > c->recent ? c->appended - c->recent : 0; }

bool kvc__protected(const kvc_cache *c, uint32_t g, uint32_t s) {
    size_t i = (size_t)g * c->cap + s;
    uint64_t seq = c->seq[i];
    return seq < c->sink || seq >= recent_start(c) || c->pos[i] < c->protect;
}

static bool occupied(const kvc_cache *c, uint32_t g, uint32_t s) {
    return c->mode == KVC_MODE_STORE ? s < c->len : c->pos[(size_t)g * c->cap + s] >= 0;
}

/* Candidate units of group g: fully occupied, nothing protected, into cand,
 * and their insertion indices into key. Returns their count. */
static uint32_t candidates(const kvc_cache *c, uint32_t g, uint32_t *cand, uint64_t *key) {
    uint32_t n = 0, B = c->block;
    if (B == 1 && c->mode == KVC_MODE_STORE) {
        /* the common case, run at every eviction of every group: residents
         * are [0, len), and kvc__protected()'s three bounds are checked
         * without branches */
        const uint64_t *seq = c->seq + (size_t)g * c->cap;
        const int64_t *pos = c->pos + (size_t)g * c->cap;
        const uint64_t lo = c->sink, hi = recent_start(c);
        const int64_t pmin = c->protect;
        for (uint32_t s = 0; s < c->len; s++) {
            cand[n] = s;
            key[n] = seq[s];
            n += (uint32_t)((seq[s] >= lo) & (seq[s] < hi) & (pos[s] >= pmin));
        }
        return n;
    }
    for (uint32_t u = 0; u < c->units; u++) {
        uint32_t s0 = u * B;
        bool ok = true;
        for (uint32_t s = s0; s < s0 + B && ok; s++) ok = occupied(c, g, s) && !kvc__protected(c, g, s);
        if (ok) {
            key[n] = c->seq[(size_t)g * c->cap + s0];
            cand[n++] = s0;
        }
    }
    return n;
}

/* In-place heap sort of units by key (insertion index): no allocation, O(n log n). */
static void sift(uint32_t *a, uint64_t *key, size_t i, size_t n) {
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && key[l] > key[m]) m = l;
        if (l + 1 < n && key[l + 1] > key[m]) m = l + 1;
        if (m == i) return;
        uint32_t ta = a[i];
        a[i] = a[m];
        a[m] = ta;
        uint64_t tk = key[i];
        key[i] = key[m];
        key[m] = tk;
        i = m;
    }
}
static void heap_sort(uint32_t *a, uint64_t *key, size_t n) {
    for (size_t i = n / 2; i-- > 0;) sift(a, key, i, n);
    for (size_t end = n; end-- > 1;) {
        uint32_t ta = a[0];
        a[0] = a[end];
        a[end] = ta;
        uint64_t tk = key[0];
        key[0] = key[end];
        key[end] = tk;
        sift(a, key, 0, end);
    }
}

/* Units by key (insertion index, unique), ascending. Runs at every eviction
 * of a select policy, so: an LSD radix sort by bytes of key - min, each
 * entry packed as (key - min) << 32 | unit, through tmp (n entries): one
 * pass per byte of the candidates' span of insertion indices (two while it
 * is under 64 Ki). A span of 2^32 or more takes the heap sort. */
static void sort_by_key(uint32_t *a, uint64_t *key, uint64_t *tmp, size_t n) {
    if (n < 2) return;
    uint64_t lo = key[0], hi = key[0];
    for (size_t i = 1; i < n; i++) {
        lo = key[i] < lo ? key[i] : lo;
        hi = key[i] > hi ? key[i] : hi;
    }
    if (hi - lo > UINT32_MAX) {
        heap_sort(a, key, n);
        return;
    }
    const uint64_t span = hi - lo;
    uint64_t *src = key, *dst = tmp;
    for (size_t i = 0; i < n; i++) key[i] = (key[i] - lo) << 32 | a[i];
    for (unsigned shift = 32; shift < 64 && (span >> (shift - 32)); shift += 8) {
        size_t at[257] = {0};
        for (size_t i = 0; i < n; i++) at[((src[i] >> shift) & 255u) + 1]++;
        for (size_t b = 1; b < 257; b++) at[b] += at[b - 1];
        for (size_t i = 0; i < n; i++) dst[at[(src[i] >> shift) & 255u]++] = src[i];
        uint64_t *t = src;
        src = dst, dst = t;
    }
    for (size_t i = 0; i < n; i++) {
        a[i] = (uint32_t)src[i];
        key[i] = lo + (src[i] >> 32);
    }
}

/* Does unit a rank below unit b for eviction (lower score, then older)? */
static bool evict_before(float sa, uint64_t qa, float sb, uint64_t qb) { return sa < sb || (sa == sb && qa < qb); }

/* A NaN score is never a reason to keep: it ranks as -inf. */
static float rank_score(float x) { return isnan(x) ? -INFINITY : x; }

/* Lowest `k` of n scored units into out (NaN scores rewritten as -inf): one
 * scan for a single victim, else a bounded max-heap on (score, seq). */
static void lowest_k(const uint32_t *cand, float *score, const uint64_t *seq, uint32_t n, uint32_t k,
                     uint32_t *out, uint32_t *heap) {
    if (k == 1) {
        uint32_t best = 0;
        float bs = rank_score(score[0]);
        for (uint32_t i = 1; i < n; i++) {
            float x = rank_score(score[i]);
            if (evict_before(x, seq[i], bs, seq[best])) best = i, bs = x;
        }
        out[0] = cand[best];
        return;
    }
    for (uint32_t i = 0; i < n; i++) score[i] = rank_score(score[i]);
    uint32_t h = 0; /* heap of candidate indices; root = the worst kept so far */
    for (uint32_t i = 0; i < n; i++) {
        if (h < k) {
            uint32_t j = h++;
            heap[j] = i;
            while (j > 0) {
                uint32_t p = (j - 1) / 2;
                if (!evict_before(score[heap[p]], seq[heap[p]], score[heap[j]], seq[heap[j]])) break;
                uint32_t t = heap[p];
                heap[p] = heap[j];
                heap[j] = t;
                j = p;
            }
        } else if (evict_before(score[i], seq[i], score[heap[0]], seq[heap[0]])) {
            heap[0] = i;
            uint32_t j = 0;
            for (;;) {
                uint32_t l = 2 * j + 1, m = j;
                if (l < h && evict_before(score[heap[m]], seq[heap[m]], score[heap[l]], seq[heap[l]])) m = l;
                if (l + 1 < h && evict_before(score[heap[m]], seq[heap[m]], score[heap[l + 1]], seq[heap[l + 1]]))
                    m = l + 1;
                if (m == j) break;
                uint32_t t = heap[m];
                heap[m] = heap[j];
                heap[j] = t;
                j = m;
            }
        }
    }
    for (uint32_t i = 0; i < h; i++) out[i] = cand[heap[i]];
}

static int choose(kvc_cache *c, uint32_t g, uint32_t *victims) {
    uint32_t *cand = c->cand, B = c->block;
    uint32_t n = candidates(c, g, cand, c->cand_key);
    if (n < c->chunk)
        return kvc__fail(c, KVC_EFULL, "group %u has %u evictable units, needs %u: protection leaves no room", g, n,
                         c->chunk);
    if (c->pol.select) {
        sort_by_key(cand, c->cand_key, c->sort_tmp, n);
        float *ws = NULL;
        if ((c->pol.needs & KVC_NEED_QUERY_WINDOW) && c->mode == KVC_MODE_STORE && c->qring_n) {
            ws = c->uscore;
            kvc__window_scores(c, g, cand, n, ws);
        }
        kvc_select req = {g, n, cand, c->chunk, B, c->pos + (size_t)g * c->cap, ws, &c->rng, NULL, 0};
        if ((c->pol.needs & KVC_NEED_QUERIES) && c->mode == KVC_MODE_STORE && c->qring_n) {
            req.queries = c->qring; /* rows [0, qring_n) are the valid ones, whatever the ring's head */
            req.n_queries = c->qring_n;
        }
        /* an answer shorter than asked must not be completed by a previous eviction's victims */
        for (uint32_t i = 0; i < c->chunk; i++) victims[i] = UINT32_MAX;
        int rc = c->pol.select(c->pstate, &req, victims);
        if (rc) {
            rc = kvc__policy_status(rc, KVC_EPOLICY);
            return kvc__fail(c, rc, "policy '%s' select failed: %s", c->pol.name, kvc_strerror(rc));
        }
        /* validate: every victim a distinct candidate unit */
        memset(c->mark, 0, c->cap);
        for (uint32_t i = 0; i < n; i++) c->mark[cand[i]] = 1;
        for (uint32_t i = 0; i < c->chunk; i++) {
            uint32_t s = victims[i];
            if (s >= c->cap || c->mark[s] != 1) {
                /* say why before the marks are cleared */
                const char *why = s >= c->cap ? "out of range" : c->mark[s] == 2 ? "a duplicate" : "not a candidate";
                memset(c->mark, 0, c->cap);
                return kvc__fail(c, KVC_EPOLICY,
                                 "policy '%s' select returned slot %u (victim %u of %u), which is %s", c->pol.name,
                                 s, i, c->chunk, why);
            }
            c->mark[s] = 2;
        }
        return KVC_OK;
    }
    /* score: per-slot keep scores, summed per unit; evict the lowest */
    if (B == 1) {
        c->pol.score(c->pstate, g, cand, n, c->uscore);
    } else {
        /* a unit's score is the sum of its slots' scores, asked 64 slots at a time */
        for (uint32_t i = 0; i < n; i++) {
            uint32_t s[64];
            float k[64];
            float sum = 0.0f;
            for (uint32_t off = 0; off < B; off += 64) {
                uint32_t m = B - off < 64 ? B - off : 64;
                for (uint32_t j = 0; j < m; j++) s[j] = cand[i] + off + j;
                c->pol.score(c->pstate, g, s, m, k);
                for (uint32_t j = 0; j < m; j++) sum += k[j];
            }
            c->uscore[i] = sum;
        }
    }
    lowest_k(cand, c->uscore, c->cand_key, n, c->chunk, victims, c->heap);
    return KVC_OK;
}

static void sort_desc(uint32_t *a, uint32_t n) {
    for (uint32_t i = 1; i < n; i++) {
        uint32_t x = a[i], j = i;
        while (j > 0 && a[j - 1] < x) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = x;
    }
}

int kvc__make_room(kvc_cache *c, int64_t *evicted) {
    uint32_t max_ev = c->chunk * c->block;
    if (evicted)
        for (size_t i = 0; i < (size_t)c->n_groups * max_ev; i++) evicted[i] = -1;
    if (c->len < c->cap) return KVC_OK;
    if (!c->pol.select && !c->pol.score)
        return kvc__fail(c, KVC_EFULL, "cache is full (%u tokens) and policy '%s' never evicts: raise the capacity "
                                       "or choose an evicting policy",
                         c->cap, c->pol.name);
    struct kvc_rng saved = c->rng;
    for (uint32_t g = 0; g < c->n_groups; g++) {
        int rc = choose(c, g, c->victims + (size_t)g * c->chunk);
        if (rc) {
            c->rng = saved;
            return rc;
        }
    }
    /* all groups validated: apply. Descending slot order lets STORE mode
     * swap-remove without ever moving a victim still to come, so every
     * victim's position is still in place when read here. */
    uint32_t B = c->block;
    for (uint32_t g = 0; g < c->n_groups; g++) {
        uint32_t *vict = c->victims + (size_t)g * c->chunk;
        sort_desc(vict, c->chunk);
        if (evicted)
            for (uint32_t i = 0, e = 0; i < c->chunk; i++)
                for (uint32_t j = 0; j < B; j++)
                    evicted[(size_t)g * max_ev + e++] = c->pos[(size_t)g * c->cap + vict[i] + j];
        if (c->mode == KVC_MODE_STORE)
            kvc__store_evict(c, g, vict, c->chunk);
        else
            kvc__index_evict(c, g, vict, c->chunk);
    }
    c->len -= c->chunk * B;
    c->stats.evictions += (uint64_t)c->n_groups * c->chunk * B;
    return KVC_OK;
}
