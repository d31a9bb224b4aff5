"""Clusters for tests, benchmarks and the demo: one harness, so what the tests check is what the
benchmarks measure.

- :mod:`.local`: master, allocator and agents as services in this process (``local_cluster``), and a
  framework's helpers (``next_event``, ``run_batch``, ``short_task``, ``run_one``);
- :mod:`.processes`: each service a ``meseta`` process (``ProcessCluster``), to kill with signals;
- :mod:`.waiting`: wait for a condition with a time limit (never a bare sleep).

They need a running RabbitMQ (with its management API), etcd and dockerd (``scripts/infra.sh``).
"""
