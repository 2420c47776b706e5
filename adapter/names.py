"""Names in request paths, checked as the Kubernetes API server checks them: a namespace
is a DNS-1123 label; any other segment (a metric name) is a path segment name."""

from __future__ import annotations

import json
import re

from adapter.errors import BadRequest

_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_UNSAFE = re.compile(r"[/%\x00-\x1f\x7f-\x9f]")


def check_namespace(namespace: str) -> None:
    """BadRequest unless `namespace` is a valid namespace name (a DNS-1123 label)."""
    if len(namespace) > 63 or not _NAMESPACE.match(namespace):
        raise BadRequest(
            f"invalid namespace {_quoted(namespace)}: expected a DNS-1123 label "
            "(lower-case alphanumerics and '-', at most 63 characters)"
        )


def check_segment(kind: str, name: str) -> None:
    """BadRequest unless `name` can stand as one path segment and mean itself: not empty,
    '.' or '..', without '/' or '%' (Kubernetes' path segment names) nor a control
    character (which a URL cannot carry as such)."""
    if name in ("", ".", ".."):
        raise BadRequest(f"invalid {kind} {_quoted(name)}: may not be empty, '.' or '..'")
    found = _UNSAFE.search(name)
    if found is not None:
        raise BadRequest(
            f"invalid {kind} {_quoted(name)}: may not contain {_quoted(found.group())} "
            "('/', '%' and control characters cannot stand in a path segment)"
        )


def _quoted(text: str) -> str:
    """`text` in double quotes, its control characters escaped (as Go's %q)."""
    return json.dumps(text, ensure_ascii=False)
