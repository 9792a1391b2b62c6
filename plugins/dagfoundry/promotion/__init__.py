"""Model promotion: champion vs challenger on one holdout, gates, check-and-set switch, audit.

- :mod:`~dagfoundry.promotion.evaluation` — both models scored on the same holdout rows
- :mod:`~dagfoundry.promotion.gates` — floors, improvement, segments, budgets (pure functions)
- :mod:`~dagfoundry.promotion.switch` — the promotion lock, check-and-set alias switch, rollback
- :mod:`~dagfoundry.promotion.audit` — tags on versions and the append-only history of a model
- :mod:`~dagfoundry.promotion.chart` — the comparison chart (PNG)
- :mod:`~dagfoundry.promotion.steps` — the DAG's task callables

Every module imports mlflow, pandas and matplotlib inside functions.
"""
