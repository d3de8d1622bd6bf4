/* Spec strings ("h2o recent=64 sink=4 norm=lifetime") and policy lookup:
 * what parses, what is malformed (KVC_ESYNTAX), unknown (KVC_EUNKNOWN) or
 * out of range (KVC_ERANGE), and all-or-nothing application. */
#include <stdlib.h>

#include "kvc.h"
#include "snapshot.h"
#include "test.h"

static int64_t opt(const kvc_cache *c, kvc_option k) {
    int64_t v = -12345;
    kvc_cache_get(c, k, &v);
    return v;
}

TEST(spec_policy_lookup) {
    static const char *const names[] = {"full", "window", "sink", "random", "h2o", "tova", "knorm",
                                        "vatp", "vase", "vase_dkv", "rkv", "keydiff", "scissorhands", "keyformer",
                                        "snapkv"};
    enum { N_BUILTIN = sizeof names / sizeof names[0] };
    size_t n = 0;
    while (kvc_policy_at(n)) n++;
    CHECK_EQ(n, N_BUILTIN);
    for (size_t i = 0; i < N_BUILTIN; i++) {
        const kvc_policy *p = kvc_policy_by_name(names[i]);
        REQUIRE(p != NULL);
        CHECK(strcmp(p->name, names[i]) == 0);
        CHECK(p->abi_version == KVC_POLICY_ABI && p->struct_size == sizeof(kvc_policy));
        int listed = 0;
        for (size_t j = 0; j < n; j++) listed += kvc_policy_at(j) == p;
        CHECK_EQ(listed, 1);
        /* every built-in creates from its bare name, in both modes */
        for (int mode = 0; mode < 2; mode++) {
            kvc_cache *c;
            CHECK_EQ(kvc_cache_create_spec(&c, 2, 4, 8, 512, KVC_DTYPE_F16, (kvc_mode)mode, names[i], NULL), KVC_OK);
            CHECK(strcmp(kvc_cache_policy_name(c), names[i]) == 0);
            CHECK_EQ(kvc_cache_prepare(c), KVC_OK);
            kvc_cache_destroy(c);
        }
    }
    CHECK(kvc_policy_by_name(NULL) == NULL);
    CHECK(kvc_policy_by_name("") == NULL);
    CHECK(kvc_policy_by_name("H2O") == NULL);
    CHECK(kvc_policy_by_name("h2o ") == NULL);
    CHECK(kvc_policy_by_name("nosuch") == NULL);
    CHECK(kvc_policy_at(N_BUILTIN) == NULL && kvc_policy_at((size_t)-1) == NULL);
}

TEST(spec_create_parses) {
    kvc_cache *c;
    REQUIRE(kvc_cache_create_spec(&c, 2, 4, 8, 64, KVC_DTYPE_F32, KVC_MODE_STORE, "h2o recent=16 sink=4 norm=lifetime",
                                  NULL) == KVC_OK);
    double v;
    CHECK(opt(c, KVC_OPT_RECENT) == 16 && opt(c, KVC_OPT_SINK) == 4);
    CHECK(kvc_cache_get_param(c, "norm", &v) == KVC_OK && v == 1);
    kvc_cache_destroy(c);
    /* whitespace, tabs and commas separate items */
    REQUIRE(kvc_cache_create_spec(&c, 2, 4, 8, 64, KVC_DTYPE_F32, KVC_MODE_INDEX,
                                  " \ttova\tscope=head,recent=3 , sink=2 seed=-7 block=4 chunk=2 "
                                  "query_window=9 scale=0.25 ",
                                  NULL) == KVC_OK);
    CHECK(opt(c, KVC_OPT_SCOPE) == KVC_SCOPE_HEAD && opt(c, KVC_OPT_RECENT) == 3 && opt(c, KVC_OPT_SINK) == 2);
    CHECK(opt(c, KVC_OPT_SEED) == -7 && opt(c, KVC_OPT_BLOCK) == 4 && opt(c, KVC_OPT_CHUNK) == 2);
    CHECK(opt(c, KVC_OPT_QUERY_WINDOW) == 9 && kvc_cache_groups(c) == 2);
    CHECK_EQ(kvc_cache_max_evictions(c), 8);
    kvc_cache_destroy(c);
    REQUIRE(kvc_cache_create_spec(&c, 2, 4, 8, 64, KVC_DTYPE_F32, KVC_MODE_INDEX, "h2o scope=shared norm=1",
                                  NULL) == KVC_OK);
    CHECK(opt(c, KVC_OPT_SCOPE) == KVC_SCOPE_SHARED && kvc_cache_groups(c) == 1);
    CHECK(kvc_cache_get_param(c, "norm", &v) == KVC_OK && v == 1);
    kvc_cache_destroy(c);
    REQUIRE(kvc_cache_create_spec(&c, 1, 1, 8, 64, KVC_DTYPE_F32, KVC_MODE_INDEX, "vase reserve=0.5 pool=7", NULL) ==
            KVC_OK);
    CHECK(kvc_cache_get_param(c, "reserve", &v) == KVC_OK && v == 0.5);
    CHECK(kvc_cache_get_param(c, "pool", &v) == KVC_OK && v == 7);
    kvc_cache_destroy(c);
}

