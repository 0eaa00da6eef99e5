"""Train the mask classifier and export it to ONNX (`maskwatch train`).

Training crops are cut the way inference cuts them: maskwatch's own detector
runs on the annotated photos, detections are matched to ground truth at
IoU >= 0.5, and the matched faces are aligned. The image-level `crops/` set
adds variety (its labels are noisy). The epoch is chosen on the val split,
which is never trained on; a temperature fitted on val calibrates the output.
Needs the `train` extra (torch).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from maskwatch.align import CROP, align_all
from maskwatch.classify import sha256, softmax
from maskwatch.decode import DecodeError, decode_file
from maskwatch.detect import CenterFace
from maskwatch.evaluate import load_annotations, match
from maskwatch.types import LABELS

log = logging.getLogger(__name__)


@dataclass
class CropSet:
    """Aligned crops with labels; `source` 0 = detection photos, 1 = crops/, 2 = synthetic."""

    x: np.ndarray
    y: np.ndarray
    source: np.ndarray
    size: np.ndarray

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, x=self.x, y=self.y, source=self.source, size=self.size)

    @classmethod
    def load(cls, path: Path) -> CropSet:
        d = np.load(path)
        return cls(d["x"], d["y"], d["source"], d["size"])

    @classmethod
    def concat(cls, sets: list[CropSet]) -> CropSet:
        return cls(*(np.concatenate([getattr(s, f) for s in sets]) for f in ("x", "y", "source", "size")))


def crops_from_annotations(json_path: Path, detector: CenterFace) -> CropSet:
    """Detector faces matched to ground truth, aligned, labelled by the match."""
    xs, ys, sizes = [], [], []
    for entry in load_annotations(json_path):
        rgb = decode_file(entry.image).upright()
        faces = detector(rgb)
        gt_boxes = [box for box, _ in entry.faces]
        pairs = match(gt_boxes, [f.box for f in faces], [f.score for f in faces])
        if not pairs:
            continue
        chosen = [faces[p] for _, p in pairs]
        xs.append(align_all(rgb, chosen))
        ys.extend(LABELS.index(entry.faces[g][1]) for g, _ in pairs)
        sizes.extend(max(b[2] - b[0], b[3] - b[1]) for b in (gt_boxes[g] for g, _ in pairs))
    return CropSet(np.concatenate(xs), np.array(ys), np.zeros(len(ys), np.int8), np.array(sizes, np.float32))


def crops_from_folder(crops_dir: Path, detector: CenterFace) -> CropSet:
    """The most confident face of each image in crops/index.csv, with the image's label."""
    xs, ys, sizes = [], [], []
    skipped = 0
    for line in (crops_dir / "index.csv").read_text().splitlines()[1:]:
        rel, label = line.split(",")[:2]
        try:
            rgb = decode_file(crops_dir / rel).upright()
        except DecodeError:
            skipped += 1
            continue
        faces = detector(rgb)
        if not faces:
            skipped += 1
            continue
        best = max(faces, key=lambda f: f.score)
        xs.append(align_all(rgb, [best]))
        ys.append(LABELS.index(label))
        sizes.append(best.size)
    log.info("crops/: %d faces used, %d images without a face skipped", len(ys), skipped)
    return CropSet(np.concatenate(xs), np.array(ys), np.ones(len(ys), np.int8), np.array(sizes, np.float32))


def cached_crops(name: str, data: Path, cache: Path, detector: CenterFace | None = None) -> CropSet:
    """One crop set (`train_det`, `train_crops` or `val_det`), built once and
    cached as cache/NAME.npz (delete it to rebuild)."""
    path = cache / f"{name}.npz"
    if not path.is_file():
        detector = detector or CenterFace()
        plain = CenterFace(replace(detector.config, thorough=False)) if name == "train_crops" else detector
        builders = {
            "train_det": lambda: crops_from_annotations(data / "detection" / "train.json", detector),
            # close-ups: the plain passes find their one face
            "train_crops": lambda: crops_from_folder(data / "crops", plain),
            "val_det": lambda: crops_from_annotations(data / "detection" / "val.json", detector),
        }
        t = time.time()
        builders[name]().save(path)
        log.info("built %s in %.0f s", path, time.time() - t)
    return CropSet.load(path)


def build_crops(data: Path, cache: Path, detector: CenterFace) -> tuple[CropSet, CropSet]:
    """(train, val) crop sets."""
    train = CropSet.concat([cached_crops(n, data, cache, detector) for n in ("train_det", "train_crops")])
    return train, cached_crops("val_det", data, cache, detector)


