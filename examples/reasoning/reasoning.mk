# examples/reasoning: the proving ground. Our own small Llama-architecture
# model, trained on tasks our own code generates, decoding through libkvc
# caches; `make reasoning` measures every policy's accuracy against budget.
REASON_DIR  := $(BUILD)/examples/reasoning
REASON_BIN  := $(REASON_DIR)/reason
REASON_OBJD := $(BUILD)/obj/examples/reasoning
REASON_OBJ  := $(REASON_OBJD)/reason.o $(REASON_OBJD)/taskset.o $(REASON_OBJD)/adversary.o $(LLAMA_OBJ)/model.o \
               $(SVGPLOT_OBJ)
REASON_MODEL := examples/reasoning/model
PYTHON_TORCH ?= /usr/bin/python3

$(REASON_OBJD)/%.o: OBJ_FLAGS = $(TEST_CFLAGS) -Iexamples/llama -Iexamples/common -Iexamples/reasoning

$(REASON_BIN): $(REASON_OBJ) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -pthread -o $@ $^ -lm

.PHONY: reasoning model tasks
# The figures of docs/reasoning.md: every built-in policy and the adversarial
# control x budgets 64..512 (1/16 .. 1/2 of the context) x 4 tasks, 200
# instances per cell, and the chase table at budget 256: 48,800 decodes of
# 1024 tokens, 2,100 to 2,900 CPU-seconds on the shared 2-core machines
# measured (18 to 25 minutes on 2 threads; docs/reasoning.md, "Cost").
reasoning: $(REASON_BIN)
	$(REASON_BIN) --budgets 64,128,256,512 --csv docs/reasoning.csv --md $(BUILD)/reasoning-table.md --svg docs/reasoning.svg
	@echo "reasoning: tables in $(BUILD)/reasoning-table.md, data in docs/reasoning.csv, plot in docs/reasoning.svg"

# Retrain the committed checkpoint (needs python3-torch): 4,100 steps, 83
# minutes on an AMD EPYC (Zen 4) VM with MODEL_THREADS=1, about two and a
# half hours on the older machines. The committed run took its first 3,100
# steps on one thread and the last 1,000 on two (MODEL_THREADS): torch's
# reductions round differently on another CPU or thread count, so a rerun
# differs from the committed sha256 (docs/reasoning.md: same accuracy).
MODEL_THREADS ?= 2
model:
	OPENBLAS_NUM_THREADS=$(MODEL_THREADS) OMP_NUM_THREADS=$(MODEL_THREADS) $(PYTHON_TORCH) \
	    examples/reasoning/train.py --out $(REASON_MODEL) --threads $(MODEL_THREADS)

# Regenerate the committed evaluation instances.
tasks:
	$(PYTHON_TORCH) examples/reasoning/make_tasks.py --out examples/reasoning/data/tasks.bin

CHECK_DEPS += $(REASON_BIN)
