/* vase_dkv: the DKV variant of VaSE (arXiv 2606.03928): CurDKV leverage
 * scores (arXiv 2509.15038) with VaSE's cadence.
 *
 * CUR decomposition keeps the rows of K and V with the largest leverage, the
 * rows that most of the matrix cannot be rebuilt without. Their cheap
 * approximation projects each key and value onto r Gaussian directions
 * (G: head_dim x r, entries N(0, 1/r)) and takes the squared norms; a
 * token's score is ||k G||^2 * ||v G||^2, the key and value leverages
 * multiplied. G is drawn afresh from the cache's seeded generator at every
 * eviction of every group (so no direction is permanently blind), the same G
 * for keys and values and for all kv heads of a group; in shared scope the
 * score is the mean over kv heads. The lowest scores go: a deterministic
 * top-k of the candidates, with the sinks (first 4) and the recent 64
 * protected by the core and 64 evicted at a time. The policy keeps its own
 * f32 copy of K and V (head_dim floats each per slot and kv head): it never
 * sees the cache's storage, and INDEX mode has none. */
#include <math.h>

#include "policy_util.h"

typedef struct {
    uint32_t cap, d, heads, rank;
    float *k, *v;     /* per (group, slot): heads x d */
    double *g;        /* d x rank projection, redrawn per eviction */
    double *score;    /* per candidate unit */
    uint32_t *order;  /* scratch */
} dkv_state;

static size_t row(const dkv_state *s) { return (size_t)s->heads * s->d; }

static size_t state_size(const kvc_policy_ctx *ctx) {
    size_t hd = (size_t)ctx->kv_heads * ctx->head_dim, r = (size_t)ctx->params[0];
    return kvc__hdr(sizeof(dkv_state)) + kvc__slot_arrays(ctx, 2 * hd, sizeof(float)) + 8 +
           (size_t)ctx->head_dim * r * sizeof(double) + (size_t)ctx->capacity * (sizeof(double) + sizeof(uint32_t));
}

static int init(void *state, const kvc_policy_ctx *ctx) {
    dkv_state *s = state;
    s->cap = ctx->capacity;
    s->d = ctx->head_dim;
    s->heads = ctx->kv_heads;
    s->rank = (uint32_t)ctx->params[0];
    size_t slots = (size_t)ctx->n_groups * ctx->capacity;
    s->k = kvc__past_hdr(state, sizeof(dkv_state));
    s->v = s->k + slots * row(s);
    s->g = (double *)(void *)(((uintptr_t)(s->v + slots * row(s)) + 7) & ~(uintptr_t)7);
    s->score = s->g + (size_t)s->d * s->rank;
    s->order = (uint32_t *)(void *)(s->score + s->cap);
    return 0;
}

static void on_insert(void *state, uint32_t g, uint32_t slot, const kvc_token *tok) {
    dkv_state *s = state;
    size_t at = ((size_t)g * s->cap + slot) * row(s);
    for (size_t i = 0; i < row(s); i++) {
        s->k[at + i] = tok->key[i];
        s->v[at + i] = tok->value[i];
    }
}

static void on_move(void *state, uint32_t g, uint32_t from, uint32_t to) {
    dkv_state *s = state;
    size_t a = ((size_t)g * s->cap + from) * row(s), b = ((size_t)g * s->cap + to) * row(s);
    for (size_t i = 0; i < row(s); i++) {
        s->k[b + i] = s->k[a + i];
        s->v[b + i] = s->v[a + i];
    }
}

/* d x r standard normals scaled by 1/sqrt(r), row-major, by Box-Muller pairs. */
static void draw_projection(dkv_state *s, kvc_rng *rng) {
    size_t n = (size_t)s->d * s->rank;
    double scale = 1.0 / sqrt((double)s->rank);
    for (size_t i = 0; i < n; i += 2) {
        double u1 = 1.0 - kvc_rng_uniform(rng), u2 = kvc_rng_uniform(rng); /* u1 in (0, 1] */
        double rad = sqrt(-2.0 * log(u1)), ang = 6.283185307179586 * u2;
        s->g[i] = rad * cos(ang) * scale;
        if (i + 1 < n) s->g[i + 1] = rad * sin(ang) * scale;
    }
}

/* ||x G||^2 for one head row x. Each of the rank dot products is summed in
 * t order from 0.0, as one dot after another would be; four of them run at
 * a time in locals, so they stay in registers instead of going through
 * memory at every step: the same bits, in about a third of the time at
 * head_dim 16, rank 20 (the proving ground's shape). */
static double projected_sq(const dkv_state *s, const float *x) {
    double dot[256]; /* rank <= 256 (the parameter's range) */
    const uint32_t r = s->rank, d = s->d;
    uint32_t c = 0;
    for (; c + 4 <= r; c += 4) {
        double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
        const double *gt = s->g + c;
        for (uint32_t t = 0; t < d; t++, gt += r) {
            const double xt = x[t];
            a0 += xt * gt[0];
            a1 += xt * gt[1];
            a2 += xt * gt[2];
            a3 += xt * gt[3];
        }
        dot[c] = a0, dot[c + 1] = a1, dot[c + 2] = a2, dot[c + 3] = a3;
    }
    for (; c < r; c++) {
        double a = 0.0;
        for (uint32_t t = 0; t < d; t++) a += (double)x[t] * s->g[(size_t)t * r + c];
        dot[c] = a;
    }
    double total = 0.0;
    for (c = 0; c < r; c++) total += dot[c] * dot[c];
    return total;
}

static int select_victims(void *state, const kvc_select *req, uint32_t *victims) {
    dkv_state *s = state;
    draw_projection(s, req->rng);
    for (uint32_t i = 0; i < req->n_candidates; i++) {
        double keep = 0.0;
        for (uint32_t j = 0; j < req->block; j++) {
            size_t at = ((size_t)req->group * s->cap + req->candidates[i] + j) * row(s);
            double lev = 0.0;
            for (uint32_t h = 0; h < s->heads; h++)
                lev += projected_sq(s, s->k + at + (size_t)h * s->d) * projected_sq(s, s->v + at + (size_t)h * s->d);
            keep += lev / s->heads;
        }
        s->score[i] = keep;
    }
    kvc__evict_lowest(s->score, req->n_candidates, req->n_victims, req->candidates, s->order, victims);
    return 0;
}

static const kvc_param params[] = {
    {"rank", 20, 1, 256, NULL, "Gaussian projection directions for the leverage estimate"},
};

static const kvc_policy vase_dkv = {
    KVC__POLICY_INIT("vase_dkv", KVC_NEED_KEYS | KVC_NEED_VALUES | KVC_NEED_RNG),
    .default_sink = 4,
    .default_recent = 64,
    .default_chunk = 64,
    .n_params = 1,
    .params = params,
    .state_size = state_size,
    .init = init,
    .on_insert = on_insert,
    .select = select_victims,
    .on_move = on_move,
};

const kvc_policy *kvc_policy_vase_dkv(void) { return &vase_dkv; }
