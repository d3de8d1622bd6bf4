# examples/custom_policy: a complete user-written policy (docs/policies.md).
# Built with the public header only; run by tests/parts/custom_policy.sh.
CUSTOM_POLICY_BIN := $(BUILD)/examples/custom_policy/custom_policy

$(CUSTOM_POLICY_BIN): examples/custom_policy/custom_policy.c include/kvc.h $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 $(WARN) -Iinclude $(CFLAGS) $(LDFLAGS) -o $@ $< $(STATIC) -lm

.PHONY: custom_policy
custom_policy: $(CUSTOM_POLICY_BIN)

CHECK_DEPS += $(CUSTOM_POLICY_BIN)
