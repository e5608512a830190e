"""Train an image classifier on class-folder datasets from one or more labs, offline, with
torch only.

Every epoch draws `epoch_size` training images with replacement, each lab with the same
share and, within a lab, each class (`balance`). `lab_adversary` and `lab_align` push the
embedding to hide which lab a crop came from (`training.lab_invariance`). Checkpoints
(RUN/train/weights/last.pt every epoch, best.pt by val macro-F1) hold plain tensors and
numbers (loadable with weights_only=True); `--resume` continues from last.pt.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from edge.core.errors import HemascopeError
from edge.core.files import file_sha256
from edge.inference.dyes import METHOD as DYES
from edge.inference.dyes import normalise
from training.augment import (
    geometric_jitter,
    hed_jitter,
    resolution_jitter,
    scale_jitter,
    stain_jitter,
    tone_jitter,
)
from training.classify_data import CLASS_SHARES, Source, load_pixels, read_class_folders
from training.classify_metrics import classification_report
from training.classify_model import ARCHITECTURES, build_model
from training.lab_invariance import LabAdversary, class_mean_gap, ramp, shared_classes
from training.mixstyle import MixStyle, attach
from training.provenance import Segments
from training.stain_mix import StainBank
from training.unlabelled import consistency_loss, load_unlabelled

CHECKPOINT_FORMAT = "hemascope-classifier/1"


@dataclass
class ClassifyTrainConfig:
    sources: list[Source]
    out: Path
    arch: str = "lite0"  # see training.classify_model.ARCHITECTURES
    imgsz: int = 128
    epochs: int = 30
    epoch_size: int = 0  # training images drawn per epoch (0: the training set's size)
    batch: int = 32
    lr: float = 1e-3
    device: str = "cpu"
    val_fraction: float = 0.2
    seed: int = 0
    balance: bool = True  # every lab drawn equally often; within it, classes by class_share
    class_share: str = "equal"  # training.classify_data.CLASS_SHARES
    stain_jitter: bool = True  # colour cast, hue, saturation, HED uptake, gamma, contrast
    hue_jitter: float = 15.0  # largest random hue rotation in degrees (180: hue carries nothing)
    hue_mirror: bool = False  # reflect the hue circle of half the images (with stain_jitter)
    stain_bank: Path | None = None  # re-render crops in these unlabelled smears' stains
    stain_mix: float = 0.7  # share of training images re-rendered (with stain_bank)
    # every crop in the canonical dyes, as on the device: after augmentation, so the network
    # learns the normaliser's output for the stains and cameras augmentation imitates
    dye_normalise: bool = False
    resolution_jitter: bool = True  # random coarsening (cheaper optics and sensors)
    scale_jitter: bool = True  # random zoom 0.8-1.25x and free rotation
    shift: int = 8  # random translation in pixels
    threads: int = 0  # torch CPU threads (0: torch's default)
    classes: list[str] = field(default_factory=list)  # label order (default: sorted union)
    init: Path | None = None  # start from this checkpoint's weights (same arch and size)
    lab_adversary: float = 0.0  # weight of the reversed lab-adversary gradient (0: off)
    lab_align: float = 0.0  # weight of the gap between labs' mean embeddings of a class (0: off)
    mixstyle: float = 0.0  # chance per batch and block that early features swap styles (0: off)
    unlabelled: Path | None = None  # other clinics' white-cell crops, for consistency (FixMatch)


def _device(name: str) -> torch.device:
    return torch.device("cpu" if name == "cpu" else f"cuda:{name}")


def predict(model: torch.nn.Module, pixels: torch.Tensor, device: torch.device,
            batch: int = 128) -> np.ndarray:
    """Softmax probabilities for NxHxWx3 uint8 images (no augmentation)."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(pixels), batch):
            x = pixels[i:i + batch].to(device).permute(0, 3, 1, 2).float() / 255.0
            out.append(torch.softmax(model(x), dim=1).cpu())
    return torch.cat(out).numpy()


