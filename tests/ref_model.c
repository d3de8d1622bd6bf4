/* Reference models of the eviction rules (see ref_model.h). Everything in
 * double, quadratic loops, no cleverness: the point is to be obviously right. */
#include "ref_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ref_init(ref_model *m, const ref_cfg *c) {
    memset(m, 0, sizeof *m);
    m->c = *c;
    m->groups = c->shared ? 1 : c->n_kv;
}

int ref_full(const ref_model *m) { return m->n[0] == m->c.cap; }

int ref_find(const ref_model *m, uint32_t g, int64_t pos) {
    /* residents are oldest first and positions increase: binary search */
    uint32_t lo = 0, hi = m->n[g];
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (m->tok[g][mid].pos < pos) lo = mid + 1;
        else hi = mid;
    }
    return lo < m->n[g] && m->tok[g][lo].pos == pos ? (int)lo : -1;
}

/* The first `sink` tokens ever appended and the last `recent` ones are protected. */
static int is_protected(const ref_model *m, const ref_tok *t) {
    return t->seq < m->c.sink || t->seq + m->c.recent >= m->appended || t->pos < m->c.protect;
}

uint32_t ref_candidates(const ref_model *m, uint32_t g, uint64_t *units) {
    uint32_t B = m->c.block, n = 0;
    /* residents are oldest first, so a unit's tokens are adjacent */
    for (uint32_t i = 0; i < m->n[g];) {
        uint64_t u = m->tok[g][i].seq / B;
        uint32_t count = 0, prot = 0;
        while (i < m->n[g] && m->tok[g][i].seq / B == u) {
            count++;
            prot += (uint32_t)is_protected(m, &m->tok[g][i]);
            i++;
        }
        if (count == B && prot == 0) units[n++] = u;
    }
    return n;
}

/* Keep-score of one token under the deterministic rules (higher = kept longer). */
static double token_keep(const ref_model *m, const ref_tok *t) {
    switch (m->c.rule) {
    case REF_H2O: return m->c.lifetime ? t->acc / (t->steps > 0 ? t->steps : 1) : t->acc;
    case REF_TOVA: return t->cur;
    case REF_KNORM: return -t->key_norm; /* large key norms go first */
    case REF_VATP: return t->acc * t->value_l1;
    default: return 0.0; /* window, sink: everyone equal, the oldest goes */
    }
}

/* Keep-scores of the residents of one group under the rules that look at all
 * of them at once (keydiff, rkv), by resident index; filled by ref_check. */
static double resident_keep[REF_MAXCAP];

static double unit_sum(const ref_model *m, uint32_t g, uint64_t u, int what) {
    double s = 0.0;
    for (uint32_t i = 0; i < m->n[g]; i++) {
        const ref_tok *t = &m->tok[g][i];
        if (t->seq / m->c.block != u) continue;
        s += what == 0 ? token_keep(m, t) : what == 1 ? t->value_range : what == 2 ? t->since : resident_keep[i];
    }
    return s;
}

static int find_unit(const uint64_t *units, uint32_t n, uint64_t u) {
    for (uint32_t i = 0; i < n; i++)
        if (units[i] == u) return (int)i;
    return -1;
}

/* Window attention of the candidate units (STORE): for every remembered query
 * and every query head of the group, a softmax at T=1 over the candidates'
 * tokens; summed per unit, averaged over queries and heads. */
static void window_weights(const ref_model *m, uint32_t g, const uint64_t *units, uint32_t n, double *w) {
    const ref_cfg *c = &m->c;
    uint32_t ratio = c->n_q / c->n_kv, d = c->d;
    static double logit[REF_MAXCAP];
    static int32_t owner[REF_MAXCAP];
    for (uint32_t i = 0; i < n; i++) w[i] = 0.0;
    if (m->ring_n == 0) return;
    uint32_t rows = 0;
    for (uint32_t r = 0; r < m->ring_n; r++) {
        for (uint32_t h = 0; h < c->n_q; h++) {
            uint32_t kv = h / ratio;
            if (!c->shared && kv != g) continue;
            const float *q = m->ring[r] + (size_t)h * d;
            uint32_t nt = 0;
            double mx = -INFINITY;
            for (uint32_t i = 0; i < m->n[g]; i++) {
                const ref_tok *t = &m->tok[g][i];
                int ui = find_unit(units, n, t->seq / c->block);
                if (ui < 0) continue;
                double dot = 0.0;
                for (uint32_t e = 0; e < d; e++) dot += (double)q[e] * t->k[kv * d + e];
                logit[nt] = dot * c->scale;
                owner[nt] = ui;
                if (logit[nt] > mx) mx = logit[nt];
                nt++;
            }
            double sum = 0.0;
            for (uint32_t j = 0; j < nt; j++) sum += exp(logit[j] - mx);
            for (uint32_t j = 0; j < nt; j++) w[owner[j]] += exp(logit[j] - mx) / sum;
            rows++;
        }
    }
    for (uint32_t i = 0; i < n; i++) w[i] /= rows;
}

