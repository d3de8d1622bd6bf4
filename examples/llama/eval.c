/* eval: what each eviction policy costs in quality on a real model.
 *
 * 1. Reference: `--seqs` sequences of `--len` tokens sampled (temperature 1,
 *    seeds seed..seed+seqs-1) from BOS with the full cache; the full cache's
 *    next-token log-probabilities at every position are kept.
 * 2. Teacher-forced: each policy x budget re-reads every reference sequence
 *    through caches of that capacity (one per layer). Over the positions
 *    where eviction has happened (position >= budget): mean KL(full || policy)
 *    of the next-token distribution, top-1 agreement with the full cache, and
 *    the perplexity ratio exp(mean NLL_policy - mean NLL_full) of the
 *    reference's own next tokens. The KL is also split between positions in
 *    a sequence's first story and positions after a BOS started another,
 *    where what the cache kept from the finished story is dead weight.
 * 3. Free-running: `--gens` greedy generations of `--gen-len` tokens per
 *    policy x budget, each prompted by the first `--prompt` tokens of one
 *    reference sequence: the share that falls into a repetition loop (a 10 to
 *    40 character phrase repeated at least 5 times in a row within the last
 *    500 characters) and the distinct 4-gram ratio of the generated tokens.
 *    The full cache is run the same way as the baseline.
 *
 * Output: CSV (stdout or --csv), optionally a markdown table (--md) and an
 * SVG plot (--svg). Progress goes to stderr. Work items (one sequence under
 * one setting) run on `-j` threads; every item has its own seeds, so the
 * results do not depend on the thread count. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "model.h"
#include "svgplot.h"

enum { KIND_REF, KIND_TF, KIND_FREE };
enum { MAX_SETTINGS = 256, MAX_BUDGETS = 16, MAX_SPECS = 32 };

typedef struct {
    const char *spec; /* policy spec string */
    uint32_t budget;
    int baseline; /* the full cache at the full length */
} setting;

typedef struct {
    int kind, set, idx;
} item;

typedef struct {
    double kl, nll_pol, nll_full; /* sums over positions */
    long top1, npos, nnll;
    double kl_later; /* the part of kl after the reference's first story ended */
    long n_later;
    int loop;
    double distinct4;
    uint64_t evictions;
} result;

typedef struct {
    const llm_model *m;
    const llm_tokenizer *tk;
    char model_name[64]; /* checkpoint file name without directory and .bin */
    int len, seqs, gens, gen_len, prompt;
    uint64_t seed;
    kvc_dtype dtype; /* K/V storage of the evaluated caches (the reference is f32) */
    int *ref_tok;  /* seqs x len */
    float *ref_lp; /* seqs x len x vocab: full-cache log-probabilities */
    setting set[MAX_SETTINGS];
    int n_set;
    item *items;
    result *res;
    int n_items;
    /* the work queue */
    pthread_mutex_t mu;
    int next, done, total, last_pct, quiet;
    const char *phase;
    double t0;
    int failed;
    char err[600];
} ctx;

static void fail(ctx *c, const char *msg) {
    pthread_mutex_lock(&c->mu);
    if (!c->failed) {
        c->failed = 1;
        snprintf(c->err, sizeof c->err, "%s", msg);
    }
    pthread_mutex_unlock(&c->mu);
}

/* ---------------------------------------------------------------- work items */

static void run_ref(ctx *c, int i) {
    const int V = c->m->c.vocab_size;
    char err[512];
    llm_state st;
    if (llm_state_init(&st, c->m, "full", (uint32_t)c->len, 0, err, sizeof err)) {
        fail(c, err);
        return;
    }
    int *scratch = malloc((size_t)V * sizeof(int));
    float *tmp = malloc((size_t)V * sizeof(float));
    if (!scratch || !tmp) {
        fail(c, "out of memory");
        goto out;
    }
    llm_rng rng;
    llm_rng_seed(&rng, c->seed + (uint64_t)i);
    int *tok = c->ref_tok + (size_t)i * c->len;
    tok[0] = LLM_BOS;
    for (int t = 0; t < c->len; t++) {
        if (llm_forward(&st, tok[t], t, err, sizeof err)) {
            fail(c, err);
            goto out;
        }
        float *lp = c->ref_lp + ((size_t)i * c->len + t) * V;
        memcpy(lp, st.logits, (size_t)V * sizeof(float));
        llm_log_softmax(lp, V);
        if (t + 1 < c->len) {
            memcpy(tmp, st.logits, (size_t)V * sizeof(float));
            tok[t + 1] = llm_sample(tmp, V, 1.0f, 1.0f, &rng, scratch);
        }
    }
out:
    free(scratch);
    free(tmp);
    llm_state_free(&st);
}

