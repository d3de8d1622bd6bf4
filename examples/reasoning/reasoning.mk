# examples/reasoning: the proving ground. Our own small Llama-architecture
# model, trained on tasks our own code generates, decoding through libkvc
# caches; `make reasoning` measures every policy's accuracy against budget.
REASON_DIR  := $(BUILD)/examples/reasoning
REASON_BIN  := $(REASON_DIR)/reason
REASON_OBJ  := $(REASON_DIR)/reason.o $(REASON_DIR)/taskset.o $(REASON_DIR)/plot.o $(REASON_DIR)/adversary.o \
               $(LLAMA_DIR)/model.o
REASON_HDRS := examples/reasoning/taskset.h examples/reasoning/plot.h examples/reasoning/adversary.h \
               examples/llama/model.h include/kvc.h
REASON_MODEL := examples/reasoning/model
PYTHON_TORCH ?= /usr/bin/python3

$(REASON_DIR)/%.o: examples/reasoning/%.c $(REASON_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -Iexamples/llama -Iexamples/reasoning $(CFLAGS) -c $< -o $@

$(REASON_BIN): $(REASON_OBJ) $(STATIC)
	$(CC) $(CFLAGS) $(LDFLAGS) -pthread -o $@ $^ -lm

.PHONY: reasoning model tasks
# The figures of docs/reasoning.md (the default grid: about 10 minutes on 2 cores).
reasoning: $(REASON_BIN)
	$(REASON_BIN) --csv docs/reasoning.csv --md docs/reasoning-table.md --svg docs/reasoning.svg
	@echo "reasoning: tables in docs/reasoning-table.md, data in docs/reasoning.csv, plot in docs/reasoning.svg"

# Retrain the committed checkpoint (about an hour on 2 cores; needs python3-torch).
model:
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(PYTHON_TORCH) examples/reasoning/train.py --out $(REASON_MODEL)

# Regenerate the committed evaluation instances.
tasks:
	$(PYTHON_TORCH) examples/reasoning/make_tasks.py --out examples/reasoning/data/tasks.bin

CHECK_DEPS += $(REASON_BIN)
