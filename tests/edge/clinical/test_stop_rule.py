"""The stop rule, one field at a time: targets, rejected fields, field limit, operator stop,
no white cells, and the progress line."""

from __future__ import annotations

import pytest

from edge.clinical.stop_rule import FieldResult, Mode, Protocol, StopReason, StopRule

DIFF = Mode.DIFFERENTIAL


def test_stops_at_the_first_field_that_reaches_the_target():
    rule = StopRule(Protocol(DIFF, white_cells=100))
    for _ in range(9):
        assert not rule.add(FieldResult(True, 11)).stop  # 99 after 9 fields
    p = rule.add(FieldResult(True, 3))
    assert p.stop and p.reason == StopReason.TARGET and p.white_cells == 102 and p.fields == 10


def test_rejected_fields_never_count():
    rule = StopRule(Protocol(DIFF, white_cells=100, max_fields=3))
    for _ in range(50):
        p = rule.add(FieldResult(False, 40))
    assert not p.stop and p.white_cells == 0 and p.fields == 0 and p.rejected == 50
    p = rule.add(FieldResult(True, 60))
    assert not p.stop and p.white_cells == 60
    assert rule.add(FieldResult(True, 40)).reason == StopReason.TARGET


def test_field_limit_and_what_comes_after_a_stop():
    rule = StopRule(Protocol(DIFF, white_cells=400, max_fields=5))
    for _ in range(4):
        assert not rule.add(FieldResult(True, 10)).stop
    p = rule.add(FieldResult(True, 10))
    assert p.stop and p.reason == StopReason.FIELD_LIMIT and p.white_cells == 50
    # A field still in flight when the runner stopped is counted; the reason stays.
    p = rule.add(FieldResult(True, 500))
    assert p.reason == StopReason.FIELD_LIMIT and p.white_cells == 550 and p.fields == 6


def test_operator_stop():
    rule = StopRule(Protocol(DIFF, white_cells=200))
    rule.add(FieldResult(True, 30))
    p = rule.operator_stop()
    assert p.stop and p.reason == StopReason.OPERATOR and p.more_fields == 0
    assert "stopped by the operator" in p.line()
    assert rule.add(FieldResult(True, 300)).reason == StopReason.OPERATOR


def test_zero_white_cells_gives_no_estimate_and_only_the_limit_stops():
    rule = StopRule(Protocol(DIFF, white_cells=100, max_fields=20))
    for i in range(19):
        p = rule.add(FieldResult(True, 0))
        assert not p.stop and p.more_fields is None, i
    assert p.line() == "white cells 0/100 · fields 19 · more fields: not yet known"
    assert rule.add(FieldResult(True, 0)).reason == StopReason.FIELD_LIMIT


def test_progress_line_and_estimate_from_the_running_mean():
    rule = StopRule(Protocol(DIFF, white_cells=200))
    for cells in [3] * 40 + [17]:  # 137 white cells in 41 fields: 3.34 per field
        p = rule.add(FieldResult(True, cells))
    assert p.white_cells == 137 and p.fields == 41
    assert p.more_fields == 19  # ceil(63 / (137 / 41)) = ceil(18.85)
    assert p.line() == "white cells 137/200 · fields 41 · about 19 more fields"
    rule.add(FieldResult(False))
    assert rule.progress.line() == \
        "white cells 137/200 · fields 41 · rejected 1 · about 19 more fields"


def test_estimate_is_capped_by_the_field_limit():
    rule = StopRule(Protocol(DIFF, white_cells=400, max_fields=12))
    assert rule.add(FieldResult(True, 2)).more_fields == 11


@pytest.mark.parametrize("mode", [Mode.CBC, Mode.ALL_SCREEN])
def test_cbc_and_all_screen_stop_at_a_number_of_accepted_fields(mode):
    rule = StopRule(Protocol(mode, fields=3))
    assert rule.add(FieldResult(True)).line() == "fields 1/3 · about 2 more fields"
    rule.add(FieldResult(False))
    assert not rule.add(FieldResult(True)).stop
    p = rule.add(FieldResult(True))
    assert p.stop and p.reason == StopReason.TARGET and p.fields == 3 and p.rejected == 1


def test_protocol_validation():
    with pytest.raises(ValueError, match="100, 200, 400"):
        Protocol(DIFF, white_cells=150)
    with pytest.raises(ValueError):
        Protocol(Mode.CBC, fields=0)
    with pytest.raises(ValueError):
        StopRule(Protocol(DIFF)).add(FieldResult(True, -1))
    assert Protocol(Mode.CBC, white_cells=150).white_cells == 150  # ignored outside diff


def test_cbc_without_a_field_target_runs_until_the_source_ends_or_the_limit():
    rule = StopRule(Protocol(Mode.CBC))
    for _ in range(30):
        p = rule.add(FieldResult(True, 5))
    assert not p.stop and p.target is None and p.more_fields is None
    assert p.line() == "fields 30"
    capped = StopRule(Protocol(Mode.CBC, max_fields=4))
    assert capped.add(FieldResult(True)).line() == "fields 1 · about 3 more fields"
    for _ in range(3):
        p = capped.add(FieldResult(True))
    assert p.reason == StopReason.FIELD_LIMIT and p.line() == "fields 4 · field limit reached"
