"""`scaleahead serve`'s flags: the address and port it listens on (plain HTTP only on
loopback, in every spelling of it) and its fitting workers."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from adapter.errors import UsageError
from adapter.flags import serve_flags, serve_options
from adapter.serve import ServeOptions, listener


@pytest.mark.parametrize("address", ["127.0.0.1", "127.1", "127.0.1", "::1", "localhost"])
def test_plain_http_accepts_every_spelling_of_loopback(address):
    assert listener(ServeOptions(bind_address=address)) == (address, 8080, False)


@pytest.mark.parametrize("address", ["0.0.0.0", "10.1", "::", "example.com"])
def test_plain_http_refuses_other_addresses(address):
    with pytest.raises(UsageError, match="only served on loopback"):
        listener(ServeOptions(bind_address=address))


def _serve_options(*argv: str) -> ServeOptions:
    parser = argparse.ArgumentParser()
    serve_flags(parser)
    return serve_options(parser.parse_args(list(argv)))


def test_fit_workers_are_one_per_core_unless_a_number_is_given():
    assert _serve_options().fit_workers is None  # auto: default_workers() at start
    assert _serve_options("--fit-workers", "auto").fit_workers is None
    assert _serve_options("--fit-workers", "0").fit_workers == 0
    assert _serve_options("--fit-workers", "3").fit_workers == 3


@pytest.mark.parametrize("value", ["-1", "two", "1.5"])
def test_a_bad_number_of_fit_workers_is_refused_by_name(value):
    with pytest.raises(UsageError, match=f"--fit-workers: .*got '{value}'"):
        _serve_options("--fit-workers", value)


def test_a_state_dir_is_none_unless_given():
    assert _serve_options().state_dir is None
    assert _serve_options("--state-dir", "/var/lib/s/state").state_dir == Path("/var/lib/s/state")
