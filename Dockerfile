# planeflow: one image for web, worker and scheduler (`docker-compose.yml`).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin planeflow \
    && mkdir -p /var/lib/planeflow /etc/planeflow \
    && chown planeflow:planeflow /var/lib/planeflow
WORKDIR /srv/planeflow
COPY pyproject.toml README.md ./
COPY app ./app
COPY actors ./actors
COPY examples ./examples
RUN pip install --no-cache-dir .
# Inside the container every interface: the port is published by compose (or the PaaS).
ENV ORCH_PROJECTS_FILE=/etc/planeflow/projects.toml \
    ORCH_REPOS_DIR=/var/lib/planeflow/repos \
    ORCH_SPOOL_DIR=/var/lib/planeflow/spool \
    ORCH_WEB_HOST=0.0.0.0 \
    ORCH_WEB_PORT=8080 \
    PYTHONUNBUFFERED=1
# web: 8080; worker: Dramatiq's and planeflow's Prometheus metrics on 9191.
EXPOSE 8080 9191
# Not root: worktrees and clones belong to this user, so git's safe.directory check
# never trips (the processes that run git are the ones that created the files).
USER planeflow
HEALTHCHECK --interval=15s --timeout=5s --retries=5 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"
CMD ["planeflow", "web"]
