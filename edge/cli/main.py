"""The `hemascope` command. The only module that prints."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edge.cli.audit import audit_app
from edge.cli.documents import FhirOpt, HtmlOpt, PdfOpt, write_documents
from edge.cli.options import (
    DataDirOpt,
    ProfileOpt,
    err,
    load_with_data_dir,
    open_store,
    out,
)
from edge.cli.review import print_review, review_app
from edge.cli.signing import keys_app, sign
from edge.cli.site import calibrate_app
from edge.cli.sync import bundle_app, sync_app
from edge.core.errors import HemascopeError
from edge.core.labels import FieldStatus

app = typer.Typer(
    help="hemascope: count and classify blood cells on a microscope, offline.\n\n"
    "Start with `hemascope run` (bundled model, synthetic fields), then "
    "`hemascope sessions` and `hemascope report SESSION`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(sync_app, name="sync")
app.add_typer(bundle_app, name="bundle")
app.add_typer(review_app, name="review")
app.add_typer(calibrate_app, name="calibrate")
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")
app.command()(sign)

def _print_counts(header: str, summary: dict[str, Any],
                  truth: dict[str, int] | None = None) -> None:
    """The per-class count table of a session, under a one-line header.

    `truth` (synthetic fields only) adds the renderer's exact counts, so a demo shows how
    far the model is from the truth.
    """
    out.print(header, highlight=False)
    table = Table()
    table.add_column("class")
    table.add_column("total", justify="right")
    table.add_column("per field", justify="right")
    if truth is not None:
        table.add_column("true total (synthetic)", justify="right")
    for c in summary["classes"]:
        mean = summary["mean_per_field"].get(c)
        row = [c, str(summary["totals"].get(c, 0)), "-" if mean is None else f"{mean:.2f}"]
        table.add_row(*row, *([str(truth.get(c, 0))] if truth is not None else []))
    table.caption = (f"{summary['fields_counted']} fields counted, {summary['fields_rejected']} "
                     f"rejected by quality control, {summary['fields_skipped']} unreadable")
    out.print(table)


def _print_second_stage(summary: dict[str, Any]) -> None:
    """The WBC differential and the mean ALL subtype probabilities, when they were run."""
    diff = summary.get("differential")
    if diff:
        table = Table(title="white-cell differential")
        table.add_column("class")
        table.add_column("cells", justify="right")
        table.add_column("%", justify="right")
        table.add_column("95 % interval", justify="right")
        intervals = diff.get("interval_95") or {}
        for label, n in sorted(diff["counts"].items(), key=lambda kv: -kv[1]):
            low, high = intervals.get(label, (None, None))
            table.add_row(label, str(n), f"{diff['percent'][label]:.1f}",
                          "" if low is None else f"{low:.1f}-{high:.1f}")
        table.caption = (f"{diff['classified']} white cells classified, {diff['review']} "
                         "flagged for review (score below 0.6; often a cell that looks like a "
                         "platelet)"
                         + ("; fewer than 100: percentages are imprecise"
                            if diff["classified"] < 100 else "")
                         + ("; synthetic cells are drawings, so this differential means nothing"
                            if summary["source"].startswith("synthetic") else ""))
        out.print(table)
        wbc = next((m for m in summary.get("classifiers", []) if m["role"] == "wbc"), None)
        if wbc is not None:
            cal = wbc.get("calibration")
            out.print(f"differential model {wbc['file']} sha256 {wbc['sha256'][:12]}, "
                      + (f"calibrated for this site on {cal['reviewed_cells']} reviewed cells "
                         f"(cross-validated agreement {cal['cross_validated_accuracy']:.2f}; base "
                         f"sha256 {cal['base_sha256'][:12]})" if cal
                         else "not calibrated for this site"), highlight=False)
        stain = summary.get("stain")
        if stain and stain["unfamiliar"]:
            calibrated = wbc is not None and wbc.get("calibration")
            out.print("[bold yellow]this smear's stain looks unlike the smears the differential "
                      f"was {'calibrated' if calibrated else 'trained'} on[/] (distance "
                      f"{stain['distance']:.2f}, familiar smears up to "
                      f"{stain['reference_distance']:.2f}): review its white cells before "
                      "reporting, and " + ("calibrate again if the stain, objective or camera "
                                           "changed" if calibrated else
                                           "calibrate the differential for this site")
                      + " (docs/site-calibration.md)")
        if not diff["reliable"]:
            out.print("[bold red]differential unreliable for this smear[/]: many white cells "
                      "were flagged (often a stain or camera unlike the training smears); "
                      "review the crops (evidence/SESSION/*-cell*.png) before reporting it, "
                      "and calibrate the differential for this site from the reviewed cells "
                      "(hemascope review import, then hemascope calibrate wbc)")
    subtype = summary.get("all_subtype")
    if subtype:
        table = Table(title="ALL subtype, mean probability over fields")
        table.add_column("class")
        table.add_column("mean p", justify="right")
        for label, p in subtype["mean_probability"].items():
            table.add_row(label, f"{p:.3f}")
        table.caption = (f"{subtype['fields']} fields scored; a screening aid: confirm by "
                         "smear review and immunophenotyping")
        out.print(table)


def _print_protocol(summary: dict[str, Any]) -> None:
    """Why the session stopped, as the live progress line ended."""
    p = summary["protocol"]
    line = p["progress"] if p["stop"] in p["progress"] else f"{p['progress']} · {p['stop']}"
    out.print(f"protocol {p['mode']}: {line}", markup=False, highlight=False)


def _print_clinical(summary: dict[str, Any]) -> None:
    """Estimates with their intervals, flags, and the ALL subtype call."""
    est = summary.get("estimates")
    if est:
        table = Table(title="estimates (not analyser counts)")
        for col in ("", "per field", "95 % interval", "per µL", "95 % interval", "how"):
            table.add_column(col, justify="left" if col in ("", "how") else "right")
        for key, name in (("wbc", "white cells"), ("platelets", "platelets"),
                          ("rbc", "red cells")):
            e = est[key]
            per_ul = e["per_ul"] is not None
            table.add_row(name, f"{e['per_field']:.2f}",
                          f"{e['per_field_low']:.2f}-{e['per_field_high']:.2f}",
                          f"{e['per_ul']:,}" if per_ul else "-",
                          f"{e['per_ul_low']:,}-{e['per_ul_high']:,}" if per_ul else "",
                          e["method"])
        sources = sorted({e["field_factor_source"] for e in est.values()
                          if isinstance(e, dict) and e["field_factor_source"]})
        synthetic = summary["source"].startswith("synthetic")
        table.caption = "; ".join([est["note"], *(f"factor: {s}" for s in sources)] + (
            ["synthetic fields hold far more white cells and platelets per red cell than "
             "blood, so these estimates and their flags mean nothing"] if synthetic else []))
        out.print(table)
    flags = summary.get("flags", [])
    out.print("flags: " + ("none" if not flags else f"{len(flags)}"), highlight=False)
    for f in flags:
        near = "" if f["definite"] else " (the interval reaches the threshold)"
        out.print(f"  ! {f['code']}: {f['text']}{near}", markup=False, highlight=False)
    call = summary.get("all_call")
    if call:
        out.print(f"ALL subtype ({call['aggregation']} of {call['fields']} fields): "
                  f"{call['wording']}", markup=False, highlight=False)


def _progress_bar(p: Any, seen: int, source_total: int | None) -> tuple[int, int | None]:
    """(completed, total) of the live bar: white cells or fields towards the protocol's
    target, else fields of the source."""
    if p.mode == "differential":
        return min(p.white_cells, p.target), p.target
    if p.target is not None:
        return p.fields, p.target
    return seen, source_total


MAX_ID_CHARS = 200


def _one_line_id(value: str | None) -> str | None:
    """A sample or operator id: one line of printable characters, at most MAX_ID_CHARS."""
    if value is not None and (len(value) > MAX_ID_CHARS or not value.isprintable()):
        raise typer.BadParameter(f"must be one line of at most {MAX_ID_CHARS} printable "
                                 f"characters (this one has {len(value)})")
    return value


@app.command()
def run(
    source: Annotated[str | None, typer.Option(
        "--source", "-s",
        help="synthetic[:SEED], folder:PATH, video:PATH or camera:INDEX "
        "(default: the profile's source.default).")] = None,
    profile: ProfileOpt = None,
    sample: Annotated[str, typer.Option(help="Sample / slide id written on the requisition.",
                                        callback=_one_line_id)] = "unlabelled",
    operator: Annotated[str | None, typer.Option(help="Technician name or id.",
                                                 callback=_one_line_id)] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Also write the session report as JSON here.")] = None,
    settle: Annotated[bool | None, typer.Option(
        "--settle/--every-frame",
        help="Take one field each time the stage has moved and settled (manual scanning of a "
        "live camera or a recorded video), or every frame (default: the profile's "
        "source.settle).")] = None,
    html_out: HtmlOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Capture fields, detect and count cells, store every field with its evidence image,
    until the source ends or the profile's protocol stops the session ([protocol]: a
    differential stops at 100/200/400 classified white cells, or at its field limit; Ctrl-C
    stops it too, keeping every stored field). The terminal shows the progress live.

    Fields failing quality control (focus, exposure, stain, empty, overcrowded, duplicate)
    are stored with the reason and not counted, towards the stop either.

    Examples:
      hemascope run                                  # synthetic fields, bundled model
      hemascope run --html demo-report.html          # ... and its HTML report
      hemascope run -s folder:/media/usb/slide7 --sample S-0042 --operator amina
      hemascope run -p firmware_config/profiles/rpi5-cpu.toml -s camera:0 --settle --sample S-0043
    """
    from edge.capture.sources import LimitedSource, is_live, open_source
    from edge.core.memory import release_freed_memory_early
    from edge.inference.detector import Detector
    from edge.pipeline.runner import FieldOutcome, Runner
    from edge.pipeline.second_stage import FieldClassifiers
    from edge.report.documents import Targets
    from edge.report.summary import session_summary

    release_freed_memory_early()  # a large field's memory goes back when it is freed
    prof = load_with_data_dir(profile, data_dir)
    with _stop.while_loading():  # a stop now ends the command once the models are loaded
        detector = Detector.from_config(prof.model, prof.backend, prof.thresholds,
                                        prof.signatures)
        classifiers = FieldClassifiers(prof.classifiers, detector.classes,
                                       prof.signatures.trusted())
    spec = source or prof.source.default
    src = open_source(spec, prof.source, prof.camera, prof.picamera)
    if prof.source.settle if settle is None else settle:
        from edge.capture.settle import SettledSource

        src = SettledSource(src, prof.capture)
    if is_live(spec):
        src = LimitedSource(src, prof.camera.max_fields)
    store = open_store(prof.storage.data_dir)
    total = len(getattr(src, "paths", [])) or getattr(src, "count", None)
    skipped: list[str] = []
    truth: dict[str, int] = {}
    truth_known = True
    seen = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        task = progress.add_task(f"{prof.protocol.mode}: starting", total=total)

        def on_field(_: str, outcome: FieldOutcome) -> None:
            nonlocal truth_known, seen
            if outcome.status is not FieldStatus.COUNTED:
                skipped.append(f"{outcome.status} {outcome.origin}: {outcome.reason}")
            elif outcome.truth is None:
                truth_known = False
            else:
                for c, n in outcome.truth.items():
                    truth[c] = truth.get(c, 0) + n
            seen += 1
            if outcome.progress is not None:
                done, of = _progress_bar(outcome.progress, seen, total)
                progress.update(task, description=outcome.progress.line(), completed=done,
                                total=of)

        session_id = Runner(prof, store, detector, classifiers).run(src, sample, operator,
                                                                      on_field)
    summary = session_summary(store, session_id)
    for line in skipped:
        err.print(line, markup=False, highlight=False)
    stored = "" if summary["sample_id"] == sample else f" (stored as {summary['sample_id']})"
    _print_counts(f"session {session_id[:12]}  sample {sample}{stored}", summary,
                  truth if truth_known and truth else None)
    _print_protocol(summary)
    _print_second_stage(summary)
    _print_clinical(summary)
    out.print(f"model {summary['model']['file']} sha256 {summary['model']['sha256'][:12]} "
              f"digest {detector.digest[:12]}  data {prof.storage.data_dir}", highlight=False)
    if json_out is not None or html_out is not None:
        write_documents(store, session_id, Targets(json=json_out, html=html_out))


