"""The review page the way a technician sees it: real headless Chromium, keys pressed on the
page, the store changed, no console error, a screenshot kept."""

import threading

import pytest

from edge.site.review_page import ReviewServer, ReviewSession
from edge.storage.store import Store
from tests.helpers.browser import chromium_page
from tests.helpers.review import make_review_session, payload_versions

# the natural width of every crop once loaded (0: failed); a promise, not wait_for_function,
# whose polling evaluates strings, which the page's Content-Security-Policy forbids
CROP_WIDTHS = ("() => Promise.all([...document.querySelectorAll('figure.tile img')].map((i) =>"
               " i.complete ? i.naturalWidth : new Promise((r) => {"
               " i.onload = () => r(i.naturalWidth); i.onerror = () => r(0); })))")


@pytest.fixture
def served(tmp_path):
    sid = make_review_session(tmp_path / "data")
    store = Store.open(tmp_path / "data")
    review = ReviewSession(store, sid, "amina")
    server = ReviewServer(review)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, review, thread, sid
    server.shutdown()
    thread.join(10)
    server.server_close()
    store.close()


def _verdicts(store: Store, sid: str) -> dict[tuple[int, int], str]:
    return {(r.field_idx, r.cell): r.label for r in store.reviews(sid)}


def test_a_technician_relabels_confirms_and_rejects_from_the_keyboard(served, tmp_path):
    server, review, thread, sid = served
    store = review.store
    with chromium_page() as seen:
        page = seen.page
        page.goto(server.url)
        page.wait_for_selector("figure.tile.current")
        # galleries by model class (the model's class order), the keys documented on the page
        assert page.locator("section.group h2").all_inner_texts() == [
            "eosinophil", "lymphocyte", "monocyte", "neutrophil"]
        assert page.locator("figure.tile").count() == 8
        assert page.locator("#fields .field").count() == 3
        assert "0 / 8 cells reviewed" in page.inner_text("#progress")
        assert "relabel as that class" in page.inner_text("aside")
        widths = page.evaluate(CROP_WIDTHS)
        assert len(widths) == 8 and 0 not in widths

        # the cursor starts on the eosinophil (field 2, cell 1): Enter confirms it
        current = page.locator("figure.tile.current")
        assert (current.get_attribute("data-field"), current.get_attribute("data-cell")) == (
            "2", "1")
        page.keyboard.press("Enter")
        # now on the first lymphocyte (field 0, cell 2): 6 relabels it as a monocyte
        page.keyboard.press("6")
        page.wait_for_selector('#progress[data-reviewed="2"]')
        assert _verdicts(store, sid) == {(2, 1): "eosinophil", (0, 2): "monocyte"}
        tile = page.locator('figure.tile[data-field="0"][data-cell="2"]')
        assert "changed" in tile.get_attribute("class")
        assert tile.locator(".verdict").inner_text() == "→ monocyte"

        # Tab twice: to the neutrophils; Shift+Enter confirms all four
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        assert page.locator("figure.tile.current").get_attribute("data-field") == "0"
        page.keyboard.press("Shift+Enter")
        page.wait_for_selector('#progress[data-reviewed="6"]')
        assert _verdicts(store, sid) == {
            (2, 1): "eosinophil", (0, 2): "monocyte", (0, 0): "neutrophil",
            (0, 1): "neutrophil", (1, 0): "neutrophil", (2, 2): "neutrophil"}

        # the confirm-all button of a class, clicked
        page.click('section.group[data-class="monocyte"] button')
        page.wait_for_selector('#progress[data-reviewed="7"]')
        assert _verdicts(store, sid)[(1, 1)] == "monocyte"

        # x: reject the current cell's field (field 0) with a reason typed on the page
        page.keyboard.press("x")
        page.keyboard.type("smudged cells")
        page.keyboard.press("Enter")
        page.wait_for_selector("#field-0.rejected")
        [verdict] = store.field_reviews(sid)
        assert (verdict.field_idx, verdict.rejected, verdict.reason, verdict.reviewer) == (
            0, True, "smudged cells", "amina")
        assert "1 field rejected" in page.inner_text("#progress")
        assert "agreement 86 %" in page.inner_text("#progress")  # 6 of 7 confirmed

        page.screenshot(path=str(tmp_path / "review-page.png"), full_page=True)
        page.click("#done")
        page.wait_for_selector("#message.info")
        thread.join(10)
        assert not thread.is_alive()  # Done ended the server
        assert not seen.errors, seen.errors
    assert (tmp_path / "review-page.png").stat().st_size > 10_000
    # the model's output is untouched; the review is queued as the next payload version
    assert [c.label for c in store.classified_cells(sid)][:3] == [
        "neutrophil", "neutrophil", "lymphocyte"]
    assert review.finish().payload_version == 2
    assert payload_versions(tmp_path / "data", sid) == [1, 2]
