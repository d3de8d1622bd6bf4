/* Shared by the fuzz targets: a byte reader that yields zeros once the input
 * is exhausted (so every input decodes to a finite call sequence), and a
 * check that aborts, which libFuzzer and the replay driver both report. */
#ifndef KVC_FUZZ_UTIL_H
#define KVC_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    const uint8_t *p;
    size_t n;
} fz_reader;

static inline uint8_t fz_u8(fz_reader *r) {
    if (!r->n) return 0;
    r->n--;
    return *r->p++;
}
static inline uint16_t fz_u16(fz_reader *r) {
    uint16_t lo = fz_u8(r);
    return (uint16_t)(lo | (uint16_t)fz_u8(r) << 8);
}
static inline uint32_t fz_u32(fz_reader *r) {
    uint32_t lo = fz_u16(r);
    return lo | (uint32_t)fz_u16(r) << 16;
}

/* The harness's own f64 reference and checking loops: not instrumented for
 * coverage (their comparisons are not the library's branches, and tracing
 * them cost most of an execution's time). Never inlined: inlined into an
 * instrumented caller, their loops would be traced again. */
#if defined(__clang__) && __clang_major__ >= 13
#define FZ_NOCOV __attribute__((no_sanitize("coverage"), noinline))
#else
#define FZ_NOCOV
#endif

#define FZ_CHECK(cond, ...)                                                        \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "fuzz check failed at %s:%d: %s\n  ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                          \
            fputc('\n', stderr);                                                   \
            abort();                                                               \
        }                                                                          \
    } while (0)

#endif
