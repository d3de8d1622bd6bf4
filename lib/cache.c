/* Cache lifecycle: creation, options, freezing (the one place memory is
 * allocated), reset and introspection. */
#include "internal.h"

#include "attn/attn.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* The prefix every policy must provide: everything up to and including `params`. */
#define KVC__POLICY_MIN_SIZE (offsetof(kvc_policy, params) + sizeof(const kvc_param *))

const char *kvc__option_name(kvc_option key) {
    switch (key) {
#define KVC__OPTION_NAME(name, value, key, min, max, choices, doc) \
    case name:                                                    \
        return key;
        KVC_OPTION_LIST(KVC__OPTION_NAME)
#undef KVC__OPTION_NAME
    case KVC__OPTION_END:
    default:
        return "?";
    }
}

void kvc__option_bounds(const kvc_cache *c, kvc_option key, int64_t *lo, int64_t *hi) {
    switch (key) {
#define KVC__OPTION_BOUNDS(name, value, key, min, max, choices, doc) \
    case name:                                                      \
        *lo = (min);                                                \
        *hi = (max) == KVC_BOUND_CAPACITY ? (int64_t)c->cap : (max); \
        return;
        KVC_OPTION_LIST(KVC__OPTION_BOUNDS)
#undef KVC__OPTION_BOUNDS
    case KVC__OPTION_END:
    default:
        *lo = *hi = 0;
    }
}

static int check_policy(const kvc_policy *p) {
    if (p->abi_version != KVC_POLICY_ABI) return KVC_EABI;
    if (p->struct_size < KVC__POLICY_MIN_SIZE || p->struct_size > sizeof(kvc_policy)) return KVC_EABI;
    if (!p->name || !*p->name) return KVC_EINVAL;
    if (p->n_params > KVC__MAX_PARAMS || (p->n_params && !p->params)) return KVC_EINVAL;
    for (uint32_t i = 0; i < p->n_params; i++) {
        const kvc_param *q = &p->params[i];
        if (!q->name || !(q->min <= q->def && q->def <= q->max)) return KVC_EINVAL;
    }
    if (p->default_scope > KVC_SCOPE_SHARED) return KVC_EINVAL;
    return KVC_OK;
}

static void set_defaults(kvc_cache *c) {
    const kvc_policy *p = &c->pol;
    int64_t sink = p->default_sink, chunk = p->default_chunk ? p->default_chunk : 1;
    int64_t recent = p->default_recent;
    if (recent == KVC_RECENT_HALF)
        recent = c->cap / 2;
    else if (recent >= KVC_RECENT_PERCENT(0) && recent <= KVC_RECENT_PERCENT(100))
        recent = (int64_t)c->cap * (recent - KVC_RECENT_PERCENT(0)) / 100;
    if (sink > c->cap) sink = c->cap;
    if (recent > c->cap) recent = c->cap;
    /* Reference defaults assume budgets of thousands of tokens. A chunk is
     * at most 1/16 of the capacity, so the resident set stays within ~6% of
     * the budget between evictions; if sink + recent + chunk still leave no
     * room to evict, sink and recent are capped at a quarter each. */
    int64_t sixteenth = c->cap / 16 > 0 ? c->cap / 16 : 1, quarter = c->cap / 4;
    if (chunk > sixteenth) chunk = sixteenth;
    if (sink + recent + chunk > c->cap) {
        if (sink > quarter) sink = quarter;
        if (recent > quarter) recent = quarter;
    }
    c->opt[KVC_OPT_SCOPE] = p->default_scope;
    c->opt[KVC_OPT_SINK] = sink;
    c->opt[KVC_OPT_RECENT] = recent;
    c->opt[KVC_OPT_CHUNK] = chunk;
    c->opt[KVC_OPT_BLOCK] = 1;
    c->opt[KVC_OPT_SEED] = 0;
    c->opt[KVC_OPT_QUERY_WINDOW] = p->default_query_window ? p->default_query_window : 64;
    if (c->opt[KVC_OPT_QUERY_WINDOW] > 4096) c->opt[KVC_OPT_QUERY_WINDOW] = 4096;
    c->opt[KVC_OPT_PROTECT] = 0;
    c->opt[KVC_OPT_PREFILL_MAX] = 0;
    c->scale = 1.0f / sqrtf((float)c->d);
    for (uint32_t i = 0; i < p->n_params; i++) c->params[i] = p->params[i].def;
}

