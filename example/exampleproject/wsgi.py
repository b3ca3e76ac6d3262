"""
WSGI entry point for the example project, e.g.
`gunicorn --chdir example exampleproject.wsgi`.
"""

import os
import sys
from pathlib import Path

from django.core.wsgi import get_wsgi_application

# Same reason as in manage.py: serve a plain checkout without installing it.
REPO_ROOT = str(Path(__file__).resolve().parent.parent.parent)
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleproject.settings")

application = get_wsgi_application()
