"""The pieces of the forecaster process' boundary that need no process: the joined
metrics, the asked demand, and a message that cannot be sent."""

from __future__ import annotations

import threading
from multiprocessing import Pipe

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from adapter.forecasting.messages import Select, Selected
from adapter.forecasting.supervisor import Merged
from adapter.forecasting.worker import AskedDemand, Link, usable_state_dir
from forecaster.config import Rule
from forecaster.runtime.demand import Selection
from tests.conftest import RULE_QUERY


def _families(registry: CollectorRegistry) -> dict[str, dict[tuple, float]]:
    return {
        f.name: {(s.name, tuple(sorted(s.labels.items()))): s.value for s in f.samples}
        for f in registry.collect()
    }


def test_merged_sums_what_both_processes_count_and_keeps_the_rest():
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    for registry, calls, seconds in ((ours, 2, 0.01), (theirs, 3, 2.0)):
        counter = Counter("q_total", "Queries.", ["endpoint"], registry=registry)
        counter.labels("range").inc(calls)
        histogram = Histogram("q_seconds", "Latency.", buckets=(0.1, 1), registry=registry)
        for _ in range(calls):
            histogram.observe(seconds)
    Gauge("only_theirs", "A gauge.", registry=theirs).set(7)
    Gauge("only_ours", "A gauge.", registry=ours).set(5)

    merged = CollectorRegistry()
    merged.register(Merged(ours, lambda: list(theirs.collect())))
    got = _families(merged)

    assert got["q"][("q_total", (("endpoint", "range"),))] == 5

    def created(families: dict[str, dict[tuple, float]]) -> list[float]:
        return [v for (name, _), v in families["q"].items() if name == "q_created"]

    [first] = created(_families(ours))  # ours was made first
    [later] = created(_families(theirs))
    assert first < later and created(got) == [first]
    assert got["q_seconds"][("q_seconds_count", ())] == 5
    assert got["q_seconds"][("q_seconds_bucket", (("le", "0.1"),))] == 2
    assert got["q_seconds"][("q_seconds_bucket", (("le", "1.0"),))] == 2
    assert got["q_seconds"][("q_seconds_bucket", (("le", "+Inf"),))] == 5
    assert got["q_seconds"][("q_seconds_sum", ())] == pytest.approx(0.02 + 6.0)
    assert got["only_theirs"][("only_theirs", ())] == 7
    assert got["only_ours"][("only_ours", ())] == 5
    # One family per name in the exposition, as Prometheus requires.
    text = generate_latest(merged).decode()
    assert text.count("# TYPE q_total counter") == 1
    # Collecting again sums afresh (nothing accumulates across scrapes).
    assert _families(merged)["q"][("q_total", (("endpoint", "range"),))] == 5


def test_asked_demand_returns_the_serving_process_answer_and_fails_without_one():
    rule = Rule(name="r", query=RULE_QUERY)
    ours, theirs = Pipe()
    link = Link(ours, Counter("u_total", "Undelivered.", registry=CollectorRegistry()))
    demand = AskedDemand(link, timeout=0.5)
    answer = Selection({(("service", "a"),): 300}, frozenset({(("service", "b"),)}))

    def serving_process() -> None:
        asked = theirs.recv()
        assert isinstance(asked, Select) and asked.rule == "r"
        assert asked.labels == {(("service", "a"),): {"service": "a"}}
        demand.answer(Selected(asked.ask + 1, Selection({}, frozenset())))  # another ask's
        demand.answer(Selected(asked.ask, answer))

    thread = threading.Thread(target=serving_process)
    thread.start()
    got = demand.select(rule, {(("service", "a"),): {"service": "a"}}, 1.0)
    thread.join()
    assert got == answer

    with pytest.raises(RuntimeError, match="did not say which series to forecast"):
        demand.select(rule, {}, 2.0)  # nobody answers
    theirs.recv()


def test_a_message_that_cannot_be_sent_is_counted_and_logged(caplog):
    ours, theirs = Pipe()
    registry = CollectorRegistry()
    link = Link(ours, Counter("u_total", "Undelivered.", registry=registry))
    assert link.send(Selected(1, Selection({}, frozenset())))
    assert theirs.recv() == Selected(1, Selection({}, frozenset()))
    ours.close()
    assert not link.send(Selected(2, Selection({}, frozenset())))
    assert registry.get_sample_value("u_total") == 1
    assert "could not send Selected to the serving process" in caplog.text


def test_a_state_dir_spoilt_after_start_leaves_the_forecaster_running_without_checkpoints(
    tmp_path, caplog
):
    state = tmp_path / "state"
    assert usable_state_dir(state) == state and usable_state_dir(None) is None
    state.chmod(0o777)  # after serve checked it
    assert usable_state_dir(state) is None
    assert "--state-dir:" in caplog.text and "forecasting without checkpoints" in caplog.text
