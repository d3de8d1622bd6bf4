/* Internal declarations shared by the library's translation units. */
#ifndef KVC_INTERNAL_H
#define KVC_INTERNAL_H

#include "kvc.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#define KVC__MAX_PARAMS 16
#define KVC__N_OPTIONS ((int)KVC__OPTION_END)
#define KVC__ALIGN 64
#define KVC__WBLOCK 16 /* recent queries scored per pass over the keys */

struct kvc_rng {
    uint64_t s[4];
};
void kvc__rng_seed(struct kvc_rng *rng, uint64_t seed);

/* Allocation through a cache's allocator; sizes are rounded up to the alignment. */
void *kvc__alloc(const kvc_allocator *al, size_t size);
void kvc__free(const kvc_allocator *al, void *p);
/* a*b (+c) with overflow detection: returns false on overflow. */
bool kvc__mul(size_t a, size_t b, size_t *out);
bool kvc__add(size_t a, size_t b, size_t *out);

struct kvc_cache {
    /* fixed shape */
    uint32_t n_kv, n_q, d, cap;
    kvc_dtype dtype;
    kvc_mode mode;
    kvc_policy pol; /* our copy, zero-padded past the author's struct_size */
    kvc_allocator al;

    /* options (frozen at prepare) */
    int64_t opt[KVC__N_OPTIONS];
    float scale;
    double params[KVC__MAX_PARAMS];
    bool frozen;

    /* derived at freeze */
    uint32_t n_groups, qpg, block, chunk, sink, recent, qwin, units, pmax;
    int64_t protect;
    size_t esize, row_stride, head_stride; /* row/head strides in elements */

    /* memory, allocated at freeze in one block (`mem`) plus the policy state */
    void *mem;
    void *k, *v;        /* STORE: n_kv heads x cap rows x row_stride */
    int64_t *pos;       /* n_groups x cap, -1 = empty */
    uint64_t *seq;      /* n_groups x cap, insertion index of the resident */
    uint64_t *freemap;  /* INDEX: n_groups x words, bit set = free slot */
    uint32_t words;     /* 64-bit words per group in freemap */
    uint32_t *high;     /* INDEX: n_groups, one past the highest slot used since the last compaction */
    float *weights;     /* n_q x cap softmax weights of the last attend */
    float *mass;        /* STORE: n_groups x cap masses of the last attend, per group */
    uint8_t *attended;  /* STORE: n_kv flags, kv head attended since the last append or finish */
    float *obs;         /* INDEX: n_groups x cap accumulated observations */
    uint32_t *obs_calls;/* INDEX: observe calls per group since the last reserve */
    uint32_t *cand;     /* cap: candidate units */
    uint64_t *cand_key; /* cap: sort keys */
    uint64_t *sort_tmp; /* cap: the radix sort's other half */
    float *uscore;      /* cap: per-unit scores */
    uint32_t *heap;     /* cap: selection heap */
    uint8_t *mark;      /* cap: validation marks per slot */
    uint32_t *victims;  /* n_groups x chunk */
    float *qring;       /* qwin x n_q x d recent queries */
    float *wlogit;      /* KVC__WBLOCK x cap window logits */
    float *krow;        /* d floats: one key as f32 (the exact path) */
    float *wq;          /* KVC__WBLOCK x d window queries of one kernel call */
    float *wout;        /* KVC__WBLOCK x d kernel output (discarded) */
    uint32_t qring_n, qring_head;
    /* prefill scratch, for pmax tokens (none when pmax is 0) */
    kvc_token *ptok;      /* pmax: one group's token facts */
    float *pscore;        /* STORE: n_groups x pmax window scores */
    float *plogit;        /* STORE: KVC__WBLOCK x pmax window logits */
    float *pwqt;          /* STORE: KVC__WBLOCK x d kernel output (discarded) */
    float *pq;            /* STORE: KVC__WBLOCK x d window queries of one kernel call */
    const float **pgscore;/* n_groups: each group's scores (or NULL) */
    uint32_t *pcand;      /* pmax: candidate tokens */
    uint32_t *pvict;      /* pmax: one group's victims */
    uint32_t *pkeep;      /* n_groups x cap: kept prompt indices */
    uint8_t *pmark;       /* pmax: validation marks */
    void *pstate;
    size_t pstate_size; /* what state_size answered when the cache froze */

