/* demo: every built-in policy on the same synthetic decode stream.
 *
 * A stream of 1024 tokens (2 kv heads, 8 query heads, head_dim 64) is decoded
 * against a cache of 128 slots. Every 50th token is a "needle": its key
 * points along a direction that later queries keep coming back to, so
 * attention-aware policies should hold on to needles while oblivious ones
 * forget them. Each policy is compared with the full cache on the same
 * queries:
 *   mass kept  share of the full cache's attention that falls on tokens the
 *              policy still holds (mean over steps and heads)
 *   out err    relative L2 error of the attention output vs the full cache
 *   needles    needles still resident at the end / needles seen
 *   evicted    tokens evicted per eviction group (kv head, or all heads)
 * and the last line per policy maps which positions remain (one cell per
 * 16 positions; darker = more of them resident).
 *
 * Usage: demo [capacity] [tokens]   (defaults 128 1024) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvc.h"

enum { HKV = 2, HQ = 8, D = 64, NEEDLE_EVERY = 50 };

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float gauss(void) {
    /* Box-Muller from a 64-bit LCG: enough for synthetic data */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    double u1 = ((rng_state >> 11) + 1.0) * 0x1.0p-53;
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    double u2 = (rng_state >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

typedef struct {
    float *k, *v, *q; /* per token: HKV*D, HKV*D, HQ*D */
} stream;

static void normalize(float *x) {
    double n = 0;
    for (int i = 0; i < D; i++) n += (double)x[i] * x[i];
    for (int i = 0; i < D; i++) x[i] = (float)(x[i] / sqrt(n));
}

/* Keys and queries share a slowly drifting "topic" (so recent tokens draw
 * attention, as in real text) and queries keep returning to one fixed
 * direction that only the needles' keys point along. */
static void make_stream(stream *s, int n) {
    s->k = malloc(sizeof(float) * n * HKV * D);
    s->v = malloc(sizeof(float) * n * HKV * D);
    s->q = malloc(sizeof(float) * n * HQ * D);
    float dir[D], topic[D];
    for (int i = 0; i < D; i++) dir[i] = gauss(), topic[i] = gauss();
    normalize(dir);
    normalize(topic);
    for (int t = 0; t < n; t++) {
        int needle = t % NEEDLE_EVERY == 7;
        for (int i = 0; i < D; i++) topic[i] += 0.15f * gauss();
        normalize(topic);
        for (int i = 0; i < HKV * D; i++) {
            s->k[t * HKV * D + i] = 0.3f * gauss() + 4.0f * topic[i % D] + (needle ? 6.0f * dir[i % D] : 0.0f);
            s->v[t * HKV * D + i] = gauss();
        }
        for (int i = 0; i < HQ * D; i++) s->q[t * HQ * D + i] = 0.3f * gauss() + 4.0f * topic[i % D] + 6.0f * dir[i % D];
    }
}

typedef struct {
    double mass_kept, out_err;
    int needles_kept, needles_seen;
    uint32_t len;
    unsigned long long evictions;
    double ms;
    char map[80];
} result;

static int run(const char *spec, const stream *s, int n, int cap, result *r) {
    kvc_cache *c, *full;
    int rc = kvc_cache_create_spec(&c, HKV, HQ, D, cap, KVC_DTYPE_F32, KVC_MODE_STORE, spec, NULL);
    if (rc) return rc;
    rc = kvc_cache_create_spec(&full, HKV, HQ, D, n, KVC_DTYPE_F32, KVC_MODE_STORE, "full", NULL);
    if (rc) {
        kvc_cache_destroy(c);
        return rc;
    }
    float out[HQ * D], ref[HQ * D];
    float *w = malloc(sizeof(float) * n);
    int64_t *pos = malloc(sizeof(int64_t) * cap);
    char *resident = malloc(n);
    memset(r, 0, sizeof *r);
    double mass = 0, err = 0, t_ms = 0;
    int counted = 0;
    kvc_attn_layout L = {1, 1, D, 0, KVC_DTYPE_F32, HKV * D, 0, 0.0f};
    for (int t = 0; t < n && !rc; t++) {
        clock_t t0 = clock();
        rc = kvc_cache_append(c, t, s->k + t * HKV * D, s->v + t * HKV * D);
        if (!rc) rc = kvc_cache_attend(c, s->q + t * HQ * D, out);
        t_ms += 1000.0 * (double)(clock() - t0) / CLOCKS_PER_SEC;
        if (!rc) rc = kvc_cache_append(full, t, s->k + t * HKV * D, s->v + t * HKV * D);
        if (!rc) rc = kvc_cache_attend(full, s->q + t * HQ * D, ref);
        if (rc || t < cap) continue;
        /* how much of the full cache's attention lands on what the policy kept */
        double e2 = 0, r2 = 0;
        for (int i = 0; i < HQ * D; i++) {
            e2 += (double)(out[i] - ref[i]) * (out[i] - ref[i]);
            r2 += (double)ref[i] * ref[i];
        }
        err += sqrt(e2 / r2);
        L.n_keys = (uint32_t)(t + 1);
        for (int h = 0; h < HQ; h++) {
            int kvh = h / (HQ / HKV);
            uint32_t g = kvc_cache_groups(c) == 1 ? 0 : (uint32_t)kvh;
            kvc_attention(&L, s->q + t * HQ * D + h * D, s->k + kvh * D, s->v + kvh * D, ref, w, (size_t)n);
            kvc_cache_positions(c, g, pos);
            for (int j = 0; j < cap; j++)
                if (pos[j] >= 0) mass += w[pos[j]];
        }
        counted++;
    }
    if (!rc) {
        kvc_stats st;
        kvc_cache_stats(c, &st);
        r->evictions = st.evictions / kvc_cache_groups(c); /* per group, comparable across scopes */
        r->len = kvc_cache_len(c);
        r->mass_kept = counted ? mass / ((double)counted * HQ) : 1.0;
        r->out_err = counted ? err / counted : 0.0;
        r->ms = t_ms;
        memset(resident, 0, n);
        for (uint32_t g = 0; g < kvc_cache_groups(c); g++) {
            kvc_cache_positions(c, g, pos);
            for (int j = 0; j < cap; j++)
                if (pos[j] >= 0) resident[pos[j]] = 1;
        }
        for (int t = 0; t < n; t++)
            if (t % NEEDLE_EVERY == 7) {
                r->needles_seen++;
                r->needles_kept += resident[t];
            }
        static const char shade[] = " .:-=+*#%@";
        int cells = n / 16 < 64 ? n / 16 : 64, per = n / cells;
        for (int i = 0; i < cells; i++) {
            int k = 0;
            for (int t = i * per; t < (i + 1) * per; t++) k += resident[t];
            r->map[i] = shade[(k * 9 + per - 1) / per];
        }
        r->map[cells] = 0;
    }
    free(w);
    free(pos);
    free(resident);
    kvc_cache_destroy(c);
    kvc_cache_destroy(full);
    return rc;
}

int main(int argc, char **argv) {
    int cap = argc > 1 ? atoi(argv[1]) : 128, n = argc > 2 ? atoi(argv[2]) : 1024;
    if (cap < 16 || n < cap || n > 1 << 16) {
        fprintf(stderr, "usage: %s [capacity >= 16] [tokens >= capacity, <= 65536]\n", argv[0]);
        return 2;
    }
    static const char *const specs[] = {"window", "sink", "random seed=1", "h2o", "tova",
                                        "knorm", "vatp", "vase seed=1"};
    stream s;
    make_stream(&s, n);
    printf("libkvc %s demo: %d tokens, capacity %d per group, %d kv / %d query heads, head_dim %d, kernel %s\n\n",
           kvc_version_string(), n, cap, HKV, HQ, D, kvc_active_isa());
    printf("Every policy decodes the same stream; every %dth token is a \"needle\" that later queries return to.\n"
           "  resident   tokens held per eviction group at the end (the capacity once full)\n"
           "  evicted    tokens evicted per group\n"
           "  mass kept  share of the full cache's attention that falls on tokens the policy still holds\n"
           "  out err    relative L2 error of the attention output against the full cache's\n"
           "  needles    needles still held at the end / needles seen\n"
           "  time       CPU time of the cache calls over the whole stream (append + attend, ms)\n"
           "vase costs more time: at each eviction it scores the candidates against the last 64 queries\n"
           "(a softmax over the candidates per query and head), where h2o or tova keep one running score\n"
           "per token. It evicts a chunk at a time to spread that cost (64 by default, capacity/16 = %d here).\n\n",
           NEEDLE_EVERY, cap / 16 > 0 ? (cap / 16 < 64 ? cap / 16 : 64) : 1);
    printf("%-8s %9s %9s %9s %9s %9s  %s\n", "policy", "resident", "evicted", "mass kept", "out err", "needles",
           "time");
    printf("%-8s %9s %9s %9s %9s %9s  %s\n", "", "(tokens)", "(/group)", "(%)", "(rel L2)", "(kept)", "(ms)");
    result res[8];
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        int rc = run(specs[i], &s, n, cap, &res[i]);
        char name[16];
        snprintf(name, sizeof name, "%s", specs[i]);
        name[strcspn(name, " ")] = 0;
        if (rc) {
            printf("%-8s failed: %s\n", name, kvc_strerror(rc));
            return 1;
        }
        char needles[16];
        snprintf(needles, sizeof needles, "%d/%d", res[i].needles_kept, res[i].needles_seen);
        printf("%-8s %9u %9llu %9.1f %9.3f %9s  %.1f\n", name, res[i].len, res[i].evictions,
               100.0 * res[i].mass_kept, res[i].out_err, needles, res[i].ms);
    }
    printf("\nresident positions (each cell = %d positions, ' ' none ... '@' all):\n", n / (n / 16 < 64 ? n / 16 : 64));
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        char name[16];
        snprintf(name, sizeof name, "%s", specs[i]);
        name[strcspn(name, " ")] = 0;
        printf("%-8s |%s|\n", name, res[i].map);
    }
    free(s.k);
    free(s.v);
    free(s.q);
    return 0;
}
