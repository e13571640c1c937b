# sqlfs — build, test and run.
#   make            build build/sqlfs
#   make run        install deps, build, serve on 127.0.0.1:8080 with ./data (SQLite)
#   make install    build/sqlfs to $(DESTDIR)$(PREFIX)/bin (PREFIX /usr/local; the binary
#                   contrib/sqlfs.service runs)
#   make test       install deps, check formatting, build, run unit tests and integration tests,
#                   each plain and under ASan/LSan/UBSan (zero sanitizer reports required), the
#                   unit tests built with clang (the store unit tests run on both engines, on a
#                   throw-away PostgreSQL cluster), then a fuzz smoke
#   make test-integration-pg   the integration and SDK suites with every server on PostgreSQL
#   make fuzz       libFuzzer targets, FUZZ_SECONDS (60) each; make fuzz-smoke: ~30 s in all
#   make deps       install the Debian packages the project needs (idempotent)
#   make load, make bench-hostile   load/abuse and hostile-client figures (bench/*.py)
#   make bench-replicas   exec throughput with 1, 2 and 3 replicas on one PostgreSQL database
#   make bench-pyexec     warm py-exec against an empty exec, cold python3 and node

CC      ?= cc
BUILD   ?= build
PYTHON  ?= /usr/bin/python3
PREFIX  ?= /usr/local
PKGS    := libmicrohttpd jansson sqlite3 libcrypto libarchive libseccomp libdeflate libpq libcurl
SAN     ?=

OPT     ?= -O2 -g
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2
CFLAGS  += -std=gnu11 $(OPT) $(WARN) -D_GNU_SOURCE -Isrc -MMD -MP \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -lpthread
# Bind every symbol at load: the jail child (a fork-like copy of a threaded server) must never
# enter the dynamic linker lazily.
LDFLAGS += -Wl,-z,now -Wl,-z,relro
ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

LIB_SRC  := $(shell find src -name '*.c' ! -path src/main.c ! -path 'src/jail/init/*' \
              ! -path 'src/jail/zygote/*' | sort)
# The jail's init is a program of its own (static, never sanitized), embedded in the library.
INIT_SRC := src/jail/init/jail_init.c
INIT_IMG := src/jail/init/jail_init_image.S
# The API's OpenAPI document, embedded in the library and served at GET /openapi.json.
OPENAPI_DOC := docs/openapi.json
OPENAPI_IMG := src/api/openapi_doc.S
# The warm Python's programs (docs/JAIL.md "Warm Python"): py-exec (static) and the zygote
# (CPython embedded from the rootfs's libpython), never sanitized, embedded in the library.
PY_EXEC_SRC  := src/jail/zygote/py_exec.c
# py-exec is linked against musl when it is installed (make deps): its static start-up costs a
# fraction of glibc's, on every call (docs/BENCHMARKS.md, "Warm Python"). These are expanded when
# used, so that `make run` on a new machine sees what `deps` has just installed.
PY_EXEC_CC   = $(or $(shell command -v musl-gcc 2>/dev/null),$(CC))
PYZYGOTE_SRC := src/jail/zygote/pyzygote.c src/jail/zygote/child_setup.S
PY_EMBED     = $(shell pkg-config --cflags python3-embed 2>/dev/null | sed 's/-I/-isystem /g')
PY_EMBED_LIB = $(shell pkg-config --libs python3-embed 2>/dev/null)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/src/jail/init/jail_init_image.o \
            $(BUILD)/src/jail/zygote/images.o \
            $(BUILD)/src/api/openapi_doc.o
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
# Every C file clang-format checks (.clang-format): the server, its unit tests, fuzz targets and
# the C benchmarks.
FMT_SRC   = $(shell find src tests/unit fuzz bench -name node_modules -prune -o -name '*.[ch]' -print | sort)

.PHONY: all install deps run test unit test-unit test-asan test-clang test-integration test-integration-pg test-integration-asan clean bench bench-quick \
        bench-foundation bench-deps bench-tools bench-side fmt fmt-check fuzz fuzz-smoke fuzz-build load bench-hostile \
        bench-replicas bench-history bench-egress bench-pyexec

