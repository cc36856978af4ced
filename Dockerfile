# One image for every process (README, "Several machines"):
#   web (the default command): gunicorn; it does not migrate.
#   worker:  python manage.py run_huey [--queue NAME]   (SIGTERM drains, then hands over)
#   migrate: python manage.py migrate --noinput          (once per release, as a job; two at
#            once are safe: the second waits for the first and finds nothing to do)
#   first admin: python manage.py createsuperuser
# Configure with env vars (see README): SECRET_KEY, ALLOWED_HOSTS, DATA_DIR (mount a volume),
# DATABASE_URL, HUEY_REDIS_URL, ARTIFACTS_URL, HUEY_WORKERS, WORKER_DRAIN_SECONDS.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    DATA_DIR=/data PORT=8000

RUN useradd --create-home --uid 1000 mlops && mkdir -p /data /app && chown mlops:mlops /data /app
WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=mlops:mlops . .
# Static files are collected at build time; the key is only needed to import settings here.
RUN SECRET_KEY=build-only python manage.py collectstatic --noinput --verbosity 0

USER mlops
VOLUME ["/data"]
EXPOSE 8000
# A worker's drain (WORKER_DRAIN_SECONDS, 20 s) plus handing over must fit in the stop
# timeout: `docker stop -t 40`, stop_grace_period: 40s, terminationGracePeriodSeconds: 40.
STOPSIGNAL SIGTERM
CMD ["sh", "-c", "exec gunicorn app.wsgi --bind 0.0.0.0:${PORT} --workers ${WEB_CONCURRENCY:-2} --no-control-socket --access-logfile -"]
