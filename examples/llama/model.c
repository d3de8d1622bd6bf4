/* Llama-architecture forward pass with libkvc caches; see model.h.
 *
 * Checkpoint (llama2.c legacy format, host byte order): seven int32
 * (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a
 * negative vocab_size means the classifier is stored separately at the end),
 * then f32 tensors, each layer's copies consecutive:
 *   token embedding [vocab][dim], rms_att [L][dim], wq [L][dim][dim],
 *   wk [L][kv_dim][dim], wv [L][kv_dim][dim], wo [L][dim][dim],
 *   rms_ffn [L][dim], w1 [L][hidden][dim], w2 [L][dim][hidden],
 *   w3 [L][hidden][dim], rms_final [dim], two obsolete RoPE tables of
 *   seq_len*head_size/2 floats each (skipped: RoPE is computed here), and
 *   the classifier [vocab][dim] when unshared.
 * Matrices are row-major [out][in]. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void set_err(char *err, size_t errlen, const char *msg, const char *arg) {
    if (err && errlen) snprintf(err, errlen, "%s%s", msg, arg ? arg : "");
}

/* a * b into *acc with overflow check (sizes in floats). */
static int mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
    if (a && b > UINT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}
static int add_ok(uint64_t *acc, uint64_t a, uint64_t b, uint64_t c) {
    uint64_t ab, abc;
    if (!mul_ok(a, b, &ab) || !mul_ok(ab, c, &abc) || abc > UINT64_MAX - *acc) return 0;
    *acc += abc;
    return 1;
}

static void *read_file(const char *path, size_t *size, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, errlen, "cannot open ", path);
        return NULL;
    }
    char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        set_err(err, errlen, "cannot determine the size of ", path);
    } else if (!(buf = malloc((size_t)n + 1))) {
        set_err(err, errlen, "out of memory reading ", path);
    } else if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        set_err(err, errlen, "short read from ", path);
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) *size = (size_t)n;
    return buf;
}

/* dst[c][r] = src[r][c] for `count` consecutive rows x cols matrices. */
static void transpose(float *dst, const float *src, size_t count, size_t rows, size_t cols) {
    for (size_t k = 0; k < count; k++, dst += rows * cols, src += rows * cols)
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < cols; c++) dst[c * rows + r] = src[r * cols + c];
}

/* dst[c][ro + r] = src[r][c] (a rows x cols matrix into the rows [ro, ro +
 * rows) of a transposed matrix with R rows in all) for `count` layers, dst
 * advancing by dst_step and src by rows x cols per layer. */
static void transpose_into(float *dst, size_t dst_step, size_t R, size_t ro, const float *src, size_t count,
                           size_t rows, size_t cols) {
    for (size_t k = 0; k < count; k++, dst += dst_step, src += rows * cols)
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < cols; c++) dst[c * R + ro + r] = src[r * cols + c];
}

/* The forward pass reads every matrix transposed (see matvec). Matrices that
 * multiply the same vector are stacked into one (wq, wk and wv; w1 and w3):
 * each output is the same sum in the same order, but a wider matrix has more
 * independent rows per column, and a matvec over 64 rows waits on its
 * additions. */
static int transpose_all(llm_model *m, char *err, size_t errlen) {
    const llm_config *c = &m->c;
    size_t D = (size_t)c->dim, H = (size_t)c->hidden_dim, L = (size_t)c->n_layers, KV = (size_t)c->kv_dim,
           V = (size_t)c->vocab_size;
    size_t n = L * (2 * D * D + 2 * KV * D + 3 * H * D) + V * D;
    float *t = m->tdata = malloc(n * sizeof(float));
    if (!t) {
        set_err(err, errlen, "out of memory for the transposed weights", NULL);
        llm_model_free(m);
        return -1;
    }
    const size_t QKV = D + 2 * KV;
    m->twqkv = t;
    transpose_into(t, QKV * D, QKV, 0, m->wq, L, D, D);
    transpose_into(t, QKV * D, QKV, D, m->wk, L, KV, D);
    transpose_into(t, QKV * D, QKV, D + KV, m->wv, L, KV, D);
    t += L * QKV * D;
    m->two = t, transpose(t, m->wo, L, D, D), t += L * D * D;
    m->tw13 = t;
    transpose_into(t, 2 * H * D, 2 * H, 0, m->w1, L, H, D);
    transpose_into(t, 2 * H * D, 2 * H, H, m->w3, L, H, D);
    t += L * 2 * H * D;
    m->tw2 = t, transpose(t, m->w2, L, D, H), t += L * D * H;
    m->twcls = t, transpose(t, m->wcls, 1, V, D);
    return 0;
}

