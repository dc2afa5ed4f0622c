"""WSGI entry point, served by gunicorn (``minga serve``)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "minga.settings")
application = get_wsgi_application()
