"""The seeds' frameworks, written with the SDK: ``batch`` (MapReduce-like, delay scheduling for data
locality), ``gang`` (MPI-like rigid jobs) and ``service`` (Marathon-like long-running services).

Each runs with ``meseta example NAME``; ``make demo`` runs ``batch`` and ``service`` side by side.
"""
