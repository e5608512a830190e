"""`summary["review"]`: model output and the review side by side, from the store alone."""

import sqlite3

import pytest

from edge.core.errors import HemascopeError
from edge.report.summary import differential, session_summary, white_differential
from edge.storage.store import Store
from tests.helpers.review import FIELDS, WBC_CLASSES, make_review_session


@pytest.fixture
def reviewed(tmp_path):
    sid = make_review_session(tmp_path)
    return Store.open(tmp_path), sid


def test_no_review_is_none_and_the_model_differential_is_unchanged(reviewed):
    store, sid = reviewed
    summary = session_summary(store, sid)
    assert summary["review"] is None
    assert summary["differential"]["counts"] == {"eosinophil": 1, "lymphocyte": 2,
                                                 "monocyte": 1, "neutrophil": 4}


def test_review_figures_compare_the_reviewed_cells_with_the_model(reviewed):
    store, sid = reviewed
    # field 0: confirm two, relabel one; field 1: relabel the unsure neutrophil
    store.add_reviews(sid, [(0, 0, "neutrophil"), (0, 1, "neutrophil"), (0, 2, "monocyte")],
                      "amina", "test")
    store.add_reviews(sid, [(1, 0, "lymphocyte")], "bola", "test")
    store.add_reviews(sid, [(0, 1, "ig")], "amina", "test")  # a newer verdict wins
    review = session_summary(store, sid)["review"]
    assert set(review) == {"reviewed_cells", "changed", "agreement", "reviewers",
                           "last_reviewed_at", "model_counts", "reviewed_counts",
                           "reviewed_differential", "rejected_fields"}
    assert review["reviewed_cells"] == 4
    assert review["changed"] == 3  # 0/1 -> ig, 0/2 -> monocyte, 1/0 -> lymphocyte
    assert review["agreement"] == 0.25
    assert review["reviewers"] == ["amina", "bola"]
    assert review["model_counts"] == {"lymphocyte": 1, "neutrophil": 3}
    assert review["reviewed_counts"] == {"ig": 1, "lymphocyte": 1, "monocyte": 1,
                                         "neutrophil": 1}
    assert review["rejected_fields"] == []
    # the reviewed differential: every classified cell, reviewed labels in place
    expected = [("neutrophil", 1.0), ("ig", 1.0), ("monocyte", 1.0), ("lymphocyte", 1.0),
                ("monocyte", 0.81), ("lymphocyte", 0.97), ("eosinophil", 0.72),
                ("neutrophil", 0.93)]
    width = 0.2  # the default protocol's widest interval
    assert review["reviewed_differential"] == differential(
        expected, white_differential(expected, WBC_CLASSES, width))
    assert review["reviewed_differential"]["review"] == 0  # the unsure cell was reviewed
    # ... beside the model's, which is never changed
    assert session_summary(store, sid)["differential"]["counts"]["neutrophil"] == 4


def test_a_field_rejected_in_review_leaves_the_reviewed_result_and_stays_stored(reviewed):
    store, sid = reviewed
    store.add_field_review(sid, 2, True, "stain precipitate", "amina", "test")
    summary = session_summary(store, sid)
    review = summary["review"]
    assert review["reviewed_cells"] == 0 and review["agreement"] is None
    assert [(f["idx"], f["reason"], f["reviewer"]) for f in review["rejected_fields"]] == [
        (2, "stain precipitate", "amina")]
    n_field_2 = len(FIELDS[2])
    assert review["reviewed_differential"]["classified"] == 8 - n_field_2
    assert "eosinophil" not in review["reviewed_differential"]["counts"]
    assert summary["differential"]["classified"] == 8  # model output untouched
    assert [f["idx"] for f in summary["fields"]] == [0, 1, 2]  # never deleted
    store.add_field_review(sid, 2, False, None, "bola", "test")  # restored
    again = session_summary(store, sid)["review"]
    assert again["rejected_fields"] == [] and again["reviewed_differential"]["classified"] == 8
    assert again["reviewers"] == ["bola"]  # who gave the verdicts that count


def test_a_rejection_needs_a_reason_in_the_database_itself(reviewed):
    store, sid = reviewed
    with pytest.raises(sqlite3.IntegrityError):
        store.add_field_review(sid, 0, True, "  ", "amina", "test")
    assert store.field_reviews(sid) == []


def test_a_review_of_a_cell_that_is_not_there_is_refused_not_reported(reviewed, tmp_path):
    store, sid = reviewed
    store.add_reviews(sid, [(0, 0, "neutrophil")], "amina", "test")
    store.conn.execute("UPDATE reviews SET cell = 9")  # the database altered by hand
    with pytest.raises(HemascopeError, match="field 0 cell 9, which is no classified white"):
        session_summary(store, sid)
    store.conn.execute("UPDATE reviews SET cell = 0, label = 'blast'")
    with pytest.raises(HemascopeError, match="not a class of the model"):
        session_summary(store, sid)