    /* dynamic state */
    uint32_t len;
    uint64_t appended;
    int64_t last_pos;
    struct kvc_rng rng;
    kvc_stats stats;
    char err[256]; /* kvc_cache_last_error(): any message fits a 256-byte buffer */
    _Atomic int err_busy; /* claimed by a kvc_cache_attend_heads() writing err (several may fail at once) */
};

/* Record a detailed message on the cache and return `status`. */
int kvc__fail(kvc_cache *c, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
int kvc__vfail(kvc_cache *c, int status, const char *fmt, va_list ap)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 0)))
#endif
    ;
/* A policy callback's nonzero return as a status: its own code if it is one of
 * ours (negative and listed), else `fallback`, so callers never see a stray value. */
int kvc__policy_status(int rc, int fallback);
int kvc__prepare(kvc_cache *c);

/* Options (the KVC_OPTION_LIST table): spec key and range of one option. */
const char *kvc__option_name(kvc_option key);
void kvc__option_bounds(const kvc_cache *c, kvc_option key, int64_t *lo, int64_t *hi);
/* Index of the policy parameter called `name`, or -1. */
static inline int kvc__param_index(const kvc_cache *c, const char *name) {
    for (uint32_t i = 0; i < c->pol.n_params; i++)
        if (strcmp(name, c->pol.params[i].name) == 0) return (int)i;
    return -1;
}

/* A new token, in either mode: validate it (k/v may be NULL when not stored),
 * and record it in slot `slot` of group g, telling the policy. */
int kvc__check_token(kvc_cache *c, int64_t pos, const float *k, const float *v, bool need_kv);
void kvc__insert(kvc_cache *c, uint32_t g, uint32_t slot, int64_t pos, const float *k, const float *v);
/* Group g's kvc_token of a token (k/v: its n_kv_heads rows, or NULL): position, insertion
 * index, and the statistics and rows the policy asked for. */
void kvc__token_facts(const kvc_cache *c, uint32_t g, int64_t pos, uint64_t seq, const float *k, const float *v,
                      kvc_token *tok);
/* STORE: convert one head's row of d floats into slot `slot` of K or V storage (`base`). */
void kvc__store_row(kvc_cache *c, void *base, uint32_t h, uint32_t slot, const float *x);
int kvc__check_finite(const float *x, size_t n);

/* Eviction (evict.c): when full, choose and validate every group's victims,
 * then free them through the mode's side below. `evicted` may be NULL. */
int kvc__make_room(kvc_cache *c, int64_t *evicted);
/* Is the resident in slot s of group g protected from eviction? */
bool kvc__protected(const kvc_cache *c, uint32_t g, uint32_t s);
/* Free the victim units (descending slot order) of group g. STORE: swap-remove,
 * moving the last residents' K/V into the holes; INDEX: mark the slots free. */
void kvc__store_evict(kvc_cache *c, uint32_t g, const uint32_t *victims, uint32_t n);
void kvc__index_evict(kvc_cache *c, uint32_t g, const uint32_t *victims, uint32_t n);

/* STORE mode's query window (window.c): remember a query; scores of candidate
 * units from the remembered queries. */
void kvc__window_push(kvc_cache *c, const float *q);
void kvc__window_scores(kvc_cache *c, uint32_t g, const uint32_t *units, uint32_t n_units, float *out);

/* One KVC_DTYPE_Q8 row (d values, then the scale) from d finite floats. */
void kvc__quantize_q8(const float *x, uint32_t d, void *row);

/* Attention kernel entry (validated arguments). */
int kvc__attention_heads(const kvc_attn_layout *L, uint32_t kv_begin, uint32_t kv_end, const float *q,
                         const void *k, const void *v, float *out, float *weights, size_t weights_stride);

#endif
