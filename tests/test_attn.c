/* Attention kernel: every ISA this machine runs, forced one by one, against an
 * f64 reference computed from the very values the kernel reads.
 *
 * Tolerance. Widening f16/bf16 to f32 is exact, so every dtype is held to the
 * same f32-arithmetic bound; the dtype only changes which values are fed in
 * (random f16 bit patterns include subnormals, bf16 patterns span 2^-7..2^0).
 * With u = 2^-24, for query head h:
 *  - a logit s_j = scale*(q.k_j) summed in any order is off by at most
 *    ds_j = (d+2) u S_j, S_j = scale * sum_i |q_i k_ji| (Higham's bound for
 *    any summation order, plus the scale product);
 *  - a probability p_j = exp(s_j - m) / l then has relative error at most
 *    2 max ds_j (its own logit and the normaliser's weighted mean)
 *    + u max|s_j - m| (the subtraction) + 8u (exp polynomial, < 6e-9,
 *    and its roundings) + (TILE + 2 ceil(n/TILE) + 8) u for l: every kernel
 *    sums at most TILE = 64 keys per tile, then folds tiles one by one;
 *  - out_i = sum_j p_j v_ji is then off by at most that relative error times
 *    W_i = sum_j p_j |v_ji|, plus (TILE + 2 ceil(n/TILE) + 4) u W_i for its own
 *    blocked sum.
 * The test allows twice that (first-order bound), plus an absolute floor of
 * FLT_MIN-sized terms where exp underflows (the AVX2/NEON exp flushes values
 * below 1.2e-38 to 0). A wrong tail, mask, correction or conversion gives
 * errors orders of magnitude above it; random inputs land ~100x below.
 *
 * Coverage: every listed d, n, GQA ratio and dtype appears; (d, n) is crossed
 * in full for each dtype, the ratio, alignment offset, strides, query scale
 * and weights on/off rotate with the case index (the code paths they select
 * are independent of d and n). */
#define _DEFAULT_SOURCE
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kvc.h"
#include "test.h"

#define U (1.0 / 16777216.0)
#define TILE 64

