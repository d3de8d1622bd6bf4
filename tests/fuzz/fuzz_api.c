/* API fuzz target. The input decodes into a sequence of calls on one cache at
 * a time: create (shape, mode, dtype, policy, options, or a spec string),
 * options, append/attend/attend_heads or reserve/observe, read, prepare,
 * reset, destroy. After every call the cache is compared with a small
 * reference model: residents per group and their positions, empty slots -1
 * (INDEX) or residents dense in [0, len) (STORE), the stored K/V rows, the
 * attention output (f64 reference), sinks and recent tokens never evicted,
 * evictions in whole aligned blocks, counters, and failing calls leaving the
 * cache exactly as it was. One "policy" is written by the input itself and
 * plays the hostile author: bad victim sets, errors, NaN scores, odd state
 * sizes, optional slots missing. An allocator that fails on demand covers
 * out-of-memory paths and checks that destroy frees everything. */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz_util.h"
#include "kvc.h"

enum { MAX_KV = 3, MAX_RATIO = 9, MAX_Q = MAX_KV * MAX_RATIO, MAX_D = 130, MAX_CAP = 160, MAX_G = MAX_KV,
       POL_HOSTILE = 14, N_POL = 15 };

/* option keys, from the header's one table */
#define FZ_OPT_KEY(name, value, key, min, max, choices, doc) key,
static const char *const opt_names[] = {KVC_OPTION_LIST(FZ_OPT_KEY)};
#define N_OPT ((int)(sizeof opt_names / sizeof opt_names[0]))

static fz_reader R;
static uint8_t u8(void) { return fz_u8(&R); }

/* ------------------------------------------------------------- allocator */

typedef struct {
    unsigned long calls, fail_at; /* fail the fail_at-th call (1-based); 0: never */
    long live;
} fz_alloc;

static void *a_alloc(void *o, size_t size, size_t align) {
    fz_alloc *a = o;
    FZ_CHECK(align && !(align & (align - 1)) && align <= 4096, "alignment %zu", align);
    a->calls++;
    if (a->fail_at && a->calls == a->fail_at) return NULL;
    if (size > ((size_t)1 << 30)) return NULL; /* what a real allocator does with absurd sizes */
    void *p = aligned_alloc(align, (size + align - 1) / align * align);
    if (p) a->live++;
    return p;
}

static void a_free(void *o, void *p) {
    fz_alloc *a = o;
    FZ_CHECK(p != NULL, "free(NULL) reached the allocator");
    a->live--;
    free(p);
}

/* ------------------------------------------------------------------ model */

typedef struct {
    uint32_t len;
    kvc_stats st;
    int64_t map[MAX_G][MAX_CAP];
} snap;

typedef struct {
    kvc_cache *c;
    fz_alloc al;
    bool use_al;
    uint32_t nkv, nq, d, cap, G;
    kvc_dtype dt;
    kvc_mode mode;
    int pol;
    float scale;
    bool frozen, evicts;
    uint32_t sink, recent, chunk, block;
    /* tokens since the last reset, in insertion order: seq = index */
    int64_t *tpos;
    float *tk, *tv;
    size_t ntok, tcap;
    int64_t last_pos;
    bool obs_pending;
    snap s; /* state after the last successful check */
} model;

static model M;

/* The hostile policy's configuration and what its last select answered. */
static struct {
    kvc_policy p;
    size_t ssize, ssize2; /* state_size's first answer, and every later one */
    size_t used;          /* its last answer: the block init and fini scribble over */
    int size_calls;
    bool control_called;
    int control_rc;
    bool valid_answer;  /* the last select returned 0 and a valid victim set */
    bool called;
    uint32_t victims[MAX_G][MAX_CAP];
    uint32_t n_victims[MAX_G];
} H;

static const char *const pol_names[N_POL] = {"full",     "window", "sink",    "random",       "h2o",
                                             "tova",     "knorm",  "vatp",    "vase",         "vase_dkv",
                                             "rkv",      "keydiff", "scissorhands", "keyformer", "hostile"};

