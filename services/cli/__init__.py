"""``meseta``: the command line. One module per kind of command; each registers its commands on ``app``,
in the order ``meseta --help`` lists them."""

# isort: off
from meseta.cli import services  # master, allocator, agent, collector
from meseta.cli import local  # up, demo, example, task-image
from meseta.cli import operators  # status, tables, kill, logs, policy, role, trace report
from meseta.cli import users  # users provision, users url

# isort: on
from meseta.cli.common import app, parse_attributes, parse_ports

__all__ = ["app", "local", "operators", "parse_attributes", "parse_ports", "services", "users"]