static const char *const ISA_NAMES[] = {"scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "neon"};

/* ------------------------------------------------------------ random data */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static float unif(void) { return (float)((double)(rnd() >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0); }

/* Decoders written from the format definitions, independent of the library. */
static double f16_value(uint16_t h) {
    int e = (h >> 10) & 0x1f, man = h & 0x3ff;
    double x = e == 0 ? ldexp(man, -24) : ldexp(1024 + man, e - 25);
    return (h & 0x8000) ? -x : x;
}
static double bf16_value(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* A random finite element of the dtype with |x| < 1. */
static void rand_elem(kvc_dtype dt, void *base, size_t i) {
    if (dt == KVC_DTYPE_Q8) {
        ((int8_t *)base)[i] = (int8_t)((int)(rnd() % 255) - 127);
    } else if (dt == KVC_DTYPE_F32) {
        ((float *)base)[i] = unif();
    } else if (dt == KVC_DTYPE_F16) { /* exponent 0..14: subnormals up to 0.99 */
        uint64_t r = rnd();
        ((uint16_t *)base)[i] = (uint16_t)(((r & 1) << 15) | (((r >> 1) % 15) << 10) | ((r >> 8) & 0x3ff));
    } else { /* exponent 120..126: 2^-7 .. 1 */
        uint64_t r = rnd();
        ((uint16_t *)base)[i] = (uint16_t)(((r & 1) << 15) | ((120 + (r >> 1) % 7) << 7) | ((r >> 8) & 0x7f));
    }
}
/* Element i of the row at element offset `row` (Q8: its value s * q_i, exact in f64). */
static double elem_at(kvc_dtype dt, const void *base, size_t row, size_t i, uint32_t d) {
    if (dt == KVC_DTYPE_Q8) {
        const int8_t *r = (const int8_t *)base + row;
        float sc;
        memcpy(&sc, r + ((d + 3) & ~3u), 4);
        return (double)sc * r[i];
    }
    if (dt == KVC_DTYPE_F32) return ((const float *)base)[row + i];
    uint16_t h = ((const uint16_t *)base)[row + i];
    return dt == KVC_DTYPE_F16 ? f16_value(h) : bf16_value(h);
}
static size_t esize(kvc_dtype dt) { return dt == KVC_DTYPE_F32 ? 4 : dt == KVC_DTYPE_Q8 ? 1 : 2; }
/* Elements a row spans (Q8: its bytes, the scale included). */
static size_t row_elems(kvc_dtype dt, uint32_t d) { return dt == KVC_DTYPE_Q8 ? ((d + 3) & ~3u) + 4 : d; }

#define N_DT 4 /* f32, f16, bf16, q8 */

/* Q8: a random scale in [1/256, 1/127] for every row of the layout, so
 * that |s * q_i| < 1 like the other dtypes' values. */
static void set_q8_scales(const kvc_attn_layout *L, void *base, int random, float fixed) {
    for (uint32_t h = 0; h < L->n_kv_heads; h++)
        for (uint32_t j = 0; j < L->n_keys; j++) {
            float sc = random ? (float)(1.0 / 256 + (1.0 / 127 - 1.0 / 256) * (double)(rnd() >> 11) / 9007199254740992.0)
                              : fixed;
            memcpy((char *)base + h * L->head_stride + j * L->row_stride + ((L->head_dim + 3) & ~3u), &sc, 4);
        }
}

/* ------------------------------------------------------------ f64 reference */

typedef struct reference {
    double *out, *w; /* n_q x d, n_q x n */
    double *wabs;    /* n_q x d: sum_j p_j |v_ji| */
    double *eps;     /* n_q: allowed relative error (see the top comment) */
    /* the inputs, and the reference for the query as a kernel that rounds
     * it multiplies K by (made on first use, see ref_for) */
    kvc_attn_layout L;
    const float *q;
    const void *k, *v;
    int exact;
    float *qalt;
    struct reference *alt;
    int alt_kind;
} reference;

static void ref_free(reference *R) {
    free(R->out);
    free(R->w);
    free(R->wabs);
    free(R->eps);
    free(R->qalt);
    if (R->alt) ref_free(R->alt);
    free(R->alt);
}

/* `exact`: the caller guarantees every logit is computed exactly in f32
 * (small integers times a power of two), so their rounding term is 0. */
static int ref_compute_x(reference *R, const kvc_attn_layout *L, const float *q, const void *k, const void *v,
                         int exact) {
    const uint32_t d = L->head_dim, n = L->n_keys, hq = L->n_q_heads, r = hq / L->n_kv_heads;
    const double scale = L->scale > 0.0f ? (double)L->scale : (double)(1.0f / sqrtf((float)d));
    R->L = *L, R->q = q, R->k = k, R->v = v, R->exact = exact;
    R->qalt = NULL, R->alt = NULL, R->alt_kind = 0;
    R->out = calloc((size_t)hq * d, sizeof(double));
    R->w = calloc((size_t)hq * n, sizeof(double));
    R->wabs = calloc((size_t)hq * d, sizeof(double));
    R->eps = calloc(hq, sizeof(double));
    double *s = malloc(n * sizeof(double));
    if (!R->out || !R->w || !R->wabs || !R->eps || !s) {
        free(s);
        return -1;
    }
    const uint32_t tiles = (n + TILE - 1) / TILE;
    for (uint32_t h = 0; h < hq; h++) {
        const size_t kvh = (size_t)(h / r) * L->head_stride;
        const float *qh = q + (size_t)h * d;
        double m = -INFINITY, smax = 0.0, sum = 0.0;
        for (uint32_t j = 0; j < n; j++) {
            double a = 0.0, b = 0.0;
            for (uint32_t i = 0; i < d; i++) {
                double x = elem_at(L->dtype, k, kvh + (size_t)j * L->row_stride, i, d);
                a += qh[i] * x;
                b += fabs(qh[i] * x);
            }
            s[j] = scale * a;
            m = s[j] > m ? s[j] : m;
            smax = scale * b > smax ? scale * b : smax;
        }
        double spread = 0.0;
        for (uint32_t j = 0; j < n; j++) {
            spread = m - s[j] > spread ? m - s[j] : spread;
            sum += exp(s[j] - m);
        }
        for (uint32_t j = 0; j < n; j++) R->w[(size_t)h * n + j] = exp(s[j] - m) / sum;
        for (uint32_t i = 0; i < d; i++) {
            double o = 0.0, wa = 0.0;
            for (uint32_t j = 0; j < n; j++) {
                double p = R->w[(size_t)h * n + j], x = elem_at(L->dtype, v, kvh + (size_t)j * L->row_stride, i, d);
                o += p * x;
                wa += p * fabs(x);
            }
            R->out[(size_t)h * d + i] = o;
            R->wabs[(size_t)h * d + i] = wa;
        }
        double ds = exact ? 0.0 : (d + 2) * U * smax;
        R->eps[h] = 2.0 * (2.0 * ds + U * spread + 8 * U + 2.0 * (TILE + 2.0 * tiles + 8) * U);
    }
    free(s);
    return 0;
}

static int ref_compute(reference *R, const kvc_attn_layout *L, const float *q, const void *k, const void *v) {
    return ref_compute_x(R, L, q, k, v, 0);
}

/* What the query becomes in a kernel that rounds it (see lib/attn/avx512_ext.h):
 * 1: the Q8 keys' vpdpwssd path, q as int16 per head (scale max|q|/32767,
 *    round half to even, all zero below 1e-33), in the same f32 operations;
 * 2: the bf16 keys' vdpbf16ps path, q as bf16(q) + bf16(q - bf16(q)).
 * 0: the kernel multiplies by q itself. */
static int q_kind(const char *isa, kvc_dtype dt) {
    int ext = strcmp(isa, "avx512_vnni") == 0 ? 1 : strcmp(isa, "avx512_bf16") == 0 ? 2 : 0;
    if (dt == KVC_DTYPE_Q8 && ext >= 1) return 1;
    if (dt == KVC_DTYPE_BF16 && ext == 2) return 2;
    return 0;
}
static float bf16_rne(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}
static void q_round(int kind, const float *q, float *out, uint32_t nq, uint32_t d) {
    for (uint32_t h = 0; h < nq; h++) {
        const float *x = q + (size_t)h * d;
        float *y = out + (size_t)h * d;
        if (kind == 2) {
            for (uint32_t i = 0; i < d; i++) {
                float hi = bf16_rne(x[i]);
                y[i] = hi + bf16_rne(x[i] - hi); /* exact: hi and lo are 8-bit, 9+ bits apart */
            }
            continue;
        }
        float amax = 0.0f;
        for (uint32_t i = 0; i < d; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
        const int zero = !(amax >= 1e-33f);
        const float inv = zero ? 0.0f : 32767.0f / amax, qs = zero ? 0.0f : amax / 32767.0f;
        for (uint32_t i = 0; i < d; i++) y[i] = qs * (float)nearbyintf(x[i] * inv);
    }
}

/* The reference a kernel on `isa` reading `dt` must match (R itself, or the
 * one for its rounded query); NULL if out of memory. */
static const reference *ref_for(reference *R, const char *isa, kvc_dtype dt) {
    const int kind = q_kind(isa, dt);
    if (!kind) return R;
    if (R->alt && R->alt_kind == kind) return R->alt;
    if (R->alt) {
        ref_free(R->alt);
        free(R->alt);
        R->alt = NULL;
    }
    const size_t nq = (size_t)R->L.n_q_heads * R->L.head_dim;
    reference *A = calloc(1, sizeof *A);
    float *qa = malloc(nq * sizeof(float));
    if (!A || !qa) {
        free(A);
        free(qa);
        return NULL;
    }
    q_round(kind, R->q, qa, R->L.n_q_heads, R->L.head_dim);
    free(R->qalt);
    R->qalt = qa;
    if (ref_compute_x(A, &R->L, qa, R->k, R->v, 0)) {
        ref_free(A);
        free(A);
        return NULL;
    }
    R->alt = A;
    R->alt_kind = kind;
    return A;
}

/* ------------------------------------------------------------ one case */

typedef struct {
    uint32_t d, n, r, hkv;
    kvc_dtype dt;
    uint32_t row_pad, head_pad, w_pad; /* extra elements between rows / heads / weight rows */
    uint32_t off;                      /* element offset from 64-byte alignment (all buffers) */
    int layout;                        /* LAYOUT_*: where the heads' rows sit */
    float qscale;
    float scale; /* 0: default */
    int weights;
} acase;

/* Heads one after the other; all heads of a token together (rows of
 * different heads interleaved, as llama.cpp stores them); one K/V shared by
 * every kv head (head_stride 0). */
enum { LAYOUT_SLOT_MAJOR = 0, LAYOUT_TOKEN_MAJOR = 1, LAYOUT_SHARED = 2 };

typedef struct {
    kvc_attn_layout L;
    float *q, *out, *w;
    void *k, *v;
    void *mem[5];
    size_t wstride, out_n, w_n;
} abuf;

#define GUARD 16 /* floats before and after out and weights that must stay untouched */
static const uint32_t SENTINEL = 0x7fa5a5a5u; /* a NaN pattern */

static void *aligned_off(size_t bytes, size_t off_bytes, void **mem) {
    *mem = NULL;
    if (posix_memalign(mem, 64, bytes + off_bytes + 64)) return NULL;
    return (char *)*mem + off_bytes;
}

static void fill_sentinel(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) memcpy(p + i, &SENTINEL, 4);
}
static int is_sentinel(const float *p) { return memcmp(p, &SENTINEL, 4) == 0; }

static void buf_free(abuf *B) {
    for (int i = 0; i < 5; i++) free(B->mem[i]);
}

static int buf_make(abuf *B, const acase *c) {
    memset(B, 0, sizeof *B);
    kvc_attn_layout *L = &B->L;
    L->n_kv_heads = c->hkv;
    L->n_q_heads = c->hkv * c->r;
    L->head_dim = c->d;
    L->n_keys = c->n;
    L->dtype = c->dt;
    const size_t re = row_elems(c->dt, c->d);
    if (c->layout == LAYOUT_TOKEN_MAJOR) { /* head_pad: between heads inside a token's row */
        L->head_stride = re + c->head_pad;
        L->row_stride = L->head_stride * c->hkv + c->row_pad;
    } else {
        L->row_stride = re + c->row_pad;
        L->head_stride = c->layout == LAYOUT_SHARED ? 0 : (size_t)c->n * L->row_stride + c->head_pad;
    }
    L->scale = c->scale;
    const size_t es = esize(c->dt);
    const size_t kv_n = (size_t)(c->hkv - 1) * L->head_stride + (size_t)(c->n - 1) * L->row_stride + re;
    B->q = aligned_off((size_t)L->n_q_heads * c->d * 4, c->off * 4, &B->mem[0]);
    B->k = aligned_off(kv_n * es, c->off * es, &B->mem[1]);
    B->v = aligned_off(kv_n * es, c->off * es, &B->mem[2]);
    B->out_n = (size_t)L->n_q_heads * c->d;
    float *o = aligned_off((B->out_n + 2 * GUARD) * 4, c->off * 4, &B->mem[3]);
    B->wstride = (size_t)c->n + c->w_pad;
    B->w_n = (size_t)L->n_q_heads * B->wstride;
    float *w = c->weights ? aligned_off((B->w_n + 2 * GUARD) * 4, c->off * 4, &B->mem[4]) : NULL;
    if (!B->q || !B->k || !B->v || !o || (c->weights && !w)) return -1;
    B->out = o + GUARD;
    B->w = w ? w + GUARD : NULL;
    for (size_t i = 0; i < (size_t)L->n_q_heads * c->d; i++) B->q[i] = unif() * c->qscale;
    for (size_t i = 0; i < kv_n; i++) {
        rand_elem(c->dt, B->k, i);
        rand_elem(c->dt, B->v, i);
    }
    if (c->dt == KVC_DTYPE_Q8) {
        set_q8_scales(L, B->k, 1, 0.0f);
        set_q8_scales(L, B->v, 1, 0.0f);
    }
    return 0;
}

static const char *dt_name(kvc_dtype dt) {
    return dt == KVC_DTYPE_F32 ? "f32" : dt == KVC_DTYPE_F16 ? "f16" : dt == KVC_DTYPE_BF16 ? "bf16" : "q8";
}

/* Values of the kernel's output off the reference; *worst: largest error / allowed. */
static int count_bad(const acase *c, const abuf *B, const reference *R, double *worst_out) {
    const kvc_attn_layout *L = &B->L;
    const uint32_t d = c->d, n = c->n;
    int bad = 0;
    double worst = 0.0; /* error / allowed */
    for (int g = 0; g < GUARD; g++)
        if (!is_sentinel(B->out - GUARD + g) || !is_sentinel(B->out + B->out_n + g)) bad++;
    for (uint32_t h = 0; h < L->n_q_heads; h++) {
        for (uint32_t i = 0; i < d; i++) {
            double got = B->out[(size_t)h * d + i], want = R->out[(size_t)h * d + i];
            double tol = R->eps[h] * R->wabs[(size_t)h * d + i] + n * 1e-37;
            double err = fabs(got - want);
            if (!(err <= tol)) bad++;
            if (tol > 0 && err / tol > worst) worst = err / tol;
        }
        if (!B->w) continue;
        const float *w = B->w + (size_t)h * B->wstride;
        double sum = 0.0;
        for (uint32_t j = 0; j < n; j++) {
            double got = w[j], want = R->w[(size_t)h * n + j];
            double tol = R->eps[h] * want + 1e-37, err = fabs(got - want);
            if (!(err <= tol)) bad++;
            if (err / tol > worst) worst = err / tol;
            sum += got;
        }
        if (!(fabs(sum - 1.0) <= R->eps[h] + n * 1e-37)) bad++;
        for (uint32_t j = n; j < B->wstride; j++)
            if (!is_sentinel(w + j)) bad++;
    }
    if (B->w)
        for (int g = 0; g < GUARD; g++)
            if (!is_sentinel(B->w - GUARD + g) || !is_sentinel(B->w + B->w_n + g)) bad++;
    *worst_out = worst;
    return bad;
}

/* Compare the kernel's output with the reference; returns the number of bad
 * values. A kernel that may round q (q_kind) must match the reference for
 * the rounded q; where a shape does not fit its variant's q scratch it runs
 * the general blocks and must match the plain one. */
static int compare(const acase *c, const abuf *B, reference *R, const char *isa) {
    const uint32_t d = c->d, n = c->n;
    double worst = 0.0;
    int bad = count_bad(c, B, R, &worst);
    if (bad && q_kind(isa, c->dt)) {
        const reference *A = ref_for(R, isa, c->dt);
        double w2 = 0.0;
        int bad2 = A ? count_bad(c, B, A, &w2) : bad;
        if (bad2 < bad) bad = bad2, worst = w2;
    }
    if (bad)
        kvt_fail(__FILE__, __LINE__,
                 "isa=%s dtype=%s d=%u n=%u r=%u hkv=%u layout=%d off=%u pads=%u/%u/%u weights=%d: %d bad values "
                 "(worst error %.3g x tolerance)",
                 isa, dt_name(c->dt), d, n, c->r, c->hkv, c->layout, c->off, c->row_pad, c->head_pad, c->w_pad,
                 c->weights, bad, worst);
    return bad;
}

/* Run one case on every available ISA; returns how many ISAs ran. */
static int run_case(const acase *c) {
    abuf B;
    reference R = {0};
    if (buf_make(&B, c) || ref_compute(&R, &B.L, B.q, B.k, B.v)) {
        kvt_fail(__FILE__, __LINE__, "out of memory");
        buf_free(&B);
        ref_free(&R);
        return 0;
    }
    int ran = 0;
    for (size_t i = 0; i < sizeof ISA_NAMES / sizeof ISA_NAMES[0]; i++) {
        if (kvc_set_isa(ISA_NAMES[i]) != KVC_OK) continue;
        ran++;
        fill_sentinel(B.out - GUARD, B.out_n + 2 * GUARD);
        if (B.w) fill_sentinel(B.w - GUARD, B.w_n + 2 * GUARD);
        int rc = kvc_attention(&B.L, B.q, B.k, B.v, B.out, B.w, B.wstride);
        CHECKF(rc == KVC_OK, "isa=%s: kvc_attention returned %d", ISA_NAMES[i], rc);
        if (rc == KVC_OK) compare(c, &B, &R, ISA_NAMES[i]);
    }
    buf_free(&B);
    ref_free(&R);
    return ran;
}

/* Forcing ISAs must not leak into other tests: restore whatever was active. */
typedef struct {
    char name[16];
} isa_saved;
static isa_saved isa_save(void) {
    isa_saved s;
    snprintf(s.name, sizeof s.name, "%s", kvc_active_isa());
    return s;
}
static void isa_restore(isa_saved s) { kvc_set_isa(s.name); }

static const uint32_t DS[] = {1, 3, 8, 16, 64, 72, 80, 96, 128, 256};
static const uint32_t NS[] = {1, 2, 15, 16, 17, 1000, 4097};
static const uint32_t RS[] = {1, 2, 4, 8};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void cross(kvc_dtype dt) {
    isa_saved saved = isa_save();
    unsigned id = 0;
    for (size_t a = 0; a < COUNT(DS); a++)
        for (size_t b = 0; b < COUNT(NS); b++, id++) {
            acase c;
            memset(&c, 0, sizeof c);
            c.d = DS[a];
            c.n = NS[b];
            c.dt = dt;
            c.r = RS[(a + b + (unsigned)dt) % COUNT(RS)];
            c.hkv = 1 + (id + (unsigned)dt) % 2;
            c.layout = c.hkv > 1 && id % 4 == 1 ? LAYOUT_TOKEN_MAJOR : LAYOUT_SLOT_MAJOR;
            static const uint32_t pads[] = {0, 1, 5, 16, 0, 3};
            c.row_pad = pads[id % 6];
            c.head_pad = pads[(id / 2) % 6] * 3;
            c.w_pad = pads[(id + 3) % 6];
            c.off = (id * 7 + (unsigned)dt) % 5; /* 0: 64-byte aligned fast path */
            c.qscale = (id % 3 == 0) ? 8.0f : 1.0f;
            c.scale = (id % 7 == 3) ? 0.3f : 0.0f;
            c.weights = (id + (unsigned)dt) % 2 == 0;
            if (!run_case(&c)) {
                kvt_fail(__FILE__, __LINE__, "no ISA could be selected");
                break;
            }
            if (kvt_failed() > 20) break;
        }
    isa_restore(saved);
}

TEST(attn_reference_f32) { cross(KVC_DTYPE_F32); }
TEST(attn_reference_f16) { cross(KVC_DTYPE_F16); }
TEST(attn_reference_bf16) { cross(KVC_DTYPE_BF16); }
TEST(attn_reference_q8) { cross(KVC_DTYPE_Q8); }

/* Group sizes that are not a power of two exercise every head-block
 * remainder (4+2+1, ...); 66 exceeds the 64 heads one pass holds. */
TEST(attn_odd_group_sizes) {
    isa_saved saved = isa_save();
    static const uint32_t rs[] = {3, 5, 6, 7, 9, 66};
    for (size_t i = 0; i < COUNT(rs); i++)
        for (int dt = 0; dt < N_DT; dt++) {
            acase c;
            memset(&c, 0, sizeof c);
            c.d = i % 2 ? 40 : 128;
            c.n = 70 + (uint32_t)i * 13;
            c.r = rs[i];
            c.hkv = 1;
            c.dt = (kvc_dtype)dt;
            c.row_pad = (uint32_t)i;
            c.off = (uint32_t)dt;
            c.qscale = 4.0f;
            c.weights = 1;
            run_case(&c);
        }
    isa_restore(saved);
}

/* Token-major K/V (all kv heads of a token in one row, as llama.cpp stores
 * them, with and without padding between heads and after each token) and
 * one K/V shared by every kv head: the kernels read interleaved heads tile
 * by tile together (up to 8 per call; 12 heads make a second batch), and
 * must match the reference like any other layout, through the head-range
 * entry point too. */
TEST(attn_interleaved_layouts) {
    isa_saved saved = isa_save();
    static const uint32_t hkvs[] = {2, 3, 8, 12};
    unsigned id = 0;
    for (int dt = 0; dt < N_DT; dt++)
        for (size_t a = 0; a < COUNT(hkvs); a++)
            for (int layout = LAYOUT_TOKEN_MAJOR; layout <= LAYOUT_SHARED; layout++, id++) {
                acase c;
                memset(&c, 0, sizeof c);
                c.d = id % 3 == 0 ? 72 : id % 3 == 1 ? 128 : 32;
                c.n = id % 2 ? 130 : 67;
                c.r = 1 + id % 5;
                c.hkv = hkvs[a];
                c.dt = (kvc_dtype)dt;
                c.layout = layout;
                c.head_pad = id % 4 == 3 ? 8 : 0;
                c.row_pad = id % 3 == 2 ? 5 : 0;
                c.off = id % 4;
                c.qscale = 4.0f;
                c.weights = id % 2 == 0;
                run_case(&c);
            }
    /* a head range of a token-major layout: only its heads, exactly as the full call */
    acase c;
    memset(&c, 0, sizeof c);
    c.d = 64, c.n = 150, c.r = 2, c.hkv = 6, c.dt = KVC_DTYPE_F16, c.layout = LAYOUT_TOKEN_MAJOR, c.weights = 1;
    c.qscale = 4.0f;
    abuf B;
    if (buf_make(&B, &c)) {
        buf_free(&B);
        REQUIRE(0);
    }
    float *full = malloc(B.out_n * 4), *wfull = malloc(B.w_n * 4);
    REQUIRE(full && wfull);
    for (size_t s = 0; s < COUNT(ISA_NAMES); s++) {
        if (kvc_set_isa(ISA_NAMES[s]) != KVC_OK) continue;
        CHECK_EQ(kvc_attention(&B.L, B.q, B.k, B.v, full, wfull, B.wstride), KVC_OK);
        fill_sentinel(B.out - GUARD, B.out_n + 2 * GUARD);
        fill_sentinel(B.w - GUARD, B.w_n + 2 * GUARD);
        CHECK_EQ(kvc_attention_heads(&B.L, 1, 4, B.q, B.k, B.v, B.out, B.w, B.wstride), KVC_OK);
        int wrong = 0;
        for (uint32_t h = 0; h < 12; h++) {
            const int in = h / 2 >= 1 && h / 2 < 4;
            for (uint32_t i = 0; i < c.d; i++)
                wrong += in ? B.out[h * c.d + i] != full[h * c.d + i] : !is_sentinel(B.out + h * c.d + i);
            for (uint32_t j = 0; j < c.n; j++)
                wrong += in ? B.w[h * B.wstride + j] != wfull[h * B.wstride + j] : !is_sentinel(B.w + h * B.wstride + j);
        }
        CHECKF(wrong == 0, "isa=%s: %d values differ from the full call", ISA_NAMES[s], wrong);
    }
    free(full);
    free(wfull);
    buf_free(&B);
    isa_restore(saved);
}

/* Logits so large that the softmax is one-hot, so small that it is uniform,
 * or spread over +-500 (most weights underflow): all finite, no NaN. */
TEST(attn_extreme_logits) {
    isa_saved saved = isa_save();
    for (int dt = 0; dt < N_DT; dt++)
        for (int kind = 0; kind < 3; kind++) {
            acase c;
            memset(&c, 0, sizeof c);
            c.d = kind == 2 ? 72 : 128;
            c.n = 300;
            c.r = 4;
            c.hkv = 2;
            c.dt = (kvc_dtype)dt;
            c.weights = 1;
            c.qscale = 1.0f;
            abuf B;
            reference R = {0};
            if (buf_make(&B, &c)) {
                buf_free(&B);
                REQUIRE(0);
            }
            /* |logit| up to ~1e31, ~1e-30, ~500: q scaled, K untouched */
            float qs = kind == 0 ? 1e30f : kind == 1 ? 1e-30f : 0.0f;
            for (size_t i = 0; i < (size_t)8 * c.d; i++) {
                if (kind == 2) qs = (i % c.d) < 8 ? 400.0f : 1.0f;
                B.q[i] *= qs;
            }
            if (ref_compute(&R, &B.L, B.q, B.k, B.v)) {
                buf_free(&B);
                REQUIRE(0);
            }
            for (size_t s = 0; s < COUNT(ISA_NAMES); s++) {
                if (kvc_set_isa(ISA_NAMES[s]) != KVC_OK) continue;
                fill_sentinel(B.out - GUARD, B.out_n + 2 * GUARD);
                fill_sentinel(B.w - GUARD, B.w_n + 2 * GUARD);
                CHECK_EQ(kvc_attention(&B.L, B.q, B.k, B.v, B.out, B.w, B.wstride), KVC_OK);
                int nonfinite = 0;
                for (size_t i = 0; i < B.out_n; i++) nonfinite += !isfinite(B.out[i]);
                for (uint32_t h = 0; h < 8; h++)
                    for (uint32_t j = 0; j < c.n; j++) nonfinite += !isfinite(B.w[h * B.wstride + j]);
                CHECKF(nonfinite == 0, "isa=%s dtype=%s kind=%d: %d non-finite values", ISA_NAMES[s],
                       dt_name(c.dt), kind, nonfinite);
                if (kind != 0) {
                    compare(&c, &B, &R, ISA_NAMES[s]);
                    continue;
                }
                /* one-hot: the logit gap (~1e29) dwarfs any rounding (~1e25),
                 * so weights are exactly 0/1 and out is the arg-max V row (of
                 * the rounded query where the kernel rounds it: d = 128 and 4
                 * query heads fit its variant) */
                const reference *RR = ref_for(&R, ISA_NAMES[s], c.dt);
                REQUIRE(RR);
                for (uint32_t h = 0; h < 8; h++) {
                    uint32_t best = 0;
                    for (uint32_t j = 1; j < c.n; j++)
                        if (RR->w[(size_t)h * c.n + j] > RR->w[(size_t)h * c.n + best]) best = j;
                    CHECK(RR->w[(size_t)h * c.n + best] == 1.0);
                    for (uint32_t j = 0; j < c.n; j++)
                        CHECKF(B.w[h * B.wstride + j] == (j == best ? 1.0f : 0.0f), "isa=%s w[%u][%u]=%g",
                               ISA_NAMES[s], h, j, (double)B.w[h * B.wstride + j]);
                    for (uint32_t i = 0; i < c.d; i++)
                        CHECK(B.out[(size_t)h * c.d + i] == (float)RR->out[(size_t)h * c.d + i]);
                }
            }
            buf_free(&B);
            ref_free(&R);
        }
    isa_restore(saved);
}

/* Exact logits (integer q and K, scale 1/8): only exp, the running-max
 * correction and the sums round, so the bound is tight enough to catch
 * errors of 1e-5. Weight ratios isolate exp: w_j / w_max = e^(s_j - m) up to
 * exp's error (<= 8u, and e^0 = 1 exactly) and the two products by 1/l. */
TEST(attn_exact_logits) {
    isa_saved saved = isa_save();
    static const uint32_t ds[] = {16, 40, 128};
    static const uint32_t ns[] = {50, 1000};
    for (int dt = 0; dt < N_DT; dt++)
        for (size_t a = 0; a < COUNT(ds); a++)
            for (size_t b = 0; b < COUNT(ns); b++) {
                acase c;
                memset(&c, 0, sizeof c);
                c.d = ds[a];
                c.n = ns[b];
                c.r = 4;
                c.hkv = 1;
                c.dt = (kvc_dtype)dt;
                c.scale = 0.125f;
                c.weights = 1;
                c.qscale = 1.0f;
                c.off = (uint32_t)(a + b);
                abuf B;
                reference R = {0};
                if (buf_make(&B, &c)) {
                    buf_free(&B);
                    REQUIRE(0);
                }
                for (size_t i = 0; i < B.out_n; i++) B.q[i] = (float)((int)(rnd() % 3) - 1);
                const size_t es = esize(c.dt);
                for (size_t i = 0; i < B.L.head_stride; i++) {
                    float x = (float)((int)(rnd() % 7) - 3);
                    uint32_t u;
                    memcpy(&u, &x, 4);
                    if (es == 1)
                        ((int8_t *)B.k)[i] = (int8_t)x; /* with scale 1 (below) */
                    else if (es == 4)
                        memcpy((float *)B.k + i, &x, 4);
                    else if (c.dt == KVC_DTYPE_BF16)
                        ((uint16_t *)B.k)[i] = (uint16_t)(u >> 16); /* exact: 3 significant bits */
                    else /* f16 of a small integer: sign, exponent rebased from 127 to 15, top mantissa */
                        ((uint16_t *)B.k)[i] = x == 0.0f ? 0 : (uint16_t)(((u >> 16) & 0x8000) |
                                                                         ((((u >> 23) & 0xff) - 112) << 10) |
                                                                         ((u >> 13) & 0x3ff));
                }
                if (c.dt == KVC_DTYPE_Q8) set_q8_scales(&B.L, B.k, 0, 1.0f);
                if (ref_compute_x(&R, &B.L, B.q, B.k, B.v, 1)) {
                    buf_free(&B);
                    REQUIRE(0);
                }
                for (size_t s = 0; s < COUNT(ISA_NAMES); s++) {
                    if (kvc_set_isa(ISA_NAMES[s]) != KVC_OK) continue;
                    fill_sentinel(B.out - GUARD, B.out_n + 2 * GUARD);
                    fill_sentinel(B.w - GUARD, B.w_n + 2 * GUARD);
                    CHECK_EQ(kvc_attention(&B.L, B.q, B.k, B.v, B.out, B.w, B.wstride), KVC_OK);
                    compare(&c, &B, &R, ISA_NAMES[s]);
                    /* a kernel that rounds q (q_kind) rounds the logits too: no exact ratios */
                    if (q_kind(ISA_NAMES[s], c.dt) && !(c.dt == KVC_DTYPE_BF16 && c.d % 32)) continue;
                    int bad = 0;
                    for (uint32_t h = 0; h < 4; h++) {
                        const double *rw = R.w + (size_t)h * c.n;
                        const float *w = B.w + h * B.wstride;
                        uint32_t best = 0;
                        for (uint32_t j = 1; j < c.n; j++) best = rw[j] > rw[best] ? j : best;
                        for (uint32_t j = 0; j < c.n; j++) {
                            double want = rw[j] / rw[best], got = (double)w[j] / w[best];
                            bad += !(fabs(got - want) <= 12 * U * want + 1e-30);
                        }
                    }
                    CHECKF(bad == 0, "isa=%s dtype=%s d=%u n=%u: %d weight ratios off e^(s_j - m) by > 12 ulp",
                           ISA_NAMES[s], dt_name(c.dt), c.d, c.n, bad);
                }
                buf_free(&B);
                ref_free(&R);
            }
    isa_restore(saved);
}

/* Identical keys: every logit is computed by the same operations, so the
 * weights are exactly equal (1/n) and out is the mean of V. */
TEST(attn_all_equal_keys) {
    isa_saved saved = isa_save();
    for (int dt = 0; dt < N_DT; dt++) {
        acase c;
        memset(&c, 0, sizeof c);
        c.d = 80;
        c.n = 1000;
        c.r = 2;
        c.hkv = 2;
        c.dt = (kvc_dtype)dt;
        c.row_pad = 3;
        c.weights = 1;
        c.qscale = 8.0f;
        abuf B;
        reference R = {0};
        if (buf_make(&B, &c)) {
            buf_free(&B);
            REQUIRE(0);
        }
        const size_t es = esize(c.dt);
        for (uint32_t h = 0; h < c.hkv; h++)
            for (uint32_t j = 1; j < c.n; j++)
                memcpy((char *)B.k + (h * B.L.head_stride + j * B.L.row_stride) * es,
                       (char *)B.k + h * B.L.head_stride * es, row_elems(c.dt, c.d) * es);
        if (ref_compute(&R, &B.L, B.q, B.k, B.v)) {
            buf_free(&B);
            REQUIRE(0);
        }
        for (size_t s = 0; s < COUNT(ISA_NAMES); s++) {
            if (kvc_set_isa(ISA_NAMES[s]) != KVC_OK) continue;
            fill_sentinel(B.out - GUARD, B.out_n + 2 * GUARD);
            fill_sentinel(B.w - GUARD, B.w_n + 2 * GUARD);
            CHECK_EQ(kvc_attention(&B.L, B.q, B.k, B.v, B.out, B.w, B.wstride), KVC_OK);
            compare(&c, &B, &R, ISA_NAMES[s]);
            for (uint32_t h = 0; h < 4; h++) {
                const float *w = B.w + h * B.wstride;
                int unequal = 0;
                for (uint32_t j = 1; j < c.n; j++) unequal += w[j] != w[0];
                CHECKF(unequal == 0, "isa=%s dtype=%s head %u: %d weights differ from w[0]", ISA_NAMES[s],
                       dt_name(c.dt), h, unequal);
                CHECK(fabs(w[0] * 1000.0 - 1.0) <= 4 * U);
            }
        }
        buf_free(&B);
        ref_free(&R);
    }
    isa_restore(saved);
}

/* Tails must not read past the last element: K and V end right before a
 * page that is not readable. */
TEST(attn_no_read_past_end) {
    long page = sysconf(_SC_PAGESIZE);
    REQUIRE(page > 0);
    isa_saved saved = isa_save();
    static const uint32_t ds[] = {1, 3, 17, 40, 72};
    for (int dt = 0; dt < N_DT; dt++)
        for (size_t a = 0; a < COUNT(ds); a++) {
            const uint32_t d = ds[a], n = 19;
            const size_t es = esize((kvc_dtype)dt), re = row_elems((kvc_dtype)dt, d), bytes = (size_t)n * re * es;
            const size_t span = ((bytes + (size_t)page - 1) / (size_t)page + 1) * (size_t)page;
            char *region[2];
            for (int b = 0; b < 2; b++) {
                region[b] = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                REQUIRE(region[b] != MAP_FAILED);
                REQUIRE(mprotect(region[b] + span - page, (size_t)page, PROT_NONE) == 0);
            }
            void *k = region[0] + span - page - bytes, *v = region[1] + span - page - bytes;
            for (size_t i = 0; i < (size_t)n * re; i++) {
                rand_elem((kvc_dtype)dt, k, i);
                rand_elem((kvc_dtype)dt, v, i);
            }
            float q[2 * 72], out[2 * 72], w[2 * 19];
            for (size_t i = 0; i < 2 * d; i++) q[i] = unif();
            kvc_attn_layout L = {2, 1, d, n, (kvc_dtype)dt, re, (size_t)n * re, 0.0f};
            if (dt == KVC_DTYPE_Q8) {
                set_q8_scales(&L, k, 1, 0.0f);
                set_q8_scales(&L, v, 1, 0.0f);
            }
            reference R = {0};
            REQUIRE(ref_compute(&R, &L, q, k, v) == 0);
            for (size_t s = 0; s < COUNT(ISA_NAMES); s++) {
                if (kvc_set_isa(ISA_NAMES[s]) != KVC_OK) continue;
                CHECK_EQ(kvc_attention(&L, q, k, v, out, w, n), KVC_OK);
                /* every shape here fits the rounded-q variants (r = 2, d <= 72) */
                const reference *RR = ref_for(&R, ISA_NAMES[s], (kvc_dtype)dt);
                REQUIRE(RR);
                for (size_t i = 0; i < 2 * d; i++)
                    CHECK(fabs(out[i] - RR->out[i]) <= RR->eps[i / d] * RR->wabs[i] + 1e-30);
            }
            ref_free(&R);
            munmap(region[0], span);
            munmap(region[1], span);
        }
    isa_restore(saved);
}

/* The head-range entry point computes exactly what the full call does for
 * its heads, indexes q/out/weights from head 0 and touches nothing else. */
TEST(attn_head_ranges) {
    isa_saved saved = isa_save();
    acase c;
    memset(&c, 0, sizeof c);
    c.d = 72;
    c.n = 200;
    c.r = 2;
    c.hkv = 4;
    c.dt = KVC_DTYPE_F16;
    c.row_pad = 8;
    c.w_pad = 5;
    c.weights = 1;
    c.qscale = 4.0f;
    abuf B;
    if (buf_make(&B, &c)) {
        buf_free(&B);
        REQUIRE(0);
    }
    float *full = malloc(B.out_n * 4), *wfull = malloc(B.w_n * 4);
    REQUIRE(full && wfull);
    for (size_t s = 0; s < COUNT(ISA_NAMES); s++) {
        if (kvc_set_isa(ISA_NAMES[s]) != KVC_OK) continue;
        CHECK_EQ(kvc_attention(&B.L, B.q, B.k, B.v, full, wfull, B.wstride), KVC_OK);
        static const uint32_t ranges[][2] = {{0, 4}, {0, 1}, {1, 3}, {3, 4}, {2, 3}};
        for (size_t g = 0; g < COUNT(ranges); g++) {
            const uint32_t b = ranges[g][0], e = ranges[g][1];
            fill_sentinel(B.out - GUARD, B.out_n + 2 * GUARD);
            fill_sentinel(B.w - GUARD, B.w_n + 2 * GUARD);
            CHECK_EQ(kvc_attention_heads(&B.L, b, e, B.q, B.k, B.v, B.out, B.w, B.wstride), KVC_OK);
            int wrong = 0;
            for (uint32_t h = 0; h < 8; h++) {
                const int in = h / 2 >= b && h / 2 < e;
                for (uint32_t i = 0; i < c.d; i++) {
                    const float *o = B.out + h * c.d + i;
                    wrong += in ? *o != full[h * c.d + i] : !is_sentinel(o);
                }
                for (uint32_t j = 0; j < B.wstride; j++) {
                    const float *o = B.w + h * B.wstride + j;
                    wrong += in && j < c.n ? *o != wfull[h * B.wstride + j] : !is_sentinel(o);
                }
            }
            CHECKF(wrong == 0, "isa=%s range [%u,%u): %d values differ", ISA_NAMES[s], b, e, wrong);
        }
        /* without weights */
        fill_sentinel(B.out - GUARD, B.out_n + 2 * GUARD);
        CHECK_EQ(kvc_attention_heads(&B.L, 1, 2, B.q, B.k, B.v, B.out, NULL, 0), KVC_OK);
        CHECK(B.out[2 * c.d] == full[2 * c.d] && is_sentinel(B.out));
    }
    free(full);
    free(wfull);
    buf_free(&B);
    isa_restore(saved);
}

TEST(attn_argument_errors) {
    float q[16] = {0}, out[16], w[8];
    uint16_t kv[64] = {0};
    const kvc_attn_layout ok = {2, 1, 4, 4, KVC_DTYPE_F16, 4, 16, 0.0f};
    kvc_attn_layout L = ok;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, w, 4), KVC_OK);
    CHECK_EQ(kvc_attention(NULL, q, kv, kv, out, NULL, 0), KVC_EINVAL);
    CHECK_EQ(kvc_attention(&L, NULL, kv, kv, out, NULL, 0), KVC_EINVAL);
    CHECK_EQ(kvc_attention(&L, q, NULL, kv, out, NULL, 0), KVC_EINVAL);
    CHECK_EQ(kvc_attention(&L, q, kv, NULL, out, NULL, 0), KVC_EINVAL);
    CHECK_EQ(kvc_attention(&L, q, kv, kv, NULL, NULL, 0), KVC_EINVAL);
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, w, 3), KVC_EINVAL); /* weights_stride < n_keys */
    L = ok, L.n_q_heads = 0;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_EINVAL);
    L = ok, L.n_kv_heads = 0;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_EINVAL);
    L = ok, L.n_q_heads = 3, L.n_kv_heads = 2; /* not a multiple */
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_EINVAL);
    L = ok, L.head_dim = 0;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_EINVAL);
    L = ok, L.n_keys = 0;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_EINVAL);
    L = ok, L.dtype = (kvc_dtype)4;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_EINVAL);
    /* Q8 rows end in their scale: 4 values + 4 bytes; strides in bytes */
    L = ok, L.dtype = KVC_DTYPE_Q8, L.row_stride = 7, L.head_stride = 32;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_EINVAL);
    L.row_stride = 8;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_OK);
    CHECK_EQ(kvc_row_bytes(KVC_DTYPE_F32, 5), 20u);
    CHECK_EQ(kvc_row_bytes(KVC_DTYPE_F16, 5), 10u);
    CHECK_EQ(kvc_row_bytes(KVC_DTYPE_BF16, 5), 10u);
    CHECK_EQ(kvc_row_bytes(KVC_DTYPE_Q8, 5), 12u);
    CHECK_EQ(kvc_row_bytes(KVC_DTYPE_Q8, 128), 132u);
    CHECK_EQ(kvc_row_bytes((kvc_dtype)4, 5), 0u);
    L = ok, L.row_stride = 3;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_EINVAL);
    L = ok, L.n_kv_heads = 2, L.head_stride = 14; /* heads overlap: read-only, so fine */
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_OK);
    L.head_stride = 0; /* one K/V for both heads */
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_OK);
    L.head_stride = 4, L.row_stride = 8; /* token-major */
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_OK);
    L.head_stride = 16, L.row_stride = 4;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_OK);
    L = ok, L.scale = -1.0f;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_EINVAL);
    L.scale = NAN;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_EINVAL);
    L.scale = INFINITY;
    CHECK_EQ(kvc_attention(&L, q, kv, kv, out, NULL, 0), KVC_EINVAL);
    /* head ranges */
    L = ok, L.n_kv_heads = 2, L.head_stride = 16;
    CHECK_EQ(kvc_attention_heads(&L, 0, 2, q, kv, kv, out, NULL, 0), KVC_OK);
    CHECK_EQ(kvc_attention_heads(&L, 1, 1, q, kv, kv, out, NULL, 0), KVC_ERANGE);
    CHECK_EQ(kvc_attention_heads(&L, 2, 1, q, kv, kv, out, NULL, 0), KVC_ERANGE);
    CHECK_EQ(kvc_attention_heads(&L, 0, 3, q, kv, kv, out, NULL, 0), KVC_ERANGE);
    CHECK_EQ(kvc_attention_heads(NULL, 0, 1, q, kv, kv, out, NULL, 0), KVC_EINVAL);
    CHECK_EQ(kvc_attention_heads(&L, 0, 1, q, kv, kv, out, w, 1), KVC_EINVAL);
}

