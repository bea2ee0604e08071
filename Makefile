# tributary — build, run and test.
#
#   make            build build/tributary
#   make run        install missing Debian packages, build, serve on SQLite in ./data
#   make test       install missing packages, build, run every test suite
#   make test SANITIZE=1   the same under ASan+UBSan (built into build/san)
#   make fuzz       build the libFuzzer targets (clang) into build/fuzz
#
# Every .c file under src/ except src/main.c goes into one static library, which the
# server, the unit tests and the fuzz targets link against.

CC      ?= cc
PKGS    := libmicrohttpd yajl sqlite3 libsodium zlib libpq
CSTD    := -std=c11 -D_GNU_SOURCE
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
OPT     ?= -O2 -g

ifeq ($(SANITIZE),1)
BUILD   ?= build/san
OPT     := -O1 -g -fno-omit-frame-pointer
SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
else
BUILD   ?= build
SAN     :=
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS  += $(CSTD) $(WARN) $(OPT) $(SAN) -Isrc $(PKG_CFLAGS) -MMD -MP
LDLIBS  += $(PKG_LIBS) -lpthread -lm
LDFLAGS += $(SAN)

LIB_SRC  := $(filter-out src/main.c,$(shell find src -name '*.c' | sort))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

.PHONY: all deps run test unit fuzz clean bench
.DEFAULT_GOAL := all

all: $(BUILD)/tributary

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libtributary.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/tributary: $(BUILD)/obj/src/main.o $(BUILD)/libtributary.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libtributary.a tests/unit/unit.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit $< $(BUILD)/libtributary.a $(LDFLAGS) $(LDLIBS) -lcmocka -o $@

deps:
	@scripts/install-deps

run: deps
	@$(MAKE) --no-print-directory all
	$(BUILD)/tributary serve $(ARGS)

unit: $(UNIT_BIN)

# Every suite, one summary line "N passed, N failed" at the end (tests/run_tests.py).
test: deps
	@$(MAKE) --no-print-directory all unit $(if $(filter 1,$(SANITIZE)),,fuzz)
	@python3 tests/run_tests.py --build $(BUILD) $(if $(filter 1,$(SANITIZE)),--sanitized,)

# libFuzzer targets: clang, ASan+UBSan, linked with the library sources built alike.
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -Isrc $(PKG_CFLAGS) -fsanitize=fuzzer,address,undefined
fuzz: $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
build/fuzz/%: tests/fuzz/%.c $(LIB_SRC)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) $< $(LIB_SRC) $(PKG_LIBS) -lpthread -lm -o $@

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(BUILD)/obj/src/main.d

# The benchmark (bench/README.md): not part of `make test`. `make bench BENCH=full` adds
# the 5-million-document and 1-million-document backfill/clear scenarios; BENCH_ARGS
# passes options to bench/run.py.
bench: all
	@$(MAKE) --no-print-directory -f bench/Makefile
	BENCH_COMMAND="make bench$(if $(BENCH), BENCH=$(BENCH))$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')" \
	python3 bench/run.py --server $(BUILD)/tributary $(if $(filter full,$(BENCH)),--full) $(BENCH_ARGS)
