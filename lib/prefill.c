/* Prefill: a whole prompt into an empty cache in one call. Every group keeps
 * `capacity` of the n tokens: the protected ones, then what the policy's
 * prefill slot (or the default: highest score) picks from the rest. All
 * checks, the scores and every group's choice come first; only then is the
 * cache written, so a failure leaves it exactly as it was. The scratch used
 * here was sized for KVC_OPT_PREFILL_MAX tokens at prepare. */
#include "internal.h"

#include <math.h>
#include <string.h>

#include "policy_util.h"

/* ------------------------------------------------------- lowest-k selection */

/* Does token a go before token b (lower keep value, then older)? NaN keeps nothing. */
static bool drop_before(float ka, uint32_t a, float kb, uint32_t b) {
    if (isnan(ka)) ka = -INFINITY;
    if (isnan(kb)) kb = -INFINITY;
    return ka < kb || (ka == kb && a < b);
}

/* The k entries of cand (token indices) with the lowest keep(token) into out,
 * via a max-heap built in `out` itself: no scratch. */
void kvc__lowest_k_fn(const uint32_t *cand, uint32_t n, uint32_t k, kvc__keep_fn keep, const void *ctx,
                      uint32_t *out) {
    uint32_t h = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t t = cand[i];
        float kt = keep(ctx, t);
        if (h < k) {
            uint32_t j = h++;
            out[j] = t;
            while (j > 0) {
                uint32_t p = (j - 1) / 2;
                if (!drop_before(keep(ctx, out[p]), out[p], keep(ctx, out[j]), out[j])) break;
                uint32_t x = out[p];
                out[p] = out[j];
                out[j] = x;
                j = p;
            }
        } else if (k && drop_before(kt, t, keep(ctx, out[0]), out[0])) {
            out[0] = t;
            uint32_t j = 0;
            for (;;) {
                uint32_t l = 2 * j + 1, m = j;
                if (l < h && drop_before(keep(ctx, out[m]), out[m], keep(ctx, out[l]), out[l])) m = l;
                if (l + 1 < h && drop_before(keep(ctx, out[m]), out[m], keep(ctx, out[l + 1]), out[l + 1])) m = l + 1;
                if (m == j) break;
                uint32_t x = out[m];
                out[m] = out[j];
                out[j] = x;
                j = m;
            }
        }
    }
}

static float keep_score(const void *ctx, uint32_t t) { return ((const float *)ctx)[t]; }
static float keep_none(const void *ctx, uint32_t t) { return (void)ctx, (void)t, 0.0f; }

/* ------------------------------------------------------------------ scores */

/* One window row's causal softmax over keys [0, m), added to out: the exact
 * path, for the rare row whose allowed keys the kernel's weights lost or
 * whose logits overflowed f32. In double, where q.k of finite f32 values
 * cannot overflow, so the weights stay finite. */
static double logit_exact(const kvc_cache *c, const float *kr, const float *q) {
    double dot = 0.0;
    for (uint32_t t = 0; t < c->d; t++) dot += (double)q[t] * kr[t];
    return dot * c->scale;
}

static void row_exact(const kvc_cache *c, const float *kb, size_t krow, const float *q, uint32_t m, float *lg,
                      float *out) {
    double mx = -INFINITY, sum = 0.0;
    for (uint32_t j = 0; j < m; j++) {
        const double l = logit_exact(c, kb + (size_t)j * krow, q);
        mx = l > mx ? l : mx;
    }
    for (uint32_t j = 0; j < m; j++) sum += (lg[j] = (float)exp(logit_exact(c, kb + (size_t)j * krow, q) - mx));
    const float inv = (float)(1.0 / sum);
    for (uint32_t j = 0; j < m; j++) out[j] += lg[j] * inv;
}

