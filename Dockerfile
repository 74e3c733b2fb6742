# One image for the web, log writer and alert processes (docker-compose.yml, docs/operations.md "Production").
# The dashboard's charting library (package.json, pinned by package-lock.json) from the npm registry;
# only its installed files reach the image, served by Django from /app/node_modules.
FROM node:20-slim AS npm
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 VAR_DIR=/app/var
WORKDIR /app
COPY . .
COPY --from=npm /build/node_modules /app/node_modules
# Editable, so the code runs from /app, next to its templates and static files.
RUN pip install -e . \
    && useradd --create-home --uid 1000 app \
    && mkdir -p /app/var && chown app /app/var
USER app

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "-v", "0", "heliconeproj.asgi:application"]
