/* The proving ground's instance file (written by make_tasks.py from tasks.py):
 * fixed token sequences with the positions that are scored, and how.
 *
 * File: "KVCTASK1", uint32 count, uint32 vocabulary size, then per instance
 * uint8 task, uint8 0, uint16 length, uint16 scored, `length` uint8 tokens,
 * and `scored` entries of uint16 position + uint8 kind (little endian). */
#ifndef REASON_TASKSET_H
#define REASON_TASKSET_H

#include <stddef.h>
#include <stdint.h>

enum { TASK_RECALL, TASK_NEEDLE, TASK_CHASE, TASK_VT, N_TASKS };
/* How a scored token is used after the model's prediction was compared with it. */
enum { KIND_FORCED = 1, /* read as given (the question stream) */
       KIND_GEN = 2 };  /* replaced by the model's own prediction (decoding) */

typedef struct {
    int task, len, n_scored;
    const uint8_t *tok;   /* len tokens */
    uint16_t *pos;        /* scored positions, increasing */
    uint8_t *kind;        /* their kinds */
} task_inst;

typedef struct {
    int n, vocab;
    task_inst *inst;
    uint8_t *blob;
} task_set;

extern const char *const task_names[N_TASKS];

/* 0, or -1 with a message in err. */
int task_set_load(task_set *ts, const char *path, char *err, size_t errlen);
void task_set_free(task_set *ts);

#endif
