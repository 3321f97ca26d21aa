# vaezoo: `make demo` and `make test` set everything up themselves (venv, packages, data).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PLUGIN_PROJECTS := $(wildcard plugins/*/pyproject.toml)
DATA_PACKAGES := dataset-fashion-mnist wordnet-base klettres-data
# The browser the report test opens pages in (tests/test_report.py; it must run when CI=true).
TEST_PACKAGES := chromium chromium-driver
DEMO_RUN ?= runs/demo

.PHONY: install data test-packages test demo bench-image bench-tabular bench-models bench-vaegan bench-conditional bench-export bench-eval bench-text-scale bench-throughput bench-distributed clean

install: $(STAMP)

# Re-installs when the core's or any plugin's pyproject.toml changes.
$(STAMP): pyproject.toml $(PLUGIN_PROJECTS)
	@$(MAKE) --no-print-directory data
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]' $(foreach p,$(PLUGIN_PROJECTS),-e ./$(dir $(p)))
	touch $(STAMP)

# Debian packages $(1), installed when running as root and missing; otherwise a note saying what they are for ($(2)).
define apt_ensure
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	else \
		echo "note: Debian packages$$missing are missing; install them as root $(2)"; \
	fi
endef

# The packaged data sets (see README).
data:
	$(call apt_ensure,$(DATA_PACKAGES),for the recipes and the demo)

test-packages:
	$(call apt_ensure,$(TEST_PACKAGES),for the browser test of vaezoo report)

test: install test-packages
	$(BIN)/python -m pytest -q

demo: install
	rm -rf $(DEMO_RUN)
	$(BIN)/vaezoo train fashion-mnist-quick --run-dir $(DEMO_RUN)
	$(BIN)/vaezoo interpolate $(DEMO_RUN) --method spherical
	$(BIN)/vaezoo report $(DEMO_RUN)
	@echo "demo finished: open $(DEMO_RUN)/report.html (or the PNG files in $(DEMO_RUN)/samples and the table in $(DEMO_RUN)/eval.json)"

# pythae lives in its own environment: it is a benchmark peer, not a dependency.
PEERS := benchmarks/.venv-peers
$(PEERS)/.installed:
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q torch==2.14.1 pythae==0.1.2
	touch $@

bench-image: install $(PEERS)/.installed
	$(BIN)/python benchmarks/image_vs_peers.py | tee benchmarks/image_vs_peers.jsonl

# scikit-learn (the peers) comes with the tabular plugin's benchmark extra.
bench-tabular: install
	$(BIN)/python -m pip install -q -e './plugins/tabular[benchmark]'
	nice $(BIN)/python benchmarks/tabular_impute.py

# The model family (issue 13): priors and posteriors on Fashion-MNIST with FID-FMNIST, MIG/DCI on
# the shapes set, a mixture prior on text. Writes benchmarks/results/model_family.jsonl.
bench-models: install
	nice $(BIN)/python benchmarks/model_family.py

# The VAE-GAN against the plain VAE at equal training seconds (issue "VAE-GAN"): FID-FMNIST and
# IW-NLL on Fashion-MNIST, mel L1, LSD and spectral flatness of klettres reconstructions (with WAVs).
# Writes benchmarks/results/vaegan.jsonl.
bench-vaegan: install
	nice $(BIN)/python benchmarks/vaegan.py

# The class-conditional VAE against its unconditional twin (issue "conditional VAE"): a classifier's
# accuracy on decoded prior samples of each class (Fashion-MNIST, WordNet part of speech, klettres
# language), and IW-NLL -log p(x|c) against -log p(x). Writes benchmarks/results/conditional.jsonl.
bench-conditional: install
	nice $(BIN)/python benchmarks/conditional.py

# Exported decoders (TorchScript, ONNX Runtime) against the Python model, batch 1 and 64 on 2
# threads, and the audio real-time factor of z -> waveform. Writes benchmarks/results/export_speed.jsonl.
bench-export: install
	nice $(BIN)/python benchmarks/export_speed.py --threads 2

# Importance-weighted evaluation (latents decoded per second, one decoder call per chunk against
# blocks) against a training step (examples per second), per modality on 2 threads.
# Writes benchmarks/results/eval_speed.jsonl.
bench-eval: install
	nice $(BIN)/python benchmarks/eval_speed.py --threads 2

bench-text-scale: install
	nice $(BIN)/python benchmarks/text_scale.py

bench-throughput: install
	nice $(BIN)/python benchmarks/throughput.py

# Training samples per second of one process (2 threads, 1 thread) against two under torchrun
# (1 thread each, the same global batch) on fashion-mnist-quick. Writes benchmarks/results/distributed_speed.jsonl.
bench-distributed: install
	nice $(BIN)/python benchmarks/distributed_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache
