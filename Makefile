# Every target creates or reuses the local virtual environment itself.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo bench lint examples clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)   ## the whole test suite (interop tests skip themselves if sipp/kamailio/tshark are absent)
	$(PY) -m pytest -q

demo: $(STAMP)   ## the full 10.17.7 procedure on loopback, every branch
	$(VENV)/bin/mcacm demo

bench: $(STAMP)  ## benchmarks (not tests): ratios against baselines measured in the same run
	$(PY) bench/run.py

lint: $(STAMP)
	$(VENV)/bin/ruff check mcacm_sip tests bench
	$(VENV)/bin/mypy

examples: $(STAMP)  ## regenerate examples/ from the code
	$(PY) -m mcacm_sip.cli.main examples --out examples

clean:
	rm -rf $(VENV) build *.egg-info