/* Window attention (STORE): for each of the group's query heads and each of
 * the last w prompt tokens' queries, the causal softmax over the prompt's
 * keys 0 .. n-w+r; the mean of these weights over all those rows, per key.
 * The SIMD decode kernel does the work: the rows of one kv head, KVC__WBLOCK
 * at a time, are the "query heads" of one call over the keys the block's
 * last row may see (one pass over those keys per block); a row that must not
 * see the block's last keys is renormalised over the keys it may see, which
 * is exactly its causal softmax. */
static void window_scores(kvc_cache *c, uint32_t g, uint32_t n, const float *k, const float *q, uint32_t w,
                          float *out) {
    const uint32_t d = c->d, ratio = c->n_q / c->n_kv, M = c->pmax;
    const uint32_t h0 = c->n_groups == 1 ? 0 : g * c->qpg, h1 = h0 + c->qpg;
    const size_t krow = (size_t)c->n_kv * d;
    for (uint32_t j = 0; j < n; j++) out[j] = 0.0f;
    for (uint32_t kv = h0 / ratio; kv <= (h1 - 1) / ratio; kv++) {
        const uint32_t qa = kv * ratio > h0 ? kv * ratio : h0, qb = (kv + 1) * ratio < h1 ? (kv + 1) * ratio : h1;
        const uint32_t per = qb - qa, rows = w * per; /* row i: window query i / per, head qa + i % per */
        const float *kb = k + (size_t)kv * d;
        for (uint32_t i0 = 0; i0 < rows; i0 += KVC__WBLOCK) {
            uint32_t nb = rows - i0 < KVC__WBLOCK ? rows - i0 : KVC__WBLOCK;
            for (uint32_t i = 0; i < nb; i++)
                memcpy(c->pq + (size_t)i * d, q + ((size_t)((i0 + i) / per) * c->n_q + qa + (i0 + i) % per) * d,
                       d * sizeof *q);
            uint32_t seen = n - w + (i0 + nb - 1) / per + 1;
            kvc_attn_layout L = {nb, 1, d, seen, KVC_DTYPE_F32, krow, krow * seen, c->scale};
            kvc__attention_heads(&L, 0, 1, c->pq, kb, kb, c->pwqt, c->plogit, M);
            for (uint32_t i = 0; i < nb; i++) {
                const float *p = c->plogit + (size_t)i * M;
                uint32_t m = n - w + (i0 + i) / per + 1;
                double s = 0.0;
                for (uint32_t j = 0; j < m; j++) s += p[j];
                /* the later window keys took all the mass, or the logits overflowed (NaN) */
                if (!(s > 1e-30) || !isfinite(s)) {
                    row_exact(c, kb, krow, c->pq + (size_t)i * d, m, c->plogit + (size_t)i * M, out);
                    continue;
                }
                const float inv = m < seen ? (float)(1.0 / s) : 1.0f; /* a full row is already normalised */
                for (uint32_t j = 0; j < m; j++) out[j] += p[j] * inv;
            }
        }
    }
    float inv = 1.0f / (float)((size_t)w * (h1 - h0));
    for (uint32_t j = 0; j < n; j++) out[j] *= inv;
}

/* ------------------------------------------------------------------- rule */

typedef struct {
    int64_t pos;
    uint32_t n, w, keep; /* prompt tokens, window, tokens each group keeps */
    const float *k, *v;  /* token-major prompt rows (STORE always; INDEX when stats are needed) */
} prompt;

static bool prompt_protected(const kvc_cache *c, const prompt *p, uint32_t i) {
    uint32_t tail = c->recent > p->w ? c->recent : p->w;
    return i < c->sink || p->pos + (int64_t)i < c->protect || (uint64_t)i + tail >= p->n;
}

static void token_facts(const kvc_cache *c, const prompt *p, uint32_t g, uint32_t i, kvc_token *tok) {
    size_t row = (size_t)i * c->n_kv * c->d;
    kvc__token_facts(c, g, p->pos + (int64_t)i, i, p->k ? p->k + row : NULL, p->v ? p->v + row : NULL, tok);
}

