"""The Mesos v1 scheduler HTTP API gateway: existing Mesos frameworks (pymesos, ...) on Meseta unchanged.

``meseta gateway`` serves ``POST /api/v1/scheduler`` and ``GET /version`` and speaks Meseta's wire
contract on the framework's behalf, one SDK client per subscription (docs/MESOS_API.md).
"""
