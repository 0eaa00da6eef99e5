"""Aligned face crops -> probabilities of mask / no_mask / incorrect.

The classifier is a small CNN trained by `maskwatch train` and shipped as
ONNX inside the package, with a JSON card beside it (labels, crop size,
temperature, checksum). All faces of an image go through in one batch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskwatch.detect import cpu_session
from maskwatch.types import LABELS

MODEL_DIR = Path(__file__).parent / "models"
DEFAULT_MODEL = MODEL_DIR / "classifier.onnx"


@dataclass(frozen=True)
class ModelCard:
    labels: tuple[str, ...]
    crop: int
    temperature: float
    sha256: str
    version: str
    flip: bool
    """Average the logits of each crop and its mirror image (the temperature was fitted that way)."""

    @classmethod
    def read(cls, onnx_path: Path) -> ModelCard:
        card_path = onnx_path.with_suffix(".json")
        if not card_path.is_file():
            raise RuntimeError(f"{card_path}: model card missing beside {onnx_path.name}")
        d = json.loads(card_path.read_text())
        return cls(tuple(d["labels"]), int(d["crop"]), float(d.get("temperature", 1.0)), d["sha256"], d["version"],
                   bool(d.get("flip", False)))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class MaskClassifier:
    """Runs the shipped (or a given) ONNX classifier on N x crop x crop x 3 RGB crops."""

    def __init__(self, path: Path | None = None, threads: int | None = None) -> None:
        self.path = Path(path or DEFAULT_MODEL)
        if not self.path.is_file():
            raise RuntimeError(f"{self.path}: classifier model not found (train one with `maskwatch train`)")
        self.card = ModelCard.read(self.path)
        if self.card.labels != LABELS:
            raise RuntimeError(f"{self.path}: labels {self.card.labels} differ from {LABELS}")
        digest = sha256(self.path)
        if digest != self.card.sha256:
            raise RuntimeError(f"{self.path}: checksum {digest[:12]} does not match its card ({self.card.sha256[:12]})")
        self.session = cpu_session(str(self.path), threads)
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, crops: np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, len(LABELS)), dtype=np.float32)
        blob = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32)
        if not self.card.flip:
            return self.session.run(None, {self.input_name: blob})[0]
        both = self.session.run(None, {self.input_name: np.concatenate([blob, blob[:, :, :, ::-1]])})[0]
        return (both[: len(crops)] + both[len(crops) :]) / 2

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """N x 3 calibrated probabilities in LABELS order."""
        return softmax(self.logits(crops), self.card.temperature)
