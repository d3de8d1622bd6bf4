/* Reference model of prefill compression (see ref_prefill.h): double
 * precision, quadratic loops, everything recomputed from the definitions. */
#include "ref_prefill.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ref_prefill_scores(const ref_cfg *c, uint32_t g, const ref_prompt *p, double *score) {
    uint32_t ratio = c->n_q / c->n_kv, d = c->d, rows = 0;
    static double logit[REF_MAXPROMPT];
    for (uint32_t j = 0; j < p->n; j++) score[j] = 0.0;
    for (uint32_t h = 0; h < c->n_q; h++) {
        uint32_t kv = h / ratio;
        if (!c->shared && kv != g) continue;
        for (uint32_t r = 0; r < p->w; r++) {
            const float *q = p->q + ((size_t)r * c->n_q + h) * d;
            uint32_t seen = p->n - p->w + r + 1;
            double mx = -INFINITY, sum = 0.0;
            for (uint32_t j = 0; j < seen; j++) {
                const float *k = p->k + ((size_t)j * c->n_kv + kv) * d;
                double dot = 0.0;
                for (uint32_t e = 0; e < d; e++) dot += (double)q[e] * k[e];
                logit[j] = dot * c->scale;
                if (logit[j] > mx) mx = logit[j];
            }
            for (uint32_t j = 0; j < seen; j++) sum += (logit[j] = exp(logit[j] - mx));
            for (uint32_t j = 0; j < seen; j++) score[j] += logit[j] / sum;
            rows++;
        }
    }
    for (uint32_t j = 0; j < p->n; j++) score[j] /= rows;
}

int ref_prefill_protected(const ref_cfg *c, const ref_prompt *p, uint32_t i) {
    uint32_t tail = c->recent > p->w ? c->recent : p->w;
    return i < c->sink || p->pos + (int64_t)i < c->protect || i + tail >= p->n;
}

/* Group g's view of token i: its kv head's statistics, or the mean over heads when shared. */
static void facts(const ref_cfg *c, uint32_t g, const ref_prompt *p, uint32_t i, double f[3]) {
    uint32_t h0 = c->shared ? 0 : g, h1 = c->shared ? c->n_kv : g + 1;
    f[0] = f[1] = f[2] = 0.0;
    if (!p->k || !p->v) return;
    for (uint32_t h = h0; h < h1; h++) {
        const float *k = p->k + ((size_t)i * c->n_kv + h) * c->d, *v = p->v + ((size_t)i * c->n_kv + h) * c->d;
        double ss = 0.0, l1 = 0.0, lo = v[0], hi = v[0];
        for (uint32_t e = 0; e < c->d; e++) {
            ss += (double)k[e] * k[e];
            l1 += fabs((double)v[e]);
            lo = v[e] < lo ? v[e] : lo;
            hi = v[e] > hi ? v[e] : hi;
        }
        f[0] += sqrt(ss);
        f[1] += l1;
        f[2] += hi - lo;
    }
    for (int j = 0; j < 3; j++) f[j] /= (h1 - h0);
}

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