static long seq_of(int64_t pos) {
    size_t lo = 0, hi = M.ntok;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (M.tpos[mid] < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < M.ntok && M.tpos[lo] == pos ? (long)lo : -1;
}

static bool is_protected(long seq, uint64_t appended) {
    return (uint64_t)seq < M.sink || (uint64_t)seq + M.recent >= appended;
}

/* ------------------------------------------------------------ input data */

static float gen_val(uint32_t *s, int style) {
    *s = *s * 1664525u + 1013904223u;
    int x = (int8_t)(*s >> 24);
    switch (style) {
    case 3: return 1.0f;                /* ties everywhere */
    case 4: return 0.0f;
    case 5: return (float)x * 256.0f;   /* large, still exact in f16 and bf16 */
    case 6: return (float)x * 0x1p-20f; /* f16 subnormals, exact */
    default: return (float)x / 16.0f;   /* exact in every storage type */
    }
}

static void gen(float *out, size_t n) {
    uint32_t s = fz_u16(&R);
    int style = u8() % 8;
    for (size_t i = 0; i < n; i++) out[i] = gen_val(&s, style);
}

/* ------------------------------------------------------ hostile policy */

/* A state_size whose answer may change after the first call: the core must
 * size the block once per freeze and never ask again for that block. */
static size_t h_state_size(const kvc_policy_ctx *ctx) {
    FZ_CHECK(ctx->n_groups == M.G && ctx->capacity == M.cap && ctx->head_dim == M.d, "ctx shape");
    H.used = H.size_calls++ ? H.ssize2 : H.ssize;
    return H.used;
}

static int h_init(void *state, const kvc_policy_ctx *ctx) {
    FZ_CHECK(ctx->rng != NULL && ctx->block >= 1 && ctx->chunk >= 1, "ctx");
    if (H.used && H.used < 4096) memset(state, 0xa5, H.used); /* scribble over all of it */
    uint8_t b = u8();
    return b < 16 ? -(int)(b % 20) : b < 24 ? 7 : 0; /* sometimes fail, with odd codes too */
}

static void h_on_insert(void *state, uint32_t g, uint32_t slot, const kvc_token *tok) {
    (void)state;
    FZ_CHECK(g < M.G && slot < M.cap, "on_insert(%u, %u)", g, slot);
    FZ_CHECK(tok->seq == M.ntok && tok->pos > M.last_pos, "on_insert token seq %llu", (unsigned long long)tok->seq);
    FZ_CHECK(tok->key_norm >= 0 && tok->value_range >= 0 && tok->value_l1 >= 0, "token stats");
}

static void h_on_attend(void *state, uint32_t g, const float *mass, uint32_t n) {
    (void)state;
    FZ_CHECK(g < M.G && n <= M.cap, "on_attend(%u, n %u)", g, n);
    for (uint32_t i = 0; i < n; i++) FZ_CHECK(mass[i] >= 0 && isfinite(mass[i]), "mass[%u] = %g", i, mass[i]);
}

static void h_on_move(void *state, uint32_t g, uint32_t from, uint32_t to) {
    (void)state;
    FZ_CHECK(M.mode == KVC_MODE_STORE && g < M.G && from < M.cap && to < M.cap && from != to, "on_move");
}

static void h_score(void *state, uint32_t g, const uint32_t *slots, uint32_t n, float *keep) {
    (void)state;
    FZ_CHECK(g < M.G && n >= 1 && n <= M.cap, "score(%u, n %u)", g, n);
    static const float odd[] = {NAN, INFINITY, -INFINITY, -0.0f, FLT_MAX, 1e-40f};
    for (uint32_t i = 0; i < n; i++) {
        FZ_CHECK(slots[i] < M.cap, "score slot %u", slots[i]);
        uint8_t b = u8();
        keep[i] = b < 32 ? odd[b % 6] : (float)(b % 7);
    }
}

/* The core's candidates must be exactly the fully occupied, unprotected,
 * aligned units, oldest first; then answer from the input, valid or not. */
static int h_select(void *state, const kvc_select *req, uint32_t *victims) {
    (void)state;
    uint32_t g = req->group, B = req->block, n = req->n_candidates;
    FZ_CHECK(g < M.G && B == M.block && req->n_victims == M.chunk && req->rng, "select request");
    FZ_CHECK(n >= req->n_victims && n <= M.cap / B, "select: %u candidates for %u victims", n, req->n_victims);
    uint64_t appended = M.ntok;
    uint32_t expect = 0;
    for (uint32_t u = 0; u < M.cap / B; u++) {
        bool ok = true;
        for (uint32_t j = 0; j < B; j++) {
            int64_t p = M.s.map[g][u * B + j];
            FZ_CHECK(req->positions[u * B + j] == p, "select: positions[%u] differ", u * B + j);
            if (p < 0 || is_protected(seq_of(p), appended)) ok = false;
        }
        if (ok) expect++;
    }
    FZ_CHECK(n == expect, "select: %u candidates, the model counts %u", n, expect);
    long prev = -1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t c0 = req->candidates[i];
        FZ_CHECK(c0 % B == 0 && c0 < M.cap, "candidate %u", c0);
        long sq = seq_of(M.s.map[g][c0]);
        FZ_CHECK(sq >= 0 && !is_protected(sq, appended), "candidate %u (seq %ld) protected or empty", c0, sq);
        FZ_CHECK(sq > prev, "candidates not in insertion order");
        prev = sq;
    }
    if (req->window_score) {
        double sum = 0;
        for (uint32_t i = 0; i < n; i++) {
            FZ_CHECK(req->window_score[i] >= 0 && isfinite(req->window_score[i]), "window score");
            sum += req->window_score[i];
        }
        FZ_CHECK(fabs(sum - 1.0) < 1e-3, "window scores sum to %g", sum);
    }
    H.called = true;
    H.valid_answer = false;
    uint8_t how = u8();
    uint32_t nv = req->n_victims;
    if (how < 160) {
        /* a valid answer: distinct candidates picked by the input */
        static uint32_t pool[MAX_CAP];
        memcpy(pool, req->candidates, n * sizeof *pool);
        for (uint32_t i = 0; i < nv; i++) {
            uint32_t j = i + u8() % (n - i), t = pool[i];
            pool[i] = pool[j];
            pool[j] = t;
            victims[i] = H.victims[g][i] = pool[i];
        }
        H.n_victims[g] = nv;
        H.valid_answer = true;
        return 0;
    }
    for (uint32_t i = 0; i < nv; i++) victims[i] = req->candidates[i % n];
    switch (how % 5) {
    case 0: return how & 8 ? -(int)(u8() % 20) - 1 : 1 + u8(); /* an error, or a positive code */
    case 1: victims[u8() % nv] = M.cap + u8(); break;          /* out of range */
    case 2: victims[u8() % nv] = UINT32_MAX; break;
    case 3: /* a duplicate, or a slot that is not a candidate (protected, empty or unaligned) */
        if (nv > 1) {
            victims[nv - 1] = victims[0];
        } else {
            uint32_t s = u8() % M.cap, t;
            for (t = 0; t < M.cap; t++) {
                bool cand = false;
                for (uint32_t j = 0; j < n; j++) cand |= req->candidates[j] == (s + t) % M.cap;
                if (!cand) break;
            }
            victims[0] = t < M.cap ? (s + t) % M.cap : M.cap;
        }
        break;
    default: victims[u8() % nv] = u8() % M.cap; break; /* maybe valid by chance */
    }
    /* "maybe valid by chance": decide like the contract says */
    bool ok = true;
    for (uint32_t i = 0; i < nv && ok; i++) {
        bool cand = false;
        for (uint32_t j = 0; j < n; j++) cand |= req->candidates[j] == victims[i];
        for (uint32_t j = 0; j < i; j++) cand &= victims[j] != victims[i];
        ok = cand;
    }
    if (ok) {
        for (uint32_t i = 0; i < nv; i++) H.victims[g][i] = victims[i];
        H.n_victims[g] = nv;
        H.valid_answer = true;
    }
    return 0;
}

static void h_fini(void *state) {
    if (H.used && H.used < 4096) memset(state, 0x5a, H.used);
}

/* Answers from the input: not supported, a result, or an error (listed or stray). */
static int h_control(void *state, int op, void *arg) {
    (void)state, (void)op, (void)arg;
    uint8_t b = u8();
    H.control_called = true;
    H.control_rc = b < 64 ? KVC_ENOTSUP : b < 128 ? 0 : b < 192 ? 1 + b % 5 : -(int)(b % 20) - 1;
    return H.control_rc;
}

static const kvc_policy *hostile(void) {
    uint8_t f = u8(), g = u8();
    static const size_t sizes[] = {0, 1, 8, 100, 4096, (size_t)1 << 33, SIZE_MAX / 2, SIZE_MAX};
    memset(&H, 0, sizeof H);
    H.p.abi_version = KVC_POLICY_ABI;
    H.p.struct_size = sizeof(kvc_policy);
    H.p.name = "hostile";
    H.p.needs = g & 0xff;
    H.p.default_sink = (g >> 5) & 3;
    H.p.default_recent = f & 0x80 ? KVC_RECENT_HALF : (g >> 7);
    H.p.default_chunk = (f >> 5) & 3;
    H.ssize = sizes[(f >> 2) & 7];
    if (f & 1) H.p.state_size = h_state_size;
    if (f & 2) H.p.init = h_init;
    uint8_t o = u8();
    if (o & 1) H.p.on_insert = h_on_insert;
    if (o & 2) H.p.on_attend = h_on_attend;
    if (o & 4) H.p.on_move = h_on_move;
    if (o & 8) H.p.fini = h_fini;
    if (o & 16) H.p.control = h_control;
    if (o & 32)
        H.p.select = h_select;
    else if (o & 64)
        H.p.score = h_score;
    /* neither: never evicts */
    /* o's top bit: later state_size answers differ from the first */
    H.ssize2 = o & 128 ? sizes[((f >> 2) ^ g) & 7] : H.ssize;
    if (!(f & 1)) H.ssize = H.ssize2 = 0;
    H.used = H.ssize;
    /* 8 GiB would really be attempted through libc: only the fuzz allocator refuses it politely */
    if (!M.use_al && H.ssize == (size_t)1 << 33) H.ssize = SIZE_MAX / 2;
    if (!M.use_al && H.ssize2 == (size_t)1 << 33) H.ssize2 = SIZE_MAX / 2;
    return &H.p;
}

