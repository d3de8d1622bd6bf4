/* Contract harness: "a call that fails leaves the cache exactly as it was".
 *
 * Over a generated grid (capacities 1-6 with every sink/recent/chunk/block
 * combination, both modes, both scopes, every dtype, every built-in policy
 * and a user policy that misbehaves in every vtable slot), two identical
 * caches run in lockstep: the same valid calls, step by step. Before each
 * step one failing call (a bad input, a call out of order, a misbehaving
 * policy answer, a failing allocation) is made on the first cache only.
 * Then
 *  - its status must be the documented one;
 *  - everything observable must equal the twin's: len, capacity, groups,
 *    every option and parameter, the frozen state, counters, positions of
 *    every group, K/V of every resident slot, max_evictions;
 *  - and since the lockstep goes on (attention outputs, slots and evicted
 *    positions compared bit for bit), any hidden change (generator, policy
 *    state, pending observations, query window) shows up later.
 * The two documented exceptions are made on both caches and checked for
 * exactly their documented effect. Throughout, the user policy checks every
 * argument it gets (groups, slots, masses finite in [0, 1]), that init and
 * fini pair up, and that its state block is as large as it asked; every
 * allocation goes through a guard-zone allocator that checks alignment,
 * overruns and leaks. Runs in make check, under ASan and under valgrind
 * (KVC_TEST_SHORT=1: every 7th configuration, and all with the user policy). */
#include <float.h>
#include <stdarg.h>
#include <stdio.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvc.h"
#include "test.h"

enum { NKV = 2, NQ = 4, D = 3, MAXCAP = 6, MAXOPT = 32, MAXPAR = 16, GUARD = 32, MAXBLK = 8 };
/* every storage type: f32, f16, bf16, and 8-bit rows with a scale */
#define N_DTYPES ((int)KVC_DTYPE_Q8 + 1)

/* ------------------------------------------------------------ allocator */
typedef struct {
    void *p[MAXBLK];
    size_t size[MAXBLK];
    int live, fail_next; /* fail_next: fail the n-th allocation from now (1 = next) */
    int errors;
    char why[120];
} guard_al;

static void *g_alloc(void *o, size_t size, size_t align) {
    guard_al *a = o;
    if (!align || (align & (align - 1)) || align > 4096) {
        a->errors++;
        snprintf(a->why, sizeof a->why, "alignment %zu requested", align);
    }
    if (a->fail_next && --a->fail_next == 0) return NULL;
    if (size > ((size_t)1 << 26)) return NULL; /* what a real allocator says to absurd sizes */
    for (int i = 0; i < MAXBLK; i++)
        if (!a->p[i]) {
            unsigned char *p = aligned_alloc(align, (size + GUARD + align - 1) / align * align);
            if (!p) return NULL;
            memset(p + size, 0xcd, GUARD);
            a->p[i] = p, a->size[i] = size, a->live++;
            return p;
        }
    a->errors++;
    snprintf(a->why, sizeof a->why, "more than %d live blocks", MAXBLK);
    return NULL;
}

static void guard_check(guard_al *a) {
    for (int i = 0; i < MAXBLK; i++)
        if (a->p[i]) {
            const unsigned char *p = a->p[i];
            for (size_t j = 0; j < GUARD; j++)
                if (p[a->size[i] + j] != 0xcd) {
                    a->errors++;
                    snprintf(a->why, sizeof a->why, "write past a %zu-byte block (byte %zu)", a->size[i], j);
                    return;
                }
        }
}

static void g_free(void *o, void *ptr) {
    guard_al *a = o;
    guard_check(a);
    for (int i = 0; i < MAXBLK; i++)
        if (a->p[i] == ptr) {
            free(ptr);
            a->p[i] = NULL, a->live--;
            return;
        }
    a->errors++;
    snprintf(a->why, sizeof a->why, "free of a pointer it never returned");
}

/* ------------------------------------------------------------ user policy */
typedef enum { CT_SELECT, CT_SCORE, CT_NONE } ct_kind;
typedef enum { SZ_FIXED, SZ_GROWS, SZ_HUGE_LATER, SZ_ZERO_LATER, SZ_NONE } size_mode;
typedef enum {
    BAD_OK, BAD_RANGE, BAD_HUGE, BAD_DUP, BAD_NOT_CAND, BAD_SHORT, BAD_NONE, BAD_NOMEM, BAD_POS, BAD_STRAY, N_BAD
} bad_answer;

/* Per-cache bookkeeping of the user policy, reached through kvc_policy::user at
 * state_size/init and through `cur` (set before every call) in the callbacks. */
typedef struct {
    size_mode sz;
    int init_fail;      /* what the next init returns (then 0 again) */
    bad_answer select_bad;
    int control_rc;
    int size_calls;
    size_t used;        /* the answer of the state_size call before the last init */
    int inits, finis;
    void *state;
    uint32_t G, cap;
    kvc_mode mode;
    bool live;
    int violations;
    char why[160];
} ct_ctx;

static ct_ctx *cur;

#define CT_VIOLATION(...)                                                              \
    do {                                                                               \
        if (!cur->violations++) snprintf(cur->why, sizeof cur->why, __VA_ARGS__);      \
    } while (0)

static void ct_touch(void *state) {
    if (!cur->live) CT_VIOLATION("callback without a live state (init failed or fini ran)");
    if (state != cur->state) CT_VIOLATION("callback on state %p, init got %p", state, cur->state);
    if (state && cur->used) memset(state, 0x5a, cur->used); /* all of the block it asked for */
}

static size_t ct_state_size(const kvc_policy_ctx *ctx) {
    ct_ctx *x = ctx->user;
    /* the answer changes once init has run: what prepare sized is not what a later call says */
    bool later = x->inits > 0;
    x->size_calls++;
    switch (x->sz) {
    case SZ_GROWS: x->used = later ? 4096 : 48; break;
    case SZ_HUGE_LATER: x->used = later ? SIZE_MAX : 48; break;
    case SZ_ZERO_LATER: x->used = later ? 0 : 48; break;
    default: x->used = 48; break;
    }
    return x->used;
}

static int ct_init(void *state, const kvc_policy_ctx *ctx) {
    ct_ctx *x = ctx->user;
    if (x != cur) CT_VIOLATION("init with another cache's user pointer");
    if (x->live) CT_VIOLATION("init twice without fini");
    if (x->sz == SZ_NONE) x->used = 0;
    x->inits++;
    x->live = true;
    x->state = state;
    x->G = ctx->n_groups, x->cap = ctx->capacity, x->mode = ctx->mode;
    if (ctx->capacity < 1 || ctx->chunk < 1 || ctx->block < 1 || !ctx->rng) CT_VIOLATION("bad ctx");
    ct_touch(state);
    int rc = x->init_fail;
    x->init_fail = 0;
    return rc;
}

