/* Load test: many caches with mixed policies, modes, dtypes and options,
 * driven round-robin for millions of tokens (append + attend in STORE mode,
 * observe + reserve in INDEX mode, an occasional reset), through one
 * counting allocator.
 *
 * What it proves, and prints:
 *  - no allocation and no free after the warm-up (every cache's first
 *    append), over the whole run, resets included;
 *  - resident memory flat: RSS sampled through the run;
 *  - two hashes: one over the decisions of the caches whose decisions cannot
 *    depend on the attention kernel (attention-free policies, INDEX mode), to
 *    be equal on every ISA (KVC_FORCE_ISA), and one over everything
 *    (decisions, attention outputs), to be equal across runs on one ISA.
 * Exit status 1 on any unexpected error, allocation after warm-up or RSS
 * growth past --rss-slack KiB. tests/soak/run.sh compares the hashes. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvc.h"

/* ------------------------------------------------------------ allocator */
static struct {
    uint64_t allocs, frees;
    int64_t live_bytes;
} A;

typedef struct {
    size_t size;
    size_t pad;
} hdr; /* kept just before the 64-byte aligned block the cache sees */

static void *count_alloc(void *o, size_t size, size_t align) {
    (void)o;
    if (align < 64) align = 64;
    if (size > ((size_t)1 << 32)) return NULL;
    unsigned char *base = aligned_alloc(align, (align + size + align - 1) / align * align);
    if (!base) return NULL;
    unsigned char *p = base + align;
    hdr h = {size, align};
    memcpy(p - sizeof h, &h, sizeof h);
    A.allocs++;
    A.live_bytes += (int64_t)size;
    return p;
}

static void count_free(void *o, void *ptr) {
    (void)o;
    hdr h;
    memcpy(&h, (unsigned char *)ptr - sizeof h, sizeof h);
    A.frees++;
    A.live_bytes -= (int64_t)h.size;
    free((unsigned char *)ptr - h.pad);
}

/* --------------------------------------------------------------- hashing */
static uint64_t mix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void hash_bytes(uint64_t *h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) *h = (*h ^ b[i]) * 0x100000001b3ull; /* FNV-1a */
}

/* ---------------------------------------------------------------- caches */
typedef struct {
    kvc_cache *c;
    char spec[96];
    kvc_mode mode;
    uint32_t nkv, nq, d, cap, G, maxev;
    bool isa_free; /* decisions independent of the attention kernel */
    bool full_once;
    int64_t pos;
    uint64_t rng, evictions, reset_every;
    uint64_t h_dec; /* this cache's decisions */
} soak_cache;

static float *buf_k, *buf_v, *buf_q, *buf_out, *buf_mass;
static uint32_t *buf_slots;
static int64_t *buf_ev, *buf_pos;

static void fill(uint64_t *s, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(int32_t)(mix64(s) >> 40) * 0x1p-23f; /* [-1, 1) */
}

/* One configuration per index: every built-in policy, both modes, every
 * dtype, both scopes, a spread of shapes, chunks and blocks. */
