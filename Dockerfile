# One image for the API, the Dagster webserver and the Dagster daemon.
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY covr_core covr_core
COPY covr_pipelines covr_pipelines
COPY covr_api covr_api
COPY dbt_like_sql dbt_like_sql
COPY workspace.yaml ./
COPY docker/dagster.yaml ./dagster.yaml
# Embedded default only; `--build-arg CLIP=1` adds the embedding stack and bakes the open_clip weights into the
# image (COVR_HOME/models, recorded as the default), so containers never download them.
ARG CLIP=0
ENV COVR_HOME=/app/covr
RUN if [ "$CLIP" = "1" ]; then pip install --no-cache-dir '.[clip]' && covr models fetch clip; \
    else pip install --no-cache-dir .; fi

ENV DAGSTER_HOME=/app/dagster_home OMP_THREAD_LIMIT=1
RUN mkdir -p $DAGSTER_HOME && cp dagster.yaml $DAGSTER_HOME/dagster.yaml
EXPOSE 8000 3000
CMD ["uvicorn", "covr_api.main:app", "--host", "0.0.0.0", "--port", "8000"]
