/* API fuzz target. The input decodes into a sequence of calls on one cache at
 * a time: create (shape, mode, dtype, policy, options, or a spec string, with
 * or without create_spec_err's message), options, append/attend/attend_heads
 * or reserve/observe, a whole prompt (prefill, prefill_index, with protect
 * and prefill_max), compaction plans, read, prepare, reset, destroy; also
 * the free kernel (kernel_op.h). After every call the cache is compared with a small
 * reference model: residents per group and their positions, empty slots -1
 * (INDEX) or residents dense in [0, len) (STORE), the stored K/V rows, the
 * attention output (f64 reference), sinks, recent and protected tokens never
 * evicted, evictions in whole aligned blocks, a prefill's kept set (every
 * protected token, in position order, the default rule's choice exactly),
 * compaction moves that make the residents dense, counters, and failing
 * calls leaving the cache exactly as it was (tests/snapshot.c's full
 * snapshot for the prefill and compaction calls). One "policy" is written by the input itself and
 * plays the hostile author: bad victim sets, errors, NaN scores, odd state
 * sizes, optional slots missing. An allocator that fails on demand covers
 * out-of-memory paths and checks that destroy frees everything. */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz_util.h"
#include "kvc.h"
#include "kernel_op.h"
#include "snapshot.h"

enum { MAX_KV = 3, MAX_RATIO = 9, MAX_Q = MAX_KV * MAX_RATIO, MAX_D = 130, MAX_CAP = 160, MAX_G = MAX_KV,
       POL_HOSTILE = 14, N_POL = 16, MAX_PROMPT = 2 * MAX_CAP, MAX_WIN = 24 };

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
    int64_t protect;
    uint32_t high[MAX_G]; /* INDEX: one past the highest slot used since the last compaction, prefill or reset */
    /* the prefill in progress, for the hostile policy's callbacks */
    struct {
        bool active;
        int64_t pos;
        uint32_t n, w;
        const float *scores; /* INDEX: the engine's, G x n; NULL */
    } pf;
    bool in_compact;
    /* tokens since the last reset, in insertion order: seq = index */
    int64_t *tpos;
    float *tk, *tv;
    size_t ntok, tcap;
    int64_t last_pos;
    bool obs_pending;
    snap s; /* state after the last successful check */
} model;

static model M;
static void on_frozen(void);

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
    /* prefill: groups asked, whether an answer was bad (the core must stop there), the valid answers */
    uint32_t pf_calls;
    bool pf_bad;
    uint32_t pf_victims[MAX_G][MAX_PROMPT];
    /* compaction: the moves on_move reported */
    uint32_t n_moves;
    kvc_move moves[MAX_CAP];
} H;

static const char *const pol_names[N_POL] = {"full",     "window", "sink",    "random",       "h2o",
                                             "tova",     "knorm",  "vatp",    "vase",         "vase_dkv",
                                             "rkv",      "keydiff", "scissorhands", "keyformer", "hostile",
                                             "snapkv"};

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
    return (uint64_t)seq < M.sink || (uint64_t)seq + M.recent >= appended || M.tpos[seq] < M.protect;
}

/* Prompt token i of the prefill in progress: protected (sink, protect, the last max(recent, window))? */
static bool pf_protected(uint32_t i) {
    uint32_t tail = M.recent > M.pf.w ? M.recent : M.pf.w;
    return i < M.sink || M.pf.pos + (int64_t)i < M.protect || (uint64_t)i + tail >= M.pf.n;
}

static const kvc_policy *cur_policy(void) {
    return M.pol == POL_HOSTILE ? &H.p : kvc_policy_by_name(pol_names[M.pol]);
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
    if (M.pf.active)
        FZ_CHECK(tok->seq < M.pf.n && tok->pos == M.pf.pos + (int64_t)tok->seq && slot < M.pf.n,
                 "prefill on_insert: slot %u seq %llu pos %lld", slot, (unsigned long long)tok->seq,
                 (long long)tok->pos);
    else
        FZ_CHECK(tok->seq == M.ntok && tok->pos > M.last_pos, "on_insert token seq %llu",
                 (unsigned long long)tok->seq);
    FZ_CHECK(tok->key_norm >= 0 && tok->value_range >= 0 && tok->value_l1 >= 0, "token stats");
}

