"""Point-in-time correct features, offline (one Parquet partition per day) and online.

Modules (import them directly; this package imports nothing heavy):

* :mod:`~dagfoundry.features.definition` -- the frozen configuration of a feature view;
* :mod:`~dagfoundry.features.source_readiness` -- which source partitions a date needs;
* :mod:`~dagfoundry.features.compute` -- plan, run (Spark) and publish a range of dates;
* :mod:`~dagfoundry.features.online_store` -- SQLite and Redis stores, ``get_online_features``;
* :mod:`~dagfoundry.features.materialize` -- latest offline partition to the online store;
* :mod:`~dagfoundry.features.training_set` -- labels joined as of their time.
"""
