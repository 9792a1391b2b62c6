"""Retraining: what the ``retraining`` kind's tasks do, one module per step.

- :mod:`~dagfoundry.training.training_data` — labels, point-in-time join, time window and split
- :mod:`~dagfoundry.training.validation` — data checks with Great Expectations 1.x
- :mod:`~dagfoundry.training.drift` — PSI and KS per feature against the champion's training data
- :mod:`~dagfoundry.training.trainer` — loading and calling the spec's trainer entrypoint
- :mod:`~dagfoundry.training.mlflow_logging` — the MLflow run, the model version, its tags and alias

Heavy libraries (pandas, duckdb, great_expectations, scipy, mlflow) are imported inside functions.
"""
