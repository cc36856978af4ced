# One image for both processes. Web (default): gunicorn. Worker: same image, command
#   python manage.py run_huey
# Configure with env vars (see README): SECRET_KEY, ALLOWED_HOSTS, DATA_DIR (mount a volume),
# DATABASE_URL, HUEY_REDIS_URL, HUEY_WORKERS.
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
CMD ["sh", "-c", "python manage.py migrate --noinput && exec gunicorn app.wsgi --bind 0.0.0.0:${PORT} --workers ${WEB_CONCURRENCY:-2} --no-control-socket --access-logfile -"]
