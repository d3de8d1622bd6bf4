/* reason: accuracy of every eviction policy against the cache budget on the
 * proving ground's long-context tasks, with the project's own trained model.
 *
 *   reason [--model PATH] [--tasks PATH] [--policies LIST] [--budgets LIST]
 *          [--n N] [--threads N] [--csv PATH] [--md PATH] [--svg PATH]
 *          [--chase-budget N] [--quiet]
 *
 * Every instance runs token by token through one STORE-mode kvc_cache per
 * layer (examples/llama's forward pass). Prompt tokens are read as given;
 * scored tokens are compared with the model's greedy prediction, and then
 * either read as given (the recall task's question stream) or replaced by the
 * prediction (decoding: needle, chase, vt). Progress goes to stderr. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adversary.h"
#include "cli.h"
#include "model.h"
#include "svgplot.h"
#include "taskset.h"

#define MAX_CONFIGS 512
#define MAX_POLICIES 48
#define MAX_BUDGETS 16
#define CHASE_K 16

typedef struct {
    char spec[160];  /* policy spec as given, e.g. "h2o norm=lifetime" */
    uint32_t budget;
} config;

typedef struct {
    float score;      /* in [0, 1] */
    uint16_t chase;   /* chase only: bit k-1 set when hops 1..k were all right */
    float held[CHASE_K]; /* chase only: share of (layer, group) caches holding hop k's fact when it was needed */
} result;

typedef struct {
    const llm_model *m;
    const task_set *ts;
    config cfg[MAX_CONFIGS];
    int n_cfg;
    int *inst;        /* the instances evaluated (indices into ts) */
    int n_inst;
    result *res;      /* n_cfg x n_inst */
    pthread_mutex_t mu;
    kvc_dtype dtype;  /* K/V storage of every cache */
    int next, done, total, last_pct, quiet, failed;
    double t0;
    char err[700];
} ctx;

static void fail(ctx *c, const char *msg) {
    pthread_mutex_lock(&c->mu);
    if (!c->failed) {
        c->failed = 1;
        snprintf(c->err, sizeof c->err, "%s", msg);
    }
    pthread_mutex_unlock(&c->mu);
}

/* The adversarial control is not a library policy: it is found here by name. */
static const kvc_policy *local_policy(const char *spec, const char **options) {
    size_t n = strcspn(spec, " \t");
    if (n == strlen("vrange_max") && !strncmp(spec, "vrange_max", n)) {
        *options = spec + n;
        return reason_policy_vrange_max();
    }
    return NULL;
}

/* Position of the fact "a b ;" whose source is `a` in a chase instance
 * (facts start at position 3), or -1. */
static int chase_fact(const task_inst *t, int a) {
    for (int p = 3; p + 2 < t->len && t->tok[p + 2] == 4 /* ';' */; p += 3)
        if (t->tok[p] == a) return p;
    return -1;
}

/* Share of the layer x group caches in which position `pos` is resident. */
static float resident_share(const llm_state *st, int64_t pos, int64_t *buf) {
    int n = 0, held = 0;
    for (int l = 0; l < st->m->c.n_layers; l++) {
        kvc_cache *cache = st->cache[l];
        uint32_t groups = kvc_cache_groups(cache), len = kvc_cache_len(cache);
        for (uint32_t g = 0; g < groups; g++, n++) {
            if (kvc_cache_positions(cache, g, buf) != KVC_OK) continue;
            for (uint32_t i = 0; i < len; i++)
                if (buf[i] == pos) {
                    held++;
                    break;
                }
        }
    }
    return n ? (float)held / (float)n : 0.0f;
}

/* One worker's record of an instance's full-cache run: what each layer
 * handed its cache at every position, and the prediction at each scored one.
 * Until a cache first fills, every policy's caches hold exactly the full
 * cache's tokens, so every other run of the instance replays that stretch
 * from here (attention and policy updates included, only the matrix
 * products skipped) instead of recomputing it. */
typedef struct {
    float *trace; /* seq_len x llm_trace_floats() */
    int *pred;    /* seq_len: the full run's prediction for position p + 1, or -1 */
    int len;      /* positions recorded */
} full_record;

