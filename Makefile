# Every target creates or reuses the local virtual environment itself.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo bench lint examples fuzz clean

# pip builds mcacm_sip/sip/_cparse.c, mcacm_sip/cli/_logline.c and mcacm_sip/acm/_c14n.c
# (setup.py) when a C compiler
# and Python's headers are there; without them it installs the pure-Python code (docs/sip-layer.md).
$(STAMP): pyproject.toml setup.py mcacm_sip/sip/_cparse.c mcacm_sip/cli/_logline.c \
          mcacm_sip/acm/_c14n.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)   ## the whole test suite (interop tests skip themselves if sipp/kamailio/tshark are absent)
	$(PY) -m pytest -q

demo: $(STAMP)   ## the full 10.17.7 procedure on loopback, every branch
	$(VENV)/bin/mcacm demo

bench: $(STAMP)  ## benchmarks (not tests): ratios against baselines measured in the same run
	$(PY) bench/run.py

# One long atheris run per target (RELIABILITY.md "Fuzzing"); niced, the machine may be shared.
FUZZ_RUNS    ?= 1000000
FUZZ_TARGETS ?= sip_parser xml_decoder receive_path receive_path_fa
fuzz: $(STAMP)   ## coverage-guided fuzzing: FUZZ_RUNS inputs per target (crashes: build/fuzz/)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,fuzz]'
	for t in $(FUZZ_TARGETS); do \
	  nice -n 10 $(PY) fuzz/$$t.py -runs=$(FUZZ_RUNS) -max_len=4096 -rss_limit_mb=1024 -timeout=10 \
	    -print_final_stats=1 || exit 1; \
	done

lint: $(STAMP)
	$(VENV)/bin/ruff check mcacm_sip tests bench fuzz
	$(VENV)/bin/mypy

examples: $(STAMP)  ## regenerate examples/ from the code
	$(PY) -m mcacm_sip.cli.main examples --out examples

clean:
	rm -rf $(VENV) build *.egg-info
