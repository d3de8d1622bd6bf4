/* rkv: redundancy-aware eviction for reasoning models (Cai et al., "R-KV",
 * arXiv 2505.24133; reference code github.com/Zefan-Cai/R-KV, rkv/utils.py
 * and rkv/compression/r1_kv.py).
 *
 * Long chains of thought repeat themselves; attention alone keeps every copy
 * of a repeated step. R-KV scores each token by importance minus redundancy:
 *   importance: the last `query_window` (8) queries' attention over the
 *     prefix (every resident but the protected recent window): per query,
 *     the maximum over the group's query heads of the logits, a softmax over
 *     the prefix, then the mean over the queries, then a max-pool of width
 *     `pool` (7) over neighbours in position order;
 *   redundancy: the cosine similarity of the keys of all residents (diagonal
 *     zeroed); for each token, its similarity to its most recent
 *     near-duplicate (cosine > `threshold`, 0.5) is dropped so that the
 *     newest copy of a repeated step survives; the column means, softmaxed
 *     over the residents;
 *   score = lambda * importance - (1 - lambda) * redundancy (lambda 0.1).
 * The lowest scores go, 128 at a time, the last 8 tokens protected.
 * In shared scope the importance takes the maximum over all query heads
 * (each against its own kv head's keys) and the redundancy is the mean of
 * each kv head's. In INDEX mode (no queries), and in STORE mode before the
 * first attend, the importance is the attention mass observed since the
 * group's previous eviction, normalised over the prefix, then pooled.
 * The policy keeps an f32 copy of the keys (head_dim floats per slot and kv
 * head). Cost per eviction: O(n head_dim) for the column sums, plus up to
 * O(n^2 head_dim) (f32) to find the near-duplicates. */
#include <math.h>
#include <stdbool.h>

#include "policy_util.h"

typedef struct {
    uint32_t cap, d, heads, qpg, n_q, recent, pool;
    double lambda, threshold;
    float scale;
    float *k;          /* per (group, slot): heads x d keys */
    double *inv_norm;  /* per (group, slot): heads x 1/(|k| + 1e-8) */
    float *acc;        /* per (group, slot): mass since the last eviction (INDEX) */
    uint32_t *order;   /* residents in position order */
    uint32_t *rank;    /* slot -> index in order */
    uint32_t *idx;     /* selection scratch */
    double *imp, *pooled, *red, *col, *rowv, *score; /* capacity each */
    double *sum;       /* head_dim: sum of the unit keys of one head */
} rkv_state;

static size_t row(const rkv_state *s) { return (size_t)s->heads * s->d; }

static size_t state_size(const kvc_policy_ctx *ctx) {
    size_t hd = (size_t)ctx->kv_heads * ctx->head_dim;
    return kvc__hdr(sizeof(rkv_state)) + kvc__slot_arrays(ctx, ctx->kv_heads, sizeof(double)) +
           kvc__slot_arrays(ctx, hd + 1, sizeof(float)) +
           (size_t)ctx->capacity * (3 * sizeof(uint32_t) + 6 * sizeof(double)) +
           (size_t)ctx->head_dim * sizeof(double) + 8;
}

static int init(void *state, const kvc_policy_ctx *ctx) {
    rkv_state *s = state;
    size_t slots = (size_t)ctx->n_groups * ctx->capacity, cap = ctx->capacity;
    s->cap = ctx->capacity;
    s->d = ctx->head_dim;
    s->heads = ctx->kv_heads;
    s->qpg = ctx->q_per_group;
    s->n_q = ctx->n_groups * ctx->q_per_group;
    s->recent = ctx->recent;
    s->scale = ctx->scale;
    s->lambda = ctx->params[0];
    s->threshold = ctx->params[1];
    s->pool = (uint32_t)ctx->params[2];
    s->inv_norm = kvc__past_hdr(state, sizeof(rkv_state));
    s->k = (float *)(void *)(s->inv_norm + slots * s->heads);
    s->acc = s->k + slots * row(s);
    s->order = (uint32_t *)(void *)(s->acc + slots);
    s->rank = s->order + cap;
    s->idx = s->rank + cap;
    s->imp = (double *)(void *)(((uintptr_t)(s->idx + cap) + 7) & ~(uintptr_t)7);
    s->pooled = s->imp + cap;
    s->red = s->pooled + cap;
    s->col = s->red + cap;
    s->rowv = s->col + cap;
    s->score = s->rowv + cap;
    s->sum = s->score + cap;
    return 0;
}

