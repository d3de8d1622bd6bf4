/* Property tests: every built-in policy against its reference model
 * (ref_model.c) on random traces, in both modes, both scopes, GQA 1/2/4,
 * chunk 1..64, block 1..4. The model learns nothing from the library except
 * where the library is free to choose (which slot a token lands in, after
 * checking that choice against the contract); every eviction of every group
 * is checked against the policy's rule. */
#include <stdlib.h>

#include "kvc.h"
#include "ref_model.h"
#include "ref_prefill.h"
#include "test.h"

static uint32_t below(uint64_t *s, uint32_t n) { return (uint32_t)(kvt_unif(s) * n); }

typedef struct {
    uint32_t n_kv, n_q, d, cap, sink, recent, chunk, block;
    int steps;
} variant;

/* Shapes chosen to cover GQA 1/2/4, chunk 1..64, block 1/2/4, tiny and odd sizes. */
static const variant variants[] = {
    {2, 2, 4, 16, 2, 3, 1, 1, 100},   /* GQA 1 */
    {2, 4, 8, 24, 0, 0, 3, 1, 100},   /* GQA 2, nothing protected, chunk 3 */
    {1, 4, 4, 96, 4, 8, 64, 1, 230},  /* GQA 4, chunk 64 */
    {4, 8, 4, 32, 3, 5, 2, 4, 120},   /* block 4 */
    {2, 4, 4, 160, 4, 6, 64, 2, 300}, /* chunk 64, block 2 */
    {3, 3, 5, 9, 1, 2, 1, 1, 80},     /* odd sizes */
    {1, 1, 3, 5, 0, 1, 1, 1, 60},     /* tiny */
};
#define N_VARIANTS (sizeof variants / sizeof variants[0])

typedef struct {
    const char *policy;
    ref_rule rule;
    int lifetime;
    kvc_mode mode;
    int shared;
    variant v;
    uint64_t seed, trace;
    uint32_t pool;
    float scale; /* 0: the default 1/sqrt(head_dim) */
    int mutant;  /* the model applies this wrong rule (REF_MUT_*) and the run must catch it */
    /* a compressed prefill before decoding (block 1 only: the model's units are insertion-aligned) */
    uint32_t prefill_n, prefill_w; /* prompt tokens (0: none), observation window */
    int64_t protect;
    uint32_t kernel; /* snapkv pooling */
    int avgpool;
} run_cfg;

typedef struct {
    uint64_t events, exact, tolerated, skipped, evicted_tokens, attends;
    uint64_t hash;
    int failed;
    int rejected; /* a mutant run: the check caught the wrong rule */
} run_out;

/* Parameters of the new rules as the matrix sets them (variant-dependent, so
 * both the reference defaults and other values are covered). */
static double rkv_lambda(uint32_t cap) { return cap % 2 ? 0.1 : 0.6; }
static uint32_t scissor_history(uint32_t cap) { return 3 + cap % 7; }

static void describe(const run_cfg *r, char *buf, size_t n) {
    snprintf(buf, n, "%s%s %s %s kv=%u q=%u d=%u cap=%u sink=%u recent=%u chunk=%u block=%u seed=%llu",
             r->policy, r->lifetime ? "(lifetime)" : "", r->mode == KVC_MODE_STORE ? "STORE" : "INDEX",
             r->shared ? "shared" : "head", r->v.n_kv, r->v.n_q, r->v.d, r->v.cap, r->v.sink, r->v.recent,
             r->v.chunk, r->v.block, (unsigned long long)r->seed);
}