/* ----------------------------------------------------------- checking */

static void take(snap *s) {
    memset(s, 0, sizeof *s);
    s->len = kvc_cache_len(M.c);
    FZ_CHECK(kvc_cache_stats(M.c, &s->st) == KVC_OK, "stats");
    uint32_t G = kvc_cache_groups(M.c);
    for (uint32_t g = 0; g < G; g++) FZ_CHECK(kvc_cache_positions(M.c, g, s->map[g]) == KVC_OK, "positions");
}

static void same(const snap *a, const snap *b, const char *what, int rc) {
    FZ_CHECK(a->len == b->len, "%s failed (%d) but changed len %u -> %u", what, rc, a->len, b->len);
    FZ_CHECK(memcmp(&a->st, &b->st, sizeof a->st) == 0, "%s failed (%d) but changed the counters", what, rc);
    FZ_CHECK(memcmp(a->map, b->map, sizeof a->map) == 0, "%s failed (%d) but changed the slot map", what, rc);
}

/* Every resident's stored rows against the model's token (all of them when
 * that is cheap, else the slots whose resident changed). */
static void check_rows(const snap *now, const snap *before) {
    bool all = (size_t)M.cap * M.nkv * M.d <= 4096;
    float k[MAX_D], v[MAX_D];
    for (uint32_t h = 0; h < M.nkv; h++) {
        uint32_t g = M.G == 1 ? 0 : h;
        for (uint32_t s = 0; s < now->len; s++) {
            if (!all && before && before->map[g][s] == now->map[g][s]) continue;
            long sq = seq_of(now->map[g][s]);
            FZ_CHECK(kvc_cache_read(M.c, h, s, k, v) == KVC_OK, "read(%u, %u)", h, s);
            const float *ek = M.tk + ((size_t)sq * M.nkv + h) * M.d, *ev = M.tv + ((size_t)sq * M.nkv + h) * M.d;
            FZ_CHECK(memcmp(k, ek, M.d * 4) == 0 && memcmp(v, ev, M.d * 4) == 0,
                     "head %u slot %u (position %lld): stored rows differ", h, s, (long long)now->map[g][s]);
        }
    }
}

/* Invariants of the current state; `before` (or NULL) is the previous state. */
static void check_state(snap *now, const snap *before) {
    take(now);
    FZ_CHECK(now->len <= M.cap, "len %u > capacity %u", now->len, M.cap);
    for (uint32_t g = 0; g < kvc_cache_groups(M.c); g++) {
        uint32_t n = 0;
        for (uint32_t s = 0; s < M.cap; s++) {
            int64_t p = now->map[g][s];
            if (p < 0) {
                FZ_CHECK(p == -1, "group %u slot %u holds %lld", g, s, (long long)p);
                FZ_CHECK(M.mode == KVC_MODE_INDEX || s >= now->len, "STORE group %u not dense: hole at %u", g, s);
                continue;
            }
            n++;
            FZ_CHECK(M.mode == KVC_MODE_INDEX || s < now->len, "STORE group %u: resident past len at %u", g, s);
            FZ_CHECK(seq_of(p) >= 0, "group %u slot %u holds unknown position %lld", g, s, (long long)p);
            for (uint32_t t = 0; t < s; t++) FZ_CHECK(now->map[g][t] != p, "position %lld twice", (long long)p);
        }
        FZ_CHECK(n == now->len, "group %u holds %u residents, len says %u", g, n, now->len);
    }
    if (M.mode == KVC_MODE_STORE && M.frozen) check_rows(now, before);
}

static void read_options(void) {
    int64_t v[N_OPT];
    for (int i = 0; i < N_OPT; i++) FZ_CHECK(kvc_cache_get(M.c, (kvc_option)i, &v[i]) == KVC_OK, "get");
    M.G = v[KVC_OPT_SCOPE] == KVC_SCOPE_SHARED ? 1 : M.nkv;
    M.sink = (uint32_t)v[KVC_OPT_SINK];
    M.recent = (uint32_t)v[KVC_OPT_RECENT];
    M.chunk = (uint32_t)v[KVC_OPT_CHUNK];
    M.block = (uint32_t)v[KVC_OPT_BLOCK];
    FZ_CHECK(M.chunk >= 1 && M.block >= 1 && M.cap % M.block == 0, "frozen options chunk %u block %u", M.chunk,
             M.block);
    FZ_CHECK(kvc_cache_groups(M.c) == M.G, "groups");
    FZ_CHECK(kvc_cache_max_evictions(M.c) == M.chunk * M.block && M.chunk * M.block <= M.cap, "max_evictions %u x %u",
             M.chunk, M.block);
}

static void on_frozen(void) {
    if (M.frozen) return;
    M.frozen = true;
    read_options();
}

static void model_reset(void) {
    M.ntok = 0;
    M.last_pos = -1;
    M.obs_pending = false;
}

/* --------------------------------------------------------------- calls */

static void destroy(void) {
    if (!M.c) return;
    kvc_cache_destroy(M.c);
    M.c = NULL;
    if (M.use_al) FZ_CHECK(M.al.live == 0, "destroy leaked %ld allocations", M.al.live);
}

static int64_t opt_values(uint8_t b) {
    static const int64_t t[] = {-1, 0, 1, 2, 3, 4, 5, 8, 16, 64, INT64_MAX, INT64_MIN};
    if (b < 12) return t[b];
    if (b < 40) return M.cap / 4;
    if (b < 60) return M.cap / 2;
    if (b < 70) return M.cap;
    if (b < 75) return (int64_t)M.cap + 1;
    return b % 6;
}


