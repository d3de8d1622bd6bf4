/* Inner blocks for AVX-512 CPUs with VNNI and BF16 (included by avx512.c
 * when avx512_ext.c compiles it with those extensions enabled; the
 * dispatcher runs them only when cpuid lists them).
 *
 * VAR_VNNI, Q8 keys: q is quantised once per call to int16 with one scale
 * per query head (max|q|/32767, round half to even), the key bytes are
 * widened to int16 (one vpmovsxbw per 32), and q.k runs in vpdpwssd on
 * exact integers: 32 multiply-adds per instruction, no conversion to float
 * until the fold. The logit then differs from the dequantised-values one
 * by q's rounding only, at most scale * s_k * sum_i |k_i| * s_q / 2, i.e.
 * 2^-16 of max|q| per element: far below the rows' own 8-bit rounding.
 * (int8 q and vpdpbusd would be twice as cheap again but put q's error at
 * 1/254 of max|q|, on the order of the keys' own; measured in
 * docs/performance.md.)
 *
 * VAR_DPBF16, bf16 keys: vdpbf16ps multiplies bf16 pairs exactly and adds
 * them in f32. q goes in as two bf16 parts, hi = bf16(q) and lo = bf16(q -
 * hi), so q is represented to about 2^-17 relative instead of bf16's 2^-9:
 * two vdpbf16ps per 32 elements and head, no conversion of the key rows. */

#define Q8_MAX_D 512 /* |q.k| in int32 without overflow: 32767 * 127 * d < 2^31 */

/* Floats of q scratch per head: round32(d) int16 values, then the scale,
 * padded to keep the next head 64-byte aligned. */
AI size_t q8_stride(uint32_t d) { return (((size_t)d + 31) & ~(size_t)31) / 2 + 16; }

/* One query row as int16 (scale max|q|/32767, round half to even through
 * cvtps_epi32 under the default rounding mode), zero-padded to 64 bytes. A
 * row below 1e-33 (32767/max would overflow) is stored as zeros: its
 * logits are then 0 instead of below 1e-33 * scale * sum|k|. */
AI void quantize_q(float *dst, const float *q, uint32_t d) {
    int16_t *q16 = (int16_t *)(void *)dst;
    const size_t dp = ((size_t)d + 31) & ~(size_t)31;
    __m512 vmax = _mm512_setzero_ps();
    for (uint32_t i = 0; i < d; i += 16)
        vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_maskz_loadu_ps(tail_mask(d - i), q + i)));
    const float amax = _mm512_reduce_max_ps(vmax);
    const bool zero = !(amax >= 1e-33f);
    const __m512 inv = _mm512_set1_ps(zero ? 0.0f : 32767.0f / amax);
    memset(q16, 0, dp * 2);
    for (uint32_t i = 0; i < d; i += 16) {
        const __mmask16 m = tail_mask(d - i);
        __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, q + i), inv)); /* |v| <= 32767 */
        _mm256_mask_storeu_epi16(q16 + i, m, _mm512_cvtepi32_epi16(v));
    }
    const float qs = zero ? 0.0f : amax / 32767.0f;
    memcpy(q16 + dp, &qs, 4);
}

/* fold16 on int32 lanes: the same transpose tree, exact integer adds. */
AI __m512 addi(__m512 a, __m512 b) {
    return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}
AI __m512i fold16i(const __m512i *ai) {
    __m512 a[16], b[8], c[4], e[2];
    UNROLL
    for (int i = 0; i < 16; i++) a[i] = _mm512_castsi512_ps(ai[i]);
    UNROLL
    for (int i = 0; i < 8; i++) b[i] = addi(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    UNROLL
    for (int i = 0; i < 4; i++) {
        __m512d x = _mm512_castps_pd(b[2 * i]), y = _mm512_castps_pd(b[2 * i + 1]);
        c[i] = addi(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
    }
    UNROLL
    for (int i = 0; i < 2; i++)
        e[i] = addi(_mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0x88), _mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0xdd));
    return _mm512_castps_si512(addi(_mm512_shuffle_f32x4(e[0], e[1], 0x88), _mm512_shuffle_f32x4(e[0], e[1], 0xdd)));
}

/* Logits of HB heads x KB Q8 keys by vpdpwssd; qb: the quantised heads,
 * q8_stride(d) floats apart. */