static kvc_cache *make_cache(const run_cfg *r) {
    kvc_cache *c = NULL;
    const variant *v = &r->v;
    int rc = kvc_cache_create(&c, v->n_kv, v->n_q, v->d, v->cap, KVC_DTYPE_F32, r->mode,
                              kvc_policy_by_name(r->policy), NULL);
    if (rc) return NULL;
    rc |= kvc_cache_set(c, KVC_OPT_SCOPE, r->shared ? KVC_SCOPE_SHARED : KVC_SCOPE_HEAD);
    rc |= kvc_cache_set(c, KVC_OPT_SINK, v->sink);
    rc |= kvc_cache_set(c, KVC_OPT_RECENT, v->recent);
    rc |= kvc_cache_set(c, KVC_OPT_CHUNK, v->chunk);
    rc |= kvc_cache_set(c, KVC_OPT_BLOCK, v->block);
    rc |= kvc_cache_set(c, KVC_OPT_SEED, (int64_t)r->seed);
    if (r->rule == REF_H2O) rc |= kvc_cache_set_param(c, "norm", r->lifetime ? 1 : 0);
    rc |= kvc_cache_set(c, KVC_OPT_PROTECT, r->protect);
    rc |= kvc_cache_set(c, KVC_OPT_PREFILL_MAX, r->prefill_n);
    if (r->rule == REF_SNAPKV) {
        rc |= kvc_cache_set(c, KVC_OPT_QUERY_WINDOW, 4);
        rc |= kvc_cache_set_param(c, "kernel", r->kernel);
        rc |= kvc_cache_set_param(c, "pool", r->avgpool);
    }
    if (r->rule == REF_VASE) {
        rc |= kvc_cache_set(c, KVC_OPT_QUERY_WINDOW, 4);
        rc |= kvc_cache_set_param(c, "reserve", 0.25);
        rc |= kvc_cache_set_param(c, "pool", r->pool);
    }
    if (r->rule == REF_RKV) {
        rc |= kvc_cache_set_param(c, "lambda", rkv_lambda(v->cap));
        rc |= kvc_cache_set_param(c, "threshold", 0.5);
        rc |= kvc_cache_set_param(c, "pool", r->pool);
    }
    if (r->rule == REF_SCISSOR) rc |= kvc_cache_set_param(c, "history", scissor_history(v->cap));
    if (r->scale > 0) rc |= kvc_cache_set_scale(c, r->scale);
    if (rc) {
        kvc_cache_destroy(c);
        return NULL;
    }
    return c;
}

static uint64_t hash_step(uint64_t h, uint64_t x) {
    h ^= x + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h;
}

/* Convert the positions evicted from group g into unit ids, checking that
 * whole units went. Returns the number of units or -1 (with a message). */
static int to_units(const ref_model *m, uint32_t g, const int64_t *ev, uint32_t n_ev, uint64_t *units, char *why,
                    size_t wn) {
    uint32_t B = m->c.block, nu = 0;
    static uint32_t count[REF_MAXCAP];
    for (uint32_t i = 0; i < n_ev; i++) {
        int at = ref_find(m, g, ev[i]);
        if (at < 0) {
            snprintf(why, wn, "evicted position %lld was not resident", (long long)ev[i]);
            return -1;
        }
        uint64_t u = m->tok[g][at].seq / B;
        uint32_t j = 0;
        while (j < nu && units[j] != u) j++;
        if (j == nu) {
            units[nu] = u;
            count[nu++] = 0;
        }
        count[j]++;
    }
    for (uint32_t j = 0; j < nu; j++)
        if (count[j] != B) {
            snprintf(why, wn, "unit %llu lost %u of its %u tokens", (unsigned long long)units[j], count[j], B);
            return -1;
        }
    return (int)nu;
}

/* Prefill the cache with a random prompt of r->prefill_n tokens (positions 0..n-1), check every
 * group's kept set against the prefill rule and load it into the model. 0 on success. */
