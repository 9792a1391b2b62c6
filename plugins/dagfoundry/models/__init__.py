"""Models: what the ``retraining`` and ``model_promotion`` kinds share.

- :mod:`~dagfoundry.models.tracking` — where MLflow is (connection, environment, local default)
- :mod:`~dagfoundry.models.datasets` — content digests of training and holdout sets
- :mod:`~dagfoundry.models.scoring` — predictions and holdout metrics, one definition for both kinds
- :mod:`~dagfoundry.models.registry_tags` — the tag names of the registry contract

The contract itself is ``docs/model-registry-contract.md``. Every module imports mlflow,
pandas and scikit-learn inside functions, so a factory may import them at parse time.
"""
