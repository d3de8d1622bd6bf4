/* llama: generate text from a llama2.c-format checkpoint, with every layer's
 * K/V in a libkvc cache whose policy and budget come from the command line.
 *
 *   llama [-m model.bin] [-z tokenizer.bin] [-i PROMPT | --prompt-ids FILE] [-t TEMP] [-p TOP_P]
 *         [--seed N] [--steps N] [--policy SPEC] [--budget N] [--ids] [--no-stop] [--encode]
 *         [--trace FILE]
 *
 * Text goes to stdout, a summary (speed, evictions) to stderr. --trace writes
 * what each step fed, predicted and evicted, for differential tests against
 * other engines (examples/reasoning/differential.py). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "model.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: llama [options]\n"
            "  -m PATH         checkpoint (default $KVC_MODEL_DIR/stories260K.bin,\n"
            "                  KVC_MODEL_DIR defaulting to ../shared/models/stories260K)\n"
            "  -z PATH         tokenizer (default tok512.bin beside the default checkpoint)\n"
            "  -i PROMPT       prompt text (default: start from BOS alone)\n"
            "  --prompt-ids F  read the prompt as token ids (whitespace-separated, used as\n"
            "                  given: no BOS is added) from file F, or stdin for -\n"
            "  -t TEMP         temperature, 0 = greedy (default 1.0)\n"
            "  -p TOP_P        nucleus sampling mass in (0,1]; 1 = off (default 0.9)\n"
            "  --seed N        sampling seed; the caches use N + layer (default 42)\n"
            "  --steps N       tokens to generate after the prompt (default 256)\n"
            "  --policy SPEC   cache policy spec, e.g. \"h2o recent=16\" (default \"full\")\n"
            "  --budget N      cache capacity per layer and group (default: the model's seq_len)\n"
            "  --ids           print the generated token ids, one per line, instead of text\n"
            "  --no-stop       keep going past BOS/EOS\n"
            "  --encode        print the prompt's token ids (after BOS), one per line, and exit\n"
            "  --trace F       write per position the token fed, the argmax and its margin,\n"
            "                  and each layer and group's evicted positions, to file F\n");
}

static int parse_float(const char *s, float lo, float hi, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

/* Read whitespace-separated token ids from `path` ("-" = stdin) into a new
 * array. Returns the count, or -1 with a message in err. */
