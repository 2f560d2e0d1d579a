# uffd-mgr: one Makefile for the whole tree; build output goes to build/.
#   make            build daemon, wrapper, shim, CLI
#   make test       unit tests, fake-guest stress, real-guest system tests
#   make demo       boot a real guest under the manager with a live view
#   make clean
# V=1 prints the full commands; SAN=1 builds with ASan+UBSan.

BUILD   ?= build
CC      ?= cc
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Wno-unused-parameter -Wshadow -Wstrict-prototypes
CPPFLAGS += -D_GNU_SOURCE -I. -MMD -MP
PKGS    := json-c inih liburing
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread
TESTLIBS := -lcmocka
CURSES_LIBS := $(shell pkg-config --libs ncursesw 2>/dev/null || echo -lncursesw)

ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
endif

ifneq ($(V),1)
Q := @
E = @printf '  %-7s %s\n' $(1) $(2);
else
Q :=
E =
endif

# Programs: each main source is listed here; every other .c in the module folders goes into
# build/libuffdmgr.a, which programs and unit tests link against.
MAINS := uffd-mgr/main.c uffd-mgr/uffdctl.c qemu-glue/uffd-qemu.c qemu-glue/shim.c
# uffdctl's own modules: they link ncurses, which nothing else should.
CTL_SRCS := uffd-mgr/top.c
LIB_SRCS := $(filter-out $(MAINS) $(CTL_SRCS) %.bpf.c, $(wildcard uffd-mgr/*.c shmswap/*.c qemu-glue/*.c \
						predictor/*.c ebpf/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
LIB      := $(BUILD)/libuffdmgr.a

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(TOOL_SRCS:tests/tools/%.c=$(BUILD)/tests/%)

# Test builds: the files that call uffd-mgr/hooks.h compiled again with the hooks on. Linked
# ahead of the library, their objects stand in for the library's own (same symbols), so the
# test daemon and the unit tests get the hooks and the product binaries never do.
HOOK_SRCS := uffd-mgr/hooks.c uffd-mgr/uffd.c uffd-mgr/fault.c uffd-mgr/vm.c
HOOK_OBJS := $(HOOK_SRCS:%.c=$(BUILD)/obj-hooks/%.o)
TEST_DAEMON := $(BUILD)/tests/uffd-mgrd-hooks
TOOL_BINS += $(TEST_DAEMON)

PROGS := $(BUILD)/uffd-mgrd $(BUILD)/uffdctl $(BUILD)/uffd-qemu $(BUILD)/libuffd-shim.so

.PHONY: all deps test unit-test system-test stress demo guest bench clean format fuzz
all: $(PROGS)

deps:
	$(Q)./scripts/install-deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(call E,CC,$<)$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -fPIC -c -o $@ $<

$(BUILD)/obj-hooks/%.o: %.c
	@mkdir -p $(dir $@)
	$(call E,CC,$@)$(CC) $(CPPFLAGS) -DUFFD_MGR_TEST_HOOKS $(CFLAGS) $(WARN) -fPIC -c -o $@ $<

$(LIB): $(LIB_OBJS)
	$(call E,AR,$@)rm -f $@ && ar rcs $@ $^

$(BUILD)/uffd-mgrd: $(BUILD)/obj/uffd-mgr/main.o $(LIB)
	$(call E,LD,$@)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/uffdctl: $(BUILD)/obj/uffd-mgr/uffdctl.o $(CTL_SRCS:%.c=$(BUILD)/obj/%.o) $(LIB)
	$(call E,LD,$@)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CURSES_LIBS)

$(BUILD)/uffd-qemu: $(BUILD)/obj/qemu-glue/uffd-qemu.o $(LIB)
	$(call E,LD,$@)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The shim lives inside QEMU: it links only what it uses from the library and nothing else.
$(BUILD)/libuffd-shim.so: $(BUILD)/obj/qemu-glue/shim.o $(LIB) qemu-glue/shim.map
	$(call E,LD,$@)$(CC) $(LDFLAGS) -shared -Wl,--version-script=qemu-glue/shim.map -o $@ \
		$(BUILD)/obj/qemu-glue/shim.o $(LIB) -ldl -lpthread

$(BUILD)/tests/test_%: tests/unit/test_%.c $(HOOK_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	$(call E,CC,$@)$(CC) $(CPPFLAGS) -DUFFD_MGR_TEST_HOOKS $(CFLAGS) $(WARN) -o $@ $< \
		$(HOOK_OBJS) $(LIB) $(LDFLAGS) $(LDLIBS) $(TESTLIBS)

$(TEST_DAEMON): $(BUILD)/obj/uffd-mgr/main.o $(HOOK_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	$(call E,LD,$@)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/tools/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(call E,CC,$@)$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS)

guest:
	$(Q)$(MAKE) -s -C tests/guest BUILD=$(abspath $(BUILD))/guest

# make test: the whole suite, bounded to ~10 minutes on a 2-core machine.
test: deps
	$(Q)$(MAKE) --no-print-directory all $(UNIT_BINS) $(TOOL_BINS)
	$(Q)$(MAKE) --no-print-directory guest
	$(Q)BUILD=$(abspath $(BUILD)) ./tests/run-tests.sh

unit-test: all $(UNIT_BINS) $(TOOL_BINS)
	$(Q)BUILD=$(abspath $(BUILD)) ./tests/run-tests.sh --unit

stress: deps
	$(Q)$(MAKE) --no-print-directory all $(TOOL_BINS)
	$(Q)BUILD=$(abspath $(BUILD)) ./tests/run-tests.sh --stress

demo: deps
	$(Q)$(MAKE) --no-print-directory all $(TOOL_BINS)
	$(Q)$(MAKE) --no-print-directory guest
	$(Q)BUILD=$(abspath $(BUILD)) ./scripts/demo.sh

# make fuzz: each libFuzzer target in tests/fuzz for FUZZ_SECONDS (default 60).
FUZZ_SECONDS ?= 60
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(LIB_SRCS)
	@mkdir -p $(dir $@)
	$(call E,FUZZ,$@)clang -D_GNU_SOURCE -I. -g -O1 -fsanitize=fuzzer,address,undefined -o $@ $< \
		$(LIB_SRCS) $(LDLIBS)
fuzz: deps $(FUZZ_BINS)
	$(Q)for f in $(FUZZ_BINS); do mkdir -p $(BUILD)/fuzz/corpus-$$(basename $$f); \
		echo "fuzzing $$f for $(FUZZ_SECONDS)s"; \
		$$f -max_total_time=$(FUZZ_SECONDS) $(BUILD)/fuzz/corpus-$$(basename $$f) 2>&1 | tail -3 || exit 1; done

# make bench: the benchmark suite (bench/run.sh), results in bench/results/.
bench: deps
	$(Q)$(MAKE) --no-print-directory all $(TOOL_BINS)
	$(Q)$(MAKE) --no-print-directory guest
	$(Q)BUILD=$(abspath $(BUILD)) ./bench/run.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)

# ebpf/ brings its own rules (vmlinux.h, BPF objects, skeletons) when it has any.
-include ebpf/Makefile.inc

-include $(shell find $(BUILD)/obj $(BUILD)/obj-hooks $(BUILD)/tests -name '*.d' -type f 2>/dev/null)
