/* Regression tests for the holes found by the v0.1.0 adversarial review:
 * each test failed (or crashed) before its fix. */
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kvc.h"
#include "test.h"

/* A layout whose offsets wrap size_t must be refused: the kernels would
 * form those offsets and read (or write) somewhere else entirely. The
 * strides below wrap to small offsets, so before the check they "worked". */
TEST(regress_attention_layout_overflow) {
    float q[8] = {0}, out[8], w[16];
    float kv[64] = {0};
    const size_t half = SIZE_MAX / 2 + 1, quarter = half / 2; /* 2^63, 2^62 on 64-bit */
    const kvc_attn_layout ok = {2, 1, 4, 3, KVC_DTYPE_F32, 4, 12, 0.0f};
    kvc_attn_layout L = ok;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, w, 3), KVC_OK);
    /* the review's case: (n_keys - 1) * row_stride = 2 * 2^63 wraps to 0 */
    L.row_stride = half;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_EOVERFLOW);
    L.n_q_heads = 2, L.n_kv_heads = 2, L.head_stride = 16;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_EOVERFLOW);
    /* elements fit, bytes do not: 2 * 2^62 floats */
    L = ok, L.row_stride = quarter;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_EOVERFLOW);
    L.dtype = KVC_DTYPE_F16;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_EOVERFLOW);
    /* the head stride: head 1 at 2^62 + 16 floats wraps to 64 bytes */
    L = ok, L.n_kv_heads = 2, L.n_q_heads = 2, L.head_stride = quarter + 16;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_EOVERFLOW);
    CHECK_EQ(kvc_attention_heads(&L, 0, 1, q, kv, kv, out, NULL, 0), KVC_EOVERFLOW);
    /* the weights rows: row 1 at 2^62 floats wraps onto row 0 */
    L = ok;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, w, quarter), KVC_EOVERFLOW);
    CHECK_EQ(kvc_attention_heads(&L, 0, 1, q, kv, kv, out, w, quarter), KVC_EOVERFLOW);
    /* a stride that is never applied cannot overflow: one key, one kv head */
    L = ok, L.n_keys = 1, L.row_stride = SIZE_MAX, L.head_stride = SIZE_MAX;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, w, 1), KVC_OK);
}

/* ------------------------------------------------------------------ */
/* An allocator that puts a guard zone after every block and checks it on
 * free, so an overflowing write fails the test even without ASan. */
enum { GUARD = 64, MAX_BLOCKS = 64 };
static struct {
    void *p[MAX_BLOCKS];
    size_t size[MAX_BLOCKS];
    int live, smashed;
} g_al;

static void *guard_alloc(void *o, size_t size, size_t align) {
    (void)o;
    if (size > ((size_t)1 << 28)) return NULL;
    for (int i = 0; i < MAX_BLOCKS; i++)
        if (!g_al.p[i]) {
            unsigned char *p = aligned_alloc(align, (size + GUARD + align - 1) / align * align);
            if (!p) return NULL;
            memset(p + size, 0xcd, GUARD);
            g_al.p[i] = p, g_al.size[i] = size, g_al.live++;
            return p;
        }
    return NULL;
}
static void guard_free(void *o, void *ptr) {
    (void)o;
    for (int i = 0; i < MAX_BLOCKS; i++)
        if (g_al.p[i] == ptr) {
            const unsigned char *p = ptr;
            for (size_t j = 0; j < GUARD; j++) g_al.smashed += p[g_al.size[i] + j] != 0xcd;
            free(ptr);
            g_al.p[i] = NULL, g_al.live--;
            return;
        }
    g_al.smashed += 1000; /* not ours */
}
static const kvc_allocator guard_allocator = {guard_alloc, guard_free, NULL};

/* A user policy whose answers are set by the test. */
static struct {
    size_t sizes[4]; /* state_size answers, the last one repeats */
    int n_size_calls;
    int init_rc_at;  /* init call (1-based) that fails, 0: none */
    int init_calls, fini_calls, held; /* resources acquired by init, released by fini */
    int attend_calls, bad_mass;
    int control_rc;
} up;