all: $(BUILD)/sqlfs

# Made afresh each time, by appending: `ar r` would keep members of removed sources and would
# replace one object by another of the same name (api/health.o, exec/health.o).
$(BUILD)/libsqlfs.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	@rm -f $@
	$(AR) qcs $@ $^

.PRECIOUS: %/jail-init
# -static links a non-PIE executable under gcc and clang alike (clang rejects -no-pie beside it).
%/jail-init: $(INIT_SRC) src/jail/jail_proto.h
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -Os -Isrc $(WARN) -ffreestanding -fno-stack-protector -fno-pie \
		-nostdlib -static -s -o $@ $(INIT_SRC)

%/src/jail/init/jail_init_image.o: $(INIT_IMG) %/jail-init
	@mkdir -p $(@D)
	$(CC) -c -DJAIL_INIT_PATH='"$(abspath $*/jail-init)"' -o $@ $(INIT_IMG)

.PRECIOUS: %/py-exec %/sqlfs-pyzygote
%/py-exec: $(PY_EXEC_SRC) src/jail/zygote_proto.h
	@mkdir -p $(@D)
	$(PY_EXEC_CC) -std=gnu11 -O2 -Isrc $(WARN) -D_GNU_SOURCE -static -s -o $@ $(PY_EXEC_SRC)

%/sqlfs-pyzygote: $(PYZYGOTE_SRC) src/jail/zygote/child_setup.py src/jail/zygote_proto.h \
		src/jail/ids.h
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 -g -Isrc $(WARN) -D_GNU_SOURCE $(PY_EMBED) \
		-DCHILD_SETUP_PATH='"$(abspath src/jail/zygote/child_setup.py)"' -Wl,-z,now -Wl,-z,relro \
		-o $@ $(PYZYGOTE_SRC) $(PY_EMBED_LIB)

%/src/jail/zygote/images.o: src/jail/zygote/images.S %/py-exec %/sqlfs-pyzygote
	@mkdir -p $(@D)
	$(CC) -c -DPY_EXEC_PATH='"$(abspath $*/py-exec)"' \
		-DPYZYGOTE_PATH='"$(abspath $*/sqlfs-pyzygote)"' -o $@ src/jail/zygote/images.S

%/src/api/openapi_doc.o: $(OPENAPI_IMG) $(OPENAPI_DOC)
	@mkdir -p $(@D)
	$(CC) -c -DOPENAPI_DOC_PATH='"$(abspath $(OPENAPI_DOC))"' -o $@ $(OPENAPI_IMG)

$(BUILD)/sqlfs: $(BUILD)/src/main.o $(BUILD)/libsqlfs.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	@echo "  CC $<"; $(CC) $(CFLAGS) -c -o $@ $<

# Compiled and linked in one step; -MF names the dependency file (the headers the test includes)
# the same way under gcc and clang.
$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libsqlfs.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MF $@.d -Itests/unit $(LDFLAGS) -o $@ $< $(BUILD)/libsqlfs.a $(LDLIBS) -lcmocka

$(BUILD)/bench/httpbench: bench/httpbench.c
	@mkdir -p $(@D)
	$(CC) -O2 -g -Wall -Wextra -o $@ $< $$(pkg-config --cflags --libs libcurl) -lpthread

$(BUILD)/bench/spawnbench: bench/spawnbench.c
	@mkdir -p $(@D)
	$(CC) -O2 -g -Wall -Wextra -o $@ $<

bench-tools: all $(BUILD)/bench/httpbench $(BUILD)/bench/spawnbench

# The store and archive engines' own figures, without HTTP (bench/store_bench.c,
# bench/archive_bench.c: how to run them is at their top).
ENGINE_BENCH := $(BUILD)/bench/store_bench $(BUILD)/bench/archive_bench
$(ENGINE_BENCH): $(BUILD)/bench/%: bench/%.c $(BUILD)/libsqlfs.a
	@mkdir -p $(@D)
	$(CC) -O2 -g -D_GNU_SOURCE -Isrc -Itests/unit -Wall -Wextra -Wno-unused-parameter $(LDFLAGS) \
		-o $@ $< $(BUILD)/libsqlfs.a $(LDLIBS)

