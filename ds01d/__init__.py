"""ds01: a systemd-native agent and declarative reconciler for a shared GPU server.

Kept tiny on purpose: every ``ds01`` command imports this package first, and the CLI's
start-up time is a measured target (see ``bench/``).
"""

__version__ = "0.1.0"
