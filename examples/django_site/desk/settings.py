"""Settings of the example site (see manage.py): Django's few it needs, and embedq's servers."""

import os

from api_client.settings import get_settings

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-example-key")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")
INSTALLED_APPS = ["tickets"]
ROOT_URLCONF = "desk.urls"
USE_TZ = True

EMBEDQ = get_settings()
"""EMBEDQ_* from the environment, else from the env file `embedq up` writes (EMBEDQ_ENV_FILE, else .embedq/env)."""
