"""read_answer: a matrix read series by series gives what decoding it whole gives, and
every other answer is decoded as JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from forecaster.sources.matrix import points, read_answer

TRICKY = {"__name__": "up", "job": 'a"result":[1],"b', "path": "]},{\\"}


def _matrix(**extra: object) -> dict:
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {"metric": TRICKY, "values": [[1700000000, "1.5"], [1700000060, "NaN"]]},
                {"metric": {"job": "b"}, "values": [[1700000000.0, "+Inf"], [1700000060, "2"]]},
                {"metric": {}, "values": []},
            ],
        },
        **extra,
    }


@pytest.mark.parametrize("indent", [None, 2])
def test_a_matrix_is_read_series_by_series_as_decoding_it_whole_would(indent):
    whole = _matrix(warnings=['a warning with "result": in it'])
    answer = read_answer(json.dumps(whole, indent=indent).encode())
    assert answer["status"] == "success" and answer["warnings"] == whole["warnings"]
    assert answer["data"]["resultType"] == "matrix"
    expected = [points(item) for item in whole["data"]["result"]]
    assert len(answer["data"]["result"]) == 3
    for (labels, ts, vs), (want_labels, want_ts, want_vs) in zip(
        answer["data"]["result"], expected, strict=True
    ):
        assert labels == want_labels and "__name__" not in labels
        assert ts.dtype == np.int64 and vs.dtype == np.float64
        np.testing.assert_array_equal(ts, want_ts)
        np.testing.assert_array_equal(vs, want_vs)
    assert answer["data"]["result"][0][0]["job"] == TRICKY["job"]
    assert np.isnan(answer["data"]["result"][0][2][1])


@pytest.mark.parametrize(
    "body",
    [
        {
            "status": "success",
            "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "2"]}]},
        },
        {"status": "error", "errorType": "bad_data", "error": "parse error"},
        {"status": "success", "data": ["up", "http_requests_total"]},
    ],
)
def test_every_other_answer_is_decoded_as_json(body):
    assert read_answer(json.dumps(body).encode()) == body


def test_a_matrix_whose_result_comes_first_is_decoded_whole_into_points_too():
    """Another server's key order: the result before its resultType."""
    whole = _matrix()
    data = whole["data"]
    reordered = {"status": "success", "data": {"result": data["result"], "resultType": "matrix"}}
    answer = read_answer(json.dumps(reordered).encode())
    [(labels, ts, vs), *_] = answer["data"]["result"]
    assert labels == {k: v for k, v in TRICKY.items() if k != "__name__"}
    np.testing.assert_array_equal(ts, [1700000000, 1700000060])
    assert vs[0] == 1.5 and np.isnan(vs[1])


@pytest.mark.parametrize("cut", [40, 120, -3])
def test_a_cut_short_answer_is_a_value_error(cut):
    text = json.dumps(_matrix()).encode()
    with pytest.raises(ValueError):
        read_answer(text[:cut])