static int prefill_phase(kvc_cache *c, ref_model *m, const run_cfg *r, uint64_t *rs, int64_t *after, char *why,
                         size_t wn) {
    const variant *v = &r->v;
    uint32_t n = r->prefill_n, w = r->prefill_w, G = m->groups, cap = v->cap, ok = 1;
    size_t kvn = (size_t)n * v->n_kv * v->d;
    float *k = malloc(kvn * sizeof *k), *val = malloc(kvn * sizeof *val);
    float *q = malloc(((size_t)w * v->n_q * v->d + 1) * sizeof *q), *sc = malloc((size_t)G * n * sizeof *sc);
    double *dsc = malloc((size_t)G * n * sizeof *dsc);
    uint32_t *keep = malloc((size_t)G * cap * sizeof *keep), *kept[REF_MAXG];
    const double *gsc[REF_MAXG];
    if (!k || !val || !q || !sc || !dsc || !keep) {
        snprintf(why, wn, "out of memory");
        ok = 0;
        goto out;
    }
    for (size_t i = 0; i < kvn; i++) {
        k[i] = (float)(4 * kvt_unif(rs) - 2);
        val[i] = (float)(2 * kvt_unif(rs) - 1);
    }
    for (size_t i = 0; i < (size_t)w * v->n_q * v->d; i++) q[i] = (float)(4 * kvt_unif(rs) - 2);
    for (size_t i = 0; i < (size_t)G * n; i++) dsc[i] = sc[i] = (float)below(rs, 16) / 16;
    ref_prompt p = {0, n, w, k, val, q};
    int e;
    if (r->mode == KVC_MODE_STORE) {
        e = kvc_cache_prefill(c, 0, n, k, val, w ? q : NULL, w);
        for (uint32_t g = 0; g < G; g++) ref_prefill_scores(&m->c, g, &p, dsc + (size_t)g * n);
    } else {
        e = kvc_cache_prefill_index(c, 0, n, k, val, sc, w, keep);
    }
    if (e) {
        snprintf(why, wn, "%s (%s)", kvc_strerror(e), kvc_cache_last_error(c));
        ok = 0;
        goto out;
    }
    uint32_t len = kvc_cache_len(c);
    int scored = r->mode == KVC_MODE_INDEX || w > 0;
    for (uint32_t g = 0; g < G && ok; g++) {
        int64_t *a = after + (size_t)g * cap;
        kvc_cache_positions(c, g, a);
        kept[g] = keep + (size_t)g * cap;
        for (uint32_t s = 0; s < len; s++) kept[g][s] = (uint32_t)a[s];
        gsc[g] = scored ? dsc + (size_t)g * n : NULL;
        ref_verdict vd = ref_prefill_check(&m->c, g, &p, gsc[g], kept[g], len, r->mode == KVC_MODE_STORE ? 1e-4 : 0);
        if (!vd.ok) {
            snprintf(why, wn, "group %u: %.180s", g, vd.why);
            ok = 0;
        }
    }
    if (ok) ref_prefill_load(m, &p, (const uint32_t *const *)kept, len, scored ? gsc : NULL);
out:
    free(k), free(val), free(q), free(sc), free(dsc), free(keep);
    return !ok;
}

#define RUN_FAIL(...)                                                                                \
    do {                                                                                             \
        char d_[256];                                                                                \
        describe(r, d_, sizeof d_);                                                                  \
        kvt_fail(__FILE__, __LINE__, "[%s] step %d: ", d_, t);                                        \
        printf("        ");                                                                          \
        printf(__VA_ARGS__);                                                                         \
        printf("\n");                                                                                \
        o->failed = 1;                                                                               \
        goto done;                                                                                   \
    } while (0)

