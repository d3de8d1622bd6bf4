/* Spec-string fuzz target: kvc_cache_create_spec() then kvc_cache_apply_spec()
 * on arbitrary text. A successful parse must have applied every item (the
 * last value of a key wins), a failed one must change nothing and name a
 * known status, and the resulting cache must work. The input is: one byte of
 * shape, then the create spec, a newline, and the options to apply. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz_util.h"
#include "kvc.h"

/* option keys and their named choices ("a|b"), from the header's one table */
#define FZ_OPT_KEY(name, value, key, min, max, choices, doc) key,
#define FZ_OPT_CHOICES(name, value, key, min, max, choices, doc) choices,
static const char *const opt_names[] = {KVC_OPTION_LIST(FZ_OPT_KEY)};
static const char *const opt_choices[] = {KVC_OPTION_LIST(FZ_OPT_CHOICES)};
#define N_OPT ((int)(sizeof opt_names / sizeof opt_names[0]))

/* Index of `val` among "a|b|c", or -1. */
static int choice_of(const char *choices, const char *val) {
    for (int i = 0; choices && *choices; i++) {
        size_t n = strcspn(choices, "|");
        if (strlen(val) == n && strncmp(choices, val, n) == 0) return i;
        choices += n + (choices[n] == '|');
    }
    return -1;
}

typedef struct {
    int64_t opt[N_OPT];
    double param[16];
    unsigned n_params;
} settings;

static void read_settings(const kvc_cache *c, const kvc_policy *p, settings *s) {
    memset(s, 0, sizeof *s);
    for (int i = 0; i < N_OPT; i++) FZ_CHECK(kvc_cache_get(c, (kvc_option)i, &s->opt[i]) == KVC_OK, "get");
    s->n_params = p->n_params;
    for (unsigned i = 0; i < p->n_params; i++)
        FZ_CHECK(kvc_cache_get_param(c, p->params[i].name, &s->param[i]) == KVC_OK, "get_param");
}

static bool is_sep(char ch, bool comma) { return ch == ' ' || ch == '\t' || (comma && ch == ','); }

/* Check that every key=value item of `text` holds now, and that no key was
 * given twice (a repeated key is an error). */
static void check_applied(const kvc_cache *c, const kvc_policy *p, const char *text) {
    settings now;
    read_settings(c, p, &now);
    bool seen_opt[N_OPT] = {false}, seen_par[16] = {false}, seen_scale = false;
    int64_t last_opt[N_OPT] = {0};
    double last_par[16] = {0};
    const char *q = text;
    for (;;) {
        while (*q && is_sep(*q, true)) q++;
        if (!*q) break;
        const char *start = q;
        while (*q && !is_sep(*q, true)) q++;
        char item[128];
        size_t n = (size_t)(q - start);
        FZ_CHECK(n < sizeof item, "a %zu-byte item was accepted", n);
        memcpy(item, start, n);
        item[n] = 0;
        char *eq = strchr(item, '=');
        FZ_CHECK(eq && eq != item && eq[1], "item '%s' accepted without key=value", item);
        *eq = 0;
        const char *key = item, *val = eq + 1;
        if (strcmp(key, "scale") == 0) {
            FZ_CHECK(!seen_scale, "key 'scale' repeated, yet accepted");
            seen_scale = true;
            continue; /* write-only */
        }
        bool known = false;
        for (int i = 0; i < N_OPT; i++) {
            if (strcmp(key, opt_names[i])) continue;
            known = true;
            char *end;
            errno = 0;
            int64_t v;
            if (choice_of(opt_choices[i], val) >= 0)
                v = choice_of(opt_choices[i], val);
            else {
                v = strtoll(val, &end, 10);
                FZ_CHECK(!errno && end != val && !*end, "%s=%s accepted as an integer", key, val);
            }
            FZ_CHECK(!seen_opt[i], "key '%s' repeated, yet accepted", key);
            seen_opt[i] = true;
            last_opt[i] = v;
        }
        for (unsigned i = 0; i < p->n_params && !known; i++) {
            if (strcmp(key, p->params[i].name)) continue;
            known = true;
            double v = NAN;
            for (int j = 0; p->params[i].choices && p->params[i].choices[j]; j++)
                if (strcmp(val, p->params[i].choices[j]) == 0) v = j;
            if (isnan(v)) {
                char *end;
                v = strtod(val, &end);
                FZ_CHECK(end != val && !*end, "%s=%s accepted as a number", key, val);
            }
            FZ_CHECK(!seen_par[i], "key '%s' repeated, yet accepted", key);
            seen_par[i] = true;
            last_par[i] = v;
        }
        FZ_CHECK(known, "unknown key '%s' accepted", key);
    }
    for (int i = 0; i < N_OPT; i++)
        if (seen_opt[i])
            FZ_CHECK(now.opt[i] == last_opt[i], "%s reads %lld, spec said %lld", opt_names[i], (long long)now.opt[i],
                     (long long)last_opt[i]);
    for (unsigned i = 0; i < p->n_params; i++)
        if (seen_par[i])
            FZ_CHECK(now.param[i] == last_par[i], "%s reads %g, spec said %g", p->params[i].name, now.param[i],
                     last_par[i]);
}