void ref_vase_weights(const ref_model *m, uint32_t g, const uint64_t *units, uint32_t n, double *w) {
    if (!m->c.index) {
        window_weights(m, g, units, n, w);
        return;
    }
    for (uint32_t i = 0; i < n; i++) w[i] = unit_sum(m, g, units[i], 2);
}

/* Average pooling of width `pool` over neighbours in position order, zero
 * padded: out[i] averages in[i - pool/2 .. i - pool/2 + pool - 1]. */
void ref_pool(const double *w, uint32_t n, uint32_t pool, double *pooled) {
    for (uint32_t i = 0; i < n; i++) {
        double s = 0.0;
        for (uint32_t t = 0; t < pool; t++) {
            int64_t j = (int64_t)i - (int64_t)(pool / 2) + (int64_t)t;
            if (j >= 0 && j < (int64_t)n) s += w[j];
        }
        pooled[i] = s / pool;
    }
}

void ref_pool_snap(const double *w, uint32_t n, uint32_t kernel, int avgpool, double *pooled) {
    for (uint32_t i = 0; i < n; i++) {
        double s = avgpool ? 0.0 : -INFINITY;
        for (uint32_t t = 0; t < kernel; t++) {
            int64_t j = (int64_t)i - (int64_t)(kernel / 2) + (int64_t)t;
            if (j < 0 || j >= (int64_t)n) continue;
            s = avgpool ? s + w[j] : (w[j] > s ? w[j] : s);
        }
        pooled[i] = avgpool ? s / kernel : s;
    }
}

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void check_vase(const ref_model *m, uint32_t g, const uint64_t *cand, uint32_t n, const int *victim,
                       double tol_rel, ref_verdict *v) {
    const ref_cfg *c = &m->c;
    uint32_t B = c->block, nv = c->chunk;
    static double range[REF_MAXCAP], sorted[REF_MAXCAP], w[REF_MAXCAP], pooled[REF_MAXCAP];
    /* reservation: capacity*reserve tokens by value range, the sinks counted in */
    uint32_t reserve_units = (uint32_t)floor(c->reserve * c->cap) / B, sink_units = (c->sink + B - 1) / B;
    uint32_t rc = reserve_units > sink_units ? reserve_units - sink_units : 0;
    if (rc > n - nv) rc = n - nv;
    double top = 0.0;
    for (uint32_t i = 0; i < n; i++) {
        range[i] = sorted[i] = unit_sum(m, g, cand[i], 1);
        if (fabs(range[i]) > top) top = fabs(range[i]);
    }
    qsort(sorted, n, sizeof *sorted, cmp_desc);
    double tol = tol_rel * top + 1e-30;
    int ambiguous = rc > 0 && rc < n && sorted[rc - 1] - sorted[rc] <= tol;
    double below = rc < n ? sorted[rc] : -INFINITY; /* best range that is not reserved */
    for (uint32_t i = 0; i < n; i++)
        if (victim[i] && rc > 0 && range[i] > below + tol) {
            snprintf(v->why, sizeof v->why, "evicted unit %llu whose value range %.6g is among the %u reserved",
                     (unsigned long long)cand[i], range[i], rc);
            v->ok = 0;
            return;
        }
    if (ambiguous) {
        v->skipped = 1;
        return;
    }
    /* weightless units of the sampling pool go before any weighted one */
    ref_vase_weights(m, g, cand, n, w);
    ref_pool(w, n, c->pool, pooled);
    uint32_t zeros = 0, zero_victims = 0;
    for (uint32_t i = 0; i < n; i++) {
        int reserved = rc > 0 && range[i] > below;
        if (reserved || pooled[i] != 0.0) continue;
        zeros++;
        zero_victims += (uint32_t)victim[i];
    }
    uint32_t want = zeros < nv ? zeros : nv;
    if (zero_victims != want) {
        snprintf(v->why, sizeof v->why, "%u weightless units in the pool but %u of them among %u victims", zeros,
                 zero_victims, nv);
        v->ok = 0;
    }
}

