/* The adversarial control policy of the proving ground (adversary.c). */
#ifndef REASON_ADVERSARY_H
#define REASON_ADVERSARY_H

#include "kvc.h"

/* "vrange_max": evicts the largest value range first (attention-free). */
const kvc_policy *reason_policy_vrange_max(void);

#endif