static void create(void) {
    destroy();
    uint8_t b = u8();
    /* GQA ratios and head sizes around the kernels' blocking (8 query heads, 16/64 columns) */
    static const uint32_t ratios[] = {1, 2, 3, 4, 8, MAX_RATIO};
    static const uint32_t dims[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 64, 65, 96, 128, MAX_D};
    uint32_t nkv = 1 + b % 3, ratio = ratios[(b / 3) % 6];
    uint32_t d = dims[u8() % 20];
    b = u8();
    uint32_t cap = b < 200 ? 1u + b % 48u : 49u + (uint32_t)(b * 7) % 112u;
    kvc_dtype dt = (kvc_dtype)(u8() % ((int)KVC_DTYPE_Q8 + 1)); /* every storage type */
    kvc_mode mode = (kvc_mode)(u8() % 2);
    int pol = u8() % N_POL;
    uint8_t flags = u8();

    memset(&M.al, 0, sizeof M.al);
    M.use_al = flags & 1;
    if (M.use_al && (flags & 0x30) == 0x30) M.al.fail_at = 1 + u8() % 5;
    kvc_allocator al = {a_alloc, a_free, &M.al};
    const kvc_allocator *alp = M.use_al ? &al : NULL;

    /* now and then an invalid shape: must fail with a clear code and no cache */
    if ((flags & 0xc0) == 0xc0 && (flags & 2)) {
        kvc_cache *c = (kvc_cache *)&M;
        uint8_t which = u8() % 5;
        uint32_t a = which == 0 ? 0 : nkv, q = which == 1 ? nkv * ratio + 1 : which == 2 ? 0 : nkv * ratio;
        uint32_t dd = which == 3 ? 0 : d, cc = which == 4 ? 0 : cap;
        if (q == nkv * ratio + 1 && q % (a ? a : 1) == 0) q = 0;
        int rc = kvc_cache_create(&c, a, q, dd, cc, dt, mode, NULL, alp);
        FZ_CHECK(rc == KVC_EINVAL && c == NULL, "bad shape accepted: %d", rc);
        return;
    }

    /* the token store's rows change size with the shape: start it afresh */
    free(M.tpos), free(M.tk), free(M.tv);
    M.tpos = NULL, M.tk = M.tv = NULL;
    M.tcap = 0;
    M.nkv = nkv;
    M.nq = nkv * ratio;
    M.d = d;
    M.cap = cap;
    M.dt = dt;
    M.mode = mode;
    M.pol = pol;
    M.frozen = false;
    M.scale = 1.0f / sqrtf((float)d);
    M.G = nkv;
    model_reset();
    memset(&M.s, 0, sizeof M.s);

    int rc;
    kvc_cache *c = NULL;
    if (pol != POL_HOSTILE && (flags & 2)) {
        /* a spec string: policy name, then options that may be bad */
        char spec[256];
        int n = snprintf(spec, sizeof spec, "%s", pol_names[pol]);
        uint8_t items = u8() % 4;
        static const char *const extra[] = {"scale", "norm", "reserve", "pool", "bogus", "scope"};
        for (uint8_t i = 0; i < items && n < 200; i++) {
            uint8_t kb = u8();
            const char *key = kb < 140 ? opt_names[kb % N_OPT] : extra[kb % 6];
            uint8_t vb = u8();
            if (strcmp(key, "scope") == 0 && vb & 1)
                n += snprintf(spec + n, sizeof spec - (size_t)n, " scope=%s", vb & 2 ? "shared" : "head");
            else if (strcmp(key, "scale") == 0)
                n += snprintf(spec + n, sizeof spec - (size_t)n, " scale=%g", vb < 200 ? 0.05 * (vb % 40) : -1.0);
            else if (strcmp(key, "norm") == 0 && vb & 1)
                n += snprintf(spec + n, sizeof spec - (size_t)n, " norm=%s", vb & 2 ? "lifetime" : "sum");
            else if (strcmp(key, "reserve") == 0)
                n += snprintf(spec + n, sizeof spec - (size_t)n, " reserve=%g", (vb % 12) / 10.0);
            else
                n += snprintf(spec + n, sizeof spec - (size_t)n, "%s%s=%lld", vb & 0x80 ? "," : " ", key,
                              (long long)opt_values(u8()));
        }
        rc = kvc_cache_create_spec(&c, nkv, M.nq, d, cap, dt, mode, spec, alp);
        if (rc == KVC_OK) {
            /* the model learns the scale the way the parser should have read it */
            for (const char *s = strstr(spec, "scale="); s; s = strstr(s + 1, "scale="))
                M.scale = (float)strtod(s + 6, NULL);
        }
    } else {
        const kvc_policy *p = pol == POL_HOSTILE ? hostile() : kvc_policy_by_name(pol_names[pol]);
        rc = kvc_cache_create(&c, nkv, M.nq, d, cap, dt, mode, p, alp);
    }
    if (rc != KVC_OK) {
        FZ_CHECK(c == NULL, "failed create left a cache");
        FZ_CHECK(rc == KVC_ENOMEM || rc == KVC_ERANGE || rc == KVC_EUNKNOWN || rc == KVC_ESYNTAX,
                 "create: unexpected %d", rc);
        if (M.use_al) FZ_CHECK(M.al.live == 0, "failed create leaked %ld allocations", M.al.live);
        return;
    }
    M.c = c;
    FZ_CHECK(strcmp(kvc_cache_policy_name(c), pol_names[pol]) == 0, "policy name");
    M.evicts = pol == POL_HOSTILE ? (H.p.select || H.p.score) : pol != 0;
    check_state(&M.s, NULL);
    FZ_CHECK(M.s.len == 0, "new cache not empty");
}

/* What a KVC_DTYPE_Q8 cache stores for a row: its values quantised with
 * the documented rule, read back as scale * q_i. */
static void q8_round_trip(const float *x, float *out, uint32_t d) {
    unsigned char row[MAX_D + 8];
    FZ_CHECK(kvc_row_bytes(KVC_DTYPE_Q8, d) <= sizeof row && kvc_quantize_q8(x, d, row) == KVC_OK, "quantize");
    float s;
    memcpy(&s, row + ((d + 3) & ~3u), sizeof s);
    for (uint32_t i = 0; i < d; i++) out[i] = s * (float)(int8_t)row[i];
}

static void push_token(int64_t pos, const float *k, const float *v) {
    size_t row = (size_t)M.nkv * M.d;
    if (M.ntok == M.tcap) {
        M.tcap = M.tcap ? M.tcap * 2 : 64;
        M.tpos = realloc(M.tpos, M.tcap * sizeof *M.tpos);
        M.tk = realloc(M.tk, M.tcap * row * sizeof *M.tk);
        M.tv = realloc(M.tv, M.tcap * row * sizeof *M.tv);
        FZ_CHECK(M.tpos && M.tk && M.tv, "out of memory in the model");
    }
    M.tpos[M.ntok] = pos;
    memcpy(M.tk + M.ntok * row, k, row * sizeof *k);
    memcpy(M.tv + M.ntok * row, v, row * sizeof *v);
    if (M.dt == KVC_DTYPE_Q8 && M.mode == KVC_MODE_STORE) /* the model holds what the cache holds */
        for (uint32_t h = 0; h < M.nkv; h++) {
            q8_round_trip(k + (size_t)h * M.d, M.tk + M.ntok * row + (size_t)h * M.d, M.d);
            q8_round_trip(v + (size_t)h * M.d, M.tv + M.ntok * row + (size_t)h * M.d, M.d);
        }
    M.ntok++;
}

