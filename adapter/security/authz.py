"""Authorization: a SubjectAccessReview per (user, request attributes), cached briefly;
the Kubernetes API unreachable denies (fails closed)."""

from __future__ import annotations

import fnmatch

from adapter.cluster.kube import Kube, KubeError
from adapter.security.cache import TTLCache
from adapter.security.identity import Attributes, User
from adapter.security.options import AuthorizationSettings


class Authorizer:
    """SubjectAccessReview per (user, attributes), cached; the API unreachable denies."""

    def __init__(self, settings: AuthorizationSettings, kube: Kube) -> None:
        self.settings = settings
        self.kube = kube
        self._cache = TTLCache()

    def always_allowed(self, path: str) -> bool:
        return any(
            fnmatch.fnmatchcase(path, p) if p.endswith("*") else path == p
            for p in self.settings.always_allow_paths
        )

    def cached(self, user: User, attrs: Attributes) -> tuple[bool, str] | None:
        hit, value = self._cache.get((user, attrs))
        return value if hit else None  # type: ignore[no-any-return]

    def authorize(self, user: User, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason); blocking on a cache miss."""
        cached = self.cached(user, attrs)
        if cached is not None:
            return cached
        try:
            allowed, reason = self.kube.access_review(user, attrs)
        except KubeError as err:
            return False, f"the authorization check failed, so access is denied: {err}"
        ttl = self.settings.allowed_ttl if allowed else self.settings.denied_ttl
        self._cache.put((user, attrs), (allowed, reason), ttl)
        return allowed, reason
