"""Kubernetes quantities for metric values."""

from __future__ import annotations

import pytest

from adapter.quantity import format_quantity


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (1.5, "1500m"),
        (2, "2"),
        (1234.567, "1234567m"),
        (0.0001, "1m"),
        (12345678.9, "12345678900m"),
        (0.1 + 0.2, "300m"),
        (0.3001, "301m"),
    ],
)
def test_quantity(value, text):
    assert format_quantity(value) == text


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_quantity_refuses_values_that_cannot_be_rates(value):
    with pytest.raises(ValueError):
        format_quantity(value)