static void on_insert(void *state, uint32_t g, uint32_t slot, const kvc_token *tok) {
    rkv_state *s = state;
    size_t i = (size_t)g * s->cap + slot;
    for (uint32_t h = 0; h < s->heads; h++) {
        const float *k = tok->key + (size_t)h * s->d;
        double ss = 0.0;
        for (uint32_t t = 0; t < s->d; t++) {
            s->k[i * row(s) + (size_t)h * s->d + t] = k[t];
            ss += (double)k[t] * k[t];
        }
        s->inv_norm[i * s->heads + h] = 1.0 / (sqrt(ss) + 1e-8);
    }
    s->acc[i] = 0.0f;
}

static void on_attend(void *state, uint32_t g, const float *mass, uint32_t n) {
    rkv_state *s = state;
    float *acc = s->acc + (size_t)g * s->cap;
    for (uint32_t i = 0; i < n; i++) acc[i] += mass[i];
}

static void on_move(void *state, uint32_t g, uint32_t from, uint32_t to) {
    rkv_state *s = state;
    size_t a = (size_t)g * s->cap + from, b = (size_t)g * s->cap + to;
    for (size_t i = 0; i < row(s); i++) s->k[b * row(s) + i] = s->k[a * row(s) + i];
    for (uint32_t h = 0; h < s->heads; h++) s->inv_norm[b * s->heads + h] = s->inv_norm[a * s->heads + h];
    s->acc[b] = s->acc[a];
}

static const float *key_of(const rkv_state *s, uint32_t g, uint32_t slot, uint32_t h) {
    return s->k + ((size_t)g * s->cap + slot) * row(s) + (size_t)h * s->d;
}