ref_verdict ref_prefill_check(const ref_cfg *c, uint32_t g, const ref_prompt *p, const double *score,
                              const uint32_t *kept, uint32_t n_kept, double tol_rel) {
    ref_verdict v;
    memset(&v, 0, sizeof v);
    v.ok = v.exact = 1;
    static int is_kept[REF_MAXPROMPT];
    static double keep[REF_MAXPROMPT], pooled[REF_MAXPROMPT], sorted[REF_MAXPROMPT];
    static uint32_t cand[REF_MAXPROMPT];
    uint32_t n = p->n, want = n < c->cap ? n : c->cap;
    if (n_kept != want) {
        snprintf(v.why, sizeof v.why, "kept %u tokens, expected min(n=%u, capacity=%u)", n_kept, n, c->cap);
        v.ok = 0;
        return v;
    }
    memset(is_kept, 0, sizeof is_kept[0] * n);
    for (uint32_t s = 0; s < n_kept; s++) {
        if (kept[s] >= n || (s && kept[s] <= kept[s - 1])) {
            snprintf(v.why, sizeof v.why, "slot %u holds prompt index %u: not increasing or out of range", s, kept[s]);
            v.ok = 0;
            return v;
        }
        is_kept[kept[s]] = 1;
    }
    uint32_t nc = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!ref_prefill_protected(c, p, i)) {
            cand[nc++] = i;
        } else if (!is_kept[i]) {
            snprintf(v.why, sizeof v.why, "protected token %u (position %lld) was dropped", i,
                     (long long)(p->pos + i));
            v.ok = 0;
            return v;
        }
    }
    if (c->rule == REF_RANDOM) return v; /* any candidates; reproducibility is tested apart */
    if (c->rule == REF_VASE) {
        /* the `reserve` x capacity largest value ranges (sinks counted in) are kept */
        uint32_t nv = n - want, rc = (uint32_t)floor(c->reserve * c->cap);
        rc = rc > c->sink ? rc - c->sink : 0;
        if (rc > nc - nv) rc = nc - nv;
        double f[3], top = 0.0;
        for (uint32_t i = 0; i < nc; i++) {
            facts(c, g, p, cand[i], f);
            keep[i] = sorted[i] = f[2];
            top = fabs(f[2]) > top ? fabs(f[2]) : top;
        }
        qsort(sorted, nc, sizeof *sorted, cmp_desc);
        double below = rc < nc ? sorted[rc] : -INFINITY, tol = tol_rel * top + 1e-30;
        for (uint32_t i = 0; i < nc; i++)
            if (!is_kept[cand[i]] && rc && keep[i] > below + tol) {
                snprintf(v.why, sizeof v.why, "dropped token %u whose value range %.6g is among the %u reserved",
                         cand[i], keep[i], rc);
                v.ok = 0;
                return v;
            }
        v.exact = 0;
        return v;
    }
    if (c->rule == REF_SNAPKV && score) ref_pool_snap(score, n - p->w, c->kernel, c->avgpool, pooled);
    double top = 0.0;
    for (uint32_t i = 0; i < n; i++) {
        double f[3], s = score ? score[i] : 0.0;
        facts(c, g, p, i, f);
        switch (c->rule) {
        case REF_WINDOW:
        case REF_SINK: keep[i] = 0.0; break;
        case REF_KNORM: keep[i] = -f[0]; break;
        case REF_VATP: keep[i] = s * f[1]; break;
        case REF_SNAPKV: keep[i] = score && i < n - p->w ? pooled[i] : 0.0; break;
        default: keep[i] = s; break; /* h2o, tova, the core's default */
        }
        top = fabs(keep[i]) > top ? fabs(keep[i]) : top;
    }
    double tol = tol_rel * top;
    for (uint32_t a = 0; a < nc; a++) {
        uint32_t i = cand[a];
        if (is_kept[i]) continue;
        for (uint32_t b = 0; b < nc; b++) {
            uint32_t j = cand[b];
            if (!is_kept[j]) continue;
            if (keep[i] < keep[j] || (keep[i] == keep[j] && i < j)) continue;
            v.exact = 0;
            if (keep[i] != keep[j] && keep[i] <= keep[j] + tol) continue;
            snprintf(v.why, sizeof v.why, "dropped token %u (keep %.9g) but kept token %u (keep %.9g)", i, keep[i],
                     j, keep[j]);
            v.ok = 0;
            return v;
        }
    }
    return v;
}

void ref_prefill_load(ref_model *m, const ref_prompt *p, const uint32_t *const *kept, uint32_t n_kept,
                      const double *const *score) {
    const ref_cfg *c = &m->c;
    size_t row = (size_t)c->n_kv * c->d;
    for (uint32_t g = 0; g < m->groups; g++) {
        m->n[g] = n_kept;
        for (uint32_t s = 0; s < n_kept; s++) {
            uint32_t i = kept[g][s];
            ref_tok *t = &m->tok[g][s];
            double f[3];
            memset(t, 0, sizeof *t);
            t->pos = p->pos + (int64_t)i;
            t->seq = i;
            t->slot = (int32_t)s;
            if (p->k) memcpy(t->k, p->k + i * row, row * sizeof *t->k);
            if (p->v) memcpy(t->v, p->v + i * row, row * sizeof *t->v);
            facts(c, g, p, i, f);
            t->key_norm = f[0];
            t->value_l1 = f[1];
            t->value_range = f[2];
        }
    }
    m->appended = p->n;
    /* the kept tokens' scores: one attention step, as the rule's own model takes one */
    static double mass[REF_MAXCAP];
    for (uint32_t g = 0; g < m->groups && score; g++) {
        if (!score[g]) continue;
        for (uint32_t s = 0; s < n_kept; s++) mass[s] = score[g][kept[g][s]];
        ref_deliver(m, g, mass);
    }
    if (c->qwin && p->q)
        for (uint32_t r = p->w > c->qwin ? p->w - c->qwin : 0; r < p->w; r++) {
            memcpy(m->ring[m->ring_head], p->q + (size_t)r * c->n_q * c->d, (size_t)c->n_q * c->d * sizeof(float));
            m->ring_head = (m->ring_head + 1) % c->qwin;
            if (m->ring_n < c->qwin) m->ring_n++;
        }
}