static size_t up_state_size(const kvc_policy_ctx *ctx) {
    (void)ctx;
    int i = up.n_size_calls++;
    return up.sizes[i < 4 ? i : 3];
}
static int up_init(void *state, const kvc_policy_ctx *ctx) {
    (void)ctx;
    memset(state, 0x11, up.sizes[0]); /* all of the block it asked for first */
    up.init_calls++;
    up.held++; /* acquired: fini must release it, also when init then fails */
    return up.init_calls == up.init_rc_at ? KVC_ENOMEM : KVC_OK;
}
static void up_fini(void *state) {
    (void)state;
    up.fini_calls++;
    up.held--;
}
static void up_on_attend(void *state, uint32_t group, const float *mass, uint32_t n) {
    (void)state, (void)group;
    up.attend_calls++;
    for (uint32_t i = 0; i < n; i++) up.bad_mass += !(mass[i] >= 0.0f && mass[i] <= 1.0f);
}
static void up_score(void *state, uint32_t group, const uint32_t *slots, uint32_t n, float *keep) {
    (void)state, (void)group, (void)slots;
    for (uint32_t i = 0; i < n; i++) keep[i] = 0.0f;
}

static int up_control(void *state, int op, void *arg) {
    (void)state, (void)op, (void)arg;
    return up.control_rc;
}

static kvc_policy up_policy(void) {
    kvc_policy p = {0};
    p.abi_version = KVC_POLICY_ABI;
    p.struct_size = sizeof p;
    p.name = "user";
    p.needs = KVC_NEED_ATTN;
    p.state_size = up_state_size;
    p.init = up_init;
    p.fini = up_fini;
    p.on_attend = up_on_attend;
    p.score = up_score;
    return p;
}

static void up_clear(void) { memset(&up, 0, sizeof up); }

static void tok(float *x, size_t n, int t) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((t * 5 + (int)i * 3) % 7) / 4.0f - 0.7f;
}

/* Item 1: reset asked state_size again and cleared that many bytes of the
 * block sized at prepare: a growing answer overflowed the heap, SIZE_MAX
 * crashed. The size is now the one from prepare, for the cache's life. */
TEST(regress_reset_keeps_state_size_from_prepare) {
    static const size_t later[] = {4096, 100000, SIZE_MAX};
    for (size_t i = 0; i < sizeof later / sizeof later[0]; i++) {
        up_clear();
        memset(&g_al, 0, sizeof g_al);
        up.sizes[0] = 64, up.sizes[1] = up.sizes[2] = up.sizes[3] = later[i];
        kvc_policy p = up_policy();
        kvc_cache *c;
        REQUIRE(kvc_cache_create(&c, 1, 1, 4, 4, KVC_DTYPE_F32, KVC_MODE_STORE, &p, &guard_allocator) == KVC_OK);
        float k[4], v[4];
        for (int t = 0; t < 6; t++) {
            tok(k, 4, t), tok(v, 4, t + 1);
            CHECK_EQ(kvc_cache_append(c, t, k, v), KVC_OK);
        }
        CHECK_EQ(kvc_cache_reset(c), KVC_OK);
        CHECK_EQ(kvc_cache_reset(c), KVC_OK);
        CHECK_EQ(kvc_cache_append(c, 0, k, v), KVC_OK);
        kvc_cache_destroy(c);
        CHECKF(g_al.smashed == 0, "state_size %zu after prepare: %d guard bytes overwritten", later[i], g_al.smashed);
        CHECK_EQ(g_al.live, 0);
        CHECK_EQ(up.init_calls, 3);
        CHECK_EQ(up.fini_calls, 3);
    }
}

/* Item 2: a reset whose init fails must still call fini on that state (as
 * prepare does, and as kvc.h says), or what init acquired leaks. */
TEST(regress_reset_init_failure_calls_fini) {
    for (int mode = 0; mode < 2; mode++) {
        up_clear();
        up.sizes[0] = up.sizes[1] = up.sizes[2] = up.sizes[3] = 32;
        up.init_rc_at = 2; /* the first reset */
        kvc_policy p = up_policy();
        kvc_cache *c;
        REQUIRE(kvc_cache_create(&c, 1, 1, 4, 4, KVC_DTYPE_F32, (kvc_mode)mode, &p, NULL) == KVC_OK);
        CHECK_EQ(kvc_cache_prepare(c), KVC_OK);
        CHECK_EQ(kvc_cache_reset(c), KVC_ENOMEM);
        CHECKF(up.held == 0, "mode %d: init acquired %d, fini released %d", mode, up.init_calls, up.fini_calls);
        CHECK_EQ(kvc_cache_prepare(c), KVC_OK); /* the documented recovery: freezes again */
        kvc_cache_destroy(c);
        CHECK_EQ(up.held, 0);
        CHECK_EQ(up.init_calls, up.fini_calls);
    }
}

/* Found by the contract harness: kvc_cache_control froze the cache before it
 * learned that the policy has no control slot (KVC_ENOTSUP), and a control op
 * that failed on a cache it had frozen left it frozen. */
TEST(regress_failed_control_changes_nothing) {
    kvc_cache *c;
    REQUIRE(kvc_cache_create_spec(&c, 1, 1, 4, 4, KVC_DTYPE_F32, KVC_MODE_STORE, "window", NULL) == KVC_OK);
    CHECK_EQ(kvc_cache_control(c, 1, NULL), KVC_ENOTSUP);
    CHECK_EQ(kvc_cache_set(c, KVC_OPT_SINK, 1), KVC_OK); /* not frozen */
    kvc_cache_destroy(c);
    up_clear();
    up.sizes[0] = up.sizes[1] = up.sizes[2] = up.sizes[3] = 16;
    kvc_policy p = up_policy();
    p.control = up_control;
    REQUIRE(kvc_cache_create(&c, 1, 1, 4, 4, KVC_DTYPE_F32, KVC_MODE_STORE, &p, NULL) == KVC_OK);
    up.control_rc = KVC_EINVAL;
    CHECK_EQ(kvc_cache_control(c, 1, NULL), KVC_EINVAL);
    CHECK_EQ(kvc_cache_set(c, KVC_OPT_SINK, 1), KVC_OK); /* the freeze was undone */
    CHECK_EQ(up.held, 0);
    up.control_rc = 7; /* an answer, not a failure: the cache stays frozen */
    CHECK_EQ(kvc_cache_control(c, 1, NULL), 7);
    CHECK_EQ(kvc_cache_set(c, KVC_OPT_SINK, 0), KVC_ESTATE);
    up.control_rc = KVC_EINVAL; /* on a cache frozen before: nothing to undo */
    CHECK_EQ(kvc_cache_control(c, 1, NULL), KVC_EINVAL);
    CHECK_EQ(kvc_cache_set(c, KVC_OPT_SINK, 0), KVC_ESTATE);
    kvc_cache_destroy(c);
    CHECK_EQ(up.held, 0);
    CHECK_EQ(up.init_calls, 2);
}

/* Item 5: attend_finish on a cache that never froze said "q and out must
 * not be NULL" (KVC_EINVAL); it is an empty cache, as for kvc_cache_attend(). */
TEST(regress_attend_finish_before_freeze_is_empty) {
    kvc_cache *c;
    REQUIRE(kvc_cache_create_spec(&c, 2, 4, 4, 8, KVC_DTYPE_F32, KVC_MODE_STORE, "h2o", NULL) == KVC_OK);
    float q[16] = {0}, out[16];
    CHECK_EQ(kvc_cache_attend_finish(c, q), KVC_EEMPTY);
    CHECK(strstr(kvc_cache_last_error(c), "empty") != NULL);
    CHECK_EQ(kvc_cache_attend(c, q, out), KVC_EEMPTY);
    CHECK_EQ(kvc_cache_prepare(c), KVC_OK);
    CHECK_EQ(kvc_cache_attend_finish(c, q), KVC_EEMPTY);
    CHECK_EQ(kvc_cache_attend_finish(c, NULL), KVC_EINVAL);
    kvc_cache_destroy(c);
}

/* Item 6: finite K and q whose logits (or whose weighted sum of V) overflow
 * f32 made attend return KVC_OK with NaN output and hand NaN masses to the
 * policy. Now: KVC_ERANGE, nothing reaches the policy, nothing counted. */
