"""A session's review beside its model output: what a technician confirmed, relabelled and
rejected, and the differential with the reviewed labels (`summary["review"]`).

Every review row must point at a white cell the differential classified in a counted field,
with a class of that model, and every rejected field at a stored field: a store where one
does not (altered by hand, or a review of another session) is an error, so no report can
claim a review it cannot show.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from edge.core.errors import HemascopeError
from edge.core.records import ClassifiedCell, FieldReview, Review, SessionRecord
from edge.storage.store import Store

REVIEWED_SCORE = 1.0  # a reviewed cell is no longer one "to review", whatever the model scored
Differential = Callable[[list[tuple[str, float]]], dict[str, Any] | None]


def check_reviews(session: SessionRecord, classes: list[str], cells: list[ClassifiedCell],
                  reviews: list[Review], field_reviews: list[FieldReview],
                  fields: set[int]) -> None:
    """Raise if a review points at no classified cell (or field) or names an unknown class."""
    known = {(c.field_idx, c.cell) for c in cells}
    fix = ("the review rows do not match the stored cells (was the database altered?); "
           "restore the database from its sync payload or backup")
    for r in reviews:
        if (r.field_idx, r.cell) not in known:
            raise HemascopeError(f"session {session.id[:12]}: a review names field {r.field_idx}"
                                 f" cell {r.cell}, which is no classified white cell", fix)
        if r.label not in classes:
            raise HemascopeError(f"session {session.id[:12]}: a review gives field {r.field_idx}"
                                 f" cell {r.cell} the class {r.label!r}, not a class of the "
                                 "model", fix)
    for f in field_reviews:
        if f.field_idx not in fields:
            raise HemascopeError(f"session {session.id[:12]}: a review rejects field "
                                 f"{f.field_idx}, which is not stored", fix)


def review_summary(store: Store, session: SessionRecord, classes: list[str],
                   differential: Differential) -> dict[str, Any] | None:
    """None when nobody reviewed the session; else the review's figures:

    - reviewed_cells, changed, agreement (share of reviewed cells whose reviewed label is the
      model's), model_counts / reviewed_counts (classes of those reviewed cells, by the model
      and by the reviewer), reviewers, last_reviewed_at: over every reviewed cell;
    - reviewed_differential: `differential` of the session's classified cells with the
      reviewed label in place of the model's where there is one (scored REVIEWED_SCORE), the
      cells of fields rejected in review left out;
    - rejected_fields: fields rejected in review (and not restored since), with reason, who
      and when.
    """
    reviews = store.reviews(session.id)
    field_reviews = store.field_reviews(session.id)
    if not reviews and not field_reviews:
        return None
    cells = store.classified_cells(session.id)
    check_reviews(session, classes, cells, reviews, field_reviews,
                  store.field_indexes(session.id))
    model = {(c.field_idx, c.cell): c.label for c in cells}
    verdict = {(r.field_idx, r.cell): r.label for r in reviews}
    rejected = [f for f in field_reviews if f.rejected]
    out_fields = {f.field_idx for f in rejected}
    changed = sum(model[k] != label for k, label in verdict.items())
    times = [r.reviewed_at for r in reviews] + [f.reviewed_at for f in field_reviews]
    return {
        "reviewed_cells": len(reviews),
        "changed": changed,
        "agreement": round(1 - changed / len(reviews), 4) if reviews else None,
        "reviewers": sorted({r.reviewer for r in [*reviews, *field_reviews] if r.reviewer}),
        "last_reviewed_at": max(times),
        "model_counts": dict(sorted(Counter(model[k] for k in verdict).items())),
        "reviewed_counts": dict(sorted(Counter(verdict.values()).items())),
        "reviewed_differential": differential(
            [(verdict[c.field_idx, c.cell], REVIEWED_SCORE) if (c.field_idx, c.cell) in verdict
             else (c.label, c.label_score) for c in cells if c.field_idx not in out_fields]),
        "rejected_fields": [{"idx": f.field_idx, "reason": f.reason, "reviewer": f.reviewer,
                             "at": f.reviewed_at} for f in rejected],
    }