static void ct_fini(void *state) {
    if (!cur->live) CT_VIOLATION("fini without init");
    if (state != cur->state) CT_VIOLATION("fini on another state");
    ct_touch(state);
    cur->finis++;
    cur->live = false;
}

static void ct_on_insert(void *state, uint32_t g, uint32_t slot, const kvc_token *tok) {
    ct_touch(state);
    if (g >= cur->G || slot >= cur->cap || tok->pos < 0) CT_VIOLATION("on_insert(%u, %u)", g, slot);
    if (!(tok->key_norm >= 0 && tok->value_range >= 0 && tok->value_l1 >= 0)) CT_VIOLATION("token stats");
}

static void ct_on_attend(void *state, uint32_t g, const float *mass, uint32_t n) {
    ct_touch(state);
    if (g >= cur->G || n > cur->cap) CT_VIOLATION("on_attend(%u, n %u)", g, n);
    for (uint32_t i = 0; i < n; i++)
        if (!(mass[i] >= 0.0f && mass[i] <= 1.0f + 1e-5f)) CT_VIOLATION("on_attend: mass[%u] = %g", i, mass[i]);
}

static void ct_on_move(void *state, uint32_t g, uint32_t from, uint32_t to) {
    ct_touch(state);
    if (cur->mode != KVC_MODE_STORE || g >= cur->G || from >= cur->cap || to >= cur->cap || from == to)
        CT_VIOLATION("on_move(%u, %u -> %u)", g, from, to);
}

static void ct_score(void *state, uint32_t g, const uint32_t *slots, uint32_t n, float *keep) {
    static const float odd[] = {NAN, INFINITY, -INFINITY, 0.0f, 1e38f, -1.0f, 2.0f};
    ct_touch(state);
    if (g >= cur->G || n < 1 || n > cur->cap) CT_VIOLATION("score(%u, n %u)", g, n);
    for (uint32_t i = 0; i < n; i++) {
        if (slots[i] >= cur->cap) CT_VIOLATION("score slot %u", slots[i]);
        keep[i] = odd[(slots[i] * 3 + n) % 7];
    }
}

static int ct_select(void *state, const kvc_select *r, uint32_t *victims) {
    ct_touch(state);
    uint32_t n = r->n_candidates, nv = r->n_victims;
    if (r->group >= cur->G || nv < 1 || n < nv || !r->rng) {
        CT_VIOLATION("select(group %u, %u candidates, %u victims)", r->group, n, nv);
        return KVC_EPOLICY;
    }
    for (uint32_t i = 0; i < n; i++)
        if (r->candidates[i] >= cur->cap || r->candidates[i] % r->block) CT_VIOLATION("candidate %u", r->candidates[i]);
    /* a valid answer drawn from the generator (so a failed call must restore it) */
    uint32_t pool[MAXCAP];
    memcpy(pool, r->candidates, n * sizeof *pool);
    for (uint32_t i = 0; i < nv; i++) {
        uint32_t j = i + kvc_rng_below(r->rng, n - i), t = pool[i];
        pool[i] = pool[j], pool[j] = t;
    }
    bad_answer b = cur->select_bad;
    cur->select_bad = BAD_OK;
    if (b == BAD_NONE) return 0;                    /* writes nothing: the core's pre-fill must not pass */
    if (b == BAD_SHORT) {                           /* writes fewer victims than asked */
        if (nv > 1) victims[0] = pool[0];
        return 0;
    }
    memcpy(victims, pool, nv * sizeof *victims);
    switch (b) {
    case BAD_RANGE: victims[nv - 1] = cur->cap; break;
    case BAD_HUGE: victims[0] = UINT32_MAX; break;
    case BAD_DUP:
        if (nv > 1) victims[1] = victims[0];
        else victims[0] = UINT32_MAX - 1;
        break;
    case BAD_NOT_CAND: {
        /* a slot that is no candidate: protected, or inside a block */
        uint32_t s = 0;
        for (; s < cur->cap; s++) {
            bool cand = false;
            for (uint32_t i = 0; i < n; i++) cand |= r->candidates[i] == s;
            if (!cand) break;
        }
        victims[0] = s; /* cap when every slot is a candidate: out of range */
        break;
    }
    case BAD_NOMEM: return KVC_ENOMEM;
    case BAD_POS: return 3;
    case BAD_STRAY: return -999;
    default: break;
    }
    return 0;
}

static int ct_control(void *state, int op, void *arg) {
    (void)op, (void)arg;
    ct_touch(state);
    return cur->control_rc;
}

static const kvc_param ct_params[] = {{"weight", 0.5, 0.0, 1.0, NULL, "a parameter to check"}};

static kvc_policy ct_policy(ct_kind kind, ct_ctx *x) {
    kvc_policy p = {0};
    p.abi_version = KVC_POLICY_ABI;
    p.struct_size = sizeof p;
    p.name = kind == CT_SELECT ? "ct_select" : kind == CT_SCORE ? "ct_score" : "ct_none";
    p.needs = KVC_NEED_ATTN | KVC_NEED_RNG | (kind == CT_SCORE ? KVC_NEED_KEY_STATS | KVC_NEED_VALUE_STATS : 0);
    p.default_sink = 1;
    p.n_params = 1;
    p.params = ct_params;
    if (x->sz != SZ_NONE) p.state_size = ct_state_size;
    p.init = ct_init;
    p.fini = ct_fini;
    p.on_insert = ct_on_insert;
    p.on_attend = ct_on_attend;
    p.on_move = ct_on_move;
    if (kind == CT_SELECT) p.select = ct_select;
    if (kind == CT_SCORE) p.score = ct_score;
    p.control = ct_control;
    p.user = x;
    return p;
}

/* ---------------------------------------------------------------- caches */
typedef struct {
    uint32_t cap, block, sink, recent, chunk;
    kvc_mode mode;
    kvc_scope scope;
    kvc_dtype dt;
    int pol; /* < n_builtin: kvc_policy_at(pol); else a ct_kind */
    size_mode sz;
    unsigned index;
} config;

typedef struct {
    kvc_cache *c;
    guard_al al;
    kvc_allocator a;
    ct_ctx ct;
    kvc_policy up;
    const kvc_policy *vt; /* the vtable (for parameter names and needs) */
    bool user;
    uint64_t stream;
    int64_t last_pos;
} ct_cache;

static size_t n_builtin;

