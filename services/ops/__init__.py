"""Operators' tools: the state client and tables, the span collector, the trace report."""
