# `make demo` and `make test` are all a new user needs; both set up .venv first.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.clonebench-installed
OUT    ?= results/default

.PHONY: setup demo test test-fast clean-venv data tuning tuning-scenarios tuning-cnn \
        router-study results-matched results-pretrained results-fashion results-fashion-cnn \
        results-cloning results-cloning-cnn results-pnc-positions results-domain results-mixed \
        results-dynamic-expansion verdict readme results

setup: $(STAMP)

# Re-installs only when the dependency declarations change; otherwise a no-op.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test,ray]"
	@$(VENV)/bin/clonebench list > /dev/null  # fills the cache that makes `clonebench list` fast
	@touch $(STAMP)

# Runs the default experiment (split-digits, every strategy, 10 seeds)
# and writes its report, from scratch: the folder's records and cached source experts are
# removed first (so it holds exactly this experiment and the records carry the experts' cost).
# Two runs at a time (the machine's two cores), one thread each.
JOBS ?= 2
demo: setup
	@rm -rf $(OUT)/runs $(OUT)/experts
	@start=$$(date +%s); \
	$(VENV)/bin/clonebench run --out $(OUT) --force --jobs $(JOBS); status=$$?; \
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

# The committed reference results beyond the default experiment, each regenerated from scratch
# by one command (docs/tuning.md says how the tuning results chose the defaults).
tuning: setup
	rm -rf results/tuning/split-digits
	$(VENV)/bin/clonebench tune --stream split-digits --jobs $(JOBS) \
	  --out results/tuning/split-digits
	for e in 1 2 4; do rm -rf results/tuning/split-fashion-mnist/epochs-$$e; \
	  $(VENV)/bin/clonebench tune --config experiments/fashion-mnist.toml --strategies \
	    joint,finetune --seeds 100 --epochs $$e --jobs $(JOBS) \
	    --out results/tuning/split-fashion-mnist/epochs-$$e || exit 1; done

# PNC's routers compared on Fashion-MNIST validation data (documentation only: the default
# router was chosen on split-digits by the same trial budget as every strategy).
router-study: setup data
	rm -rf results/tuning/split-fashion-mnist/routers
	$(VENV)/bin/clonebench tune --config experiments/fashion-mnist.toml --strategies pnc \
	  --seeds 100 --grid pnc.routing=gaussian,autoencoder,gate \
	  pnc.router_space=input,input+target --jobs $(JOBS) \
	  --out results/tuning/split-fashion-mnist/routers

# The options each strategy uses in the other scenarios, chosen on their validation data with
# the same trial budget for every strategy (split-digits, tuning seeds 100 and 101).
tuning-scenarios: setup
	for s in cloning domain-incremental mixed; do rm -rf results/tuning/$$s-split-digits; \
	  $(VENV)/bin/clonebench tune --stream split-digits --scenario $$s --jobs $(JOBS) \
	    --out results/tuning/$$s-split-digits || exit 1; done

# The convolutional setting of split-fashion-mnist (the CNN's widths, epochs, training images
# per class, `all` = the whole training set, and the learning rate), chosen on validation data
# by joint and finetune (docs/tuning.md). Each trial is WIDTHS/EPOCHS/PER_CLASS[/LR] (LR
# defaults to the stream's 0.001); CNN_TRIALS="..." runs only those.
CNN_TRIALS ?= $(foreach w,8-16-32 16-32-64,$(foreach e,2 4,$(foreach n,1000 2000,$(w)/$(e)/$(n)))) \
              8-16-32/2/all 16-32-64/1/all 16-32-64/2/all 16-32-64/1/all/0.003 \
              16-32-64/1/all/0.01
tuning-cnn: setup data
	for t in $(CNN_TRIALS); do IFS=/ read -r w e n lr <<< "$$t"; \
	  out=results/tuning/split-fashion-mnist/cnn-$$w-e$$e-n$$n$${lr:+-lr$$lr}; rm -rf $$out; \
	  cfg=$$(mktemp --suffix=.toml); \
	  printf 'stream = "split-fashion-mnist"\n[backbone]\nsplit-fashion-mnist = "cnn:channels=%s"\n' $$w > $$cfg; \
	  test -z "$$lr" || printf '[train]\nlr = %s\n' $$lr >> $$cfg; \
	  test $$n = all || printf '[stream_options.split-fashion-mnist]\ntrain_per_class = %s\n' $$n >> $$cfg; \
	  $(VENV)/bin/clonebench tune --config $$cfg --strategies joint,finetune \
	    --grid finetune.lr_scale=1.0 --seeds 100 --epochs $$e --jobs $(JOBS) --out $$out \
	    || exit 1; rm -f $$cfg; done

results-matched: setup
	rm -rf results/memory-matched
	$(VENV)/bin/clonebench run --config experiments/memory-matched.toml --jobs $(JOBS)