@app.command()
def sessions(
    profile: ProfileOpt = None,
    data_dir: DataDirOpt = None,
    sample: Annotated[str | None, typer.Option(
        help="Only the sessions of this sample id (as typed at the run; found through its "
        "pseudonym when the device stores pseudonyms).")] = None,
) -> None:
    """List stored sessions, newest first.

    Example (which sessions, and which pseudonym the hub shows for them):
      hemascope sessions --sample S-0042
    """
    from edge.storage.pseudonyms import device_secret, pseudonym

    store = open_store(load_with_data_dir(profile, data_dir).storage.data_dir)
    alias = None if sample is None else pseudonym(device_secret(store.data_dir), "sample",
                                                  sample)
    wanted = None if sample is None else {sample, alias}
    table = Table()
    for col in ("session", "sample", "started", "status", "counted", "rejected", "unreadable",
                "model"):
        table.add_column(col, no_wrap=True)
    for s in store.sessions():
        if wanted is not None and s.sample_id not in wanted:
            continue
        by_status = s.fields_by_status or {}
        table.add_row(s.id[:12], s.sample_id, s.started_at[:19], s.status,
                      *(str(by_status.get(status, 0)) for status in FieldStatus),
                      s.model_sha256[:12])
    out.print(table)
    if sample is not None:
        out.print(f"sample {sample} is {alias} in payloads and at the hub", highlight=False)