static void progress(ctx *c) {
    pthread_mutex_lock(&c->mu);
    c->done++;
    int pct = (int)(100.0 * c->done / c->total);
    if (!c->quiet && pct != c->last_pct) {
        c->last_pct = pct;
        double el = cli_now() - c->t0;
        fprintf(stderr, "\r  %3d%%  %d/%d runs  %.0f s elapsed, about %.0f s left   ", pct, c->done, c->total, el,
                el / c->done * (c->total - c->done));
    }
    pthread_mutex_unlock(&c->mu);
}

/* The full-cache run records into fr (record = 1); every other run replays
 * fr's positions before its caches' capacity. */
static int run_one(ctx *c, const config *cf, const task_inst *t, uint64_t seed, result *r, int64_t *posbuf,
                   full_record *fr, int record) {
    const int V = c->m->c.vocab_size;
    char err[600];
    llm_state st;
    const char *opts = "";
    const kvc_policy *pol = local_policy(cf->spec, &opts);
    int rc = llm_state_init_ex(&st, c->m, pol, pol ? opts : cf->spec, cf->budget, seed, c->dtype, err, sizeof err);
    if (rc) {
        fail(c, err);
        return -1;
    }
    memset(r, 0, sizeof *r);
    int replay = 0; /* positions taken from the full run: before any cache can evict */
    if (record) {
        st.trace = fr->trace, st.trace_len = c->m->c.seq_len;
        fr->len = 0;
    } else {
        replay = fr->len;
        for (int l = 0; l < c->m->c.n_layers; l++) {
            int cap = (int)kvc_cache_capacity(st.cache[l]);
            replay = cap < replay ? cap : replay;
        }
    }
    int next = 0, right = 0, all_right = 1, pred = -1, hop = 0, prefix_ok = 1, node = -1;
    for (int p = 0; p + 1 < t->len && next < t->n_scored; p++) { /* nothing after the last scored token counts */
        int tok = t->tok[p];
        if (next > 0 && t->pos[next - 1] == p && t->kind[next - 1] == KIND_GEN) tok = pred;
        int scored = next < t->n_scored && t->pos[next] == p + 1;
        int rc = p < replay ? llm_replay(&st, fr->trace + (size_t)p * llm_trace_floats(c->m), p, err, sizeof err)
                            : llm_forward_ex(&st, tok, p, scored, err, sizeof err);
        if (rc) {
            fail(c, err);
            llm_state_free(&st);
            return -1;
        }
        if (record && p < st.trace_len) {
            fr->pred[p] = -1;
            fr->len = p + 1;
        }
        if (!scored) continue;
        pred = p < replay ? fr->pred[p] : llm_argmax(st.logits, V);
        if (record && p < st.trace_len) fr->pred[p] = pred;
        int ok = pred == t->tok[p + 1];
        right += ok;
        all_right &= ok;
        if (t->task == TASK_CHASE && hop < CHASE_K) {
            /* the fact this hop needs: the one whose source is the node just read */
            int at = chase_fact(t, node < 0 ? t->tok[p - 1] : node);
            r->held[hop] = at < 0 ? 0.0f : resident_share(&st, at + 1, posbuf);
            node = t->tok[p + 1];
            prefix_ok &= ok;
            if (prefix_ok) r->chase |= (uint16_t)(1u << hop);
            hop++;
        }
        next++;
    }
    r->score = t->task == TASK_RECALL ? (float)right / (float)(t->n_scored ? t->n_scored : 1) : (float)all_right;
    llm_state_free(&st);
    return 0;
}

/* A job is one instance: its full-cache run (config 0) first, then every
 * other config, which replays the full run's common start. */
static void *worker(void *arg) {
    ctx *c = arg;
    const size_t S = (size_t)c->m->c.seq_len;
    int64_t *posbuf = malloc(sizeof(int64_t) * (S + 64));
    full_record fr = {malloc(sizeof(float) * S * llm_trace_floats(c->m)), malloc(sizeof(int) * S), 0};
    if (!posbuf || !fr.trace || !fr.pred) {
        fail(c, "out of memory");
        free(posbuf), free(fr.trace), free(fr.pred);
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&c->mu);
        int ii = c->failed ? c->n_inst : c->next++;
        pthread_mutex_unlock(&c->mu);
        if (ii >= c->n_inst) break;
        const task_inst *t = &c->ts->inst[c->inst[ii]];
        int bad = 0;
        for (int ci = 0; ci < c->n_cfg && !bad; ci++) {
            bad = run_one(c, &c->cfg[ci], t, 1000003ull * (uint64_t)(c->inst[ii] + 1),
                          &c->res[(size_t)ci * c->n_inst + ii], posbuf, &fr, ci == 0);
            if (!bad) progress(c);
        }
        if (bad) break;
    }
    free(posbuf), free(fr.trace), free(fr.pred);
    return NULL;
}