TEST(spec_create_errors) {
    static const struct {
        const char *spec;
        int want;
    } bad[] = {
        {"", KVC_ESYNTAX},
        {"   \t ", KVC_ESYNTAX},
        {"=h2o", KVC_ESYNTAX},
        {"h2o=1", KVC_ESYNTAX},
        {"h2o recent", KVC_ESYNTAX},
        {"h2o recent=", KVC_ESYNTAX},
        {"h2o =5", KVC_ESYNTAX},
        {"h2o recent=5x", KVC_ESYNTAX},
        {"h2o recent=0x10", KVC_ESYNTAX},
        {"h2o recent=1.5", KVC_ESYNTAX},
        {"h2o recent==4", KVC_ESYNTAX},
        {"h2o recent=99999999999999999999", KVC_ESYNTAX},
        {"h2o norm=bogus", KVC_EUNKNOWN},   /* an unknown choice, not a syntax error */
        {"h2o scope=neither", KVC_EUNKNOWN},
        {"h2o scale=abc", KVC_ESYNTAX},
        {"h2o sink=nan", KVC_ESYNTAX},
        {"h2o recent=4 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx=1",
         KVC_ESYNTAX},
        {"nosuch recent=1", KVC_EUNKNOWN},
        {"nosuch", KVC_EUNKNOWN},
        {"h2o colour=red", KVC_EUNKNOWN},
        {"h2o reserve=0.5", KVC_EUNKNOWN}, /* vase's parameter, not h2o's */
        {"window norm=sum", KVC_EUNKNOWN},
        {"h2o recent=100000", KVC_ERANGE},
        {"h2o sink=-1", KVC_ERANGE},
        {"h2o norm=2", KVC_ERANGE},
        {"h2o norm=-1", KVC_ERANGE},
        {"h2o norm=nan", KVC_ERANGE},
        {"vase pool=0", KVC_ERANGE},
        {"vase reserve=1.5", KVC_ERANGE},
        {"h2o chunk=0", KVC_ERANGE},
        {"h2o block=3", KVC_ERANGE}, /* does not divide 64 */
        {"h2o block=0", KVC_ERANGE},
        {"h2o query_window=0", KVC_ERANGE},
        {"h2o query_window=4097", KVC_ERANGE},
        {"h2o scope=2", KVC_ERANGE},
        {"h2o scale=0", KVC_ERANGE},
        {"h2o scale=-1", KVC_ERANGE},
        {"h2o scale=inf", KVC_ERANGE},
        {"h2o scale=nan", KVC_ERANGE},
        /* each key once: a repeated key is a mistake, not "the last one wins" */
        {"h2o sink=1 sink=2", KVC_ESYNTAX},
        {"h2o norm=sum,norm=sum", KVC_ESYNTAX},
        {"h2o scope=shared recent=2 scope=1", KVC_ESYNTAX},
        {"h2o scale=1 scale=1", KVC_ESYNTAX},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        kvc_cache *c = (kvc_cache *)&c; /* must be reset to NULL */
        int rc = kvc_cache_create_spec(&c, 2, 4, 8, 64, KVC_DTYPE_F32, KVC_MODE_STORE, bad[i].spec, NULL);
        CHECKF(rc == bad[i].want, "\"%s\": %d (%s), expected %d", bad[i].spec, rc, kvc_strerror(rc), bad[i].want);
        CHECKF(c == NULL, "\"%s\": out not NULL on failure", bad[i].spec);
        if (c && rc == KVC_OK) kvc_cache_destroy(c);
    }
    kvc_cache *c = (kvc_cache *)&c;
    CHECK_EQ(kvc_cache_create_spec(&c, 2, 4, 8, 64, KVC_DTYPE_F32, KVC_MODE_STORE, NULL, NULL), KVC_EINVAL);
    CHECK(c == NULL);
    CHECK_EQ(kvc_cache_create_spec(NULL, 2, 4, 8, 64, KVC_DTYPE_F32, KVC_MODE_STORE, "h2o", NULL), KVC_EINVAL);
    /* a good spec on a bad shape fails like kvc_cache_create */
    c = (kvc_cache *)&c;
    CHECK_EQ(kvc_cache_create_spec(&c, 2, 3, 8, 64, KVC_DTYPE_F32, KVC_MODE_STORE, "h2o", NULL), KVC_EINVAL);
    CHECK(c == NULL);
}