TEST(regress_attend_overflow_rejected) {
    static const float big_k[] = {1e30f, 1e20f, 3e38f};
    static const float big_v[] = {1.0f, 1.0f, 3e38f};
    for (int split = 0; split < 2; split++)
        for (int scope = 0; scope < 2; scope++)
            for (int c_i = 0; c_i < 3; c_i++) {
                up_clear();
                up.sizes[0] = up.sizes[1] = up.sizes[2] = up.sizes[3] = 16;
                kvc_policy p = up_policy();
                kvc_cache *c;
                REQUIRE(kvc_cache_create(&c, 2, 4, 4, 8, KVC_DTYPE_F32, KVC_MODE_STORE, &p, NULL) == KVC_OK);
                CHECK_EQ(kvc_cache_set(c, KVC_OPT_SCOPE, scope), KVC_OK);
                float k[8], v[8], q[16], out[16];
                for (int t = 0; t < 3; t++) {
                    for (int i = 0; i < 8; i++) k[i] = i < 4 ? big_k[c_i] : 0.5f, v[i] = i < 4 ? big_v[c_i] : 0.25f;
                    CHECK_EQ(kvc_cache_append(c, t, k, v), KVC_OK);
                }
                for (int i = 0; i < 16; i++) q[i] = c_i == 2 ? 1e-38f : 1e20f;
                if (c_i == 2) q[0] = q[4] = 0.0f; /* logits 0: equal weights, the sum of V overflows */
                kvc_stats before, after;
                kvc_cache_stats(c, &before);
                int rc;
                if (split) {
                    rc = kvc_cache_attend_heads(c, q, out, 0, 2);
                    if (rc == KVC_OK) rc = kvc_cache_attend_finish(c, q);
                } else {
                    rc = kvc_cache_attend(c, q, out);
                }
                CHECKF(rc == KVC_ERANGE, "case %d split %d scope %d: %d (%s)", c_i, split, scope, rc,
                       kvc_cache_last_error(c));
                CHECKF(up.attend_calls == 0 && up.bad_mass == 0, "case %d: on_attend called %d times, %d bad masses",
                       c_i, up.attend_calls, up.bad_mass);
                kvc_cache_stats(c, &after);
                CHECK(after.attends == before.attends);
                /* kv head 1 alone is finite: its heads still work */
                CHECK_EQ(kvc_cache_attend_heads(c, q, out, 1, 2), KVC_OK);
                for (int i = 8; i < 16; i++) CHECK(isfinite(out[i]));
                kvc_cache_destroy(c);
            }
}

/* Item 7: with block > 1 freezing refused what the documented rule allows
 * (capacity 4, block 2, recent 1). The rule now counts whole blocks:
 * ceil(sink/B) + ceil(recent/B) + chunk <= capacity/B, and every
 * accepted configuration evicts without ever running out of candidates. */
TEST(regress_freeze_rule_with_blocks) {
    const char *pols[] = {"window", "random"};
    int accepted = 0;
    for (uint32_t cap = 1; cap <= 8; cap++)
        for (uint32_t B = 1; B <= cap; B++) {
            if (cap % B) continue;
            for (uint32_t sink = 0; sink <= cap; sink++)
                for (uint32_t recent = 0; recent <= cap; recent++)
                    for (uint32_t chunk = 1; chunk * B <= cap; chunk++)
                        for (int mode = 0; mode < 2; mode++) {
                            uint32_t units = cap / B;
                            int expect = (sink + B - 1) / B + (recent + B - 1) / B + chunk <= units;
                            kvc_cache *c;
                            REQUIRE(kvc_cache_create_spec(&c, 1, 1, 2, cap, KVC_DTYPE_F32, (kvc_mode)mode,
                                                          pols[(sink + recent) % 2], NULL) == KVC_OK);
                            CHECK_EQ(kvc_cache_set(c, KVC_OPT_BLOCK, B), KVC_OK);
                            CHECK_EQ(kvc_cache_set(c, KVC_OPT_SINK, sink), KVC_OK);
                            CHECK_EQ(kvc_cache_set(c, KVC_OPT_RECENT, recent), KVC_OK);
                            CHECK_EQ(kvc_cache_set(c, KVC_OPT_CHUNK, chunk), KVC_OK);
                            int rc = kvc_cache_prepare(c);
                            CHECKF(rc == (expect ? KVC_OK : KVC_EINVAL),
                                   "cap %u block %u sink %u recent %u chunk %u: prepare %d, rule says %s", cap, B,
                                   sink, recent, chunk, rc, expect ? "accept" : "refuse");
                            if (rc == KVC_OK) {
                                accepted++;
                                float kv[2] = {0.5f, -0.5f};
                                uint32_t slot;
                                int64_t ev[8];
                                for (int t = 0; t < 5 * (int)cap; t++) {
                                    rc = mode == KVC_MODE_STORE ? kvc_cache_append(c, t, kv, kv)
                                                                : kvc_cache_reserve(c, t, kv, kv, &slot, ev);
                                    CHECKF(rc == KVC_OK, "cap %u block %u sink %u recent %u chunk %u step %d: %s", cap,
                                           B, sink, recent, chunk, t, kvc_cache_last_error(c));
                                    if (rc) break;
                                }
                            }
                            kvc_cache_destroy(c);
                        }
        }
    CHECK(accepted > 100);
}

