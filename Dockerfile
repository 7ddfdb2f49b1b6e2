# Salivary follow-up imaging CDS service: gunicorn, numeric non-root user, with a healthcheck.
# Dependencies come from requirements.lock (exact versions and sha256 hashes; bash scripts/lock.sh).

# Stage 1: the service's wheel (its code, hooks/ knowledge and the vignettes), built once.
FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cds_service ./cds_service
COPY hooks ./hooks
COPY fhir_examples ./fhir_examples
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Stage 2: the image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CDS_BIND=0.0.0.0:8080 \
    CDS_ENVIRONMENT=production \
    CDS_DATA_DIR=/app/var

# The dependency layer: rebuilt only when requirements.lock changes (never by a source or README
# edit), and only with the files whose hashes the lock names.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --require-hashes --no-deps -r /tmp/requirements.lock && rm /tmp/requirements.lock

# The service itself; pip check proves the locked versions satisfy its declared dependencies.
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels && pip check

# A numeric user (UID and GID 10001): Kubernetes' runAsNonRoot can verify it without a passwd
# lookup. The SQLite feedback store (when DATABASE_URL is not set) lives in the volume.
RUN groupadd --system --gid 10001 cds \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /app cds \
    && mkdir -p /app/var && chown 10001:10001 /app/var
WORKDIR /app
VOLUME ["/app/var"]
USER 10001:10001

EXPOSE 8080
# Exec form, no shell; asks /healthz on CDS_BIND, so it follows a changed port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["python", "-m", "cds_service.cli.healthcheck"]

CMD ["gunicorn", "-c", "python:cds_service.web.gunicorn_conf", "cds_service.web.app:create_app()"]