/* Drive the library and the model through one random trace. */
static void run(const run_cfg *r, double tol, run_out *o) {
    memset(o, 0, sizeof *o);
    const variant *v = &r->v;
    int t = -1;
    kvc_cache *c = make_cache(r);
    ref_model *m = calloc(1, sizeof *m);
    uint32_t G = r->shared ? 1 : v->n_kv, cap = v->cap, maxev = v->chunk * v->block;
    size_t maxpos = (size_t)v->steps * 3 + 3;
    int64_t *before = malloc(sizeof(int64_t) * G * cap), *after = malloc(sizeof(int64_t) * G * cap);
    int64_t *evicted = malloc(sizeof(int64_t) * G * maxev), ev[REF_MAXCAP];
    int32_t *slot_of = malloc(sizeof(int32_t) * maxpos);
    uint64_t units[REF_MAXCAP];
    float k[REF_MAXKV * REF_MAXD], val[REF_MAXKV * REF_MAXD], q[REF_MAXQ * REF_MAXD], out[REF_MAXQ * REF_MAXD];
    float mass[REF_MAXCAP];
    uint32_t slots[REF_MAXG];
    uint64_t rs = r->trace;
    if (!c || !m || !before || !after || !evicted || !slot_of) {
        kvt_fail(__FILE__, __LINE__, "setup failed for %s", r->policy);
        o->failed = 1;
        goto done;
    }
    ref_cfg rc = {r->rule, v->n_kv, v->n_q, v->d, cap, r->shared, r->mode == KVC_MODE_INDEX,
                  v->sink, v->recent, v->chunk, v->block, r->lifetime, 0.25, r->pool,
                  r->rule == REF_VASE || r->rule == REF_SNAPKV ? 4 : r->rule == REF_RKV ? 8 : 0,
                  r->scale > 0 ? r->scale : (double)(1.0f / sqrtf((float)v->d)),
                  rkv_lambda(cap), 0.5, scissor_history(cap), r->mutant, r->protect, r->kernel, r->avgpool};
    ref_init(m, &rc);
    for (size_t i = 0; i < maxpos; i++) slot_of[i] = -1;
    for (size_t i = 0; i < (size_t)G * cap; i++) after[i] = -1;
    int stats_needed = r->rule == REF_KNORM || r->rule == REF_VATP || r->rule == REF_VASE ||
                       r->rule == REF_KEYDIFF || r->rule == REF_RKV || r->rule == REF_VASE_DKV;
    int stochastic = r->rule == REF_RANDOM || r->rule == REF_VASE || r->rule == REF_KEYFORMER ||
                     r->rule == REF_VASE_DKV;
    int64_t pos = -1;
    if (r->prefill_n) {
        char why[200];
        if (prefill_phase(c, m, r, &rs, after, why, sizeof why)) RUN_FAIL("prefill: %s", why);
        pos = (int64_t)r->prefill_n - 1;
        o->evicted_tokens += (uint64_t)G * (r->prefill_n - m->n[0]);
    }
    for (t = 0; t < v->steps; t++) {
        pos += 1 + below(&rs, 3);
        for (uint32_t i = 0; i < v->n_kv * v->d; i++) {
            k[i] = (float)(2 * kvt_unif(&rs) - 1);
            val[i] = (float)(2 * kvt_unif(&rs) - 1);
        }
        int full_before = ref_full(m);
        if (r->mode == KVC_MODE_STORE) {
            memcpy(before, after, sizeof(int64_t) * G * cap);
            int rc2 = kvc_cache_append(c, pos, k, val);
            if (rc2) RUN_FAIL("append: %s (%s)", kvc_strerror(rc2), kvc_cache_last_error(c));
            uint32_t len = kvc_cache_len(c);
            for (uint32_t g = 0; g < G; g++) {
                int64_t *b = before + (size_t)g * cap, *a = after + (size_t)g * cap;
                kvc_cache_positions(c, g, a);
                for (uint32_t s = 0; s < cap; s++) {
                    if ((s < len) != (a[s] >= 0)) RUN_FAIL("group %u not dense: slot %u of len %u holds %lld", g, s, len, (long long)a[s]);
                    if (a[s] >= 0) slot_of[a[s]] = (int32_t)s;
                }
                if (len == 0 || a[len - 1] != pos) RUN_FAIL("group %u: new token not in the last slot", g);
                uint32_t n_ev = 0;
                for (uint32_t s = 0; s < cap; s++)
                    if (b[s] >= 0 && slot_of[b[s]] < 0) ev[n_ev++] = b[s];
                if (!full_before && n_ev) RUN_FAIL("group %u evicted %u tokens while not full", g, n_ev);
                if (full_before) {
                    char why[200];
                    int nu = to_units(m, g, ev, n_ev, units, why, sizeof why);
                    if (nu < 0) RUN_FAIL("group %u: %s", g, why);
                    ref_verdict vd = ref_check(m, g, units, (uint32_t)nu, tol);
                    if (!vd.ok && r->mutant) {
                        o->rejected = 1;
                        goto done;
                    }
                    if (!vd.ok) RUN_FAIL("group %u: %s", g, vd.why);
                    o->events++;
                    o->exact += (uint64_t)vd.exact;
                    o->tolerated += (uint64_t)(!vd.exact && !stochastic);
                    o->skipped += (uint64_t)vd.skipped;
                    o->evicted_tokens += n_ev;
                    for (uint32_t i = 0; i < n_ev; i++) o->hash = hash_step(o->hash, (uint64_t)ev[i] * 8 + g);
                    ref_evict(m, g, units, (uint32_t)nu);
                }
                /* an eviction refills holes only from the tail: residents below the new length stay */
                for (uint32_t s = 0; s + 1 < len; s++)
                    if (b[s] >= 0 && slot_of[b[s]] >= 0 && a[s] != b[s])
                        RUN_FAIL("group %u: slot %u changed from %lld to %lld although below the new length %u", g,
                                 s, (long long)b[s], (long long)a[s], len);
                for (uint32_t s = 0; s < cap; s++)
                    if (a[s] >= 0) slot_of[a[s]] = -1;
            }
            ref_insert(m, pos, k, val, NULL);
            for (uint32_t g = 0; g < G; g++) {
                const int64_t *a = after + (size_t)g * cap;
                if (m->n[g] != len) RUN_FAIL("group %u holds %u tokens, the model %u", g, len, m->n[g]);
                for (uint32_t s = 0; s < len; s++) {
                    int at = ref_find(m, g, a[s]);
                    if (at < 0) RUN_FAIL("group %u: position %lld resident in the library only", g, (long long)a[s]);
                    m->tok[g][at].slot = (int32_t)s;
                }
            }
            static const uint32_t n_attends[] = {0, 1, 1, 2, 0}; /* 0..2 attends between appends */
            uint32_t n_att = n_attends[below(&rs, 5)];
            for (uint32_t i = 0; i < n_att; i++) {
                for (uint32_t e = 0; e < v->n_q * v->d; e++) q[e] = (float)(4 * kvt_unif(&rs) - 2);
                int rc3 = kvc_cache_attend(c, q, out);
                if (rc3) RUN_FAIL("attend: %s", kvc_strerror(rc3));
                ref_attend(m, q);
                o->attends++;
            }
        } else {
            /* observations: 0, 1, 2 or 4 calls per group (averages stay exact), dyadic masses */
            static const uint32_t ncalls[] = {0, 1, 1, 2, 4};
            int any = 0;
            for (uint32_t g = 0; g < G; g++) {
                uint32_t calls = ncalls[below(&rs, 5)];
                for (uint32_t call = 0; call < calls; call++) {
                    uint32_t n = below(&rs, 4) == 0 ? below(&rs, cap + 1) : cap;
                    for (uint32_t s = 0; s < n; s++) mass[s] = below(&rs, 4) == 0 ? 0.0f : (float)below(&rs, 16) / 16;
                    int rc3 = kvc_cache_observe(c, g, mass, n);
                    if (rc3) RUN_FAIL("observe: %s", kvc_strerror(rc3));
                    ref_observe(m, g, mass, n);
                    any |= m->n[g] > 0;
                }
            }
            o->attends += (uint64_t)any;
            int pass_kv = stats_needed || below(&rs, 2), want_list = below(&rs, 8) != 0;
            int rc2 = kvc_cache_reserve(c, pos, pass_kv ? k : NULL, pass_kv ? val : NULL, slots,
                                        want_list ? evicted : NULL);
            if (rc2) RUN_FAIL("reserve: %s (%s)", kvc_strerror(rc2), kvc_cache_last_error(c));
            ref_flush(m);
            for (uint32_t g = 0; g < G; g++) {
                /* victims: what left the slot map */
                const int64_t *b = after + (size_t)g * cap;
                int64_t now[REF_MAXCAP];
                uint32_t n_ev = 0;
                kvc_cache_positions(c, g, now);
                for (uint32_t s = 0; s < cap; s++)
                    if (now[s] >= 0) slot_of[now[s]] = (int32_t)s;
                for (uint32_t s = 0; s < cap; s++)
                    if (b[s] >= 0 && slot_of[b[s]] < 0) ev[n_ev++] = b[s];
                for (uint32_t s = 0; s < cap; s++)
                    if (now[s] >= 0) slot_of[now[s]] = -1;
                if (want_list) {
                    /* the evicted list: the same positions, then -1 padding */
                    const int64_t *e = evicted + (size_t)g * maxev;
                    for (uint32_t i = 0; i < maxev; i++) {
                        int ok = i >= n_ev ? e[i] == -1 : 0;
                        for (uint32_t j = 0; j < n_ev && i < n_ev; j++) ok |= e[i] == ev[j];
                        for (uint32_t j = 0; j < i && i < n_ev; j++) ok &= e[j] != e[i];
                        if (!ok)
                            RUN_FAIL("group %u: evicted[%u] = %lld is not %s", g, i, (long long)e[i],
                                     i < n_ev ? "a distinct removed position" : "-1 padding");
                    }
                }
                if (!full_before && n_ev) RUN_FAIL("group %u evicted %u tokens while not full", g, n_ev);
                if (full_before) {
                    char why[200];
                    int nu = to_units(m, g, ev, n_ev, units, why, sizeof why);
                    if (nu < 0) RUN_FAIL("group %u: %s", g, why);
                    ref_verdict vd = ref_check(m, g, units, (uint32_t)nu, tol);
                    if (!vd.ok && r->mutant) {
                        o->rejected = 1;
                        goto done;
                    }
                    if (!vd.ok) RUN_FAIL("group %u: %s", g, vd.why);
                    o->events++;
                    o->exact += (uint64_t)vd.exact;
                    o->tolerated += (uint64_t)(!vd.exact && !stochastic);
                    o->skipped += (uint64_t)vd.skipped;
                    o->evicted_tokens += n_ev;
                    for (uint32_t i = 0; i < n_ev; i++) o->hash = hash_step(o->hash, (uint64_t)ev[i] * 8 + g);
                    ref_evict(m, g, units, (uint32_t)nu);
                }
                if (slots[g] >= cap) RUN_FAIL("group %u: slot %u out of range", g, slots[g]);
                for (uint32_t i = 0; i < m->n[g]; i++)
                    if (m->tok[g][i].slot == (int32_t)slots[g])
                        RUN_FAIL("group %u: slot %u handed out while position %lld lives there", g, slots[g],
                                 (long long)m->tok[g][i].pos);
            }
            ref_insert(m, pos, k, val, slots);
            for (uint32_t g = 0; g < G; g++) {
                int64_t *a = after + (size_t)g * cap, want[REF_MAXCAP];
                kvc_cache_positions(c, g, a);
                for (uint32_t s = 0; s < cap; s++) want[s] = -1;
                for (uint32_t i = 0; i < m->n[g]; i++) want[m->tok[g][i].slot] = m->tok[g][i].pos;
                for (uint32_t s = 0; s < cap; s++)
                    if (a[s] != want[s])
                        RUN_FAIL("group %u slot %u holds %lld, the model says %lld", g, s, (long long)a[s],
                                 (long long)want[s]);
            }
        }
    }
    {
        kvc_stats st;
        kvc_cache_stats(c, &st);
        if (st.appends != (uint64_t)v->steps + r->prefill_n || st.evictions != o->evicted_tokens ||
            st.attends != o->attends)
            RUN_FAIL("stats appends %llu evictions %llu attends %llu, expected %d %llu %llu",
                     (unsigned long long)st.appends, (unsigned long long)st.evictions,
                     (unsigned long long)st.attends, v->steps, (unsigned long long)o->evicted_tokens,
                     (unsigned long long)o->attends);
    }
done:
    kvc_cache_destroy(c);
    free(m);
    free(before);
    free(after);
    free(evicted);
    free(slot_of);
}