int kvc_cache_create(kvc_cache **out, uint32_t n_kv_heads, uint32_t n_q_heads, uint32_t head_dim, uint32_t capacity,
                     kvc_dtype dtype, kvc_mode mode, const kvc_policy *policy, const kvc_allocator *alloc) {
    if (!out) return KVC_EINVAL;
    *out = NULL;
    if (!n_kv_heads || !n_q_heads || !head_dim || !capacity) return KVC_EINVAL;
    if (n_q_heads % n_kv_heads) return KVC_EINVAL;
    if ((unsigned)dtype > KVC_DTYPE_Q8 || (unsigned)mode > KVC_MODE_INDEX) return KVC_EINVAL;
    if (alloc && (!alloc->alloc || !alloc->free)) return KVC_EINVAL;
    if (capacity >= (1u << 31) || head_dim > 65536) return KVC_EOVERFLOW;
    /* every buffer is at most heads x capacity x row: check the largest now */
    size_t rows, bytes;
    if (!kvc__mul((size_t)(n_q_heads > n_kv_heads ? n_q_heads : n_kv_heads), capacity, &rows) ||
        !kvc__mul(rows, ((size_t)head_dim * 4 + 63) & ~(size_t)63, &bytes) || bytes > SIZE_MAX / 8)
        return KVC_EOVERFLOW;
    if (!policy) policy = kvc_policy_full();
    int rc = check_policy(policy);
    if (rc) return rc;

    kvc_allocator al = {0};
    if (alloc) al = *alloc;
    kvc_cache *c = kvc__alloc(&al, sizeof *c);
    if (!c) return KVC_ENOMEM;
    memset(c, 0, sizeof *c);
    atomic_init(&c->err_busy, 0);
    c->al = al;
    c->n_kv = n_kv_heads;
    c->n_q = n_q_heads;
    c->d = head_dim;
    c->cap = capacity;
    c->dtype = dtype;
    c->mode = mode;
    memcpy(&c->pol, policy, policy->struct_size);
    c->pol.struct_size = sizeof(kvc_policy);
    c->last_pos = INT64_MIN;
    set_defaults(c);
    *out = c;
    return KVC_OK;
}

/* The one teardown of what freezing built: the policy state (through `fini`
 * when `run_fini`) and the cache memory. The cache is unfrozen afterwards, so
 * the next append prepares it again. */
static void teardown(kvc_cache *c, bool run_fini) {
    if (run_fini && c->pstate && c->pol.fini) c->pol.fini(c->pstate);
    kvc__free(&c->al, c->pstate);
    kvc__free(&c->al, c->mem);
    c->pstate = NULL;
    c->mem = NULL;
    c->frozen = false;
}

void kvc_cache_destroy(kvc_cache *c) {
    if (!c) return;
    teardown(c, true);
    kvc_allocator al = c->al;
    kvc__free(&al, c);
}

int kvc_cache_set(kvc_cache *c, kvc_option key, int64_t value) {
    if (!c) return KVC_EINVAL;
    if ((unsigned)key >= KVC__N_OPTIONS) return kvc__fail(c, KVC_EUNKNOWN, "unknown option key %d", (int)key);
    if (c->frozen)
        return kvc__fail(c, KVC_ESTATE, "option '%s' set after the first append: set options before appending",
                         kvc__option_name(key));
    int64_t lo, hi;
    kvc__option_bounds(c, key, &lo, &hi);
    if (key == KVC_OPT_BLOCK && value >= lo && value <= hi && c->cap % value)
        return kvc__fail(c, KVC_ERANGE, "block=%lld does not divide capacity %u", (long long)value, c->cap);
    if (value < lo || value > hi)
        return kvc__fail(c, KVC_ERANGE, "%s=%lld is outside [%lld, %lld]", kvc__option_name(key), (long long)value,
                         (long long)lo, (long long)hi);
    c->opt[key] = value;
    return KVC_OK;
}

