/* The table of built-in policies, for lookup by name (FFI, command lines). */
#include <string.h>

#include "kvc.h"

typedef const kvc_policy *(*policy_fn)(void);

static const policy_fn builtins[] = {kvc_policy_full, kvc_policy_window, kvc_policy_sink,
                                     kvc_policy_random, kvc_policy_h2o, kvc_policy_tova,
                                     kvc_policy_knorm, kvc_policy_vatp, kvc_policy_vase,
                                     kvc_policy_vase_dkv, kvc_policy_rkv, kvc_policy_keydiff,
                                     kvc_policy_scissorhands, kvc_policy_keyformer, kvc_policy_snapkv};

const kvc_policy *kvc_policy_at(size_t i) {
    return i < sizeof builtins / sizeof builtins[0] ? builtins[i]() : NULL;
}

const kvc_policy *kvc_policy_by_name(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; kvc_policy_at(i); i++)
        if (strcmp(kvc_policy_at(i)->name, name) == 0) return kvc_policy_at(i);
    return NULL;
}