/* ------------------------------------------------------------ keydiff */

/* keep = -(mean over the group's kv heads of cos(k, anchor)), the anchor being
 * the sum of the unit keys of every resident (or, as a wrong rule, of the
 * candidates only). */
static void keydiff_keep(const ref_model *m, uint32_t g, const uint64_t *cand, uint32_t n_cand) {
    const ref_cfg *c = &m->c;
    uint32_t d = c->d, h0 = c->shared ? 0 : g, h1 = c->shared ? c->n_kv : g + 1;
    for (uint32_t i = 0; i < m->n[g]; i++) resident_keep[i] = 0.0;
    for (uint32_t h = h0; h < h1; h++) {
        double anchor[REF_MAXD] = {0}, unit[REF_MAXCAP][REF_MAXD];
        for (uint32_t i = 0; i < m->n[g]; i++) {
            const float *k = m->tok[g][i].k + (size_t)h * d;
            double ss = 0.0;
            for (uint32_t e = 0; e < d; e++) ss += (double)k[e] * k[e];
            double norm = sqrt(ss) > 1e-12 ? sqrt(ss) : 1e-12;
            for (uint32_t e = 0; e < d; e++) unit[i][e] = k[e] / norm;
            int in = c->mutant == REF_MUT_KEYDIFF_CAND_ANCHOR ? find_unit(cand, n_cand, m->tok[g][i].seq / c->block) >= 0 : 1;
            if (in)
                for (uint32_t e = 0; e < d; e++) anchor[e] += unit[i][e];
        }
        double an = 0.0;
        for (uint32_t e = 0; e < d; e++) an += anchor[e] * anchor[e];
        an = sqrt(an);
        for (uint32_t i = 0; i < m->n[g]; i++) {
            double dot = 0.0;
            for (uint32_t e = 0; e < d; e++) dot += unit[i][e] * anchor[e];
            resident_keep[i] -= (an > 0.0 ? dot / an : 0.0) / (h1 - h0);
        }
    }
}

/* ------------------------------------------------------------ rkv */

/* Set when a cosine lies within 2e-6 of the threshold: the library computes
 * cosines in f32, so which near-duplicate it exempts is not decidable. */
static int rkv_ambiguous;