static void h_on_attend(void *state, uint32_t g, const float *mass, uint32_t n) {
    (void)state;
    FZ_CHECK(g < M.G && n <= M.cap, "on_attend(%u, n %u)", g, n);
    for (uint32_t i = 0; i < n; i++) FZ_CHECK(mass[i] >= 0 && isfinite(mass[i]), "mass[%u] = %g", i, mass[i]);
}

static void h_on_move(void *state, uint32_t g, uint32_t from, uint32_t to) {
    (void)state;
    FZ_CHECK((M.mode == KVC_MODE_STORE || M.in_compact) && g < M.G && from < M.cap && to < M.cap && from != to,
             "on_move(%u, %u -> %u)", g, from, to);
    if (M.in_compact) {
        FZ_CHECK(H.n_moves < M.cap, "compaction: more on_move calls than slots");
        H.moves[H.n_moves].from = from;
        H.moves[H.n_moves++].to = to;
    }
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
/* nv distinct entries of cand[0..n) chosen by the input (a partial
 * Fisher-Yates in pool), written to victims and to the hostile policy's copy. */
static void pick_distinct(const uint32_t *cand, uint32_t n, uint32_t nv, uint32_t *pool, uint32_t *victims,
                          uint32_t *copy) {
    memcpy(pool, cand, n * sizeof *pool);
    for (uint32_t i = 0; i < nv; i++) {
        uint32_t j = i + u8() % (n - i), t = pool[i];
        pool[i] = pool[j];
        pool[j] = t;
        victims[i] = copy[i] = pool[i];
    }
}

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
            FZ_CHECK(req->window_score[i] >= 0 && isfinite(req->window_score[i]), "window score %u of %u: %g", i, n, (double)req->window_score[i]);
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
        pick_distinct(req->candidates, n, nv, pool, victims, H.victims[g]);
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

/* The prefill request must be exactly the prompt, its unprotected tokens as
 * candidates and its window's scores; then answer from the input, valid or not. */
static int h_prefill(void *state, const kvc_prefill *req, uint32_t *victims) {
    (void)state;
    FZ_CHECK(M.pf.active, "the prefill slot was called outside a prefill");
    on_frozen(); /* the call froze the cache: the model reads the options it protects with */
    uint32_t g = req->group, n = req->n_tokens, nv = req->n_victims;
    FZ_CHECK(g < M.G && n == M.pf.n && req->n_window == M.pf.w && nv == n - M.cap && req->rng,
             "prefill request: group %u, %u tokens, window %u, %u victims", g, n, req->n_window, nv);
    uint32_t nc = 0;
    for (uint32_t i = 0; i < n; i++) {
        FZ_CHECK(req->tokens[i].pos == M.pf.pos + (int64_t)i && req->tokens[i].seq == i, "prefill token %u", i);
        if (pf_protected(i)) continue;
        FZ_CHECK(nc < req->n_candidates && req->candidates[nc] == i, "prefill candidate %u: expected token %u", nc, i);
        nc++;
    }
    FZ_CHECK(nc == req->n_candidates && nc >= nv, "prefill: %u candidates (model %u) for %u victims",
             req->n_candidates, nc, nv);
    if (M.mode == KVC_MODE_STORE) {
        FZ_CHECK((req->score != NULL) == (M.pf.w > 0), "prefill scores given without a window, or missing");
        if (req->score) {
            double sum = 0;
            for (uint32_t i = 0; i < n; i++) {
                FZ_CHECK(req->score[i] >= 0 && isfinite(req->score[i]), "prefill score[%u] = %g", i, req->score[i]);
                sum += req->score[i];
            }
            /* each window query's causal softmax sums to 1: so does their mean */
            FZ_CHECK(fabs(sum - 1.0) < 1e-3, "prefill window scores sum to %.9g", sum);
        }
    } else {
        FZ_CHECK((req->score != NULL) == (M.pf.scores != NULL), "prefill_index scores lost or invented");
        if (req->score)
            FZ_CHECK(memcmp(req->score, M.pf.scores + (size_t)g * n, n * sizeof *req->score) == 0,
                     "prefill_index: group %u's scores are not the engine's", g);
    }
    H.pf_calls++;
    uint8_t how = u8();
    if (how < 176) {
        static uint32_t pool[MAX_PROMPT];
        pick_distinct(req->candidates, nc, nv, pool, victims, H.pf_victims[g]);
        return 0;
    }
    H.pf_bad = true;
    if (how % 6 == 5) return 0; /* nothing written: the core's UINT32_MAX fill */
    for (uint32_t i = 0; i < nv; i++) victims[i] = req->candidates[i];
    uint32_t prot = n;
    for (uint32_t i = 0; i < n && prot == n; i++)
        if (pf_protected(i)) prot = i;
    switch (how % 6) {
    case 0: return how & 8 ? -(int)(u8() % 20) - 1 : 1 + u8(); /* an error, or a positive code */
    case 1: victims[u8() % nv] = n + u8(); break;              /* out of range */
    case 2: /* a duplicate (or out of range when there is one victim) */
        if (nv > 1)
            victims[nv - 1] = victims[u8() % (nv - 1)];
        else
            victims[0] = n;
        break;
    case 3: victims[u8() % nv] = prot; break; /* protected (or out of range when nothing is) */
    default: victims[nv - 1] = UINT32_MAX; break;
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
    /* neither: never evicts (in decode) */
    if ((o & 0x60) == 0x60 || (!(o & 0x60) && (g & 0x10))) H.p.prefill = h_prefill;
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
FZ_NOCOV static void check_state(snap *now, const snap *before) {
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
    M.protect = v[KVC_OPT_PROTECT];
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
    memset(M.high, 0, sizeof M.high);
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

/* kvc_cache_create_spec_err into a buffer of a size from the input: on
 * success "", on failure a message that fits (NUL-terminated, nothing past
 * err_size written), the start of what a full buffer gets, and the same
 * status as kvc_cache_create_spec. */
static int create_with_message(kvc_cache **c, const char *spec, const kvc_allocator *alp, bool small) {
    static const size_t sizes[] = {0, 1, 2, 7, 40, 256};
    char err[300], full[300];
    memset(err, 0x7f, sizeof err);
    size_t es = small ? sizes[u8() % 6] : 256;
    bool null_err = es == 0 && (u8() & 1);
    int rc = kvc_cache_create_spec_err(c, M.nkv, M.nq, M.d, M.cap, M.dt, M.mode, spec, alp, null_err ? NULL : err,
                                       es);
    for (size_t i = es; i < sizeof err; i++) FZ_CHECK(err[i] == 0x7f, "create_spec_err wrote past err_size %zu", es);
    if (es && rc == KVC_OK) FZ_CHECK(err[0] == 0, "create_spec_err succeeded with a message: %.*s", (int)es, err);
    if (rc == KVC_OK || !es) return rc;
    FZ_CHECK(memchr(err, 0, es) != NULL, "create_spec_err: message not NUL-terminated in %zu bytes", es);
    FZ_CHECK(es == 1 || err[0] != 0, "create_spec_err failed (%d) without a message", rc);
    if (rc == KVC_ENOMEM) return rc; /* the failing allocator would not fail twice */
    /* the same call again (libc's allocator: the input's may fail the repeat), with a full buffer, and without
     * the message */
    kvc_cache *c2 = NULL;
    int rc2 = kvc_cache_create_spec_err(&c2, M.nkv, M.nq, M.d, M.cap, M.dt, M.mode, spec, NULL, full, sizeof full);
    FZ_CHECK(rc2 == rc && c2 == NULL, "create_spec_err again: %d, first %d", rc2, rc);
    FZ_CHECK(strlen(full) < 256 && strlen(err) == (strlen(full) < es - 1 ? strlen(full) : es - 1) &&
                 strncmp(err, full, strlen(err)) == 0,
             "create_spec_err: '%s' in %zu bytes, '%s' in 300", err, es, full);
    rc2 = kvc_cache_create_spec(&c2, M.nkv, M.nq, M.d, M.cap, M.dt, M.mode, spec, NULL);
    FZ_CHECK(rc2 == rc && c2 == NULL, "create_spec: %d, create_spec_err: %d", rc2, rc);
    return rc;
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
        if (flags & 4)
            rc = create_with_message(&c, spec, alp, flags & 8);
        else
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
    M.evicts = cur_policy()->select || cur_policy()->score;
    check_state(&M.s, NULL);
    FZ_CHECK(M.s.len == 0, "new cache not empty");
}

/* What a KVC_DTYPE_Q8 cache stores for a row: its values quantised with
 * the documented rule, read back as scale * q_i. */
static void q8_round_trip(const float *x, float *out, uint32_t d) {
    unsigned char row[MAX_D + 8];
    FZ_CHECK(kvc_row_bytes(KVC_DTYPE_Q8, d) <= sizeof row && kvc_quantize_q8(x, d, row) == KVC_OK, "quantize");
    float s;
    memcpy(&s, row + ko_scale_off(d), sizeof s);
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
FZ_NOCOV static void check_insert(const snap *before, snap *now, int64_t pos, const uint32_t *slots, const int64_t *evicted,
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
        if (M.mode == KVC_MODE_INDEX && slots[g] >= M.high[g]) M.high[g] = slots[g] + 1;
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
FZ_NOCOV static void reference_out(const float *q, double *out, double *tol) {
    uint32_t ratio = M.nq / M.nkv, d = M.d, n = M.s.len;
    bool q8_query; /* the kernels' documented departures from f32 (kernel_op.h) */
    double q_rel;
    ko_departures(M.dt, &q8_query, &q_rel);
    q8_query = q8_query && M.mode == KVC_MODE_STORE;
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
        tol[h] = ko_tolerance(err, vmax, n);
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

/* ------------------------------------------------- prefill, compaction */

/* Setting an option to the value it has fails only on a frozen cache. */
static bool is_frozen(void) {
    int64_t seed;
    FZ_CHECK(kvc_cache_get(M.c, KVC_OPT_SEED, &seed) == KVC_OK, "get seed");
    return kvc_cache_set(M.c, KVC_OPT_SEED, seed) == KVC_ESTATE;
}

static void full_snap(kvt_snap *s) { kvt_snap_take(M.c, cur_policy(), M.nkv, M.d, s); }

/* A failed call: the full snapshot (options, parameters, counters, maps, rows) and the freeze unchanged. */
static void check_unchanged(kvt_snap *before, bool was_frozen, const char *what, int rc) {
    FZ_CHECK(rc < 0 && strcmp(kvc_strerror(rc), "unknown status") != 0, "%s: status %d", what, rc);
    FZ_CHECK(*kvc_cache_last_error(M.c), "%s failed (%d) without a message", what, rc);
    kvt_snap after;
    char why[160];
    full_snap(&after);
    int eq = kvt_snap_equal(before, &after, why, sizeof why);
    kvt_snap_free(&after);
    kvt_snap_free(before);
    FZ_CHECK(eq, "%s failed (%d: %s) but changed the cache: %s", what, rc, kvc_cache_last_error(M.c), why);
    FZ_CHECK(is_frozen() == was_frozen, "%s failed (%d) but changed the freeze", what, rc);
}

/* The dropped prompt tokens the core's default rule picks: the lowest scores
 * among the candidates (no scores: all equal), the older first on ties. */
static void default_drop(const float *score, bool *drop) {
    uint32_t n = M.pf.n, nv = n - M.cap;
    for (uint32_t i = 0; i < n; i++) drop[i] = false;
    for (uint32_t k = 0; k < nv; k++) {
        long best = -1;
        for (uint32_t i = 0; i < n; i++) {
            if (drop[i] || pf_protected(i)) continue;
            if (best < 0 || (score && score[i] < score[best])) best = i;
        }
        FZ_CHECK(best >= 0, "default rule: no candidate left");
        drop[best] = true;
    }
}

/* kvc_cache_prefill (STORE) or kvc_cache_prefill_index (INDEX), at most one
 * fault per call: into an empty cache (else KVC_ESTATE), options set first
 * when the cache is not frozen yet. */
static void op_prefill(void) {
    static float k[MAX_PROMPT * MAX_KV * MAX_D], v[MAX_PROMPT * MAX_KV * MAX_D], q[MAX_WIN * MAX_Q * MAX_D];
    static float scores[MAX_G * MAX_PROMPT];
    static uint32_t keep[MAX_G * MAX_CAP];
    const bool store = M.mode == KVC_MODE_STORE;
    const kvc_policy *pol = cur_policy();
    const bool was_frozen = is_frozen();
    if (was_frozen) on_frozen();
    uint8_t b = u8();
    if (!was_frozen && (b & 3)) {
        const int64_t pm[] = {0, 1, M.cap / 2, M.cap, M.cap + 1, 2 * M.cap, MAX_PROMPT, 64};
        const int64_t pr[] = {0, 1, 2, M.cap / 2, M.cap, 2 * M.cap, 1 << 20, INT64_MAX};
        if (b & 1) FZ_CHECK(kvc_cache_set(M.c, KVC_OPT_PREFILL_MAX, pm[(b >> 2) & 7]) == KVC_OK, "set prefill_max");
        if (b & 2) FZ_CHECK(kvc_cache_set(M.c, KVC_OPT_PROTECT, pr[(b >> 5) & 7]) == KVC_OK, "set protect");
    }
    int64_t pmax, protect;
    FZ_CHECK(kvc_cache_get(M.c, KVC_OPT_PREFILL_MAX, &pmax) == KVC_OK &&
                 kvc_cache_get(M.c, KVC_OPT_PROTECT, &protect) == KVC_OK,
             "get");
    uint8_t nb = u8();
    uint32_t n = nb < 80 ? 1 + nb % M.cap : nb < 200 ? M.cap + 1 + nb % (M.cap + 16) : nb < 230 ? (uint32_t)pmax
                                                                                                  : (uint32_t)pmax + 1;
    if (n > MAX_PROMPT) n = MAX_PROMPT;
    uint32_t w = u8() % ((n < MAX_WIN ? n : MAX_WIN) + 1);
    int64_t pos = (u8() & 0x80) ? (int64_t)1 << 40 : (int64_t)(nb & 3);
    uint32_t G = kvc_cache_groups(M.c);
    gen(k, (size_t)n * M.nkv * M.d);
    gen(v, (size_t)n * M.nkv * M.d);
    bool give_kv = store || needs_stats() || (u8() & 1);
    const float *kp = give_kv ? k : NULL, *vp = give_kv ? v : NULL;
    const float *qp = NULL, *sp = NULL;
    if (store && w) {
        gen(q, (size_t)w * M.nq * M.d);
        qp = q;
    }
    if (!store && (u8() % 3)) {
        gen(scores, (size_t)G * n);
        for (size_t i = 0; i < (size_t)G * n; i++) scores[i] = fabsf(scores[i]);
        sp = scores;
    }
    uint32_t *keep_p = keep;
    bool other_mode = false;
    /* one fault, maybe */
    uint8_t fault = u8() % 16;
    size_t row = (size_t)M.nkv * M.d;
    switch (fault) {
    case 0: n = 0; break;
    case 1: w = n + 1; break;
    case 2: kp = NULL; break;
    case 3:
        if (store) qp = w ? NULL : qp;
        else keep_p = NULL;
        break;
    case 4:
        if (kp && n) k[(u8() % n) * row + u8() % row] = NAN;
        break;
    case 5: pos = -1 - (int64_t)u8(); break;
    case 6:
        if (n >= 2) pos = INT64_MAX - (int64_t)(n - 2);
        break;
    case 7:
        if (qp)
            q[u8() % ((size_t)w * M.nq * M.d)] = u8() & 1 ? NAN : -INFINITY;
        else if (sp && n)
            scores[u8() % ((size_t)G * n)] = u8() % 3 == 0 ? NAN : u8() & 1 ? INFINITY : -1.0f;
        break;
    case 8:
        if (store && n && (M.dt == KVC_DTYPE_F16 || M.dt == KVC_DTYPE_BF16))
            v[(u8() % n) * row + u8() % row] = M.dt == KVC_DTYPE_F16 ? -131072.0f : FLT_MAX;
        break;
    case 9: other_mode = true; break;
    default: break;
    }
    /* what the checks before the freeze answer, in the documented order */
    bool need_kv = store || needs_stats();
    int expect = KVC_OK;
    bool kv_fault_nan = fault == 4 && kp && need_kv && n,
         kv_fault_range = fault == 8 && store && n && (M.dt == KVC_DTYPE_F16 || M.dt == KVC_DTYPE_BF16);
    if (other_mode) expect = KVC_EMODE;
    else if (!store && !keep_p) expect = KVC_EINVAL;
    else if (need_kv && (!kp || !vp)) expect = KVC_EINVAL;
    else if (n == 0 || w > n) expect = KVC_EINVAL;
    else if (store && w && !qp) expect = KVC_EINVAL;
    else if (M.ntok) expect = KVC_ESTATE;
    else if (n > pmax) expect = KVC_ERANGE;
    else if (pos < 0) expect = KVC_EINVAL;
    else if (pos > INT64_MAX - (int64_t)(n - 1)) expect = KVC_ERANGE;
    else if (fault == 7 && qp) expect = KVC_ENONFINITE;
    else if (kv_fault_nan) expect = KVC_ENONFINITE;
    else if (kv_fault_range) expect = KVC_ERANGE;
    else if (fault == 7 && sp && n) expect = KVC_ENONFINITE;

    kvt_snap before;
    full_snap(&before);
    snap sbefore;
    take(&sbefore);
    for (size_t i = 0; i < (size_t)MAX_G * MAX_CAP; i++) keep[i] = 0xabababab;
    M.pf.active = true;
    M.pf.pos = pos;
    M.pf.n = n;
    M.pf.w = w;
    M.pf.scores = sp;
    H.pf_calls = 0;
    H.pf_bad = false;
    bool call_store = store != other_mode;
    const char *what = call_store ? "prefill" : "prefill_index";
    int rc = call_store ? kvc_cache_prefill(M.c, pos, n, kp, vp, qp, w)
                        : kvc_cache_prefill_index(M.c, pos, n, kp, vp, sp, w, keep_p);
    M.pf.active = false;
    if (rc != KVC_OK)
        for (size_t i = 0; i < (size_t)MAX_G * MAX_CAP; i++)
            FZ_CHECK(keep[i] == 0xabababab, "%s failed (%d) but wrote keep[%zu]", what, rc, i);
    if (expect != KVC_OK) {
        FZ_CHECK(rc == expect, "%s(n %u, window %u, pos %lld, fault %u): expected %d, got %d (%s)", what, n, w,
                 (long long)pos, fault, expect, rc, kvc_cache_last_error(M.c));
        FZ_CHECK(H.pf_calls == 0, "%s: the policy was asked despite bad input", what);
        check_unchanged(&before, was_frozen, what, rc);
        return;
    }
    if (!is_frozen()) {
        /* the freeze failed: options jointly inconsistent, no memory, or a hostile init */
        FZ_CHECK(!was_frozen && rc != KVC_OK && (rc == KVC_ENOMEM || rc == KVC_EINVAL || M.pol == POL_HOSTILE),
                 "%s: %d (%s) and not frozen", what, rc, kvc_cache_last_error(M.c));
        check_unchanged(&before, was_frozen, what, rc);
        return;
    }
    on_frozen();
    uint32_t K = n < M.cap ? n : M.cap, prot = 0;
    for (uint32_t i = 0; i < n; i++) prot += pf_protected(i);
    int want = KVC_OK;
    if (K < n && !pol->select && !pol->score && !pol->prefill)
        want = KVC_EFULL;
    else if (K < n && prot > M.cap)
        want = KVC_ERANGE;
    if (want != KVC_OK || (M.pol == POL_HOSTILE && H.pf_bad)) {
        FZ_CHECK(rc == want || (want == KVC_OK && rc != KVC_OK), "%s(n %u, cap %u, %u protected): expected %d, got %d (%s)",
                 what, n, M.cap, prot, want, rc, kvc_cache_last_error(M.c));
        if (was_frozen) {
            check_unchanged(&before, true, what, rc);
        } else { /* the call froze the empty cache (as append does), which may resolve options: the rest as it was */
            kvt_snap_free(&before);
            check_failed(&sbefore, what, rc);
        }
        return;
    }
    FZ_CHECK(rc == KVC_OK, "%s(n %u, window %u, cap %u, %u protected): %d (%s)", what, n, w, M.cap, prot, rc,
             kvc_cache_last_error(M.c));
    FZ_CHECK(K == n || M.pol != POL_HOSTILE || !pol->prefill || H.pf_calls == G, "%s: the prefill slot answered %u of %u groups", what,
             H.pf_calls, G);
    kvt_snap_free(&before);

    /* the model takes the whole prompt (insertion index = prompt index) */
    static const float zero[MAX_KV * MAX_D];
    for (uint32_t i = 0; i < n; i++)
        push_token(pos + (int64_t)i, kp ? k + i * row : zero, vp ? v + i * row : zero);
    M.last_pos = pos + (int64_t)n - 1;
    snap now;
    check_state(&now, NULL);
    FZ_CHECK(now.len == K, "%s of %u tokens into capacity %u: len %u", what, n, M.cap, now.len);
    static bool drop[MAX_PROMPT];
    for (uint32_t g = 0; g < G; g++) {
        static bool kept[MAX_PROMPT];
        memset(kept, 0, n);
        for (uint32_t s = 0; s < M.cap; s++) {
            int64_t p = now.map[g][s];
            if (s >= K) {
                FZ_CHECK(p == -1, "%s: group %u slot %u past the kept tokens holds %lld", what, g, s, (long long)p);
                if (!store) FZ_CHECK(keep[(size_t)g * M.cap + s] == UINT32_MAX, "keep[%u] padding", s);
                continue;
            }
            FZ_CHECK(p >= pos && p < pos + (int64_t)n && (s == 0 || p > now.map[g][s - 1]),
                     "%s: group %u slot %u holds %lld: not the prompt's, or not in position order", what, g, s,
                     (long long)p);
            kept[p - pos] = true;
            if (!store)
                FZ_CHECK(keep[(size_t)g * M.cap + s] == (uint32_t)(p - pos), "keep[%u] = %u, slot holds token %lld", s,
                         keep[(size_t)g * M.cap + s], (long long)(p - pos));
        }
        for (uint32_t i = 0; i < n; i++)
            FZ_CHECK(kept[i] || !pf_protected(i), "%s dropped protected token %u (sink %u, protect %lld, recent %u, "
                     "window %u, n %u)", what, i, M.sink, (long long)M.protect, M.recent, w, n);
        if (K == n) continue;
        /* whose choice it was, when the model can tell */
        bool known = true;
        if (M.pol == POL_HOSTILE && pol->prefill) {
            for (uint32_t i = 0; i < n; i++) drop[i] = false;
            for (uint32_t i = 0; i < n - K; i++) drop[H.pf_victims[g][i]] = true;
        } else if (!pol->prefill || M.pol == 1 || M.pol == 2) { /* the default rule; window and sink: the oldest */
            const float *sc = pol->prefill ? NULL : store ? NULL : sp ? sp + (size_t)g * n : NULL;
            if (store && w && !pol->prefill) known = false; /* window scores: not recomputed here */
            else default_drop(sc, drop);
        } else {
            known = false;
        }
        if (known)
            for (uint32_t i = 0; i < n; i++)
                FZ_CHECK(kept[i] != drop[i], "%s (%s): group %u %s token %u against the rule", what, pol->name, g,
                         kept[i] ? "kept" : "dropped", i);
    }
    FZ_CHECK(now.st.appends == sbefore.st.appends + n && now.st.attends == sbefore.st.attends &&
                 now.st.evictions == sbefore.st.evictions + (uint64_t)G * (n - K),
             "%s counters", what);
    if (!store)
        for (uint32_t g = 0; g < G; g++) M.high[g] = K;
    M.s = now;
}

/* kvc_cache_compact: moves from past len into the holes below it, applied to
 * the cache's own map (and reported to the policy), the most recent token
 * untouched, and the pages past the residents counted as the model counts
 * the slots used since the last compaction. */
static void op_compact(void) {
    static kvc_move moves[MAX_CAP + 1];
    uint8_t b = u8();
    uint32_t G = kvc_cache_groups(M.c), g = b < 240 ? b % G : G + b % 3;
    uint8_t pb = u8();
    uint32_t page = pb < 8 ? 0u : pb < 200 ? 1u + pb % 8u : 1u + pb % (M.cap + 4u);
    uint8_t nulls = u8();
    uint32_t n_moves = 12345, freed = 12345;
    kvc_move *mp = nulls < 8 ? NULL : moves;
    uint32_t *np = nulls >= 8 && nulls < 16 ? NULL : &n_moves, *fp = nulls & 0x80 ? NULL : &freed;
    int expect = M.mode != KVC_MODE_INDEX ? KVC_EMODE : !mp || !np || !page ? KVC_EINVAL : g >= G ? KVC_ERANGE
                                                                                                    : KVC_OK;
    kvt_snap before;
    full_snap(&before);
    snap sbefore;
    take(&sbefore);
    const bool was_frozen = is_frozen();
    for (uint32_t i = 0; i <= MAX_CAP; i++) moves[i].from = moves[i].to = 0xcdcdcdcd;
    H.n_moves = 0;
    M.in_compact = true;
    int rc = kvc_cache_compact(M.c, g, page, mp, np, fp);
    M.in_compact = false;
    if (expect != KVC_OK) {
        FZ_CHECK(rc == expect, "compact(group %u, page %u): expected %d, got %d", g, page, expect, rc);
        FZ_CHECK(n_moves == 12345 && freed == 12345 && moves[0].from == 0xcdcdcdcd, "failed compact wrote output");
        FZ_CHECK(H.n_moves == 0, "failed compact moved tokens");
        check_unchanged(&before, was_frozen, "compact", rc);
        return;
    }
    kvt_snap_free(&before);
    FZ_CHECK(rc == KVC_OK, "compact(group %u, page %u): %d (%s)", g, page, rc, kvc_cache_last_error(M.c));
    snap now;
    check_state(&now, NULL);
    /* block > 1: whole units move, each resident keeping its offset; the
     * residents end in the lowest ceil(len / block) units (top = len when block = 1) */
    const uint32_t B = M.block ? M.block : 1;
    uint32_t len = now.len, want_moves = 0, top = (len + B - 1) / B * B;
    for (uint32_t s = top; s < M.cap; s++) want_moves += sbefore.map[g][s] >= 0;
    FZ_CHECK(n_moves == want_moves && n_moves <= M.cap, "compact: %u moves, %u residents past slot %u", n_moves,
             want_moves, top);
    FZ_CHECK(moves[n_moves].from == 0xcdcdcdcd, "compact wrote past n_moves");
    int64_t expect_map[MAX_CAP];
    memcpy(expect_map, sbefore.map[g], sizeof expect_map);
    for (uint32_t i = 0; i < n_moves; i++) {
        uint32_t f = moves[i].from, t = moves[i].to;
        FZ_CHECK(f >= top && f < M.cap && t < top && f % B == t % B, "compact move %u: %u -> %u (len %u, block %u)", i,
                 f, t, len, B);
        FZ_CHECK(expect_map[f] >= 0 && expect_map[t] == -1, "compact move %u -> %u: not a resident into a hole", f, t);
        FZ_CHECK(sbefore.map[g][f] != M.last_pos, "compact moved the most recent token (slot %u)", f);
        expect_map[t] = expect_map[f];
        expect_map[f] = -1;
        if (M.pol == POL_HOSTILE && H.p.on_move)
            FZ_CHECK(i < H.n_moves && H.moves[i].from == f && H.moves[i].to == t, "on_move %u differs from the plan", i);
    }
    if (M.pol == POL_HOSTILE && H.p.on_move) FZ_CHECK(H.n_moves == n_moves, "on_move: %u calls for %u moves", H.n_moves, n_moves);
    FZ_CHECK(memcmp(expect_map, now.map[g], M.cap * sizeof *expect_map) == 0, "compact: the map is not the plan's");
    for (uint32_t s = top; s < M.cap; s++) FZ_CHECK(now.map[g][s] < 0, "compact: group %u has a resident at %u", g, s);
    for (uint32_t u = 0; u < top / B; u++) {
        bool used = false;
        for (uint32_t j = 0; j < B; j++) used |= now.map[g][u * B + j] >= 0;
        FZ_CHECK(used, "compact: group %u, unit %u below %u is empty", g, u, top / B);
    }
    for (uint32_t h = 0; h < G; h++)
        if (h != g) FZ_CHECK(memcmp(now.map[h], sbefore.map[h], sizeof now.map[h]) == 0, "compact moved group %u", h);
    FZ_CHECK(now.len == sbefore.len && memcmp(&now.st, &sbefore.st, sizeof now.st) == 0, "compact: len or counters");
    if (fp) {
        uint32_t want = 0;
        if (was_frozen) {
            uint64_t first = ((uint64_t)top + page - 1) / page, mapped = ((uint64_t)M.high[g] + page - 1) / page;
            want = mapped > first ? (uint32_t)(mapped - first) : 0;
        }
        FZ_CHECK(freed == want, "compact(page %u): %u pages freed, the model says %u (len %u, high %u)", page, freed,
                 want, len, M.high[g]);
    }
    if (was_frozen) M.high[g] = top;
    M.s = now;
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
        case 11:
            if ((op & 0x30) == 0x20) op_reset(); /* then a prompt into the empty cache */
            if (op & 0x20) op_prefill(); else op_reset();
            break;
        case 12: if ((op & 0x30) == 0x30) op_compact(); else op_prepare(); break;
        case 13: op_set(); break;
        case 14: if (op & 0x10) op_control(); else op_read(); break;
        default:
            if ((op & 0x30) == 0x30) op_finish_misuse();
            else if (op & 0x10) destroy();
            else if ((op & 0x30) == 0x20) (op & 0xc0) == 0xc0 ? op_quantize_misuse(&R) : op_kernel(&R);
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