int llm_model_load(llm_model *m, const char *path, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    size_t size;
    char *buf = read_file(path, &size, err, errlen);
    if (!buf) return -1;
    int32_t h[7];
    if (size < sizeof h) {
        set_err(err, errlen, "checkpoint too small for its header: ", path);
        free(buf);
        return -1;
    }
    memcpy(h, buf, sizeof h);
    llm_config *c = &m->c;
    c->dim = h[0], c->hidden_dim = h[1], c->n_layers = h[2], c->n_heads = h[3], c->n_kv_heads = h[4];
    c->shared_classifier = h[5] > 0;
    c->vocab_size = h[5] > 0 ? h[5] : (h[5] == INT32_MIN ? 0 : -h[5]);
    c->seq_len = h[6];
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
        c->vocab_size <= 0 || c->seq_len <= 0 || c->dim % c->n_heads || c->n_heads % c->n_kv_heads ||
        (c->dim / c->n_heads) % 2) {
        set_err(err, errlen, "bad checkpoint header (not a llama2.c legacy checkpoint?): ", path);
        free(buf);
        return -1;
    }
    c->head_size = c->dim / c->n_heads;
    c->kv_dim = c->head_size * c->n_kv_heads;
    uint64_t D = (uint64_t)c->dim, H = (uint64_t)c->hidden_dim, L = (uint64_t)c->n_layers,
             V = (uint64_t)c->vocab_size, KV = (uint64_t)c->kv_dim, S = (uint64_t)c->seq_len,
             HS = (uint64_t)c->head_size;
    uint64_t off[13], n = 0;
    int ok = 1;
    /* offsets (in floats) of each tensor, in file order */
    off[0] = n, ok &= add_ok(&n, V, D, 1);              /* token embedding */
    off[1] = n, ok &= add_ok(&n, L, D, 1);              /* rms_att */
    off[2] = n, ok &= add_ok(&n, L, D, D);              /* wq */
    off[3] = n, ok &= add_ok(&n, L, KV, D);             /* wk */
    off[4] = n, ok &= add_ok(&n, L, KV, D);             /* wv */
    off[5] = n, ok &= add_ok(&n, L, D, D);              /* wo */
    off[6] = n, ok &= add_ok(&n, L, D, 1);              /* rms_ffn */
    off[7] = n, ok &= add_ok(&n, L, H, D);              /* w1 */
    off[8] = n, ok &= add_ok(&n, L, D, H);              /* w2 */
    off[9] = n, ok &= add_ok(&n, L, H, D);              /* w3 */
    off[10] = n, ok &= add_ok(&n, D, 1, 1);             /* rms_final */
    off[11] = n, ok &= add_ok(&n, 2, S, HS / 2);        /* legacy RoPE tables */
    off[12] = n, ok &= add_ok(&n, c->shared_classifier ? 0 : V, D, 1); /* classifier */
    if (!ok || n > (UINT64_MAX - sizeof h) / 4 || (uint64_t)size != sizeof h + 4 * n) {
        char msg[160];
        snprintf(msg, sizeof msg, "checkpoint size %zu bytes does not match its header (expected %llu): ", size,
                 ok ? (unsigned long long)(sizeof h + 4 * n) : 0ull);
        set_err(err, errlen, msg, path);
        free(buf);
        return -1;
    }
    /* move the weights to an aligned block of their own */
    m->data = malloc(n * sizeof(float) + 1);
    if (!m->data) {
        set_err(err, errlen, "out of memory for the weights of ", path);
        free(buf);
        return -1;
    }
    memcpy(m->data, buf + sizeof h, n * sizeof(float));
    free(buf);
    const float *w = m->data;
    m->tok_emb = w + off[0], m->rms_att = w + off[1], m->wq = w + off[2], m->wk = w + off[3];
    m->wv = w + off[4], m->wo = w + off[5], m->rms_ffn = w + off[6], m->w1 = w + off[7];
    m->w2 = w + off[8], m->w3 = w + off[9], m->rms_final = w + off[10];
    m->wcls = c->shared_classifier ? m->tok_emb : w + off[12];
    return transpose_all(m, err, errlen);
}

