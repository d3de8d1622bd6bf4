# libkvc - plain GNU Makefile.
#   make                 build lib/libkvc.a and lib/libkvc.so (SONAME libkvc.so.0)
#   make check           build everything and run the whole test suite
#   make demo            build and run the demo (examples/demo.c)
#   make bench           print benchmark ratios (never fails on speed)
#   make asan            test suite under ASan + UBSan
#   make fuzz            libFuzzer targets (clang), tests/fuzz/fuzz.mk
#   make tsan            threads under ThreadSanitizer (clang), tests/threads/threads.mk
#   make soak            load test (SOAK_STEPS tokens), tests/soak/soak.mk
#   make docs            Doxygen over include/kvc.h, warnings are errors
#   make install / uninstall   PREFIX, DESTDIR, LIBDIR, INCLUDEDIR, PKGCONFIGDIR
# Warnings are errors with WERROR=1 (CI and the compilers check set it); a
# user's default build only prints them, so a newer compiler never breaks it.
# Cross build: make CC=aarch64-linux-gnu-gcc BUILD=build/aarch64 OUT=build/aarch64/lib

# Parallel by default, one job per online CPU (GNU make >= 4.3 honours -j
# set here); an explicit -jN, -j1 included, wins. Only at the top: a
# sub-make ($(MAKE) in a recipe) shares its parent's jobs.
ifeq ($(MAKELEVEL)$(filter -j% --jobs%,$(MAKEFLAGS)),0)
MAKEFLAGS += -j$(shell getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
endif

CC      ?= cc
AR      ?= ar
CFLAGS  ?= -O2 -g
LDFLAGS ?=
BUILD   ?= build
OUT     ?= lib

PREFIX       ?= /usr/local
prefix       ?= $(PREFIX)
exec_prefix  ?= $(prefix)
LIBDIR       ?= $(exec_prefix)/lib
INCLUDEDIR   ?= $(prefix)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR      ?=

VERSION_MAJOR := $(shell sed -n 's/^\#define KVC_VERSION_MAJOR \([0-9]*\).*/\1/p' include/kvc.h)
VERSION_MINOR := $(shell sed -n 's/^\#define KVC_VERSION_MINOR \([0-9]*\).*/\1/p' include/kvc.h)
VERSION_PATCH := $(shell sed -n 's/^\#define KVC_VERSION_PATCH \([0-9]*\).*/\1/p' include/kvc.h)
VERSION := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)
SONAME  := libkvc.so.$(VERSION_MAJOR)

WERROR  ?= 0
ERRFLAG := $(if $(filter 1,$(WERROR)),-Werror)
# zstd's warning set, less what is not clean here: -Wstrict-aliasing=1 and
# -Wfloat-equal (false positives on deliberate exact compares), -Wc++-compat
# (implicit void * conversions), -Winit-self (gcc's own AVX-512 intrinsics).
WARN     := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wcast-qual -Wcast-align \
            -Wswitch-enum -Wundef -Wpointer-arith -Wvla -Wformat=2 -Wwrite-strings -Wredundant-decls \
            $(ERRFLAG)
DEPFLAGS := -MMD -MP
KVC_CFLAGS := -std=c11 $(WARN) -fPIC -fvisibility=hidden -Iinclude -Ilib
TEST_CFLAGS := -std=c11 -Wall -Wextra -Wpedantic $(ERRFLAG) -Iinclude -Ilib -Itests

MACHINE := $(shell $(CC) -dumpmachine)
ifneq (,$(findstring x86_64,$(MACHINE)))
  KVC_ARCH := x86_64
else ifneq (,$(findstring aarch64,$(MACHINE))$(findstring arm64,$(MACHINE)))
  KVC_ARCH := aarch64
else
  KVC_ARCH := other
endif

