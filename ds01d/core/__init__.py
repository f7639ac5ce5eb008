"""The pure core: observed-state model, actions, and ``plan``. No I/O anywhere here."""