static void rkv_keep(const ref_model *m, uint32_t g) {
    const ref_cfg *c = &m->c;
    uint32_t n = m->n[g], d = c->d, ratio = c->n_q / c->n_kv;
    uint32_t np = n > c->recent ? n - c->recent : 0;
    uint32_t h0 = c->shared ? 0 : g, h1 = c->shared ? c->n_kv : g + 1;
    static double imp[REF_MAXCAP], pooled[REF_MAXCAP], red[REF_MAXCAP], sim[REF_MAXCAP][REF_MAXCAP];
    /* importance over the prefix (every resident but the recent window) */
    for (uint32_t t = 0; t < np; t++) imp[t] = 0.0;
    if (!c->index && m->ring_n) {
        for (uint32_t r = 0; r < m->ring_n; r++) {
            double l[REF_MAXCAP], mx = -INFINITY, sum = 0.0;
            for (uint32_t t = 0; t < np; t++) {
                double best = -INFINITY, mean = 0.0;
                int heads = 0;
                for (uint32_t h = 0; h < c->n_q; h++) {
                    uint32_t kv = h / ratio;
                    if (kv < h0 || kv >= h1) continue;
                    double dot = 0.0;
                    for (uint32_t e = 0; e < d; e++) dot += (double)m->ring[r][h * d + e] * m->tok[g][t].k[kv * d + e];
                    dot *= c->scale;
                    best = dot > best ? dot : best;
                    mean += dot;
                    heads++;
                }
                l[t] = c->mutant == REF_MUT_RKV_MEAN_HEADS ? mean / heads : best;
                mx = l[t] > mx ? l[t] : mx;
            }
            for (uint32_t t = 0; t < np; t++) sum += exp(l[t] - mx);
            for (uint32_t t = 0; t < np; t++) imp[t] += exp(l[t] - mx) / sum;
        }
        for (uint32_t t = 0; t < np; t++) imp[t] /= m->ring_n;
    } else if (c->index) {
        double sum = 0.0;
        for (uint32_t t = 0; t < np; t++) sum += (imp[t] = m->tok[g][t].since);
        if (sum > 0.0)
            for (uint32_t t = 0; t < np; t++) imp[t] /= sum;
    }
    for (uint32_t t = 0; t < np; t++) {
        pooled[t] = -INFINITY;
        for (uint32_t u = 0; u < c->pool; u++) {
            int64_t j = (int64_t)t - (int64_t)(c->pool / 2) + (int64_t)u;
            if (j >= 0 && j < (int64_t)np && imp[j] > pooled[t]) pooled[t] = imp[j];
        }
    }
    /* redundancy over all residents, the mean over the group's kv heads */
    for (uint32_t t = 0; t < n; t++) red[t] = 0.0;
    for (uint32_t h = h0; h < h1; h++) {
        double inv[REF_MAXCAP], col[REF_MAXCAP];
        for (uint32_t i = 0; i < n; i++) {
            double ss = 0.0;
            for (uint32_t e = 0; e < d; e++) ss += (double)m->tok[g][i].k[h * d + e] * m->tok[g][i].k[h * d + e];
            inv[i] = 1.0 / (sqrt(ss) + 1e-8);
        }
        for (uint32_t i = 0; i < n; i++) {
            int latest = -1;
            for (uint32_t j = 0; j < n; j++) {
                double dot = 0.0;
                for (uint32_t e = 0; e < d; e++) dot += (double)m->tok[g][i].k[h * d + e] * m->tok[g][j].k[h * d + e];
                sim[i][j] = i == j ? 0.0 : dot * inv[i] * inv[j];
                if (i != j && sim[i][j] > c->threshold) latest = (int)j;
                if (i != j && fabs(sim[i][j] - c->threshold) < 2e-6) rkv_ambiguous = 1;
            }
            if (latest >= 0 && c->mutant != REF_MUT_RKV_NO_EXEMPT) sim[i][latest] = 0.0;
        }
        double mx = -INFINITY, sum = 0.0;
        for (uint32_t j = 0; j < n; j++) {
            col[j] = 0.0;
            for (uint32_t i = 0; i < n; i++) col[j] += sim[i][j];
            col[j] /= n;
            mx = col[j] > mx ? col[j] : mx;
        }
        for (uint32_t j = 0; j < n; j++) sum += exp(col[j] - mx);
        for (uint32_t j = 0; j < n; j++) red[j] += exp(col[j] - mx) / sum;
    }
    for (uint32_t t = 0; t < n; t++) {
        red[t] /= (h1 - h0);
        resident_keep[t] = c->lambda * (t < np ? pooled[t] : 0.0) - (1.0 - c->lambda) * red[t];
    }
}

/* ------------------------------------------------------------ scissorhands */

/* Unimportant steps of resident i within the history window: [*lo, *hi]
 * (hi - lo = the steps too close to the threshold to call in f32). */
static void scissor_count(const ref_model *m, uint32_t g, const ref_tok *t, uint32_t *lo, uint32_t *hi) {
    uint32_t now = m->steps[g], w = m->c.history;
    uint32_t first = m->c.mutant == REF_MUT_SCISSOR_NO_WINDOW || now < w ? 1 : now - w + 1;
    uint32_t a = 0, b = 0;
    for (uint32_t i = 0; i < t->n_low; i++) a += t->low[i] >= first;
    for (uint32_t i = 0; i < t->n_amb; i++) b += t->amb[i] >= first;
    *lo = a;
    *hi = a + b;
}

