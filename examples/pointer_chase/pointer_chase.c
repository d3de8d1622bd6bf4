/* pointer_chase: the lab of Wang, "How Much Cache Does Reasoning Need?"
 * (arXiv 2604.17935). k-hop pointer chasing on n tokens with T = ceil(log2 k)
 * stages and s cached tokens per stage, under several cache controllers;
 * measured success against the closed forms derived in theory.c.
 *
 * Controllers:
 *   fresh   a uniform random s-subset drawn anew at every stage     (s/n)^T
 *   shared  one uniform random s-subset for all stages              see theory.c
 *   follow  a user-defined kvc_policy (follow.c) in a kvc_cache:
 *           keeps what its cached tokens point to                   s/n
 *   random, window, sink
 *           the library's built-in policies in a kvc_cache          -, fixed-set forms
 *
 * How a kvc_cache plays the stages (INDEX mode, or STORE with --mode store;
 * 1 head, head_dim 1, capacity s + 1): one cache per trial, one stream of T
 * passes. Pass t feeds
 * the n context tokens (positions (t-1)(n+1) + x, key x, value pi(x) + 1), then
 * the stage's query token (value 0). The extra slot is the query's own: after
 * the query is reserved, the context tokens still resident form C_t, always s
 * of them (stale copies from an earlier pass count: a token's content is the
 * same in every pass; random may hold fewer than s distinct ones, see below).
 *
 * What the built-ins become here: window holds {n-s..n-1} at every stage (no
 * z0 = 1 since s <= n-2); sink holds the first four positions of the stream,
 * i.e. addresses 0..3 (z0 among them), plus the latest, at every stage; both
 * are fixed sets chosen without reading pi, hence the exact forms of
 * theory.c. random evicts uniformly along the whole stream: its stage caches
 * lean to recent tokens and may spend slots on an earlier stage's query or on
 * a second copy of a token, and no closed form is claimed ("-").
 *
 * Output, one line per controller and setting:
 *   pc n=<n> s=<s> k=<k> T=<T> cache=<name> trials=<N> measured=<p>
 *      predicted=<p|-> ci95=[lo,hi] ok=<yes|no|->
 * (Wilson interval, named ci<level> under --level; ok = the prediction lies
 * inside it), then per setting
 *   sep ... adaptive/oblivious separation (follow over fresh) vs (n/s)^(T-1)
 * and a final summary line. Exit status: 0; 2 for a bad argument; 1 when a
 * library call fails or the closed forms contradict each other. Lines saying
 * ok=no do not change it: at 95% one right prediction in twenty misses. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <kvc.h>

#include "follow.h"
#include "theory.h"

#define DEFAULT_GRID "16:8:2,16:8:8,16:4:8,16:8:64,1024:16:8,1024:64:2,1024:64:8,1024:256:8,1024:256:64"
#define Z0 1u
/* kvc trials per setting are capped so that one controller streams about
 * this many token-slot visits (n+1 tokens x s+1 slots per pass). */
#define KVC_WORK 1.0e8

/* ------------------------------------------------------------------ rng */
/* splitmix64: small, fast, well mixed; the lab's only source of randomness */
typedef struct {
    uint64_t x;
} lab_rng;