static void known_status(int rc) {
    FZ_CHECK(rc < 0 && strcmp(kvc_strerror(rc), "unknown status") != 0, "status %d", rc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 4096) return 0;
    uint8_t b = data[0];
    uint32_t nkv = 1 + (b & 1), cap = 1 + ((b >> 1) & 63);
    kvc_mode mode = (kvc_mode)(b >> 7);
    char *text = malloc(size);
    if (!text) return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = 0;
    char *apply = strchr(text, '\n');
    if (apply) *apply++ = 0;

    kvc_cache *c = (kvc_cache *)text;
    int rc = kvc_cache_create_spec(&c, nkv, 2 * nkv, 4, cap, KVC_DTYPE_F16, mode, text, NULL);
    if (rc != KVC_OK) {
        FZ_CHECK(c == NULL, "failed create_spec left a cache");
        known_status(rc);
        free(text);
        return 0;
    }
    FZ_CHECK(c != NULL, "no cache");
    /* the policy is the first word */
    const char *w = text;
    while (is_sep(*w, false)) w++;
    size_t wn = 0;
    while (w[wn] && !is_sep(w[wn], false)) wn++;
    const kvc_policy *p = NULL;
    for (size_t i = 0; kvc_policy_at(i); i++)
        if (strlen(kvc_policy_at(i)->name) == wn && memcmp(kvc_policy_at(i)->name, w, wn) == 0) p = kvc_policy_at(i);
    FZ_CHECK(p && strcmp(kvc_cache_policy_name(c), p->name) == 0, "policy '%.*s' vs '%s'", (int)wn, w,
             kvc_cache_policy_name(c));
    check_applied(c, p, w + wn);

    if (apply) {
        settings before, after;
        read_settings(c, p, &before);
        rc = kvc_cache_apply_spec(c, apply);
        if (rc == KVC_OK) {
            check_applied(c, p, apply);
        } else {
            known_status(rc);
            FZ_CHECK(*kvc_cache_last_error(c), "apply_spec failed without a message");
            read_settings(c, p, &after);
            FZ_CHECK(memcmp(&before, &after, sizeof before) == 0, "failed apply_spec changed settings");
        }
    }

    /* whatever was accepted must give a working cache (or a clear refusal to freeze) */
    rc = kvc_cache_prepare(c);
    if (rc == KVC_OK) {
        float k[8] = {1, 2, 3, 4, 5, 6, 7, 8}, v[8] = {0}, q[16] = {1, 1}, out[16];
        uint32_t slots[2];
        int64_t ev[2 * 64 * 64];
        for (int t = 0; t < 80; t++) {
            k[0] = (float)t;
            rc = mode == KVC_MODE_STORE ? kvc_cache_append(c, t, k, v)
                                        : kvc_cache_reserve(c, t, k, v, slots,
                                                            kvc_cache_max_evictions(c) <= 64 ? ev : NULL);
            if (rc == KVC_EFULL && strcmp(p->name, "full") == 0) break;
            FZ_CHECK(rc == KVC_OK, "append %d: %d (%s)", t, rc, kvc_cache_last_error(c));
            FZ_CHECK(kvc_cache_len(c) <= cap, "len");
            if (mode == KVC_MODE_STORE) {
                /* a huge scale= makes scale * q.k overflow f32: refused as documented (KVC_ERANGE) */
                const int ra = kvc_cache_attend(c, q, out);
                const bool scaled = strstr(text, "scale") || (apply && strstr(apply, "scale"));
                FZ_CHECK(ra == KVC_OK ||
                             (ra == KVC_ERANGE && scaled && strstr(kvc_cache_last_error(c), "overflows f32")),
                         "attend: %d (%s)", ra, kvc_cache_last_error(c));
            }
        }
        FZ_CHECK(kvc_cache_apply_spec(c, "sink=0") == KVC_ESTATE, "spec applied to a frozen cache");
    } else {
        known_status(rc);
        FZ_CHECK(rc == KVC_EINVAL && *kvc_cache_last_error(c), "prepare: %d", rc);
    }
    kvc_cache_destroy(c);
    free(text);
    return 0;
}
