# The ragbus worker image: `ragbus worker ...`, `ragbus ask ...`, `ragbus publish ...`.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 LITELLM_LOCAL_MODEL_COST_MAP=true
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && useradd --create-home ragbus
USER ragbus
WORKDIR /home/ragbus
EXPOSE 9100
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9100/healthz')"
ENTRYPOINT ["ragbus"]
CMD ["worker", "--bus", "rabbitmq", "--stages", "all", "--host", "0.0.0.0"]