results-pretrained: setup
	rm -rf results/pretrained-source
	$(VENV)/bin/clonebench run --config experiments/pretrained-source.toml --jobs $(JOBS)

results-fashion: setup data
	rm -rf results/fashion-mnist
	@start=$$(date +%s); \
	$(VENV)/bin/clonebench run --config experiments/fashion-mnist.toml --jobs $(JOBS); \
	status=$$?; echo "fashion-mnist grid wall time: $$(( $$(date +%s) - start )) s"; \
	exit $$status

results-fashion-cnn: setup data
	rm -rf results/fashion-mnist-cnn
	@start=$$(date +%s); \
	$(VENV)/bin/clonebench run --config experiments/fashion-mnist-cnn.toml --jobs $(JOBS); \
	status=$$?; echo "fashion-mnist-cnn grid wall time: $$(( $$(date +%s) - start )) s"; \
	exit $$status

# The cloning scenario with 10 shots and with all samples per cloned class, on split-digits and
# Fashion-MNIST (MLP), and on Fashion-MNIST with the CNN; the scenario's tuning first.
results-cloning: setup data
	rm -rf results/cloning
	for c in cloning-digits cloning-fashion; do for shots in 10 all; do \
	  $(VENV)/bin/clonebench run --config experiments/$$c.toml --scenario-option shots=$$shots \
	    --out results/cloning --jobs $(JOBS) --quiet || exit 1; done; done

results-cloning-cnn: setup data
	rm -rf results/cloning-cnn
	for shots in 10 all; do \
	  $(VENV)/bin/clonebench run --config experiments/cloning-cnn.toml \
	    --scenario-option shots=$$shots --out results/cloning-cnn --jobs $(JOBS) --quiet \
	    || exit 1; done

results-pnc-positions: setup data
	rm -rf results/pnc-positions-cnn
	$(VENV)/bin/clonebench run --config experiments/pnc-positions-cnn.toml --jobs $(JOBS)

results-domain: setup
	rm -rf results/domain
	$(VENV)/bin/clonebench run --config experiments/domain.toml --jobs $(JOBS)

results-mixed: setup
	rm -rf results/mixed
	$(VENV)/bin/clonebench run --config experiments/mixed.toml --jobs $(JOBS)

results-dynamic-expansion: setup
	rm -rf results/dynamic-expansion
	for s in domain-incremental mixed; do \
	  $(VENV)/bin/clonebench run --config experiments/dynamic-expansion.toml --scenario $$s \
	    --out results/dynamic-expansion --jobs $(JOBS) --quiet || exit 1; done

# The verdict map over the committed folders, then the README's generated sections.
verdict: setup
	$(VENV)/bin/clonebench verdict

readme: setup
	$(VENV)/bin/clonebench readme

results: demo tuning tuning-scenarios tuning-cnn router-study results-matched \
         results-pretrained results-fashion results-fashion-cnn results-cloning \
         results-cloning-cnn results-pnc-positions results-domain results-mixed \
         results-dynamic-expansion verdict \
         readme

# Real Fashion-MNIST with no download: Debian's package dataset-fashion-mnist puts the four IDX
# .gz files in $(FASHION_DIR), where split-fashion-mnist looks after the data root. Installs it
# where apt-get is available and we are root or sudo works; says what to do elsewhere.
# Idempotent: does nothing when the files are there.
FASHION_DIR   ?= /usr/share/datasets/fashion-mnist
FASHION_PKG   := dataset-fashion-mnist
FASHION_FILES := train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz \
                 t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz
APT_GET       ?= apt-get

data:
	@have() { for f in $(FASHION_FILES); do test -f "$(FASHION_DIR)/$$f" || return 1; done; }; \
	if have; then echo "Fashion-MNIST: already in $(FASHION_DIR)"; exit 0; fi; \
	if ! command -v $(APT_GET) >/dev/null 2>&1; then \
	  echo "Fashion-MNIST: no apt-get here. Put its four IDX files ($(FASHION_FILES)) in"; \
	  echo "  ~/.cache/clonebench/data/FashionMNIST/raw/ (or \$$CLONEBENCH_DATA/FashionMNIST/raw/),"; \
	  echo "  or run clonebench once with --download on a machine with network access."; \
	  exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo=sudo; \
	else echo "Fashion-MNIST: run as root: sudo $(APT_GET) install $(FASHION_PKG)"; exit 0; fi; \
	$$sudo $(APT_GET) install -y $(FASHION_PKG) || \
	  { $$sudo $(APT_GET) update && $$sudo $(APT_GET) install -y $(FASHION_PKG); } || exit 1; \
	if have; then echo "Fashion-MNIST: installed in $(FASHION_DIR)"; \
	else echo "Fashion-MNIST: $(FASHION_PKG) installed but $(FASHION_DIR) lacks its files"; exit 1; fi
