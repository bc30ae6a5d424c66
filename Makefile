# `make demo` and `make test` are all a new user needs; both set up .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.clonebench-installed
OUT    ?= results/default

.PHONY: setup demo test test-fast reference clean-venv

setup: $(STAMP)

# Re-installs only when the dependency declarations change; otherwise a no-op.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test,ray]"
	@touch $(STAMP)

# Runs the default experiment (split-digits, every strategy, 5 seeds) and writes its report;
# everything is recomputed, the cached source experts included, so the records carry their cost.
demo: setup
	@rm -rf $(OUT)/experts
	@start=$$(date +%s); \
	$(VENV)/bin/clonebench run --out $(OUT) --force; status=$$?; \
	echo "default experiment wall time: $$(( $$(date +%s) - start )) s"; \
	echo "results: $(OUT)/  report: $(OUT)/report.html"; exit $$status

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

test-fast: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -m "not slow and not ray"

clean-venv:
	rm -rf $(VENV)