/* ---------------------------------------------------------------- statistics */

typedef struct {
    double mean, lo, hi, se;
    int n;
} estimate;

/* Mean with a 95% interval: Wilson's for 0/1 scores, the normal one otherwise. */
static estimate estimate_of(const float *x, int n, int stride, int binary) {
    estimate e = {0};
    e.n = n;
    if (n == 0) return e;
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += x[(size_t)i * stride];
    e.mean = s / n;
    for (int i = 0; i < n; i++) ss += (x[(size_t)i * stride] - e.mean) * (x[(size_t)i * stride] - e.mean);
    e.se = n > 1 ? sqrt(ss / (n - 1) / n) : 0;
    const double z = 1.96;
    if (binary) {
        double p = e.mean, d = 1 + z * z / n, mid = (p + z * z / (2.0 * n)) / d;
        double half = z * sqrt(p * (1 - p) / n + z * z / (4.0 * n * n)) / d;
        e.lo = mid - half, e.hi = mid + half;
    } else {
        e.lo = e.mean - z * e.se, e.hi = e.mean + z * e.se;
    }
    if (e.lo < 0) e.lo = 0;
    if (e.hi > 1) e.hi = 1;
    return e;
}

/* ---------------------------------------------------------------- arguments */

static void usage(FILE *f) {
    fprintf(f,
            "usage: reason [options]\n"
            "  --model PATH       checkpoint (default examples/reasoning/model/model.bin)\n"
            "  --tasks PATH       instance file (default examples/reasoning/data/tasks.bin)\n"
            "  --policies LIST    comma-separated policy specs (default: every built-in policy and\n"
            "                     the adversarial control vrange_max); \"full\" always runs as the baseline\n"
            "  --budgets LIST     comma-separated cache budgets (default 64,128,256,512)\n"
            "  --n N              instances per task (default 200)\n"
            "  --skip N           start at each task's instance N (default 0)\n"
            "  --only LIST        comma-separated tasks to run (default recall,needle,chase,vt)\n"
            "  --threads N        worker threads (default 2)\n"
            "  --chase-budget N   budget of the pointer-chasing table (default 256)\n"
            "  --dtype NAME       K/V storage of every cache, the full one included: f32 (default), f16,\n"
            "                     bf16 or q8\n"
            "  --csv PATH, --md PATH, --svg PATH   outputs (default: none, the table goes to stdout)\n"
            "  --quiet            no progress on stderr\n");
}

static int split_list(char *s, char **out, int max) {
    int n = 0;
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
        while (*tok == ' ') tok++;
        if (!*tok) continue;
        if (n == max) return -1;
        out[n++] = tok;
    }
    return n;
}

/* ---------------------------------------------------------------- output */

static int find_cfg(const ctx *c, const char *spec, uint32_t budget) {
    for (int i = 0; i < c->n_cfg; i++)
        if (c->cfg[i].budget == budget && !strcmp(c->cfg[i].spec, spec)) return i;
    return -1;
}

/* Scores of config `ci` on instances of task `task`, gathered into `buf`. */
static int gather(const ctx *c, int ci, int task, float *buf, int chase_k) {
    int n = 0;
    for (int i = 0; i < c->n_inst; i++) {
        if (c->ts->inst[c->inst[i]].task != task) continue;
        const result *r = &c->res[(size_t)ci * c->n_inst + i];
        buf[n++] = chase_k ? (float)((r->chase >> (chase_k - 1)) & 1u) : r->score;
    }
    return n;
}

static void cell(char *buf, size_t n, estimate e) {
    snprintf(buf, n, "%.3f ±%.3f", e.mean, (e.hi - e.lo) / 2);
}

