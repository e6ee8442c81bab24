FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/planeflow
COPY pyproject.toml README.md ./
COPY app ./app
COPY actors ./actors
COPY examples ./examples
RUN pip install --no-cache-dir .
ENV ORCH_PROJECTS_FILE=/etc/planeflow/projects.toml \
    ORCH_REPOS_DIR=/var/lib/planeflow/repos \
    ORCH_SPOOL_DIR=/var/lib/planeflow/spool
CMD ["planeflow", "web"]
