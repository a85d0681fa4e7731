# Kestrel control plane and worker image (one image, two commands; see docker-compose.yml).
#   docker build -t kestrel:local .
#   docker run --rm kestrel:local kestrel --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Project metadata first, then the packages (kestrel/ holds the generated kestrel.v1 protobuf code).
COPY pyproject.toml README.md ./
COPY controlplane ./controlplane
COPY worker_sdk ./worker_sdk
COPY kestrel ./kestrel
COPY dashboard ./dashboard
COPY protos ./protos
COPY examples ./examples

RUN pip install . \
 && useradd --create-home --uid 10001 --shell /usr/sbin/nologin kestrel \
 && mkdir -p /data \
 && chown kestrel:kestrel /data

USER kestrel

# Internal storage of the control plane; the gRPC API listens on all interfaces in a container.
ENV KESTREL_DATA_DIR=/data \
    KESTREL_HOST=0.0.0.0 \
    KESTREL_PORT=6570
VOLUME ["/data"]
EXPOSE 6570

CMD ["kestrel", "--help"]