int kvc_cache_get(const kvc_cache *c, kvc_option key, int64_t *value) {
    if (!c || !value) return KVC_EINVAL;
    if ((unsigned)key >= KVC__N_OPTIONS) return KVC_EUNKNOWN;
    *value = c->opt[key];
    return KVC_OK;
}

int kvc_cache_set_scale(kvc_cache *c, float scale) {
    if (!c) return KVC_EINVAL;
    if (c->frozen) return kvc__fail(c, KVC_ESTATE, "scale set after the first append");
    if (!(scale > 0.0f) || isinf(scale)) return kvc__fail(c, KVC_ERANGE, "scale must be finite and > 0");
    c->scale = scale;
    return KVC_OK;
}

int kvc_cache_set_param(kvc_cache *c, const char *name, double value) {
    if (!c) return KVC_EINVAL;
    if (!name) return kvc__fail(c, KVC_EINVAL, "parameter name is NULL");
    int i = kvc__param_index(c, name);
    if (i < 0)
        return kvc__fail(c, KVC_EUNKNOWN, "policy '%s' has no parameter '%s'", c->pol.name, name);
    if (c->frozen) return kvc__fail(c, KVC_ESTATE, "parameter '%s' set after the first append", name);
    const kvc_param *p = &c->pol.params[i];
    if (!(value >= p->min && value <= p->max))
        return kvc__fail(c, KVC_ERANGE, "%s=%g is outside [%g, %g]", name, value, p->min, p->max);
    c->params[i] = value;
    return KVC_OK;
}

int kvc_cache_get_param(const kvc_cache *c, const char *name, double *value) {
    if (!c || !name || !value) return KVC_EINVAL;
    int i = kvc__param_index(c, name);
    if (i < 0) return KVC_EUNKNOWN;
    *value = c->params[i];
    return KVC_OK;
}

/* ------------------------------------------------------------------ freeze */

static size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

static int check_room(kvc_cache *c) {
    size_t B = c->block, units = c->cap / B;
    /* even a policy that never evicts: callers size `evicted` by chunk * block */
    if (c->chunk > units)
        return kvc__fail(c, KVC_EINVAL, "chunk=%u blocks of %u exceed capacity %u", c->chunk, c->block, c->cap);
    if (!c->pol.select && !c->pol.score) return KVC_OK; /* never evicts */
    /* A group evicts only when full, and then (appends and evictions both
     * coming in whole aligned blocks) every block holds B consecutive
     * insertions starting at a multiple of B: the sinks fill ceil(sink/B)
     * blocks and the recent window ceil(recent/B), exactly. */
    /* tokens below `protect` were appended first (positions increase): with the sinks, the
     * first max(sink, protect) tokens at most */
    size_t pinned = c->protect > (int64_t)c->sink ? (size_t)(c->protect < c->cap ? c->protect : c->cap) : c->sink;
    size_t protected_units = ceil_div(pinned, B) + ceil_div(c->recent, B);
    if (protected_units + c->chunk > units)
        return kvc__fail(c, KVC_EINVAL,
                         "sink=%u + recent=%u leave no room to evict chunk=%u (block %u) at capacity %u: needs "
                         "ceil(sink/block) + ceil(recent/block) + chunk <= capacity/block; lower sink, recent or "
                         "chunk, or raise the capacity",
                         c->sink, c->recent, c->chunk, c->block, c->cap);
    return KVC_OK;
}

/* Carve aligned sub-buffers out of one allocation: first pass sizes, second assigns. */
typedef struct {
    char *base;
    size_t off;
    bool ok;
} carver;

static void *carve(carver *cv, size_t n, size_t elem) {
    size_t bytes, end;
    if (!cv->ok || !kvc__mul(n, elem, &bytes) || !kvc__add(cv->off, bytes, &end) ||
        !kvc__add(end, KVC__ALIGN - 1, &end)) {
        cv->ok = false;
        return NULL;
    }
    void *p = cv->base ? cv->base + cv->off : NULL;
    cv->off = end & ~(size_t)(KVC__ALIGN - 1);
    return n ? p : NULL;
}