AI void qk_block_vnni(const float *qb, uint32_t d, const char *const *kr, int HB, int KB, float scale, float *s,
                      size_t ss, uint32_t j) {
    const size_t qst = q8_stride(d), dp = ((size_t)d + 31) & ~(size_t)31;
    __m512i acc[16];
    UNROLL
    for (int a = 0; a < 16; a++) acc[a] = _mm512_setzero_si512();
    for (uint32_t i = 0; i < d; i += 32) {
        /* past d the key bytes read as 0, against q's zero padding */
        const __mmask32 m = d - i >= 32 ? ~(__mmask32)0 : ((__mmask32)1 << (d - i)) - 1;
        __m512i kx[16];
        UNROLL
        for (int b = 0; b < KB; b++) kx[b] = _mm512_cvtepi8_epi16(_mm256_maskz_loadu_epi8(m, kr[b] + i));
        UNROLL
        for (int h = 0; h < HB; h++) {
            const __m512i qv = _mm512_load_si512((const void *)((const int16_t *)(const void *)(qb + h * qst) + i));
            UNROLL
            for (int b = 0; b < KB; b++) acc[h * KB + b] = _mm512_dpwssd_epi32(acc[h * KB + b], kx[b], qv);
        }
    }
    const __m512i dot = fold16i(acc);
    float mul[16];
    UNROLL
    for (int a = 0; a < 16; a++) {
        float qs;
        memcpy(&qs, (const int16_t *)(const void *)(qb + (a / KB) * qst) + dp, 4);
        mul[a] = scale * qs * kvc__row_scale(kr[a % KB], d, KVC_DTYPE_Q8);
    }
    float tmp[16] __attribute__((aligned(64)));
    _mm512_store_ps(tmp, _mm512_mul_ps(_mm512_cvtepi32_ps(dot), _mm512_loadu_ps(mul)));
    UNROLL
    for (int h = 0; h < HB; h++) memcpy(s + (size_t)h * ss + j, tmp + h * KB, (size_t)KB * sizeof(float));
}

/* qs[h*d + 32c ...]: chunk c of q[h] as 32 bf16 hi parts, then 32 lo parts. */
AI void split_q_bf16(float *qs, const float *q, uint32_t G, uint32_t d) {
    for (size_t i = 0; i < (size_t)G * d; i += 32) {
        const __m512 a = _mm512_loadu_ps(q + i), b = _mm512_loadu_ps(q + i + 16);
        const __m512bh hi = _mm512_cvtne2ps_pbh(b, a);
        const __m512i h = (__m512i)hi;
        const __m512 ah = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(h)), 16));
        const __m512 bh = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(h, 1)), 16));
        const __m512bh lo = _mm512_cvtne2ps_pbh(_mm512_sub_ps(b, bh), _mm512_sub_ps(a, ah));
        _mm512_store_si512((void *)(qs + i), h);
        _mm512_store_si512((void *)(qs + i + 16), (__m512i)lo);
    }
}

/* Logits of HB heads x KB bf16 keys by vdpbf16ps on q's two parts. */
AI void qk_block_dpbf16(const float *qs, uint32_t d, const char *const *kr, int HB, int KB, float scale, float *s,
                        size_t ss, uint32_t j) {
    __m512 acc[16];
    UNROLL
    for (int a = 0; a < 16; a++) acc[a] = _mm512_setzero_ps();
    for (uint32_t i = 0; i < d; i += 32) {
        __m512bh qh[4], ql[4];
        UNROLL
        for (int h = 0; h < HB; h++) {
            qh[h] = (__m512bh)_mm512_load_si512((const void *)(qs + (size_t)h * d + i));
            ql[h] = (__m512bh)_mm512_load_si512((const void *)(qs + (size_t)h * d + i + 16));
        }
        UNROLL
        for (int b = 0; b < KB; b++) {
            const __m512bh k = (__m512bh)_mm512_loadu_si512((const void *)((const uint16_t *)(const void *)kr[b] + i));
            UNROLL
            for (int h = 0; h < HB; h++) {
                acc[h * KB + b] = _mm512_dpbf16_ps(acc[h * KB + b], qh[h], k);
                acc[h * KB + b] = _mm512_dpbf16_ps(acc[h * KB + b], ql[h], k);
            }
        }
    }
    float tmp[16] __attribute__((aligned(64)));
    _mm512_store_ps(tmp, _mm512_mul_ps(fold16(acc), _mm512_set1_ps(scale)));
    UNROLL
    for (int h = 0; h < HB; h++) memcpy(s + (size_t)h * ss + j, tmp + h * KB, (size_t)KB * sizeof(float));
}
