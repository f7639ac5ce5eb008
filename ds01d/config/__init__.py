"""Desired state: the files admins and users write, loaded into frozen values."""