static int make_cache(ct_cache *cc, const config *cf) {
    memset(cc, 0, sizeof *cc);
    cc->a = (kvc_allocator){g_alloc, g_free, &cc->al};
    cc->ct.sz = cf->sz;
    cc->user = (size_t)cf->pol >= n_builtin;
    if (cc->user) {
        cc->up = ct_policy((ct_kind)((size_t)cf->pol - n_builtin), &cc->ct);
        cc->vt = &cc->up;
    } else {
        cc->vt = kvc_policy_at((size_t)cf->pol);
    }
    cc->stream = 0x1234567ull + cf->index;
    cc->last_pos = -1;
    cur = &cc->ct;
    int rc = kvc_cache_create(&cc->c, NKV, NQ, D, cf->cap, cf->dt, cf->mode, cc->vt, &cc->a);
    if (rc) return rc;
    /* the order matters: block before chunk would refuse nothing here (ranges are per option) */
    int64_t v[] = {cf->scope, cf->block, cf->sink, cf->recent, cf->chunk, 7};
    kvc_option k[] = {KVC_OPT_SCOPE, KVC_OPT_BLOCK, KVC_OPT_SINK, KVC_OPT_RECENT, KVC_OPT_CHUNK, KVC_OPT_SEED};
    for (int i = 0; i < 6; i++)
        if ((rc = kvc_cache_set(cc->c, k[i], v[i])) != KVC_OK) return rc;
    return KVC_OK;
}

static void free_cache(ct_cache *cc) {
    cur = &cc->ct;
    kvc_cache_destroy(cc->c);
    cc->c = NULL;
}

/* ---------------------------------------------------------------- snapshot */
typedef struct {
    uint32_t groups, cap, len, max_ev;
    int opt_rc[MAXOPT];
    int64_t opt[MAXOPT];
    double par[MAXPAR];
    int frozen;
    kvc_stats st;
    int64_t pos[NKV][MAXCAP];
    float rows[NKV][MAXCAP][2][D];
    char name[32];
} snap;

/* Everything observable. `frozen` is probed by setting the seed to its own
 * value: refused (KVC_ESTATE) once frozen, a no-op before. */
static void take(ct_cache *cc, snap *s) {
    kvc_cache *c = cc->c;
    memset(s, 0, sizeof *s);
    s->groups = kvc_cache_groups(c);
    s->cap = kvc_cache_capacity(c);
    s->len = kvc_cache_len(c);
    s->max_ev = kvc_cache_max_evictions(c);
    for (int k = 0; k < MAXOPT; k++) s->opt_rc[k] = kvc_cache_get(c, (kvc_option)k, &s->opt[k]);
    for (uint32_t i = 0; i < cc->vt->n_params && i < MAXPAR; i++)
        kvc_cache_get_param(c, cc->vt->params[i].name, &s->par[i]);
    cur = &cc->ct;
    s->frozen = kvc_cache_set(c, KVC_OPT_SEED, s->opt[KVC_OPT_SEED]) == KVC_ESTATE;
    kvc_cache_stats(c, &s->st);
    for (uint32_t g = 0; g < s->groups && g < NKV; g++) kvc_cache_positions(c, g, s->pos[g]);
    for (uint32_t h = 0; h < NKV; h++)
        for (uint32_t j = 0; j < s->len && j < MAXCAP; j++) kvc_cache_read(c, h, j, s->rows[h][j][0], s->rows[h][j][1]);
    snprintf(s->name, sizeof s->name, "%s", kvc_cache_policy_name(c));
}

static bool same(const snap *a, const snap *b, char *why, size_t n) {
    if (a->groups != b->groups || a->cap != b->cap || a->len != b->len || a->max_ev != b->max_ev) {
        snprintf(why, n, "groups %u/%u cap %u/%u len %u/%u max_evictions %u/%u", a->groups, b->groups, a->cap, b->cap,
                 a->len, b->len, a->max_ev, b->max_ev);
        return false;
    }
    for (int k = 0; k < MAXOPT; k++)
        if (a->opt_rc[k] != b->opt_rc[k] || a->opt[k] != b->opt[k]) {
            snprintf(why, n, "option %d: %lld -> %lld", k, (long long)a->opt[k], (long long)b->opt[k]);
            return false;
        }
    if (memcmp(a->par, b->par, sizeof a->par)) return snprintf(why, n, "a parameter changed"), false;
    if (a->frozen != b->frozen) return snprintf(why, n, "frozen %d -> %d", a->frozen, b->frozen), false;
    if (memcmp(&a->st, &b->st, sizeof a->st))
        return snprintf(why, n, "stats: appends %llu/%llu evictions %llu/%llu attends %llu/%llu",
                        (unsigned long long)a->st.appends, (unsigned long long)b->st.appends,
                        (unsigned long long)a->st.evictions, (unsigned long long)b->st.evictions,
                        (unsigned long long)a->st.attends, (unsigned long long)b->st.attends),
               false;
    if (memcmp(a->pos, b->pos, sizeof a->pos)) return snprintf(why, n, "positions changed"), false;
    if (memcmp(a->rows, b->rows, sizeof a->rows)) return snprintf(why, n, "stored K/V changed"), false;
    if (strcmp(a->name, b->name)) return snprintf(why, n, "policy name changed"), false;
    return true;
}

/* ---------------------------------------------------------------- data */
static float unit(uint64_t *s) { return (float)kvt_unif(s) * 2.0f - 1.0f; }

/* K rows have element 0 at 4: a query of FLT_MAX then overflows every logit. */
static void token(ct_cache *cc, float *k, float *v) {
    for (int i = 0; i < NKV * D; i++) {
        k[i] = i % D == 0 ? 4.0f : unit(&cc->stream);
        v[i] = unit(&cc->stream);
    }
}

static void query(ct_cache *cc, float *q) {
    for (int i = 0; i < NQ * D; i++) q[i] = unit(&cc->stream);
}

/* ------------------------------------------------------------- valid step */
typedef struct {
    int rc[4];
    float out[NQ * D];
    uint32_t slots[NKV];
    int64_t ev[NKV * MAXCAP];
} result;

static bool evicts(const ct_cache *cc) { return cc->vt->select || cc->vt->score; }