/* A successful append/reserve of `pos`: check the transition before -> now. */
static void check_insert(const snap *before, snap *now, int64_t pos, const uint32_t *slots, const int64_t *evicted,
                         bool kv_given, const float *k, const float *v) {
    uint64_t appended = M.ntok; /* seq of the new token */
    float zero[MAX_KV * MAX_D] = {0};
    push_token(pos, kv_given ? k : zero, kv_given ? v : zero);
    check_state(now, before);
    bool full = before->len == M.cap;
    uint32_t n_ev = full ? M.chunk * M.block : 0, B = M.block;
    FZ_CHECK(now->len == (full ? M.cap - n_ev : before->len) + 1, "len %u after insert into %u", now->len,
             before->len);
    uint32_t max_ev = M.chunk * M.block;
    for (uint32_t g = 0; g < M.G; g++) {
        const int64_t *a = before->map[g], *b = now->map[g];
        uint32_t ev_slots[MAX_CAP], ne = 0, found = 0;
        for (uint32_t s = 0; s < M.cap; s++) {
            if (a[s] < 0) continue;
            bool kept = false;
            for (uint32_t t = 0; t < M.cap && !kept; t++) kept = b[t] == a[s];
            if (!kept) ev_slots[ne++] = s;
        }
        for (uint32_t s = 0; s < M.cap; s++) found += b[s] == pos;
        FZ_CHECK(found == 1, "new position in group %u %u times", g, found);
        FZ_CHECK(ne == n_ev, "group %u evicted %u tokens, expected %u", g, ne, n_ev);
        if (M.mode == KVC_MODE_STORE)
            FZ_CHECK(b[now->len - 1] == pos, "STORE: new token not in the last slot");
        else
            FZ_CHECK(slots[g] < M.cap && b[slots[g]] == pos, "reserve: slot %u of group %u", slots[g], g);
        /* protection, and whole aligned blocks */
        uint32_t per_block[MAX_CAP] = {0};
        for (uint32_t i = 0; i < ne; i++) {
            long sq = seq_of(a[ev_slots[i]]);
            FZ_CHECK(!is_protected(sq, appended), "group %u evicted protected token seq %ld (sink %u recent %u, %llu)",
                     g, sq, M.sink, M.recent, (unsigned long long)appended);
            per_block[ev_slots[i] / B]++;
        }
        for (uint32_t u = 0; u < M.cap / B; u++)
            FZ_CHECK(per_block[u] == 0 || per_block[u] == B, "group %u: block %u partly evicted", g, u);
        if (M.mode == KVC_MODE_INDEX) {
            /* nothing moves: residents keep their slots */
            for (uint32_t s = 0; s < M.cap; s++) {
                bool was_evicted = false;
                for (uint32_t i = 0; i < ne; i++) was_evicted |= ev_slots[i] == s;
                if (a[s] >= 0 && !was_evicted) FZ_CHECK(b[s] == a[s], "INDEX: slot %u of group %u changed", s, g);
                if (was_evicted) FZ_CHECK(b[s] == -1 || b[s] == pos, "INDEX: evicted slot %u reused wrongly", s);
            }
            if (evicted) {
                const int64_t *e = evicted + (size_t)g * max_ev;
                for (uint32_t i = 0; i < max_ev; i++) {
                    if (i >= ne) {
                        FZ_CHECK(e[i] == -1, "evicted[%u] padding is %lld", i, (long long)e[i]);
                        continue;
                    }
                    bool ok = false;
                    for (uint32_t j = 0; j < ne; j++) ok |= a[ev_slots[j]] == e[i];
                    for (uint32_t j = 0; j < i; j++) ok &= e[j] != e[i];
                    FZ_CHECK(ok, "evicted[%u] = %lld is not an evicted position", i, (long long)e[i]);
                }
            }
        }
        /* window and sink evict the oldest unprotected tokens */
        if ((M.pol == 1 || M.pol == 2) && B == 1 && ne) {
            long max_ev_seq = -1;
            for (uint32_t i = 0; i < ne; i++) {
                long sq = seq_of(a[ev_slots[i]]);
                max_ev_seq = sq > max_ev_seq ? sq : max_ev_seq;
            }
            for (uint32_t s = 0; s < M.cap; s++) {
                if (b[s] < 0 || b[s] == pos) continue;
                long sq = seq_of(b[s]);
                FZ_CHECK(is_protected(sq, appended) || sq > max_ev_seq, "%s kept seq %ld but evicted seq %ld",
                         pol_names[M.pol], sq, max_ev_seq);
            }
        }
        /* the hostile policy's valid answer is exactly what was evicted */
        if (M.pol == POL_HOSTILE && H.p.select && ne) {
            FZ_CHECK(H.n_victims[g] == M.chunk, "hostile victims");
            for (uint32_t i = 0; i < H.n_victims[g]; i++)
                for (uint32_t j = 0; j < B; j++) {
                    bool hit = false;
                    for (uint32_t t = 0; t < ne; t++) hit |= ev_slots[t] == H.victims[g][i] + j;
                    FZ_CHECK(hit, "group %u: victim slot %u was not evicted", g, H.victims[g][i] + j);
                }
        }
    }
    M.last_pos = pos;
    M.s.len = now->len;
    FZ_CHECK(now->st.appends == before->st.appends + 1, "appends counter");
    FZ_CHECK(now->st.evictions == before->st.evictions + (uint64_t)M.G * n_ev, "evictions counter");
    FZ_CHECK(now->st.attends == before->st.attends + (M.mode == KVC_MODE_INDEX && M.obs_pending), "attends counter");
    M.obs_pending = false;
}

/* A failed call: everything as it was. */
static void check_failed(const snap *before, const char *what, int rc) {
    snap now;
    FZ_CHECK(rc < 0 && strcmp(kvc_strerror(rc), "unknown status") != 0, "%s: status %d", what, rc);
    take(&now);
    same(before, &now, what, rc);
}

static int64_t next_pos(void) {
    uint8_t b = u8();
    int64_t step = 1 + (b & 3);
    if (b >= 250) step = (int64_t)1 << 40; /* large gaps are fine */
    return M.last_pos < 0 ? (int64_t)(b >> 6) : M.last_pos + step;
}

static bool needs_stats(void) {
    uint32_t needs = M.pol == POL_HOSTILE ? H.p.needs : kvc_policy_by_name(pol_names[M.pol])->needs;
    return (needs & (KVC_NEED_KEY_STATS | KVC_NEED_VALUE_STATS | KVC_NEED_KEYS | KVC_NEED_VALUES)) != 0;
}

