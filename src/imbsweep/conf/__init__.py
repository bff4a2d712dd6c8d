"""The Hydra configs imbsweep ships (package data), read as the config source
``pkg://imbsweep.conf``: ``config.yaml`` (the defaults list), one folder per group, and the
group ``sweep`` (the studies: ``imbsweep sweep NAME``). See docs/configs.md."""