static int setup(soak_cache *s, unsigned i, uint64_t seed, const kvc_allocator *al) {
    size_t n_pol = 0;
    while (kvc_policy_at(n_pol)) n_pol++;
    const kvc_policy *p = kvc_policy_at(i % n_pol);
    static const uint32_t caps[] = {16, 48, 64, 100, 128, 256};
    static const uint32_t dims[] = {4, 8, 16, 32, 12};
    unsigned j = i / (unsigned)n_pol;
    memset(s, 0, sizeof *s);
    s->mode = (kvc_mode)((i / 2 + j) % 2);
    s->nkv = 1 + j % 3;
    s->nq = s->nkv * (1 + (j / 3) % 3);
    s->d = dims[(i + j) % 5];
    s->cap = caps[(i * 7 + j) % 6];
    kvc_dtype dt = (kvc_dtype)((i + 2 * j) % ((int)KVC_DTYPE_Q8 + 1)); /* every storage type */
    static const char *const extra[] = {"", " chunk=2", " block=4", " scope=shared", " chunk=4 block=2",
                                        " scope=shared block=8 chunk=1", " recent=3 sink=1"};
    snprintf(s->spec, sizeof s->spec, "%s seed=%" PRIu64 "%s", p->name, seed + i, extra[(i + 3 * j) % 7]);
    int rc = kvc_cache_create_spec(&s->c, s->nkv, s->nq, s->d, s->cap, dt, s->mode, s->spec, al);
    if (rc == KVC_OK) rc = kvc_cache_prepare(s->c);
    if (rc != KVC_OK) {
        /* options that do not fit this shape or policy: fall back to the defaults */
        kvc_cache_destroy(s->c);
        snprintf(s->spec, sizeof s->spec, "%s seed=%" PRIu64, p->name, seed + i);
        rc = kvc_cache_create_spec(&s->c, s->nkv, s->nq, s->d, s->cap, dt, s->mode, s->spec, al);
        if (rc == KVC_OK) rc = kvc_cache_prepare(s->c);
    }
    if (rc != KVC_OK) {
        fprintf(stderr, "soak: cache %u (%s): %s\n", i, s->spec, kvc_strerror(rc));
        return rc;
    }
    s->G = kvc_cache_groups(s->c);
    s->maxev = kvc_cache_max_evictions(s->c);
    s->isa_free = s->mode == KVC_MODE_INDEX || !(p->needs & KVC_NEED_ATTN);
    s->rng = seed * 1000003u + i;
    s->reset_every = 20000 + (mix64(&s->rng) % 20000);
    s->h_dec = 0xcbf29ce484222325ull;
    return KVC_OK;
}

/* One token for one cache. The `full` policy refuses a full cache: that is
 * its contract (KVC_EFULL), answered by a reset. */
static int step(soak_cache *s, uint64_t *h_all) {
    size_t kv = (size_t)s->nkv * s->d, qn = (size_t)s->nq * s->d;
    fill(&s->rng, buf_k, kv);
    fill(&s->rng, buf_v, kv);
    uint64_t before = s->evictions;
    int rc;
    if (s->mode == KVC_MODE_STORE) {
        rc = kvc_cache_append(s->c, s->pos, buf_k, buf_v);
        if (rc == KVC_OK) {
            fill(&s->rng, buf_q, qn);
            rc = kvc_cache_attend(s->c, buf_q, buf_out);
            hash_bytes(h_all, buf_out, qn * sizeof *buf_out);
        }
    } else {
        uint32_t len = kvc_cache_len(s->c), cap = s->cap;
        for (uint32_t g = 0; g < s->G && len; g++) {
            kvc_cache_positions(s->c, g, buf_pos);
            for (uint32_t i = 0; i < cap; i++)
                buf_mass[i] = buf_pos[i] >= 0 ? (float)(mix64(&s->rng) >> 40) * 0x1p-24f / (float)len : 0.0f;
            if ((rc = kvc_cache_observe(s->c, g, buf_mass, cap)) != KVC_OK) return rc;
        }
        rc = kvc_cache_reserve(s->c, s->pos, buf_k, buf_v, buf_slots, buf_ev);
        if (rc == KVC_OK) {
            hash_bytes(&s->h_dec, buf_slots, s->G * sizeof *buf_slots);
            hash_bytes(&s->h_dec, buf_ev, (size_t)s->G * s->maxev * sizeof *buf_ev);
        }
    }
    if (rc == KVC_EFULL && strncmp(s->spec, "full ", 5) == 0) {
        hash_bytes(&s->h_dec, &s->pos, sizeof s->pos);
        s->pos = 0;
        return kvc_cache_reset(s->c);
    }
    if (rc != KVC_OK) return rc;
    s->pos += 1 + (int64_t)(mix64(&s->rng) % 3 == 0);
    kvc_stats st;
    kvc_cache_stats(s->c, &st);
    s->evictions = st.evictions;
    if (s->mode == KVC_MODE_STORE && st.evictions != before) {
        /* the resident set after each eviction */
        for (uint32_t g = 0; g < s->G; g++) {
            kvc_cache_positions(s->c, g, buf_pos);
            hash_bytes(&s->h_dec, buf_pos, s->cap * sizeof *buf_pos);
        }
    }
    if (st.appends >= s->reset_every) {
        s->pos = 0;
        s->evictions = 0;
        hash_bytes(&s->h_dec, &st, sizeof st);
        return kvc_cache_reset(s->c);
    }
    return KVC_OK;
}

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = -1, resident = -1;
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void usage(void) {
    fprintf(stderr, "usage: soak [--steps N] [--caches N] [--seed S] [--samples N] [--rss-slack KIB] [--quiet]\n"
                    "  --steps     tokens in all, spread round-robin over the caches (default 2000000)\n"
                    "  --caches    number of caches (default 96)\n"
                    "  --seed      seed of the inputs and of every cache's generator (default 1)\n"
                    "  --samples   RSS samples through the run (default 16)\n"
                    "  --rss-slack RSS growth after warm-up allowed, in KiB (default 1024)\n");
}