@app.command()
def report(
    session: Annotated[str, typer.Argument(help="Session id (a unique prefix is enough).")],
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Where to write the JSON report (default without --html, --pdf or "
        "--fhir: SESSION.json here).")] = None,
    html_out: HtmlOpt = None,
    pdf_out: PdfOpt = None,
    fhir_out: FhirOpt = None,
    profile: ProfileOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Print a session's counts and write its reports: JSON, and on request an HTML report,
    a PDF and a FHIR R4 bundle (all written, or none).

    Examples:
      hemascope report 3f2a                                   # terminal, and 3f2a....json
      hemascope report 3f2a --html S-0042.html --pdf S-0042.pdf --fhir S-0042.fhir.json
      hemascope report 3f2a --pdf /media/usb/                 # a folder: S-0042-3f2a....pdf
    """
    from edge.report.documents import Targets
    from edge.report.summary import session_summary

    store = open_store(load_with_data_dir(profile, data_dir).storage.data_dir)
    summary = session_summary(store, session)
    _print_counts(f"session {summary['session_id'][:12]}  sample {summary['sample_id']}"
                  f"  ({summary['status']})", summary)
    _print_protocol(summary)
    _print_second_stage(summary)
    print_review(summary)
    _print_clinical(summary)
    if summary["fields_skipped"] or summary["fields_rejected"]:
        out.print("reasons for rejected and unreadable fields are in the JSON report")
    documents = html_out or pdf_out or fhir_out
    default_json = None if documents else Path(f"{summary['session_id']}.json")
    write_documents(store, summary["session_id"], Targets(
        json=json_out or default_json, html=html_out, pdf=pdf_out, fhir=fhir_out))


@app.command()
def explain(
    session: Annotated[str, typer.Argument(help="Session id (a unique prefix is enough).")],
    field: Annotated[int, typer.Argument(help="Field index, as in the report.")],
    cell: Annotated[int | None, typer.Option(
        help="Explain the differential class of this white cell (its number in the field, as "
        "in the crop file name NNNNN-cellKKK.png); without it, the field's ALL subtype.")] = None,
    image_out: Annotated[Path | None, typer.Option(
        "--out", help="Where to write the overlay PNG (default: beside the evidence).")] = None,
    profile: ProfileOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Show what a classifier decision rested on: an occlusion-sensitivity overlay (red where
    covering the image lowers the decided class's probability most).

    Examples:
      hemascope explain 3f2a 12 --cell 2      # white cell 2 of field 12
      hemascope explain 3f2a 12               # the ALL subtype scores of field 12
    """
    from edge.pipeline.explain import explain as explain_decision
    from edge.storage import layout
    from edge.storage.store import Store

    prof = load_with_data_dir(profile, data_dir)
    store = Store.open(prof.storage.data_dir)
    sid = store.session(session).id
    target = image_out or store.data_dir / layout.explained(
        layout.cell_input(sid, field, cell) if cell is not None else layout.field_input(sid, field))
    e = explain_decision(store, sid, field, cell, prof.classifiers.wbc_model,
                         prof.classifiers.all_model, target)
    out.print(f"{e.what}: stored {e.stored[0]} {e.stored[1]:.3f}, recomputed with {e.model} "
              f"{e.recomputed[0]} {e.recomputed[1]:.3f}", highlight=False)
    out.print(f"overlay written to {e.image}", highlight=False)