/* imp[0..np): the window queries' attention over the prefix order[0..np). */
static void importance(rkv_state *s, const kvc_select *req, uint32_t np) {
    uint32_t g = req->group;
    for (uint32_t t = 0; t < np; t++) s->imp[t] = 0.0;
    if (req->queries && req->n_queries) {
        uint32_t ratio = s->qpg / s->heads; /* query heads per kv head */
        for (uint32_t r = 0; r < req->n_queries; r++) {
            double mx = -INFINITY, sum = 0.0;
            /* four keys at a time: four independent sums, each in e order (the
             * same values as one key at a time, without waiting on each sum);
             * a last group of fewer repeats its last key and keeps what it has */
            for (uint32_t u = 0; u < np; u += 4) {
                const uint32_t m = np - u < 4 ? np - u : 4;
                double best[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
                for (uint32_t j = 0; j < s->qpg; j++) {
                    const float *q = req->queries + ((size_t)r * s->n_q + (size_t)g * s->qpg + j) * s->d;
                    const float *k[4];
                    for (uint32_t i = 0; i < 4; i++) k[i] = key_of(s, g, s->order[u + (i < m ? i : m - 1)], j / ratio);
                    double d0 = 0.0, d1 = 0.0, d2 = 0.0, d3 = 0.0;
                    for (uint32_t e = 0; e < s->d; e++) {
                        const double qe = q[e];
                        d0 += qe * k[0][e], d1 += qe * k[1][e], d2 += qe * k[2][e], d3 += qe * k[3][e];
                    }
                    const double dots[4] = {d0 * s->scale, d1 * s->scale, d2 * s->scale, d3 * s->scale};
                    for (int i = 0; i < 4; i++)
                        if (dots[i] > best[i]) best[i] = dots[i];
                }
                for (uint32_t i = 0; i < m; i++) {
                    s->rowv[u + i] = best[i];
                    if (best[i] > mx) mx = best[i];
                }
            }
            for (uint32_t t = 0; t < np; t++) sum += (s->rowv[t] = exp(s->rowv[t] - mx));
            for (uint32_t t = 0; t < np; t++) s->imp[t] += s->rowv[t] / sum;
        }
        for (uint32_t t = 0; t < np; t++) s->imp[t] /= req->n_queries;
        return;
    }
    double sum = 0.0;
    for (uint32_t t = 0; t < np; t++) sum += (s->imp[t] = s->acc[(size_t)g * s->cap + s->order[t]]);
    if (sum > 0.0)
        for (uint32_t t = 0; t < np; t++) s->imp[t] /= sum;
}

/* red[0..n): redundancy of each resident order[t], averaged over kv heads.
 * Column j of the cosine matrix (diagonal 0) sums to u_j . (S - u_j), with
 * u the unit keys and S their sum: O(n head_dim). Only the exemptions need
 * pairs: each row's most recent near-duplicate, found by scanning from the
 * newest resident back and stopping at the first, so repetitive text (the
 * case R-KV is for) costs far less than the O(n^2 head_dim) worst case. */
static void redundancy(rkv_state *s, uint32_t g, uint32_t n) {
    for (uint32_t t = 0; t < n; t++) s->red[t] = 0.0;
    for (uint32_t h = 0; h < s->heads; h++) {
        for (uint32_t e = 0; e < s->d; e++) s->sum[e] = 0.0;
        for (uint32_t t = 0; t < n; t++) {
            s->rowv[t] = s->inv_norm[((size_t)g * s->cap + s->order[t]) * s->heads + h];
            const float *k = key_of(s, g, s->order[t], h);
            for (uint32_t e = 0; e < s->d; e++) s->sum[e] += k[e] * s->rowv[t];
        }
        for (uint32_t j = 0; j < n; j++) {
            const float *k = key_of(s, g, s->order[j], h);
            double dot = 0.0, self = 0.0;
            for (uint32_t e = 0; e < s->d; e++) {
                double u = k[e] * s->rowv[j];
                dot += u * s->sum[e];
                self += u * u;
            }
            s->col[j] = dot - self;
        }
        for (uint32_t i = 0; i < n; i++) {
            const float *ki = key_of(s, g, s->order[i], h);
            /* four candidates at a time, newest first, the first above the
             * threshold wins: the same answer as one at a time, with four
             * independent dot products in flight */
            uint32_t j = n;
            bool found = false;
            while (j > 0 && !found) {
                const uint32_t m = j < 4 ? j : 4;
                double sim[4];
                for (uint32_t a = 0; a < m; a++) {
                    const uint32_t jj = j - 1 - a;
                    sim[a] = jj == i ? -INFINITY
                                     : kvc__dot_f32(ki, key_of(s, g, s->order[jj], h), s->d) * s->rowv[i] * s->rowv[jj];
                }
                for (uint32_t a = 0; a < m; a++)
                    if (sim[a] > s->threshold) {
                        s->col[j - 1 - a] -= sim[a];
                        found = true;
                        break;
                    }
                j -= m;
            }
        }
        double mx = -INFINITY, sum = 0.0;
        for (uint32_t j = 0; j < n; j++) {
            s->col[j] /= n;
            if (s->col[j] > mx) mx = s->col[j];
        }
        for (uint32_t j = 0; j < n; j++) sum += (s->col[j] = exp(s->col[j] - mx));
        for (uint32_t j = 0; j < n; j++) s->red[j] += s->col[j] / sum;
    }
    for (uint32_t t = 0; t < n; t++) s->red[t] /= s->heads;
}

static int select_victims(void *state, const kvc_select *req, uint32_t *victims) {
    rkv_state *s = state;
    uint32_t g = req->group;
    uint32_t n = kvc__residents_by_position(req->positions, s->cap, s->order);
    uint32_t np = n > s->recent ? n - s->recent : 0; /* the prefix: all but the protected recent window */
    for (uint32_t t = 0; t < n; t++) s->rank[s->order[t]] = t;
    importance(s, req, np);
    /* max-pool of width `pool` over the prefix: in[t - pool/2 .. t - pool/2 + pool - 1], clipped */
    int64_t half = s->pool / 2;
    for (int64_t t = 0; t < np; t++) {
        double m = -INFINITY;
        int64_t lo = t - half < 0 ? 0 : t - half, hi = t - half + s->pool - 1;
        for (int64_t u = lo; u <= hi && u < np; u++) m = s->imp[u] > m ? s->imp[u] : m;
        s->pooled[t] = m;
    }
    redundancy(s, g, n);
    for (uint32_t i = 0; i < req->n_candidates; i++) {
        double sc = 0.0;
        for (uint32_t j = 0; j < req->block; j++) {
            uint32_t t = s->rank[req->candidates[i] + j];
            double imp = t < np ? s->pooled[t] : 0.0;
            sc += s->lambda * imp - (1.0 - s->lambda) * s->red[t];
        }
        s->score[i] = sc;
    }
    kvc__evict_lowest(s->score, req->n_candidates, req->n_victims, req->candidates, s->idx, victims);
    /* the INDEX-mode importance window restarts after each eviction */
    for (uint32_t i = 0; i < s->cap; i++) s->acc[(size_t)g * s->cap + i] = 0.0f;
    return 0;
}

static const kvc_param params[] = {
    {"lambda", 0.1, 0.0, 1.0, NULL, "weight of importance against redundancy"},
    {"threshold", 0.5, -1.0, 1.0, NULL, "key cosine above which a token counts as a near-duplicate"},
    {"pool", 7, 1, 255, NULL, "width of the max-pooling of the importance over neighbours"},
};

static const kvc_policy rkv = {
    KVC__POLICY_INIT("rkv", KVC_NEED_KEYS | KVC_NEED_QUERIES),
    .default_recent = 8,
    .default_chunk = 128,
    .n_params = 3,
    .params = params,
    .state_size = state_size,
    .init = init,
    .on_insert = on_insert,
    .on_attend = on_attend,
    .select = select_victims,
    .on_move = on_move,
    .default_query_window = 8,
};

const kvc_policy *kvc_policy_rkv(void) { return &rkv; }