/* kvc_quantize_q8: the documented rule (scale max|x|/127, round half to
 * even), its error bound on random rows, zero and tiny rows, bad input. */
TEST(attn_quantize_q8) {
    uint8_t row[64 + 8];
    float s;
    const float x[5] = {1.0f, -0.5f, 0.25f, 0.0f, 0.00393700787f}; /* 127*0.5 = 63.5: a tie, to -64 */
    CHECK_EQ(kvc_quantize_q8(x, 5, row), KVC_OK);
    const int8_t *q = (const int8_t *)row;
    CHECK(q[0] == 127 && q[1] == -64 && q[2] == 32 && q[3] == 0 && q[4] == 0);
    CHECK(row[5] == 0 && row[6] == 0 && row[7] == 0); /* padding to the scale */
    memcpy(&s, row + 8, 4);
    CHECK(s == 1.0f / 127.0f);
    float zero[3] = {0, -0.0f, 0};
    CHECK_EQ(kvc_quantize_q8(zero, 3, row), KVC_OK);
    memcpy(&s, row + 4, 4);
    CHECK(s == 0.0f && q[0] == 0 && q[1] == 0 && q[2] == 0);
    float tiny[2] = {1e-40f, -3e-41f}; /* subnormal: 127/max must not overflow */
    CHECK_EQ(kvc_quantize_q8(tiny, 2, row), KVC_OK);
    CHECK(q[0] == 127 && q[1] == -38);
    int bad = 0;
    for (int t = 0; t < 200; t++) {
        float v[64];
        const uint32_t d = 1 + (uint32_t)(rnd() % 64);
        for (uint32_t i = 0; i < d; i++) v[i] = unif() * (t % 2 ? 1e3f : 1e-3f);
        CHECK_EQ(kvc_quantize_q8(v, d, row), KVC_OK);
        memcpy(&s, row + ((d + 3) & ~3u), 4);
        for (uint32_t i = 0; i < d; i++)
            bad += !(fabs((double)s * q[i] - v[i]) <= 0.5 * s * (1 + 4 * U) + 2 * U * fabs(v[i]));
    }
    CHECKF(bad == 0, "%d quantised values off by more than s/2", bad);
    float nan_row[2] = {1.0f, NAN};
    memset(row, 0x5a, sizeof row);
    CHECK_EQ(kvc_quantize_q8(nan_row, 2, row), KVC_ENONFINITE);
    CHECK(row[0] == 0x5a && row[7] == 0x5a);
    CHECK_EQ(kvc_quantize_q8(NULL, 2, row), KVC_EINVAL);
    CHECK_EQ(kvc_quantize_q8(x, 2, NULL), KVC_EINVAL);
    CHECK_EQ(kvc_quantize_q8(x, 0, row), KVC_EINVAL);
}