int main(int argc, char **argv) {
    const char *model_path = "examples/reasoning/model/model.bin", *task_path = "examples/reasoning/data/tasks.bin";
    const char *csv_path = NULL, *md_path = NULL, *svg_path = NULL;
    char *policy_arg = NULL, *budget_arg = NULL, *only_arg = NULL;
    long n_per = 200, skip = 0, threads = 2, chase_budget = 256;
    int quiet = 0;
    kvc_dtype dtype = KVC_DTYPE_F32;
    const char *dtype_arg = "f32";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--quiet")) {
            quiet = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "reason: %s needs a value\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--tasks")) task_path = v;
        else if (!strcmp(a, "--csv")) csv_path = v;
        else if (!strcmp(a, "--md")) md_path = v;
        else if (!strcmp(a, "--svg")) svg_path = v;
        else if (!strcmp(a, "--policies")) policy_arg = strdup(v);
        else if (!strcmp(a, "--budgets")) budget_arg = strdup(v);
        else if (!strcmp(a, "--only")) only_arg = strdup(v);
        else if (!strcmp(a, "--dtype") && !llm_dtype_by_name(v, &dtype)) dtype_arg = v;
        else if (!strcmp(a, "--n") && !cli_parse_long(v, 1, 100000, &n_per)) ;
        else if (!strcmp(a, "--skip") && !cli_parse_long(v, 0, 100000, &skip)) ;
        else if (!strcmp(a, "--threads") && !cli_parse_long(v, 1, 64, &threads)) ;
        else if (!strcmp(a, "--chase-budget") && !cli_parse_long(v, 1, 1 << 20, &chase_budget)) ;
        else {
            fprintf(stderr, "reason: bad option or value: %s %s\n", a, v);
            usage(stderr);
            return 2;
        }
    }

    static ctx c;
    c.dtype = dtype;
    char err[600];
    llm_model m;
    task_set ts;
    if (llm_model_load(&m, model_path, err, sizeof err)) {
        fprintf(stderr, "reason: %s\n(the checkpoint is committed under examples/reasoning/model/; "
                        "`make model` retrains it)\n", err);
        return 1;
    }
    if (task_set_load(&ts, task_path, err, sizeof err)) {
        fprintf(stderr, "reason: %s\n", err);
        return 1;
    }
    if (ts.vocab > m.c.vocab_size) {
        fprintf(stderr, "reason: the tasks use %d tokens but the model knows %d\n", ts.vocab, m.c.vocab_size);
        return 1;
    }
    c.m = &m, c.ts = &ts, c.quiet = quiet;
    pthread_mutex_init(&c.mu, NULL);

    /* tasks, and the first n instances of each */
    int use[N_TASKS] = {1, 1, 1, 1};
    if (only_arg) {
        char *names[N_TASKS + 1];
        int n = split_list(only_arg, names, N_TASKS);
        memset(use, 0, sizeof use);
        for (int i = 0; i < n; i++) {
            int t = 0;
            while (t < N_TASKS && strcmp(names[i], task_names[t])) t++;
            if (t == N_TASKS) {
                fprintf(stderr, "reason: unknown task '%s' (tasks: recall, needle, chase, vt)\n", names[i]);
                return 2;
            }
            use[t] = 1;
        }
        if (n <= 0) {
            fprintf(stderr, "reason: --only needs task names (recall, needle, chase, vt)\n");
            return 2;
        }
    }
    c.inst = malloc(sizeof(int) * (size_t)ts.n);
    int per_task[N_TASKS] = {0}, seen[N_TASKS] = {0};
    for (int i = 0; i < ts.n; i++) {
        int t = ts.inst[i].task;
        if (use[t] && seen[t]++ >= skip && per_task[t] < n_per) {
            per_task[t]++;
            c.inst[c.n_inst++] = i;
        }
    }
    for (int t = 0; t < N_TASKS; t++)
        if (use[t] && per_task[t] < n_per) {
            fprintf(stderr, "reason: the task file has %d %s instances, fewer than --skip %ld + --n %ld\n", seen[t],
                    task_names[t], skip, n_per);
            return 1;
        }

    /* the grid: full once, then every policy x budget */
    char *pol[MAX_POLICIES], *bud[MAX_BUDGETS];
    char defaults[MAX_POLICIES * 16] = "";
    int n_pol;
    if (policy_arg) {
        n_pol = split_list(policy_arg, pol, MAX_POLICIES);
    } else {
        for (size_t i = 0; kvc_policy_at(i); i++)
            if (strcmp(kvc_policy_at(i)->name, "full")) {
                strcat(defaults, kvc_policy_at(i)->name);
                strcat(defaults, ",");
            }
        strcat(defaults, "vrange_max");
        n_pol = split_list(defaults, pol, MAX_POLICIES);
    }
    char default_budgets[] = "64,128,256,512";
    int n_bud = split_list(budget_arg ? budget_arg : default_budgets, bud, MAX_BUDGETS);
    if (n_pol <= 0 || n_bud <= 0) {
        fprintf(stderr, "reason: empty or too long --policies / --budgets list\n");
        return 2;
    }
    uint32_t budgets[MAX_BUDGETS];
    for (int b = 0; b < n_bud; b++) {
        long v;
        if (cli_parse_long(bud[b], 1, m.c.seq_len, &v)) {
            fprintf(stderr, "reason: budget '%s' is not between 1 and the model's context %d\n", bud[b], m.c.seq_len);
            return 2;
        }
        budgets[b] = (uint32_t)v;
    }
    snprintf(c.cfg[0].spec, sizeof c.cfg[0].spec, "full");
    c.cfg[0].budget = (uint32_t)m.c.seq_len;
    c.n_cfg = 1;
    for (int p = 0; p < n_pol; p++) {
        if (!strcmp(pol[p], "full")) continue;
        for (int b = 0; b < n_bud && c.n_cfg < MAX_CONFIGS; b++) {
            snprintf(c.cfg[c.n_cfg].spec, sizeof c.cfg[c.n_cfg].spec, "%s", pol[p]);
            c.cfg[c.n_cfg++].budget = budgets[b];
        }
    }
    /* the chase table's budget may be off the grid */
    for (int p = 0; p < n_pol; p++)
        if (strcmp(pol[p], "full") && find_cfg(&c, pol[p], (uint32_t)chase_budget) < 0 && c.n_cfg < MAX_CONFIGS) {
            snprintf(c.cfg[c.n_cfg].spec, sizeof c.cfg[c.n_cfg].spec, "%s", pol[p]);
            c.cfg[c.n_cfg++].budget = (uint32_t)chase_budget;
        }
    /* validate every spec once before the long run */
    for (int i = 0; i < c.n_cfg; i++) {
        llm_state st;
        const char *opts = "";
        const kvc_policy *lp = local_policy(c.cfg[i].spec, &opts);
        int rc = llm_state_init_ex(&st, &m, lp, lp ? opts : c.cfg[i].spec, c.cfg[i].budget, 0, c.dtype, err,
                                   sizeof err);
        if (rc) {
            fprintf(stderr, "reason: %s\n", err);
            return 2;
        }
        llm_state_free(&st);
    }

    c.total = c.n_cfg * c.n_inst;
    c.res = calloc((size_t)c.total, sizeof *c.res);
    if (!c.res || !c.inst) {
        fprintf(stderr, "reason: out of memory\n");
        return 1;
    }
    if (!quiet)
        fprintf(stderr, "reason: %d settings x %d instances (%ld per task) on %ld threads, kernel %s\n", c.n_cfg,
                c.n_inst, n_per, threads, kvc_active_isa());
    c.t0 = cli_now();
    c.last_pct = -1;
    pthread_t th[64];
    for (long i = 0; i < threads; i++) pthread_create(&th[i], NULL, worker, &c);
    for (long i = 0; i < threads; i++) pthread_join(th[i], NULL);
    if (!quiet) fprintf(stderr, "\n");
    if (c.failed) {
        fprintf(stderr, "reason: %s\n", c.err);
        return 1;
    }
    double elapsed = cli_now() - c.t0;

    float *buf = malloc(sizeof(float) * (size_t)c.n_inst);
    FILE *csv = csv_path ? fopen(csv_path, "w") : NULL;
    FILE *md = md_path ? fopen(md_path, "w") : stdout;
    if ((csv_path && !csv) || !md || !buf) {
        fprintf(stderr, "reason: cannot write %s\n", csv_path && !csv ? csv_path : md_path);
        return 1;
    }
    if (csv) fprintf(csv, "task,policy,budget,budget_frac,n,accuracy,ci_lo,ci_hi,se\n");

    /* accuracy vs budget, one table per task */
    fprintf(md, "Accuracy (share of instances solved; recall: share of questions answered) with a 95%% interval,\n"
                "%ld instances per cell, context %d tokens, model %s, K/V stored as %s.\n\n", n_per, m.c.seq_len,
            model_path, dtype_arg);
    estimate full[N_TASKS];
    for (int t = 0; t < N_TASKS; t++) {
        int n = gather(&c, 0, t, buf, 0);
        full[t] = estimate_of(buf, n, 1, t != TASK_RECALL);
    }
    fprintf(md, "| task | full cache |\n|---|---|\n");
    for (int t = 0; t < N_TASKS; t++) {
        if (!use[t]) continue;
        char s[48];
        cell(s, sizeof s, full[t]);
        fprintf(md, "| %s | %s |\n", task_names[t], s);
    }
    /* the plot: one panel per task, a series per policy (x budgets, y accuracy,
     * error bars half the 95% interval), the full cache in the panel's note */
    static double px[N_TASKS][MAX_POLICIES][MAX_BUDGETS], py[N_TASKS][MAX_POLICIES][MAX_BUDGETS],
        pe[N_TASKS][MAX_POLICIES][MAX_BUDGETS], xb[MAX_BUDGETS];
    static svgplot_series ps[N_TASKS][MAX_POLICIES];
    svgplot_panel panels[N_TASKS];
    static char notes[N_TASKS][64];
    int n_panels = 0;
    for (int b = 0; b < n_bud; b++) xb[b] = budgets[b];
    for (int t = 0; t < N_TASKS; t++) {
        if (!use[t]) continue;
        fprintf(md, "\n### %s\n\n| policy |", task_names[t]);
        for (int b = 0; b < n_bud; b++) fprintf(md, " %u (1/%u) |", budgets[b], (unsigned)m.c.seq_len / budgets[b]);
        fprintf(md, "\n|---|");
        for (int b = 0; b < n_bud; b++) fprintf(md, "---|");
        fprintf(md, "\n");
        int n_ser = 0;
        for (int p = 0; p < n_pol; p++) {
            if (!strcmp(pol[p], "full")) continue;
            fprintf(md, "| `%s` |", pol[p]);
            svgplot_series *ser = &ps[t][n_ser];
            *ser = (svgplot_series){pol[p], n_bud, px[t][n_ser], py[t][n_ser], pe[t][n_ser]};
            n_ser++;
            for (int b = 0; b < n_bud; b++) {
                int ci = find_cfg(&c, pol[p], budgets[b]);
                int n = gather(&c, ci, t, buf, 0);
                estimate e = estimate_of(buf, n, 1, t != TASK_RECALL);
                char s[48];
                cell(s, sizeof s, e);
                fprintf(md, " %s |", s);
                px[t][n_ser - 1][b] = budgets[b], py[t][n_ser - 1][b] = e.mean, pe[t][n_ser - 1][b] = (e.hi - e.lo) / 2;
                if (csv)
                    fprintf(csv, "%s,\"%s\",%u,%.6f,%d,%.6f,%.6f,%.6f,%.6f\n", task_names[t], pol[p], budgets[b],
                            (double)budgets[b] / m.c.seq_len, e.n, e.mean, e.lo, e.hi, e.se);
            }
            fprintf(md, "\n");
        }
        snprintf(notes[t], sizeof notes[t], "full cache: %.3f", full[t].mean);
        panels[n_panels++] = (svgplot_panel){.title = task_names[t], .xlabel = "cache budget (tokens)",
                                             .ylabel = "accuracy", .logx = 1, .ymin = 0, .ymax = 1, .xticks = xb,
                                             .n_xticks = n_bud, .series = ps[t], .n_series = n_ser,
                                             .note = notes[t]};
    }
    if (csv)
        for (int t = 0; t < N_TASKS; t++)
            if (use[t])
                fprintf(csv, "%s,full,%d,1,%d,%.6f,%.6f,%.6f,%.6f\n", task_names[t], m.c.seq_len, full[t].n, full[t].mean,
                    full[t].lo, full[t].hi, full[t].se);

    /* pointer chasing against hops, at one budget, next to the paper's forms */
    static const int ks[] = {1, 2, 4, 8, 16};
    const int n_ks = (int)(sizeof ks / sizeof ks[0]);
    double sn = (double)chase_budget / (m.c.seq_len - CHASE_K);
    if (!use[TASK_CHASE]) goto tables_done;
    fprintf(md, "\n### chase: success against hops k at budget %ld (s/n = %.3f)\n\n| policy |", chase_budget, sn);
    for (int k = 0; k < n_ks; k++) fprintf(md, " k=%d |", ks[k]);
    fprintf(md, " fact held at hop 1 | at hop 8 |\n|---|");
    for (int k = 0; k < n_ks + 2; k++) fprintf(md, "---|");
    fprintf(md, "\n| paper, adaptive: s/n |");
    for (int k = 0; k < n_ks; k++) fprintf(md, " %.3f |", sn);
    fprintf(md, " | |\n| paper, oblivious: (s/n)^T, T = ceil(log2 k) |");
    for (int k = 0; k < n_ks; k++) fprintf(md, " %.3f |", pow(sn, ceil(log2((double)ks[k]))));
    fprintf(md, " | |\n");
    for (int p = -1; p < n_pol; p++) {
        const char *name = p < 0 ? "full" : pol[p];
        if (p >= 0 && !strcmp(name, "full")) continue;
        int ci = p < 0 ? 0 : find_cfg(&c, name, (uint32_t)chase_budget);
        fprintf(md, "| `%s` |", name);
        for (int k = 0; k < n_ks; k++) {
            int n = gather(&c, ci, TASK_CHASE, buf, ks[k]);
            estimate e = estimate_of(buf, n, 1, 1);
            char s[48];
            cell(s, sizeof s, e);
            fprintf(md, " %s |", s);
            if (csv)
                fprintf(csv, "chase_k%d,\"%s\",%ld,%.6f,%d,%.6f,%.6f,%.6f,%.6f\n", ks[k], name,
                        p < 0 ? (long)m.c.seq_len : chase_budget, (double)chase_budget / m.c.seq_len, e.n, e.mean,
                        e.lo, e.hi, e.se);
        }
        for (int h = 0; h < 2; h++) {
            int hop = h ? 7 : 0, n = 0;
            double s = 0;
            for (int i = 0; i < c.n_inst; i++)
                if (ts.inst[c.inst[i]].task == TASK_CHASE) s += c.res[(size_t)ci * c.n_inst + i].held[hop], n++;
            fprintf(md, " %.2f |", n ? s / n : 0.0);
        }
        fprintf(md, "\n");
    }
