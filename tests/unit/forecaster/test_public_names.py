"""The library's public names: each one listed resolves, and the list is the mapping's."""

from __future__ import annotations

import forecaster


def test_every_public_name_resolves_to_its_module():
    assert forecaster.__all__ == sorted(forecaster._PUBLIC)
    for name, module in forecaster._PUBLIC.items():
        obj = getattr(forecaster, name)
        assert getattr(obj, "__module__", module).startswith(module), name
