# seeswarm build. `make` builds build/seeswarm and the client library;
# `make check` runs every test; `make demo` runs the local demo.
# Sources are discovered by wildcard: add a .c file to a component folder and
# it is built.

CC      ?= cc
CLANG   ?= clang
BUILD   ?= build
PKGS    := libuv openssl jansson libmicrohttpd sqlite3 libprotobuf-c libseccomp libarchive \
           nettle hogweed
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter -Wformat=2 -Wvla
CFLAGS  ?= -O2 -g
ALL_CFLAGS = -std=gnu17 $(WARN) $(CFLAGS) -fPIC -D_GNU_SOURCE -Iinclude -Isrc -I$(GEN) $(PKG_CFLAGS)
LDLIBS  := $(PKG_LIBS) -lgmp -lpthread -lm

GEN     := $(BUILD)/gen
PROTO   := $(wildcard proto/*.proto)
PROTO_C := $(patsubst proto/%.proto,$(GEN)/proto/%.pb-c.c,$(PROTO))
PROTO_H := $(PROTO_C:.c=.h)

CORE_SRC    := $(wildcard src/core/*.c)
NET_SRC     := $(wildcard src/net/*.c)
ATTEST_SRC  := $(wildcard src/attest/*.c)
MANAGER_SRC := $(wildcard src/manager/*.c) $(wildcard src/manager/sched/*.c)
DATA_SRC    := $(wildcard src/data/*.c)
AGENT_SRC   := $(wildcard src/agent/*.c) $(wildcard src/agent/exec/*.c)
CLIENT_SRC  := $(wildcard src/client/*.c)
CLI_SRC     := $(wildcard src/cli/*.c)

# Everything except main.c goes into an internal static library that the
# binary, unit tests, fuzzers and benchmarks link.
LIB_SRC  := $(CORE_SRC) $(NET_SRC) $(DATA_SRC) $(ATTEST_SRC) $(MANAGER_SRC) $(AGENT_SRC) $(CLIENT_SRC) $(CLI_SRC)
LIB_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC)) $(patsubst $(GEN)/%.c,$(BUILD)/obj/gen/%.o,$(PROTO_C))
MAIN_OBJ := $(BUILD)/obj/src/main.o
# The public client library: client + core only.
CLIENTLIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(CLIENT_SRC) $(CORE_SRC))

UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BIN  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))

.PHONY: all deps check check-unit check-system check-fuzz check-asan demo demo-stop clean lint bench fuzz
.SECONDARY:

all: $(BUILD)/seeswarm $(BUILD)/libseeswarm.a $(BUILD)/libseeswarm.so $(BENCH_BIN)

deps:
	@bash scripts/deps.sh

$(GEN)/proto/%.pb-c.c $(GEN)/proto/%.pb-c.h: proto/%.proto
	@mkdir -p $(GEN)/proto
	protoc-c --c_out=$(GEN) $<

$(BUILD)/obj/gen/%.o: $(GEN)/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.c $(PROTO_H)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libinternal.a: $(LIB_OBJ)
	@rm -f $@
	@ar rcs $@ $^

$(BUILD)/seeswarm: $(MAIN_OBJ) $(BUILD)/libinternal.a
	@echo "  LD      $@"
	@$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libseeswarm.a: $(CLIENTLIB_OBJ)
	@rm -f $@
	@ar rcs $@ $^

$(BUILD)/libseeswarm.so: $(CLIENTLIB_OBJ) src/client/libseeswarm.map
	@echo "  LD      $@"
	@$(CC) -shared -Wl,--version-script=src/client/libseeswarm.map -Wl,-soname,libseeswarm.so.0 \
	  -o $@ $(CLIENTLIB_OBJ) $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libinternal.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/bench/%: bench/%.c $(BUILD)/libinternal.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -o $@ $^ $(LDLIBS)

# ---- tests ------------------------------------------------------------------

# Builds run on every core; tests run one stage at a time, and each stage
# prints how long it took so that CI time can be watched.
JOBS  ?= $(shell nproc 2>/dev/null || echo 2)
STAGE  = t=$$(date +%s); $(MAKE) --no-print-directory
TOOK   = && echo "== stage $(1): $$(( $$(date +%s) - t )) s"

check: deps
	@$(STAGE) -j$(JOBS) all $(UNIT_BIN) $(call TOOK,build)
	@$(STAGE) check-unit $(call TOOK,unit)
	@$(STAGE) check-system $(call TOOK,system)
	@$(STAGE) lint $(call TOOK,lint)
	@$(STAGE) -j$(JOBS) $(FUZZ_BIN) $(call TOOK,fuzz build)
	@$(STAGE) check-fuzz $(call TOOK,fuzz)
	@$(STAGE) check-asan $(call TOOK,asan)
	@echo "make check: all stages passed"

check-unit: $(UNIT_BIN)
	@bash tests/run_unit.sh $(BUILD)

check-system: $(BUILD)/seeswarm
	SEESWARM_BIN=$(abspath $(BUILD)/seeswarm) /usr/bin/python3 -m pytest -q tests/system $(PYTEST_ARGS)

FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
FUZZ_SECONDS ?= 10
FUZZ_CFLAGS = -std=gnu17 -g -O1 -fsanitize=fuzzer-no-link,address,undefined -D_GNU_SOURCE \
  -DSS_FUZZING -Iinclude -Isrc -I$(GEN) $(PKG_CFLAGS)
FUZZ_LIB_OBJ := $(patsubst %.c,$(BUILD)/fuzzobj/%.o,$(LIB_SRC)) \
  $(patsubst $(GEN)/%.c,$(BUILD)/fuzzobj/gen/%.o,$(PROTO_C))

# Harnesses link one instrumented copy of the library instead of recompiling it each.
$(BUILD)/fuzzobj/gen/%.o: $(GEN)/%.c
	@mkdir -p $(dir $@)
	@echo "  FUZZCC  $<"
	@$(CLANG) $(FUZZ_CFLAGS) -c $< -o $@

$(BUILD)/fuzzobj/%.o: %.c $(PROTO_H)
	@mkdir -p $(dir $@)
	@echo "  FUZZCC  $<"
	@$(CLANG) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libfuzzinternal.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	@ar rcs $@ $^

$(BUILD)/fuzz/%: tests/fuzz/%.c $(BUILD)/libfuzzinternal.a
	@mkdir -p $(dir $@)
	@echo "  FUZZLD  $@"
	@$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< $(BUILD)/libfuzzinternal.a $(LDLIBS)

fuzz: $(FUZZ_BIN)

check-fuzz: $(FUZZ_BIN)
	@bash tests/run_fuzz.sh $(BUILD) $(FUZZ_SECONDS) $(FUZZ_BIN)

# The sanitizer build runs the unit and system tests again.
check-asan:
	@$(MAKE) --no-print-directory -j$(JOBS) BUILD=build/asan CC=$(CLANG) \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  build/asan/seeswarm $(patsubst $(BUILD)/%,build/asan/%,$(UNIT_BIN))
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  bash tests/run_unit.sh build/asan
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  SEESWARM_BIN=$(abspath build/asan/seeswarm) SEESWARM_ASAN=1 \
	  /usr/bin/python3 -m pytest -q tests/system $(PYTEST_ARGS)

LINT_SRC ?= $(LIB_SRC) src/main.c

# Static analysis: cppcheck and clang-tidy (checks in .clang-tidy), both must be clean.
lint: $(PROTO_H)
	cppcheck -j$(JOBS) --quiet --error-exitcode=1 --std=c11 --enable=warning,portability \
	  --suppress=missingIncludeSystem --inline-suppr -Iinclude -Isrc -I$(GEN) $(LINT_SRC)
	@printf '%s\n' $(LINT_SRC) | xargs -P$(JOBS) -I{} sh -c \
	  'clang-tidy -quiet {} -- -std=gnu17 -D_GNU_SOURCE -Iinclude -Isrc -I$(GEN) $(PKG_CFLAGS) 2>/dev/null' \
	  && echo "lint: cppcheck and clang-tidy clean"

bench: all
	@bash bench/run.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@$(BUILD)/seeswarm demo

demo-stop:
	@$(BUILD)/seeswarm demo --stop

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj $(BUILD)/fuzzobj -name '*.d' 2>/dev/null)
