/* follow: an adaptive, locality-respecting eviction policy written by a user
 * against the public kvc_policy vtable (see follow.c). */
#ifndef PC_FOLLOW_H
#define PC_FOLLOW_H

#include <kvc.h>

/* The policy table, ready for kvc_cache_create(). */
const kvc_policy *pc_policy_follow(void);

#endif