# One translation unit per ISA, each with its own flags; the dispatcher is baseline.
ATTN_SRC := lib/attn/dispatch.c lib/attn/scalar.c
ifeq ($(KVC_ARCH),x86_64)
  ATTN_SRC += lib/attn/avx2.c lib/attn/avx512.c lib/attn/avx512_ext.c
endif
ifeq ($(KVC_ARCH),aarch64)
  ATTN_SRC += lib/attn/neon.c
endif
ISA_FLAGS_avx2   := -mavx2 -mfma -mf16c
ISA_FLAGS_avx512 := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx2 -mfma -mf16c
ISA_FLAGS_avx512_ext := $(ISA_FLAGS_avx512) -mavx512vnni -mavx512bf16
ISA_FLAGS_neon   :=

LIB_SRC := $(sort $(wildcard lib/*.c)) $(filter $(wildcard lib/attn/*.c),$(ATTN_SRC))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)

STATIC := $(OUT)/libkvc.a
SHARED := $(OUT)/libkvc.so.$(VERSION)

TEST_SRC := $(sort $(wildcard tests/*.c))
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(BUILD)/tests/kvc-test
TEST_LIBS := -lm -lpthread

EXAMPLES := $(BUILD)/examples/demo $(BUILD)/examples/minimal
# Fragments (examples/*/*.mk, tests/*/*.mk, docs/*.mk) add their own targets and
# may append to CHECK_DEPS what `make check` must build before the parts run.
CHECK_DEPS :=
FRAGMENTS := $(sort $(wildcard examples/*/*.mk tests/*/*.mk docs/*.mk))

.PHONY: all lib check test tests demo bench asan ubsan fuzz docs install uninstall clean examples pc help
all: lib pc

lib: $(STATIC) $(OUT)/libkvc.so

# One object rule for everything under $(BUILD)/obj; each set of objects says
# its flags (library objects add their ISA's). Header dependencies come from
# the compiler (-MMD -MP), so no header list to keep up to date.
$(LIB_OBJ): OBJ_FLAGS = $(KVC_CFLAGS) $(ISA_FLAGS_$(basename $(notdir $@)))
$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(OBJ_FLAGS) $(CFLAGS) $(DEPFLAGS) -c $< -o $@

$(STATIC): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

$(SHARED): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined $(CFLAGS) $(LDFLAGS) -o $@ $^ -lm

$(OUT)/libkvc.so: $(SHARED)
	ln -sf libkvc.so.$(VERSION) $(OUT)/$(SONAME)
	ln -sf $(SONAME) $@

# pkg-config. The kvc.pc to install is relocatable when the pkgconfig, lib and
# include dirs all sit under prefix (paths derived from ${pcfiledir}, so a moved
# or DESTDIR-staged tree still works); otherwise its paths are absolute. It is
# built under $(BUILD) because it describes the install, not the build tree;
# $(OUT)/kvc-uninstalled.pc serves in-tree builds (PKG_CONFIG_PATH=$(OUT)).
kvc__empty :=
kvc__space := $(kvc__empty) $(kvc__empty)
kvc__under = $(patsubst $(abspath $(1))/%,%,$(filter $(abspath $(1))/%,$(abspath $(2))))
PC_LIB_REL := $(call kvc__under,$(prefix),$(LIBDIR))
PC_INC_REL := $(call kvc__under,$(prefix),$(INCLUDEDIR))
PC_DIR_REL := $(call kvc__under,$(prefix),$(PKGCONFIGDIR))
ifneq (,$(and $(PC_LIB_REL),$(PC_INC_REL),$(PC_DIR_REL)))
  PC_PREFIX := $${pcfiledir}$(subst $(kvc__space),,$(patsubst %,/..,$(subst /, ,$(PC_DIR_REL))))
  PC_LIBDIR := $${prefix}/$(PC_LIB_REL)
  PC_INCDIR := $${prefix}/$(PC_INC_REL)
else
  PC_PREFIX := $(abspath $(prefix))
  PC_LIBDIR := $(abspath $(LIBDIR))
  PC_INCDIR := $(abspath $(INCLUDEDIR))
endif
PC_VARS := $(PC_PREFIX) $(PC_LIBDIR) $(PC_INCDIR)

pc: $(BUILD)/pkgconfig/kvc.pc $(OUT)/kvc-uninstalled.pc
# Rewritten only when the install dirs change, so kvc.pc follows PREFIX & co.
.PHONY: kvc-pc-vars
$(BUILD)/pkgconfig/kvc.vars: kvc-pc-vars
	@mkdir -p $(dir $@)
	@echo '$(PC_VARS)' | cmp -s - $@ 2>/dev/null || echo '$(PC_VARS)' > $@
$(BUILD)/pkgconfig/kvc.pc: pkgconfig/kvc.pc.in include/kvc.h $(BUILD)/pkgconfig/kvc.vars
	sed -e 's|@PREFIX@|$(PC_PREFIX)|g' -e 's|@LIBDIR@|$(PC_LIBDIR)|g' -e 's|@INCLUDEDIR@|$(PC_INCDIR)|g' \
	    -e 's|@VERSION@|$(VERSION)|g' $< > $@
$(OUT)/kvc-uninstalled.pc: pkgconfig/kvc.pc.in include/kvc.h
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(CURDIR)|g' -e 's|@LIBDIR@|$(abspath $(OUT))|g' -e 's|@INCLUDEDIR@|$(CURDIR)/include|g' \
	    -e 's|@VERSION@|$(VERSION)|g' $< > $@

# ---------------------------------------------------------------- tests
$(TEST_OBJ): OBJ_FLAGS = $(TEST_CFLAGS)

$(TEST_BIN): $(TEST_OBJ) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(TEST_OBJ) $(STATIC) $(TEST_LIBS)

tests: $(TEST_BIN)

$(BUILD)/obj/examples/%.o: OBJ_FLAGS = $(TEST_CFLAGS)
$(BUILD)/examples/%: $(BUILD)/obj/examples/%.o $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(STATIC) -lm

examples: $(EXAMPLES)
# objects of the one-file examples: kept (not intermediate), so nothing rebuilds twice
.SECONDARY: $(EXAMPLES:$(BUILD)/examples/%=$(BUILD)/obj/examples/%.o)

include $(FRAGMENTS)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

check: all tests examples $(CHECK_DEPS)
	@BUILD=$(BUILD) sh tests/check.sh

test: check

demo: $(BUILD)/examples/demo
	@$(BUILD)/examples/demo

# The targets a user types, one line each (README.md has the same table; the
# docs part checks that they agree). Fragments add theirs to HELP_LINES.
HELP_LINES += \
  "all|build lib/libkvc.a, lib/libkvc.so and the pkg-config files (the default)" \
  "check|build everything and run the whole test suite (ends with N passed, N failed, N skipped)" \
  "demo|every policy on a synthetic decode stream, with an explanation of the columns" \
  "examples|build the one-file examples (demo, minimal)" \
  "llama|the llama2.c-format runner and the quality evaluation (build/examples/llama/)" \
  "quality|measure every policy on stories260K: docs/quality.csv, docs/quality.svg (KVC_MODEL_DIR)" \
  "pointer-chase|the k-hop pointer-chasing lab (docs/pointer_chase.md)" \
  "integration|the engine integration examples (docs/integration.md)" \
  "custom_policy|the user-written policy example (docs/policies.md)" \
  "bench|benchmark ratios (kernel vs. DRAM bandwidth and FMA peak); never fails on speed" \
  "soak|load test: many caches, millions of tokens, no allocation after warm-up" \
  "asan|the unit suite under AddressSanitizer + UBSan" \
  "ubsan|the unit suite under clang's UBSan (pointer overflow, array bounds)" \
  "tsan|threads under ThreadSanitizer (clang)" \
  "fuzz|libFuzzer targets for the API and spec strings (clang); fuzz-merge keeps new finds" \
  "docs|Doxygen HTML of include/kvc.h and the guides into build/docs/html" \
  "install|install into PREFIX (DESTDIR, LIBDIR, INCLUDEDIR, PKGCONFIGDIR); uninstall removes it" \
  "reasoning|every policy's accuracy against budget on the proving ground (docs/reasoning.md)" \
  "model|retrain the proving-ground model (PyTorch from Debian, about 45 minutes on one core)" \
  "clean|remove the build" \
  "help|this list"

# For examples/python/setup.py: every library source of this machine and its
# ISA flags, one per line, so the Python build never keeps a list of its own.
.PHONY: lib-sources
lib-sources:
	@$(foreach s,$(LIB_SRC),echo '$(s) $(ISA_FLAGS_$(basename $(notdir $(s))))';)

help:
	@printf 'make TARGET, where TARGET is one of:\n'
	@for l in $(HELP_LINES); do printf '  %-15s %s\n' "$${l%%|*}" "$${l#*|}"; done
	@printf 'Variables: CC, CFLAGS, PREFIX, BUILD (build dir), OUT (library dir), WERROR=1, KVC_REQUIRE_ALL=1 and KVC_CHECK_JOBS=N (check)\n'

# ---------------------------------------------------------------- sanitizers
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
asan:
	$(MAKE) --no-print-directory BUILD=build/asan OUT=build/asan/lib CFLAGS="$(ASAN_FLAGS)" LDFLAGS="$(ASAN_FLAGS)" \
	    build/asan/tests/kvc-test
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build/asan/tests/kvc-test

# clang's UBSan, which catches pointer arithmetic past an array or wrapping
# (gcc's does not): the unit suite on every ISA the machine runs. The AVX-512
# kernel files are built without it (clang takes over ten minutes for them
# instrumented); the shared driver they instantiate is checked through the
# AVX2 (and on arm64 the NEON) kernel. make keeps no record of flags, so the
# first make's objects stay as they are in the second.
UBSAN_CC    ?= clang
UBSAN_FLAGS := -O1 -g -fsanitize=undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
UBSAN_PLAIN := $(patsubst $(BUILD)/%,build/ubsan/%,$(filter %/avx512.o %/avx512_ext.o,$(LIB_OBJ)))
ubsan:
	$(if $(UBSAN_PLAIN),$(MAKE) --no-print-directory CC=$(UBSAN_CC) BUILD=build/ubsan OUT=build/ubsan/lib \
	    CFLAGS="-O1 -g" $(UBSAN_PLAIN))
	$(MAKE) --no-print-directory CC=$(UBSAN_CC) BUILD=build/ubsan OUT=build/ubsan/lib CFLAGS="$(UBSAN_FLAGS)" \
	    LDFLAGS="$(UBSAN_FLAGS)" build/ubsan/tests/kvc-test
	UBSAN_OPTIONS=print_stacktrace=1 build/ubsan/tests/kvc-test

# ---------------------------------------------------------------- install
install: all
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 include/kvc.h $(DESTDIR)$(INCLUDEDIR)/kvc.h
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/libkvc.a
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/libkvc.so.$(VERSION)
	ln -sf libkvc.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libkvc.so
	install -m 644 $(BUILD)/pkgconfig/kvc.pc $(DESTDIR)$(PKGCONFIGDIR)/kvc.pc

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/kvc.h $(DESTDIR)$(LIBDIR)/libkvc.a \
	      $(DESTDIR)$(LIBDIR)/libkvc.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	      $(DESTDIR)$(LIBDIR)/libkvc.so $(DESTDIR)$(PKGCONFIGDIR)/kvc.pc

clean:
	rm -rf $(BUILD) $(OUT)/libkvc.a $(OUT)/libkvc.so* $(OUT)/kvc.pc $(OUT)/kvc-uninstalled.pc
