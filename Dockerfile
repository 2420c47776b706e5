# scaleahead: the forecasting external metrics API server.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY adapter adapter
COPY forecaster forecaster
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels scaleahead && rm -rf /wheels
# Non-root; nothing is written at run time, so the root filesystem can be read-only.
USER 65532:65532
EXPOSE 6443
ENTRYPOINT ["scaleahead"]
CMD ["serve", "--config", "/etc/scaleahead/config.yaml", \
     "--tls-cert-file", "/var/run/serving-cert/tls.crt", \
     "--tls-private-key-file", "/var/run/serving-cert/tls.key"]
