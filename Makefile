# Every target is a thin call of the `search` command line (python -m search ...); each one
# bootstraps what it needs: the .venv from pyproject.toml and, through the command, the data.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SEARCH := $(PY) -m search

SPACE     ?= full
BACKEND   ?=
PRUNER    ?=
TRIALS    ?=
EPOCHS    ?=
TIMEOUT   ?=
OBJECTIVE ?=
STUDY     ?=
STORAGE   ?=
SEED      ?=
WORKERS   ?=
DATASET   ?=
KEEP      ?=
ARTIFACTS ?=
MODEL     ?=
FROM_STORED ?=
MAX_PARAMS ?=
MAX_LATENCY ?=
PARETO    ?=
OUT       ?= best.yaml
CONFIG    ?= best.yaml
HOST      ?= 127.0.0.1
PORT      ?= 8080

opt = $(if $($(1)),--$(2) $($(1)))
RUN_FLAGS = --space $(SPACE) $(call opt,BACKEND,backend) $(call opt,PRUNER,pruner) $(call opt,TRIALS,trials) \
	$(call opt,EPOCHS,epochs) $(call opt,TIMEOUT,timeout) $(call opt,OBJECTIVE,objective) \
	$(call opt,STUDY,study) $(call opt,STORAGE,storage) $(call opt,SEED,seed) $(call opt,WORKERS,workers) \
	$(call opt,DATASET,dataset) $(call opt,KEEP,keep-models) $(call opt,ARTIFACTS,artifacts)

.PHONY: setup data search worker rank dashboard export train report compare clean-artifacts test lint format bench clean

# The venv is rebuilt when pyproject.toml changes; the stamp records a finished install.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed

data: setup
	$(SEARCH) data $(call opt,DATASET,dataset)

search: setup
	$(SEARCH) run $(RUN_FLAGS)

worker: setup
	$(SEARCH) worker $(call opt,STUDY,study) $(call opt,STORAGE,storage) $(call opt,TRIALS,trials)

rank: setup
	$(SEARCH) rank $(call opt,STUDY,study) $(call opt,STORAGE,storage) $(if $(PARETO),--pareto)

dashboard: setup
	$(SEARCH) dashboard $(call opt,STORAGE,storage) --host $(HOST) --port $(PORT)

export: setup
	$(SEARCH) export $(call opt,STUDY,study) $(call opt,STORAGE,storage) --out $(OUT) $(call opt,MODEL,model) \
		$(call opt,MAX_PARAMS,max-params) $(call opt,MAX_LATENCY,max-latency)

train: setup
	$(SEARCH) train $(CONFIG) $(call opt,EPOCHS,epochs) $(call opt,DATASET,dataset) $(if $(FROM_STORED),--from-stored)

report: setup
	$(SEARCH) report $(call opt,STUDY,study) $(call opt,STORAGE,storage)

compare: setup
	$(SEARCH) report --compare $(call opt,STORAGE,storage) $(call opt,DATASET,dataset)

clean-artifacts: setup
	$(SEARCH) clean-artifacts $(call opt,STORAGE,storage) $(call opt,ARTIFACTS,artifacts)

# One pytest worker per core (three measured slower: 15.3 against about 12 minutes), each taking whole
# test files so module fixtures are built once. The tests keep their data cache in data/ (tests/conftest.py),
# not in the user's: MNIST is fetched there first, so the workers never race to.
test: setup lint
	SEARCH_DATA_DIR=data $(SEARCH) data
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: setup
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) data .kt .paused reports studies.db studies.db.*.lock studies.artifacts