def synthetic_crops(train: CropSet, n: int, seed: int) -> CropSet:
    """Masks, misworn masks and hard negatives drawn on the train split's own unmasked faces."""
    from maskwatch.synth import synthesize

    bare = train.x[(train.y == LABELS.index("no_mask")) & (train.size >= 16)]
    x, labels, _ = synthesize(bare, n, seed)
    y = np.array([LABELS.index(label) for label in labels])
    return CropSet(x, y, np.full(n, 2, np.int8), np.full(n, float(CROP), np.float32))


# --- model and training (torch imported lazily: it is an optional extra) ---


def make_model():
    import torch
    from torch import nn

    def block(cin: int, cout: int, n: int) -> list[nn.Module]:
        layers: list[nn.Module] = []
        for i in range(n):
            layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        return layers

    class MaskNet(nn.Module):
        """~0.3 M parameters; takes N x 3 x 64 x 64 RGB in 0..255."""

        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                *block(3, 16, 1), nn.MaxPool2d(2),
                *block(16, 32, 2), nn.MaxPool2d(2),
                *block(32, 64, 2), nn.MaxPool2d(2),
                *block(64, 128, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            )
            self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(128, len(LABELS)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.features((x - 127.5) / 64.0))

    return MaskNet()


def jpeg_and_edges(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-crop artefacts that are easier in OpenCV: JPEG at low quality, and
    faces cut by the image border (the edge row repeated, as align pads)."""
    import cv2

    out = x.copy()
    for i in np.nonzero(rng.random(len(x)) < 0.25)[0]:
        ok, buf = cv2.imencode(".jpg", out[i], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(15, 70))])
        out[i] = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    for i in np.nonzero(rng.random(len(x)) < 0.1)[0]:
        cut = int(rng.integers(6, CROP // 4))
        side = rng.integers(4)
        if side == 0:
            out[i, :, :cut] = out[i, :, cut : cut + 1]
        elif side == 1:
            out[i, :, -cut:] = out[i, :, -cut - 1 : -cut]
        elif side == 2:
            out[i, :cut] = out[i, cut : cut + 1]
        else:
            out[i, -cut:] = out[i, -cut - 1 : -cut]
    return out


def augment(x, gen):
    """Field conditions on a float batch (N,3,H,W, 0..255): flips, pose and
    framing jitter, colour and grey, blur and tiny-face downscaling, noise."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    dev = x.device

    def rand(*shape):
        return torch.rand(*shape, generator=gen, device=dev)

    flip = rand(n) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    angle = (rand(n) - 0.5) * np.radians(30)
    scale = 1 + (rand(n) - 0.5) * 0.25
    shift = (rand(n, 2) - 0.5) * 0.16
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    # tiny faces: down to 10-40 px and back up
    small = rand(n) < 0.5
    if small.any():
        side = int(10 + rand(1).item() * 30)
        low = F.interpolate(x[small], size=(side, side), mode="area")
        x[small] = F.interpolate(low, size=x.shape[2:], mode="bilinear", align_corners=False)
    gray = x.mean(1, keepdim=True).expand_as(x)
    sat = (0.4 + rand(n) * 1.2)[:, None, None, None]
    sat = torch.where((rand(n) < 0.1)[:, None, None, None], torch.zeros_like(sat), sat)
    x = gray + (x - gray) * sat
    infrared = rand(n) < 0.05  # near-infrared cameras: grey, skin bright, odd contrast
    if infrared.any():
        g = x[infrared].mean(1, keepdim=True) / 255
        x[infrared] = (g ** (0.5 + rand(int(infrared.sum()), 1, 1, 1))).expand(-1, 3, -1, -1) * 255
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * (0.6 + rand(n, 1, 1, 1) * 0.8) + mean * (0.6 + rand(n, 1, 1, 1) * 0.8)
    x = x * (0.9 + rand(n, 3, 1, 1) * 0.2)
    x = x + torch.randn(x.shape, generator=gen, device=dev) * (rand(n, 1, 1, 1) * 8)
    return x.clamp(0, 255)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    seed: int = 0
    label_smoothing: float = 0.05
    synth: int = 3000
    """Synthetic crops (see synth.py) drawn on the train split's unmasked faces."""


def class_weights(y: np.ndarray) -> np.ndarray:
    """Sampling weight per example: rare classes drawn more (inverse sqrt frequency)."""
    counts = np.bincount(y, minlength=len(LABELS)).astype(np.float64)
    w = 1 / np.sqrt(np.maximum(counts, 1))
    return w[y] / w[y].sum()


def predict_logits(model, x: np.ndarray, batch: int = 512) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(x[i : i + batch]).permute(0, 3, 1, 2).float()
            out.append(model(xb).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(LABELS)), np.float32)


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    p = softmax(logits, temperature)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1)).mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising val NLL (grid search: one scalar, no optimiser needed)."""
    grid = np.exp(np.linspace(np.log(0.3), np.log(5.0), 300))
    return float(grid[np.argmin([nll(logits, y, t) for t in grid])])


def val_figures(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> dict[str, float]:
    p = softmax(logits, temperature)
    pred = p.argmax(1)
    masked_ok = (p[:, 0] >= 0.5) == (y == 0)
    return {
        "nll": nll(logits, y, temperature),
        "accuracy_3class": float((pred == y).mean()),
        "accuracy_binary": float(masked_ok.mean()),
        **{f"recall_{label}": float((pred[y == i] == i).mean()) if (y == i).any() else float("nan")
           for i, label in enumerate(LABELS)},
    }


def train_model(train: CropSet, val: CropSet, cfg: TrainConfig):
    """Returns the model at the epoch with the lowest val NLL, and a log of epochs."""
    import copy

    import torch
    import torch.nn.functional as F

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(train.y) // cfg.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
    weights = class_weights(train.y)
    y_all = torch.from_numpy(train.y.astype(np.int64))
    best, best_state, history = np.inf, None, []
    for epoch in range(cfg.epochs):
        model.train()
        t = time.time()
        idx = rng.choice(len(train.y), size=steps_per_epoch * cfg.batch, p=weights)
        total = 0.0
        for s in range(steps_per_epoch):
            b = idx[s * cfg.batch : (s + 1) * cfg.batch]
            xb = torch.from_numpy(jpeg_and_edges(train.x[b], rng)).permute(0, 3, 1, 2).float()
            xb = augment(xb, gen)
            loss = F.cross_entropy(model(xb), y_all[b], label_smoothing=cfg.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        figures = val_figures(predict_logits(model, val.x), val.y)
        figures.update(epoch=epoch, train_loss=total / steps_per_epoch, seconds=time.time() - t)
        history.append(figures)
        log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in figures.items()})
        if figures["nll"] < best:
            best, best_state = figures["nll"], copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return model, history


def export_onnx(model, path: Path) -> None:
    import torch

    model.eval()
    dummy = torch.zeros(1, 3, CROP, CROP)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the TorchScript exporter needs no onnxscript; it warns it is legacy
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (dummy,), str(path), input_names=["crops"], output_names=["logits"],
                          dynamic_axes={"crops": {0: "n"}, "logits": {0: "n"}}, opset_version=17, dynamo=False)


def make_ensemble(members: list):
    """One module averaging its members' logits, so one ONNX file serves them all."""
    import torch
    from torch import nn

    class Ensemble(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.members = nn.ModuleList(members)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.stack([m(x) for m in self.members]).mean(0)

    return Ensemble()


def run(data: Path, out: Path, cache: Path, cfg: TrainConfig, seeds: tuple[int, ...] = (0,)) -> dict:
    """Build crops, train one model per seed (each with its own synthetic
    crops), pick each one's epoch on val, average them, calibrate on val,
    export ONNX + card."""
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    real, val = build_crops(data, cache, CenterFace())
    members, histories = [], []
    for seed in seeds:
        member_cfg = replace(cfg, seed=seed)
        train = CropSet.concat([real, synthetic_crops(real, cfg.synth, seed)]) if cfg.synth else real
        log.info("seed %d: train crops %s, val crops %s", seed, np.bincount(train.y, minlength=3),
                 np.bincount(val.y, minlength=3))
        model, history = train_model(train, val, member_cfg)
        members.append(model)
        histories.append(history)
    model = members[0] if len(members) == 1 else make_ensemble(members)
    val_logits = (predict_logits(model, val.x) + predict_logits(model, val.x[:, :, ::-1].copy())) / 2  # as served
    temperature = fit_temperature(val_logits, val.y)
    export_onnx(model, out)
    card = {
        "version": f"masknet-{time.strftime('%Y%m%d')}-seeds{'-'.join(map(str, seeds))}",
        "labels": list(LABELS),
        "crop": CROP,
        "temperature": round(temperature, 4),
        "flip": True,
        "sha256": sha256(out),
        "train_config": {**cfg.__dict__, "seeds": list(seeds)},
        "train_counts_real": {label: int((real.y == i).sum()) for i, label in enumerate(LABELS)},
        "synthetic_per_member": cfg.synth,
        "val_counts": {label: int((val.y == i).sum()) for i, label in enumerate(LABELS)},
        "val_crops_calibrated": val_figures(val_logits, val.y, temperature),
        "best_epochs": [int(np.argmin([h["nll"] for h in hist])) for hist in histories],
        "history": histories,
    }
    out.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    return card