static void check_scissor(const ref_model *m, uint32_t g, const uint64_t *cand, uint32_t n, const int *victim,
                          ref_verdict *v) {
    static uint32_t lo[REF_MAXCAP], hi[REF_MAXCAP];
    for (uint32_t i = 0; i < n; i++) lo[i] = hi[i] = 0;
    for (uint32_t r = 0; r < m->n[g]; r++) {
        int at = find_unit(cand, n, m->tok[g][r].seq / m->c.block);
        if (at < 0) continue;
        uint32_t a, b;
        scissor_count(m, g, &m->tok[g][r], &a, &b);
        lo[at] += a;
        hi[at] += b;
    }
    /* evict the most unimportant steps first, ties the older: every victim must
     * be able to rank before every survivor */
    v->exact = 1;
    for (uint32_t i = 0; i < n; i++) {
        if (!victim[i]) continue;
        for (uint32_t j = 0; j < n; j++) {
            if (victim[j]) continue;
            int sure = lo[i] == hi[i] && lo[j] == hi[j];
            if (!sure) v->exact = 0;
            int wrong = hi[i] < lo[j] || (sure && lo[i] == lo[j] && cand[i] > cand[j]);
            if (!wrong) continue;
            snprintf(v->why, sizeof v->why,
                     "evicted unit %llu (%u..%u unimportant steps) but kept unit %llu (%u..%u) among %u candidates",
                     (unsigned long long)cand[i], lo[i], hi[i], (unsigned long long)cand[j], lo[j], hi[j], n);
            v->ok = 0;
            return;
        }
    }
}

ref_verdict ref_check(const ref_model *m, uint32_t g, const uint64_t *victims, uint32_t n_victims, double tol_rel) {
    ref_verdict v;
    memset(&v, 0, sizeof v);
    v.ok = 1;
    static uint64_t cand[REF_MAXCAP];
    static int victim[REF_MAXCAP];
    static double score[REF_MAXCAP];
    uint32_t n = ref_candidates(m, g, cand);
    if (n_victims != m->c.chunk) {
        snprintf(v.why, sizeof v.why, "%u victim units, expected chunk=%u", n_victims, m->c.chunk);
        v.ok = 0;
        return v;
    }
    memset(victim, 0, sizeof victim[0] * n);
    for (uint32_t i = 0; i < n_victims; i++) {
        int at = find_unit(cand, n, victims[i]);
        if (at < 0 || victim[at]) {
            snprintf(v.why, sizeof v.why, "victim unit %llu is %s", (unsigned long long)victims[i],
                     at < 0 ? "not a candidate (protected, incomplete or absent)" : "repeated");
            v.ok = 0;
            return v;
        }
        victim[at] = 1;
    }
    /* any distinct candidates; the distributions are tested apart */
    if (m->c.rule == REF_RANDOM || m->c.rule == REF_KEYFORMER || m->c.rule == REF_VASE_DKV) return v;
    if (m->c.rule == REF_SCISSOR) {
        check_scissor(m, g, cand, n, victim, &v);
        return v;
    }
    int whole = m->c.rule == REF_KEYDIFF || m->c.rule == REF_RKV; /* scores that look at every resident */
    if (m->c.rule == REF_KEYDIFF) keydiff_keep(m, g, cand, n);
    if (m->c.rule == REF_RKV) {
        rkv_ambiguous = 0;
        rkv_keep(m, g);
        if (rkv_ambiguous) {
            v.skipped = 1;
            return v;
        }
    }
    if (m->c.rule == REF_VASE) {
        check_vase(m, g, cand, n, victim, tol_rel, &v);
        return v;
    }
    if (m->c.rule == REF_SNAPKV) {
        /* the window's weights (or the mass since the last eviction), pooled over candidates */
        static double w[REF_MAXCAP];
        ref_vase_weights(m, g, cand, n, w);
        ref_pool_snap(w, n, m->c.kernel, m->c.avgpool, score);
    } else {
        for (uint32_t i = 0; i < n; i++) score[i] = unit_sum(m, g, cand[i], whole ? 3 : 0);
    }
    double top = 0.0;
    for (uint32_t i = 0; i < n; i++)
        if (fabs(score[i]) > top) top = fabs(score[i]);
    double tol = tol_rel * top;
    /* every victim must rank before every survivor: lower score, or an equal
     * score and older; scores closer than tol may go either way */
    v.exact = 1;
    for (uint32_t i = 0; i < n; i++) {
        if (!victim[i]) continue;
        for (uint32_t j = 0; j < n; j++) {
            if (victim[j]) continue;
            int before = score[i] < score[j] || (score[i] == score[j] && cand[i] < cand[j]);
            if (before) continue;
            v.exact = 0;
            if (score[i] != score[j] && score[i] <= score[j] + tol) continue;
            snprintf(v.why, sizeof v.why,
                     "evicted unit %llu (score %.9g) but kept unit %llu (score %.9g) among %u candidates",
                     (unsigned long long)cand[i], score[i], (unsigned long long)cand[j], score[j], n);
            v.ok = 0;
            return v;
        }
    }
    return v;
}

