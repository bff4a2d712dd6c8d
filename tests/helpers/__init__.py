"""Helpers the tests share (fixtures stay in ``tests/conftest.py``): ``cli`` runs the real
command line, ``stores`` reads the real MLflow store and Optuna journal back, ``data`` makes
users' files, ``reporting`` records what ``fit`` reports, ``synthetic`` writes a synthetic
study straight into MLflow (also used by ``bench/compare_scale.py``)."""
