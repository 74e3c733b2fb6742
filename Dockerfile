# One image for the web, log writer and alert processes (docker-compose.yml, docs/operations.md "Production").
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 VAR_DIR=/app/var
WORKDIR /app
COPY . .
# Editable, so the code runs from /app, next to its templates and static files.
RUN pip install -e . \
    && useradd --create-home --uid 1000 app \
    && mkdir -p /app/var && chown app /app/var
USER app

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "-v", "0", "heliconeproj.asgi:application"]