typedef struct {
    const char *policy;
    ref_rule rule;
    int lifetime;
    double tol_store, tol_index;
} rule_row;

/* Tolerances: INDEX-mode masses are dyadic, so sums are exact and ties must
 * break exactly (older first); STORE-mode masses come from an f32 softmax. */
static const rule_row deterministic[] = {
    {"window", REF_WINDOW, 0, 0, 0},    {"sink", REF_SINK, 0, 0, 0},     {"h2o", REF_H2O, 0, 1e-4, 0},
    {"h2o", REF_H2O, 1, 1e-4, 1e-6},    {"tova", REF_TOVA, 0, 1e-4, 0},   {"knorm", REF_KNORM, 0, 1e-5, 1e-5},
    {"vatp", REF_VATP, 0, 1e-4, 1e-5},  {"keydiff", REF_KEYDIFF, 0, 1e-5, 1e-5},
    {"scissorhands", REF_SCISSOR, 0, 0, 0}, {"rkv", REF_RKV, 0, 1e-9, 1e-9},
};

/* KVC_TEST_SHORT=1 (valgrind): skip the largest shape. */
static int short_run(void) {
    const char *s = getenv("KVC_TEST_SHORT");
    return s && strcmp(s, "1") == 0;
}

/* Set by the tests below: a compressed prefill before each trace, snapkv's pooling. */
static int matrix_prefill;
static uint32_t matrix_kernel = 7;
static int matrix_avgpool;

