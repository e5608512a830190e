"""Make Ultralytics run fully offline: no DNS, no GitHub, no weight or font downloads.

Must be called before `ultralytics` is imported: it reads these settings at import time.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from platformdirs import user_cache_dir


def configure_offline() -> Path:
    """Point Ultralytics at a private config dir with a local font and sync disabled."""
    config_dir = Path(os.environ.get("HEMASCOPE_YOLO_CONFIG_DIR", user_cache_dir("hemascope")))
    config_dir = config_dir / "ultralytics-config"
    font_dir = config_dir / "Ultralytics"
    font_dir.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ.setdefault("YOLO_VERBOSE", "True")
    font = font_dir / "Arial.ttf"
    if not font.exists():
        # Ultralytics downloads Arial.ttf for plots; matplotlib (its dependency) ships DejaVu.
        import matplotlib

        dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        shutil.copyfile(dejavu, font)
        shutil.copyfile(dejavu, font_dir / "Arial.Unicode.ttf")
    from ultralytics.utils import SETTINGS

    SETTINGS.update({"sync": False, "clearml": False, "comet": False, "dvc": False,
                     "mlflow": False, "raytune": False, "tensorboard": False, "wandb": False})
    return config_dir
