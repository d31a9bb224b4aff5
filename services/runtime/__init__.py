"""Pieces every Meseta service shares: the etcd store and the service lifecycle."""