.PHONY: bench-engines
bench-engines: $(ENGINE_BENCH)

# Benchmarks print their figures and write bench/results/*.json (see README "Performance").
bench-foundation: bench-tools
	$(PYTHON) bench/foundation.py

# Comparison suite (sqlfs vs bubblewrap, just-bash, native): bench/results/suite*.json, then
# docs/BENCHMARKS.md and docs/img/*.png. Needs `make bench-deps` once.
bench: bench-tools
	$(PYTHON) bench/suite.py
	$(PYTHON) bench/report.py bench/results/suite.json

bench-quick: bench-tools
	$(PYTHON) bench/suite.py --quick
	$(PYTHON) bench/report.py bench/results/suite-quick.json

# bench-quick's scenarios for two binaries side by side: make bench-side OLD=path/to/old/sqlfs
bench-side: bench-tools
	$(PYTHON) bench/side_by_side.py $(OLD) $(or $(NEW),$(BUILD)/sqlfs)

# Tools the comparison needs; kept out of `make deps` so tests and CI do not need them.
bench-deps:
	@command -v bwrap >/dev/null && $(PYTHON) -c 'import matplotlib' 2>/dev/null || \
		apt-get install -y --no-install-recommends bubblewrap python3-matplotlib
	cd bench && npm install --no-audit --no-fund

deps:
	@bash scripts/deps.sh

run: deps all
	./$(BUILD)/sqlfs serve $(ARGS)

unit: $(UNIT_BIN)

test-unit: unit
	@bash scripts/run-unit.sh $(UNIT_BIN)

test-asan:
	$(MAKE) BUILD=build/asan SAN=1 OPT='-O1 -g' test-unit

# The library and unit tests built and run with clang (its warnings differ from gcc's).
test-clang:
	$(MAKE) BUILD=build/clang CC=clang all unit
	$(MAKE) BUILD=build/clang CC=clang test-unit

# The OpenAPI validator of tests/integration/test_openapi.py (node packages, tests/openapi),
# installed from its lockfile when that changes; without npm the test says it was skipped.
OPENAPI_CHECK := tests/openapi/node_modules/.package-lock.json
$(OPENAPI_CHECK): tests/openapi/package-lock.json
	@if command -v npm >/dev/null; then cd tests/openapi && npm ci --no-audit --no-fund; \
	else echo "npm is missing: the OpenAPI validator test will be skipped"; fi

# The MCP TypeScript SDK client of tests/integration/test_mcp.py (tests/mcp), the same way.
MCP_CHECK := tests/mcp/node_modules/.package-lock.json
$(MCP_CHECK): tests/mcp/package-lock.json
	@if command -v npm >/dev/null; then cd tests/mcp && npm ci --no-audit --no-fund; \
	else echo "npm is missing: the MCP SDK client test will be skipped"; fi

# The same suites against the ASan/LSan/UBSan server; fails on any sanitizer report.
test-integration-asan: $(OPENAPI_CHECK) $(MCP_CHECK)
	$(MAKE) BUILD=build/asan SAN=1 OPT='-O1 -g' build/asan/sqlfs
	PYTHON=$(PYTHON) bash scripts/integration-asan.sh

test-integration: all $(OPENAPI_CHECK) $(MCP_CHECK)
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/integration
	$(PYTHON) -m pytest -q -p no:cacheprovider python/tests

# The same suites with every server on PostgreSQL (SQLFS_TEST_DATABASE, tests/harness): a
# throw-away cluster per suite unless SQLFS_TEST_PG_URL names one.
test-integration-pg: all $(OPENAPI_CHECK) $(MCP_CHECK)
	SQLFS_TEST_DATABASE=postgres $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration
	SQLFS_TEST_DATABASE=postgres $(PYTHON) -m pytest -q -p no:cacheprovider python/tests

test: deps
	$(MAKE) fmt-check
	$(MAKE) all
	$(MAKE) test-unit
	$(MAKE) test-asan
	$(MAKE) test-clang
	$(MAKE) test-integration
	$(MAKE) test-integration-pg
	$(MAKE) test-integration-asan
	$(MAKE) fuzz-smoke

