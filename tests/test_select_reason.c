/* The core's answer to an invalid select says what was wrong with the victim. */
#include <string.h>

#include "kvc.h"
#include "test.h"

static uint32_t bad_victim; /* what the policy answers as its second victim */

static int select_bad(void *state, const kvc_select *req, uint32_t *victims) {
    (void)state;
    victims[0] = req->candidates[0];
    victims[1] = bad_victim == UINT32_MAX ? req->candidates[0] : bad_victim;
    return 0;
}

static const kvc_policy bad_policy = {.abi_version = KVC_POLICY_ABI, .struct_size = sizeof(kvc_policy),
                                      .name = "bad", .select = select_bad};

static const char *reason(uint32_t victim) {
    static char msg[256];
    kvc_cache *c;
    float kv[4] = {0};
    bad_victim = victim;
    if (kvc_cache_create(&c, 1, 1, 4, 8, KVC_DTYPE_F32, KVC_MODE_STORE, &bad_policy, NULL)) return "create failed";
    kvc_cache_set(c, KVC_OPT_CHUNK, 2);
    kvc_cache_set(c, KVC_OPT_RECENT, 2);
    int rc = KVC_OK;
    for (int t = 0; t <= 8 && rc == KVC_OK; t++) rc = kvc_cache_append(c, t, kv, kv);
    snprintf(msg, sizeof msg, "%d %s", rc, kvc_cache_last_error(c));
    kvc_cache_destroy(c);
    return msg;
}

TEST(select_invalid_victim_reason) {
    CHECKF(strstr(reason(UINT32_MAX), "a duplicate") != NULL, "%s", reason(UINT32_MAX));
    CHECKF(strstr(reason(7), "not a candidate") != NULL, "%s", reason(7)); /* slot 7: recent, protected */
    CHECKF(strstr(reason(99), "out of range") != NULL, "%s", reason(99));
    CHECKF(strncmp(reason(99), "-11 ", 4) == 0, "%s", reason(99));
}