/* Group g's choice: the kept prompt indices, increasing, into keep (p->keep entries). */
static int choose(kvc_cache *c, const prompt *p, uint32_t g, const float *score, uint32_t *keep) {
    uint32_t n = p->n, nc = 0;
    if (p->keep == n) {
        for (uint32_t i = 0; i < n; i++) keep[i] = i;
        return KVC_OK;
    }
    for (uint32_t i = 0; i < n; i++)
        if (!prompt_protected(c, p, i)) c->pcand[nc++] = i;
    uint32_t nv = n - p->keep;
    if (c->pol.prefill) {
        for (uint32_t i = 0; i < n; i++) token_facts(c, p, g, i, &c->ptok[i]);
        kvc_prefill req = {g, n, c->ptok, score, p->w, nc, c->pcand, nv, &c->rng};
        for (uint32_t i = 0; i < nv; i++) c->pvict[i] = UINT32_MAX;
        int rc = c->pol.prefill(c->pstate, &req, c->pvict);
        if (rc) {
            rc = kvc__policy_status(rc, KVC_EPOLICY);
            return kvc__fail(c, rc, "policy '%s' prefill failed: %s", c->pol.name, kvc_strerror(rc));
        }
    } else {
        kvc__lowest_k_fn(c->pcand, nc, nv, score ? keep_score : keep_none, score, c->pvict);
    }
    /* validate: distinct candidates (mark 1 = candidate, 2 = chosen) */
    memset(c->pmark, 0, n);
    for (uint32_t i = 0; i < nc; i++) c->pmark[c->pcand[i]] = 1;
    for (uint32_t i = 0; i < nv; i++) {
        uint32_t t = c->pvict[i];
        if (t >= n || c->pmark[t] != 1) {
            const char *why = t >= n ? "out of range" : c->pmark[t] == 2 ? "a duplicate" : "protected";
            return kvc__fail(c, KVC_EPOLICY, "policy '%s' prefill returned token %u (victim %u of %u), which is %s",
                             c->pol.name, t, i, nv, why);
        }
        c->pmark[t] = 2;
    }
    uint32_t s = 0;
    for (uint32_t i = 0; i < n; i++)
        if (c->pmark[i] != 2) keep[s++] = i;
    return KVC_OK;
}

/* Write every group's kept tokens into slots [0, kept) and tell the policy. */
static void apply(kvc_cache *c, const prompt *p, const float *q, const float *const *scores) {
    const uint32_t G = c->n_groups, K = p->keep, cap = c->cap;
    for (uint32_t g = 0; g < G; g++) {
        const uint32_t *keep = c->pkeep + (size_t)g * cap;
        size_t gi = (size_t)g * cap;
        uint32_t h0 = G == 1 ? 0 : g, h1 = G == 1 ? c->n_kv : g + 1;
        for (uint32_t s = 0; s < K; s++) {
            uint32_t i = keep[s];
            size_t row = (size_t)i * c->n_kv * c->d;
            if (c->mode == KVC_MODE_STORE)
                for (uint32_t h = h0; h < h1; h++) {
                    kvc__store_row(c, c->k, h, s, p->k + row + (size_t)h * c->d);
                    kvc__store_row(c, c->v, h, s, p->v + row + (size_t)h * c->d);
                }
            else
                c->freemap[(size_t)g * c->words + s / 64] &= ~(1ull << (s % 64));
        }
        if (c->mode == KVC_MODE_INDEX) c->high[g] = K;
        for (uint32_t s = 0; s < K; s++) {
            uint32_t i = keep[s];
            c->pos[gi + s] = p->pos + (int64_t)i;
            c->seq[gi + s] = i;
            if (c->pol.on_insert) {
                kvc_token tok;
                token_facts(c, p, g, i, &tok);
                c->pol.on_insert(c->pstate, g, s, &tok);
            }
        }
    }
    /* the window's attention reaches the policy as one step over the kept tokens */
    if (c->pol.on_attend)
        for (uint32_t g = 0; g < G; g++) {
            if (!scores[g]) continue;
            const uint32_t *keep = c->pkeep + (size_t)g * cap;
            for (uint32_t s = 0; s < K; s++) c->uscore[s] = scores[g][keep[s]]; /* eviction scratch, free now */
            c->pol.on_attend(c->pstate, g, c->uscore, K);
        }
    /* the window's queries become the most recent ones of the query window */
    if (c->qring && q && p->w) {
        uint32_t take = p->w < c->qwin ? p->w : c->qwin;
        for (uint32_t r = p->w - take; r < p->w; r++) kvc__window_push(c, q + (size_t)r * c->n_q * c->d);
    }
    c->len = K;
    c->appended = p->n;
    c->last_pos = p->pos + (int64_t)p->n - 1;
    c->stats.appends += p->n;
    c->stats.evictions += (uint64_t)G * (p->n - K);
}

