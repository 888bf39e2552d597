# The provider sandboxes (fake Stripe and fake bKash) in one image; the command picks which.
#   docker build -f docker/sandbox.Dockerfile -t shop-sandbox .
#   docker run shop-sandbox python -m sandbox.bkash_sandbox --host 0.0.0.0 --port 8011
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    MALLOC_ARENA_MAX=2 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

WORKDIR /app

COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY sandbox ./sandbox

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin shop
USER shop

EXPOSE 8010 8011
# The sandboxes answer any request on / (their index); the port comes from the command.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SANDBOX_PORT', '8010') + '/', timeout=2)"]
CMD ["python", "-m", "sandbox.stripe_sandbox", "--host", "0.0.0.0", "--port", "8010"]