static int read_ids(const char *path, int vocab_size, int **out, char *err, size_t errlen) {
    FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
    const char *name = f == stdin ? "stdin" : path;
    if (!f) {
        snprintf(err, errlen, "cannot open prompt ids file %s: %s", path, strerror(errno));
        return -1;
    }
    int n = 0, cap = 256, *ids = malloc((size_t)cap * sizeof *ids);
    char word[32];
    int rc = 0;
    while (ids && fscanf(f, "%31s", word) == 1) {
        long id;
        if (cli_parse_long(word, 0, vocab_size - 1, &id)) {
            snprintf(err, errlen, "%s: '%s' (entry %d) is not a token id in [0, %d)", name, word, n + 1,
                     vocab_size);
            rc = -1;
            break;
        }
        if (n == cap) {
            int *bigger = cap < (1 << 24) ? realloc(ids, (size_t)cap * 2 * sizeof *ids) : NULL;
            if (!bigger) {
                free(ids);
                ids = NULL;
                break;
            }
            ids = bigger, cap *= 2;
        }
        ids[n++] = (int)id;
    }
    if (f != stdin) fclose(f);
    if (!ids) {
        snprintf(err, errlen, "out of memory reading %s", name);
        return -1;
    }
    if (!rc && n == 0) snprintf(err, errlen, "%s holds no token ids", name), rc = -1;
    if (rc) {
        free(ids);
        return -1;
    }
    *out = ids;
    return n;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* --trace: every layer and group's slot -> position map before a forward, so
 * that the positions it evicted can be told afterwards (STORE mode's append
 * does not report them; kvc_cache_positions() does). */
typedef struct {
    FILE *f;
    int layers;
    uint32_t groups, cap;
    int64_t *before, *now, *ev; /* layers x groups x cap; cap */
    unsigned char *seen;        /* one flag per position */
} tracer;

static void trace_snapshot(tracer *t, const llm_state *st, int64_t *dst) {
    for (int l = 0; l < t->layers; l++)
        for (uint32_t g = 0; g < t->groups; g++)
            kvc_cache_positions(st->cache[l], g, dst + ((size_t)l * t->groups + g) * t->cap);
}

/* After the forward at `pos`: one "evict" line per layer and group that dropped anything. */
static void trace_evictions(tracer *t, const llm_state *st, int pos) {
    trace_snapshot(t, st, t->now);
    for (int l = 0; l < t->layers; l++)
        for (uint32_t g = 0; g < t->groups; g++) {
            const int64_t *b = t->before + ((size_t)l * t->groups + g) * t->cap;
            const int64_t *a = t->now + ((size_t)l * t->groups + g) * t->cap;
            uint32_t n = 0;
            for (uint32_t s = 0; s < t->cap; s++)
                if (a[s] >= 0) t->seen[a[s]] = 1;
            for (uint32_t s = 0; s < t->cap; s++)
                if (b[s] >= 0 && !t->seen[b[s]]) t->ev[n++] = b[s];
            for (uint32_t s = 0; s < t->cap; s++)
                if (a[s] >= 0) t->seen[a[s]] = 0;
            if (!n) continue;
            qsort(t->ev, n, sizeof *t->ev, cmp_i64);
            fprintf(t->f, "evict %d %d %u", pos, l, g);
            for (uint32_t i = 0; i < n; i++) fprintf(t->f, " %lld", (long long)t->ev[i]);
            fputc('\n', t->f);
        }
    int64_t *x = t->before;
    t->before = t->now, t->now = x;
}

/* "step POS TOKEN ARGMAX MARGIN": the token fed at POS, the most likely next
 * token and its logit's lead over the runner-up (how near a tie the choice was). */
static void trace_step(tracer *t, int pos, int tok, const float *logits, int n) {
    int best = llm_argmax(logits, n);
    float second = -INFINITY;
    for (int i = 0; i < n; i++)
        if (i != best && logits[i] > second) second = logits[i];
    fprintf(t->f, "step %d %d %d %.9g\n", pos, tok, best, (double)(logits[best] - second));
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *prompt = "", *spec = "full";
    const char *prompt_ids = NULL, *trace_path = NULL;
    float temperature = 1.0f, top_p = 0.9f;
    long seed = 42, steps = 256, budget = 0;
    int print_ids = 0, stop = 1, encode_only = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--ids")) {
            print_ids = 1;
            continue;
        } else if (!strcmp(a, "--encode")) {
            encode_only = 1;
            continue;
        } else if (!strcmp(a, "--no-stop")) {
            stop = 0;
            continue;
        }
        if (!v) {
            fprintf(stderr, "llama: %s needs a value (or is unknown)\n", a);
            usage(stderr);
            return 2;
        }
        if (!strcmp(a, "-m"))
            model_path = v;
        else if (!strcmp(a, "-z"))
            tok_path = v;
        else if (!strcmp(a, "-i"))
            prompt = v;
        else if (!strcmp(a, "--prompt-ids"))
            prompt_ids = v;
        else if (!strcmp(a, "--trace"))
            trace_path = v;
        else if (!strcmp(a, "-t"))
            bad = parse_float(v, 0.0f, 100.0f, &temperature);
        else if (!strcmp(a, "-p"))
            bad = parse_float(v, 1e-6f, 1.0f, &top_p);
        else if (!strcmp(a, "--seed") || !strcmp(a, "-s"))
            bad = cli_parse_long(v, 0, 0x7fffffffL, &seed);
        else if (!strcmp(a, "--steps") || !strcmp(a, "-n"))
            bad = cli_parse_long(v, 0, 1L << 24, &steps);
        else if (!strcmp(a, "--budget"))
            bad = cli_parse_long(v, 1, 0x7fffffffL, &budget);
        else if (!strcmp(a, "--policy"))
            spec = v;
        else {
            fprintf(stderr, "llama: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "llama: bad value '%s' for %s\n", v, a);
            return 2;
        }
        i++;
    }

    char dflt_model[4096], dflt_tok[4096], err[512];
    llm_default_paths(&model_path, &tok_path, dflt_model, dflt_tok, sizeof dflt_model);

    llm_model m;
    llm_tokenizer tk;
    if (llm_model_load(&m, model_path, err, sizeof err)) {
        fprintf(stderr, "llama: %s\n", err);
        llm_model_hint(stderr, "llama");
        return 1;
    }
    if (llm_tokenizer_load(&tk, tok_path, m.c.vocab_size, err, sizeof err)) {
        fprintf(stderr, "llama: %s\n", err);
        llm_model_hint(stderr, "llama");
        llm_model_free(&m);
        return 1;
    }
    if (!budget) budget = m.c.seq_len;

    int rc = 1;
    int *ids = NULL, *scratch = malloc((size_t)m.c.vocab_size * sizeof(int)), n_prompt;
    llm_state st;
    memset(&st, 0, sizeof st);
    tracer tr;
    memset(&tr, 0, sizeof tr);
    if (prompt_ids) {
        if (*prompt || encode_only) {
            fprintf(stderr, "llama: --prompt-ids replaces -i and --encode: give only one of them\n");
            goto done;
        }
        if ((n_prompt = read_ids(prompt_ids, m.c.vocab_size, &ids, err, sizeof err)) < 0) {
            fprintf(stderr, "llama: %s\n", err);
            goto done;
        }
    } else {
        ids = malloc((strlen(prompt) + 3) * sizeof *ids);
        n_prompt = ids ? llm_encode(&tk, prompt, 1, ids) : -1;
        if (!ids) {
            fprintf(stderr, "llama: out of memory\n");
            goto done;
        }
        if (n_prompt < 0) {
            fprintf(stderr, "llama: the prompt has bytes the tokenizer cannot encode\n");
            goto done;
        }
    }
    if (!scratch) {
        fprintf(stderr, "llama: out of memory\n");
        goto done;
    }
    if (encode_only) {
        for (int i = 1; i < n_prompt; i++) printf("%d\n", ids[i]);
        rc = 0;
        goto done;
    }
    if (llm_state_init(&st, &m, spec, (uint32_t)budget, (uint64_t)seed, err, sizeof err)) {
        fprintf(stderr, "llama: %s\n", err);
        goto done;
    }
    if (trace_path) {
        tr.layers = m.c.n_layers;
        tr.groups = kvc_cache_groups(st.cache[0]);
        tr.cap = kvc_cache_capacity(st.cache[0]);
        size_t maps = (size_t)tr.layers * tr.groups * tr.cap;
        tr.before = malloc(maps * sizeof *tr.before);
        tr.now = malloc(maps * sizeof *tr.now);
        tr.ev = malloc((size_t)tr.cap * sizeof *tr.ev);
        tr.seen = calloc((size_t)n_prompt + (size_t)steps + 1, 1);
        if (!tr.before || !tr.now || !tr.ev || !tr.seen) {
            fprintf(stderr, "llama: out of memory for the trace\n");
            goto done;
        }
        if (!(tr.f = fopen(trace_path, "w"))) {
            fprintf(stderr, "llama: cannot write the trace %s: %s\n", trace_path, strerror(errno));
            goto done;
        }
        fprintf(tr.f,
                "# llama trace 1: policy '%s', budget %ld, %d layers, %u groups each, %d prompt ids\n"
                "# step POS TOKEN ARGMAX MARGIN: token fed at POS, most likely next token, its logit's lead\n"
                "# evict POS LAYER GROUP P...: positions that layer and group dropped while appending POS\n",
                spec, budget, tr.layers, tr.groups, n_prompt);
        trace_snapshot(&tr, &st, tr.before);
    }
    llm_rng rng;
    llm_rng_seed(&rng, (uint64_t)seed);

    double t_first = 0.0;
    long generated = 0;
    int tok = ids[0], warned = 0;
    for (int pos = 0;; pos++) {
        /* past the prompt, run a forward only for a token still to be generated
         * (a full cache would otherwise fail on one that is never used) */
        if (pos + 1 >= n_prompt && generated >= steps) break;
        if (pos >= m.c.seq_len && !warned) {
            fprintf(stderr, "llama: note: position %d is past the model's trained context (%d)\n", pos, m.c.seq_len);
            warned = 1;
        }
        if (llm_forward(&st, tok, pos, err, sizeof err)) {
            fprintf(stderr, "\nllama: at position %d: %s\n", pos, err);
            goto done;
        }
        if (pos == 0) t_first = cli_now();
        if (tr.f) {
            trace_evictions(&tr, &st, pos);
            trace_step(&tr, pos, tok, st.logits, m.c.vocab_size);
        }
        int next;
        if (pos + 1 < n_prompt) {
            next = ids[pos + 1];
        } else {
            next = llm_sample(st.logits, m.c.vocab_size, temperature, top_p, &rng, scratch);
            generated++;
            if (print_ids) printf("%d\n", next);
            if (stop && (next == LLM_BOS || next == LLM_EOS)) break;
        }
        if (!print_ids) {
            char byte[2];
            int len;
            const char *p = llm_decode(&tk, tok, next, byte, &len);
            fwrite(p, 1, (size_t)len, stdout);
            fflush(stdout);
        }
        tok = next;
    }
    if (!print_ids) {
        putchar('\n');
        fflush(stdout);
    }
    double t1 = cli_now();
    fprintf(stderr, "llama: policy '%s', budget %ld: %ld tokens generated, %.0f tok/s, %llu evictions\n", spec, budget,
            generated, generated > 1 && t1 > t_first ? (double)(generated - 1) / (t1 - t_first) : 0.0,
            (unsigned long long)llm_state_evictions(&st));
    rc = 0;
done:
    if (tr.f && fclose(tr.f) && rc == 0) {
        fprintf(stderr, "llama: error writing the trace %s\n", trace_path);
        rc = 1;
    }
    free(tr.before), free(tr.now), free(tr.ev), free(tr.seen);
    llm_state_free(&st);
    free(ids);
    free(scratch);
    llm_tokenizer_free(&tk);
    llm_model_free(&m);
    return rc;
}