static void op_insert(bool bad) {
    static float k[MAX_KV * MAX_D], v[MAX_KV * MAX_D];
    size_t n = (size_t)M.nkv * M.d;
    gen(k, n);
    gen(v, n);
    int64_t pos = next_pos();
    bool store = M.mode == KVC_MODE_STORE;
    bool give_kv = store || needs_stats() || (u8() & 1);
    int expect = KVC_OK;
    const float *kp = give_kv ? k : NULL, *vp = give_kv ? v : NULL;
    if (bad) {
        uint8_t b = u8() % 6;
        size_t i = u8() % n;
        switch (b) {
        case 0: k[i] = NAN, expect = KVC_ENONFINITE; break;
        case 1: v[i] = -INFINITY, expect = KVC_ENONFINITE; break;
        case 2:
            if (M.last_pos >= 0) {
                pos = M.last_pos - (u8() & 1);
                expect = pos < 0 ? KVC_EINVAL : KVC_EORDER;
            } else {
                pos = -1 - (int64_t)u8();
                expect = KVC_EINVAL;
            }
            break;
        case 3: kp = NULL, expect = store || needs_stats() ? KVC_EINVAL : KVC_OK; break;
        case 4:
            /* finite, but not representable in the storage type */
            if (store && (M.dt == KVC_DTYPE_F16 || M.dt == KVC_DTYPE_BF16)) { /* q8 scales any finite row */
                v[i] = M.dt == KVC_DTYPE_F16 ? 131072.0f : -FLT_MAX;
                expect = KVC_ERANGE;
            } else {
                k[i] = INFINITY, expect = KVC_ENONFINITE;
            }
            break;
        default: expect = KVC_EMODE; break; /* the other mode's call */
        }
        /* k and v not passed, or ignored by an INDEX cache whose policy wants no statistics */
        if ((!give_kv || (!store && !needs_stats())) && (b == 0 || b == 1 || b == 4)) expect = KVC_OK;
    }
    uint32_t slots[MAX_G];
    int64_t evicted[MAX_G * MAX_CAP + 1];
    int64_t *evp = u8() & 1 ? evicted : NULL;
    bool use_store_call = store != (expect == KVC_EMODE);
    snap before = M.s, now;
    H.called = false;
    H.valid_answer = false;
    int rc = use_store_call ? kvc_cache_append(M.c, pos, kp, vp) : kvc_cache_reserve(M.c, pos, kp, vp, slots, evp);
    const char *what = use_store_call ? "append" : "reserve";
    if (expect != KVC_OK) {
        FZ_CHECK(rc == expect, "%s: expected %d, got %d (%s)", what, expect, rc, kvc_cache_last_error(M.c));
        check_failed(&before, what, rc);
        return;
    }
    if (rc == KVC_OK) {
        on_frozen();
        if (M.pol == POL_HOSTILE && H.p.select && before.len == M.cap)
            FZ_CHECK(H.called && H.valid_answer, "hostile select answered badly, yet %s succeeded", what);
        check_insert(&before, &now, pos, slots, evp, kp != NULL, k, v);
        M.s = now;
        return;
    }
    /* failures a valid call may meet: freezing (memory, options, the policy's init), a full cache
     * whose policy never evicts, and the hostile policy's bad answers */
    if (!M.frozen) {
        /* an empty cache evicts nothing: the freeze failed */
        FZ_CHECK(rc == KVC_ENOMEM || rc == KVC_EINVAL || M.pol == POL_HOSTILE, "%s: freezing failed with %d (%s)",
                 what, rc, kvc_cache_last_error(M.c));
        FZ_CHECK(*kvc_cache_last_error(M.c), "freezing failed without a message");
        check_failed(&before, what, rc);
        return;
    }
    if (!(M.pol == POL_HOSTILE && H.called && !H.valid_answer)) {
        FZ_CHECK(rc == KVC_EFULL, "%s: unexpected %d (%s)", what, rc, kvc_cache_last_error(M.c));
        FZ_CHECK(!M.evicts && before.len == M.cap, "%s: EFULL from an evicting policy (%s)", what,
                 kvc_cache_last_error(M.c));
        check_failed(&before, what, rc);
        return;
    }
    FZ_CHECK(*kvc_cache_last_error(M.c), "no message for a rejected victim set");
    /* documented exception: observations pending before the failed reserve reached the policy */
    if (M.mode == KVC_MODE_INDEX && M.obs_pending) {
        before.st.attends++;
        M.s.st.attends++;
        M.obs_pending = false;
    }
    check_failed(&before, what, rc);
}

/* f64 attention over the model's tokens; NaN when the reference overflows or
 * rounding makes the comparison meaningless (the caller then skips it). */
static void reference_out(const float *q, double *out, double *tol) {
    uint32_t ratio = M.nq / M.nkv, d = M.d, n = M.s.len;
    /* documented departures from f32: with Q8 storage the VNNI kernels round
     * each query head to integers (at worst like a stored row, max|q|/254 per
     * element); the BF16 one splits queries in two bf16 */
    const char *isa = kvc_active_isa();
    bool vnni = strcmp(isa, "avx512_vnni") == 0 || strcmp(isa, "avx512_bf16") == 0;
    bool q8_query = M.dt == KVC_DTYPE_Q8 && M.mode == KVC_MODE_STORE && vnni;
    double q_rel = M.dt == KVC_DTYPE_BF16 && strcmp(isa, "avx512_bf16") == 0 ? 0x1p-16 : 0.0;
    for (uint32_t h = 0; h < M.nq; h++) {
        uint32_t kvh = h / ratio, g = M.G == 1 ? 0 : kvh;
        const float *qh = q + (size_t)h * d;
        double q_abs = 0; /* an element's rounding bound when the kernel rounds the query */
        if (q8_query)
            for (uint32_t i = 0; i < d; i++) q_abs = fabs((double)qh[i]) / 254.0 > q_abs ? fabs((double)qh[i]) / 254.0 : q_abs;
        static double logit[MAX_CAP];
        double mx = -INFINITY, err = 0, vmax = 0;
        for (uint32_t s = 0; s < n; s++) {
            long sq = seq_of(M.s.map[g][s]);
            const float *kr = M.tk + ((size_t)sq * M.nkv + kvh) * d;
            double acc = 0, mag = 0, kabs = 0;
            for (uint32_t i = 0; i < d; i++) {
                acc += (double)qh[i] * kr[i];
                mag += fabs((double)qh[i] * kr[i]);
                kabs += fabs((double)kr[i]);
            }
            logit[s] = acc * M.scale;
            double e = (mag * M.scale) * ((d + 2) * FLT_EPSILON + q_rel) + kabs * q_abs * M.scale;
            err = e > err ? e : err;
            mx = logit[s] > mx ? logit[s] : mx;
        }
        double sum = 0;
        for (uint32_t s = 0; s < n; s++) sum += (logit[s] = exp(logit[s] - mx));
        for (uint32_t i = 0; i < d; i++) out[(size_t)h * d + i] = 0;
        for (uint32_t s = 0; s < n; s++) {
            long sq = seq_of(M.s.map[g][s]);
            const float *vr = M.tv + ((size_t)sq * M.nkv + kvh) * d;
            for (uint32_t i = 0; i < d; i++) {
                out[(size_t)h * d + i] += logit[s] / sum * vr[i];
                vmax = fabs(vr[i]) > vmax ? fabs(vr[i]) : vmax;
            }
        }
        tol[h] = err > 0.05 ? NAN : vmax * (4 * err + (n + 8) * 4 * FLT_EPSILON) + 1e-30;
    }
}