static void run_tf(ctx *c, const setting *s, int i, result *r) {
    const int V = c->m->c.vocab_size;
    char err[512];
    llm_state st;
    if (llm_state_init_dtype(&st, c->m, s->spec, s->budget, 1000003ull * (uint64_t)(i + 1), c->dtype, err, sizeof err)) {
        fail(c, err);
        return;
    }
    const int *tok = c->ref_tok + (size_t)i * c->len;
    /* eviction has happened once more tokens than the budget were appended */
    int start = s->baseline ? 0 : (int)s->budget, later = 0;
    for (int t = 0; t < c->len; t++) {
        if (t > 0 && tok[t] == LLM_BOS) later = 1; /* a new story began */
        if (llm_forward(&st, tok[t], t, err, sizeof err)) {
            fail(c, err);
            break;
        }
        if (t < start) continue;
        const float *lf = c->ref_lp + ((size_t)i * c->len + t) * V;
        float *lp = st.logits;
        llm_log_softmax(lp, V);
        double kl = 0.0;
        for (int v = 0; v < V; v++) kl += exp((double)lf[v]) * ((double)lf[v] - (double)lp[v]);
        kl = kl > 0.0 ? kl : 0.0; /* clamp rounding below zero */
        r->kl += kl;
        if (later) r->kl_later += kl, r->n_later++;
        r->top1 += llm_argmax(lf, V) == llm_argmax(lp, V);
        r->npos++;
        if (t + 1 < c->len) {
            r->nll_pol -= lp[tok[t + 1]];
            r->nll_full -= lf[tok[t + 1]];
            r->nnll++;
        }
    }
    r->evictions = llm_state_evictions(&st);
    llm_state_free(&st);
}

/* A phrase of 10..40 characters repeated >= 5 times in a row (period L over
 * 5L characters) within the last 500 characters of s. */
static int has_loop(const char *s, size_t n) {
    size_t start = n > 500 ? n - 500 : 0;
    for (size_t L = 10; L <= 40; L++) {
        size_t run = 0;
        for (size_t i = start; i + L < n; i++) {
            run = s[i] == s[i + L] ? run + 1 : 0;
            if (run >= 4 * L) return 1;
        }
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Distinct 4-grams over all 4-grams of tok[0..n); 1 when there are none. */
static double distinct4(const int *tok, int n, uint64_t *keys) {
    if (n < 4) return 1.0;
    int m = n - 3;
    for (int i = 0; i < m; i++)
        keys[i] = (uint64_t)(uint16_t)tok[i] << 48 | (uint64_t)(uint16_t)tok[i + 1] << 32 |
                  (uint64_t)(uint16_t)tok[i + 2] << 16 | (uint16_t)tok[i + 3];
    qsort(keys, (size_t)m, sizeof *keys, cmp_u64);
    int d = 1;
    for (int i = 1; i < m; i++) d += keys[i] != keys[i - 1];
    return (double)d / m;
}

static void run_free(ctx *c, const setting *s, int g, result *r) {
    const int V = c->m->c.vocab_size, n = c->gen_len;
    char err[512];
    llm_state st;
    if (llm_state_init_dtype(&st, c->m, s->spec, s->budget, 7000003ull * (uint64_t)(g + 1), c->dtype, err, sizeof err)) {
        fail(c, err);
        return;
    }
    int *tok = malloc((size_t)n * sizeof(int));
    uint64_t *keys = malloc((size_t)n * sizeof(uint64_t));
    size_t cap = (size_t)n * ((size_t)c->tk->max_len + 1) + 1, len = 0;
    char *text = malloc(cap);
    if (!tok || !keys || !text) {
        fail(c, "out of memory");
        goto out;
    }
    const int *prompt = c->ref_tok + (size_t)(g % c->seqs) * c->len;
    for (int t = 0; t < c->prompt && t < n; t++) tok[t] = prompt[t];
    for (int t = 0; t + 1 < n; t++) {
        if (llm_forward(&st, tok[t], t, err, sizeof err)) {
            fail(c, err);
            goto out;
        }
        if (t + 1 >= c->prompt) tok[t + 1] = llm_argmax(st.logits, V);
    }
    for (int t = 1; t < n; t++) {
        char byte[2];
        int bl;
        const char *p = llm_decode(c->tk, tok[t - 1], tok[t], byte, &bl);
        memcpy(text + len, p, (size_t)bl);
        len += (size_t)bl;
    }
    r->loop = has_loop(text, len);
    r->distinct4 = distinct4(tok + c->prompt, n - c->prompt, keys);
    r->evictions = llm_state_evictions(&st);
out:
    free(tok);
    free(keys);
    free(text);
    llm_state_free(&st);
}

static void *worker(void *arg) {
    ctx *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->mu);
        int k = c->failed ? c->n_items : c->next++;
        pthread_mutex_unlock(&c->mu);
        if (k >= c->n_items) return NULL;
        const item *it = &c->items[k];
        if (it->kind == KIND_REF)
            run_ref(c, it->idx);
        else if (it->kind == KIND_TF)
            run_tf(c, &c->set[it->set], it->idx, &c->res[k]);
        else
            run_free(c, &c->set[it->set], it->idx, &c->res[k]);
        pthread_mutex_lock(&c->mu);
        c->done++;
        int pct = (int)(100L * c->done / c->total);
        if (!c->quiet && pct / 10 != c->last_pct / 10) {
            fprintf(stderr, "eval: %s %3d%% (%d/%d items, %.1f s)\n", c->phase, pct, c->done, c->total,
                    cli_now() - c->t0);
            c->last_pct = pct;
        }
        pthread_mutex_unlock(&c->mu);
    }
}

