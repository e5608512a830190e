"""`hemascope review ...`: a technician's review of a session's white cells, on a local web
page or from a CSV file, and the reviewed cells exported for training.

`hemascope review SESSION` is short for `hemascope review page SESSION`: the group runs
`page` when its first word is not one of its commands (a session id is hexadecimal, so it
never reads as `import`, `page` or `export-training`).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from edge.cli.options import DataDirOpt, ProfileOpt, load_with_data_dir, open_store, out
from edge.core.errors import HemascopeError

SessionArg = Annotated[str, typer.Argument(help="Session id (a unique prefix is enough).")]


class _PageByDefault(TyperGroup):
    """A group whose default command is `page`: `review SESSION` = `review page SESSION`."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["page", *args]
        return super().parse_args(ctx, args)


review_app = typer.Typer(
    cls=_PageByDefault, no_args_is_help=True, rich_markup_mode=None,
    help="Review a session's white cells. `hemascope review SESSION` (short for `review page "
    "SESSION`) serves the review page; `review import` stores a review from CSV; `review "
    "export-training` writes reviewed cells as a training set.")


@review_app.command("page")
def review_page(
    session: SessionArg,
    reviewer: Annotated[str | None, typer.Option(
        help="Who reviews (stored with every verdict; default: the session's operator).")
    ] = None,
    port: Annotated[int, typer.Option(
        help="Port on 127.0.0.1 (default 0: a free port).", min=0, max=65535)] = 0,
    profile: ProfileOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Serve the review page on 127.0.0.1 with a one-time token, and print its URL: white
    cells grouped by the model's class, relabelled from the keyboard; fields with their
    evidence, rejected with a reason. Every verdict is stored at once beside the model's
    output; the page's Done button or Ctrl-C ends the review and queues the session's next
    sync payload version. Keys are listed on the page and in docs/review.md.

    Examples:
      hemascope review 3f2a
      hemascope review 3f2a --reviewer amina --port 8765
    """
    from edge.site.review_page import ReviewServer, ReviewSession

    store = open_store(load_with_data_dir(profile, data_dir).storage.data_dir)
    row = store.session(session)
    who = reviewer or row.operator
    if not who:
        raise HemascopeError(f"session {row.id[:12]} has no operator to review in the name of",
                             "say who reviews: --reviewer NAME")
    review = ReviewSession(store, row.id, who)
    server = ReviewServer(review, port)
    out.print(f"review of session {row.id[:12]} (sample {row.sample_id}, "
              f"{len(review.model)} white cells, {len(review.fields)} fields) by {who}:",
              highlight=False, markup=False)
    out.print(server.url, highlight=False, markup=False)
    out.print("open it in a browser on this device; the page's Done button or Ctrl-C ends "
              "the review", highlight=False)
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    with server.lock:
        end = review.finish()
    queued = (f"session queued for sync as payload version {end.payload_version}"
              if end.payload_version else "sync payload unchanged")
    out.print(f"review ended: {end.cells} cell and {end.fields} field verdicts stored; {queued}",
              highlight=False)


@review_app.command("import")
def review_import(
    session: SessionArg,
    csv_file: Annotated[Path, typer.Argument(
        help="CSV with the header field,cell,label: field is the NNNNN and cell the KKK of "
        "the crop file NNNNN-cellKKK.png, label a class of the differential.",
        metavar="FILE.csv")],
    reviewer: Annotated[str | None, typer.Option(help="Who reviewed the cells.")] = None,
    profile: ProfileOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Store reviewed labels beside the model's (never over them), and queue the session's
    next sync payload version with them. Every row is checked first; one wrong row (unknown
    field, cell or label) imports nothing.

    Example:
      printf 'field,cell,label\\n3,1,lymphocyte\\n7,0,neutrophil\\n' > review.csv
      hemascope review import 3f2a review.csv --reviewer amina
    """
    from edge.site.review import import_review

    store = open_store(load_with_data_dir(profile, data_dir).storage.data_dir)
    result = import_review(store, session, csv_file, reviewer)
    out.print(f"session {result.session_id[:12]}: {result.rows} reviewed cells stored "
              f"({result.changed} relabelled, {result.rows - result.changed} confirmed)",
              highlight=False)


@review_app.command("export-training")
def review_export_training(
    out_dir: Annotated[Path, typer.Argument(
        help="New folder to write (CLASS/*.png and manifest.json).", metavar="DIR")],
    sessions: Annotated[list[str] | None, typer.Argument(
        help="Sessions to export (default: every session with reviewed cells).",
        metavar="[SESSION...]")] = None,
    profile: ProfileOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Write reviewed white cells as class folders, ready for `hemascope train classify
    DIR`, with DIR/manifest.json (sessions, model digests, counts). Cells of fields rejected
    in review are left out. No YOLO labels: the review never corrects boxes.

    Example:
      hemascope review export-training /media/usb/site-cells 3f2a 9c01
    """
    from edge.site.export_training import export_training

    store = open_store(load_with_data_dir(profile, data_dir).storage.data_dir)
    done = export_training(store, out_dir, sessions or [],
                           shlex.join(["hemascope", *sys.argv[1:]]))
    per_class = ", ".join(f"{k} {n}" for k, n in done.per_class.items()) or "none"
    out.print(f"{done.cells} reviewed cells of {done.sessions} sessions written to {done.out} "
              f"({per_class}); {done.left_out} left out with their rejected fields; no YOLO "
              "labels (the review corrects no boxes)", highlight=False)
    out.print(f"train with: hemascope train classify {done.out} --out runs/site-wbc",
              highlight=False)


def print_review(summary: dict[str, Any]) -> None:
    """The model's differential beside the reviewed one, and the agreement rate."""
    review = summary.get("review")
    if not review:
        return
    model = (summary.get("differential") or {}).get("counts", {})
    reviewed = (review["reviewed_differential"] or {}).get("counts", {})
    table = Table(title="review: model vs reviewed differential")
    for col in ("class", "model", "reviewed result", "reviewed cells: model said",
                "reviewer said"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for label in sorted({*model, *reviewed, *review["reviewed_counts"]}):
        table.add_row(label, str(model.get(label, 0)), str(reviewed.get(label, 0)),
                      str(review["model_counts"].get(label, 0)),
                      str(review["reviewed_counts"].get(label, 0)))
    agreement = ("-" if review["agreement"] is None else f"{100 * review['agreement']:.1f} %")
    rejected = review["rejected_fields"]
    table.caption = (f"{review['reviewed_cells']} cells reviewed by "
                     f"{', '.join(review['reviewers']) or 'unnamed'} (last "
                     f"{review['last_reviewed_at'][:19]}): agreement with the model "
                     f"{agreement}, {review['changed']} relabelled"
                     + ("; fields rejected in review: " + ", ".join(
                         f"{f['idx']} ({f['reason']})" for f in rejected) if rejected else ""))
    out.print(table)