static void op_attend(bool bad, bool split) {
    static float q[MAX_Q * MAX_D], out[MAX_Q * MAX_D];
    static double ref[MAX_Q * MAX_D], tol[MAX_Q];
    size_t n = (size_t)M.nq * M.d;
    gen(q, n);
    for (size_t i = 0; i < n; i++) out[i] = 12345.0f;
    int expect = KVC_OK;
    bool may_overflow = false;
    float *op = out;
    if (M.mode != KVC_MODE_STORE)
        expect = KVC_EMODE;
    else if (bad) {
        uint8_t b = u8() % 4;
        if (b == 0) q[u8() % n] = NAN;
        if (b == 1) q[u8() % n] = -INFINITY;
        expect = b == 2 ? KVC_EINVAL : b == 3 ? KVC_OK : KVC_ENONFINITE;
        if (b == 2) op = NULL;
        /* finite, but whether the logits overflow f32 depends on the keys: KVC_OK or KVC_ERANGE */
        if (b == 3)
            for (size_t i = 0; i < n; i++) q[i] = q[i] < 0 ? -FLT_MAX : FLT_MAX;
        may_overflow = b == 3;
    }
    if (expect == KVC_OK && M.s.len == 0) expect = KVC_EEMPTY;
    if (expect == KVC_ENONFINITE && M.s.len == 0) expect = KVC_EEMPTY;
    snap before = M.s, now;
    int rc;
    if (split) {
        uint32_t m = 1 + u8() % M.nkv;
        rc = kvc_cache_attend_heads(M.c, q, op, 0, m);
        if (!rc && m < M.nkv) rc = kvc_cache_attend_heads(M.c, q, op, m, M.nkv);
        if (!rc) {
            uint8_t b = u8();
            if (b < 8) {
                /* a bad range is rejected without side effects */
                uint32_t lo = b & 1 ? M.nkv : 1, hi = b & 1 ? M.nkv + 1 : 1;
                FZ_CHECK(kvc_cache_attend_heads(M.c, q, op, lo, hi) == KVC_ERANGE, "bad head range accepted");
            }
            rc = kvc_cache_attend_finish(M.c, q);
        }
    } else {
        rc = kvc_cache_attend(M.c, q, op);
    }
    if (may_overflow && expect == KVC_OK && rc == KVC_ERANGE) {
        /* refused as a whole: nothing counted, nothing reached the policy (its on_attend checks the masses) */
        FZ_CHECK(*kvc_cache_last_error(M.c), "overflow refused without a message");
        check_failed(&before, "attend (overflow)", rc);
        return;
    }
    if (expect != KVC_OK) {
        FZ_CHECK(rc == expect, "attend: expected %d, got %d", expect, rc);
        if (rc == KVC_ENONFINITE && !split)
            for (size_t i = 0; i < n; i++) FZ_CHECK(out[i] == 12345.0f, "attend wrote output for a NaN query");
        check_failed(&before, "attend", rc);
        return;
    }
    FZ_CHECK(rc == KVC_OK, "attend: %d (%s)", rc, kvc_cache_last_error(M.c));
    reference_out(q, ref, tol);
    for (uint32_t h = 0; h < M.nq; h++) {
        for (uint32_t i = 0; i < M.d; i++) {
            float got = out[(size_t)h * M.d + i];
            FZ_CHECK(isfinite(got), "attend: non-finite output %g (head %u) for finite inputs", got, h);
            if (isnan(tol[h])) continue;
            FZ_CHECK(fabs(got - ref[(size_t)h * M.d + i]) <= tol[h],
                     "attend head %u [%u] = %.9g, f64 reference %.9g (tol %g; dtype %d, isa %s)", h, i, got,
                     ref[(size_t)h * M.d + i], tol[h], (int)M.dt, kvc_active_isa());
        }
    }
    take(&now);
    FZ_CHECK(now.len == before.len && memcmp(now.map, before.map, sizeof now.map) == 0, "attend moved tokens");
    FZ_CHECK(now.st.attends == before.st.attends + 1 && now.st.appends == before.st.appends &&
                 now.st.evictions == before.st.evictions,
             "attend counters");
    M.s = now;
}

static void op_observe(bool bad) {
    static float mass[MAX_CAP + 2];
    uint8_t b = u8();
    uint32_t G = kvc_cache_groups(M.c), g = b < 240 ? b % G : G + b % 3;
    uint32_t n = u8() & 1 ? M.cap : u8() % (M.cap + 2);
    gen(mass, M.cap + 2);
    for (uint32_t i = 0; i < M.cap + 2; i++) mass[i] = fabsf(mass[i]);
    int expect = M.mode != KVC_MODE_INDEX ? KVC_EMODE : (g >= G || n > M.cap) ? KVC_ERANGE : KVC_OK;
    const float *mp = mass;
    if (bad && expect == KVC_OK) {
        uint8_t w = u8() % 4;
        if (w == 3) {
            mp = NULL;
            expect = KVC_EINVAL;
        } else if (n) {
            mass[u8() % n] = w == 0 ? NAN : w == 1 ? INFINITY : -1.0f;
            expect = KVC_ENONFINITE;
        }
    }
    snap before = M.s;
    int rc = kvc_cache_observe(M.c, g, mp, n);
    FZ_CHECK(rc == expect, "observe(g %u, n %u): expected %d, got %d", g, n, expect, rc);
    if (rc) {
        check_failed(&before, "observe", rc);
        return;
    }
    if (M.frozen) M.obs_pending = true;
    snap now;
    take(&now);
    same(&before, &now, "observe (no change expected)", 0);
}

static void op_reset(void) {
    snap before = M.s, now;
    int rc = kvc_cache_reset(M.c);
    if (rc) {
        /* only a policy whose init fails: the cache unfreezes and starts over */
        FZ_CHECK(M.pol == POL_HOSTILE && M.frozen, "reset: %d", rc);
        M.frozen = false;
    }
    (void)before;
    model_reset();
    check_state(&now, NULL);
    FZ_CHECK(now.len == 0 && now.st.appends == 0 && now.st.evictions == 0 && now.st.attends == 0, "reset");
    M.s = now;
}

static void op_prepare(void) {
    snap before = M.s;
    int rc = kvc_cache_prepare(M.c);
    if (rc == KVC_OK) {
        on_frozen();
        FZ_CHECK(kvc_cache_prepare(M.c) == KVC_OK, "prepare is not idempotent");
        return;
    }
    FZ_CHECK(!M.frozen && (rc == KVC_ENOMEM || rc == KVC_EINVAL || M.pol == POL_HOSTILE), "prepare: %d", rc);
    FZ_CHECK(*kvc_cache_last_error(M.c), "prepare failed without a message");
    check_failed(&before, "prepare", rc);
}

