"""Adapters: the only modules that talk to the machine (systemd, Docker, NVML, /proc, NSS).

Everything else in ds01 is pure and sees the machine only through the protocols here;
``tests/unit/test_import_contract.py`` fails when any other module imports pystemd, docker
or pynvml.
"""