tables_done:
    fprintf(md, "\n%d runs of %d tokens in %.0f s on %ld threads.\n", c.total, ts.inst[0].len, elapsed, threads);
    if (md != stdout) fclose(md);
    if (csv) fclose(csv);
    if (svg_path) {
        char sub[160];
        snprintf(sub, sizeof sub, "%ld instances per point, error bars: 95%% interval, context %d tokens", n_per,
                 m.c.seq_len);
        svgplot_figure fig = {.title = "Accuracy against cache budget", .subtitle = sub, .columns = 2,
                              .legend_right = 1}; /* one legend: every panel has the same 14+ policies */
        FILE *f = fopen(svg_path, "w");
        int bad = !f || svgplot_write(f, &fig, panels, n_panels);
        if (f && fclose(f)) bad = 1;
        if (bad) {
            fprintf(stderr, "reason: cannot write %s\n", svg_path);
            return 1;
        }
    }
    if (!quiet) {
        if (csv_path) fprintf(stderr, "reason: wrote %s\n", csv_path);
        if (md_path) fprintf(stderr, "reason: wrote %s\n", md_path);
        if (svg_path) fprintf(stderr, "reason: wrote %s\n", svg_path);
    }
    free(buf);
    free(c.res);
    free(c.inst);
    free(policy_arg);
    free(budget_arg);
    free(only_arg);
    task_set_free(&ts);
    llm_model_free(&m);
    return 0;
}
