"""Meseta: a two-level cluster resource manager in the spirit of Apache Mesos."""
