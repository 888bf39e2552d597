# Every image of the shop, built from the repository root:
#   docker build -f docker/service.Dockerfile --build-arg SERVICE=orders --build-arg PORT=8003 -t shop-orders .
#   docker build -f docker/service.Dockerfile --target sandbox -t shop-sandbox .
# SERVICE/PORT: gateway 8000, auth 8001, catalog 8002, orders 8003, payments 8004 (tools/supervisor/;
# tests/ops checks docker-compose.yml and deploy/k8s against it). Slim, no compiler (every locked
# package ships a wheel), runs as uid 10001.
FROM python:3.11-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SHOP_VAR_DIR=/app/var
WORKDIR /app
# The runtime lock only, hash-checked: the same pins `make test` ran on (requirements/dev.txt holds them
# too). Its own layer, so a code change reuses it.
COPY requirements/main.txt /tmp/requirements.txt
RUN pip install --require-hashes -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt \
    && useradd --system --uid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin shop \
    && mkdir -p /app/var/jwt \
    && chown -R shop:shop /app/var

# The provider sandboxes (development only: docker-compose.dev.yml); the command picks Stripe or bKash.
FROM runtime AS sandbox
COPY sandbox ./sandbox
ENV PYTHONPATH=/app \
    SANDBOX_PORT=8010
USER 10001
EXPOSE 8010 8011
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['SANDBOX_PORT'] + '/', timeout=2)"]
CMD ["python", "-m", "sandbox.stripe_sandbox", "--host", "0.0.0.0", "--port", "8010"]

# One service (the default target).
FROM runtime AS service
ARG SERVICE
ARG PORT
RUN case "${SERVICE}:${PORT}" in \
        gateway:8000|auth:8001|catalog:8002|orders:8003|payments:8004) ;; \
        *) echo "build with --build-arg SERVICE=<service> --build-arg PORT=<its port>, e.g. orders and 8003" >&2; exit 1 ;; \
    esac
COPY libs ./libs
COPY services/${SERVICE}/${SERVICE} ./services/${SERVICE}/${SERVICE}
ENV PYTHONPATH=/app/libs:/app/services/${SERVICE} \
    SHOP_SERVICE=${SERVICE} \
    SHOP_SERVICE_PORT=${PORT}
USER 10001
EXPOSE ${PORT}
# Ready (database and broker reachable), the probe the distributed mode waits for.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['SHOP_SERVICE_PORT'] + '/readyz', timeout=2)"]
# exec: the service is PID 1 and gets SIGTERM itself (graceful shutdown).
CMD ["sh", "-c", "exec python -m \"$SHOP_SERVICE\" --host 0.0.0.0 --port \"$SHOP_SERVICE_PORT\""]
