"""Example trainers for the ``retraining`` kind (``trainer.entrypoint: include.models.<module>:<function>``)."""