static void run_matrix(const rule_row *row, uint64_t seed, int only_small, uint64_t *hash, uint64_t *steps,
                       uint64_t *events) {
    uint64_t tolerated = 0, ev = 0;
    if (short_run() && !only_small) only_small = 2;
    for (int mode = 0; mode < 2; mode++)
        for (int shared = 0; shared < 2; shared++)
            for (size_t vi = 0; vi < N_VARIANTS; vi++) {
                if (only_small && variants[vi].cap > (only_small == 2 ? 100u : 32u)) continue;
                run_cfg r = {row->policy, row->rule, row->lifetime, (kvc_mode)mode, shared, variants[vi], seed,
                             1000 * vi + 10 * mode + shared + 7, 4 + (uint32_t)(vi & 1), vi == 1 ? 0.5f : 0.0f,
                             REF_EXACT, 0, 0, 0, matrix_kernel, matrix_avgpool};
                if (matrix_prefill && variants[vi].block == 1) {
                    /* a prompt 2-3x the capacity, a window of a quarter, a protected prefix */
                    r.prefill_n = 2 * variants[vi].cap + 3 + (uint32_t)vi;
                    r.prefill_w = variants[vi].cap / 4 ? variants[vi].cap / 4 : 1;
                    r.protect = variants[vi].sink + 1;
                } else if (matrix_prefill) {
                    continue;
                }
                run_out o;
                run(&r, mode ? row->tol_index : row->tol_store, &o);
                if (o.failed) return;
                tolerated += o.tolerated;
                ev += o.events;
                *hash = hash_step(*hash, o.hash);
                *steps += (uint64_t)variants[vi].steps;
                CHECKF(o.events > 0, "%s: no eviction in variant %zu", row->policy, vi);
                CHECKF(o.skipped * 20 <= o.events + 20, "%s: %llu of %llu checks undecided", row->policy,
                       (unsigned long long)o.skipped, (unsigned long long)o.events);
            }
    /* near-ties inside the tolerance are legitimate but must stay rare */
    CHECKF(tolerated * 50 <= ev, "%s: %llu of %llu evictions only matched within tolerance", row->policy,
           (unsigned long long)tolerated, (unsigned long long)ev);
    *events += ev;
}

