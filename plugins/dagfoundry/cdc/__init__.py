"""Change data capture: Debezium events from PostgreSQL into the lake (and Snowflake).

Modules (all import heavy libraries inside functions, so a DAG factory may import them at
parse time):

- :mod:`~dagfoundry.cdc.landing` — the landing contract (columns, batch paths, batch ids)
- :mod:`~dagfoundry.cdc.connector_config` — capture description and Debezium properties
- :mod:`~dagfoundry.cdc.embedded_capture` — bounded micro-batch with the embedded engine
- :mod:`~dagfoundry.cdc.sink_pickup` — batches from a Kafka Connect sink's files
- :mod:`~dagfoundry.cdc.quality`, :mod:`~dagfoundry.cdc.signals`, :mod:`~dagfoundry.cdc.offsets`
- :mod:`~dagfoundry.cdc.mirror` — the Spark lake mirror and its atomic publish
- :mod:`~dagfoundry.cdc.tasks` — task callables a DAG factory wires together
"""