/* The same valid calls on a cache and on its twin give the same results. */
static void valid_step(ct_cache *cc, int step, result *r) {
    memset(r, 0, sizeof *r);
    cur = &cc->ct;
    kvc_cache *c = cc->c;
    float k[NKV * D], v[NKV * D], q[NQ * D];
    token(cc, k, v);
    query(cc, q);
    int64_t pos = cc->last_pos + 1 + step % 2;
    if (step % 11 == 10) {
        r->rc[0] = kvc_cache_reset(c);
        cc->last_pos = -1;
        return;
    }
    if (kvc_cache_read(c, 0, 0, NULL, NULL) != KVC_EMODE) { /* STORE */
        r->rc[0] = kvc_cache_append(c, pos, k, v);
        if (step % 3 == 2) {
            r->rc[1] = kvc_cache_attend_heads(c, q, r->out, 1, 2);
            r->rc[2] = kvc_cache_attend_heads(c, q, r->out, 0, 1);
            if (!r->rc[1] && !r->rc[2]) r->rc[3] = kvc_cache_attend_finish(c, q);
        } else {
            r->rc[1] = kvc_cache_attend(c, q, r->out);
        }
    } else {
        uint32_t G = kvc_cache_groups(c), cap = kvc_cache_capacity(c);
        float mass[MAXCAP];
        for (uint32_t g = 0; g < G; g++) {
            for (uint32_t s = 0; s < cap; s++) mass[s] = (float)kvt_unif(&cc->stream) / (float)cap;
            r->rc[1] |= kvc_cache_observe(c, g, mass, step % 4 == 3 ? cap - 1 : cap);
        }
        r->rc[0] = kvc_cache_reserve(c, pos, k, v, r->slots, r->ev);
    }
    if (r->rc[0] == KVC_OK) cc->last_pos = pos;
}

/* ------------------------------------------------------------- faults */
typedef enum {
    F_NULL_KV, F_POS_REPEAT, F_POS_NEG, F_NAN_K, F_INF_V, F_F16_RANGE, F_WRONG_MODE, F_WRONG_MODE2, F_Q_NAN,
    F_OUT_NULL, F_Q_OVERFLOW, F_HEADS_RANGE, F_FINISH_ALONE, F_FINISH_PARTIAL, F_OBS_GROUP, F_OBS_N, F_OBS_NAN,
    F_OBS_NEG, F_OBS_NULL, F_SET_KEY, F_SET_VALUE, F_SET_FROZEN, F_SCALE, F_PARAM_UNKNOWN, F_PARAM_RANGE,
    F_PARAM_NULL, F_SPEC, F_READ, F_POSITIONS, F_CONTROL, F_PREPARE_NOMEM, F_PREPARE_NOMEM2, F_INIT_FAIL,
    F_SELECT_BAD, F_FULL, F_RESET_INIT_FAIL, F_RESERVE_AFTER_OBSERVE, N_FAULTS
} fault;

static const char *const fault_names[N_FAULTS] = {
    "null k/v/slots", "position repeated", "negative position", "NaN in k", "Inf in v", "value too large for 16 bits",
    "call of the other mode", "call of the other mode (2)", "NaN in q", "NULL out", "q overflowing the logits",
    "bad head range", "attend_finish alone", "attend_finish after some heads", "observe: bad group",
    "observe: n > capacity", "observe: NaN mass", "observe: negative mass", "observe: NULL mass", "set: unknown key",
    "set: value out of range", "set after freeze", "bad scale", "unknown parameter", "parameter out of range",
    "NULL parameter name", "bad spec", "read out of range", "positions: bad group", "control",
    "allocation failure at prepare", "second allocation failure at prepare", "policy init failure",
    "bad select answer", "full cache that never evicts", "reset with failing init",
    "reserve failing after observe"};

typedef struct {
    bool store, frozen, full, empty, stats_needed, refusing;
} state;

static state state_of(ct_cache *cc, const snap *s) {
    state st;
    st.store = kvc_cache_read(cc->c, 0, 0, NULL, NULL) != KVC_EMODE;
    st.frozen = s->frozen;
    st.full = s->len == s->cap;
    st.empty = s->len == 0;
    st.stats_needed = (cc->vt->needs & (KVC_NEED_KEY_STATS | KVC_NEED_VALUE_STATS)) != 0;
    return st;
}

/* Make fault f on cc. Returns false when f does not apply in this state;
 * else *expect is the documented status (INT32_MIN: any failure). */
