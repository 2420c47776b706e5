# syntax=docker/dockerfile:1
# scaleahead: the forecasting external metrics API server.
# Dependencies come from constraints.txt, the same pins as the README's commands.
# The version is given, as the build context has no git: --build-arg VERSION=X.Y.Z
# (scripts/release builds each release so).

FROM python:3.11.14-slim-bookworm AS build
ARG VERSION
WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY adapter adapter
COPY forecaster forecaster
RUN test -n "$VERSION" || { echo "build with --build-arg VERSION=X.Y.Z" >&2; exit 1; }; \
    SETUPTOOLS_SCM_PRETEND_VERSION="$VERSION" pip wheel --no-cache-dir --wheel-dir /wheels --constraint constraints.txt .

FROM python:3.11.14-slim-bookworm
ARG VERSION
# The wheels are bind-mounted, not copied: no layer of the image keeps them. The
# dependencies' own test suites (pandas, scipy, statsmodels, numpy: 115 MB) go in the
# same layer: nothing imports them.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels "scaleahead==${VERSION}" \
    && find "$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
        -depth -type d -name tests -exec rm -rf {} +
# Non-root, numeric (runAsNonRoot can verify it); nothing is written outside the
# mounted --cert-dir and /tmp, so the root filesystem can be read-only.
USER 65532:65532
EXPOSE 6443
ENTRYPOINT ["scaleahead", "serve"]
