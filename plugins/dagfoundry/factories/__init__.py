"""DAG factories: one module per kind, each registered in :mod:`dagfoundry.registry`."""