/* Checks that need no memory: arguments, emptiness, sizes, protection. */
static int check(kvc_cache *c, const prompt *p, const float *q, bool need_kv) {
    const char *fn = c->mode == KVC_MODE_STORE ? "prefill" : "prefill_index";
    if (need_kv && (!p->k || !p->v))
        return kvc__fail(c, KVC_EINVAL, "%s: k and v must not be NULL%s", fn,
                         c->mode == KVC_MODE_INDEX ? " (the policy needs key/value statistics)" : "");
    if (p->n == 0) return kvc__fail(c, KVC_EINVAL, "%s: the prompt is empty (n = 0)", fn);
    if (p->w > p->n)
        return kvc__fail(c, KVC_EINVAL, "%s: n_window=%u exceeds the prompt's %u tokens", fn, p->w, p->n);
    if (c->mode == KVC_MODE_STORE && p->w && !q)
        return kvc__fail(c, KVC_EINVAL, "prefill: q must not be NULL when n_window > 0");
    if (c->appended)
        return kvc__fail(c, KVC_ESTATE, "%s needs an empty cache (%llu tokens appended): call it first, or after "
                                        "kvc_cache_reset()",
                         fn, (unsigned long long)c->appended);
    int64_t pmax = c->opt[KVC_OPT_PREFILL_MAX];
    if (p->n > pmax)
        return kvc__fail(c, KVC_ERANGE, "%s: prompt of %u tokens exceeds prefill_max=%lld: set prefill_max "
                                        "(KVC_OPT_PREFILL_MAX) to the longest prompt before the first append or "
                                        "kvc_cache_prepare()",
                         fn, p->n, (long long)pmax);
    if (p->pos < 0) return kvc__fail(c, KVC_EINVAL, "%s: position %lld is negative", fn, (long long)p->pos);
    if (p->pos > INT64_MAX - (int64_t)(p->n - 1))
        return kvc__fail(c, KVC_ERANGE, "%s: positions %lld + %u overflow int64", fn, (long long)p->pos, p->n);
    if (q && kvc__check_finite(q, (size_t)p->w * c->n_q * c->d))
        return kvc__fail(c, KVC_ENONFINITE, "prefill: NaN or Inf in q");
    /* each token as append or reserve would check it (finite, storable in the dtype) */
    size_t row = (size_t)c->n_kv * c->d;
    for (uint32_t i = 0; i < p->n; i++) {
        int rc = kvc__check_token(c, p->pos + (int64_t)i, p->k ? p->k + i * row : NULL, p->v ? p->v + i * row : NULL,
                                  c->mode == KVC_MODE_STORE);
        if (rc) return rc;
    }
    return KVC_OK;
}

