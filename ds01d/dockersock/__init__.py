"""``ds01-socket``: the Docker Engine API socket users get (``run/ds01/docker.sock``).

Shaped like the reconciler: :mod:`api` parses a request fully into a frozen value (or refuses
it), :func:`judge.judge` decides (pure), and :mod:`server` only reads, forwards what was
judged and pipes streams. See docs/security.md for what it allows and refuses.
"""
