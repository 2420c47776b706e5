"""Security of the serving ports: who is asking (authn), may they (authz), the guard that
applies both to every request, the attributes a request is judged by (request_info),
and one TLS policy for HTTPS, gRPC and the clients (tls)."""