static uint64_t rng_next(lab_rng *r) {
    uint64_t z = (r->x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform in [0, bound), bound >= 1, without modulo bias (multiply and reject) */
static uint32_t rng_below(lab_rng *r, uint32_t bound) {
    uint64_t m = (rng_next(r) >> 32) * bound;
    if ((uint32_t)m < bound) {
        uint32_t threshold = (uint32_t)(-bound) % bound;
        while ((uint32_t)m < threshold) m = (rng_next(r) >> 32) * bound;
    }
    return (uint32_t)(m >> 32);
}

/* ---------------------------------------------------------- controllers */
enum { C_FRESH, C_SHARED, C_FOLLOW, C_RANDOM, C_WINDOW, C_SINK, N_CTRL };
static const char *const ctrl_name[N_CTRL] = {"fresh", "shared", "follow", "random", "window", "sink"};

static const kvc_policy *ctrl_policy(int c) {
    switch (c) {
    case C_FOLLOW: return pc_policy_follow();
    case C_RANDOM: return kvc_policy_by_name("random");
    case C_WINDOW: return kvc_policy_by_name("window");
    case C_SINK: return kvc_policy_by_name("sink");
    default: return NULL; /* simulated directly, no cache */
    }
}

typedef struct {
    uint32_t n, s, k, T;
} setting;

typedef struct {
    uint32_t *pi;    /* the permutation of this trial */
    uint32_t *perm;  /* a permutation of [n] that subset draws shuffle in place */
    uint32_t *stamp; /* stamp[x] == now: x is in the cache being tested */
    uint32_t now;
    int64_t *pos;    /* slot -> position of a kvc_cache */
    uint32_t *z;     /* z_0..z_T */
} work;

static void new_stamp(work *w, uint32_t n) {
    if (++w->now == UINT32_MAX) {
        memset(w->stamp, 0, n * sizeof *w->stamp);
        w->now = 1;
    }
}

/* A uniform s-subset of [n] into the stamps: partial Fisher-Yates over perm,
 * which stays a permutation, so every draw is uniform whatever came before. */
static void draw_subset(work *w, lab_rng *r, uint32_t n, uint32_t s) {
    new_stamp(w, n);
    for (uint32_t i = 0; i < s; i++) {
        uint32_t j = i + rng_below(r, n - i), t = w->perm[i];
        w->perm[i] = w->perm[j];
        w->perm[j] = t;
        w->stamp[w->perm[i]] = w->now;
    }
}

static bool run_fresh(work *w, lab_rng *r, const setting *st) {
    for (uint32_t t = 1; t <= st->T; t++) {
        draw_subset(w, r, st->n, st->s);
        if (w->stamp[w->z[t]] != w->now) return false; /* later stages cannot change the outcome */
    }
    return true;
}

static bool run_shared(work *w, lab_rng *r, const setting *st) {
    draw_subset(w, r, st->n, st->s);
    for (uint32_t t = 1; t <= st->T; t++)
        if (w->stamp[w->z[t]] != w->now) return false;
    return true;
}

static void die_kvc(const char *what, int rc, const kvc_cache *c) {
    fprintf(stderr, "pointer_chase: %s: %s (%s)\n", what, kvc_strerror(rc), c ? kvc_cache_last_error(c) : "");
    exit(1);
}

/* One trial of a library cache as the controller (see the top comment). In
 * STORE mode the cache keeps the synthetic K/V itself; the residents, and so
 * every result, must be the same as in INDEX mode. */
static bool run_cache(work *w, const kvc_policy *pol, uint64_t seed, const setting *st, kvc_mode mode) {
    uint32_t n = st->n, cap = st->s + 1, slot;
    kvc_cache *c;
    int rc = kvc_cache_create(&c, 1, 1, 1, cap, KVC_DTYPE_F32, mode, pol, NULL);
    if (rc) die_kvc("kvc_cache_create", rc, NULL);
    if ((rc = kvc_cache_set(c, KVC_OPT_SEED, (int64_t)(seed >> 1)))) die_kvc("kvc_cache_set(seed)", rc, c);
    bool held = true;
    for (uint32_t t = 1; t <= st->T && held; t++) {
        int64_t base = (int64_t)(t - 1) * (n + 1);
        for (uint32_t x = 0; x <= n; x++) {
            float key = x < n ? (float)x : 0.0f, value = x < n ? (float)w->pi[x] + 1.0f : 0.0f;
            rc = mode == KVC_MODE_INDEX ? kvc_cache_reserve(c, base + x, &key, &value, &slot, NULL)
                                        : kvc_cache_append(c, base + x, &key, &value);
            if (rc) die_kvc(mode == KVC_MODE_INDEX ? "kvc_cache_reserve" : "kvc_cache_append", rc, c);
        }
        if ((rc = kvc_cache_positions(c, 0, w->pos))) die_kvc("kvc_cache_positions", rc, c);
        new_stamp(w, n);
        uint32_t context = 0;
        for (uint32_t i = 0; i < cap; i++) {
            if (w->pos[i] < 0) continue;
            uint32_t addr = (uint32_t)(w->pos[i] % (n + 1));
            if (addr < n) {
                w->stamp[addr] = w->now;
                context++;
            }
        }
        /* random may also keep an earlier query, or a token twice; the others hold exactly s */
        if (context > st->s || (context < st->s && pol != kvc_policy_random())) {
            fprintf(stderr, "pointer_chase: policy '%s' left %u context tokens at stage %u, expected %u\n",
                    pol->name, context, t, st->s);
            exit(1);
        }
        held = w->stamp[w->z[t]] == w->now;
    }
    kvc_cache_destroy(c);
    return held;
}

/* --------------------------------------------------------------- output */
typedef struct {
    double level, z, scale;
    bool guess;
    kvc_mode mode;
    unsigned lines, predicted, inside;
} report;

static void print_interval_line(report *rp, const setting *st, const char *name, uint64_t N, uint64_t x,
                                double pred) {
    double lo, hi, p = N ? (double)x / N : 0.0;
    pc_wilson(x, N, rp->z, &lo, &hi);
    printf("pc n=%u s=%u k=%u T=%u cache=%s trials=%llu measured=%.6g predicted=", st->n, st->s, st->k, st->T, name,
           (unsigned long long)N, p);
    if (isnan(pred))
        printf("-");
    else
        printf("%.6g", pred);
    printf(" ci%g=[%.6g,%.6g] ok=", rp->level * 100.0, lo, hi);
    rp->lines++;
    if (isnan(pred)) {
        printf("-\n");
        return;
    }
    bool ok = lo <= pred && pred <= hi;
    rp->predicted++;
    rp->inside += ok;
    printf("%s\n", ok ? "yes" : "no");
}

/* follow / fresh with a conservative interval: each rate's Wilson interval
 * at level 1 - alpha/2 (Bonferroni), then the extreme ratios. */
static void print_separation(report *rp, const setting *st, uint64_t Na, uint64_t xa, double pa, uint64_t No,
                             uint64_t xo, double po) {
    double z = pc_z_for_level(1.0 - (1.0 - rp->level) / 2.0), alo, ahi, olo, ohi;
    pc_wilson(xa, Na, z, &alo, &ahi);
    pc_wilson(xo, No, z, &olo, &ohi);
    double ma = (double)xa / Na, mo = (double)xo / No, pred = pa / po, lo = alo / ohi;
    printf("sep n=%u s=%u k=%u T=%u adaptive=follow oblivious=fresh measured=", st->n, st->s, st->k, st->T);
    if (mo > 0)
        printf("%.6g", ma / mo);
    else
        printf("%s", ma > 0 ? "inf" : "-"); /* no success of either: no ratio to show */
    printf(" predicted=%.6g ci%g=[%.6g,", pred, rp->level * 100.0, lo);
    if (olo > 0)
        printf("%.6g]", ahi / olo);
    else
        printf("inf]");
    bool ok = lo <= pred && (olo <= 0 || pred <= ahi / olo);
    rp->lines++;
    rp->predicted++;
    rp->inside += ok;
    printf(" ok=%s (n/s)^(T-1)=%.6g\n", ok ? "yes" : "no", pow((double)st->n / st->s, st->T - 1));
}

/* ----------------------------------------------------------------- runs */
static void run_setting(const setting *st, uint64_t trials, uint64_t kvc_trials_opt, uint64_t seed, report *rp) {
    uint32_t n = st->n, s = st->s, T = st->T;
    /* two derivations of the shared-cache rate must agree (theory.c) */
    double shared = pc_shared(n, s, T),
           mix = (double)s / n * pc_fixed_with_start(n, s, T) + (1.0 - (double)s / n) * pc_fixed_without_start(n, s, T);
    if (fabs(shared - mix) > 1e-12 * (shared > 1e-300 ? shared : 1.0) && fabs(shared - mix) > 1e-300) {
        fprintf(stderr, "pointer_chase: shared-cache forms disagree at n=%u s=%u T=%u: %.17g vs %.17g\n", n, s, T,
                shared, mix);
        exit(1);
    }
    double pred[N_CTRL];
    pred[C_FRESH] = pc_fresh(n, s, T);
    pred[C_SHARED] = shared;
    pred[C_FOLLOW] = pc_adaptive(n, s);
    pred[C_RANDOM] = NAN;
    pred[C_WINDOW] = pc_fixed_without_start(n, s, T);
    pred[C_SINK] = pc_fixed_with_start(n, s, T);
    for (int c = 0; c < N_CTRL; c++) {
        if (rp->guess && !isnan(pred[c])) pred[c] = pc_with_guess(pred[c], n);
        pred[c] *= rp->scale;
    }
    bool use[N_CTRL];
    for (int c = 0; c < N_CTRL; c++) use[c] = true;
    use[C_SINK] = s >= 4; /* four sinks plus one evictable slot must fit in s + 1 */

    uint64_t kvc_trials = kvc_trials_opt;
    if (!kvc_trials) {
        double cap = KVC_WORK / ((double)(n + 1) * (s + 1));
        kvc_trials = cap < 100 ? 100 : (uint64_t)cap;
    }
    if (kvc_trials > trials) kvc_trials = trials;

    work w = {0};
    w.pi = malloc(n * sizeof *w.pi);
    w.perm = malloc(n * sizeof *w.perm);
    w.stamp = calloc(n, sizeof *w.stamp);
    w.pos = malloc((s + 1) * sizeof *w.pos);
    w.z = malloc((T + 1) * sizeof *w.z);
    if (!w.pi || !w.perm || !w.stamp || !w.pos || !w.z) {
        fprintf(stderr, "pointer_chase: out of memory\n");
        exit(1);
    }
    for (uint32_t i = 0; i < n; i++) w.pi[i] = w.perm[i] = i;

    /* Every controller draws its own permutations from its own stream, keyed
     * by the seed, the setting and the controller: lines are independent
     * experiments, and none depends on which other settings or controllers run. */
    uint64_t wins[N_CTRL] = {0}, runs[N_CTRL] = {0};
    clock_t t0 = clock();
    for (int c = 0; c < N_CTRL; c++) {
        if (!use[c]) continue;
        lab_rng key = {((uint64_t)n << 40) ^ ((uint64_t)s << 20) ^ st->k ^ ((uint64_t)c << 60) ^
                       ((uint64_t)rp->guess << 63)};
        lab_rng r = {seed ^ rng_next(&key)};
        runs[c] = c == C_FRESH || c == C_SHARED ? trials : kvc_trials;
        for (uint64_t i = 0; i < runs[c]; i++) {
            for (uint32_t j = n; j-- > 1;) { /* Fisher-Yates: a uniform pi */
                uint32_t m = rng_below(&r, j + 1), t = w.pi[j];
                w.pi[j] = w.pi[m];
                w.pi[m] = t;
            }
            w.z[0] = Z0;
            for (uint32_t t = 1; t <= T; t++) w.z[t] = w.pi[w.z[t - 1]];
            bool held = c == C_FRESH    ? run_fresh(&w, &r, st)
                        : c == C_SHARED ? run_shared(&w, &r, st)
                                        : run_cache(&w, ctrl_policy(c), rng_next(&r), st, rp->mode);
            if (!held && rp->guess) {
                uint32_t answer = Z0; /* z_k */
                for (uint32_t h = 0; h < st->k; h++) answer = w.pi[answer];
                held = rng_below(&r, n) == answer;
            }
            wins[c] += held;
        }
    }
    for (int c = 0; c < N_CTRL; c++)
        if (use[c]) print_interval_line(rp, st, ctrl_name[c], runs[c], wins[c], pred[c]);
    print_separation(rp, st, runs[C_FOLLOW], wins[C_FOLLOW], pred[C_FOLLOW], runs[C_FRESH], wins[C_FRESH],
                     pred[C_FRESH]);
    fflush(stdout);
    fprintf(stderr, "pointer_chase: n=%u s=%u k=%u done in %.2f s\n", n, s, st->k,
            (double)(clock() - t0) / CLOCKS_PER_SEC);
    free(w.pi);
    free(w.perm);
    free(w.stamp);
    free(w.pos);
    free(w.z);
}

static uint32_t ceil_log2(uint32_t k) {
    uint32_t T = 0;
    while (T < 32 && ((uint64_t)1 << T) < k) T++;
    return T;
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
    char *end;
    if (!s || !*s || *s == '-') return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* "n:s:k,n:s:k,..." -> settings; returns their count or -1 with a message. */
static int parse_grid(const char *text, setting *out, int max) {
    int count = 0;
    const char *p = text;
    while (*p) {
        unsigned long n, s, k;
        int used = 0;
        if (count == max) {
            fprintf(stderr, "pointer_chase: at most %d settings in --grid\n", max);
            return -1;
        }
        if (sscanf(p, "%lu:%lu:%lu%n", &n, &s, &k, &used) != 3 || (p[used] && p[used] != ',')) {
            fprintf(stderr, "pointer_chase: bad --grid entry at '%s' (want n:s:k,...)\n", p);
            return -1;
        }
        if (n < 4 || n > (1ul << 20) || s < 1 || s + 2 > n || k < 2 || k > (1ul << 24)) {
            fprintf(stderr,
                    "pointer_chase: bad setting n=%lu s=%lu k=%lu: need 4 <= n <= 2^20, 1 <= s <= n-2, "
                    "2 <= k <= 2^24\n",
                    n, s, k);
            return -1;
        }
        out[count++] = (setting){(uint32_t)n, (uint32_t)s, (uint32_t)k, ceil_log2((uint32_t)k)};
        p += used;
        if (*p == ',') p++;
    }
    if (!count) fprintf(stderr, "pointer_chase: empty --grid\n");
    return count ? count : -1;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: pointer_chase [options]\n"
            "  --trials N        trials per setting for every controller (default 200000)\n"
            "  --kvc-trials N    cap for the kvc_cache controllers (default: about %.0g token-slot\n"
            "                    visits per controller and setting, at least 100)\n"
            "  --seed S          seed (default 1); same seed, same output\n"
            "  --grid LIST       settings n:s:k,... (default " DEFAULT_GRID ")\n"
            "  --guess           a lost chain ends in a uniform guess (predictions p + (1-p)/n)\n"
            "  --mode M          index (default) or store: how the kvc_cache controllers run\n"
            "  --level L         confidence level of the intervals in percent (default 95)\n"
            "  --scale-predicted X  multiply every prediction by X (to see wrong ones fail)\n",
            KVC_WORK);
}

int main(int argc, char **argv) {
    uint64_t trials = 200000, kvc_trials = 0, seed = 1;
    const char *grid = DEFAULT_GRID;
    report rp = {.level = 0.95, .scale = 1.0, .mode = KVC_MODE_INDEX};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t u;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--guess")) {
            rp.guess = true;
            continue;
        } else if (!v) {
            fprintf(stderr, "pointer_chase: %s needs a value\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(a, "--trials") && !parse_u64(v, 1, 1000000000000ull, &u))
            trials = u;
        else if (!strcmp(a, "--kvc-trials") && !parse_u64(v, 1, 1000000000000ull, &u))
            kvc_trials = u;
        else if (!strcmp(a, "--seed") && !parse_u64(v, 0, UINT64_MAX, &u))
            seed = u;
        else if (!strcmp(a, "--grid"))
            grid = v;
        else if (!strcmp(a, "--mode") && (!strcmp(v, "index") || !strcmp(v, "store")))
            rp.mode = v[0] == 'i' ? KVC_MODE_INDEX : KVC_MODE_STORE;
        else if (!strcmp(a, "--level") || !strcmp(a, "--scale-predicted")) {
            char *end;
            double x = strtod(v, &end);
            bool level = a[2] == 'l';
            if (*end || !(level ? x > 0 && x < 100 : x > 0 && x < 1e6)) {
                fprintf(stderr, "pointer_chase: bad value for %s: '%s'\n", a, v);
                return 2;
            }
            if (level)
                rp.level = x / 100.0;
            else
                rp.scale = x;
        } else {
            fprintf(stderr, "pointer_chase: unknown option or bad value: %s %s\n", a, v);
            usage(stderr);
            return 2;
        }
    }
    enum { MAX_SETTINGS = 64 };
    setting set[MAX_SETTINGS];
    int count = parse_grid(grid, set, MAX_SETTINGS);
    if (count < 0) return 2;
    rp.z = pc_z_for_level(rp.level);
    for (int i = 0; i < count; i++) run_setting(&set[i], trials, kvc_trials, seed, &rp);
    /* each interval misses a right prediction with probability 1 - level (the sep intervals less often) */
    printf("summary settings=%d lines=%u predicted=%u inside=%u outside=%u expected_outside<=%.1f level=%g seed=%llu "
           "guess=%s mode=%s\n",
           count, rp.lines, rp.predicted, rp.inside, rp.predicted - rp.inside, (1.0 - rp.level) * rp.predicted,
           rp.level * 100.0, (unsigned long long)seed, rp.guess ? "on" : "off",
           rp.mode == KVC_MODE_INDEX ? "index" : "store");
    return 0;
}