static void layout(kvc_cache *c, carver *cv) {
    size_t G = c->n_groups, cap = c->cap, gc;
    bool store = c->mode == KVC_MODE_STORE;
    if (!kvc__mul(G, cap, &gc)) cv->ok = false;
    size_t kv = 0;
    if (store && !kvc__mul((size_t)c->n_kv, c->head_stride, &kv)) cv->ok = false;
    c->k = carve(cv, kv, c->esize);
    c->v = carve(cv, kv, c->esize);
    c->pos = carve(cv, gc, sizeof(int64_t));
    c->seq = carve(cv, gc, sizeof(uint64_t));
    c->freemap = carve(cv, store ? 0 : G * c->words, sizeof(uint64_t));
    c->weights = carve(cv, store ? (size_t)c->n_q * cap : 0, sizeof(float));
    c->mass = carve(cv, store ? gc : 0, sizeof(float));
    c->attended = carve(cv, store ? c->n_kv : 0, 1);
    c->obs = carve(cv, store ? 0 : gc, sizeof(float));
    c->obs_calls = carve(cv, store ? 0 : G, sizeof(uint32_t));
    c->high = carve(cv, store ? 0 : G, sizeof(uint32_t));
    c->cand = carve(cv, cap, sizeof(uint32_t));
    c->cand_key = carve(cv, cap, sizeof(uint64_t));
    c->sort_tmp = carve(cv, cap, sizeof(uint64_t));
    c->uscore = carve(cv, cap, sizeof(float));
    c->heap = carve(cv, cap, sizeof(uint32_t));
    c->mark = carve(cv, cap, 1);
    c->victims = carve(cv, G * c->chunk, sizeof(uint32_t));
    bool window = store && (c->pol.needs & KVC_NEED_QUERY_WINDOW);
    bool ring = window || (store && (c->pol.needs & KVC_NEED_QUERIES));
    c->qring = carve(cv, ring ? (size_t)c->qwin * c->n_q * c->d : 0, sizeof(float));
    c->wlogit = carve(cv, window ? (size_t)KVC__WBLOCK * cap : 0, sizeof(float));
    c->krow = carve(cv, window ? c->d : 0, sizeof(float));
    c->wq = carve(cv, window ? (size_t)KVC__WBLOCK * c->d : 0, sizeof(float));
    c->wout = carve(cv, window ? (size_t)KVC__WBLOCK * c->d : 0, sizeof(float));
    size_t M = c->pmax, pm = 0;
    if (M && !kvc__mul(G, M, &pm)) cv->ok = false;
    c->ptok = carve(cv, M, sizeof(kvc_token));
    c->pscore = carve(cv, store ? pm : 0, sizeof(float));
    c->plogit = carve(cv, store ? (size_t)KVC__WBLOCK * M : 0, sizeof(float));
    c->pwqt = carve(cv, store && M ? (size_t)KVC__WBLOCK * c->d : 0, sizeof(float));
    c->pq = carve(cv, store && M ? (size_t)KVC__WBLOCK * c->d : 0, sizeof(float));
    c->pgscore = carve(cv, M ? G : 0, sizeof(const float *));
    c->pcand = carve(cv, M, sizeof(uint32_t));
    c->pvict = carve(cv, M, sizeof(uint32_t));
    c->pkeep = carve(cv, M ? gc : 0, sizeof(uint32_t));
    c->pmark = carve(cv, M, 1);
}

