/* The free kernel, kvc_attention() and kvc_attention_heads(), for the API
 * fuzz target: one call per op on a layout the input describes. Shapes
 * cross the kernels' internal blocks (query heads per pass, kv heads read
 * together, chunk and prefetch thresholds); every dtype, with f16/bf16 as
 * raw bit patterns and Q8 as quantised or raw rows (any int8, any scale);
 * slot-major, token-major, shared, overlapping and padded layouts whose K
 * and V buffers end exactly at the last byte read (ASan catches a read
 * past it); bad layouts of every kind. Checked: the error code, and that a
 * failing call writes nothing; output and weights against an f64
 * reference on the stored values; weights rows sum to 1 and nothing past
 * n_keys or outside the requested heads is written; a NaN or Inf in one
 * head's inputs leaves every other head bit-identical to the clean call. */
#ifndef KVC_FUZZ_KERNEL_OP_H
#define KVC_FUZZ_KERNEL_OP_H

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "kvc.h"

enum { KO_MAX_KV = 10, KO_MAX_Q = 140, KO_MAX_D = 130, KO_MAX_N = 1300, KO_SENT_BITS = 0x7f8abcdeu };

static float ko_sentinel(void) {
    uint32_t b = KO_SENT_BITS; /* a NaN no kernel produces */
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}
static bool ko_is_sentinel(float f) {
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b == KO_SENT_BITS;
}

/* f16 bits to double, exactly; by the bits of the double rather than
 * ldexp(), which took about 6% of an execution (perf). */