static bool apply_fault(ct_cache *cc, fault f, const state *st, const config *cf, int *got, int *expect,
                        uint64_t salt) {
    kvc_cache *c = cc->c;
    float k[NKV * D], v[NKV * D], q[NQ * D], out[NQ * D], mass[MAXCAP + 1];
    for (int i = 0; i < NKV * D; i++) k[i] = v[i] = 0.25f;
    for (int i = 0; i < NQ * D; i++) q[i] = 0.5f;
    for (int i = 0; i <= MAXCAP; i++) mass[i] = 0.1f;
    uint32_t slots[NKV], G = kvc_cache_groups(c), cap = cf->cap;
    int64_t ev[NKV * MAXCAP], pos = cc->last_pos + 1, p64[MAXCAP];
    const int EMPTY_OR = st->empty || !st->frozen;
    cur = &cc->ct;
    /* a configuration the freeze refuses answers every freezing call with that refusal */
    if (st->refusing && (f == F_PREPARE_NOMEM || f == F_PREPARE_NOMEM2 || f == F_INIT_FAIL || f == F_CONTROL))
        return false;
#define PUT(P, K, V, S) (st->store ? kvc_cache_append(c, P, K, V) : kvc_cache_reserve(c, P, K, V, S, ev))
    switch (f) {
    case F_NULL_KV:
        *expect = KVC_EINVAL;
        *got = st->store ? kvc_cache_append(c, pos, salt & 1 ? NULL : k, salt & 1 ? v : NULL)
                         : kvc_cache_reserve(c, pos, k, v, NULL, ev);
        return true;
    case F_POS_REPEAT:
        if (cc->last_pos < 0) return false;
        *expect = KVC_EORDER;
        *got = PUT(cc->last_pos - (int64_t)(salt & 1), k, v, slots);
        if (cc->last_pos == 0 && (salt & 1)) *expect = KVC_EINVAL; /* -1 */
        return true;
    case F_POS_NEG: *expect = KVC_EINVAL, *got = PUT(-1 - (int64_t)(salt % 5), k, v, slots); return true;
    case F_NAN_K:
    case F_INF_V:
        if (!st->store && !st->stats_needed) return false; /* ignored there: a valid call */
        (f == F_NAN_K ? k : v)[salt % (NKV * D)] = f == F_NAN_K ? NAN : -INFINITY;
        *expect = KVC_ENONFINITE, *got = PUT(pos, k, v, slots);
        return true;
    case F_F16_RANGE:
        if (!st->store || (cf->dt != KVC_DTYPE_F16 && cf->dt != KVC_DTYPE_BF16)) return false; /* q8 scales any finite row */
        v[salt % (NKV * D)] = cf->dt == KVC_DTYPE_F16 ? 70000.0f : FLT_MAX;
        *expect = KVC_ERANGE, *got = kvc_cache_append(c, pos, k, v);
        return true;
    case F_WRONG_MODE:
        *expect = KVC_EMODE;
        *got = st->store ? kvc_cache_reserve(c, pos, k, v, slots, ev) : kvc_cache_append(c, pos, k, v);
        return true;
    case F_WRONG_MODE2:
        *expect = KVC_EMODE;
        if (st->store) *got = kvc_cache_observe(c, 0, mass, cap);
        else if (salt % 3 == 0) *got = kvc_cache_attend(c, q, out);
        else if (salt % 3 == 1) *got = kvc_cache_attend_heads(c, q, out, 0, 1);
        else *got = kvc_cache_attend_finish(c, q);
        return true;
    case F_Q_NAN:
        if (!st->store) return false;
        q[salt % (NQ * D)] = salt & 8 ? INFINITY : NAN;
        *expect = EMPTY_OR ? KVC_EEMPTY : KVC_ENONFINITE;
        *got = salt & 1 ? kvc_cache_attend(c, q, out) : salt & 2 ? kvc_cache_attend_finish(c, q)
                                                                  : kvc_cache_attend_heads(c, q, out, 0, 2);
        return true;
    case F_OUT_NULL:
        if (!st->store) return false;
        *expect = KVC_EINVAL;
        *got = salt & 1 ? kvc_cache_attend(c, q, NULL) : salt & 2 ? kvc_cache_attend_finish(c, NULL)
                                                                   : kvc_cache_attend_heads(c, NULL, out, 0, 1);
        return true;
    case F_Q_OVERFLOW:
        if (!st->store) return false;
        for (int i = 0; i < NQ * D; i++) q[i] = FLT_MAX;
        *expect = EMPTY_OR ? KVC_EEMPTY : KVC_ERANGE;
        if (salt & 1) {
            *got = kvc_cache_attend(c, q, out);
        } else {
            *got = kvc_cache_attend_heads(c, q, out, 0, 2);
            if (*got == KVC_OK) *got = kvc_cache_attend_finish(c, q);
        }
        return true;
    case F_HEADS_RANGE: {
        if (!st->store) return false;
        static const uint32_t r[][2] = {{1, 1}, {2, 1}, {0, 3}, {2, 3}};
        *expect = EMPTY_OR ? KVC_EEMPTY : KVC_ERANGE;
        *got = kvc_cache_attend_heads(c, q, out, r[salt % 4][0], r[salt % 4][1]);
        return true;
    }
    case F_FINISH_ALONE:
        if (!st->store) return false;
        *expect = EMPTY_OR ? KVC_EEMPTY : KVC_ESTATE;
        *got = kvc_cache_attend_finish(c, q);
        return true;
    case F_FINISH_PARTIAL:
        if (!st->store || EMPTY_OR) return false;
        *expect = KVC_ESTATE;
        *got = kvc_cache_attend_heads(c, q, out, salt & 1, (salt & 1) + 1);
        if (*got == KVC_OK) *got = kvc_cache_attend_finish(c, q);
        return true;
    case F_OBS_GROUP:
    case F_OBS_N:
    case F_OBS_NAN:
    case F_OBS_NEG:
    case F_OBS_NULL:
        if (st->store) return false;
        *expect = f == F_OBS_GROUP || f == F_OBS_N ? KVC_ERANGE : f == F_OBS_NULL ? KVC_EINVAL : KVC_ENONFINITE;
        if (f == F_OBS_NAN) mass[salt % cap] = salt & 1 ? NAN : INFINITY;
        if (f == F_OBS_NEG) mass[salt % cap] = -0.5f;
        *got = kvc_cache_observe(c, f == F_OBS_GROUP ? G + (uint32_t)(salt % 3) : 0, f == F_OBS_NULL ? NULL : mass,
                                 f == F_OBS_N ? cap + 1 : cap);
        return true;
    case F_SET_KEY:
        *expect = KVC_EUNKNOWN;
        *got = kvc_cache_set(c, (kvc_option)(salt & 1 ? -1 : 1000 + (int)(salt % 50)), 0);
        return true;
    case F_SET_VALUE: {
        const int64_t bad[][2] = {{KVC_OPT_SINK, -1},         {KVC_OPT_RECENT, cap + 1}, {KVC_OPT_CHUNK, 0},
                                  {KVC_OPT_BLOCK, cap + 1},   {KVC_OPT_SCOPE, 2},        {KVC_OPT_QUERY_WINDOW, 0},
                                  {KVC_OPT_QUERY_WINDOW, 4097}, {KVC_OPT_CHUNK, INT64_MIN}};
        size_t i = salt % 8;
        *expect = st->frozen ? KVC_ESTATE : KVC_ERANGE;
        *got = kvc_cache_set(c, (kvc_option)bad[i][0], bad[i][1]);
        return true;
    }
    case F_SET_FROZEN:
        if (!st->frozen) return false;
        *expect = KVC_ESTATE;
        switch (salt % 4) {
        case 0: *got = kvc_cache_set(c, KVC_OPT_SINK, 0); break;
        case 1: *got = kvc_cache_set_scale(c, 1.0f); break;
        case 2: *got = kvc_cache_apply_spec(c, "sink=0"); break;
        default:
            if (!cc->vt->n_params) return false;
            *got = kvc_cache_set_param(c, cc->vt->params[0].name, cc->vt->params[0].def);
        }
        return true;
    case F_SCALE: {
        const float bad[] = {0.0f, -1.0f, NAN, INFINITY};
        *expect = st->frozen ? KVC_ESTATE : KVC_ERANGE;
        *got = kvc_cache_set_scale(c, bad[salt % 4]);
        return true;
    }
    case F_PARAM_UNKNOWN:
        *expect = KVC_EUNKNOWN;
        if (salt & 1) {
            double x;
            *got = kvc_cache_get_param(c, "no_such_parameter", &x);
        } else {
            *got = kvc_cache_set_param(c, "no_such_parameter", 1.0);
        }
        return true;
    case F_PARAM_RANGE:
        if (!cc->vt->n_params) return false;
        *expect = st->frozen ? KVC_ESTATE : KVC_ERANGE;
        *got = kvc_cache_set_param(c, cc->vt->params[0].name, salt & 1 ? NAN : cc->vt->params[0].max + 1.0);
        return true;
    case F_PARAM_NULL: *expect = KVC_EINVAL, *got = kvc_cache_set_param(c, NULL, 0.0); return true;
    case F_SPEC: {
        static const char *const bad[] = {"sink=1 recent=zz", "sink=1 bogus=3", "sink=1 chunk=0", "sink", "=3",
                                          "sink=1 scale=abc", "scope=everywhere", "recent=1 recent=-4"};
        *expect = st->frozen ? KVC_ESTATE : INT32_MIN;
        *got = salt % 9 == 8 ? kvc_cache_apply_spec(c, NULL) : kvc_cache_apply_spec(c, bad[salt % 9 % 8]);
        if (salt % 9 == 8) *expect = KVC_EINVAL;
        return true;
    }
    case F_READ: {
        float row[D];
        *expect = st->store ? KVC_ERANGE : KVC_EMODE;
        *got = salt & 1 ? kvc_cache_read(c, NKV, 0, row, row) : kvc_cache_read(c, 0, kvc_cache_len(c), row, NULL);
        return true;
    }
    case F_POSITIONS:
        *expect = salt & 1 ? KVC_ERANGE : KVC_EINVAL;
        *got = salt & 1 ? kvc_cache_positions(c, G, p64) : kvc_cache_positions(c, 0, NULL);
        return true;
    case F_CONTROL:
        /* a state_size that turns absurd after an init: a freeze undone here would keep this cache, not its
         * twin, from freezing again (and one that cannot freeze any more answers with that) */
        if (cc->ct.sz == SZ_HUGE_LATER && !st->frozen) return false;
        if (cc->vt->control) {
            static const int rcs[] = {KVC_ENOTSUP, KVC_EINVAL, -999};
            cc->ct.control_rc = rcs[salt % 3];
            *expect = rcs[salt % 3];
        } else {
            *expect = KVC_ENOTSUP;
        }
        *got = kvc_cache_control(c, (int)salt, NULL);
        return true;
    case F_PREPARE_NOMEM:
    case F_PREPARE_NOMEM2:
        if (st->frozen) return false;
        cc->al.fail_next = f == F_PREPARE_NOMEM ? 1 : 2;
        *expect = KVC_ENOMEM;
        *got = salt & 1 ? kvc_cache_prepare(c) : PUT(pos, k, v, slots);
        cc->al.fail_next = 0;
        return true;
    case F_INIT_FAIL: {
        /* a state_size that turns absurd after an init would keep this cache, not its twin, from freezing */
        if (st->frozen || !cc->user || cc->ct.sz == SZ_HUGE_LATER) return false;
        static const int rcs[] = {KVC_ENOMEM, 3, -999, KVC_EOVERFLOW};
        static const int want[] = {KVC_ENOMEM, KVC_EINVAL, KVC_EINVAL, KVC_EOVERFLOW};
        cc->ct.init_fail = rcs[salt % 4];
        *expect = want[salt % 4];
        *got = salt & 4 ? kvc_cache_prepare(c) : PUT(pos, k, v, slots);
        cc->ct.init_fail = 0;
        return true;
    }
    case F_SELECT_BAD: {
        if (!st->full || !st->frozen || !cc->vt->select || !cc->user) return false;
        bad_answer b = (bad_answer)(1 + salt % (N_BAD - 1));
        cc->ct.select_bad = b;
        *expect = b == BAD_NOMEM ? KVC_ENOMEM : KVC_EPOLICY;
        *got = PUT(pos, k, v, slots);
        cc->ct.select_bad = BAD_OK;
        return true;
    }
    case F_FULL:
        if (!st->full || evicts(cc)) return false;
        *expect = KVC_EFULL, *got = PUT(pos, k, v, slots);
        return true;
    default: return false; /* the exceptions are made on both caches: see run_config */
    }
#undef PUT
}

