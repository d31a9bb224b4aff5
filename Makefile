# The two commands of the README. Both install and start what is missing first.
.PHONY: demo test infra venv lint typecheck unit bench bench-scale bench-scale-50k bench-failover bench-failover-replicated bench-peers compose-images compose-test compose-up compose-down compose-ha-up compose-ha-down

PY := .venv/bin/python

infra:
	bash scripts/infra.sh

# The Python package alone (no RabbitMQ, etcd or Docker): enough for the unit tests and the linters.
venv:
	bash scripts/infra.sh python

demo: infra
	$(PY) -m meseta.cli demo

test: infra
	$(PY) -m ruff check services sdk examples tests bench
	$(PY) -m ruff format --check services sdk examples tests bench
	bash scripts/typecheck.sh
	$(PY) -m pytest -q -n 2 -m "not serial" tests
	$(PY) -m pytest -q -m serial tests --deselect $(HA_COMPOSE_TEST)

# No broker, etcd or Docker needed (tests/unit holds only tests that use none).
unit: venv
	$(PY) -m pytest -q -n 2 tests/unit

lint: venv
	$(PY) -m ruff check services sdk examples tests bench
	$(PY) -m ruff format --check services sdk examples tests bench

typecheck: venv
	bash scripts/typecheck.sh

# The quick benchmark set (figures and plots in bench/results, method in docs/BENCHMARKS.md).
# Tasks of random length (the default --task-jitter), three fresh clusters pooled; then the same load in
# waves (every task 5 s: all that start together end together).
bench: infra
	cd bench && ../$(PY) offer_cycle.py --agents 1000 --frameworks 10 --duration 30 --task-seconds 5 --warmup 20 --limit 10 --repeat 3
	cd bench && ../$(PY) offer_cycle.py --agents 1000 --frameworks 10 --duration 30 --task-seconds 5 --warmup 20 --limit 10 --task-jitter 0 --out offer_cycle_waves.json
	cd bench && ../$(PY) broker_floor.py --round-trips 500
	cd bench && ../$(PY) launch_throughput.py --agents 100 --tasks 5000
	cd bench && ../$(PY) fairness.py --agents 20 --duration 40
	cd bench && ../$(PY) scale.py --sizes 100,1000 --duration 20 --merge

# The 10,000-agent point of the scale sweep (about 5 minutes), merged into scale.json.
bench-scale: infra
	cd bench && ../$(PY) scale.py --sizes 10000 --duration 20 --merge

bench-scale-50k: infra
	cd bench && ../$(PY) scale.py --sizes 50000 --duration 20 --merge

# Meseta beside Slurm and Docker Swarm on the same jobs (docs/BENCHMARKS.md), about 6 minutes.
bench-peers: infra
	bash scripts/infra.sh peers
	cd bench && ../$(PY) peers.py

bench-failover: infra
	$(PY) bench/failover.py --kills 10

# Failover on the replicated stack: each kind of node killed in turn, 3 rounds (about 5 minutes).
bench-failover-replicated: infra
	$(PY) bench/failover_replicated.py --rounds 3

# The compose deployment, with every image built locally (no registry needed).
compose-images: infra
	bash compose/build-images.sh

compose-test: infra
	$(PY) -m pytest -q -s tests/serial/test_compose.py

# The replicated compose stack brought up, a broker node and an etcd member killed, the example run (about 4
# minutes): in `make compose-test`, not in `make test`, which would pass 15 minutes on 2 cores with it
# (tests/e2e/ops/test_ha_compose_file.py checks the file there; tests/serial/test_replicated.py the kills).
HA_COMPOSE_TEST := tests/serial/test_compose.py::test_the_replicated_stack_survives_losing_a_broker_node_and_an_etcd_member

COMPOSE_OFFLINE := MESETA_BASE_IMAGE=meseta-base:bookworm RABBITMQ_IMAGE=meseta-infra:bookworm ETCD_IMAGE=meseta-infra:bookworm PROMETHEUS_IMAGE=meseta-prometheus:bookworm

compose-up: compose-images
	$(COMPOSE_OFFLINE) docker-compose -p meseta -f compose/compose.yaml up -d

compose-down:
	$(COMPOSE_OFFLINE) docker-compose -p meseta -f compose/compose.yaml --profile example down -v --remove-orphans

# The replicated topology (compose/ha.yaml: 3 RabbitMQ nodes, 3 etcd members, 2 masters, 2 allocators, 3 agents).
compose-ha-up: compose-images
	$(COMPOSE_OFFLINE) docker-compose -p meseta-ha -f compose/ha.yaml up -d

compose-ha-down:
	$(COMPOSE_OFFLINE) docker-compose -p meseta-ha -f compose/ha.yaml --profile example down -v --remove-orphans