/* Run items[0..n) on `threads` threads. */
static int run_items(ctx *c, item *items, result *res, int n, int threads, const char *phase) {
    c->items = items;
    c->res = res;
    c->n_items = n;
    c->next = c->done = 0;
    c->total = n;
    c->last_pct = 0;
    c->phase = phase;
    if (!c->quiet) fprintf(stderr, "eval: %s: %d items on %d thread%s\n", phase, n, threads, threads > 1 ? "s" : "");
    pthread_t tid[64];
    int started = 0;
    for (int i = 1; i < threads; i++) {
        if (pthread_create(&tid[started], NULL, worker, c) != 0) break;
        started++;
    }
    worker(c);
    for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
    return c->failed ? -1 : 0;
}

/* ---------------------------------------------------------------- summaries */

typedef struct {
    double kl, kl_se, top1, top1_se, ppl_ratio, loop_rate, distinct4, kl_story1, kl_later;
    long positions;
    int gens;
} summary;

static void summarise(const ctx *c, const item *items, const result *res, int n, summary *out) {
    for (int s = 0; s < c->n_set; s++) {
        summary *o = &out[s];
        memset(o, 0, sizeof *o);
        double kl = 0, nll_p = 0, nll_f = 0, m1 = 0, m2 = 0, kl2 = 0, t1 = 0, t2 = 0;
        long top1 = 0, npos = 0, nnll = 0, n2 = 0;
        int nseq = 0, loops = 0;
        double d4 = 0;
        for (int k = 0; k < n; k++) {
            if (items[k].set != s) continue;
            const result *r = &res[k];
            if (items[k].kind == KIND_TF) {
                kl += r->kl, nll_p += r->nll_pol, nll_f += r->nll_full;
                top1 += r->top1, npos += r->npos, nnll += r->nnll;
                kl2 += r->kl_later, n2 += r->n_later;
                if (r->npos) {
                    double mk = r->kl / (double)r->npos; /* per-sequence mean, for the standard error */
                    double mt = (double)r->top1 / (double)r->npos;
                    m1 += mk, m2 += mk * mk, t1 += mt, t2 += mt * mt, nseq++;
                }
            } else if (items[k].kind == KIND_FREE) {
                loops += r->loop, d4 += r->distinct4, o->gens++;
            }
        }
        o->positions = npos;
        o->kl = npos ? kl / (double)npos : NAN;
        o->kl_story1 = npos > n2 ? (kl - kl2) / (double)(npos - n2) : NAN;
        o->kl_later = n2 ? kl2 / (double)n2 : NAN;
        o->top1 = npos ? (double)top1 / (double)npos : NAN;
        o->ppl_ratio = nnll ? exp((nll_p - nll_f) / (double)nnll) : NAN;
        if (nseq > 1) {
            double mean = m1 / nseq, var = (m2 - nseq * mean * mean) / (nseq - 1);
            o->kl_se = sqrt(var > 0 ? var / nseq : 0);
            double tmean = t1 / nseq, tvar = (t2 - nseq * tmean * tmean) / (nseq - 1);
            o->top1_se = sqrt(tvar > 0 ? tvar / nseq : 0);
        }
        o->loop_rate = o->gens ? (double)loops / o->gens : NAN;
        o->distinct4 = o->gens ? d4 / o->gens : NAN;
    }
}