/* Checks against the frozen configuration (sink, recent, policy). */
static int check_frozen(kvc_cache *c, const prompt *p) {
    const char *fn = c->mode == KVC_MODE_STORE ? "prefill" : "prefill_index";
    if (p->keep == p->n) return KVC_OK;
    if (!c->pol.select && !c->pol.score && !c->pol.prefill)
        return kvc__fail(c, KVC_EFULL, "%s: prompt of %u tokens exceeds capacity %u and policy '%s' never evicts: "
                                       "raise the capacity or choose an evicting policy",
                         fn, p->n, c->cap, c->pol.name);
    uint32_t prot = 0;
    for (uint32_t i = 0; i < p->n; i++) prot += prompt_protected(c, p, i);
    if (prot > c->cap)
        return kvc__fail(c, KVC_ERANGE, "%s: sink=%u, protect=%lld and the last %u tokens (recent=%u, n_window=%u) "
                                        "pin %u of the prompt's %u tokens, more than the capacity %u: lower them or "
                                        "raise the capacity",
                         fn, c->sink, (long long)c->protect, c->recent > p->w ? c->recent : p->w, c->recent, p->w,
                         prot, p->n, c->cap);
    return KVC_OK;
}

static int run(kvc_cache *c, const prompt *p, const float *q, const float *scores, uint32_t *keep_out) {
    int rc = kvc__prepare(c);
    if (rc) return rc;
    if ((rc = check_frozen(c, p))) return rc;
    const float **gs = c->pgscore;
    struct kvc_rng saved = c->rng;
    for (uint32_t g = 0; g < c->n_groups; g++) {
        const float *sc = NULL;
        if (c->mode == KVC_MODE_STORE && p->w) {
            float *out = c->pscore + (size_t)g * c->pmax;
            window_scores(c, g, p->n, p->k, q, p->w, out);
            sc = out;
        } else if (scores) {
            sc = scores + (size_t)g * p->n;
        }
        gs[g] = sc;
        if ((rc = choose(c, p, g, sc, c->pkeep + (size_t)g * c->cap))) {
            c->rng = saved;
            return rc;
        }
    }
    apply(c, p, q, gs);
    if (keep_out)
        for (uint32_t g = 0; g < c->n_groups; g++)
            for (uint32_t s = 0; s < c->cap; s++)
                keep_out[(size_t)g * c->cap + s] = s < p->keep ? c->pkeep[(size_t)g * c->cap + s] : UINT32_MAX;
    return KVC_OK;
}

int kvc_cache_prefill(kvc_cache *c, int64_t pos, uint32_t n, const float *k, const float *v, const float *q,
                      uint32_t n_window) {
    if (!c) return KVC_EINVAL;
    if (c->mode != KVC_MODE_STORE)
        return kvc__fail(c, KVC_EMODE, "prefill needs a STORE-mode cache; INDEX mode uses kvc_cache_prefill_index");
    prompt p = {pos, n, n_window, n < c->cap ? n : c->cap, k, v};
    int rc = check(c, &p, q, true);
    return rc ? rc : run(c, &p, q, NULL, NULL);
}

int kvc_cache_prefill_index(kvc_cache *c, int64_t pos, uint32_t n, const float *k, const float *v,
                            const float *scores, uint32_t n_window, uint32_t *keep) {
    if (!c) return KVC_EINVAL;
    if (c->mode != KVC_MODE_INDEX)
        return kvc__fail(c, KVC_EMODE, "prefill_index needs an INDEX-mode cache; STORE mode uses kvc_cache_prefill");
    if (!keep) return kvc__fail(c, KVC_EINVAL, "prefill_index: keep must not be NULL");
    /* as reserve: the policy reads the tokens' keys or values, or statistics of them */
    bool stats = (c->pol.needs & (KVC_NEED_KEY_STATS | KVC_NEED_VALUE_STATS | KVC_NEED_KEYS | KVC_NEED_VALUES)) != 0;
    prompt p = {pos, n, n_window, n < c->cap ? n : c->cap, stats ? k : NULL, stats ? v : NULL};
    int rc = check(c, &p, NULL, stats);
    if (rc) return rc;
    if (scores) {
        size_t m = (size_t)kvc_cache_groups(c) * n;
        for (size_t i = 0; i < m; i++)
            if (!(scores[i] >= 0.0f) || isinf(scores[i]))
                return kvc__fail(c, KVC_ENONFINITE, "prefill_index: scores[%zu] = %g: must be finite and >= 0", i,
                                 (double)scores[i]);
    }
    return run(c, &p, NULL, scores, keep);
}