# Fuzzing (libFuzzer, clang): every fuzz/fuzz_<t>.c is linked against the library compiled with
# clang and ASan/UBSan, then run on fuzz/corpus/<t> (new inputs go to build/fuzz/work/<t>, crash
# reproducers to build/fuzz/). Fails on the first crash, leak or invariant violation.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := build/fuzz
FUZZ_CFLAGS  := -std=gnu11 -g -O1 -D_GNU_SOURCE -Isrc -Itests/unit -Wall -Wextra -Werror \
                -fno-omit-frame-pointer \
                -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_TARGETS := $(patsubst fuzz/fuzz_%.c,%,$(sort $(wildcard fuzz/fuzz_*.c)))
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/%.o) $(FUZZ_BUILD)/src/jail/init/jail_init_image.o \
                $(FUZZ_BUILD)/src/jail/zygote/images.o \
                $(FUZZ_BUILD)/src/api/openapi_doc.o
FUZZ_BIN     := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(@D)
	@echo "  CC(fuzz) $<"; $(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

$(FUZZ_BUILD)/libsqlfs.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	$(AR) qcs $@ $^

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_BUILD)/libsqlfs.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -MMD -MP -MF $@.d -o $@ $< $(FUZZ_BUILD)/libsqlfs.a $(LDLIBS)

fuzz-build: $(FUZZ_BIN)

fuzz: fuzz-build
	@bash scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# About 30 s in all: a crash-regression run of every target on its seed corpus.
fuzz-smoke: fuzz-build
	@bash scripts/fuzz.sh 4 $(FUZZ_TARGETS)

# Load and abuse test (about 1-2 min; not part of make test): bench/load.py.
load: all
	$(PYTHON) bench/load.py

# Hostile clients and scripts (about 1.5 min; not part of make test): one row per attack class
# with the server's peak RSS growth, the data dir's disk growth and the class's figure against
# their bounds (bench/hostile.py; `--docs` writes the figures into docs/BENCHMARKS.md and
# SECURITY.md). A build without the bounds takes longer: a class waits up to 60 s for an answer.
bench-hostile: all
	$(PYTHON) bench/hostile.py

# Exec throughput (execs/s of `true` and of a one-file write, a fixed number of clients on
# distinct sandboxes) with 1, 2 and 3 replicas on one throw-away PostgreSQL database, side by
# side (about 1 min; not part of make test): bench/replicas.py, bench/results/replicas.json.
bench-replicas: bench-tools
	$(PYTHON) bench/replicas.py

# History: fork of 10,000 files (latency, store growth), restore of 10,000 files, the commit
# list at 1,000 commits (about 1 min; ENGINE=postgres on a throw-away cluster):
# bench/history.py, bench/results/history*.json.
bench-history: bench-tools
	$(PYTHON) bench/history.py --engine $(or $(ENGINE),sqlite)

# Egress: a 100 MB download through the egress proxy in a jail against the same download on the
# host, side by side, and the cost of a new proxied connection (about 30 s):
# bench/egress.py, bench/results/egress.json.
bench-egress: bench-tools
	$(PYTHON) bench/egress.py

# Warm py-exec: the exec time of `py-exec -c ...` over an empty exec, against cold python3 and
# node, interleaved on one sandbox, and the zygote's and one call's memory (under 1 min;
# QUICK=1 for a short run): bench/pyexec.py, bench/results/pyexec.json.
bench-pyexec: all
	$(PYTHON) bench/pyexec.py $(if $(QUICK),--quick)

fmt:
	clang-format -i $(FMT_SRC)

fmt-check:
	@echo "  FMT-CHECK $(words $(FMT_SRC)) files"; clang-format --dry-run --Werror $(FMT_SRC)

install: $(BUILD)/sqlfs
	install -D -m 0755 $(BUILD)/sqlfs $(DESTDIR)$(PREFIX)/bin/sqlfs

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(BUILD)/src/main.d $(UNIT_BIN:=.d) $(FUZZ_LIB_OBJ:.o=.d) $(FUZZ_BIN:=.d)
