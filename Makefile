# The two commands of the README. Both install and start what is missing first.
.PHONY: demo test infra lint typecheck unit bench-failover

PY := .venv/bin/python

infra:
	bash scripts/infra.sh

demo: infra
	$(PY) -m meseta.cli demo

test: infra
	$(PY) -m ruff check services sdk examples tests
	bash scripts/typecheck.sh
	$(PY) -m pytest -q -n 2 -m "not serial" tests
	$(PY) -m pytest -q -m serial tests

unit: infra
	$(PY) -m pytest -q tests/unit

lint:
	$(PY) -m ruff check services sdk examples tests
	$(PY) -m ruff format --check services sdk examples tests

typecheck:
	bash scripts/typecheck.sh

bench-failover: infra
	$(PY) bench/failover.py --kills 10
