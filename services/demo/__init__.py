"""The demo: a local cluster with two frameworks and a live view."""