static double ko_half(uint16_t h) {
    const uint64_t e = h >> 10 & 31, m = h & 1023;
    double v;
    if (e == 0) {
        v = (double)m * 0x1p-24;
    } else if (e == 31) {
        v = m ? NAN : INFINITY;
    } else {
        const uint64_t bits = (e - 15 + 1023) << 52 | m << 42;
        memcpy(&v, &bits, sizeof v);
    }
    return h & 0x8000 ? -v : v;
}
static double ko_bf16(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* The kernels' documented departures from f32 on the active ISA, shared
 * with the cache's check (fuzz_api.c): with Q8 storage the VNNI kernels
 * round each query head to integers (at worst like a stored row, max|q|/254
 * per element); the BF16 one splits queries in two bf16 (relative 2^-16). */
static void ko_departures(kvc_dtype dt, bool *q8_query, double *q_rel) {
    const char *isa = kvc_active_isa();
    const bool bf16 = strcmp(isa, "avx512_bf16") == 0;
    *q8_query = dt == KVC_DTYPE_Q8 && (bf16 || strcmp(isa, "avx512_vnni") == 0);
    *q_rel = dt == KVC_DTYPE_BF16 && bf16 ? 0x1p-16 : 0.0;
}

/* An output's tolerance from the logits' error bound `err` and the largest
 * |V| over n keys; NaN (no comparison) when rounding makes it meaningless. */
static double ko_tolerance(double err, double vmax, uint32_t n) {
    return err > 0.05 ? NAN : vmax * (4 * err + (n + 8) * 4 * FLT_EPSILON) + 1e-30;
}

/* Byte offset of a Q8 row's scale: head_dim rounded up to a multiple of 4. */
static size_t ko_scale_off(uint32_t d) { return (d + 3) & ~(size_t)3; }

typedef struct {
    kvc_attn_layout L;
    size_t esz;             /* bytes per element (Q8: 1, strides in bytes) */
    unsigned char *kb, *vb; /* exact-size blocks; K/V start `off` bytes in */
    size_t off;
    bool disjoint;          /* no two kv heads share an element */
} ko_buf;

/* Row of key s of kv head g. */
static unsigned char *ko_row(const ko_buf *b, unsigned char *base, uint32_t g, uint32_t s) {
    return base + (g * b->L.head_stride + s * b->L.row_stride) * b->esz;
}

/* The d elements of key s of kv head g, as stored, into dst. */
FZ_NOCOV static void ko_decode_row(const ko_buf *b, unsigned char *base, uint32_t g, uint32_t s, double *dst) {
    const unsigned char *row = ko_row(b, base, g, s);
    const uint32_t d = b->L.head_dim;
    uint16_t h;
    switch (b->L.dtype) {
    case KVC_DTYPE_F16:
        for (uint32_t i = 0; i < d; i++) memcpy(&h, row + 2 * i, 2), dst[i] = ko_half(h);
        break;
    case KVC_DTYPE_BF16:
        for (uint32_t i = 0; i < d; i++) memcpy(&h, row + 2 * i, 2), dst[i] = ko_bf16(h);
        break;
    case KVC_DTYPE_Q8: {
        float sc;
        memcpy(&sc, row + ko_scale_off(d), sizeof sc);
        for (uint32_t i = 0; i < d; i++) dst[i] = (double)sc * (int8_t)row[i];
        break;
    }
    default:
        for (uint32_t i = 0; i < d; i++) {
            float f;
            memcpy(&f, row + 4 * i, 4);
            dst[i] = f;
        }
        break;
    }
}

/* Writes value x (finite, in range of the dtype) at element i of a row. */
static void ko_put(const ko_buf *b, unsigned char *row, uint32_t i, uint32_t bits, int style) {
    switch (b->L.dtype) {
    case KVC_DTYPE_F16: {
        /* sign, an exponent that keeps |x| < 8 (0 = subnormals), any mantissa */
        uint16_t e = (uint16_t)(style == 1 ? 0 : bits % 18), h = (uint16_t)((bits >> 8 & 0x8000) | e << 10 | (bits >> 5 & 1023));
        memcpy(row + 2 * i, &h, 2);
        break;
    }
    case KVC_DTYPE_BF16: {
        uint16_t e = (uint16_t)(style == 1 ? 0 : 117 + bits % 13), h = (uint16_t)((bits >> 8 & 0x8000) | e << 7 | (bits >> 5 & 127));
        memcpy(row + 2 * i, &h, 2);
        break;
    }
    case KVC_DTYPE_Q8: row[i] = (unsigned char)(bits >> 7); break; /* any int8, -128 included */
    default: {
        float f = style == 1 ? 1.0f : (float)(int8_t)(bits >> 9) / 16.0f;
        memcpy(row + 4 * i, &f, 4);
        break;
    }
    }
}

/* Fill every row of every head (rows shared by layouts get the last write). */
FZ_NOCOV static void ko_fill(ko_buf *b, unsigned char *base, uint32_t seed, int style, bool quantise) {
    const kvc_attn_layout *L = &b->L;
    float x[KO_MAX_D];
    for (uint32_t g = 0; g < L->n_kv_heads; g++)
        for (uint32_t s = 0; s < L->n_keys; s++) {
            unsigned char *row = ko_row(b, base, g, s);
            for (uint32_t i = 0; i < L->head_dim; i++) {
                seed = seed * 1664525u + 1013904223u;
                if (L->dtype == KVC_DTYPE_Q8 && quantise)
                    x[i] = style == 1 ? 1.0f : style == 2 ? 0.0f : (float)(int8_t)(seed >> 24) * 0.37f;
                else
                    ko_put(b, row, i, seed >> 8, style);
            }
            if (L->dtype != KVC_DTYPE_Q8) continue;
            if (quantise) {
                FZ_CHECK(kvc_quantize_q8(x, L->head_dim, row) == KVC_OK, "quantize_q8");
            } else {
                /* a raw row: any int8 and a scale of either sign, or 0 */
                seed = seed * 1664525u + 1013904223u;
                float sc = style == 2 ? 0.0f : ldexpf((float)(int)(seed >> 20 & 255) - 128.0f, -(int)(seed >> 28) - 10);
                memcpy(row + ko_scale_off(L->head_dim), &sc, sizeof sc);
            }
        }
}

/* Q8 rows of overlapping heads may land on another row's scale: make every
 * scale finite and small again (a few passes, as one fix may break another); false if
 * some stays non-finite. */
static bool ko_finite_scales(const ko_buf *b, unsigned char *base) {
    const kvc_attn_layout *L = &b->L;
    if (L->dtype != KVC_DTYPE_Q8) return true;
    for (int pass = 0; pass < 4; pass++) {
        bool fixed = false;
        for (uint32_t g = 0; g < L->n_kv_heads; g++)
            for (uint32_t s = 0; s < L->n_keys; s++) {
                unsigned char *sp = ko_row(b, base, g, s) + ko_scale_off(L->head_dim);
                float sc;
                memcpy(&sc, sp, sizeof sc);
                if (fabsf(sc) <= 1e3f) continue; /* NaN too: a huge scale would overflow the logits */
                sc = 0.01f;
                memcpy(sp, &sc, sizeof sc);
                fixed = true;
            }
        if (!fixed) return true;
    }
    return false;
}

/* Poison one real element of kv head g with NaN or +-Inf. */
static void ko_poison(ko_buf *b, unsigned char *base, uint32_t g, uint32_t s, uint32_t i, int kind) {
    const kvc_attn_layout *L = &b->L;
    unsigned char *row = ko_row(b, base, g, s);
    uint16_t h;
    float f = kind == 0 ? NAN : kind == 1 ? INFINITY : -INFINITY;
    switch (L->dtype) {
    case KVC_DTYPE_F16: h = kind == 0 ? 0x7e00 : kind == 1 ? 0x7c00 : 0xfc00; memcpy(row + 2 * i, &h, 2); break;
    case KVC_DTYPE_BF16: h = kind == 0 ? 0x7fc0 : kind == 1 ? 0x7f80 : 0xff80; memcpy(row + 2 * i, &h, 2); break;
    case KVC_DTYPE_Q8: memcpy(row + ko_scale_off(L->head_dim), &f, sizeof f); break; /* the row's scale */
    default: memcpy(row + 4 * i, &f, 4); break;
    }
}

/* f64 reference with the same tolerance rule as the cache's (fuzz_api.c's
 * reference_out): out[h], tol[h] (ko_tolerance), lerr[h] the logits' error
 * bound, p[h * n + s] the weights. */
FZ_NOCOV static void ko_reference(const ko_buf *b, const float *q, double *out, double *tol, double *lerr, double *p) {
    const kvc_attn_layout *L = &b->L;
    const uint32_t ratio = L->n_q_heads / L->n_kv_heads, d = L->head_dim, n = L->n_keys;
    const double scale = L->scale > 0.0f ? L->scale : (double)(1.0f / sqrtf((float)d));
    bool q8_query;
    double q_rel;
    ko_departures(L->dtype, &q8_query, &q_rel);
    static double kd[KO_MAX_N * KO_MAX_D], vd[KO_MAX_N * KO_MAX_D]; /* kv head g, decoded once for its heads */
    double vmax = 0; /* the largest |V| of kv head g */
    for (uint32_t h = 0; h < L->n_q_heads; h++) {
        const uint32_t g = h / ratio;
        if (h % ratio == 0) {
            vmax = 0;
            for (uint32_t s = 0; s < n; s++) {
                ko_decode_row(b, b->kb + b->off, g, s, kd + (size_t)s * d);
                ko_decode_row(b, b->vb + b->off, g, s, vd + (size_t)s * d);
            }
            for (size_t i = 0; i < (size_t)n * d; i++) vmax = fmax(vmax, fabs(vd[i]));
        }
        const float *qh = q + (size_t)h * d;
        double q_abs = 0, mx = -INFINITY, err = 0, sum = 0;
        if (q8_query)
            for (uint32_t i = 0; i < d; i++) q_abs = fmax(q_abs, fabs((double)qh[i]) / 254.0);
        double *lg = p + (size_t)h * n;
        for (uint32_t s = 0; s < n; s++) {
            double acc = 0, mag = 0, kabs = 0;
            for (uint32_t i = 0; i < d; i++) {
                double kv = kd[(size_t)s * d + i];
                acc += qh[i] * kv;
                mag += fabs(qh[i] * kv);
                kabs += fabs(kv);
            }
            lg[s] = acc * scale;
            err = fmax(err, mag * scale * ((d + 2) * FLT_EPSILON + q_rel) + kabs * q_abs * scale);
            mx = fmax(mx, lg[s]);
        }
        for (uint32_t s = 0; s < n; s++) sum += (lg[s] = exp(lg[s] - mx));
        for (uint32_t s = 0; s < n; s++) lg[s] /= sum;
        /* by rows, each column summed in key order */
        double *o = out + (size_t)h * d;
        for (uint32_t i = 0; i < d; i++) o[i] = 0;
        for (uint32_t s = 0; s < n; s++)
            for (uint32_t i = 0; i < d; i++) o[i] += lg[s] * vd[(size_t)s * d + i];
        tol[h] = ko_tolerance(err, vmax, n);
        lerr[h] = err;
    }
}

static int ko_call(const ko_buf *b, bool heads, uint32_t lo, uint32_t hi, const float *q, float *out, float *w,
                   size_t ws) {
    const void *k = b->kb + b->off, *v = b->vb + b->off;
    return heads ? kvc_attention_heads(&b->L, lo, hi, q, k, v, out, w, ws) : kvc_attention(&b->L, q, k, v, out, w, ws);
}

static void op_kernel(fz_reader *r) {
    static float q[KO_MAX_Q * KO_MAX_D], out[KO_MAX_Q * KO_MAX_D], out2[KO_MAX_Q * KO_MAX_D];
    static double ref[KO_MAX_Q * KO_MAX_D], tol[KO_MAX_Q], err[KO_MAX_Q], pref[1 << 16];
    static float w[KO_MAX_Q * (KO_MAX_N + 4)], w2[KO_MAX_Q * (KO_MAX_N + 4)];
    ko_buf b;
    memset(&b, 0, sizeof b);
    kvc_attn_layout *L = &b.L;
    const uint8_t shape = fz_u8(r), kind = fz_u8(r);
    uint32_t nkv = 1 + fz_u8(r) % 4, ratio = 1 + fz_u8(r) % 9, d = 1 + fz_u8(r) % KO_MAX_D, n = 1 + fz_u8(r) % 200;
    switch (shape & 7) {
    case 5: nkv = 1 + fz_u8(r) % KO_MAX_KV, d = 1 + d % 16; break;  /* more kv heads than one batch */
    case 6: ratio = 1 + fz_u8(r) % 70, nkv = 1 + nkv % 2, d = 1 + d % 16, n = 1 + n % 64; break; /* > MAXH per kv head */
    case 7: n = 600 + fz_u16(r) % (KO_MAX_N - 599), d = 1 + d % 32, ratio = 1 + ratio % 12; break; /* several chunks */
    default: break;
    }
    L->n_q_heads = nkv * ratio;
    L->n_kv_heads = nkv;
    L->head_dim = d;
    L->n_keys = n;
    L->dtype = (kvc_dtype)(shape >> 3 & 3);
    L->scale = shape & 0x20 ? 0.0f : (float)(1 + fz_u8(r) % 128) / 128.0f;
    b.esz = L->dtype == KVC_DTYPE_F32 ? 4 : L->dtype == KVC_DTYPE_Q8 ? 1 : 2;
    const size_t rowb = kvc_row_bytes(L->dtype, d);
    FZ_CHECK(rowb && rowb % b.esz == 0, "row_bytes(%d, %u) = %zu", (int)L->dtype, d, rowb);
    const size_t row_el = rowb / b.esz; /* elements of a row */
    const size_t pad = fz_u8(r) % 4; /* elements (Q8: bytes) after each row */
    switch (kind & 3) {
    case 0: /* slot-major: heads one after the other, maybe with a gap */
        L->row_stride = row_el + pad;
        L->head_stride = n * L->row_stride + (kind >> 2 & 3);
        b.disjoint = true;
        break;
    case 1: /* token-major: all kv heads of a token together */
        L->head_stride = row_el + pad;
        L->row_stride = nkv * L->head_stride + (kind >> 2 & 1);
        b.disjoint = true;
        break;
    case 2: /* one K/V shared by every head */
        L->row_stride = row_el + pad;
        L->head_stride = 0;
        break;
    default: /* heads overlapping by any amount */
        L->row_stride = row_el + pad;
        L->head_stride = fz_u16(r) % (n * L->row_stride + 1);
        b.disjoint = nkv == 1;
        break;
    }
    /* huge strides that are never used to form an offset (one key, one kv head) */
    if ((kind & 0x30) == 0x30 && n == 1) L->row_stride = SIZE_MAX / 2;
    if ((kind & 0x30) == 0x30 && nkv == 1) L->head_stride = SIZE_MAX / 2;
    size_t last = ((size_t)(nkv - 1) * (nkv > 1 ? L->head_stride : 0) + (size_t)(n - 1) * (n > 1 ? L->row_stride : 0) +
                   row_el) * b.esz;
    /* K and V start at an element-aligned offset: 64-byte aligned or not */
    b.off = (fz_u8(r) & 7) * b.esz;
    const size_t bytes = b.off + last;
    b.kb = malloc(bytes);
    b.vb = (kind & 0xc0) == 0xc0 ? b.kb : malloc(bytes); /* K and V may be one buffer */
    FZ_CHECK(b.kb && b.vb, "malloc %zu", bytes);
    memset(b.kb, 0xa5, bytes);
    if (b.vb != b.kb) memset(b.vb, 0x5a, bytes);
    const int style = fz_u8(r) % 4; /* 1: ties, 2: zero Q8 rows */
    const bool quantise = fz_u8(r) & 1;
    ko_fill(&b, b.kb + b.off, fz_u16(r), style, quantise);
    if (b.vb != b.kb) ko_fill(&b, b.vb + b.off, fz_u16(r), style, quantise);
    const bool finite = ko_finite_scales(&b, b.kb + b.off) && ko_finite_scales(&b, b.vb + b.off);

    const size_t nqd = (size_t)L->n_q_heads * d;
    uint32_t qs = fz_u16(r);
    for (size_t i = 0; i < nqd; i++) {
        qs = qs * 1664525u + 1013904223u;
        q[i] = style == 1 ? 0.5f : (float)(int8_t)(qs >> 24) / 32.0f;
    }
    const bool want_w = fz_u8(r) & 1;
    const size_t ws = n + fz_u8(r) % 4;
    const float sent = ko_sentinel();
    for (size_t i = 0; i < nqd; i++) out[i] = sent;
    for (size_t i = 0; i < L->n_q_heads * ws; i++) w[i] = sent;

    /* kv heads [lo, hi) through kvc_attention_heads, or all through kvc_attention */
    const uint8_t how = fz_u8(r);
    const bool heads = how & 1;
    uint32_t lo = 0, hi = nkv;
    if (heads) {
        lo = fz_u8(r) % nkv;
        hi = lo + 1 + fz_u8(r) % (nkv - lo);
    }

    /* one bad thing, or none */
    const uint8_t bad = fz_u8(r);
    int expect = KVC_OK;
    kvc_attn_layout good = *L;
    const float *qp = q;
    float *op = out, *wp = want_w ? w : NULL;
    size_t wsp = ws;
    bool null_l = false, null_k = false, null_v = false;
    if (bad < 64) {
        expect = KVC_EINVAL;
        switch (bad % 21) {
        case 0: null_l = true; break;
        case 1: qp = NULL; break;
        case 2: null_k = true; break;
        case 3: null_v = true; break;
        case 4: op = NULL; break;
        case 5: L->n_q_heads = 0; break;
        case 6: L->n_kv_heads = 0; break;
        case 7: L->head_dim = 0; break;
        case 8: L->n_keys = 0; break;
        case 9: if (nkv > 1) L->n_q_heads++; else expect = KVC_OK; break;
        case 10: L->dtype = (kvc_dtype)(4 + fz_u8(r) % 250); break;
        case 11: L->row_stride = row_el - 1; break; /* shorter than a row */
        case 12: wp = w, wsp = n - 1; break;
        case 13: L->scale = NAN; break;
        case 14: L->scale = -1.0f / (1 + fz_u8(r)); break;
        case 15: L->scale = INFINITY; break;
        /* offsets that do not fit: refused, though each stride alone is a number */
        case 16: /* (n_keys - 1) * row_stride wraps */
            L->row_stride = n > 2 ? SIZE_MAX / (n - 1) + 1 + fz_u8(r) : SIZE_MAX - fz_u8(r);
            expect = n > 1 ? KVC_EOVERFLOW : KVC_OK;
            break;
        case 17: L->row_stride = (size_t)1 << 63; expect = n > 1 ? KVC_EOVERFLOW : KVC_OK; break;
        case 18: /* (n_kv_heads - 1) * head_stride bytes pass PTRDIFF_MAX */
            L->head_stride = (size_t)PTRDIFF_MAX / b.esz / (nkv > 1 ? nkv - 1 : 1) + 1;
            expect = nkv > 1 ? KVC_EOVERFLOW : KVC_OK;
            break;
        case 19: /* so do the weights rows' */
            wp = w, wsp = L->n_q_heads > 1 ? (size_t)PTRDIFF_MAX / 4 / (L->n_q_heads - 1) + 1 : SIZE_MAX;
            expect = L->n_q_heads > 1 ? KVC_EOVERFLOW : KVC_OK;
            break;
        default: /* a bad head range: checked after the layout */
            if (!heads) expect = KVC_OK;
            else if (fz_u8(r) & 1) lo = hi = fz_u8(r) % (nkv + 1), expect = KVC_ERANGE;
            else hi = nkv + 1 + fz_u8(r) % 3, expect = KVC_ERANGE;
            break;
        }
        if (expect == KVC_OK) *L = good; /* the "bad" value was harmless here: a normal call */
    }
    kvc_attn_layout *lp = null_l ? NULL : L;
    const void *kp = null_k ? NULL : b.kb + b.off, *vp = null_v ? NULL : b.vb + b.off;
    int rc = heads ? kvc_attention_heads(lp, lo, hi, qp, kp, vp, op, wp, wsp) : kvc_attention(lp, qp, kp, vp, op, wp, wsp);
    FZ_CHECK(rc == expect, "kvc_attention%s (bad %u, shape %u/%u/%u/%u dtype %d, rs %zu hs %zu): %d, expected %d",
             heads ? "_heads" : "", bad % 21, L->n_q_heads, nkv, d, n, (int)good.dtype, L->row_stride, L->head_stride,
             rc, expect);
    if (rc != KVC_OK) {
        for (size_t i = 0; i < nqd; i++) FZ_CHECK(ko_is_sentinel(out[i]), "a refused call wrote out[%zu]", i);
        for (size_t i = 0; i < good.n_q_heads * ws; i++) FZ_CHECK(ko_is_sentinel(w[i]), "a refused call wrote weights");
        goto done;
    }

    const uint32_t qlo = lo * ratio, qhi = hi * ratio;
    const bool check_ref = finite && (size_t)L->n_q_heads * n <= sizeof pref / sizeof pref[0];
    if (check_ref) ko_reference(&b, q, ref, tol, err, pref);
    for (uint32_t h = 0; h < L->n_q_heads; h++) {
        const bool mine = h >= qlo && h < qhi;
        for (uint32_t i = 0; i < d; i++) {
            const float got = out[(size_t)h * d + i];
            if (!mine) {
                FZ_CHECK(ko_is_sentinel(got), "heads [%u, %u): query head %u written", lo, hi, h);
                continue;
            }
            if (!finite) continue;
            FZ_CHECK(isfinite(got), "kernel: non-finite output %g, head %u (dtype %d, isa %s, layout %d, d %u, n %u)", got, h,
                     (int)L->dtype, kvc_active_isa(), kind & 3, d, n);
            if (!check_ref || isnan(tol[h])) continue;
            FZ_CHECK(fabs(got - ref[(size_t)h * d + i]) <= tol[h],
                     "kernel head %u [%u] = %.9g, f64 reference %.9g (tol %g; dtype %d, isa %s, layout %d, n %u)", h,
                     i, got, ref[(size_t)h * d + i], tol[h], (int)L->dtype, kvc_active_isa(), kind & 3, n);
        }
        if (!want_w) continue;
        const float *wr = w + (size_t)h * ws;
        double sum = 0;
        for (size_t s = 0; s < ws; s++) {
            if (!mine || s >= n) {
                FZ_CHECK(ko_is_sentinel(wr[s]), "weights[%u][%zu] written (n %u, heads [%u, %u))", h, s, n, lo, hi);
                continue;
            }
            if (!finite) continue;
            FZ_CHECK(wr[s] >= 0.0f && wr[s] <= 1.0f, "weight %g", wr[s]);
            sum += wr[s];
            if (check_ref && !isnan(tol[h]))
                /* a logit off by e moves a weight by a factor up to e^(2e) */
                FZ_CHECK(fabs(wr[s] - pref[(size_t)h * n + s]) <=
                             pref[(size_t)h * n + s] * (2.2 * err[h] + (n + 16) * 8 * FLT_EPSILON) + 1e-7,
                         "weight [%u][%zu] = %.9g, reference %.9g", h, s, wr[s], pref[(size_t)h * n + s]);
        }
        if (mine && finite) FZ_CHECK(fabs(sum - 1.0) <= (n + 8) * 4 * FLT_EPSILON, "weights of head %u sum to %.9g", h, sum);
    }

    /* containment: poison one head's inputs; every other head is bit-identical */
    if ((how & 6) == 6 && b.disjoint && b.vb != b.kb) {
        const int pk = fz_u8(r) % 3;
        const uint8_t where = fz_u8(r) % 3;
        uint32_t hq = qlo + fz_u8(r) % (qhi - qlo), g = hq / ratio;
        const uint32_t s = fz_u16(r) % n, i = fz_u8(r) % d;
        float qv = q[(size_t)hq * d + i];
        if (where == 0) q[(size_t)hq * d + i] = pk == 0 ? NAN : pk == 1 ? INFINITY : -INFINITY;
        else ko_poison(&b, (where == 1 ? b.kb : b.vb) + b.off, g, s, i, pk);
        for (size_t x = 0; x < nqd; x++) out2[x] = sent;
        for (size_t x = 0; x < L->n_q_heads * ws; x++) w2[x] = sent;
        FZ_CHECK(ko_call(&b, heads, lo, hi, q, out2, want_w ? w2 : NULL, ws) == KVC_OK, "poisoned call refused");
        for (uint32_t h = qlo; h < qhi; h++) {
            if (where == 0 ? h == hq : h / ratio == g) continue;
            FZ_CHECK(memcmp(out2 + (size_t)h * d, out + (size_t)h * d, d * sizeof(float)) == 0,
                     "a non-finite input of %s head %u changed query head %u", where ? "kv" : "query",
                     where ? g : hq, h);
            if (want_w)
                FZ_CHECK(memcmp(w2 + (size_t)h * ws, w + (size_t)h * ws, n * sizeof(float)) == 0,
                         "a non-finite input changed the weights of query head %u", h);
        }
        q[(size_t)hq * d + i] = qv;
    }

done:
    if (b.vb != b.kb) free(b.vb);
    free(b.kb);
}

/* kvc_row_bytes and kvc_quantize_q8 on bad input. */
static void op_quantize_misuse(fz_reader *r) {
    unsigned char row[KO_MAX_D + 8], copy[sizeof row];
    float x[KO_MAX_D];
    const uint32_t d = 1 + fz_u8(r) % KO_MAX_D;
    FZ_CHECK(kvc_row_bytes((kvc_dtype)(4 + fz_u8(r)), d) == 0, "row_bytes of a bad dtype");
    for (uint32_t i = 0; i < d; i++) x[i] = (float)(int8_t)fz_u8(r);
    memset(row, 0x77, sizeof row);
    memcpy(copy, row, sizeof row);
    x[fz_u8(r) % d] = fz_u8(r) & 1 ? NAN : -INFINITY;
    FZ_CHECK(kvc_quantize_q8(x, d, row) == KVC_ENONFINITE, "quantize_q8 of a non-finite row");
    FZ_CHECK(kvc_quantize_q8(NULL, d, row) == KVC_EINVAL && kvc_quantize_q8(x, d, NULL) == KVC_EINVAL &&
                 kvc_quantize_q8(x, 0, row) == KVC_EINVAL,
             "quantize_q8 bad arguments");
    FZ_CHECK(memcmp(row, copy, sizeof row) == 0, "a refused quantize_q8 wrote the row");
}

#endif