/* The mode's exceptional faults, made on the cache and on its twin alike. */
static bool exception_applies(fault f, ct_cache *cc, const state *st) {
    if (f == F_RESET_INIT_FAIL) return st->frozen && cc->user;
    if (f == F_RESERVE_AFTER_OBSERVE) return !st->store && st->full && st->frozen && cc->user && cc->vt->select;
    return false;
}

static int exception_make(ct_cache *cc, fault f, uint64_t salt) {
    cur = &cc->ct;
    if (f == F_RESET_INIT_FAIL) {
        cc->ct.init_fail = salt & 1 ? KVC_ENOMEM : 5;
        int rc = kvc_cache_reset(cc->c);
        cc->ct.init_fail = 0;
        cc->last_pos = -1;
        return rc;
    }
    float mass[MAXCAP], k[NKV * D], v[NKV * D];
    for (int i = 0; i < MAXCAP; i++) mass[i] = 0.2f;
    for (int i = 0; i < NKV * D; i++) k[i] = v[i] = 0.5f;
    uint32_t slots[NKV];
    int64_t ev[NKV * MAXCAP];
    kvc_cache_observe(cc->c, 0, mass, cc->ct.cap);
    cc->ct.select_bad = BAD_RANGE;
    int rc = kvc_cache_reserve(cc->c, cc->last_pos + 1, k, v, slots, ev);
    cc->ct.select_bad = BAD_OK;
    return rc;
}

/* Faults whose call records a kvc_cache_last_error message: not the const
 * calls (read, positions, get_param), nor a policy's own control answer. */
static const bool needs_message[N_FAULTS] = {
    [F_NULL_KV] = 1, [F_POS_REPEAT] = 1, [F_POS_NEG] = 1, [F_NAN_K] = 1, [F_INF_V] = 1, [F_F16_RANGE] = 1,
    [F_WRONG_MODE] = 1, [F_WRONG_MODE2] = 1, [F_Q_NAN] = 1, [F_OUT_NULL] = 1, [F_Q_OVERFLOW] = 1,
    [F_HEADS_RANGE] = 1, [F_FINISH_ALONE] = 1, [F_FINISH_PARTIAL] = 1, [F_OBS_GROUP] = 1, [F_OBS_N] = 1,
    [F_OBS_NAN] = 1, [F_OBS_NEG] = 1, [F_OBS_NULL] = 1, [F_SET_KEY] = 1, [F_SET_VALUE] = 1, [F_SET_FROZEN] = 1,
    [F_SCALE] = 1, [F_PARAM_RANGE] = 1, [F_PARAM_NULL] = 1, [F_SPEC] = 1, [F_PREPARE_NOMEM] = 1,
    [F_PREPARE_NOMEM2] = 1, [F_INIT_FAIL] = 1, [F_SELECT_BAD] = 1, [F_FULL] = 1};

/* --------------------------------------------------------------- driver */
static struct {
    long configs, refused, faults, steps, exceptions;
    long by_fault[N_FAULTS];
    int reported;
} tally;

