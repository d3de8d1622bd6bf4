# examples/integration: how an engine wires libkvc (docs/integration.md).
# Built with the public header only; run by tests/parts/integration.sh.
INTEGRATION_DIR  := $(BUILD)/examples/integration
INTEGRATION_BINS := $(addprefix $(INTEGRATION_DIR)/,store_engine index_cells paged_blocks paged_compact)
INTEGRATION_CFLAGS   := -std=c11 $(WARN) -Iinclude

$(INTEGRATION_DIR)/%: examples/integration/%.c examples/integration/toy.h include/kvc.h $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(INTEGRATION_CFLAGS) $(CFLAGS) $(LDFLAGS) -pthread -o $@ $< $(STATIC) -lm

.PHONY: integration
integration: $(INTEGRATION_BINS)

CHECK_DEPS += $(INTEGRATION_BINS)