void llm_model_free(llm_model *m) {
    free(m->data);
    free(m->tdata);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ tokenizer */

typedef struct {
    const char *p;
    int len, id;
} piece_ref;

static int cmp_bytes(const char *a, int la, const char *b, int lb) {
    int r = memcmp(a, b, (size_t)(la < lb ? la : lb));
    return r ? r : (la > lb) - (la < lb);
}

static const llm_tokenizer *sort_tok; /* only during the single-threaded load */
static int cmp_ids(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    int r = cmp_bytes(sort_tok->piece[x], sort_tok->piece_len[x], sort_tok->piece[y], sort_tok->piece_len[y]);
    return r ? r : (x > y) - (x < y);
}

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    return -1;
}
/* The byte NN of a "<0xNN>" piece, or -1. */
static int byte_piece(const char *p, int len) {
    if (len != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return -1;
    int hi = hexval(p[3]), lo = hexval(p[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

int llm_tokenizer_load(llm_tokenizer *t, const char *path, int vocab_size, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    size_t size;
    char *buf = read_file(path, &size, err, errlen);
    if (!buf) return -1;
    size_t off = 0;
    int32_t i32;
    float f;
    t->vocab_size = vocab_size;
    t->piece = calloc((size_t)vocab_size, sizeof *t->piece);
    t->piece_len = calloc((size_t)vocab_size, sizeof *t->piece_len);
    t->score = calloc((size_t)vocab_size, sizeof *t->score);
    t->sorted = calloc((size_t)vocab_size, sizeof *t->sorted);
    for (int b = 0; b < 256; b++) t->byte_tok[b] = -1;
    if (!t->piece || !t->piece_len || !t->score || !t->sorted) {
        set_err(err, errlen, "out of memory loading ", path);
        goto fail;
    }
    if (size < 4) {
        set_err(err, errlen, "tokenizer file too small: ", path);
        goto fail;
    }
    memcpy(&i32, buf, 4);
    off = 4;
    t->max_len = i32;
    for (int i = 0; i < vocab_size; i++) {
        if (size - off < 8) {
            char msg[96];
            snprintf(msg, sizeof msg, "tokenizer ends at token %d of %d (vocab size from the checkpoint): ", i,
                     vocab_size);
            set_err(err, errlen, msg, path);
            goto fail;
        }
        memcpy(&f, buf + off, 4);
        memcpy(&i32, buf + off + 4, 4);
        off += 8;
        if (i32 < 0 || (size_t)i32 > size - off || !isfinite(f)) {
            char msg[96];
            snprintf(msg, sizeof msg, "token %d has a bad length or score: ", i);
            set_err(err, errlen, msg, path);
            goto fail;
        }
        t->score[i] = f;
        t->piece_len[i] = i32;
        if (!(t->piece[i] = malloc((size_t)i32 + 1))) {
            set_err(err, errlen, "out of memory loading ", path);
            goto fail;
        }
        memcpy(t->piece[i], buf + off, (size_t)i32);
        t->piece[i][i32] = 0;
        off += (size_t)i32;
        if (i32 > t->max_len) t->max_len = i32;
        int b = byte_piece(t->piece[i], i32);
        if (b >= 0 && t->byte_tok[b] < 0) t->byte_tok[b] = i;
    }
    free(buf);
    for (int i = 0; i < vocab_size; i++) t->sorted[i] = i;
    sort_tok = t;
    qsort(t->sorted, (size_t)vocab_size, sizeof *t->sorted, cmp_ids);
    sort_tok = NULL;
    return 0;
fail:
    free(buf);
    llm_tokenizer_free(t);
    return -1;
}

void llm_tokenizer_free(llm_tokenizer *t) {
    if (t->piece)
        for (int i = 0; i < t->vocab_size; i++) free(t->piece[i]);
    free(t->piece);
    free(t->piece_len);
    free(t->score);
    free(t->sorted);
    memset(t, 0, sizeof *t);
}

/* Id of the piece with exactly these bytes (the lowest id if repeated), or -1. */
static int lookup(const llm_tokenizer *t, const char *p, int len) {
    int lo = 0, hi = t->vocab_size;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2, id = t->sorted[mid];
        if (cmp_bytes(t->piece[id], t->piece_len[id], p, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < t->vocab_size) {
        int id = t->sorted[lo];
        if (cmp_bytes(t->piece[id], t->piece_len[id], p, len) == 0) return id;
    }
    return -1;
}

/* Length of the UTF-8 character starting at s (1 for a stray byte). */
static int utf8_len(const unsigned char *s) {
    int n = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 1;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 1; /* truncated sequence: take bytes one at a time */
    return n;
}

/* Push the pieces of bytes s[0..n): the whole character if the vocabulary has
 * it, otherwise one byte-fallback token per byte. */
static int push_char(const llm_tokenizer *t, const char *s, int n, int *ids, int *count) {
    int id = lookup(t, s, n);
    if (id >= 0) {
        ids[(*count)++] = id;
        return 0;
    }
    for (int i = 0; i < n; i++) {
        id = t->byte_tok[(unsigned char)s[i]];
        if (id < 0) return -1;
        ids[(*count)++] = id;
    }
    return 0;
}

int llm_encode(const llm_tokenizer *t, const char *text, int bos, int *ids) {
    int n = 0;
    if (bos) ids[n++] = LLM_BOS;
    int first = n;
    if (*text && push_char(t, " ", 1, ids, &n)) return -1; /* sentencepiece's dummy prefix */
    for (const char *s = text; *s;) {
        int len = utf8_len((const unsigned char *)s);
        if (push_char(t, s, len, ids, &n)) return -1;
        s += len;
    }
    /* merge the adjacent pair whose union has the best score, until none exists */
    char *cat = malloc((size_t)t->max_len + 1);
    if (!cat) return -1;
    for (;;) {
        int best = -1, best_id = -1;
        float best_score = -INFINITY;
        for (int i = first; i + 1 < n; i++) {
            int la = t->piece_len[ids[i]], lb = t->piece_len[ids[i + 1]];
            if (la + lb > t->max_len) continue;
            memcpy(cat, t->piece[ids[i]], (size_t)la);
            memcpy(cat + la, t->piece[ids[i + 1]], (size_t)lb);
            int id = lookup(t, cat, la + lb);
            if (id >= 0 && (best < 0 || t->score[id] > best_score)) {
                best = i, best_id = id, best_score = t->score[id];
            }
        }
        if (best < 0) break;
        ids[best] = best_id;
        memmove(ids + best + 1, ids + best + 2, (size_t)(n - best - 2) * sizeof *ids);
        n--;
    }
    free(cat);
    return n;
}

const char *llm_decode(const llm_tokenizer *t, int prev, int tok, char byte[2], int *len) {
    if (tok < 0 || tok >= t->vocab_size) {
        *len = 0;
        return "";
    }
    const char *p = t->piece[tok];
    int n = t->piece_len[tok];
    if (prev == LLM_BOS && n > 0 && p[0] == ' ') p++, n--;
    int b = byte_piece(p, n);
    if (b >= 0) {
        byte[0] = (char)b;
        byte[1] = 0;
        *len = 1;
        return byte;
    }
    *len = n;
    return p;
}

/* ------------------------------------------------------------------ forward */

int llm_dtype_by_name(const char *name, kvc_dtype *dtype) {
    static const char *const names[] = {"f32", "f16", "bf16", "q8"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, names[i])) {
            *dtype = (kvc_dtype)i;
            return 0;
        }
    return -1;
}

static int cache_err(int rc, kvc_cache *cache, int layer, const char *what, char *err, size_t errlen);

/* One cache per layer, from a spec string or (policy != NULL) a policy
 * pointer plus options, with K/V stored as dtype. */
static int state_init(llm_state *s, const llm_model *m, const kvc_policy *policy, const char *spec, uint32_t budget,
                      uint64_t seed, kvc_dtype dtype, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    s->m = m;
    const llm_config *c = &m->c;
    size_t D = (size_t)c->dim, H = (size_t)c->hidden_dim, KV = (size_t)c->kv_dim;
    s->x = calloc(D, sizeof(float));
    s->xb = calloc(D, sizeof(float));
    s->q = calloc(D + 2 * KV, sizeof(float)); /* q, k, v side by side: one matvec writes them */
    s->att = calloc(D, sizeof(float));
    s->k = s->q ? s->q + D : NULL;
    s->v = s->q ? s->q + D + KV : NULL;
    s->h1 = calloc(2 * H, sizeof(float)); /* h1, h3 likewise */
    s->h3 = s->h1 ? s->h1 + H : NULL;
    s->logits = calloc((size_t)c->vocab_size, sizeof(float));
    s->inv_freq = calloc((size_t)c->head_size / 2, sizeof(double));
    s->cache = calloc((size_t)c->n_layers, sizeof *s->cache);
    if (!s->x || !s->xb || !s->q || !s->att || !s->k || !s->v || !s->h1 || !s->h3 || !s->logits || !s->inv_freq ||
        !s->cache) {
        set_err(err, errlen, "out of memory", NULL);
        llm_state_free(s);
        return KVC_ENOMEM;
    }
    for (int j = 0; j < c->head_size / 2; j++) s->inv_freq[j] = pow(10000.0, -2.0 * j / c->head_size);

    /* "name seed=S options": a seed in the options comes later and wins */
    while (*spec == ' ' || *spec == '\t') spec++;
    size_t name_len = strcspn(spec, " \t");
    size_t cap = strlen(spec) + 48;
    char *full = malloc(cap);
    if (!full) {
        set_err(err, errlen, "out of memory", NULL);
        llm_state_free(s);
        return KVC_ENOMEM;
    }
    for (int l = 0; l < c->n_layers; l++) {
        int rc;
        if (policy) {
            snprintf(full, cap, "seed=%llu %s", (unsigned long long)(seed + (uint64_t)l), spec);
            rc = kvc_cache_create(&s->cache[l], (uint32_t)c->n_kv_heads, (uint32_t)c->n_heads, (uint32_t)c->head_size,
                                  budget, dtype, KVC_MODE_STORE, policy, NULL);
            if (rc == KVC_OK) rc = kvc_cache_apply_spec(s->cache[l], full);
        } else {
            snprintf(full, cap, "%.*s seed=%llu %s", (int)name_len, spec, (unsigned long long)(seed + (uint64_t)l),
                     spec + name_len);
            rc = kvc_cache_create_spec(&s->cache[l], (uint32_t)c->n_kv_heads, (uint32_t)c->n_heads,
                                       (uint32_t)c->head_size, budget, dtype, KVC_MODE_STORE, full, NULL);
        }
        if (rc == KVC_OK) rc = kvc_cache_prepare(s->cache[l]);
        if (rc) {
            if (err && errlen)
                snprintf(err, errlen, "cache spec '%s%s%s' with budget %u: %s%s%s", policy ? policy->name : "",
                         policy && *spec ? " " : "", spec, budget, kvc_strerror(rc), s->cache[l] ? ": " : "",
                         s->cache[l] ? kvc_cache_last_error(s->cache[l]) : "");
            free(full);
            llm_state_free(s);
            return rc;
        }
    }
    free(full);
    return 0;
}

int llm_state_init(llm_state *s, const llm_model *m, const char *spec, uint32_t budget, uint64_t seed, char *err,
                   size_t errlen) {
    return state_init(s, m, NULL, spec, budget, seed, KVC_DTYPE_F32, err, errlen);
}

int llm_state_init_dtype(llm_state *s, const llm_model *m, const char *spec, uint32_t budget, uint64_t seed,
                         kvc_dtype dtype, char *err, size_t errlen) {
    return state_init(s, m, NULL, spec, budget, seed, dtype, err, errlen);
}

int llm_state_init_ex(llm_state *s, const llm_model *m, const kvc_policy *policy, const char *spec, uint32_t budget,
                      uint64_t seed, kvc_dtype dtype, char *err, size_t errlen) {
    return state_init(s, m, policy, spec, budget, seed, dtype, err, errlen);
}

void llm_state_free(llm_state *s) {
    if (s->cache && s->m)
        for (int l = 0; l < s->m->c.n_layers; l++) kvc_cache_destroy(s->cache[l]);
    free(s->cache);
    free(s->x), free(s->xb), free(s->q), free(s->att); /* q holds k and v */
    free(s->h1), free(s->logits), free(s->inv_freq);    /* h1 holds h3 */
    memset(s, 0, sizeof *s);
}

uint64_t llm_state_evictions(const llm_state *s) {
    uint64_t n = 0;
    for (int l = 0; l < s->m->c.n_layers; l++) {
        kvc_stats st;
        if (kvc_cache_stats(s->cache[l], &st) == KVC_OK) n += st.evictions;
    }
    return n;
}

/* out[r] = sum_c w[r][c] x[c], from the transposed matrix wt[c][r]. Each
 * output is summed in column order, exactly like the plain loop
 * `acc += w[r][c] * x[c]` (ISO C mode contracts no multiply-add), but
 * whole blocks of rows advance together in vector registers, eight
 * independent accumulators at a time where the rows allow (the additions'
 * latency, not their count, bounds a single chain), so the result is the
 * same bits on every build and only the speed differs. V is the vector
 * type, W its lanes. */
typedef float v8f __attribute__((vector_size(32)));
typedef float v16f __attribute__((vector_size(64)));
/* Macros, not functions: passing vectors by value would change the ABI
 * between the baseline and the AVX builds. */
#define LDV(v, p) memcpy(&(v), (p), sizeof(v))
#define STV(p, v) memcpy((p), &(v), sizeof(v))
#define MATVEC_BLOCK(V, W, NA)                                                                               \
    for (; r + (NA) * (W) <= rows; r += (NA) * (W)) {                                                        \
        V acc[NA], t;                                                                                        \
        _Pragma("GCC unroll 8") for (int a = 0; a < (NA); a++) acc[a] = (V){0};                              \
        const float *p = wt + r;                                                                             \
        for (int j = 0; j < cols; j++, p += R) {                                                             \
            V xj = (V){0} + x[j];                                                                            \
            _Pragma("GCC unroll 8") for (int a = 0; a < (NA); a++) {                                         \
                LDV(t, p + a * (W));                                                                         \
                acc[a] += t * xj;                                                                            \
            }                                                                                                \
        }                                                                                                    \
        _Pragma("GCC unroll 8") for (int a = 0; a < (NA); a++) STV(out + r + a * (W), acc[a]);               \
    }
#define MATVEC_BODY(V, W)                                                                                    \
    const size_t R = (size_t)rows;                                                                           \
    int r = 0;                                                                                               \
    MATVEC_BLOCK(V, W, 8)                                                                                    \
    MATVEC_BLOCK(V, W, 4)                                                                                    \
    MATVEC_BLOCK(V, W, 1)                                                                                    \
    for (; r < rows; r++) {                                                                                  \
        float acc = 0.0f;                                                                                    \
        for (int j = 0; j < cols; j++) acc += wt[(size_t)j * R + (size_t)r] * x[j];                          \
        out[r] = acc;                                                                                        \
    }

static void matvec_base(float *out, const float *wt, const float *x, int rows, int cols) { MATVEC_BODY(v8f, 8) }

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx2"))) static void matvec_avx2(float *out, const float *wt, const float *x, int rows,
                                                         int cols) {
    MATVEC_BODY(v8f, 8)
}
__attribute__((target("avx512f"))) static void matvec_avx512(float *out, const float *wt, const float *x, int rows,
                                                             int cols) {
    MATVEC_BODY(v16f, 16)
}
static void matvec(float *out, const float *wt, const float *x, int rows, int cols) {
    if (__builtin_cpu_supports("avx512f")) matvec_avx512(out, wt, x, rows, cols);
    else if (__builtin_cpu_supports("avx2")) matvec_avx2(out, wt, x, rows, cols);
    else matvec_base(out, wt, x, rows, cols);
}
#else
static void matvec(float *out, const float *wt, const float *x, int rows, int cols) {
    matvec_base(out, wt, x, rows, cols);
}
#endif

/* out = x / rms(x) * g, with the usual 1e-5 inside the root */
static void rmsnorm(float *out, const float *x, const float *g, int n) {
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    float inv = 1.0f / sqrtf(ss / (float)n + 1e-5f);
    for (int i = 0; i < n; i++) out[i] = x[i] * inv * g[i];
}

/* Rotate each pair (2j, 2j+1) of every head by pos * theta^(-2j/head_size). */
static void rope(float *x, int n_heads, int hs, const float *cs, const float *sn) {
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * (size_t)hs;
        for (int j = 0; j < hs / 2; j++) {
            float a = v[2 * j], b = v[2 * j + 1];
            v[2 * j] = a * cs[j] - b * sn[j];
            v[2 * j + 1] = a * sn[j] + b * cs[j];
        }
    }
}

static int cache_err(int rc, kvc_cache *cache, int layer, const char *what, char *err, size_t errlen) {
    if (err && errlen)
        snprintf(err, errlen, "layer %d %s: %s (%s)", layer, what, kvc_strerror(rc), kvc_cache_last_error(cache));
    return rc;
}

int llm_forward(llm_state *s, int tok, int pos, char *err, size_t errlen) {
    return llm_forward_ex(s, tok, pos, 1, err, errlen);
}

int llm_forward_ex(llm_state *s, int tok, int pos, int want_logits, char *err, size_t errlen) {
    const llm_model *m = s->m;
    const llm_config *c = &m->c;
    int D = c->dim, H = c->hidden_dim, KV = c->kv_dim, hs = c->head_size;
    if (tok < 0 || tok >= c->vocab_size || pos < 0) {
        if (err && errlen) snprintf(err, errlen, "token %d or position %d out of range", tok, pos);
        return KVC_EINVAL;
    }
    float cs[256], sn[256]; /* head_size/2 <= 256 is checked below */
    if (hs / 2 > 256) {
        if (err && errlen) snprintf(err, errlen, "head size %d too large for this runner", hs);
        return KVC_EINVAL;
    }
    for (int j = 0; j < hs / 2; j++) {
        double a = (double)pos * s->inv_freq[j];
        cs[j] = (float)cos(a);
        sn[j] = (float)sin(a);
    }
    memcpy(s->x, m->tok_emb + (size_t)tok * (size_t)D, (size_t)D * sizeof(float));
    for (int l = 0; l < c->n_layers; l++) {
        size_t L = (size_t)l;
        rmsnorm(s->xb, s->x, m->rms_att + L * D, D);
        matvec(s->q, m->twqkv + L * (D + 2 * KV) * D, s->xb, D + 2 * KV, D); /* q, k and v */
        rope(s->q, c->n_heads, hs, cs, sn);
        rope(s->k, c->n_kv_heads, hs, cs, sn); /* K is cached after RoPE */
        if (s->trace && pos < s->trace_len) {
            float *t = s->trace + (size_t)pos * llm_trace_floats(m) + L * (size_t)(D + 2 * KV);
            memcpy(t, s->q, (size_t)D * sizeof(float));
            memcpy(t + D, s->k, (size_t)KV * sizeof(float));
            memcpy(t + D + KV, s->v, (size_t)KV * sizeof(float));
        }
        int rc = kvc_cache_append(s->cache[l], pos, s->k, s->v);
        if (rc) return cache_err(rc, s->cache[l], l, "append", err, errlen);
        rc = kvc_cache_attend(s->cache[l], s->q, s->att);
        if (rc) return cache_err(rc, s->cache[l], l, "attend", err, errlen);
        if (!want_logits && l == c->n_layers - 1) return 0; /* the rest only feeds the logits */
        matvec(s->xb, m->two + L * D * D, s->att, D, D);
        for (int i = 0; i < D; i++) s->x[i] += s->xb[i];

        rmsnorm(s->xb, s->x, m->rms_ffn + L * D, D);
        matvec(s->h1, m->tw13 + L * 2 * H * D, s->xb, 2 * H, D); /* h1 and h3 */
        for (int i = 0; i < H; i++) {
            float g = s->h1[i];
            s->h1[i] = g / (1.0f + expf(-g)) * s->h3[i]; /* SwiGLU: silu(w1 x) * (w3 x) */
        }
        matvec(s->xb, m->tw2 + L * D * H, s->h1, D, H);
        for (int i = 0; i < D; i++) s->x[i] += s->xb[i];
    }
    rmsnorm(s->xb, s->x, m->rms_final, D);
    matvec(s->logits, m->twcls, s->xb, c->vocab_size, D);
    return 0;
}

size_t llm_trace_floats(const llm_model *m) {
    return (size_t)m->c.n_layers * (size_t)(m->c.dim + 2 * m->c.kv_dim);
}

int llm_replay(llm_state *s, const float *trace, int pos, char *err, size_t errlen) {
    const llm_config *c = &s->m->c;
    const size_t D = (size_t)c->dim, KV = (size_t)c->kv_dim;
    for (int l = 0; l < c->n_layers; l++) {
        const float *t = trace + (size_t)l * (D + 2 * KV);
        int rc = kvc_cache_append(s->cache[l], pos, t + D, t + D + KV);
        if (rc) return cache_err(rc, s->cache[l], l, "append", err, errlen);
        rc = kvc_cache_attend(s->cache[l], t, s->att);
        if (rc) return cache_err(rc, s->cache[l], l, "attend", err, errlen);
    }
    return 0;
}

/* ------------------------------------------------------------------ sampling */

void llm_rng_seed(llm_rng *r, uint64_t seed) {
    uint64_t z = seed + 0x9e3779b97f4a7c15ull; /* splitmix64 step: any seed gives a nonzero state */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    r->s = z ? z : 0x2545f4914f6cdd1dull;
}

static uint64_t rng_next(llm_rng *r) {
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545f4914f6cdd1dull;
}

double llm_rng_uniform(llm_rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

int llm_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

void llm_log_softmax(float *x, int n) {
    float mx = x[llm_argmax(x, n)];
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += exp((double)(x[i] - mx));
    float lse = mx + (float)log(sum);
    for (int i = 0; i < n; i++) x[i] -= lse;
}

/* Heap sort of ids by p[id], descending. */
static void sift_down(int *a, const float *p, int i, int n) {
    for (;;) {
        int l = 2 * i + 1, m = i;
        if (l < n && p[a[l]] < p[a[m]]) m = l;
        if (l + 1 < n && p[a[l + 1]] < p[a[m]]) m = l + 1;
        if (m == i) return;
        int t = a[i];
        a[i] = a[m];
        a[m] = t;
        i = m;
    }
}
static void sort_desc(int *a, const float *p, int n) {
    for (int i = n / 2; i-- > 0;) sift_down(a, p, i, n);
    for (int end = n; end-- > 1;) {
        int t = a[0];
        a[0] = a[end];
        a[end] = t;
        sift_down(a, p, 0, end);
    }
}

int llm_sample(float *logits, int n, float temperature, float top_p, llm_rng *r, int *scratch) {
    if (!(temperature > 0.0f)) return llm_argmax(logits, n);
    float mx = logits[llm_argmax(logits, n)];
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        logits[i] = expf((logits[i] - mx) / temperature);
        sum += logits[i];
    }
    for (int i = 0; i < n; i++) logits[i] = (float)(logits[i] / sum);
    if (top_p > 0.0f && top_p < 1.0f) {
        /* nucleus: the most probable tokens until their mass reaches top_p */
        for (int i = 0; i < n; i++) scratch[i] = i;
        sort_desc(scratch, logits, n);
        double mass = 0.0;
        int k = 0;
        while (k < n && mass < top_p) mass += logits[scratch[k++]];
        double u = llm_rng_uniform(r) * mass, acc = 0.0;
        for (int i = 0; i < k; i++) {
            acc += logits[scratch[i]];
            if (u < acc) return scratch[i];
        }
        return scratch[k - 1];
    }
    double u = llm_rng_uniform(r), acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += logits[i];
        if (u < acc) return i;
    }
    return llm_argmax(logits, n); /* rounding left u above the total */
}

void llm_model_hint(FILE *f, const char *prog) {
    const char *dir = getenv("KVC_MODEL_DIR");
    fprintf(f,
            "%s: set KVC_MODEL_DIR to the directory holding stories260K.bin and tok512.bin (now %s%s%s), "
            "or pass -m MODEL -z TOKENIZER\n",
            prog, dir && *dir ? "'" : "", dir && *dir ? dir : "unset: ../shared/models/stories260K",
            dir && *dir ? "'" : "");
}

void llm_default_paths(const char **model, const char **tok, char *mbuf, char *tbuf, size_t n) {
    const char *dir = getenv("KVC_MODEL_DIR");
    if (!dir || !*dir) dir = "../shared/models/stories260K";
    snprintf(mbuf, n, "%s/stories260K.bin", dir);
    snprintf(tbuf, n, "%s/tok512.bin", dir);
    if (!*model) *model = mbuf;
    if (!*tok) *tok = tbuf;
}
