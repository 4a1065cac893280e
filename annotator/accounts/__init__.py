"""Accounts: Django's users, the API token view, and login throttling (lockouts). Per-project roles
live in ``projects``."""