int main(int argc, char **argv) {
    uint64_t steps = 2000000, seed = 1;
    unsigned n_caches = 96, samples = 16;
    long slack = 1024;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quiet") == 0) {
            quiet = true;
            continue;
        }
        if (!v) {
            usage();
            return 2;
        }
        char *end;
        unsigned long long x = strtoull(v, &end, 10);
        if (*end || !*v) {
            fprintf(stderr, "soak: %s needs a number, got '%s'\n", a, v);
            return 2;
        }
        if (strcmp(a, "--steps") == 0) steps = x;
        else if (strcmp(a, "--caches") == 0 && x >= 1 && x <= 4096) n_caches = (unsigned)x;
        else if (strcmp(a, "--seed") == 0) seed = x;
        else if (strcmp(a, "--samples") == 0 && x >= 2 && x <= 1000) samples = (unsigned)x;
        else if (strcmp(a, "--rss-slack") == 0) slack = (long)x;
        else {
            usage();
            return 2;
        }
        i++;
    }

    kvc_allocator al = {count_alloc, count_free, NULL};
    soak_cache *cs = calloc(n_caches, sizeof *cs);
    uint32_t maxkv = 3 * 32, maxq = 9 * 32, maxcap = 256, maxg = 3, maxev = 256;
    buf_k = malloc(maxkv * sizeof *buf_k), buf_v = malloc(maxkv * sizeof *buf_v);
    buf_q = malloc(maxq * sizeof *buf_q), buf_out = malloc(maxq * sizeof *buf_out);
    buf_mass = malloc(maxcap * sizeof *buf_mass);
    buf_slots = malloc(maxg * sizeof *buf_slots);
    buf_ev = malloc((size_t)maxg * maxev * sizeof *buf_ev), buf_pos = malloc(maxcap * sizeof *buf_pos);
    if (!cs || !buf_k || !buf_v || !buf_q || !buf_out || !buf_mass || !buf_slots || !buf_ev || !buf_pos) {
        fprintf(stderr, "soak: out of memory\n");
        return 1;
    }
    unsigned isa_free = 0;
    for (unsigned i = 0; i < n_caches; i++) {
        if (setup(&cs[i], i, seed, &al) != KVC_OK) return 1;
        isa_free += cs[i].isa_free;
    }
    uint64_t h_all = 0xcbf29ce484222325ull;
    /* warm-up: every cache takes its first token (prepare already allocated) */
    for (unsigned i = 0; i < n_caches; i++)
        if (step(&cs[i], &h_all) != KVC_OK) {
            fprintf(stderr, "soak: cache %u (%s): %s\n", i, cs[i].spec, kvc_cache_last_error(cs[i].c));
            return 1;
        }
    uint64_t warm_allocs = A.allocs, warm_frees = A.frees;
    /* RSS is measured from the point where every cache has been full once:
     * before that, pages of K/V allocated at prepare are still first touched */
    long rss0 = -1, rss_max = -1, rss_last = -1;
    if (!quiet) {
        printf("soak: %u caches (%u with kernel-independent decisions), %" PRIu64 " steps, seed %" PRIu64
               ", isa %s\n",
               n_caches, isa_free, steps, seed, kvc_active_isa());
        printf("warm-up: %" PRIu64 " allocations, %.1f KiB live, RSS %ld KiB\n", A.allocs,
               (double)A.live_bytes / 1024, rss_kib());
        printf("  %12s  %10s  %12s  %12s\n", "steps", "RSS (KiB)", "new allocs", "live (KiB)");
    }
    uint64_t done = n_caches, every = steps / samples ? steps / samples : 1;
    unsigned not_full = n_caches;
    for (unsigned i = 0; i < n_caches; i++) cs[i].full_once = kvc_cache_len(cs[i].c) == cs[i].cap;
    for (unsigned i = 0; i < n_caches; i++) not_full -= cs[i].full_once;
    for (uint64_t t = done; t < steps; t++) {
        soak_cache *s = &cs[t % n_caches];
        int rc = step(s, &h_all);
        if (!s->full_once && kvc_cache_len(s->c) == s->cap && (s->full_once = true, --not_full == 0)) {
            rss0 = rss_max = rss_last = rss_kib();
            if (!quiet)
                printf("  %12" PRIu64 "  %10ld  %12" PRIu64 "  %12.1f  every cache full once\n", t + 1, rss0,
                       A.allocs - warm_allocs, (double)A.live_bytes / 1024);
        }
        if (rc != KVC_OK) {
            fprintf(stderr, "soak: step %" PRIu64 ", cache %u (%s): %s: %s\n", t, (unsigned)(t % n_caches), s->spec,
                    kvc_strerror(rc), kvc_cache_last_error(s->c));
            return 1;
        }
        if (rss0 >= 0 && ((t + 1) % every == 0 || t + 1 == steps)) {
            rss_last = rss_kib();
            rss_max = rss_last > rss_max ? rss_last : rss_max;
            if (!quiet)
                printf("  %12" PRIu64 "  %10ld  %12" PRIu64 "  %12.1f\n", t + 1, rss_last, A.allocs - warm_allocs,
                       (double)A.live_bytes / 1024);
        }
    }
    uint64_t h_free = 0xcbf29ce484222325ull;
    for (unsigned i = 0; i < n_caches; i++) {
        hash_bytes(&h_all, &cs[i].h_dec, sizeof cs[i].h_dec);
        if (cs[i].isa_free) hash_bytes(&h_free, &cs[i].h_dec, sizeof cs[i].h_dec);
    }
    uint64_t after_allocs = A.allocs - warm_allocs, after_frees = A.frees - warm_frees;
    for (unsigned i = 0; i < n_caches; i++) kvc_cache_destroy(cs[i].c);
    printf("steps: %" PRIu64 "\n", steps);
    printf("allocations after warm-up: %" PRIu64 " (frees %" PRIu64 ")\n", after_allocs, after_frees);
    printf("RSS KiB: first %ld, last %ld, max %ld\n", rss0, rss_last, rss_max);
    printf("live bytes after destroy: %lld\n", (long long)A.live_bytes);
    printf("isa: %s\n", kvc_active_isa());
    printf("hash kernel-independent: %016" PRIx64 "\n", h_free);
    printf("hash all: %016" PRIx64 "\n", h_all);
    int bad = 0;
    if (after_allocs || after_frees) {
        fprintf(stderr, "soak: FAIL: %" PRIu64 " allocations and %" PRIu64 " frees after warm-up\n", after_allocs,
                after_frees);
        bad = 1;
    }
    if (A.live_bytes) {
        fprintf(stderr, "soak: FAIL: %lld bytes still allocated after destroying every cache\n",
                (long long)A.live_bytes);
        bad = 1;
    }
    if (rss0 < 0) {
        fprintf(stderr, "soak: FAIL: %" PRIu64 " steps are too few to fill every cache once (%u never full)\n",
                steps, not_full);
        bad = 1;
    } else if (rss_max - rss0 > slack) {
        fprintf(stderr, "soak: FAIL: RSS grew from %ld KiB to %ld KiB (allowed: %ld KiB)\n", rss0, rss_max, slack);
        bad = 1;
    }
    free(cs), free(buf_k), free(buf_v), free(buf_q), free(buf_out), free(buf_mass), free(buf_slots), free(buf_ev);
    free(buf_pos);
    return bad;
}
