"""Accounts use Django's User; per-project roles live in annotator.projects.Membership."""
