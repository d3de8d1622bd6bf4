/* examples/common/cli.h: the two small helpers every example program's
 * command line and progress report use (header-only; not part of libkvc).
 * Include it after the file's feature-test macro (_POSIX_C_SOURCE), as any
 * system header. */
#ifndef KVC_EXAMPLES_CLI_H
#define KVC_EXAMPLES_CLI_H

#include <errno.h>
#include <stdlib.h>
#include <time.h>

/* Seconds on the monotonic clock. */
static inline double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A whole decimal number in [lo, hi] into *out: 0, or -1 (and *out
 * untouched) for anything else, trailing characters included. */
static inline int cli_parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

#endif