static const rule_row snapkv_row = {"snapkv", REF_SNAPKV, 0, 1e-4, 1e-6};

/* snapkv's decode rule, max and average pooling */
TEST(policy_model_snapkv) {
    uint64_t steps = 0, events = 0, h = 0;
    matrix_kernel = 7, matrix_avgpool = 0;
    run_matrix(&snapkv_row, 1, 0, &h, &steps, &events);
    matrix_kernel = 4, matrix_avgpool = 1;
    run_matrix(&snapkv_row, 2, 0, &h, &steps, &events);
    matrix_kernel = 7, matrix_avgpool = 0;
    CHECK(events > 100);
}

/* Decoding continues by the rule after a compressed prefill (every policy,
 * both modes and scopes): the prefill's kept set checked against its rule,
 * then every later eviction against the decode rule, from the state the
 * prefill left (its scores as one attention step). */
TEST(policy_model_after_prefill) {
    uint64_t steps = 0, events = 0, h = 0;
    matrix_prefill = 1;
    for (size_t i = 0; i < sizeof deterministic / sizeof deterministic[0]; i++)
        run_matrix(&deterministic[i], 3, 0, &h, &steps, &events);
    run_matrix(&snapkv_row, 3, 0, &h, &steps, &events);
    static const rule_row rows[] = {{"random", REF_RANDOM, 0, 0, 0}, {"vase", REF_VASE, 0, 1e-5, 1e-5}};
    for (size_t i = 0; i < 2; i++) run_matrix(&rows[i], 3, 0, &h, &steps, &events);
    matrix_prefill = 0;
    CHECK(events > 1000);
}