void ref_evict(ref_model *m, uint32_t g, const uint64_t *units, uint32_t n) {
    uint32_t w = 0;
    for (uint32_t i = 0; i < m->n[g]; i++) {
        if (find_unit(units, n, m->tok[g][i].seq / m->c.block) >= 0) continue;
        if (w != i) m->tok[g][w] = m->tok[g][i];
        w++;
    }
    m->n[g] = w;
    /* vase's observed-mass window restarts after each of the group's evictions */
    for (uint32_t i = 0; i < m->n[g]; i++) m->tok[g][i].since = 0.0;
}

static void head_facts(const float *k, const float *v, uint32_t d, double f[3]) {
    double ss = 0.0, l1 = 0.0, lo = v[0], hi = v[0];
    for (uint32_t e = 0; e < d; e++) {
        ss += (double)k[e] * k[e];
        l1 += fabs((double)v[e]);
        if (v[e] < lo) lo = v[e];
        if (v[e] > hi) hi = v[e];
    }
    f[0] = sqrt(ss);
    f[1] = l1;
    f[2] = hi - lo;
}

void ref_insert(ref_model *m, int64_t pos, const float *k, const float *v, const uint32_t *slots) {
    const ref_cfg *c = &m->c;
    size_t row = (size_t)c->n_kv * c->d;
    for (uint32_t g = 0; g < m->groups; g++) {
        ref_tok *t = &m->tok[g][m->n[g]++];
        t->acc = t->steps = t->cur = t->since = 0.0;
        t->n_low = t->n_amb = 0;
        t->pos = pos;
        t->seq = m->appended;
        t->slot = slots ? (int32_t)slots[g] : -1;
        memcpy(t->k, k, row * sizeof *k);
        memcpy(t->v, v, row * sizeof *v);
        /* a group's facts: its kv head's, or the mean over heads when shared */
        uint32_t h0 = c->shared ? 0 : g, h1 = c->shared ? c->n_kv : g + 1;
        double f[3], sum[3] = {0, 0, 0};
        for (uint32_t h = h0; h < h1; h++) {
            head_facts(k + (size_t)h * c->d, v + (size_t)h * c->d, c->d, f);
            for (int i = 0; i < 3; i++) sum[i] += f[i];
        }
        t->key_norm = sum[0] / (h1 - h0);
        t->value_l1 = sum[1] / (h1 - h0);
        t->value_range = sum[2] / (h1 - h0);
    }
    m->appended++;
}

/* One step of mass for group g: mass[i] for resident i. */
void ref_deliver(ref_model *m, uint32_t g, const double *mass) {
    uint32_t step = ++m->steps[g];
    double t = m->c.mutant == REF_MUT_SCISSOR_RESIDENT_T ? m->n[g] : (double)m->appended;
    double thr = 1.0 / (t > 0 ? t : 1);
    for (uint32_t i = 0; i < m->n[g] && m->c.rule == REF_SCISSOR && step < 65536; i++) {
        ref_tok *tk = &m->tok[g][i];
        /* STORE masses come from an f32 softmax: too close to call is recorded apart */
        int amb = !m->c.index && fabs(mass[i] - thr) <= 1e-4 * thr;
        if (amb && tk->n_amb < REF_MAXSTEPS) tk->amb[tk->n_amb++] = (uint16_t)step;
        else if (!amb && mass[i] < thr && tk->n_low < REF_MAXSTEPS) tk->low[tk->n_low++] = (uint16_t)step;
    }
    for (uint32_t i = 0; i < m->n[g]; i++) {
        ref_tok *t = &m->tok[g][i];
        t->acc += mass[i];
        t->steps += 1.0;
        t->cur = mass[i];
        t->since += mass[i];
    }
}

