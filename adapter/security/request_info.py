"""The attributes the Kubernetes API server derives for a request (its RequestInfo),
by which a SubjectAccessReview judges it."""

from __future__ import annotations

from adapter.names import check_namespace, check_segment
from adapter.security.identity import Attributes


def request_attributes(method: str, path: str) -> Attributes:
    """The attributes the Kubernetes API server derives for a request (its RequestInfo);
    BadRequest when a segment of a resource path is not a name that means itself (so
    that what is authorized is what is served)."""
    verb = method.lower()
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) < 4 or parts[0] != "apis":
        return Attributes(verb=verb, path=path)
    group, version, rest = parts[1], parts[2], parts[3:]
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
        check_namespace(namespace)
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    for kind, segment in (("group", group), ("version", version), ("resource", resource)):
        check_segment(kind, segment)
    if name:
        check_segment("name", name)
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
