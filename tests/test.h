/* Minimal test harness: TEST(name) registers a test; CHECK records a failure
 * and goes on; REQUIRE returns from the test; SKIP marks it skipped. */
#ifndef KVC_TEST_H
#define KVC_TEST_H

#include <stdio.h>
#include <math.h>
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