/* ISA selection: names, support, the KVC_FORCE_ISA override. */
TEST(attn_isa_selection) {
    isa_saved saved = isa_save();
    const char *active = kvc_active_isa();
    REQUIRE(active != NULL);
    int known = 0, available = 0;
    for (size_t i = 0; i < COUNT(ISA_NAMES); i++) known += strcmp(active, ISA_NAMES[i]) == 0;
    CHECK_EQ(known, 1);
    CHECK_EQ(kvc_set_isa("scalar"), KVC_OK); /* always compiled in */
    CHECK(strcmp(kvc_active_isa(), "scalar") == 0);
    CHECK_EQ(kvc_set_isa("sse9"), KVC_EUNKNOWN);
    CHECK_EQ(kvc_set_isa(""), KVC_EUNKNOWN);
    CHECK(strcmp(kvc_active_isa(), "scalar") == 0); /* a failed set changes nothing */
#if defined(__x86_64__)
    CHECK_EQ(kvc_set_isa("neon"), KVC_ENOTSUP);
#elif defined(__aarch64__)
    CHECK_EQ(kvc_set_isa("avx2"), KVC_ENOTSUP);
    CHECK_EQ(kvc_set_isa("avx512"), KVC_ENOTSUP);
    CHECK_EQ(kvc_set_isa("neon"), KVC_OK);
#endif
    const char *last = NULL;
    for (size_t i = 0; i < COUNT(ISA_NAMES); i++) {
        int rc = kvc_set_isa(ISA_NAMES[i]);
        CHECK(rc == KVC_OK || rc == KVC_ENOTSUP);
        if (rc == KVC_OK) {
            CHECK(strcmp(kvc_active_isa(), ISA_NAMES[i]) == 0);
            available++;
            if (strcmp(ISA_NAMES[i], "avx512_bf16") != 0) last = ISA_NAMES[i]; /* opt-in */
        }
    }
    printf("  attention ISAs available here:");
    for (size_t i = 0; i < COUNT(ISA_NAMES); i++)
        if (kvc_set_isa(ISA_NAMES[i]) == KVC_OK) printf(" %s", ISA_NAMES[i]);
    printf("\n");
    CHECK(available >= 1);
    /* "auto" and NULL pick the most capable one but the opt-in avx512_bf16
     * (the table is ordered) */
    CHECK_EQ(kvc_set_isa("auto"), KVC_OK);
    CHECK(last && strcmp(kvc_active_isa(), last) == 0);
    CHECK_EQ(kvc_set_isa(NULL), KVC_OK);
    CHECK(last && strcmp(kvc_active_isa(), last) == 0);
    /* KVC_FORCE_ISA decides the first choice of the process (run by the
     * attn_force_isa part with each name); unsupported names fall back */
    const char *force = getenv("KVC_FORCE_ISA");
    if (force && *force && strcmp(force, "auto") != 0) {
        int ok = kvc_set_isa(force) == KVC_OK;
        CHECKF(!ok || strcmp(saved.name, force) == 0, "KVC_FORCE_ISA=%s but the first choice was %s", force,
               saved.name);
        CHECKF(ok || strcmp(saved.name, last) == 0, "KVC_FORCE_ISA=%s (unusable) but the first choice was %s",
               force, saved.name);
    } else {
        CHECKF(strcmp(saved.name, last) == 0, "first choice %s, best available %s", saved.name, last);
    }
    isa_restore(saved);
}

