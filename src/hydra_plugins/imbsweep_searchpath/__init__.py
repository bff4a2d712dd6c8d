"""The user's own configs for imbsweep's app: ``./conf/`` and ``./sweeps/`` in the working
folder, searched ahead of the configs imbsweep ships (``pkg://imbsweep.conf``).

Kept light, as every Hydra plugin: Hydra imports it whenever any Hydra app starts, and it
changes nothing for an app whose primary config is not imbsweep's.
"""