@app.command()
def doctor(profile: ProfileOpt = None) -> None:
    """Check that this device is ready: profile, model and digest, runtime, camera, disk,
    database integrity, sessions left running by a stopped process (closed) and clock.
    Exit code 0 when ready, 1 when a check fails.

    Example: hemascope doctor -p firmware_config/profiles/rpi5-cpu.toml
    """
    from edge.cli.doctor import FAIL, run_checks

    checks = run_checks(profile)
    table = Table()
    for col in ("check", "status", "found", "fix"):
        table.add_column(col)
    colours = {"ok": "green", "warn": "yellow", "fail": "red"}
    for c in checks:
        table.add_row(c.name, f"[{colours[c.status]}]{c.status}[/]", c.detail, c.fix)
    out.print(table)
    failed = [c.name for c in checks if c.status == FAIL]
    out.print("ready" if not failed else f"not ready: {', '.join(failed)}", highlight=False)
    raise typer.Exit(1 if failed else 0)


def _add_plugins(argv: list[str]) -> None:
    """Attach workstation command groups (train, eval, export) registered by entry points.

    Only the group being invoked is imported (all of them for top-level --help), so device
    commands such as `run` never import `training` or `export`.
    """
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for ep in entry_points(group="hemascope.commands"):
        if wanted is not None and ep.name != wanted:
            continue
        obj = ep.load()
        if isinstance(obj, typer.Typer):
            app.add_typer(obj, name=ep.name)
        else:
            app.command(ep.name)(obj)


class _Stop:
    """SIGTERM (`systemctl stop`) and SIGHUP (terminal closed) end a command as Ctrl-C does,
    except while the models load (`while_loading`): onnxruntime turns an exception raised
    inside its native initialisation into 'ImportError: initialization failed', so a stop
    that comes then (Ctrl-C too) takes effect once they are loaded, before any session."""

    def __init__(self) -> None:
        self.loading = False
        self.pending: int | None = None

    def __call__(self, signum: int, _frame: object) -> None:
        if self.loading:
            self.pending = signum
            return
        raise KeyboardInterrupt(signal.Signals(signum).name)

    @contextmanager
    def while_loading(self) -> Iterator[None]:
        self.loading = True
        try:
            yield
        finally:
            self.loading = False
        if self.pending is not None:
            raise KeyboardInterrupt(signal.Signals(self.pending).name)


_stop = _Stop()


def main() -> None:
    try:
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):  # no SIGHUP on Windows
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), _stop)
        _add_plugins(sys.argv[1:])
        app()  # typer ends a KeyboardInterrupt inside a command with exit code 130
    except HemascopeError as exc:
        err.print(f"error: {exc.problem} — {exc.fix}", markup=False, highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted: fields stored so far are kept", markup=False)
        sys.exit(130)