/* The runner prints the first failures of a test and counts the rest;
 * KVC_CONTRACT_LOG=1 prints every finding. */
static void report(int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void report(int line, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tally.reported++;
    kvt_fail(__FILE__, line, "%s", msg);
    const char *log = getenv("KVC_CONTRACT_LOG");
    if (log && *log == '1') printf("  finding: %s\n", msg), fflush(stdout);
}
#define REPORT(...) report(__LINE__, __VA_ARGS__)

static void describe(const config *cf, char *buf, size_t n) {
    const char *pn = (size_t)cf->pol < n_builtin ? kvc_policy_at((size_t)cf->pol)->name
                     : (size_t)cf->pol - n_builtin == CT_SELECT ? "ct_select"
                     : (size_t)cf->pol - n_builtin == CT_SCORE  ? "ct_score"
                                                                : "ct_none";
    snprintf(buf, n, "#%u %s %s %s %s cap %u block %u sink %u recent %u chunk %u state_size mode %d", cf->index, pn,
             cf->mode ? "index" : "store", cf->scope ? "shared" : "head",
             cf->dt == KVC_DTYPE_F32 ? "f32" : cf->dt == KVC_DTYPE_F16 ? "f16" : cf->dt == KVC_DTYPE_BF16 ? "bf16" : "q8",
             cf->cap, cf->block,
             cf->sink, cf->recent, cf->chunk, (int)cf->sz);
}

static bool check_end(ct_cache *cc, const char *who, const char *cfg) {
    bool ok = true;
    guard_check(&cc->al);
    if (cc->al.errors) REPORT("%s, %s: allocator: %s", cfg, who, cc->al.why), ok = false;
    if (cc->al.live) REPORT("%s, %s: %d blocks leaked", cfg, who, cc->al.live), ok = false;
    if (cc->ct.violations) REPORT("%s, %s: policy saw: %s", cfg, who, cc->ct.why), ok = false;
    if (cc->user && cc->ct.inits != cc->ct.finis)
        REPORT("%s, %s: init ran %d times, fini %d", cfg, who, cc->ct.inits, cc->ct.finis), ok = false;
    return ok;
}

/* The documented freezing rule. */
static bool rule_accepts(const config *cf, bool evicting) {
    uint32_t B = cf->block, units = cf->cap / B;
    if (cf->chunk > units) return false;
    if (!evicting) return true;
    return (cf->sink + B - 1) / B + (cf->recent + B - 1) / B + cf->chunk <= units;
}

/* The first finding ends a configuration: after it the twins differ anyway. */
#define BAD(...)                                                                                       \
    do {                                                                                               \
        REPORT(__VA_ARGS__);                                                                           \
        goto out;                                                                                      \
    } while (0)

static void run_config(const config *cf) {
    char cfg[200], why[200];
    describe(cf, cfg, sizeof cfg);
    ct_cache a, b;
    tally.configs++;
    if (make_cache(&a, cf) != KVC_OK || make_cache(&b, cf) != KVC_OK) {
        BAD("%s: setup failed", cfg);
    }
    bool accept = rule_accepts(cf, evicts(&a));
    int steps = accept ? 2 * (int)cf->cap + 7 : 3;
    snap sa, sb;
    for (int t = 0; t < steps; t++) {
        /* one failing call on `a` */
        take(&a, &sa);
        snap pre = sa;
        state st = state_of(&a, &sa);
        st.refusing = !accept;
        uint64_t salt = (uint64_t)cf->index * 7919u + (uint64_t)t * 104729u;
        /* every other step, the faults that need a rare state first (full, unfrozen, a user policy) */
        static const fault rare[] = {F_SELECT_BAD,    F_RESERVE_AFTER_OBSERVE, F_FULL,          F_INIT_FAIL,
                                     F_PREPARE_NOMEM, F_PREPARE_NOMEM2,        F_FINISH_PARTIAL};
        const int n_rare = (int)(sizeof rare / sizeof rare[0]), from_rare = t % 2 ? 0 : n_rare;
        for (int tries = 0; tries < from_rare + N_FAULTS; tries++) {
            fault f = tries < from_rare ? rare[(cf->index + (unsigned)t / 2 + (unsigned)tries) % n_rare]
                                        : (fault)((cf->index * 5 + (unsigned)t * 3 + (unsigned)tries) % N_FAULTS);
            int got = 0, expect = 0;
            if (exception_applies(f, &a, &st)) {
                int ra = exception_make(&a, f, salt), rb = exception_make(&b, f, salt);
                take(&a, &sa), take(&b, &sb);
                tally.exceptions++;
                tally.by_fault[f]++;
                if (ra >= 0 || ra != rb) BAD("%s step %d, %s: %d / %d", cfg, t, fault_names[f], ra, rb);
                if (!same(&sb, &sa, why, sizeof why))
                    BAD("%s step %d, %s: the twins differ: %s", cfg, t, fault_names[f], why);
                if (f == F_RESET_INIT_FAIL && (sa.len || sa.frozen || sa.st.appends || sa.st.attends))
                    BAD("%s step %d: reset with failing init left len %u frozen %d", cfg, t, sa.len, sa.frozen);
                if (f == F_RESERVE_AFTER_OBSERVE) {
                    /* documented: the pending observations reached the policy, nothing else changed */
                    pre.st.attends++;
                    if (!same(&pre, &sa, why, sizeof why))
                        BAD("%s step %d, %s: more than the documented change: %s", cfg, t, fault_names[f], why);
                }
                break;
            }
            if (!apply_fault(&a, f, &st, cf, &got, &expect, salt)) continue;
            tally.faults++;
            tally.by_fault[f]++;
            if (expect == INT32_MIN ? got >= 0 : got != expect)
                BAD("%s step %d, %s: status %d (%s), expected %d [%s]", cfg, t, fault_names[f], got,
                       kvc_strerror(got), expect, kvc_cache_last_error(a.c));
            else if (got < 0 && needs_message[f] && !*kvc_cache_last_error(a.c))
                BAD("%s step %d, %s: failed without a message", cfg, t, fault_names[f]);
            take(&a, &sa), take(&b, &sb);
            if (!same(&sb, &sa, why, sizeof why))
                BAD("%s step %d, %s (status %d) changed the cache: %s", cfg, t, fault_names[f], got, why);
            break;
        }
        if (!accept) {
            /* the freeze itself: refused, and nothing changes */
            cur = &a.ct;
            int rc = kvc_cache_prepare(a.c);
            take(&a, &sa), take(&b, &sb);
            if (rc != KVC_EINVAL) BAD("%s: prepare %d, the documented rule refuses", cfg, rc);
            if (!same(&sb, &sa, why, sizeof why)) BAD("%s: refused prepare changed the cache: %s", cfg, why);
            if (rc == KVC_OK) break;
            continue;
        }
        /* the same valid step on both */
        result ra, rb;
        valid_step(&a, t, &ra);
        valid_step(&b, t, &rb);
        tally.steps++;
        /* a state_size that turned absurd after an init keeps a reset-and-refused cache from freezing */
        bool stuck = a.ct.sz == SZ_HUGE_LATER && a.ct.inits > 0 && !a.ct.live;
        for (int i = 0; i < 4; i++) {
            int ok_rc = ra.rc[i] == KVC_OK || (i == 0 && ra.rc[i] == KVC_EFULL && !evicts(&a)) ||
                        (i > 0 && ra.rc[i] == KVC_EEMPTY) || (stuck && ra.rc[i] == KVC_ENOMEM);
            if (!ok_rc) BAD("%s step %d: valid call %d failed: %d [%s]", cfg, t, i, ra.rc[i], kvc_cache_last_error(a.c));
        }
        if (memcmp(&ra, &rb, sizeof ra))
            BAD("%s step %d: the twins answered the same calls differently (a hidden change): status %d %d %d %d "
                "vs %d %d %d %d",
                cfg, t, ra.rc[0], ra.rc[1], ra.rc[2], ra.rc[3], rb.rc[0], rb.rc[1], rb.rc[2], rb.rc[3]);
        take(&a, &sa), take(&b, &sb);
        if (!same(&sb, &sa, why, sizeof why)) BAD("%s step %d: the twins diverged: %s", cfg, t, why);
    }
    if (!accept) tally.refused++;
out:
    free_cache(&a), free_cache(&b);
    if (check_end(&a, "cache", cfg)) check_end(&b, "twin", cfg);
}

static void grid(unsigned stride) {
    n_builtin = 0;
    while (kvc_policy_at(n_builtin)) n_builtin++;
    unsigned idx = 0, n_pol = (unsigned)n_builtin + 3;
    for (uint32_t cap = 1; cap <= MAXCAP; cap++)
        for (uint32_t B = 1; B <= cap; B++) {
            if (cap % B) continue;
            for (uint32_t sink = 0; sink <= cap; sink++)
                for (uint32_t recent = 0; recent <= cap; recent++)
                    for (uint32_t chunk = 1; chunk <= cap && chunk <= cap / B + 1; chunk++)
                        for (int mode = 0; mode < 2; mode++)
                            for (int scope = 0; scope < 2; scope++, idx++) {
                                /* a sample keeps every user-policy configuration: they carry the rare faults */
                                if (idx % stride && idx / 4 % n_pol < (unsigned)n_builtin) continue;
                                /* mode and scope run innermost: the rest must not follow them */
                                config cf = {cap, B, sink, recent, chunk, (kvc_mode)mode, (kvc_scope)scope,
                                             (kvc_dtype)(idx % N_DTYPES), (int)(idx / 4 % n_pol),
                                             (size_mode)(idx / 7 % 5), idx};
                                run_config(&cf);
                            }
        }
}

TEST(contract_failed_calls_change_nothing) {
    memset(&tally, 0, sizeof tally);
    grid(kvt_short() ? 7 : 1);
    /* the grid must really have met every fault */
    for (int f = 0; f < N_FAULTS; f++)
        CHECKF(tally.by_fault[f] > 0, "fault '%s' never applied", fault_names[f]);
    CHECK(tally.steps > 1000);
    if (getenv("KVC_TEST_VERBOSE"))
        printf("  contract: %ld configurations (%ld refused at freeze), %ld valid steps, %ld failing calls, "
               "%ld exceptions\n",
               tally.configs, tally.refused, tally.steps, tally.faults, tally.exceptions);
}

/* Creation: bad arguments and failing allocators give a clear code, no cache, no leak. */
TEST(contract_create_failures) {
    guard_al al;
    kvc_allocator a = {g_alloc, g_free, &al};
    kvc_cache *c;
    const struct {
        uint32_t kv, q, d, cap;
        int dt, mode, expect;
    } bad[] = {{0, 1, 1, 1, 0, 0, KVC_EINVAL},          {2, 3, 4, 4, 0, 0, KVC_EINVAL},
               {1, 1, 0, 4, 0, 0, KVC_EINVAL},          {1, 1, 4, 0, 0, 0, KVC_EINVAL},
               {1, 1, 4, 4, 99, 0, KVC_EINVAL},         {1, 1, 4, 4, 0, 2, KVC_EINVAL},
               {1, 1, 4, 1u << 31, 0, 0, KVC_EOVERFLOW}, {1, 1, 65537, 4, 0, 0, KVC_EOVERFLOW},
               {1, 1, 4, 4, 0, 0, KVC_ENOMEM}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&al, 0, sizeof al);
        al.fail_next = bad[i].expect == KVC_ENOMEM;
        c = (kvc_cache *)&al;
        int rc = kvc_cache_create(&c, bad[i].kv, bad[i].q, bad[i].d, bad[i].cap, (kvc_dtype)bad[i].dt,
                                  (kvc_mode)bad[i].mode, NULL, &a);
        CHECKF(rc == bad[i].expect && c == NULL, "case %zu: %d", i, rc);
        CHECK_EQ(al.live, 0);
        al.fail_next = bad[i].expect == KVC_ENOMEM;
        c = (kvc_cache *)&al;
        rc = kvc_cache_create_spec(&c, bad[i].kv, bad[i].q, bad[i].d, bad[i].cap, (kvc_dtype)bad[i].dt,
                                   (kvc_mode)bad[i].mode, "window", &a);
        CHECKF(rc == bad[i].expect && c == NULL, "spec case %zu: %d", i, rc);
        CHECK_EQ(al.live, 0);
    }
    static const char *const specs[] = {"", "nope", "window sink=-1", "window bogus=1", "window sink", "h2o norm=7",
                                        "window=3", "window scope=x"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        memset(&al, 0, sizeof al);
        c = (kvc_cache *)&al;
        int rc = kvc_cache_create_spec(&c, 1, 1, 4, 4, KVC_DTYPE_F32, KVC_MODE_STORE, specs[i], &a);
        CHECKF(rc < 0 && c == NULL && strcmp(kvc_strerror(rc), "unknown status"), "'%s': %d", specs[i], rc);
        CHECK_EQ(al.live, 0);
        CHECK_EQ(al.errors, 0);
    }
}