/* kvc_cache_apply_spec: all or nothing. A failing spec leaves every option,
 * parameter and the scale as they were, and says why. */
TEST(spec_apply_all_or_nothing) {
    static const struct {
        const char *spec;
        int want;
    } bad[] = {
        {"sink=5 recent=bogus", KVC_ESYNTAX},  {"sink=5 recent=100000", KVC_ERANGE},
        {"sink=5 norm=lifetime colour=1", KVC_EUNKNOWN}, {"scale=3 seed=9 scope=shared chunk", KVC_ESYNTAX},
        {"norm=lifetime scale=0", KVC_ERANGE}, {"block=8 query_window=0", KVC_ERANGE},
    };
    const kvc_policy *pol = kvc_policy_h2o();
    float k[8], v[8], q[16], out[16], out_ref[16];
    for (int i = 0; i < 8; i++) k[i] = 0.3f * i - 1, v[i] = 0.1f * i;
    for (int i = 0; i < 16; i++) q[i] = 0.2f * i - 1.5f;
    /* reference output with the default scale */
    kvc_cache *ref;
    REQUIRE(kvc_cache_create(&ref, 2, 4, 4, 16, KVC_DTYPE_F32, KVC_MODE_STORE, pol, NULL) == KVC_OK);
    REQUIRE(kvc_cache_apply_spec(ref, "sink=2 recent=3") == KVC_OK);
    REQUIRE(kvc_cache_append(ref, 0, k, v) == KVC_OK && kvc_cache_append(ref, 1, v, k) == KVC_OK);
    REQUIRE(kvc_cache_attend(ref, q, out_ref) == KVC_OK);
    kvc_cache_destroy(ref);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        kvc_cache *c;
        REQUIRE(kvc_cache_create(&c, 2, 4, 4, 16, KVC_DTYPE_F32, KVC_MODE_STORE, pol, NULL) == KVC_OK);
        REQUIRE(kvc_cache_apply_spec(c, "sink=2 recent=3") == KVC_OK);
        CHECK(strcmp(kvc_cache_last_error(c), "") == 0);
        kvt_snap before, after;
        char why[256];
        kvt_snap_take(c, pol, 2, 4, &before);
        int rc = kvc_cache_apply_spec(c, bad[i].spec);
        kvt_snap_take(c, pol, 2, 4, &after);
        CHECKF(rc == bad[i].want, "\"%s\": %d, expected %d", bad[i].spec, rc, bad[i].want);
        CHECKF(kvt_snap_equal(&before, &after, why, sizeof why), "\"%s\" half-applied: %s", bad[i].spec, why);
        CHECKF(kvc_cache_last_error(c)[0] != 0, "\"%s\": no message", bad[i].spec);
        kvt_snap_free(&before);
        kvt_snap_free(&after);
        /* the scale too: same output as the reference */
        REQUIRE(kvc_cache_append(c, 0, k, v) == KVC_OK && kvc_cache_append(c, 1, v, k) == KVC_OK);
        REQUIRE(kvc_cache_attend(c, q, out) == KVC_OK);
        CHECKF(memcmp(out, out_ref, sizeof out) == 0, "\"%s\" changed the scale", bad[i].spec);
        kvc_cache_destroy(c);
    }
    kvc_cache *c;
    REQUIRE(kvc_cache_create(&c, 2, 4, 4, 16, KVC_DTYPE_F32, KVC_MODE_INDEX, pol, NULL) == KVC_OK);
    /* messages say what was wrong and what is allowed */
    CHECK_EQ(kvc_cache_apply_spec(c, "norm=foo"), KVC_EUNKNOWN);
    CHECKF(strstr(kvc_cache_last_error(c), "unknown choice") && strstr(kvc_cache_last_error(c), "sum, lifetime"),
           "norm=foo: '%s'", kvc_cache_last_error(c));
    CHECK_EQ(kvc_cache_apply_spec(c, "scope=both"), KVC_EUNKNOWN);
    CHECKF(strstr(kvc_cache_last_error(c), "head, shared"), "scope=both: '%s'", kvc_cache_last_error(c));
    CHECK_EQ(kvc_cache_apply_spec(c, "recent=2 sink=1 recent=3"), KVC_ESYNTAX);
    CHECKF(strstr(kvc_cache_last_error(c), "'recent' is given twice"), "duplicate: '%s'", kvc_cache_last_error(c));
    CHECK(opt(c, KVC_OPT_RECENT) != 2 && opt(c, KVC_OPT_SINK) != 1); /* nothing applied */
    CHECK_EQ(kvc_cache_apply_spec(c, "colour=red"), KVC_EUNKNOWN);
    CHECKF(strstr(kvc_cache_last_error(c), "query_window, protect, prefill_max, scale") &&
               strstr(kvc_cache_last_error(c), "its parameters: norm"),
           "unknown key: '%s'", kvc_cache_last_error(c));
    /* a key given in one spec may be given again in the next */
    CHECK_EQ(kvc_cache_apply_spec(c, "sink=1"), KVC_OK);
    CHECK_EQ(kvc_cache_apply_spec(c, "sink=2"), KVC_OK);
    CHECK_EQ(opt(c, KVC_OPT_SINK), 2);
    CHECK_EQ(kvc_cache_apply_spec(c, ""), KVC_OK);
    CHECK_EQ(kvc_cache_apply_spec(c, " , "), KVC_OK);
    CHECK_EQ(kvc_cache_apply_spec(c, "h2o"), KVC_ESYNTAX); /* options only, no policy name */
    CHECK_EQ(kvc_cache_apply_spec(c, NULL), KVC_EINVAL);
    CHECK_EQ(kvc_cache_apply_spec(NULL, "sink=1"), KVC_EINVAL);
    CHECK_EQ(kvc_cache_apply_spec(c, "seed=-9223372036854775808 sink=16"), KVC_OK);
    CHECK(opt(c, KVC_OPT_SEED) == INT64_MIN && opt(c, KVC_OPT_SINK) == 16);
    /* but sink=16 leaves no room to evict: the cache refuses to freeze, and stays configurable */
    CHECK_EQ(kvc_cache_prepare(c), KVC_EINVAL);
    CHECK(kvc_cache_last_error(c)[0] != 0);
    CHECK_EQ(kvc_cache_apply_spec(c, "sink=2"), KVC_OK);
    CHECK_EQ(kvc_cache_prepare(c), KVC_OK);
    /* frozen: nothing applies any more */
    CHECK_EQ(kvc_cache_apply_spec(c, "sink=3"), KVC_ESTATE);
    CHECK_EQ(kvc_cache_apply_spec(c, "bogus"), KVC_ESTATE);
    CHECK_EQ(opt(c, KVC_OPT_SINK), 2);
    kvc_cache_destroy(c);
}

