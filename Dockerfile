# Salivary follow-up imaging CDS service: gunicorn, non-root, with a healthcheck.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CDS_BIND=0.0.0.0:8080 \
    CDS_ENVIRONMENT=production

WORKDIR /app

# Dependencies in their own layer: rebuilt only when pyproject.toml changes.
COPY pyproject.toml README.md ./
RUN mkdir cds_service hooks && touch cds_service/__init__.py \
    && pip install . && pip uninstall -y salivary-imaging-cds

# The service itself, with its clinical knowledge (hooks/) packaged inside the wheel.
COPY cds_service ./cds_service
COPY hooks ./hooks
RUN pip install --no-deps . && rm -rf /app/cds_service /app/hooks

# The SQLite feedback store (when DATABASE_URL is not set) lives in a volume-friendly folder.
RUN useradd --system --uid 10001 --no-create-home cds && mkdir -p /app/var && chown cds /app/var
ENV CDS_DATA_DIR=/app/var
VOLUME ["/app/var"]
USER cds

EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"

CMD ["gunicorn", "-c", "python:cds_service.web.gunicorn_conf", "cds_service.web.app:create_app()"]
