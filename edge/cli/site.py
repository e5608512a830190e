"""`hemascope calibrate ...`: the differential calibrated to a site from its reviewed cells
(the review itself: `edge.cli.review`)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from edge.cli.options import DataDirOpt, ProfileOpt, load_with_data_dir, out

calibrate_app = typer.Typer(help="Calibrate a classifier to this site from reviewed cells.",
                            no_args_is_help=True)


@calibrate_app.command("wbc")
def calibrate_wbc(
    sessions: Annotated[list[str], typer.Argument(
        help="Sessions whose reviewed cells teach the site (unique id prefixes).",
        metavar="SESSION...")],
    model_out: Annotated[Path, typer.Option(
        "--out", help="The calibrated model to write (.onnx; its manifest goes beside it).")],
    profile: ProfileOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Fit the white-cell differential's head to this site's reviewed cells (numpy, no
    torch), starting from the model the sessions ran with (classifiers.wbc_model); classes
    without reviewed cells keep the base model's knowledge. Then set
    classifiers.wbc_model = "OUT" in the profile.

    Example:
      hemascope calibrate wbc 3f2a 9c01 --out /var/lib/hemascope/site-wbc.onnx
    """
    from edge.site.calibrate import calibrate_wbc as calibrate
    from edge.storage.store import Store

    prof = load_with_data_dir(profile, data_dir)
    store = Store.open(prof.storage.data_dir)
    command = shlex.join(["hemascope", *sys.argv[1:]])
    result = calibrate(store, sessions, prof.classifiers.wbc_model, model_out, command=command)
    per_class = ", ".join(f"{k} {v}" for k, v in result.per_class.items())
    out.print(f"calibrated on {result.cells} reviewed cells ({per_class}) in "
              f"{result.seconds:.1f} s", highlight=False)
    out.print(f"agreement with the review: base model {result.base_accuracy:.3f}, calibrated "
              f"(cross-validated) {result.cv_accuracy:.3f}", highlight=False)
    out.print(f"written {result.model}; use it with classifiers.wbc_model = "
              f"\"{result.model}\"", highlight=False)
