/* Test runner: runs every registered TEST (or those whose name contains argv[1])
 * and ends with "unit: N passed, N failed, N skipped". Under KVC_REQUIRE_ALL=1 a
 * skipped test counts as failed. */
#define _POSIX_C_SOURCE 200809L
#include "test.h"

#include <stdarg.h>
#include <stdlib.h>

#define KVT_MAX 1024
static struct {
    const char *name, *file;
    kvt_fn fn;
} tests[KVT_MAX];
static int n_tests;
static int cur_failed, cur_skipped;
static const char *cur_name;

void kvt_register(const char *name, const char *file, kvt_fn fn) {
    if (n_tests < KVT_MAX) {
        tests[n_tests].name = name;
        tests[n_tests].file = file;
        tests[n_tests].fn = fn;
        n_tests++;
    }
}

void kvt_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    if (cur_failed < 10) {
        fprintf(stdout, "  FAIL %s (%s:%d): ", cur_name, file, line);
        va_start(ap, fmt);
        vfprintf(stdout, fmt, ap);
        va_end(ap);
        fputc('\n', stdout);
    }
    cur_failed++;
}

void kvt_skip(const char *why) {
    cur_skipped = 1;
    printf("  SKIP %s: %s\n", cur_name, why);
}

int kvt_failed(void) { return cur_failed; }

int kvt_short(void) {
    const char *s = getenv("KVC_TEST_SHORT");
    return s && strcmp(s, "1") == 0;
}

const char *kvt_model_dir(void) {
    const char *d = getenv("KVC_MODEL_DIR");
    return d && *d ? d : "../shared/models/stories260K";
}

static int by_name(const void *a, const void *b) {
    const char *fa = ((const char *const *)a)[1], *fb = ((const char *const *)b)[1];
    int c = strcmp(fa, fb);
    return c ? c : strcmp(((const char *const *)a)[0], ((const char *const *)b)[0]);
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    const char *req = getenv("KVC_REQUIRE_ALL");
    int require_all = req && strcmp(req, "1") == 0;
    int verbose = getenv("KVC_TEST_VERBOSE") != NULL;
    int passed = 0, failed = 0, skipped = 0;
    qsort(tests, (size_t)n_tests, sizeof tests[0], by_name);
    for (int i = 0; i < n_tests; i++) {
        if (filter && !strstr(tests[i].name, filter)) continue;
        cur_name = tests[i].name;
        cur_failed = 0;
        cur_skipped = 0;
        tests[i].fn();
        fflush(stdout);
        if (cur_failed) {
            printf("not ok %s (%d failures)\n", cur_name, cur_failed);
            failed++;
        } else if (cur_skipped) {
            if (require_all) {
                printf("not ok %s (skipped, but KVC_REQUIRE_ALL=1)\n", cur_name);
                failed++;
            } else {
                skipped++;
            }
        } else {
            if (verbose) printf("ok %s\n", cur_name);
            passed++;
        }
    }
    printf("unit: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
