"""Who a request comes from and what it does, as the Kubernetes API server sees them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class User:
    """An authenticated caller."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Attributes:
    """What a request does, as the Kubernetes API server derives it (RequestInfo)."""

    verb: str
    path: str
    resource: str | None = None  # None for a non-resource URL
    namespace: str = ""
    group: str = ""
    version: str = ""
    name: str = ""

    def describe(self) -> str:
        if self.resource is None:
            return f'{self.verb} on the non-resource URL "{self.path}"'
        where = f' in namespace "{self.namespace}"' if self.namespace else ""
        return f'{self.verb} on resource "{self.resource}" of group "{self.group}"{where}'
