# uffd-mgr: one Makefile for the whole tree; build output goes to build/.
#   make            build daemon, wrapper, shim, CLI
#   make test       unit tests, fake-guest stress, real-guest system tests
#   make demo       boot a real guest under the manager with a live view
#   make install    install into $(DESTDIR)$(PREFIX) (default /usr/local); make uninstall
#   make deb        build the Debian package (dpkg-buildpackage) into build/deb/
#   make clean
# V=1 prints the full commands; SAN=1 builds with ASan+UBSan.

BUILD   ?= build
CC      ?= cc
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Wno-unused-parameter -Wshadow -Wstrict-prototypes
CPPFLAGS += -D_GNU_SOURCE -I. -MMD -MP
PKGS    := json-c inih liburing liblz4 libzstd
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
HOOK_SRCS := uffd-mgr/hooks.c uffd-mgr/uffd.c uffd-mgr/fault.c uffd-mgr/vm.c uffd-mgr/evict.c
HOOK_OBJS := $(HOOK_SRCS:%.c=$(BUILD)/obj-hooks/%.o)
TEST_DAEMON := $(BUILD)/tests/uffd-mgrd-hooks
TOOL_BINS += $(TEST_DAEMON)

PROGS := $(BUILD)/uffd-mgrd $(BUILD)/uffdctl $(BUILD)/uffd-qemu $(BUILD)/libuffd-shim.so

.PHONY: all deps test unit-test system-test stress demo guest bench clean format fuzz \
	install uninstall deb
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

# make install: where each file goes is in the README's Install section. The units name the
# programs by their installed paths; the policy directory and the swap files' directory are the
# daemon's compiled-in defaults, whatever the PREFIX.
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SBINDIR    ?= $(PREFIX)/sbin
PKGLIBDIR  ?= $(PREFIX)/lib/uffd-mgr
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/uffd-mgr
SYSCONFDIR ?= /etc
STATEDIR   ?= /var/lib/uffd-mgr
SYSTEMD_UNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALL    ?= install
MAN_PAGES  := scripts/man/uffd-mgrd.8 scripts/man/uffdctl.1 scripts/man/uffd-qemu.1 \
	      scripts/man/uffd-mgr.conf.5
UNITS      := scripts/systemd/uffd-mgrd.service scripts/systemd/uffd-mgrd.socket
# libvirt names an emulator in <emulator>: uffd-qemu acts as one when called by this name.
EMULATOR   := uffd-qemu-system-x86_64

install: $(PROGS)
	$(call E,INSTALL,$(DESTDIR)$(PREFIX))$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) \
		$(DESTDIR)$(PKGLIBDIR) $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(SYSTEMD_UNITDIR) \
		$(DESTDIR)$(SYSCONFDIR)/uffd-mgr/vms $(addprefix $(DESTDIR)$(MANDIR)/man,1 5 8)
	$(Q)$(INSTALL) -d -m 0700 $(DESTDIR)$(STATEDIR)
	$(Q)$(INSTALL) -m 0755 $(BUILD)/uffd-mgrd $(DESTDIR)$(SBINDIR)/
	$(Q)$(INSTALL) -m 0755 $(BUILD)/uffdctl $(BUILD)/uffd-qemu $(DESTDIR)$(BINDIR)/
	$(Q)ln -sf uffd-qemu $(DESTDIR)$(BINDIR)/$(EMULATOR)
	$(Q)$(INSTALL) -m 0644 $(BUILD)/libuffd-shim.so $(DESTDIR)$(PKGLIBDIR)/
	$(Q)$(INSTALL) -m 0755 scripts/libvirt-setup.sh $(DESTDIR)$(PKGLIBDIR)/libvirt-setup
	$(Q)for m in $(MAN_PAGES); do \
		$(INSTALL) -m 0644 $$m $(DESTDIR)$(MANDIR)/man$${m##*.}/ || exit 1; done
	$(Q)$(INSTALL) -m 0644 README.md $(DESTDIR)$(DOCDIR)/
	$(Q)$(INSTALL) -m 0644 examples/* $(DESTDIR)$(DOCDIR)/examples/
	$(Q)for u in $(UNITS); do \
		sed -e 's|/usr/local/sbin/|$(SBINDIR)/|g' -e 's|/usr/local/bin/|$(BINDIR)/|g' $$u \
			>$(DESTDIR)$(SYSTEMD_UNITDIR)/$${u##*/} && \
		chmod 0644 $(DESTDIR)$(SYSTEMD_UNITDIR)/$${u##*/} || exit 1; done

# Leaves /etc/uffd-mgr/vms and /var/lib/uffd-mgr when they hold anything: the operator's.
uninstall:
	$(call E,RM,$(DESTDIR)$(PREFIX))rm -f $(DESTDIR)$(SBINDIR)/uffd-mgrd \
		$(addprefix $(DESTDIR)$(BINDIR)/,uffdctl uffd-qemu $(EMULATOR)) \
		$(DESTDIR)$(PKGLIBDIR)/libuffd-shim.so $(DESTDIR)$(PKGLIBDIR)/libvirt-setup \
		$(DESTDIR)$(DOCDIR)/README.md \
		$(addprefix $(DESTDIR)$(DOCDIR)/,$(wildcard examples/*)) \
		$(foreach m,$(MAN_PAGES),$(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(m)))/$(notdir $(m))) \
		$(addprefix $(DESTDIR)$(SYSTEMD_UNITDIR)/,$(notdir $(UNITS)))
	$(Q)rmdir --ignore-fail-on-non-empty $(DESTDIR)$(PKGLIBDIR) $(DESTDIR)$(DOCDIR)/examples \
		$(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/uffd-mgr/vms \
		$(DESTDIR)$(SYSCONFDIR)/uffd-mgr $(DESTDIR)$(STATEDIR) 2>/dev/null || true

# make deb: the package built from a scratch copy of the tree (the tree and build/ stay clean).
deb:
	$(Q)./scripts/build-deb.sh $(abspath $(BUILD))/deb

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)

# ebpf/ brings its own rules (vmlinux.h, BPF objects, skeletons) when it has any.
-include ebpf/Makefile.inc

-include $(shell find $(BUILD)/obj $(BUILD)/obj-hooks $(BUILD)/tests -name '*.d' -type f 2>/dev/null)
