/* full: never evicts. Neither score nor select: the core reports KVC_EFULL. */
#include "policy_util.h"

static const kvc_policy full = {KVC__POLICY_INIT("full", 0)};

const kvc_policy *kvc_policy_full(void) { return &full; }