TEST(policy_model_deterministic) {
    uint64_t steps = 0, events = 0;
    for (size_t i = 0; i < sizeof deterministic / sizeof deterministic[0]; i++) {
        uint64_t h = 0;
        run_matrix(&deterministic[i], 1, 0, &h, &steps, &events);
    }
    CHECK(steps >= (short_run() ? 5000u : 10000u));
    if (getenv("KVC_TEST_VERBOSE"))
        printf("  deterministic policies: %llu steps, %llu checked evictions\n", (unsigned long long)steps,
               (unsigned long long)events);
}

/* random and vase: every eviction obeys the rule's hard constraints (only
 * candidates; vase: reserved value ranges kept, weightless tokens first), and
 * the same seed replays the same victims (on the smaller shapes) while
 * another seed does not. */
TEST(policy_model_stochastic) {
    static const rule_row rows[] = {{"random", REF_RANDOM, 0, 0, 0},
                                    {"vase", REF_VASE, 0, 1e-5, 1e-5},
                                    {"keyformer", REF_KEYFORMER, 0, 0, 0},
                                    {"vase_dkv", REF_VASE_DKV, 0, 0, 0}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint64_t h1 = 0, h2 = 0, h3 = 0, steps = 0, events = 0;
        run_matrix(&rows[i], 11, 0, &h1, &steps, &events);
        h1 = 0;
        run_matrix(&rows[i], 11, 1, &h1, &steps, &events);
        run_matrix(&rows[i], 11, 1, &h2, &steps, &events);
        run_matrix(&rows[i], 12, 1, &h3, &steps, &events);
        CHECKF(h1 == h2, "%s: the same seed gave different victims", rows[i].policy);
        CHECKF(h1 != h3, "%s: seeds 11 and 12 gave the same victims", rows[i].policy);
    }
}

/* The checks can fail: with the model applying a plausible wrong rule, some
 * eviction of the library's trace must contradict it, in each mode. */
TEST(policy_model_rejects_wrong_rules) {
    static const struct {
        const char *policy;
        ref_rule rule;
        int mutant;
        const char *what;
    } wrong[] = {
        {"keydiff", REF_KEYDIFF, REF_MUT_KEYDIFF_CAND_ANCHOR, "an anchor over the candidates only"},
        {"scissorhands", REF_SCISSOR, REF_MUT_SCISSOR_NO_WINDOW, "counting over the whole history"},
        {"scissorhands", REF_SCISSOR, REF_MUT_SCISSOR_RESIDENT_T, "the threshold 1/residents"},
        {"rkv", REF_RKV, REF_MUT_RKV_NO_EXEMPT, "no near-duplicate exemption"},
        {"rkv", REF_RKV, REF_MUT_RKV_MEAN_HEADS, "the mean of the GQA group's logits"},
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++)
        for (int mode = 0; mode < 2; mode++) {
            int caught = 0;
            for (size_t vi = 0; vi < N_VARIANTS && !caught; vi++) {
                /* the GQA mutant needs query heads to differ, and queries exist in STORE mode only */
                if (wrong[i].mutant == REF_MUT_RKV_MEAN_HEADS && (mode || variants[vi].n_q == variants[vi].n_kv))
                    continue;
                run_cfg r = {wrong[i].policy, wrong[i].rule, 0, (kvc_mode)mode, 0, variants[vi], 1,
                             1000 * vi + 10 * mode + 7, 4 + (uint32_t)(vi & 1), 0.0f, wrong[i].mutant,
                             0, 0, 0, 7, 0};
                run_out o;
                run(&r, 1e-9, &o);
                if (o.failed) return;
                caught = o.rejected;
            }
            if (wrong[i].mutant == REF_MUT_RKV_MEAN_HEADS && mode) continue;
            CHECKF(caught, "%s %s: the model check cannot tell %s apart", wrong[i].policy, mode ? "INDEX" : "STORE",
                   wrong[i].what);
        }
}