static void csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void write_csv(FILE *f, const ctx *c, const summary *sm) {
    fprintf(f, "policy,budget,kl,top1,ppl_ratio,loop_rate,distinct4,kl_se,positions,gens,kl_story1,kl_later,top1_se\n");
    for (int s = 0; s < c->n_set; s++) {
        csv_field(f, c->set[s].spec);
        fprintf(f, ",%u,%.6g,%.6g,%.6g,%.6g,%.6g,%.3g,%ld,%d,%.6g,%.6g,%.3g\n", c->set[s].budget, sm[s].kl,
                sm[s].top1, sm[s].ppl_ratio, sm[s].loop_rate, sm[s].distinct4, sm[s].kl_se, sm[s].positions,
                sm[s].gens, sm[s].kl_story1, sm[s].kl_later, sm[s].top1_se);
    }
}

static void fmt(char *buf, size_t n, const char *f, double v) {
    if (isnan(v))
        snprintf(buf, n, "-");
    else
        snprintf(buf, n, f, v);
}

static void write_md(FILE *f, const ctx *c, const summary *sm) {
    fprintf(f,
            "Reference: %d sequences of %d tokens sampled at temperature 1 (seeds %llu..%llu). "
            "Teacher-forced metrics over positions >= budget (KL also split: within each sequence's first story, "
            "and after a story boundary); free-running: %d greedy generations of %d tokens from %d-token "
            "prompts.\n\n",
            c->seqs, c->len, (unsigned long long)c->seed, (unsigned long long)(c->seed + (uint64_t)c->seqs - 1),
            c->gens, c->gen_len, c->prompt);
    fprintf(f, "| policy | budget | KL(full ‖ policy) | ± s.e. | KL 1st story | KL later | top-1 agree | ppl ratio "
               "| loop rate | distinct-4 |\n");
    fprintf(f, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int s = 0; s < c->n_set; s++) {
        char kl[32], se[32], k1[32], k2[32], t1[32], pr[32], lr[32], d4[32];
        fmt(kl, sizeof kl, "%.4f", sm[s].kl);
        fmt(se, sizeof se, "%.4f", sm[s].kl_se);
        fmt(k1, sizeof k1, "%.4f", sm[s].kl_story1);
        fmt(k2, sizeof k2, "%.4f", sm[s].kl_later);
        fmt(t1, sizeof t1, "%.3f", sm[s].top1);
        fmt(pr, sizeof pr, "%.3f", sm[s].ppl_ratio);
        fmt(lr, sizeof lr, "%.3f", sm[s].loop_rate);
        fmt(d4, sizeof d4, "%.3f", sm[s].distinct4);
        fprintf(f, "| %s%s | %u | %s | %s | %s | %s | %s | %s | %s | %s |\n", c->set[s].spec,
                c->set[s].baseline ? " (baseline)" : "", c->set[s].budget, kl, se, k1, k2, t1, pr, lr, d4);
    }
}

/* A short table for the terminal: KL and top-1 agreement per policy and budget. */
static void write_summary(FILE *f, const ctx *c, const summary *sm, const uint32_t *budgets, int nb) {
    fprintf(f, "KL(full || policy) in nats, lower is better, [top-1 agreement]; %s, %d sequences of %d tokens\n",
            c->model_name, c->seqs, c->len);
    fprintf(f, "%-22s", "policy \\ budget");
    for (int b = 0; b < nb; b++) fprintf(f, " %16u", budgets[b]);
    fprintf(f, "\n");
    for (int s = 0; s < c->n_set; s++) {
        if (c->set[s].baseline) continue;
        int first = 1;
        for (int t = 0; t < s && first; t++)
            if (!c->set[t].baseline && strcmp(c->set[t].spec, c->set[s].spec) == 0) first = 0;
        if (!first) continue;
        fprintf(f, "%-22.22s", c->set[s].spec);
        for (int b = 0; b < nb; b++) {
            int t = s;
            while (t < c->n_set && (c->set[t].baseline || strcmp(c->set[t].spec, c->set[s].spec) ||
                                    c->set[t].budget != budgets[b]))
                t++;
            if (t == c->n_set)
                fprintf(f, " %16s", "-");
            else
                fprintf(f, "  %7.4f [%.3f]", sm[t].kl, sm[t].top1);
        }
        fprintf(f, "\n");
    }
}