/* Item 9: attend_finish without attend_heads handed uninitialised weights to
 * the policy; now every kv head must have been attended since the last
 * finish (or the last change of the residents). */
TEST(regress_attend_finish_needs_every_head) {
    up_clear();
    up.sizes[0] = up.sizes[1] = up.sizes[2] = up.sizes[3] = 16;
    kvc_policy p = up_policy();
    kvc_cache *c;
    REQUIRE(kvc_cache_create(&c, 2, 4, 4, 8, KVC_DTYPE_F32, KVC_MODE_STORE, &p, NULL) == KVC_OK);
    float k[8], v[8], q[16], out[16];
    tok(q, 16, 9);
    for (int t = 0; t < 3; t++) {
        tok(k, 8, t), tok(v, 8, t + 2);
        CHECK_EQ(kvc_cache_append(c, t, k, v), KVC_OK);
    }
    CHECK_EQ(kvc_cache_attend_finish(c, q), KVC_ESTATE); /* nothing attended */
    CHECK(strstr(kvc_cache_last_error(c), "kv head 0") != NULL);
    CHECK_EQ(kvc_cache_attend_heads(c, q, out, 0, 1), KVC_OK);
    CHECK_EQ(kvc_cache_attend_finish(c, q), KVC_ESTATE); /* head 1 missing */
    CHECK(strstr(kvc_cache_last_error(c), "kv head 1") != NULL);
    CHECK_EQ(up.attend_calls, 0);
    CHECK_EQ(kvc_cache_attend_heads(c, q, out, 1, 2), KVC_OK);
    CHECK_EQ(kvc_cache_attend_finish(c, q), KVC_OK);
    CHECK_EQ(up.attend_calls, 2);
    CHECK_EQ(kvc_cache_attend_finish(c, q), KVC_ESTATE); /* consumed */
    /* an append changes the residents: earlier weights no longer apply */
    CHECK_EQ(kvc_cache_attend_heads(c, q, out, 0, 2), KVC_OK);
    CHECK_EQ(kvc_cache_append(c, 3, k, v), KVC_OK);
    CHECK_EQ(kvc_cache_attend_finish(c, q), KVC_ESTATE);
    /* kvc_cache_attend is a whole step: nothing left for a finish */
    CHECK_EQ(kvc_cache_attend(c, q, out), KVC_OK);
    CHECK_EQ(kvc_cache_attend_finish(c, q), KVC_ESTATE);
    kvc_stats st;
    kvc_cache_stats(c, &st);
    CHECK_EQ(st.attends, 2);
    CHECK_EQ(up.bad_mass, 0);
    kvc_cache_destroy(c);
}

/* Item 10: kvc_cache_max_evictions truncated chunk * block to 32 bits
 * before the cache froze (2^16 x 2^16 read 0). It saturates now. */
TEST(regress_max_evictions_saturates) {
    kvc_cache *c;
    REQUIRE(kvc_cache_create(&c, 1, 1, 1, 1u << 30, KVC_DTYPE_F32, KVC_MODE_INDEX, kvc_policy_window(), NULL) ==
            KVC_OK);
    CHECK_EQ(kvc_cache_set(c, KVC_OPT_CHUNK, 1 << 16), KVC_OK);
    CHECK_EQ(kvc_cache_set(c, KVC_OPT_BLOCK, 1 << 16), KVC_OK);
    CHECK(kvc_cache_max_evictions(c) == UINT32_MAX);
    CHECK_EQ(kvc_cache_set(c, KVC_OPT_BLOCK, 1 << 14), KVC_OK);
    CHECK(kvc_cache_max_evictions(c) == 1u << 30);
    CHECK_EQ(kvc_cache_set(c, KVC_OPT_BLOCK, 1 << 16), KVC_OK);
    CHECK_EQ(kvc_cache_prepare(c), KVC_EINVAL); /* chunk x block > capacity: never freezes */
    CHECK(kvc_cache_max_evictions(c) == UINT32_MAX);
    kvc_cache_destroy(c);
}

