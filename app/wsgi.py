import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")
application = get_wsgi_application()

# A web server writes the prediction log from a thread of each process, off the request path.
from app.mlmodels.predlog import prediction_log  # noqa: E402 — needs the settings loaded above

prediction_log.background = True