/* ---------------------------------------------------------------- SVG plot */

enum { MAX_POLICIES = MAX_SETTINGS };

/* One plotted policy: its settings, in budget order. */
typedef struct {
    const char *spec;
    int n;
    double budget[MAX_BUDGETS], top1[MAX_BUDGETS], top1_se[MAX_BUDGETS], kl[MAX_BUDGETS], kl_se[MAX_BUDGETS];
} curve;

/* Policies (not the baseline) in order of first appearance, with their points. */
static int curves(const ctx *c, const summary *sm, curve *out) {
    int n = 0;
    for (int s = 0; s < c->n_set; s++) {
        if (c->set[s].baseline) continue;
        int k = 0;
        while (k < n && strcmp(out[k].spec, c->set[s].spec)) k++;
        if (k == n) {
            memset(&out[n], 0, sizeof out[n]);
            out[n++].spec = c->set[s].spec;
        }
        curve *cv = &out[k];
        if (cv->n == MAX_BUDGETS) continue;
        cv->budget[cv->n] = c->set[s].budget;
        cv->top1[cv->n] = sm[s].top1;
        cv->top1_se[cv->n] = sm[s].top1_se;
        cv->kl[cv->n] = sm[s].kl;
        cv->kl_se[cv->n] = sm[s].kl_se;
        cv->n++;
    }
    return n;
}

/* A policy fails here when its KL at its largest budget is above the best
 * KL any policy reaches at the smallest budget: more memory does not make it
 * as good as the others with the least. Those go to panels of their own, so
 * the y-range of the usable ones shows their differences. */
static int failing(const curve *cv, double best_at_min) {
    return cv->n > 0 && isfinite(best_at_min) && cv->kl[cv->n - 1] > best_at_min;
}

