"""The attributes the Kubernetes API server derives for a request (its RequestInfo),
by which a SubjectAccessReview judges it."""

from __future__ import annotations

from adapter.security.identity import Attributes


def request_attributes(method: str, path: str, group_prefix: str = "/apis/") -> Attributes:
    """The attributes the Kubernetes API server derives for a request (its RequestInfo)."""
    verb = method.lower()
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) < 4 or parts[0] != "apis":
        return Attributes(verb=verb, path=path)
    group, version, rest = parts[1], parts[2], parts[3:]
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    if method in ("GET", "HEAD"):
        verb = "get" if name else "list"
    return Attributes(
        verb=verb,
        path=path,
        resource=resource,
        namespace=namespace,
        group=group,
        version=version,
        name=name,
    )
