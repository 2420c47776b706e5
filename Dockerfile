# syntax=docker/dockerfile:1
# scaleahead: the forecasting external metrics API server.
# Dependencies come from constraints.txt, the same pins as the README's commands.

FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY adapter adapter
COPY forecaster forecaster
RUN pip wheel --no-cache-dir --wheel-dir /wheels --constraint constraints.txt .

FROM python:3.11.14-slim-bookworm
# The wheels are bind-mounted, not copied: no layer of the image keeps them.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels scaleahead==0.1.0
# Non-root, numeric (runAsNonRoot can verify it); nothing is written outside the
# mounted --cert-dir and /tmp, so the root filesystem can be read-only.
USER 65532:65532
EXPOSE 6443
ENTRYPOINT ["scaleahead", "serve"]
