"""The API server: the external metrics API and its health, discovery and OpenAPI
endpoints (app), `Status` answers (status), the OpenAPI documents (openapi) and the
HTTP server under them (http)."""
