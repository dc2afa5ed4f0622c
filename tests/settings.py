"""Settings for the test suite: the node's own settings, a test database chosen by
``MINGA_TEST_DATABASE_URL`` (SQLite in a temporary folder when unset), and a test-only app
holding a concrete shared model."""

import os
import tempfile

os.environ.setdefault("MINGA_VAR_DIR", tempfile.mkdtemp(prefix="minga-test-"))
os.environ.setdefault("MINGA_SECRET_KEY", "insecure-test-key-used-only-by-the-test-suite")

import dj_database_url

from minga.settings import *  # noqa: F403
from minga.settings import DATABASES, INSTALLED_APPS, VAR_DIR

_url = os.environ.get("MINGA_TEST_DATABASE_URL", "").strip()
if _url:
    _options = DATABASES["default"].get("OPTIONS", {})
    DATABASES["default"] = dj_database_url.parse(_url)
    if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        DATABASES["default"]["OPTIONS"] = _options
else:
    # A file, not memory: worker processes and the browser's live server open the same database.
    DATABASES["default"]["NAME"] = str(VAR_DIR / "test.sqlite3")
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}

INSTALLED_APPS = [*INSTALLED_APPS, "tests.sharedapp"]
ROOT_URLCONF = "tests.urls"

# Argon2 still, but cheap: the suite creates hundreds of accounts.
PASSWORD_HASHERS = ["tests.hashers.FastArgon2PasswordHasher"]