/* ------------------------------------------------------------ through the cache */

/* STORE-mode attend on f16/bf16 (and f32) storage: against the reference on
 * the stored values (read back exactly) with the kernel bound, and against
 * the f32 inputs with the storage rounding added: an element stored as
 * f16 is off by <= 2^-11 |x| + 2^-25 (subnormal spacing 2^-24, halved), as
 * bf16 by <= 2^-8 |x| (inputs are far from bf16's subnormals), so logits
 * move by <= u_dt S_j + a_dt scale sum|q| and out by u_dt W_i + a_dt more. */
TEST(attn_cache_attend_storage) {
    isa_saved saved = isa_save();
    const uint32_t hkv = 2, hq = 8, d = 64, cap = 300, steps = 257;
    for (int dt = 0; dt < N_DT; dt++) {
        for (size_t s = 0; s < COUNT(ISA_NAMES); s++) {
            if (kvc_set_isa(ISA_NAMES[s]) != KVC_OK) continue;
            kvc_cache *c = NULL;
            REQUIRE(kvc_cache_create_spec(&c, hkv, hq, d, cap, (kvc_dtype)dt, KVC_MODE_STORE, "h2o", NULL) == KVC_OK);
            float *kin = malloc((size_t)steps * hkv * d * 4), *vin = malloc((size_t)steps * hkv * d * 4);
            float q[8 * 64], out[8 * 64];
            REQUIRE(kin && vin);
            rng_state = 1234 + (uint64_t)dt;
            for (size_t i = 0; i < (size_t)steps * hkv * d; i++) kin[i] = unif(), vin[i] = unif();
            for (size_t i = 0; i < hq * d; i++) q[i] = unif() * 6.0f;
            for (uint32_t t = 0; t < steps; t++)
                REQUIRE(kvc_cache_append(c, t, kin + (size_t)t * hkv * d, vin + (size_t)t * hkv * d) == KVC_OK);
            REQUIRE(kvc_cache_len(c) == steps);
            CHECK_EQ(kvc_cache_attend(c, q, out), KVC_OK);
            /* the stored values, read back as f32 (exact), in kvc_attention layout */
            float *ks = malloc((size_t)hkv * steps * d * 4), *vs = malloc((size_t)hkv * steps * d * 4);
            REQUIRE(ks && vs);
            for (uint32_t h = 0; h < hkv; h++)
                for (uint32_t j = 0; j < steps; j++)
                    CHECK_EQ(kvc_cache_read(c, h, j, ks + ((size_t)h * steps + j) * d, vs + ((size_t)h * steps + j) * d),
                             KVC_OK);
            kvc_attn_layout L = {hq, hkv, d, steps, KVC_DTYPE_F32, d, (size_t)steps * d, 0.0f};
            reference R = {0}, Rin = {0};
            REQUIRE(ref_compute(&R, &L, q, ks, vs) == 0);
            /* the original inputs, same layout (the cache is dense in append order: no eviction yet) */
            float *ki = malloc((size_t)hkv * steps * d * 4), *vi = malloc((size_t)hkv * steps * d * 4);
            REQUIRE(ki && vi);
            for (uint32_t h = 0; h < hkv; h++)
                for (uint32_t j = 0; j < steps; j++) {
                    memcpy(ki + ((size_t)h * steps + j) * d, kin + ((size_t)j * hkv + h) * d, d * 4);
                    memcpy(vi + ((size_t)h * steps + j) * d, vin + ((size_t)j * hkv + h) * d, d * 4);
                }
            REQUIRE(ref_compute(&Rin, &L, q, ki, vi) == 0);
            /* Q8: an element is off by at most half its row's scale, s = max|x|/127 <= 1/127
             * here, plus the float rounding of s * q_i */
            const double udt = dt == KVC_DTYPE_F32  ? 0.0
                               : dt == KVC_DTYPE_F16 ? ldexp(1, -11)
                               : dt == KVC_DTYPE_Q8  ? ldexp(1, -22)
                                                     : ldexp(1, -8);
            const double adt = dt == KVC_DTYPE_F16 ? ldexp(1, -25) : dt == KVC_DTYPE_Q8 ? 0.5 / 127 * (1 + 1e-6) : 0.0;
            /* the shape fits the rounded-q variants (d = 64, 4 query heads per kv head) */
            const reference *Rs = ref_for(&R, ISA_NAMES[s], (kvc_dtype)dt), *Ri = ref_for(&Rin, ISA_NAMES[s], (kvc_dtype)dt);
            REQUIRE(Rs && Ri);
            int bad = 0, bad_in = 0;
            for (uint32_t h = 0; h < hq; h++) {
                double smax = 0.0, qsum = 0.0;
                for (uint32_t i = 0; i < d; i++) qsum += fabs(q[h * d + i]);
                for (uint32_t j = 0; j < steps; j++) {
                    double b = 0.0;
                    for (uint32_t i = 0; i < d; i++) b += fabs(q[h * d + i] * ki[((size_t)(h / 4) * steps + j) * d + i]);
                    smax = b > smax ? b : smax;
                }
                const double scale = 1.0 / sqrt((double)d);
                const double dlogit = (udt * smax + adt * qsum) * scale;
                for (uint32_t i = 0; i < d; i++) {
                    const size_t x = (size_t)h * d + i;
                    bad += !(fabs(out[x] - Rs->out[x]) <= Rs->eps[h] * Rs->wabs[x] + 1e-30);
                    double tol = (Rs->eps[h] + 2.0 * (2.0 * dlogit + udt)) * Ri->wabs[x] + 2.0 * adt + 1e-30;
                    bad_in += !(fabs(out[x] - Ri->out[x]) <= tol);
                }
            }
            CHECKF(bad == 0, "isa=%s dtype=%s: %d outputs off the stored-value reference", ISA_NAMES[s],
                   dt_name((kvc_dtype)dt), bad);
            CHECKF(bad_in == 0, "isa=%s dtype=%s: %d outputs off the f32-input reference", ISA_NAMES[s],
                   dt_name((kvc_dtype)dt), bad_in);
            ref_free(&R);
            ref_free(&Rin);
            free(ks);
            free(vs);
            free(ki);
            free(vi);
            free(kin);
            free(vin);
            kvc_cache_destroy(c);
        }
    }
    isa_restore(saved);
}