static int write_svg(FILE *f, const ctx *c, const summary *sm, const uint32_t *budgets, int nb) {
    static curve cv[MAX_POLICIES];
    int n = curves(c, sm, cv);
    double best = INFINITY;
    for (int k = 0; k < n; k++)
        if (cv[k].n && cv[k].budget[0] == budgets[0] && cv[k].kl[0] < best) best = cv[k].kl[0];
    static svgplot_series top1[2][MAX_POLICIES], kl[2][MAX_POLICIES];
    int count[2] = {0, 0};
    char names[512] = "";
    for (int k = 0; k < n; k++) {
        int bad = failing(&cv[k], best);
        top1[bad][count[bad]] = (svgplot_series){cv[k].spec, cv[k].n, cv[k].budget, cv[k].top1, cv[k].top1_se};
        kl[bad][count[bad]] = (svgplot_series){cv[k].spec, cv[k].n, cv[k].budget, cv[k].kl, cv[k].kl_se};
        count[bad]++;
        if (bad && strlen(names) + strlen(cv[k].spec) + 3 < sizeof names) {
            if (names[0]) strcat(names, ", ");
            strcat(names, cv[k].spec);
        }
    }
    double ticks[MAX_BUDGETS];
    for (int i = 0; i < nb; i++) ticks[i] = budgets[i];
    static char note[700];
    snprintf(note, sizeof note, "KL at budget %u above the best policy's at budget %u: %s", budgets[nb - 1],
             budgets[0], names);
    const char *xl = "budget (tokens per kv head, each layer)";
    svgplot_panel p[4];
    int np = 0;
    for (int bad = 0; bad < 2; bad++) {
        if (!count[bad]) continue;
        p[np++] = (svgplot_panel){bad ? "Failing policies: top-1 agreement" : "Top-1 agreement with the full cache",
                                  xl, "top-1 agreement (higher is better)", 1, 0, NAN, NAN, ticks, nb,
                                  top1[bad], count[bad], NULL};
        p[np++] = (svgplot_panel){bad ? "Failing policies: KL(full || policy)" : "KL(full || policy) of the next token",
                                  xl, "mean KL, nats (lower is better)", 1, 1, NAN, NAN, ticks, nb,
                                  kl[bad], count[bad], bad ? note : NULL};
    }
    char title[160], sub[200];
    snprintf(title, sizeof title, "Eviction policies vs the full cache: %s", c->model_name);
    snprintf(sub, sizeof sub, "%d teacher-forced sequences of %d tokens; error bars: one standard error over sequences",
             c->seqs, c->len);
    svgplot_figure fig = {title, sub, 2, 1}; /* a dozen policies: one legend beside the panels */
    return svgplot_write(f, &fig, p, np);
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f) {
    fprintf(f,
            "usage: eval [options]\n"
            "  -m PATH, -z PATH    checkpoint and tokenizer (default $KVC_MODEL_DIR or\n"
            "                      ../shared/models/stories260K: stories260K.bin, tok512.bin)\n"
            "  --policies LIST     comma-separated policy names (default: every built-in but full)\n"
            "  --policy SPEC       add one policy spec, e.g. \"h2o norm=lifetime\" (repeatable)\n"
            "  --budgets LIST      comma-separated capacities (default 32,64,128,256)\n"
            "  --seqs N            reference sequences (default 16)\n"
            "  --len N             tokens per reference sequence (default: the model's seq_len)\n"
            "  --gens N            free-running generations per setting, <= seqs; 0 = skip (default 16)\n"
            "  --gen-len N         tokens per generation, prompt included (default: --len)\n"
            "  --prompt N          prompt tokens taken from a reference sequence (default 8)\n"
            "  --seed N            first reference seed (default 1)\n"
            "  --dtype NAME        K/V storage of the evaluated caches: f32, f16, bf16 or q8 (default f32;\n"
            "                      the full-cache reference is always f32, so `--policy full --dtype q8`\n"
            "                      measures the storage alone)\n"
            "  -j N                threads (default 2)\n"
            "  --csv FILE          CSV output (default stdout)\n"
            "  --md FILE           markdown table\n"
            "  --svg FILE          SVG plot (top-1 agreement and KL vs budget)\n"
            "  -q                  no progress on stderr\n"
            "  --loop-test         read text on stdin, print \"loop\" or \"no loop\" (the detector alone)\n");
}