/* Found by the 0.2 fuzz campaign: a query the window remembers meets a key
 * appended after it, and q.k overflows f32 (finite q, finite K, each attend
 * itself in range). The window scores a policy ranks by
 * (kvc_select::window_score) were NaN; they are now the exact softmax
 * (computed in double): all the weight on the overflowing key. The same at
 * prefill (kvc_prefill::score, a window query against a prompt key). */
static struct {
    int selects, prefills, bad;
    float big; /* the weight the big key's unit got */
} ov;

static void ov_check(const float *w, uint32_t n, const int64_t *pos_of, int64_t big_pos) {
    double sum = 0.0;
    for (uint32_t i = 0; i < n; i++) {
        if (!(w[i] >= 0.0f && isfinite(w[i]))) ov.bad++;
        sum += w[i];
        if (pos_of[i] == big_pos) ov.big = w[i];
    }
    if (!(fabs(sum - 1.0) < 1e-4)) ov.bad++;
}

static int ov_select(void *state, const kvc_select *req, uint32_t *victims) {
    (void)state;
    ov.selects++;
    int64_t pos[8];
    for (uint32_t i = 0; i < req->n_candidates && i < 8; i++) pos[i] = req->positions[req->candidates[i]];
    if (req->window_score) ov_check(req->window_score, req->n_candidates, pos, 2);
    for (uint32_t i = 0; i < req->n_victims; i++) victims[i] = req->candidates[i];
    return 0;
}

static int ov_prefill(void *state, const kvc_prefill *req, uint32_t *victims) {
    (void)state;
    ov.prefills++;
    int64_t pos[8];
    for (uint32_t i = 0; i < req->n_tokens && i < 8; i++) pos[i] = req->tokens[i].pos;
    if (req->score) ov_check(req->score, req->n_tokens, pos, 1);
    for (uint32_t i = 0; i < req->n_victims; i++) victims[i] = req->candidates[i];
    return 0;
}

TEST(regress_window_scores_overflow_finite) {
    static const kvc_policy p = {.abi_version = KVC_POLICY_ABI, .struct_size = sizeof(kvc_policy),
                                 .name = "overflow_probe", .needs = KVC_NEED_QUERY_WINDOW,
                                 .select = ov_select, .prefill = ov_prefill};
    for (int dt = 0; dt < 2; dt++) {
        const kvc_dtype dtype = dt ? KVC_DTYPE_Q8 : KVC_DTYPE_F32;
        kvc_cache *c;
        REQUIRE(kvc_cache_create(&c, 1, 1, 4, 4, dtype, KVC_MODE_STORE, &p, NULL) == KVC_OK);
        REQUIRE(kvc_cache_set(c, KVC_OPT_QUERY_WINDOW, 2) == KVC_OK);
        REQUIRE(kvc_cache_set(c, KVC_OPT_RECENT, 1) == KVC_OK);
        memset(&ov, 0, sizeof ov);
        float small[4] = {0.5f, 0.25f, -0.5f, 0.125f}, big[4] = {1e30f, 1e30f, 1e30f, 1e30f};
        float q[4] = {1e20f, 1e20f, 1e20f, 1e20f}, out[4];
        CHECK_EQ(kvc_cache_append(c, 0, small, small), KVC_OK);
        CHECK_EQ(kvc_cache_append(c, 1, small, small), KVC_OK);
        CHECK_EQ(kvc_cache_attend(c, q, out), KVC_OK); /* logits about 1e20: in range */
        CHECK_EQ(kvc_cache_append(c, 2, big, small), KVC_OK); /* q . big = 4e50 overflows f32 */
        CHECK_EQ(kvc_cache_append(c, 3, small, small), KVC_OK);
        CHECK_EQ(kvc_cache_append(c, 4, small, small), KVC_OK); /* full: the probe ranks 0, 1, 2 */
        CHECKF(ov.selects == 1 && ov.bad == 0, "%s decode: %d selects, %d bad window scores", dt ? "q8" : "f32",
               ov.selects, ov.bad);
        CHECKF(ov.big > 0.999f, "decode: the overflowing key got %g of the window", (double)ov.big);
        kvc_cache_destroy(c);
    }
    /* prefill: the last (window) query against an earlier prompt key */
    kvc_cache *c;
    REQUIRE(kvc_cache_create(&c, 1, 1, 4, 4, KVC_DTYPE_F32, KVC_MODE_STORE, &p, NULL) == KVC_OK);
    REQUIRE(kvc_cache_set(c, KVC_OPT_RECENT, 1) == KVC_OK);
    REQUIRE(kvc_cache_set(c, KVC_OPT_PREFILL_MAX, 8) == KVC_OK);
    memset(&ov, 0, sizeof ov);
    float k[6 * 4], q[2 * 4];
    /* a window of 2: token 4's query (big) sees keys 0-4, token 5's all six; key 1 is big */
    for (int i = 0; i < 6 * 4; i++) k[i] = (i / 4 == 1) ? 1e30f : 0.25f;
    for (int i = 0; i < 2 * 4; i++) q[i] = i < 4 ? 1e20f : 0.5f;
    CHECK_EQ(kvc_cache_prefill(c, 0, 6, k, k, q, 2), KVC_OK);
    CHECKF(ov.prefills == 1 && ov.bad == 0, "prefill: %d calls, %d bad scores", ov.prefills, ov.bad);
    CHECKF(ov.big > 0.999f, "prefill: the overflowing key got %g of the window", (double)ov.big);
    kvc_cache_destroy(c);
}

