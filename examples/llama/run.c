/* llama: generate text from a llama2.c-format checkpoint, with every layer's
 * K/V in a libkvc cache whose policy and budget come from the command line.
 *
 *   llama [-m model.bin] [-z tokenizer.bin] [-i PROMPT] [-t TEMP] [-p TOP_P]
 *         [--seed N] [--steps N] [--policy SPEC] [--budget N] [--ids] [--no-stop] [--encode]
 *
 * Text goes to stdout, a summary (speed, evictions) to stderr. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: llama [options]\n"
            "  -m PATH         checkpoint (default $KVC_MODEL_DIR/stories260K.bin,\n"
            "                  KVC_MODEL_DIR defaulting to ../shared/models/stories260K)\n"
            "  -z PATH         tokenizer (default tok512.bin beside the default checkpoint)\n"
            "  -i PROMPT       prompt text (default: start from BOS alone)\n"
            "  -t TEMP         temperature, 0 = greedy (default 1.0)\n"
            "  -p TOP_P        nucleus sampling mass in (0,1]; 1 = off (default 0.9)\n"
            "  --seed N        sampling seed; the caches use N + layer (default 42)\n"
            "  --steps N       tokens to generate after the prompt (default 256)\n"
            "  --policy SPEC   cache policy spec, e.g. \"h2o recent=16\" (default \"full\")\n"
            "  --budget N      cache capacity per layer and group (default: the model's seq_len)\n"
            "  --ids           print the generated token ids, one per line, instead of text\n"
            "  --no-stop       keep going past BOS/EOS\n"
            "  --encode        print the prompt's token ids (after BOS), one per line, and exit\n");
}

static int parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}
static int parse_float(const char *s, float lo, float hi, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *tok_path = NULL, *prompt = "", *spec = "full";
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
        else if (!strcmp(a, "-t"))
            bad = parse_float(v, 0.0f, 100.0f, &temperature);
        else if (!strcmp(a, "-p"))
            bad = parse_float(v, 1e-6f, 1.0f, &top_p);
        else if (!strcmp(a, "--seed") || !strcmp(a, "-s"))
            bad = parse_long(v, 0, 0x7fffffffL, &seed);
        else if (!strcmp(a, "--steps") || !strcmp(a, "-n"))
            bad = parse_long(v, 0, 1L << 24, &steps);
        else if (!strcmp(a, "--budget"))
            bad = parse_long(v, 1, 0x7fffffffL, &budget);
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
        return 1;
    }
    if (llm_tokenizer_load(&tk, tok_path, m.c.vocab_size, err, sizeof err)) {
        fprintf(stderr, "llama: %s\n", err);
        llm_model_free(&m);
        return 1;
    }
    if (!budget) budget = m.c.seq_len;

    int rc = 1;
    int *ids = malloc((strlen(prompt) + 3) * sizeof *ids), *scratch = malloc((size_t)m.c.vocab_size * sizeof(int));
    llm_state st;
    memset(&st, 0, sizeof st);
    int n_prompt = ids ? llm_encode(&tk, prompt, 1, ids) : -1;
    if (!ids || !scratch) {
        fprintf(stderr, "llama: out of memory\n");
        goto done;
    }
    if (n_prompt < 0) {
        fprintf(stderr, "llama: the prompt has bytes the tokenizer cannot encode\n");
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
    llm_rng rng;
    llm_rng_seed(&rng, (uint64_t)seed);

    double t_first = 0.0;
    long generated = 0;
    int tok = ids[0], warned = 0;
    for (int pos = 0;; pos++) {
        if (pos >= m.c.seq_len && !warned) {
            fprintf(stderr, "llama: note: position %d is past the model's trained context (%d)\n", pos, m.c.seq_len);
            warned = 1;
        }
        if (llm_forward(&st, tok, pos, err, sizeof err)) {
            fprintf(stderr, "\nllama: at position %d: %s\n", pos, err);
            goto done;
        }
        if (pos == 0) t_first = now();
        int next;
        if (pos + 1 < n_prompt) {
            next = ids[pos + 1];
        } else {
            if (generated >= steps) break;
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
    double t1 = now();
    fprintf(stderr, "llama: policy '%s', budget %ld: %ld tokens generated, %.0f tok/s, %llu evictions\n", spec, budget,
            generated, generated > 1 && t1 > t_first ? (double)(generated - 1) / (t1 - t_first) : 0.0,
            (unsigned long long)llm_state_evictions(&st));
    rc = 0;
done:
    llm_state_free(&st);
    free(ids);
    free(scratch);
    llm_tokenizer_free(&tk);
    llm_model_free(&m);
    return rc;
}