static void clear_state(kvc_cache *c) {
    size_t gc = (size_t)c->n_groups * c->cap;
    for (size_t i = 0; i < gc; i++) c->pos[i] = -1;
    memset(c->seq, 0, gc * sizeof *c->seq);
    if (c->freemap) {
        for (uint32_t g = 0; g < c->n_groups; g++)
            for (uint32_t w = 0; w < c->words; w++) {
                uint32_t lo = w * 64, n = c->cap - lo < 64 ? c->cap - lo : 64;
                c->freemap[(size_t)g * c->words + w] = n == 64 ? ~0ull : ((1ull << n) - 1);
            }
        memset(c->obs, 0, gc * sizeof *c->obs);
        memset(c->obs_calls, 0, c->n_groups * sizeof *c->obs_calls);
        memset(c->high, 0, c->n_groups * sizeof *c->high);
    }
    if (c->attended) memset(c->attended, 0, c->n_kv);
    c->len = 0;
    c->appended = 0;
    c->last_pos = INT64_MIN;
    c->qring_n = c->qring_head = 0;
    memset(&c->stats, 0, sizeof c->stats);
    kvc__rng_seed(&c->rng, (uint64_t)c->opt[KVC_OPT_SEED]);
}

static void fill_ctx(kvc_cache *c, kvc_policy_ctx *ctx) {
    memset(ctx, 0, sizeof *ctx);
    ctx->n_groups = c->n_groups;
    ctx->capacity = c->cap;
    ctx->head_dim = c->d;
    ctx->q_per_group = c->qpg;
    ctx->block = c->block;
    ctx->chunk = c->chunk;
    ctx->sink = c->sink;
    ctx->recent = c->recent;
    ctx->mode = c->mode;
    ctx->rng = &c->rng;
    ctx->params = c->params;
    ctx->user = c->pol.user;
    ctx->kv_heads = c->n_groups == 1 ? c->n_kv : 1;
    ctx->scale = c->scale;
    ctx->prefill_max = c->pmax;
}

int kvc__prepare(kvc_cache *c) {
    if (c->frozen) return KVC_OK;
    c->n_groups = c->opt[KVC_OPT_SCOPE] == KVC_SCOPE_SHARED ? 1 : c->n_kv;
    c->qpg = c->n_q / c->n_groups;
    c->block = (uint32_t)c->opt[KVC_OPT_BLOCK];
    c->chunk = (uint32_t)c->opt[KVC_OPT_CHUNK];
    c->sink = (uint32_t)c->opt[KVC_OPT_SINK];
    c->recent = (uint32_t)c->opt[KVC_OPT_RECENT];
    c->qwin = (uint32_t)c->opt[KVC_OPT_QUERY_WINDOW];
    c->protect = c->opt[KVC_OPT_PROTECT];
    c->pmax = (uint32_t)c->opt[KVC_OPT_PREFILL_MAX];
    c->units = c->cap / c->block;
    c->words = (c->cap + 63) / 64;
    int rc = check_room(c);
    if (rc) return rc;
    c->esize = kvc__esize(c->dtype);
    /* rows start on a cache line; Q8 rows (d bytes + scale, 132 for d=128)
     * stay unpadded: rounding them to 192 bytes would read 45% more */
    c->row_stride = c->dtype == KVC_DTYPE_Q8
                        ? kvc__row_bytes(c->dtype, c->d)
                        : (((size_t)c->d * c->esize + KVC__ALIGN - 1) & ~(size_t)(KVC__ALIGN - 1)) / c->esize;
    if (!kvc__mul(c->row_stride, c->cap, &c->head_stride))
        return kvc__fail(c, KVC_EOVERFLOW, "K/V storage size overflows");

    carver cv = {NULL, 0, true};
    layout(c, &cv);
    if (!cv.ok) return kvc__fail(c, KVC_EOVERFLOW, "cache memory size overflows size_t");
    void *mem = kvc__alloc(&c->al, cv.off);
    if (!mem) return kvc__fail(c, KVC_ENOMEM, "could not allocate %zu bytes for the cache", cv.off);
    carver real = {mem, 0, true};
    layout(c, &real);

    kvc_policy_ctx ctx;
    fill_ctx(c, &ctx);
    size_t ssize = c->pol.state_size ? c->pol.state_size(&ctx) : 0;
    if (ssize > ((size_t)1 << 40)) {
        kvc__free(&c->al, mem);
        return kvc__fail(c, KVC_ENOMEM, "policy '%s' asked for %zu bytes of state", c->pol.name, ssize);
    }
    void *ps = kvc__alloc(&c->al, ssize);
    if (!ps) {
        kvc__free(&c->al, mem);
        return kvc__fail(c, KVC_ENOMEM, "could not allocate %zu bytes of policy state", ssize);
    }
    memset(ps, 0, ssize ? ssize : 1);
    c->mem = mem;
    c->pstate = ps;
    c->pstate_size = ssize;
    clear_state(c);
    if (c->pol.init) {
        rc = c->pol.init(ps, &ctx);
        if (rc) {
            teardown(c, true);
            rc = kvc__policy_status(rc, KVC_EINVAL);
            return kvc__fail(c, rc, "policy '%s' init failed: %s", c->pol.name, kvc_strerror(rc));
        }
    }
    c->frozen = true;
    c->err[0] = 0;
    return KVC_OK;
}

