# The two set-up commands of the README. Both build .venv when it is missing
# (torch 2.13.0 CPU first, then the project with pinned dependencies) and do
# nothing more on a second run.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mkunet-installed
PYTEST_WORKERS ?= 2

.PHONY: demo test venv clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q torch==2.13.0
	$(BIN)/python -m pip install --disable-pip-version-check -q -c requirements.lock -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mkunet demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) tests

clean-venv:
	rm -rf $(VENV)
