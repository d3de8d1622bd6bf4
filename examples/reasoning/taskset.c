/* Loading the proving ground's instance file; see taskset.h. */
#include "taskset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const task_names[N_TASKS] = {"recall", "needle", "chase", "vt"};

static unsigned rd16(const uint8_t *p) { return (unsigned)p[0] | (unsigned)p[1] << 8; }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | (uint32_t)rd16(p + 2) << 16; }

int task_set_load(task_set *ts, const char *path, char *err, size_t errlen) {
    memset(ts, 0, sizeof *ts);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open task file %s (make_tasks.py writes it)", path);
        return -1;
    }
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 16 || fseek(f, 0, SEEK_SET) != 0 || !(ts->blob = malloc((size_t)size)) ||
        fread(ts->blob, 1, (size_t)size, f) != (size_t)size) {
        snprintf(err, errlen, "cannot read task file %s", path);
        fclose(f);
        task_set_free(ts);
        return -1;
    }
    fclose(f);
    const uint8_t *p = ts->blob, *end = ts->blob + size;
    if (memcmp(p, "KVCTASK1", 8) != 0) {
        snprintf(err, errlen, "%s is not a task file (bad magic)", path);
        task_set_free(ts);
        return -1;
    }
    uint32_t n = rd32(p + 8);
    ts->vocab = (int)rd32(p + 12);
    p += 16;
    if (n == 0 || n > 1000000 || !(ts->inst = calloc(n, sizeof *ts->inst))) {
        snprintf(err, errlen, "%s: bad instance count %u", path, n);
        task_set_free(ts);
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        task_inst *t = &ts->inst[i];
        if (end - p < 6) goto truncated;
        t->task = p[0];
        t->len = (int)rd16(p + 2);
        t->n_scored = (int)rd16(p + 4);
        p += 6;
        if (t->task >= N_TASKS || t->len < 2 || end - p < t->len + 3 * t->n_scored) goto truncated;
        t->tok = p;
        p += t->len;
        t->pos = malloc((size_t)t->n_scored * sizeof *t->pos + 1);
        t->kind = malloc((size_t)t->n_scored + 1);
        ts->n = (int)i + 1;
        if (!t->pos || !t->kind) goto truncated;
        for (int j = 0; j < t->n_scored; j++, p += 3) {
            t->pos[j] = (uint16_t)rd16(p);
            t->kind[j] = p[2];
            if (t->pos[j] < 1 || t->pos[j] >= t->len || (j && t->pos[j] <= t->pos[j - 1]) ||
                (t->kind[j] != KIND_FORCED && t->kind[j] != KIND_GEN))
                goto truncated;
        }
        for (int j = 0; j < t->len; j++)
            if (t->tok[j] >= ts->vocab) goto truncated;
    }
    if (p != end) goto truncated;
    return 0;
truncated:
    snprintf(err, errlen, "%s: malformed or truncated task file", path);
    task_set_free(ts);
    return -1;
}

void task_set_free(task_set *ts) {
    if (ts->inst)
        for (int i = 0; i < ts->n; i++) {
            free(ts->inst[i].pos);
            free(ts->inst[i].kind);
        }
    free(ts->inst);
    free(ts->blob);
    memset(ts, 0, sizeof *ts);
}
