# The ragbus worker image: `ragbus worker ...`, `ragbus ask ...`, `ragbus publish ...`.
# Reproducible: every Python package (the build backend too) is installed at the version
# pinned in constraints.txt (regenerate it with scripts/lock). For a fully fixed base,
# pin the image by digest as well: FROM python:3.11-slim-bookworm@sha256:...
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=true
WORKDIR /app
COPY constraints.txt pyproject.toml README.md ./
COPY src ./src
# PIP_CONSTRAINT, unlike `-c`, also reaches pip's isolated build environment (hatchling).
RUN PIP_CONSTRAINT=/app/constraints.txt pip install . && useradd --create-home ragbus
USER ragbus
WORKDIR /home/ragbus
EXPOSE 9100
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9100/healthz')"
ENTRYPOINT ["ragbus"]
CMD ["worker", "--bus", "rabbitmq", "--stages", "all", "--host", "0.0.0.0"]
