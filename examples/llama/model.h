/* A tiny Llama-architecture transformer on top of libkvc: checkpoint and
 * tokenizer loading (llama2.c's legacy file formats), the forward pass with
 * one kvc_cache per layer, and sampling. Shared by the runner and the
 * quality evaluation. */
#ifndef LLM_MODEL_H
#define LLM_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kvc.h"

enum { LLM_BOS = 1, LLM_EOS = 2 };

typedef struct {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int head_size, kv_dim;
    int shared_classifier; /* 1 when the classifier is the token embedding */
} llm_config;

typedef struct {
    llm_config c;
    float *data; /* the whole file after the header */
    const float *tok_emb, *rms_att, *wq, *wk, *wv, *wo, *rms_ffn, *w1, *w2, *w3, *rms_final, *wcls;
    float *tdata; /* every matrix transposed, [in][out], as the forward pass reads them */
    const float *twqkv; /* per layer [dim][dim + 2 kv_dim]: wq, wk, wv stacked */
    const float *tw13;  /* per layer [dim][2 hidden_dim]: w1, w3 stacked */
    const float *two, *tw2, *twcls;
} llm_model;

typedef struct {
    int vocab_size, max_len;
    char **piece;   /* raw bytes of each token, NUL-terminated */
    int *piece_len; /* their lengths */
    float *score;   /* merge priority: higher merges first */
    int *sorted;    /* token ids sorted by piece bytes, for lookup */
    int byte_tok[256]; /* id of the "<0xNN>" fallback token for byte NN, or -1 */
} llm_tokenizer;

/* Per-sequence state: the layer caches and scratch buffers. */
typedef struct {
    const llm_model *m;
    kvc_cache **cache; /* one per layer */
    float *x, *xb, *q, *k, *v, *att, *h1, *h3, *logits;
    double *inv_freq; /* head_size/2 RoPE frequencies */
    /* NULL, or room for trace_len positions of llm_trace_floats() each:
     * llm_forward_ex writes there what each layer hands its cache */
    float *trace;
    int trace_len;
} llm_state;

/* Errors: every loader returns 0 or -1 and writes a message into err. */
/* Point unset paths at stories260K.bin and tok512.bin in $KVC_MODEL_DIR, or
 * ../shared/models/stories260K; mbuf and tbuf (n bytes each) hold the defaults. */
void llm_default_paths(const char **model, const char **tok, char *mbuf, char *tbuf, size_t n);
/* After a failed load: say where the default paths come from and how to change them. */
void llm_model_hint(FILE *f, const char *prog);
int llm_model_load(llm_model *m, const char *path, char *err, size_t errlen);
void llm_model_free(llm_model *m);

int llm_tokenizer_load(llm_tokenizer *t, const char *path, int vocab_size, char *err, size_t errlen);
void llm_tokenizer_free(llm_tokenizer *t);
/* Encode UTF-8 text (with sentencepiece's dummy leading space) into ids,
 * optionally after BOS. `ids` needs strlen(text) + 3 entries. Returns the
 * count, or -1 when a byte has neither a piece nor a byte-fallback token. */
int llm_encode(const llm_tokenizer *t, const char *text, int bos, int *ids);
/* Bytes of `tok` as printed after `prev`: the leading space of the first
 * piece after BOS is dropped and "<0xNN>" tokens are the raw byte NN.
 * Returns a pointer into the tokenizer or into `byte` (2 bytes). */
const char *llm_decode(const llm_tokenizer *t, int prev, int tok, char byte[2], int *len);

/* A cache spec is a policy name and key=value options (kvc_cache_create_spec).
 * Each layer's cache gets capacity `budget` and seed `seed` + layer unless the
 * spec sets one. Returns 0, or a kvc status with a message in err. */
int llm_state_init(llm_state *s, const llm_model *m, const char *spec, uint32_t budget, uint64_t seed, char *err,
                   size_t errlen);
/* The same with K/V stored as `dtype` (llm_state_init: f32). */
int llm_state_init_dtype(llm_state *s, const llm_model *m, const char *spec, uint32_t budget, uint64_t seed,
                         kvc_dtype dtype, char *err, size_t errlen);
/* "f32", "f16", "bf16" or "q8" into *dtype; returns 0, or -1 for another name. */
int llm_dtype_by_name(const char *name, kvc_dtype *dtype);
/* The general form: `policy` by pointer (e.g. one written by the caller;
 * `spec` then holds options only, e.g. "recent=8"), or NULL for a `spec`
 * that names it; K/V stored as `dtype`. */
int llm_state_init_ex(llm_state *s, const llm_model *m, const kvc_policy *policy, const char *spec, uint32_t budget,
                      uint64_t seed, kvc_dtype dtype, char *err, size_t errlen);
void llm_state_free(llm_state *s);
/* Run token `tok` at position `pos`; s->logits receives vocab_size logits.
 * Returns 0 or a kvc status (the failing cache's message in err). */
int llm_forward(llm_state *s, int tok, int pos, char *err, size_t errlen);
/* The same; with want_logits 0 the caches see the token (every layer appends
 * and attends, so policies observe it) but the last layer's output and the
 * logits are not computed. */
int llm_forward_ex(llm_state *s, int tok, int pos, int want_logits, char *err, size_t errlen);
/* Floats one position of a trace holds: every layer's q (after RoPE), k
 * (after RoPE) and v, in that order. */
size_t llm_trace_floats(const llm_model *m);
/* Hand position `pos` of a trace (one recorded by llm_forward_ex on a state
 * whose caches held the same tokens) to s's caches: every layer appends its
 * k and v and attends with its q, as llm_forward_ex would, without the
 * matrix products; nothing else of s changes. While no cache has evicted,
 * every policy's caches see exactly what the recording saw, so a run can
 * start from another's trace. Returns 0 or a kvc status (message in err). */
int llm_replay(llm_state *s, const float *trace, int pos, char *err, size_t errlen);
/* Tokens evicted so far, summed over layers and groups. */
uint64_t llm_state_evictions(const llm_state *s);

/* Seeded generator for sampling (splitmix64 seeding, xorshift64*). */
typedef struct {
    uint64_t s;
} llm_rng;
void llm_rng_seed(llm_rng *r, uint64_t seed);
double llm_rng_uniform(llm_rng *r); /* [0, 1) */

/* Greedy when temperature <= 0; otherwise softmax(logits / temperature),
 * restricted to the smallest top set of mass >= top_p when 0 < top_p < 1.
 * `logits` is overwritten; `scratch` holds n ints. */
int llm_sample(float *logits, int n, float temperature, float top_p, llm_rng *r, int *scratch);
int llm_argmax(const float *x, int n);
/* In-place log-softmax. */
void llm_log_softmax(float *x, int n);

#endif