int kvc_cache_prepare(kvc_cache *c) { return c ? kvc__prepare(c) : KVC_EINVAL; }

int kvc_cache_control(kvc_cache *c, int op, void *arg) {
    if (!c) return KVC_EINVAL;
    if (!c->pol.control)
        return kvc__fail(c, KVC_ENOTSUP, "policy '%s' has no control operations", c->pol.name);
    bool was_frozen = c->frozen;
    int rc = kvc__prepare(c);
    if (rc) return rc;
    rc = c->pol.control(c->pstate, op, arg);
    if (rc < 0 && !was_frozen) {
        /* a failed call changes nothing: undo the freeze it made */
        teardown(c, true);
    }
    return rc;
}

int kvc_cache_reset(kvc_cache *c) {
    if (!c) return KVC_EINVAL;
    if (!c->frozen) return KVC_OK;
    kvc_policy_ctx ctx;
    fill_ctx(c, &ctx);
    /* the block sized at prepare, whatever state_size would answer now */
    if (c->pol.fini) c->pol.fini(c->pstate);
    memset(c->pstate, 0, c->pstate_size ? c->pstate_size : 1);
    clear_state(c);
    if (c->pol.init) {
        int rc = c->pol.init(c->pstate, &ctx);
        if (rc) {
            /* the state is unusable: unfreeze so the next append re-initialises;
             * fini first, as after a failed init at prepare */
            teardown(c, true);
            return kvc__fail(c, kvc__policy_status(rc, KVC_EINVAL), "policy '%s' init failed on reset",
                             c->pol.name);
        }
    }
    return KVC_OK;
}

/* ------------------------------------------------------------ introspection */

uint32_t kvc_cache_groups(const kvc_cache *c) {
    if (!c) return 0;
    return c->opt[KVC_OPT_SCOPE] == KVC_SCOPE_SHARED ? 1 : c->n_kv;
}
uint32_t kvc_cache_capacity(const kvc_cache *c) { return c ? c->cap : 0; }
uint32_t kvc_cache_len(const kvc_cache *c) { return c ? c->len : 0; }
uint32_t kvc_cache_max_evictions(const kvc_cache *c) {
    if (!c) return 0;
    /* both are <= capacity < 2^31, so the product fits in int64; before the
     * freeze it may not fit in 32 bits (such options never freeze) */
    int64_t n = c->opt[KVC_OPT_CHUNK] * c->opt[KVC_OPT_BLOCK];
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

int kvc_cache_positions(const kvc_cache *c, uint32_t group, int64_t *pos) {
    if (!c || !pos) return KVC_EINVAL;
    if (group >= kvc_cache_groups(c)) return KVC_ERANGE;
    if (!c->frozen) {
        for (uint32_t i = 0; i < c->cap; i++) pos[i] = -1;
        return KVC_OK;
    }
    memcpy(pos, c->pos + (size_t)group * c->cap, c->cap * sizeof *pos);
    return KVC_OK;
}

int kvc_cache_stats(const kvc_cache *c, kvc_stats *stats) {
    if (!c || !stats) return KVC_EINVAL;
    *stats = c->stats;
    return KVC_OK;
}

const char *kvc_cache_policy_name(const kvc_cache *c) { return c ? c->pol.name : ""; }