static void op_set(void) {
    uint8_t kb = u8();
    int key = kb % (N_OPT + 2);
    int64_t value = opt_values(u8());
    int64_t old[N_OPT], now[N_OPT];
    for (int i = 0; i < N_OPT; i++) kvc_cache_get(M.c, (kvc_option)i, &old[i]);
    int rc;
    if (kb & 0x80) {
        /* a float option or parameter, as a number */
        static const char *const names[] = {"norm", "reserve", "pool", "nope"};
        const char *nm = names[(kb >> 4) & 3];
        double x = (double)value / 4.0, back;
        rc = kvc_cache_set_param(M.c, nm, x);
        if (rc == KVC_OK) FZ_CHECK(kvc_cache_get_param(M.c, nm, &back) == KVC_OK && back == x, "param round trip");
        key = -1;
    } else if (kb & 0x40) {
        float s = (float)value / 8.0f;
        rc = kvc_cache_set_scale(M.c, s);
        FZ_CHECK(rc != KVC_OK || (s > 0 && !M.frozen), "scale %g accepted", s);
        if (rc == KVC_OK) M.scale = s;
        key = -1;
    } else {
        rc = kvc_cache_set(M.c, (kvc_option)key, value);
    }
    if (M.frozen) FZ_CHECK(rc == KVC_ESTATE || rc == KVC_EUNKNOWN, "option set on a frozen cache: %d", rc);
    for (int i = 0; i < N_OPT; i++) kvc_cache_get(M.c, (kvc_option)i, &now[i]);
    for (int i = 0; i < N_OPT; i++) {
        if (rc == KVC_OK && i == key) {
            FZ_CHECK(now[i] == value, "option %d set to %lld reads %lld", key, (long long)value, (long long)now[i]);
            continue;
        }
        FZ_CHECK(now[i] == old[i], "option %d changed by a set of %d (rc %d)", i, key, rc);
    }
    if (rc == KVC_OK && key == KVC_OPT_SCOPE) M.G = value == KVC_SCOPE_SHARED ? 1 : M.nkv;
    take(&M.s); /* the number of groups may have changed */
    if (rc == KVC_OK && key >= 0) FZ_CHECK(value >= 0 || key == KVC_OPT_SEED, "negative option accepted");
}

static void op_read(void) {
    uint32_t h = u8() % (M.nkv + 1), s = u8() % (M.cap + 1);
    float k[MAX_D], v[MAX_D];
    int rc = kvc_cache_read(M.c, h, s, u8() & 1 ? k : NULL, v);
    int expect = M.mode != KVC_MODE_STORE ? KVC_EMODE : (h >= M.nkv || s >= M.s.len) ? KVC_ERANGE : KVC_OK;
    FZ_CHECK(rc == expect, "read(%u, %u): %d, expected %d", h, s, rc, expect);
    int64_t pos[MAX_CAP];
    FZ_CHECK(kvc_cache_positions(M.c, kvc_cache_groups(M.c), pos) == KVC_ERANGE, "positions: bad group");
}

/* attend_finish without every kv head attended since the last append or finish. */
static void op_finish_misuse(void) {
    static float q[MAX_Q * MAX_D], out[MAX_Q * MAX_D];
    gen(q, (size_t)M.nq * M.d);
    uint32_t k = u8() % (M.nkv + 1); /* heads [0, k) attended first */
    int expect = M.mode != KVC_MODE_STORE ? KVC_EMODE : M.s.len == 0 ? KVC_EEMPTY : k < M.nkv ? KVC_ESTATE : KVC_OK;
    if (M.mode == KVC_MODE_STORE && M.s.len && k)
        FZ_CHECK(kvc_cache_attend_heads(M.c, q, out, 0, k) == KVC_OK, "attend_heads(0, %u)", k);
    snap before = M.s, now;
    int rc = kvc_cache_attend_finish(M.c, q);
    FZ_CHECK(rc == expect, "attend_finish after %u of %u heads: %d, expected %d (%s)", k, M.nkv, rc, expect,
             kvc_cache_last_error(M.c));
    if (rc != KVC_OK) {
        check_failed(&before, "attend_finish", rc);
        return;
    }
    take(&now);
    FZ_CHECK(now.st.attends == before.st.attends + 1, "finish counted no step");
    M.s = now;
    /* the weights are used up: a second finish is refused */
    rc = kvc_cache_attend_finish(M.c, q);
    FZ_CHECK(rc == KVC_ESTATE, "a second attend_finish: %d", rc);
    check_failed(&M.s, "attend_finish (again)", rc);
}

/* kvc_cache_control: ENOTSUP without a control slot (and no freeze); else it
 * freezes, and a policy's negative answer on a cache it froze undoes that. */
static void op_control(void) {
    snap before = M.s;
    bool was_frozen = M.frozen, slot = M.pol == POL_HOSTILE && H.p.control;
    H.control_called = false;
    int op = (int)u8() - 128, rc = kvc_cache_control(M.c, op, NULL);
    int64_t seed;
    FZ_CHECK(kvc_cache_get(M.c, KVC_OPT_SEED, &seed) == KVC_OK, "get seed");
    bool frozen = kvc_cache_set(M.c, KVC_OPT_SEED, seed) == KVC_ESTATE; /* a no-op unless frozen */
    if (!slot) {
        FZ_CHECK(rc == KVC_ENOTSUP && frozen == was_frozen, "control without a slot: %d, frozen %d -> %d", rc,
                 was_frozen, frozen);
        check_failed(&before, "control", rc);
        return;
    }
    if (!H.control_called) { /* the freeze failed */
        FZ_CHECK(!was_frozen && !frozen && rc < 0, "control: %d without calling the policy", rc);
        check_failed(&before, "control (freeze)", rc);
        return;
    }
    FZ_CHECK(rc == H.control_rc, "control returned %d, the policy said %d", rc, H.control_rc);
    FZ_CHECK(frozen == (was_frozen || rc >= 0), "control %d: frozen %d -> %d", rc, was_frozen, frozen);
    if (frozen) on_frozen();
    snap now;
    take(&now);
    same(&before, &now, "control", rc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    R.p = data;
    R.n = size;
    static const char *const isas[] = {"scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "neon"};
    uint8_t isa = u8();
    if (kvc_set_isa(isas[isa % 6]) != KVC_OK) kvc_set_isa("scalar");
    memset(&M, 0, sizeof M);
    M.last_pos = -1;
    unsigned steps = 0;
    while (R.n && steps++ < 4000) {
        if (!M.c) {
            create();
            continue;
        }
        uint8_t op = u8();
        switch (op % 16) {
        case 0: case 1: case 2: case 3: case 4: op_insert(false); break;
        case 5: op_insert(true); break;
        case 6: case 7: op_attend(false, false); break;
        case 8: op_attend(op & 0x10, true); break;
        case 9: op_attend(true, false); break;
        case 10: op_observe(op & 0x10); break;
        case 11: op_reset(); break;
        case 12: op_prepare(); break;
        case 13: op_set(); break;
        case 14: if (op & 0x10) op_control(); else op_read(); break;
        default:
            if ((op & 0x30) == 0x30) op_finish_misuse();
            else if (op & 0x10) destroy();
            else op_observe(false);
            break;
        }
        if (M.c && M.frozen && (op & 0xe0) == 0xe0) {
            /* a dense run of appends: fills the cache quickly */
            for (int i = 0; i < 8 && R.n; i++) op_insert(false);
        }
    }
    destroy();
    free(M.tpos);
    free(M.tk);
    free(M.tv);
    memset(&M, 0, sizeof M);
    return 0;
}
