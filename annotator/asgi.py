"""ASGI entry point (uvicorn ``annotator.asgi:application``)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
# Django's documentation: disable persistent connections under ASGI (the request signals that retire
# old connections do not run on the threads whose connections the views use), so one connection
# per request here unless the deployment says otherwise.
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")
application = get_asgi_application()