void ref_attend(ref_model *m, const float *q) {
    const ref_cfg *c = &m->c;
    uint32_t ratio = c->n_q / c->n_kv, d = c->d;
    static double mass[REF_MAXCAP], logit[REF_MAXCAP];
    for (uint32_t g = 0; g < m->groups; g++) {
        uint32_t n = m->n[g], heads = 0;
        for (uint32_t i = 0; i < n; i++) mass[i] = 0.0;
        for (uint32_t h = 0; h < c->n_q; h++) {
            uint32_t kv = h / ratio;
            if (!c->shared && kv != g) continue;
            double mx = -INFINITY, sum = 0.0;
            for (uint32_t i = 0; i < n; i++) {
                double dot = 0.0;
                for (uint32_t e = 0; e < d; e++) dot += (double)q[h * d + e] * m->tok[g][i].k[kv * d + e];
                logit[i] = dot * c->scale;
                if (logit[i] > mx) mx = logit[i];
            }
            for (uint32_t i = 0; i < n; i++) sum += (logit[i] = exp(logit[i] - mx));
            for (uint32_t i = 0; i < n; i++) mass[i] += logit[i] / sum;
            heads++;
        }
        for (uint32_t i = 0; i < n; i++) mass[i] /= heads;
        ref_deliver(m, g, mass);
    }
    if (c->qwin) {
        memcpy(m->ring[m->ring_head], q, (size_t)c->n_q * d * sizeof *q);
        m->ring_head = (m->ring_head + 1) % c->qwin;
        if (m->ring_n < c->qwin) m->ring_n++;
    }
}

void ref_observe(ref_model *m, uint32_t g, const float *mass, uint32_t n) {
    /* only occupied slots count; the rest of the call is zero */
    for (uint32_t i = 0; i < m->n[g]; i++) {
        int32_t s = m->tok[g][i].slot;
        if (s >= 0 && (uint32_t)s < n) m->pend[g][s] += mass[s];
    }
    m->calls[g]++;
}

void ref_flush(ref_model *m) {
    static double mass[REF_MAXCAP];
    for (uint32_t g = 0; g < m->groups; g++) {
        if (!m->calls[g]) continue;
        for (uint32_t i = 0; i < m->n[g]; i++) mass[i] = m->pend[g][m->tok[g][i].slot] / m->calls[g];
        ref_deliver(m, g, mass);
        memset(m->pend[g], 0, sizeof(double) * m->c.cap);
        m->calls[g] = 0;
    }
}

/* ------------------------------------------------------------ chi-square */

/* Regularised upper incomplete gamma Q(a, x): series for x < a + 1, else a
 * continued fraction (modified Lentz), both to full double precision. */
static double gamma_q(double a, double x) {
    if (x <= 0.0) return 1.0;
    double lg = lgamma(a), front = exp(-x + a * log(x) - lg);
    if (x < a + 1.0) {
        double term = 1.0 / a, sum = term;
        for (int k = 1; k < 100000 && fabs(term) > fabs(sum) * 1e-17; k++) {
            term *= x / (a + k);
            sum += term;
        }
        return 1.0 - front * sum;
    }
    double tiny = 1e-300, b = x + 1.0 - a, cc = 1.0 / tiny, dd = 1.0 / b, h = dd;
    for (int i = 1; i < 100000; i++) {
        double an = -i * (i - a);
        b += 2.0;
        dd = an * dd + b;
        if (fabs(dd) < tiny) dd = tiny;
        cc = b + an / cc;
        if (fabs(cc) < tiny) cc = tiny;
        dd = 1.0 / dd;
        double delta = dd * cc;
        h *= delta;
        if (fabs(delta - 1.0) < 1e-16) break;
    }
    return front * h;
}

double ref_chi2_sf(double x, double df) { return gamma_q(df / 2.0, x / 2.0); }

double ref_chi2_test(const uint64_t *counts, const double *p, uint32_t k, double *stat) {
    uint64_t total = 0;
    for (uint32_t i = 0; i < k; i++) total += counts[i];
    double x = 0.0;
    uint32_t cells = 0;
    for (uint32_t i = 0; i < k; i++) {
        double e = p[i] * (double)total;
        if (e == 0.0) {
            if (counts[i]) x = INFINITY;
            continue;
        }
        double dlt = (double)counts[i] - e;
        x += dlt * dlt / e;
        cells++;
    }
    if (stat) *stat = x;
    if (isinf(x)) return 0.0;
    return cells > 1 ? ref_chi2_sf(x, cells - 1) : 1.0;
}