/* Found by the 0.2 fuzz campaign: with block > 1, a compaction moved single
 * slots into the holes of the unit being filled, mixing tokens of different
 * ages in one unit; the newest tokens then sat in both units, the recent
 * window protected both, and the next reserve of an evicting policy failed
 * with KVC_EFULL (capacity 10, block 5, recent 5). Compaction now moves
 * whole units, each resident keeping its offset. */
TEST(regress_compact_moves_whole_units) {
    kvc_cache *c;
    REQUIRE(kvc_cache_create_spec(&c, 1, 1, 2, 10, KVC_DTYPE_F32, KVC_MODE_INDEX, "h2o block=5 recent=5 sink=0", NULL) ==
            KVC_OK);
    uint32_t slot, n_moves, freed;
    kvc_move moves[10];
    int64_t p = 0;
    for (; p < 12; p++) REQUIRE(kvc_cache_reserve(c, p, NULL, NULL, &slot, NULL) == KVC_OK);
    CHECK_EQ(kvc_cache_len(c), 7u); /* unit 0: 10, 11 and three holes; unit 1: 5-9 */
    CHECK_EQ(kvc_cache_compact(c, 0, 1, moves, &n_moves, &freed), KVC_OK);
    CHECK_EQ(n_moves, 0u); /* both units are in use: nothing to move */
    for (int t = 0; t < 40; t++, p++) {
        int rc = kvc_cache_reserve(c, p, NULL, NULL, &slot, NULL);
        CHECKF(rc == KVC_OK, "reserve %lld after the compaction: %s (%s)", (long long)p, kvc_strerror(rc),
               kvc_cache_last_error(c));
        if (rc) break;
        if (t % 7 == 3) CHECK_EQ(kvc_cache_compact(c, 0, 1, moves, &n_moves, &freed), KVC_OK);
    }
    kvc_cache_destroy(c);

    /* two units evicted at once: the used unit above them moves down whole */
    REQUIRE(kvc_cache_create_spec(&c, 1, 1, 2, 15, KVC_DTYPE_F32, KVC_MODE_INDEX, "h2o block=5 chunk=2 recent=5 sink=0",
                                  NULL) == KVC_OK);
    for (p = 0; p < 16; p++) REQUIRE(kvc_cache_reserve(c, p, NULL, NULL, &slot, NULL) == KVC_OK);
    CHECK_EQ(kvc_cache_len(c), 6u); /* units 0 and 1 evicted, token 15 in slot 0, unit 2 holds 10-14 */
    int64_t before[15], after[15];
    kvc_cache_positions(c, 0, before);
    CHECK_EQ(kvc_cache_compact(c, 0, 5, moves, &n_moves, &freed), KVC_OK);
    kvc_cache_positions(c, 0, after);
    CHECK_EQ(n_moves, 5u);
    CHECK_EQ(freed, 1u); /* the third page of 5 slots */
    for (uint32_t i = 0; i < n_moves && i < 10; i++) {
        CHECKF(moves[i].from == 10 + i && moves[i].to == 5 + i, "move %u: %u -> %u", i, moves[i].from, moves[i].to);
        CHECK(after[5 + i] == before[10 + i] && after[10 + i] == -1);
    }
    CHECK(after[0] == 15);
    for (int t = 0; t < 40; t++, p++) CHECK_EQ(kvc_cache_reserve(c, p, NULL, NULL, &slot, NULL), KVC_OK);
    kvc_cache_destroy(c);
}