def augment(x: torch.Tensor, cfg: ClassifyTrainConfig, gen: torch.Generator,
            bank: StainBank | None = None) -> torch.Tensor:
    """The training view of an Nx3xHxW [0, 1] batch."""
    if bank is not None:
        x = bank.mix(x, gen, cfg.stain_mix)
    x = geometric_jitter(x, gen, cfg.shift)
    if cfg.scale_jitter:
        x = scale_jitter(x, gen)
    if cfg.resolution_jitter:
        x = resolution_jitter(x, gen)
    if cfg.stain_jitter:
        x = tone_jitter(hed_jitter(stain_jitter(x, gen, hue_deg=cfg.hue_jitter,
                                                   mirror_p=0.5 * cfg.hue_mirror), gen), gen)
    return dye_normalised(x) if cfg.dye_normalise else x


def dye_normalised(x: torch.Tensor) -> torch.Tensor:
    """An Nx3xHxW [0, 1] batch as a dye-normalised classifier's graph receives it: each image
    an RGB uint8 crop redrawn in the canonical dyes (`edge.inference.dyes.normalise`)."""
    crops = (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    redrawn = np.stack([normalise(crop) for crop in crops])
    return torch.from_numpy(redrawn).permute(0, 3, 1, 2).float() / 255.0


def init_from(model: torch.nn.Module, cfg: ClassifyTrainConfig, classes: list[str]) -> None:
    """Load `cfg.init`'s weights into `model`: every layer but the last as is, and the last
    layer's row of each class the checkpoint knows by name (a new class starts fresh)."""
    state = torch.load(cfg.init, weights_only=True, map_location="cpu")
    if (state.get("arch"), state.get("imgsz")) != (cfg.arch, cfg.imgsz):
        raise HemascopeError(
            f"{cfg.init} is a {state.get('arch')} network at {state.get('imgsz')} px, not "
            f"{cfg.arch} at {cfg.imgsz} px", "give --arch and --imgsz of that checkpoint")
    weights = dict(state["model"])
    own = model.state_dict()
    for key in [name for name, _ in model.named_parameters()][-2:]:  # the last layer
        rows = own[key].clone()
        for i, name in enumerate(classes):
            if name in state["classes"]:
                rows[i] = weights[key][state["classes"].index(name)]
        weights[key] = rows
    model.load_state_dict(weights)


def train_classifier(cfg: ClassifyTrainConfig, resume: bool = False,
                     progress: Callable[[int, int, dict], None] | None = None) -> Path:
    """Split, train, keep the best epoch by val macro-F1 and write RUN/manifest.json."""
    if cfg.arch not in ARCHITECTURES:
        raise HemascopeError(f"unknown architecture {cfg.arch!r}",
                             f"use one of {', '.join(ARCHITECTURES)}")
    if cfg.class_share not in CLASS_SHARES:
        raise HemascopeError(f"--class-share {cfg.class_share!r} is not one of "
                             f"{', '.join(CLASS_SHARES)}", "use equal (the default) or sqrt")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    weights_dir = cfg.out / "train" / "weights"
    last = weights_dir / "last.pt"
    if resume and not last.is_file():
        raise HemascopeError(f"nothing to resume: {last} does not exist",
                             "start the run without --resume")
    bank = StainBank(cfg.stain_bank) if cfg.stain_bank is not None else None
    unlabelled = (load_unlabelled(cfg.unlabelled, cfg.imgsz) if cfg.unlabelled is not None
                  else None)
    data = read_class_folders(cfg.sources, cfg.val_fraction, cfg.classes or None)
    if not data.split("val"):
        raise HemascopeError("no validation images: every source is split=train",
                             "let one source be split by hash (the default)")
    weights_dir.mkdir(parents=True, exist_ok=True)
    segments = Segments(cfg.out, resume)
    splits = {s: data.split(s) for s in ("train", "val")}
    # With dye_normalise, val crops are normalised once here, training crops after augment.
    pixels = {s: torch.from_numpy(load_pixels(items, cfg.imgsz, cfg.sources,
                                              dye_normalise=cfg.dye_normalise and s == "val"))
              for s, items in splits.items()}
    labels = {s: torch.tensor([it.label for it in items]) for s, items in splits.items()}
    draw = torch.tensor(data.sampling_weights(class_share=cfg.class_share) if cfg.balance
                        else np.ones(len(labels["train"])), dtype=torch.float64)
    epoch_size = cfg.epoch_size or len(labels["train"])
    device = _device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, len(data.classes), cfg.imgsz)
    if cfg.init is not None and not resume:
        init_from(model, cfg, data.classes)
    model = model.to(device)
    mixstyle = None
    if cfg.mixstyle > 0:
        if cfg.arch != "lite0":
            raise HemascopeError("--mixstyle needs the lite0 architecture",
                                 "train with --arch lite0 (the default)")
        mixstyle = MixStyle(cfg.mixstyle, np.random.default_rng(cfg.seed))
        attach(model.net._blocks, mixstyle)
    trainable = [p for p in model.parameters() if p.requires_grad]
    adversary, labs, shared = None, None, None
    if cfg.lab_adversary > 0 or cfg.lab_align > 0:
        labs = torch.tensor([[s.name for s in cfg.sources].index(it.source)
                             for it in splits["train"]])
        shared = shared_classes(labels["train"], labs, len(data.classes)).to(device)
        if not bool(shared.any()):
            raise HemascopeError("--lab-adversary and --lab-align need a class that two labs "
                                 "have", "train on two or more labs with classes in common")
    if cfg.lab_adversary > 0:
        with torch.no_grad():
            dim = model.eval().embedding(torch.zeros(1, 3, cfg.imgsz, cfg.imgsz)).shape[1]
        adversary = LabAdversary(dim, len(data.classes), len(cfg.sources), shared).to(device)
        trainable += list(adversary.parameters())
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=5e-4)
    steps = cfg.epochs * -(-epoch_size // cfg.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps, pct_start=0.15)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    gen = torch.Generator().manual_seed(cfg.seed)
    start_epoch, best_f1, history = 0, -1.0, []
    meta = {"format": CHECKPOINT_FORMAT, "task": "classify", "classes": data.classes,
            "imgsz": cfg.imgsz, "arch": cfg.arch,
            "stain": DYES if cfg.dye_normalise else "as-is", "lab_adversary": cfg.lab_adversary,
            "lab_align": cfg.lab_align, "mixstyle": cfg.mixstyle,
            "unlabelled": str(cfg.unlabelled or "")}
    if resume:
        state = torch.load(last, weights_only=True, map_location="cpu")
        if state["epoch"] + 1 >= cfg.epochs:
            raise HemascopeError(f"nothing to resume: the run in {cfg.out} finished all its "
                                 f"{state['epoch'] + 1} epochs",
                                 "start a new run with another --out")
        if state.get("stain", "as-is") != meta["stain"]:
            raise HemascopeError(f"the run in {cfg.out} trained on crops normalised as "
                                 f"{state.get('stain', 'as-is')!r}, this command as "
                                 f"{meta['stain']!r}", "start a new run with another --out")
        for option, off in (("lab_adversary", 0.0), ("lab_align", 0.0), ("mixstyle", 0.0),
                            ("unlabelled", "")):
            if state.get(option, off) != meta[option]:
                raise HemascopeError(
                    f"the run in {cfg.out} trained with --{option.replace('_', '-')} "
                    f"{state.get(option, off)!r}, this command with {meta[option]!r}",
                    "resume with the run's own options")
        model.load_state_dict(state["model"])
        if adversary is not None and "adversary" in state:
            adversary.load_state_dict(state["adversary"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        start_epoch, best_f1, history = state["epoch"] + 1, state["best_f1"], state["history"]
    # The log is rewritten from the checkpoint: an epoch logged after the last checkpoint of
    # an interrupted process is trained again, and logged once.
    log = (cfg.out / "log.jsonl").open("w")
    log.writelines(json.dumps(row) + "\n" for row in history)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        if mixstyle is not None:  # its draws depend on the epoch only, so --resume repeats them
            mixstyle.rng = np.random.default_rng([cfg.seed, epoch])
        t0, total, lab_total, gap_total, sure_total = time.time(), 0.0, 0.0, 0.0, 0.0
        order = torch.multinomial(draw, epoch_size, replacement=True, generator=gen)
        for i in range(0, len(order), cfg.batch):
            idx = order[i:i + cfg.batch]
            x = augment(pixels["train"][idx].permute(0, 3, 1, 2).float() / 255.0, cfg, gen,
                        bank)
            y = labels["train"][idx].to(device)
            emb = model.embedding(x.to(device))
            loss = loss_fn(model.classify(emb), y)
            total += loss.item() * len(idx)
            if adversary is not None:
                lab_loss = adversary.loss(emb, y, labs[idx].to(device),
                                          cfg.lab_adversary * ramp(sched.last_epoch / steps))
                loss = loss + lab_loss
                lab_total += lab_loss.item() * len(idx)
            if cfg.lab_align > 0:
                gap = class_mean_gap(emb, y, labs[idx].to(device), shared)
                loss = loss + cfg.lab_align * gap
                gap_total += gap.item() * len(idx)
            if unlabelled is not None:
                u = unlabelled[torch.randint(len(unlabelled), (len(idx),), generator=gen)]
                u = u.permute(0, 3, 1, 2).float() / 255.0
                weak = geometric_jitter(u, gen, cfg.shift)
                weak = dye_normalised(weak) if cfg.dye_normalise else weak
                u_loss, sure = consistency_loss(model, weak.to(device),
                                                augment(u, cfg, gen, bank).to(device))
                loss = loss + u_loss
                sure_total += sure * len(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        val = classification_report(predict(model, pixels["val"], device),
                                    labels["val"].numpy(), data.classes)
        row = {"epoch": epoch, "loss": total / len(order), "val_accuracy": val["accuracy"],
               "val_macro_f1": val["macro_f1"], "val_ece": val["ece"],
               "seconds": round(time.time() - t0, 1)}
        if adversary is not None:  # ln(labs) when the adversary can no longer tell the labs
            row["lab_loss"] = lab_total / len(order)
        if cfg.lab_align > 0:  # the labs' class-mean gap in units of the batch variance
            row["lab_gap"] = gap_total / len(order)
        if unlabelled is not None:  # share of unlabelled crops whose guess was a target
            row["unlabelled_sure"] = sure_total / len(order)
        history.append(row)
        log.write(json.dumps(row) + "\n")
        log.flush()
        state = {**meta, "model": model.state_dict(), "epoch": epoch, "best_f1": best_f1,
                 "history": history}
        if val["macro_f1"] > best_f1:
            best_f1 = state["best_f1"] = val["macro_f1"]
            torch.save({**state, "val": val}, weights_dir / "best.pt")
        extra = {"adversary": adversary.state_dict()} if adversary is not None else {}
        torch.save({**state, **extra, "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "generator": gen.get_state()}, last)
        segments.tick(epoch)
        if progress:
            progress(epoch + 1, cfg.epochs, row)
    best = torch.load(weights_dir / "best.pt", weights_only=True, map_location="cpu")
    segments.tick()
    config = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
    if cfg.init is not None:
        config["init_sha256"] = file_sha256(cfg.init)
    if unlabelled is not None:
        config["unlabelled_crops"] = len(unlabelled)
    if bank is not None:
        config["stain_bank_sha256"] = bank.sha256
        config["stain_bank_sources"] = bank.sources
    config["sources"] = [s.describe() for s in cfg.sources]
    manifest = {
        "task": "classify", "classes": data.classes, "imgsz": cfg.imgsz,
        "architecture": ARCHITECTURES[cfg.arch],
        "config": config,
        "data": {**data.summary(), "source": ", ".join(str(s.path) for s in cfg.sources)},
        **segments.summary(),
        "best_epoch": best["epoch"],
        "val_metrics_torch": {k: best["val"][k] for k in ("accuracy", "macro_f1", "ece")},
        "weights": str(weights_dir / "best.pt"),
    }
    path = cfg.out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2))
    return path
