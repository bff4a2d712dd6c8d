"""Helpers shared by the tests, one module per topic: ``configs`` (the real config, composed),
``cli`` (the real command line in a subprocess), ``procs`` (processes and servers a test
starts), ``stores`` (the MLflow and Optuna stores read back), ``models`` (a model's parts,
typed), ``data`` (files a test trains on) and ``synthetic`` (a study written straight into
MLflow). Fixtures stay in ``tests/conftest.py``."""
