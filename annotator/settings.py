"""Placeholder settings so pytest-django starts before the platform lands (issue 2 replaces this)."""
SECRET_KEY = "placeholder"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_TZ = True
