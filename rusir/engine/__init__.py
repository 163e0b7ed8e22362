"""The engine every measurement runs on: `plan` (items and work units), `unit` (one unit restored
and scored), `runner` (local, sharded or on Ray via `cluster`), `records` (the one item store:
layout, atomic writes, one configuration per record) and `availability` (metrics that cannot be
computed on this machine). Studies and the report sit above it and only read its records."""