static int parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static FILE *open_out(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) fprintf(stderr, "eval: cannot write %s: %s\n", path, strerror(errno));
    return f;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *csv_path = NULL, *md_path = NULL, *svg_path = NULL;
    const char *policies = NULL, *budget_list = "32,64,128,256";
    const char *specs[MAX_SPECS];
    int n_specs = 0;
    long seqs = 16, len = 0, gens = 16, gen_len = 0, prompt = 8, seed = 1, threads = 2;
    int quiet = 0;
    kvc_dtype dtype = KVC_DTYPE_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "-q")) {
            quiet = 1;
            continue;
        }
        if (!strcmp(a, "--loop-test")) {
            size_t cap = 1 << 16, n = 0, got;
            char *buf = malloc(cap), *grown;
            while (buf && (got = fread(buf + n, 1, cap - n, stdin)) > 0)
                if ((n += got) == cap) {
                    grown = realloc(buf, cap *= 2);
                    if (!grown) free(buf);
                    buf = grown;
                }
            if (!buf) {
                fprintf(stderr, "eval: out of memory\n");
                return 1;
            }
            puts(has_loop(buf, n) ? "loop" : "no loop");
            free(buf);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "eval: %s needs a value (or is unknown)\n", a);
            usage(stderr);
            return 2;
        }
        if (!strcmp(a, "-m"))
            model_path = v;
        else if (!strcmp(a, "-z"))
            tok_path = v;
        else if (!strcmp(a, "--dtype")) {
            if (llm_dtype_by_name(v, &dtype)) {
                fprintf(stderr, "eval: --dtype %s: unknown (f32, f16, bf16 or q8)\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--policies"))
            policies = v;
        else if (!strcmp(a, "--policy")) {
            if (n_specs == MAX_SPECS) {
                fprintf(stderr, "eval: at most %d --policy options\n", MAX_SPECS);
                return 2;
            }
            specs[n_specs++] = v;
        } else if (!strcmp(a, "--budgets"))
            budget_list = v;
        else if (!strcmp(a, "--seqs"))
            bad = parse_int(v, 1, 100000, &seqs);
        else if (!strcmp(a, "--len"))
            bad = parse_int(v, 2, 1L << 20, &len);
        else if (!strcmp(a, "--gens"))
            bad = parse_int(v, 0, 100000, &gens);
        else if (!strcmp(a, "--gen-len"))
            bad = parse_int(v, 2, 1L << 20, &gen_len);
        else if (!strcmp(a, "--prompt"))
            bad = parse_int(v, 1, 1L << 20, &prompt);
        else if (!strcmp(a, "--seed"))
            bad = parse_int(v, 0, 0x7fffffffL, &seed);
        else if (!strcmp(a, "-j"))
            bad = parse_int(v, 1, 64, &threads);
        else if (!strcmp(a, "--csv"))
            csv_path = v;
        else if (!strcmp(a, "--md"))
            md_path = v;
        else if (!strcmp(a, "--svg"))
            svg_path = v;
        else {
            fprintf(stderr, "eval: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "eval: bad value '%s' for %s\n", v, a);
            return 2;
        }
        i++;
    }

    char dflt_model[4096], dflt_tok[4096], err[512];
    llm_default_paths(&model_path, &tok_path, dflt_model, dflt_tok, sizeof dflt_model);

    /* budgets */
    uint32_t budgets[MAX_BUDGETS];
    int nb = 0;
    {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", budget_list);
        for (char *p = strtok(buf, ","); p; p = strtok(NULL, ",")) {
            long b;
            if (nb == MAX_BUDGETS || parse_int(p, 1, 1L << 30, &b)) {
                fprintf(stderr, "eval: bad budget list '%s' (at most %d positive integers)\n", budget_list,
                        MAX_BUDGETS);
                return 2;
            }
            budgets[nb++] = (uint32_t)b;
        }
        if (!nb) {
            fprintf(stderr, "eval: empty budget list\n");
            return 2;
        }
        qsort(budgets, (size_t)nb, sizeof *budgets, cmp_u32);
    }

    static ctx c; /* large: keep it off the stack */
    pthread_mutex_init(&c.mu, NULL);
    c.quiet = quiet;
    c.dtype = dtype;
    llm_model m;
    llm_tokenizer tk;
    if (llm_model_load(&m, model_path, err, sizeof err)) {
        fprintf(stderr, "eval: %s\n", err);
        llm_model_hint(stderr, "eval");
        return 1;
    }
    if (llm_tokenizer_load(&tk, tok_path, m.c.vocab_size, err, sizeof err)) {
        fprintf(stderr, "eval: %s\n", err);
        llm_model_hint(stderr, "eval");
        llm_model_free(&m);
        return 1;
    }
    if (!len) len = m.c.seq_len;
    if (!gen_len) gen_len = len;
    if (gens > seqs) {
        fprintf(stderr, "eval: --gens %ld exceeds --seqs %ld (each generation is prompted by its own sequence)\n",
                gens, seqs);
        return 2;
    }
    if (prompt >= gen_len || prompt > len) {
        fprintf(stderr, "eval: --prompt %ld must be shorter than --gen-len %ld and at most --len %ld\n", prompt,
                gen_len, len);
        return 2;
    }
    {
        const char *base = strrchr(model_path, '/');
        base = base ? base + 1 : model_path;
        size_t n = strlen(base);
        if (n > 4 && strcmp(base + n - 4, ".bin") == 0) n -= 4;
        if (n >= sizeof c.model_name) n = sizeof c.model_name - 1;
        memcpy(c.model_name, base, n);
        /* the name goes into XML: keep it to safe characters */
        for (size_t i = 0; i < n; i++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+", c.model_name[i]))
                c.model_name[i] = '_';
    }
    c.m = &m, c.tk = &tk, c.len = (int)len, c.seqs = (int)seqs, c.gens = (int)gens, c.gen_len = (int)gen_len;
    c.prompt = (int)prompt, c.seed = (uint64_t)seed;

    /* settings: the full-cache baseline, then every policy at every budget */
    char *names = NULL;
    const char *list[MAX_SPECS * 2];
    int n_list = 0;
    if (policies || !n_specs) {
        if (policies) {
            names = malloc(strlen(policies) + 1);
            if (!names) return 1;
            strcpy(names, policies);
            for (char *p = strtok(names, ","); p && n_list < MAX_SPECS; p = strtok(NULL, ",")) list[n_list++] = p;
        } else {
            for (size_t i = 0; kvc_policy_at(i) && n_list < MAX_SPECS; i++)
                if (strcmp(kvc_policy_at(i)->name, "full") != 0) list[n_list++] = kvc_policy_at(i)->name;
        }
    }
    for (int i = 0; i < n_specs; i++) list[n_list++] = specs[i];
    c.set[c.n_set++] = (setting){"full", (uint32_t)(len > gen_len ? len : gen_len), 1};
    for (int p = 0; p < n_list; p++)
        for (int b = 0; b < nb; b++) {
            if (c.n_set == MAX_SETTINGS) {
                fprintf(stderr, "eval: too many policy x budget settings (max %d)\n", MAX_SETTINGS);
                return 2;
            }
            c.set[c.n_set++] = (setting){list[p], budgets[b], 0};
        }
    /* check every spec at every budget up front: a typo fails in milliseconds */
    for (int s = 1; s < c.n_set; s++) {
        llm_state st;
        if (llm_state_init_dtype(&st, &m, c.set[s].spec, c.set[s].budget, 0, c.dtype, err, sizeof err)) {
            fprintf(stderr, "eval: %s\n", err);
            return 2;
        }
        llm_state_free(&st);
    }

    FILE *csv = stdout, *md = NULL, *svg = NULL;
    if ((csv_path && !(csv = open_out(csv_path))) || (md_path && !(md = open_out(md_path))) ||
        (svg_path && !(svg = open_out(svg_path))))
        return 1;

    (void)kvc_active_isa(); /* choose the kernel before the threads start */
    c.ref_tok = malloc((size_t)seqs * (size_t)len * sizeof(int));
    c.ref_lp = malloc((size_t)seqs * (size_t)len * (size_t)m.c.vocab_size * sizeof(float));
    int n_items = (int)seqs + c.n_set * (int)(seqs + gens);
    item *items = calloc((size_t)n_items, sizeof *items);
    result *res = calloc((size_t)n_items, sizeof *res);
    if (!c.ref_tok || !c.ref_lp || !items || !res) {
        fprintf(stderr, "eval: out of memory\n");
        return 1;
    }
    c.t0 = cli_now();
    int k = 0;
    for (int i = 0; i < seqs; i++) items[k++] = (item){KIND_REF, -1, i};
    if (run_items(&c, items, res, (int)seqs, (int)threads, "reference sequences")) goto failed;
    int work0 = k;
    for (int s = 0; s < c.n_set; s++)
        for (int i = 0; i < seqs; i++) items[k++] = (item){KIND_TF, s, i};
    for (int s = 0; s < c.n_set; s++)
        for (int g = 0; g < gens; g++) items[k++] = (item){KIND_FREE, s, g};
    if (run_items(&c, items + work0, res + work0, k - work0, (int)threads, "teacher-forced and free-running"))
        goto failed;

    summary *sm = calloc((size_t)c.n_set, sizeof *sm);
    if (!sm) return 1;
    summarise(&c, items + work0, res + work0, k - work0, sm);
    write_csv(csv, &c, sm);
    if (md) write_md(md, &c, sm);
    int rc = 0;
    if (svg && write_svg(svg, &c, sm, budgets, nb)) rc = 1;
    if (csv != stdout && fclose(csv)) rc = 1;
    if (md && fclose(md)) rc = 1;
    if (svg && fclose(svg)) rc = 1;
    if (rc) fprintf(stderr, "eval: error writing the output files\n");
    if (!quiet) fprintf(stderr, "eval: done in %.1f s\n", cli_now() - c.t0);
    if (!rc && csv != stdout) { /* the CSV went to a file: stdout is free for a summary */
        write_summary(stdout, &c, sm, budgets, nb);
        printf("\nwrote: %s (CSV)", csv_path);
        if (md_path) printf(", %s (markdown table)", md_path);
        if (svg_path) printf(", %s (plot)", svg_path);
        printf("\n");
    }
    free(sm);
    free(items);
    free(res);
    free(c.ref_tok);
    free(c.ref_lp);
    free(names);
    llm_tokenizer_free(&tk);
    llm_model_free(&m);
    return rc;
failed:
    fprintf(stderr, "eval: %s\n", c.err);
    return 1;
}
