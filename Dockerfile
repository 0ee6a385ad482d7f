FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY tracer ./tracer
COPY schemas ./schemas
RUN pip install --no-cache-dir -e .
ENTRYPOINT ["tracer"]
