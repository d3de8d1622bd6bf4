/* Minimal test harness: TEST(name) registers a test; CHECK records a failure
 * and goes on; REQUIRE returns from the test; SKIP marks it skipped. */
#ifndef KVC_TEST_H
#define KVC_TEST_H

#include <stdio.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef void (*kvt_fn)(void);
void kvt_register(const char *name, const char *file, kvt_fn fn);
void kvt_fail(const char *file, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void kvt_skip(const char *why);
int kvt_failed(void);
/* Directory of the stories260K model (KVC_MODEL_DIR or ../shared/models/stories260K). */
const char *kvt_model_dir(void);
/* 1 under KVC_TEST_SHORT=1 (set by the valgrind run): long tests shorten their traces, never skip. */
int kvt_short(void);

/* splitmix64: a seeded, platform-independent stream for test data. */
static inline uint64_t kvt_mix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* Uniform in [0, 1) with 53 random bits. */
static inline double kvt_unif(uint64_t *s) { return (double)(kvt_mix64(s) >> 11) * 0x1.0p-53; }
/* Uniform float in [-1, 1). */
static inline float kvt_frand(uint64_t *s) { return (float)kvt_unif(s) * 2.0f - 1.0f; }

#define TEST(name)                                                                                 \
    static void name(void);                                                                        \
    __attribute__((constructor)) static void name##__register(void) { kvt_register(#name, __FILE__, name); } \
    static void name(void)

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) kvt_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);     \
    } while (0)
#define CHECKF(cond, ...)                                                  \
    do {                                                                   \
        if (!(cond)) kvt_fail(__FILE__, __LINE__, __VA_ARGS__);            \
    } while (0)
#define REQUIRE(cond)                                                      \
    do {                                                                   \
        if (!(cond)) {                                                     \
            kvt_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond);            \
            return;                                                        \
        }                                                                  \
    } while (0)
#define CHECK_EQ(a, b)                                                                     \
    do {                                                                                   \
        long long kvt_a_ = (long long)(a), kvt_b_ = (long long)(b);                        \
        if (kvt_a_ != kvt_b_) kvt_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, kvt_a_, kvt_b_); \
    } while (0)
#define SKIP(why)       \
    do {                \
        kvt_skip(why);  \
        return;         \
    } while (0)

#endif
