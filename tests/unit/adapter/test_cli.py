"""Which address and port `scaleahead serve` listens on, from its flags: plain HTTP only
on loopback, in every spelling of it."""

from __future__ import annotations

import pytest

from adapter.errors import UsageError
from adapter.serve import ServeOptions, listener


@pytest.mark.parametrize("address", ["127.0.0.1", "127.1", "127.0.1", "::1", "localhost"])
def test_plain_http_accepts_every_spelling_of_loopback(address):
    assert listener(ServeOptions(bind_address=address)) == (address, 8080, False)


@pytest.mark.parametrize("address", ["0.0.0.0", "10.1", "::", "example.com"])
def test_plain_http_refuses_other_addresses(address):
    with pytest.raises(UsageError, match="only served on loopback"):
        listener(ServeOptions(bind_address=address))
