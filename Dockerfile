# One image for the worker and the bridge: `ct-insider worker` / `ct-insider bridge`.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ct_insider ct_insider
COPY bridge bridge
COPY activities activities
COPY workflows workflows
COPY workers workers
COPY starters starters
COPY emulators emulators
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER app
ENTRYPOINT ["ct-insider"]
CMD ["worker"]