/* kvc_cache_create_spec_err: the detail a failed create_spec cannot leave on a cache. */
TEST(spec_create_err_detail) {
    static const struct {
        const char *spec;
        uint32_t n_kv, n_q;
        int want;
        const char *has[3]; /* substrings the message must contain */
    } cases[] = {
        {"h2o recnet=64", 2, 4, KVC_EUNKNOWN, {"unknown key 'recnet'", "did you mean 'recent'", "its parameters: norm"}},
        {"vase resrve=0.5", 2, 4, KVC_EUNKNOWN, {"did you mean 'reserve'", "reserve, pool", "query_window"}},
        {"window norm=1", 2, 4, KVC_EUNKNOWN, {"policy 'window'", "it has no parameters", "scale"}},
        {"snapkv kernal=5", 2, 4, KVC_EUNKNOWN, {"did you mean 'kernel'", "kernel, pool", "prefill_max"}},
        {"h2 recent=4", 2, 4, KVC_EUNKNOWN, {"unknown policy 'h2'", "did you mean 'h2o'", "snapkv"}},
        {"nosuchpolicy", 2, 4, KVC_EUNKNOWN, {"built-in policies: full, window", "vase", NULL}},
        {"", 2, 4, KVC_ESYNTAX, {"spec is empty", NULL, NULL}},
        {"recent=64", 2, 4, KVC_ESYNTAX, {"must start with a policy name", NULL, NULL}},
        {"h2o recent=x", 2, 4, KVC_ESYNTAX, {"recent=x is not an integer", NULL, NULL}},
        {"h2o recent=5000", 2, 4, KVC_ERANGE, {"recent=5000 is outside", NULL, NULL}},
        {"h2o", 2, 3, KVC_EINVAL, {"n_q_heads=3 is not a multiple of n_kv_heads=2", NULL, NULL}},
        {"h2o", 0, 4, KVC_EINVAL, {"must all be at least 1", NULL, NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kvc_cache *c = (kvc_cache *)&c; /* must be reset to NULL */
        char err[256];
        memset(err, 'x', sizeof err);
        int rc = kvc_cache_create_spec_err(&c, cases[i].n_kv, cases[i].n_q, 8, 64, KVC_DTYPE_F32, KVC_MODE_STORE,
                                           cases[i].spec, NULL, err, sizeof err);
        CHECKF(rc == cases[i].want, "\"%s\": %d, expected %d", cases[i].spec, rc, cases[i].want);
        CHECK(c == NULL);
        CHECKF(memchr(err, 0, sizeof err) != NULL, "\"%s\": message not NUL-terminated", cases[i].spec);
        for (int j = 0; j < 3 && cases[i].has[j]; j++)
            CHECKF(strstr(err, cases[i].has[j]) != NULL, "\"%s\": message \"%s\" lacks \"%s\"", cases[i].spec, err,
                   cases[i].has[j]);
        /* the plain entry point fails the same way */
        CHECK_EQ(kvc_cache_create_spec(&c, cases[i].n_kv, cases[i].n_q, 8, 64, KVC_DTYPE_F32, KVC_MODE_STORE,
                                       cases[i].spec, NULL),
                 cases[i].want);
    }
    /* success clears the buffer; a short buffer is truncated and terminated; NULL is fine */
    kvc_cache *c;
    char err[256] = "stale", small[12];
    REQUIRE(kvc_cache_create_spec_err(&c, 2, 4, 8, 64, KVC_DTYPE_F32, KVC_MODE_STORE, "h2o recent=8", NULL, err,
                                      sizeof err) == KVC_OK);
    CHECK(err[0] == 0);
    kvc_cache_destroy(c);
    CHECK_EQ(kvc_cache_create_spec_err(&c, 2, 4, 8, 64, KVC_DTYPE_F32, KVC_MODE_STORE, "h2o recnet=8", NULL, small,
                                       sizeof small),
             KVC_EUNKNOWN);
    CHECK(strlen(small) == sizeof small - 1 && strncmp(small, "unknown key", 11) == 0);
    CHECK_EQ(kvc_cache_create_spec_err(&c, 2, 4, 8, 64, KVC_DTYPE_F32, KVC_MODE_STORE, "h2o recnet=8", NULL, NULL, 0),
             KVC_EUNKNOWN);
    CHECK_EQ(kvc_cache_create_spec_err(NULL, 2, 4, 8, 64, KVC_DTYPE_F32, KVC_MODE_STORE, "h2o", NULL, err, sizeof err),
             KVC_EINVAL);
    CHECK(strstr(err, "out must not be NULL") != NULL);
    /* no suggestion for a word far from every key */
    CHECK_EQ(kvc_cache_create_spec_err(&c, 2, 4, 8, 64, KVC_DTYPE_F32, KVC_MODE_STORE, "h2o zzzzzz=1", NULL, err,
                                       sizeof err),
             KVC_EUNKNOWN);
    CHECKF(strstr(err, "did you mean") == NULL, "\"%s\" suggests something for zzzzzz", err);
}
