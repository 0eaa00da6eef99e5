"""Score the pipeline against annotated photos.

Detection and classification are scored separately because they have different fixes (detector vs
classifier). Missed faces stay in the denominators of the mask-compliance rates: a face the detector
never sees is an unmasked person nobody gets alerted about, and dropping it would flatter the pipeline.
Calibration and the threshold table are there to pick the mask threshold and to know whether the confidence
shown next to a face can be read as odds.
"""

from __future__ import annotations

import json
import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from maskwatch.types import LABELS, Box, Face, FrameResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes

log = logging.getLogger(__name__)

IOU_THRESHOLD = 0.5
# Face size = longer GT box side; "16-32" means 16 <= size < 32.
SIZE_BUCKETS: Mapping[str, tuple[float, float]] = {
    "<16": (0, 16),
    "16-32": (16, 32),
    "32-64": (32, 64),
    "64-128": (64, 128),
    ">=128": (128, math.inf),
}
JSON_LABELS: Mapping[str, str] = {label: label for label in LABELS}
VOC_LABELS: Mapping[str, str] = {
    "with_mask": "mask",
    "without_mask": "no_mask",
    "mask_weared_incorrect": "incorrect",
    **JSON_LABELS,
}
# An alert system only cares whether a mask is worn properly, so the "folded" setting merges the two failures.
FOLDINGS: Mapping[str, Mapping[str, str]] = {
    "folded": {"mask": "mask", "no_mask": "unmasked", "incorrect": "unmasked"},
    "3class": JSON_LABELS,
}
# Equal-width confidence bins over [0, 1] for ECE and the reliability diagram (15 as in Guo et al. 2017).
CALIBRATION_BINS = 15
# Mask thresholds of the operating-point table; a face is flagged when p(mask) < t, as in Face.with_class.
THRESHOLDS: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class Annotated:
    """One annotated photo; `image` is resolved so results join back to it whatever the working folder."""

    image: Path
    width: int
    height: int
    faces: tuple[tuple[Box, str], ...]


@dataclass(frozen=True)
class Outcome:
    """What became of one ground-truth face; `pred` is None when no detection matched it."""

    gt_label: str
    size: float
    pred: Face | None


def load_annotations(path: str | Path) -> list[Annotated]:
    """Read a maskwatch JSON file, or a folder of Pascal VOC .xml files (the Kaggle layout)."""
    path = Path(path)
    if path.is_dir():
        xmls = sorted(path.glob("*.xml"))
        if not xmls:
            raise ValueError(f"{path}: no .xml annotation files in this folder")
        return [_load_voc(xml) for xml in xmls]
    if not path.is_file():
        raise ValueError(f"{path}: annotation file not found")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not readable as JSON ({exc})") from exc
    if isinstance(entries, list):
        return [_json_entry(path, i, entry) for i, entry in enumerate(entries)]
    raise ValueError(f"{path}: expected a JSON list with one object per image")


def _json_entry(path: Path, index: int, entry: Any) -> Annotated:
    where = f"{path}: entry {index}"
    try:
        image = path.parent / entry["image"]
        width, height = int(entry["width"]), int(entry["height"])
        faces = [(face["box"], face["label"]) for face in entry["faces"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: malformed entry ({exc!r})") from exc
    return _annotated(where, image, width, height, faces, JSON_LABELS)


def _load_voc(path: Path) -> Annotated:
    try:
        root = ET.parse(path).getroot()
        filename = (root.findtext("filename") or "").strip()
        width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))  # type: ignore[arg-type]
        faces = [
            ([obj.findtext(f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")], obj.findtext("name"))
            for obj in root.iter("object")
        ]
    except (OSError, ET.ParseError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: malformed VOC XML ({exc})") from exc
    candidates = [path.parent / filename, path.parent.parent / "images" / filename]
    image = next((c for c in candidates if filename and c.is_file()), candidates[0])
    return _annotated(str(path), image, width, height, faces, VOC_LABELS)


def _annotated(
    where: str, image: Path, width: int, height: int, faces: Sequence[Any], labels: Mapping[str, str]
) -> Annotated:
    """Check an entry up front, so a typo fails the run now rather than silently skewing the scores."""
    if not image.is_file():
        raise ValueError(f"{where}: image {image} not found")
    if width <= 0 or height <= 0:
        raise ValueError(f"{where}: image size {width}x{height} is not positive")
    checked = []
    for raw_box, raw_label in faces:
        label = labels.get(raw_label.strip()) if isinstance(raw_label, str) else None
        if label is None:
            raise ValueError(f"{where}: unknown label {raw_label!r}, expected one of {sorted(labels)}")
        checked.append((_checked_box(where, raw_box, width, height), label))
    return Annotated(image.resolve(), width, height, tuple(checked))


def _checked_box(where: str, raw: Any, width: int, height: int) -> Box:
    try:
        x1, y1, x2, y2 = (float(v) for v in raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: box {raw!r} is not four numbers") from exc
    # Upstream Kaggle XML has xmax = 401 on a few 400-px photos; clip such 1-px overshoots, refuse worse ones.
    if min(x1, y1) < -1 or x2 > width + 1 or y2 > height + 1:
        raise ValueError(f"{where}: box {raw!r} lies outside the {width}x{height} image")
    box = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    if not (box[0] < box[2] and box[1] < box[3]):
        raise ValueError(f"{where}: box {raw!r} is empty or inside out")
    return box


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes, in continuous pixel coordinates."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(
    gt_boxes: Sequence[Box],
    pred_boxes: Sequence[Box],
    pred_scores: Sequence[float],
    thr: float = IOU_THRESHOLD,
) -> list[tuple[int, int]]:
    """Greedy matching: the most confident prediction picks first, so a duplicate box cannot steal its GT."""
    order = sorted(range(len(pred_boxes)), key=lambda p: -pred_scores[p])
    taken: set[int] = set()
    pairs = []
    for p in order:
        # -g sends IoU ties to the lowest GT index, so the matching is reproducible.
        scored = [(iou(gt, pred_boxes[p]), -g) for g, gt in enumerate(gt_boxes) if g not in taken]
        if scored and max(scored)[0] >= thr:
            g = -max(scored)[1]
            taken.add(g)
            pairs.append((g, p))
    return pairs


def average_precision(hits: Sequence[bool], n_gt: int) -> float:
    """VOC all-point AP of detections ranked by confidence (True = TP); unranked GT count as never found."""
    if n_gt <= 0:
        raise ValueError("AP is undefined without ground-truth faces")
    tp = np.cumsum(np.asarray(hits, dtype=float))
    return _all_point_area(tp / n_gt, tp / np.arange(1, len(tp) + 1))


def _all_point_area(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope (best precision at this recall or higher), recall ascending.

    Shared by detection AP and the flagging PR curve so that both "AP" figures in a report mean the same.
    """
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    envelope = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * envelope[steps + 1]))


def _cumulative_counts(positive: Sequence[bool], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(tp, fp) counted down to each distinct score, highest first; tied samples enter together."""
    pos = np.asarray(positive, dtype=bool)
    s = np.asarray(scores, dtype=float)
    order = np.argsort(-s, kind="stable")
    s, pos = s[order], pos[order]
    last = np.concatenate([np.flatnonzero(s[1:] != s[:-1]), [len(s) - 1]]).astype(int)
    return np.cumsum(pos)[last], np.cumsum(~pos)[last]


def roc_curve(
    positive: Sequence[bool], scores: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(fpr, tpr, auc) with one point per distinct score, so ties make a diagonal step (AUC counts 1/2)."""
    n_pos = int(np.sum(np.asarray(positive, dtype=bool)))
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.zeros(0), np.zeros(0), None
    tp, fp = _cumulative_counts(positive, scores)
    tpr = np.concatenate([[0.0], tp / n_pos])
    fpr = np.concatenate([[0.0], fp / n_neg])
    return fpr, tpr, float(np.trapezoid(tpr, fpr))


def precision_recall_curve(
    positive: Sequence[bool], scores: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(recall, precision, ap) with one point per distinct score, recall ascending; ap None without positives.

    Ties enter together, so AP does not depend on the order of equal scores (rounded probabilities tie
    often). AP is the VOC all-point area, as for detection; without negatives it is 1.
    """
    n_pos = int(np.sum(np.asarray(positive, dtype=bool)))
    if n_pos == 0:
        return np.zeros(0), np.zeros(0), None
    tp, fp = _cumulative_counts(positive, scores)
    recall, precision = tp / n_pos, tp / (tp + fp)
    return recall, precision, _all_point_area(recall, precision)


def reliability_bins(
    confidence: Sequence[float], correct: Sequence[bool], bins: int = CALIBRATION_BINS
) -> dict[str, list[Any]]:
    """Per equal-width confidence bin: `count`, mean `confidence` and `accuracy` (None where empty).

    Bin i holds i/bins <= c < (i+1)/bins, with 1.0 in the last bin. A confidence outside [0, 1] is
    refused: it means the "probabilities" are not, and the diagram would silently mislead.
    """
    c = np.asarray(confidence, dtype=float)
    right = np.asarray(correct, dtype=float)
    if bins < 1:
        raise ValueError(f"need at least one bin, got {bins}")
    if c.shape != right.shape or c.ndim != 1:
        raise ValueError(f"{c.shape} confidences but {right.shape} correctness flags")
    if not np.all((c >= 0.0) & (c <= 1.0)):
        raise ValueError(f"confidences must lie in [0, 1], got {c[~((c >= 0.0) & (c <= 1.0))][:3].tolist()}")
    index = np.minimum((c * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins).tolist()
    conf_sum = np.bincount(index, weights=c, minlength=bins).tolist()
    right_sum = np.bincount(index, weights=right, minlength=bins).tolist()
    return {
        "count": count,
        "confidence": [s / n if n else None for s, n in zip(conf_sum, count, strict=True)],
        "accuracy": [s / n if n else None for s, n in zip(right_sum, count, strict=True)],
    }


def expected_calibration_error(
    confidence: Sequence[float], correct: Sequence[bool], bins: int = CALIBRATION_BINS
) -> float | None:
    """Sum over bins of (share of samples) * |accuracy - mean confidence|; None without samples.

    It says how far "90 % sure" is from being right 90 % of the time, which decides whether a shown
    confidence can be trusted as odds (a low ECE says nothing about accuracy itself).
    """
    table = reliability_bins(confidence, correct, bins)
    n = sum(table["count"])
    if n == 0:
        return None
    cells = zip(table["count"], table["confidence"], table["accuracy"], strict=True)
    return float(sum(k / n * abs(acc - conf) for k, conf, acc in cells if k))


def _predictions(result: FrameResult) -> tuple[Face, ...]:
    """A failed image has no predictions; unclassified faces are refused because every score needs probs."""
    if result.error is not None:
        return ()
    for face in result.faces:
        if face.label is None or face.probs is None or face.confidence is None:
            raise ValueError(f"{result.image}: face {face.box} was not classified; evaluation needs probs")
    return result.faces


def outcomes(annotated: Sequence[Annotated], results: Sequence[FrameResult]) -> list[Outcome]:
    """One Outcome per GT face, `results[i]` being the analysis of `annotated[i]`; also feeds the ROC plot."""
    if len(annotated) != len(results):
        raise ValueError(f"{len(annotated)} annotated images but {len(results)} results")
    out = []
    for ann, result in zip(annotated, results, strict=True):
        preds = _predictions(result)
        matched = dict(match([box for box, _ in ann.faces], [f.box for f in preds], [f.score for f in preds]))
        for g, (box, label) in enumerate(ann.faces):
            size = max(box[2] - box[0], box[3] - box[1])
            out.append(Outcome(label, size, preds[matched[g]] if g in matched else None))
    return out


def _matched(outs: Sequence[Outcome]) -> list[tuple[str, Face]]:
    return [(o.gt_label, o.pred) for o in outs if o.pred is not None]


def _p_mask(face: Face) -> float:
    """p(mask) of a face that _predictions let through, so probs is known to be there."""
    return (face.probs or {})["mask"]


def _unmasked_scores(outs: Sequence[Outcome]) -> tuple[list[bool], list[float]]:
    """Unmasked is the positive class here because catching it is what the score 1 - p(mask) is for."""
    matched = _matched(outs)
    return [gt != "mask" for gt, _ in matched], [1.0 - _p_mask(f) for _, f in matched]


def _unmasked_roc(outs: Sequence[Outcome]) -> tuple[np.ndarray, np.ndarray, float | None]:
    return roc_curve(*_unmasked_scores(outs))


def _unmasked_pr(outs: Sequence[Outcome]) -> tuple[np.ndarray, np.ndarray, float | None]:
    return precision_recall_curve(*_unmasked_scores(outs))


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _class_ap(
    annotated: Sequence[Annotated],
    preds: Sequence[tuple[Face, ...]],
    fold: Mapping[str, str],
    cls: str,
    confidence: Callable[[Face], float | None],
) -> float | None:
    """AP of one class; `confidence` returns None for detections that do not compete for this class."""
    ranked: list[tuple[float, bool]] = []
    n_gt = 0
    for ann, faces in zip(annotated, preds, strict=True):
        gt = [box for box, label in ann.faces if fold[label] == cls]
        n_gt += len(gt)
        dets = [(conf, f.box) for f in faces if (conf := confidence(f)) is not None]
        hits = {p for _, p in match(gt, [box for _, box in dets], [conf for conf, _ in dets])}
        ranked += [(conf, i in hits) for i, (conf, _) in enumerate(dets)]
    if n_gt == 0:
        return None
    ranked.sort(key=lambda item: -item[0])
    return average_precision([hit for _, hit in ranked], n_gt)


def _ap_setting(
    annotated: Sequence[Annotated], preds: Sequence[tuple[Face, ...]], fold: Mapping[str, str]
) -> dict[str, Any]:
    def soft(cls: str) -> Callable[[Face], float | None]:
        return lambda f: f.score * sum(p for k, p in (f.probs or {}).items() if fold.get(k) == cls)

    def hard(cls: str) -> Callable[[Face], float | None]:
        return lambda f: f.score * (f.confidence or 0.0) if fold.get(f.label or "") == cls else None

    out: dict[str, Any] = {}
    for key, conf in (("", soft), ("_hard", hard)):
        aps = {cls: _class_ap(annotated, preds, fold, cls, conf(cls)) for cls in dict.fromkeys(fold.values())}
        defined = [ap for ap in aps.values() if ap is not None]
        out[f"ap{key}"] = aps
        out[f"map{key}"] = sum(defined) / len(defined) if defined else None
    return out


def _detection(outs: Sequence[Outcome], n_pred: int) -> dict[str, Any]:
    found = sum(o.pred is not None for o in outs)
    by_size = {}
    for name, (lo, hi) in SIZE_BUCKETS.items():
        bucket = [o for o in outs if lo <= o.size < hi]
        hit = sum(o.pred is not None for o in bucket)
        by_size[name] = {"gt": len(bucket), "matched": hit, "recall": _ratio(hit, len(bucket))}
    return {
        "iou": IOU_THRESHOLD,
        "gt": len(outs),
        "predictions": n_pred,
        "matched": found,
        "recall": _ratio(found, len(outs)),
        "precision": _ratio(found, n_pred),
        "recall_by_size": by_size,
    }


def _binary(outs: Sequence[Outcome]) -> dict[str, Any]:
    matched = _matched(outs)
    flagged = {"mask": 0, "unmasked": 0}
    totals = {"mask": 0, "unmasked": 0}
    for o in outs:
        side = "mask" if o.gt_label == "mask" else "unmasked"
        totals[side] += 1
        flagged[side] += o.pred is not None and o.pred.label != "mask"
    agree = sum((gt == "mask") == (f.label == "mask") for gt, f in matched)
    return {
        "matched": len(matched),
        "accuracy": _ratio(agree, len(matched)),
        "unmasked_gt": totals["unmasked"],
        "unmasked_flagged": flagged["unmasked"],
        "tnr": _ratio(flagged["unmasked"], totals["unmasked"]),
        "mask_gt": totals["mask"],
        "mask_flagged": flagged["mask"],
        "fnr": _ratio(flagged["mask"], totals["mask"]),
        "roc_auc": _unmasked_roc(outs)[2],
        "pr_ap": _unmasked_pr(outs)[2],
    }


def _calibration(outs: Sequence[Outcome]) -> dict[str, Any]:
    """Calibration on matched faces, 3-class and mask-vs-not; the binary one is at p(mask) = 0.5 on purpose.

    It asks whether p(mask) itself is a fair probability, whatever threshold the alerts happen to use.
    """
    matched = _matched(outs)
    conf_3 = [f.confidence or 0.0 for _, f in matched]
    right_3 = [f.label == gt for gt, f in matched]
    p_mask = [_p_mask(f) for _, f in matched]
    conf_2 = [max(p, 1.0 - p) for p in p_mask]
    right_2 = [(p >= 0.5) == (gt == "mask") for p, (gt, _) in zip(p_mask, matched, strict=True)]
    return {
        "bins": CALIBRATION_BINS,
        "faces": len(matched),
        "ece_3class": expected_calibration_error(conf_3, right_3),
        "ece_binary": expected_calibration_error(conf_2, right_2),
        "reliability_3class": reliability_bins(conf_3, right_3),
    }


def _operating_points(outs: Sequence[Outcome], thresholds: Sequence[float] = THRESHOLDS) -> list[dict[str, Any]]:
    """The `binary` rates re-scored at other mask thresholds, to choose the default from the trade-off.

    Same definitions as `binary` (missed GT faces stay in the TNR and FNR denominators), with a face
    flagged when p(mask) < t, exactly as Face.with_class labels it; accuracy is on matched faces.
    """
    n_mask = sum(o.gt_label == "mask" for o in outs)
    n_unmasked = len(outs) - n_mask
    matched = [(gt == "mask", _p_mask(f)) for gt, f in _matched(outs)]
    rows = []
    for t in thresholds:
        unmasked_flagged = sum(not is_mask and p < t for is_mask, p in matched)
        mask_flagged = sum(is_mask and p < t for is_mask, p in matched)
        agree = sum(is_mask == (p >= t) for is_mask, p in matched)
        rows.append(
            {
                "threshold": t,
                "tnr": _ratio(unmasked_flagged, n_unmasked),
                "fnr": _ratio(mask_flagged, n_mask),
                "accuracy": _ratio(agree, len(matched)),
                "unmasked_flagged": unmasked_flagged,
                "mask_flagged": mask_flagged,
            }
        )
    return rows


def compute_metrics(
    annotated: Sequence[Annotated], results: Sequence[FrameResult], threshold: float
) -> dict[str, Any]:
    """All figures as a JSON-ready dict; `results[i]` must be the analysis of `annotated[i]`.

    AP (VOC all-point, IoU 0.5, greedy matching by the class confidence, each GT once), per setting
    ("folded": mask vs unmasked = no_mask + incorrect; "3class"):
    - `ap` / `map`: soft. Every detection competes for every class with confidence
      det score * p(class), so a good detector is not punished for one wrong argmax.
    - `ap_hard` / `map_hard`: each detection competes only for its predicted (folded) label, with
      confidence det score * Face.confidence: what the alerts actually see.
    A class without GT faces has AP None and is left out of the mean.

    Binary rates treat "mask" as the positive class: `tnr` is the share of all unmasked GT faces
    (missed ones included) that were detected and flagged, `fnr` the share of all mask GT faces flagged.
    `roc_auc` and `pr_ap` (VOC all-point AP of the precision-recall curve) are for flagging unmasked
    faces (score 1 - p(mask)) on matched faces only. `threshold` is only recorded: Face.label already
    applies it; `thresholds` re-scores the binary rates at each of THRESHOLDS from p(mask).

    `calibration` (matched faces, CALIBRATION_BINS equal-width bins): `ece_3class` with confidence
    Face.confidence and correct = predicted label is the GT label; `ece_binary` with confidence
    max(p(mask), 1 - p(mask)) and correct = (p(mask) >= 0.5) is (GT is mask); `reliability_3class` holds
    the per-bin count, mean confidence and accuracy behind the 3-class figure.
    """
    outs = outcomes(annotated, results)
    preds = [_predictions(r) for r in results]
    matrix = [[0] * len(LABELS) for _ in LABELS]
    for gt, face in _matched(outs):
        matrix[LABELS.index(gt)][LABELS.index(face.label or "")] += 1
    per_class = {}
    for g, label in enumerate(LABELS):
        n_gt, found = sum(o.gt_label == label for o in outs), sum(matrix[g])
        right = matrix[g][g]
        per_class[label] = {"gt": n_gt, "right": right, "wrong": found - right, "missed": n_gt - found}
    i = LABELS.index("incorrect")
    tp, predicted, actual = matrix[i][i], sum(row[i] for row in matrix), sum(matrix[i])
    return {
        "images": len(annotated),
        "failed_images": sum(r.error is not None for r in results),
        "threshold": threshold,
        "detection": _detection(outs, sum(len(p) for p in preds)),
        "ap": {name: _ap_setting(annotated, preds, fold) for name, fold in FOLDINGS.items()},
        "per_class": per_class,
        "binary": _binary(outs),
        "thresholds": _operating_points(outs),
        "calibration": _calibration(outs),
        "confusion": {"labels": list(LABELS), "matrix": matrix},
        "incorrect": {
            "tp": tp,
            "predicted": predicted,
            "gt_matched": actual,
            "precision": _ratio(tp, predicted),
            "recall": _ratio(tp, actual),
        },
    }


def save_plots(metrics: Mapping[str, Any], outs: Sequence[Outcome], out_dir: str | Path) -> tuple[Path, ...]:
    """Write roc.png, confusion.png, pr.png and reliability.png, returning their paths in that order.

    pyplot is imported here so that importing this module stays cheap.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    drawings: tuple[tuple[str, tuple[float, float], Callable[[Axes], None]], ...] = (
        ("roc.png", (5, 5), lambda ax: _draw_roc(ax, outs)),
        ("confusion.png", (5, 4.5), lambda ax: _draw_confusion(ax, metrics)),
        ("pr.png", (5, 5), lambda ax: _draw_pr(ax, outs, metrics["threshold"])),
        ("reliability.png", (5, 5), lambda ax: _draw_reliability(ax, metrics["calibration"])),
    )
    paths = []
    for name, size, draw in drawings:
        fig, ax = plt.subplots(figsize=size)
        draw(ax)
        path = out / name
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return tuple(paths)


def _draw_roc(ax: Axes, outs: Sequence[Outcome]) -> None:
    fpr, tpr, auc = _unmasked_roc(outs)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    if auc is None:
        ax.text(0.5, 0.5, "undefined: matched faces lack one class", ha="center")
    else:
        ax.plot(fpr, tpr, label=f"AUC {auc:.3f}")
        ax.legend(loc="lower right")
    ax.set(xlabel="mask faces flagged (FPR)", ylabel="unmasked faces flagged (TPR)", xlim=(0, 1), ylim=(0, 1))
    ax.set_title("Unmasked vs mask, matched faces, score 1 - p(mask)")


def _draw_confusion(ax: Axes, metrics: Mapping[str, Any]) -> None:
    matrix, labels = np.asarray(metrics["confusion"]["matrix"]), metrics["confusion"]["labels"]
    ax.imshow(matrix, cmap="Blues")
    for (r, c), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        ax.text(c, r, str(count), ha="center", va="center", color=colour)
    ticks = range(len(labels))
    ax.set(xticks=ticks, yticks=ticks, xticklabels=labels, yticklabels=labels, xlabel="predicted")
    ax.set_ylabel("GT")
    ax.set_title(f"Matched faces, mask threshold {metrics['threshold']}")


def _draw_pr(ax: Axes, outs: Sequence[Outcome], threshold: float) -> None:
    """The curve plus the point the alerts run at, so the threshold can be read against the whole curve."""
    positive, scores = _unmasked_scores(outs)
    recall, precision, ap = precision_recall_curve(positive, scores)
    if ap is None:
        ax.text(0.5, 0.5, "undefined: no unmasked matched faces", ha="center")
    else:
        # Chance level: flagging everyone gives the share of unmasked faces as precision.
        ax.axhline(sum(positive) / len(positive), color="grey", linestyle=":", linewidth=1)
        ax.plot(
            np.concatenate([[0.0], recall]),
            np.concatenate([precision[:1], precision]),
            drawstyle="steps-pre",
            label=f"AP {ap:.3f}",
        )
        # p(mask) itself, not 1 - score, so a face exactly at the threshold is treated as Face.with_class does.
        flagged = [gt != "mask" for gt, f in _matched(outs) if _p_mask(f) < threshold]
        if flagged:
            point = (sum(flagged) / sum(positive), sum(flagged) / len(flagged))
            ax.plot(*point, "o", color="black", label=f"p(mask) < {threshold}")
        ax.legend(loc="lower left")
    ax.set(xlabel="unmasked faces flagged (recall)", ylabel="flagged faces unmasked (precision)")
    ax.set(xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title("Flagging unmasked, matched faces, score 1 - p(mask)")


def _draw_reliability(ax: Axes, calibration: Mapping[str, Any]) -> None:
    """Accuracy per confidence bin against the diagonal; bars below it mean overconfidence."""
    table, width = calibration["reliability_3class"], 1.0 / calibration["bins"]
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfectly calibrated")
    filled = [(i, n, acc) for i, (n, acc) in enumerate(zip(table["count"], table["accuracy"], strict=True)) if n]
    if filled:
        ax.bar(
            [i * width for i, _, _ in filled],
            [acc for _, _, acc in filled],
            width=width,
            align="edge",
            edgecolor="black",
            alpha=0.7,
            label="accuracy",
        )
        for i, n, acc in filled:
            ax.text((i + 0.5) * width, acc + 0.01, str(n), ha="center", va="bottom", fontsize=7)
        ax.legend(loc="upper left")
    else:
        ax.text(0.5, 0.5, "no matched faces", ha="center")
    ax.set(xlabel="confidence of the predicted label", ylabel="accuracy (count above the bar)")
    ax.set(xlim=(0, 1), ylim=(0, 1.08))
    ax.set_title(f"3-class reliability, {calibration['faces']} matched faces, ECE {_fmt(calibration['ece_3class'])}")


def run(
    annotations_path: str | Path,
    analyze: Callable[[str], FrameResult],
    out_dir: str | Path,
    threshold: float,
    progress: Callable[[], object] | None = None,
    annotated: Sequence[Annotated] | None = None,
) -> dict[str, Any]:
    """Analyse every annotated image; write metrics.json, predictions.jsonl and the plots to out_dir.

    Predictions are written as they come so that a crash mid-run still leaves what was computed.
    `annotated`: the file's annotations when the caller has already loaded them (not read again).
    """
    if annotated is None:
        annotated = load_annotations(annotations_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with (out / "predictions.jsonl").open("w", encoding="utf-8") as fh:
        for ann in annotated:
            result = analyze(str(ann.image))
            if result.error is not None:
                log.warning("%s failed: %s", ann.image, result.error)
            fh.write(json.dumps(result.to_dict()) + "\n")
            results.append(result)
            if progress is not None:
                progress()
    metrics = compute_metrics(annotated, results, threshold)
    metrics["annotations"] = str(Path(annotations_path).resolve())
    metrics["plots"] = [p.name for p in save_plots(metrics, outcomes(annotated, results), out)]
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    log.info("evaluated %d images into %s", len(annotated), out)
    return metrics


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_report(metrics: Mapping[str, Any]) -> str:
    """Plain text for the terminal, with the counts behind each rate so small denominators show."""
    det, bi, inc, conf = metrics["detection"], metrics["binary"], metrics["incorrect"], metrics["confusion"]
    cal = metrics["calibration"]
    sizes = det["recall_by_size"]
    lines = [
        f"Images {metrics['images']} ({metrics['failed_images']} failed), threshold {metrics['threshold']}",
        (
            f"Detection @ IoU {det['iou']}: recall {_fmt(det['recall'])} ({det['matched']}/{det['gt']} GT), "
            f"precision {_fmt(det['precision'])} ({det['matched']}/{det['predictions']} predicted)"
        ),
        "  recall by face size (px): "
        + "  ".join(f"{k} {_fmt(b['recall'])} ({b['matched']}/{b['gt']})" for k, b in sizes.items()),
        "Average precision (soft: score*p(class) for every class; hard: predicted label only)",
    ]
    for setting, ap in metrics["ap"].items():
        for key in ("", "_hard"):
            per_class = "  ".join(f"{cls} {_fmt(v)}" for cls, v in ap[f"ap{key}"].items())
            lines.append(f"  {setting + key:<12} mAP {_fmt(ap[f'map{key}'])}   {per_class}")
    lines.append(f"  {'GT class':<10}{'gt':>7}{'right':>7}{'wrong':>7}{'missed':>7}")
    for label, row in metrics["per_class"].items():
        lines.append(f"  {label:<10}" + "".join(f"{row[k]:>7}" for k in ("gt", "right", "wrong", "missed")))
    lines += [
        (
            f"Mask vs not: accuracy {_fmt(bi['accuracy'])} on {bi['matched']} matched, "
            f"AUC {_fmt(bi['roc_auc'])}, PR AP {_fmt(bi['pr_ap'])}"
        ),
        f"  TNR unmasked flagged {_fmt(bi['tnr'])} ({bi['unmasked_flagged']}/{bi['unmasked_gt']}, + missed)",
        f"  FNR mask flagged     {_fmt(bi['fnr'])} ({bi['mask_flagged']}/{bi['mask_gt']})",
        "  by mask threshold t (flagged if p(mask) < t; TNR, FNR count missed faces; accuracy on matched):",
        f"  {'t':>5}{'TNR':>8}{'FNR':>8}{'accuracy':>10}",
    ]
    for row in metrics["thresholds"]:
        in_use = "  <- in use" if row["threshold"] == metrics["threshold"] else ""
        lines.append(
            f"  {row['threshold']:>5}{_fmt(row['tnr']):>8}{_fmt(row['fnr']):>8}{_fmt(row['accuracy']):>10}{in_use}"
        )
    lines += [
        (
            f"Calibration on {cal['faces']} matched faces, {cal['bins']} bins: ECE 3-class {_fmt(cal['ece_3class'])}, "
            f"mask vs not {_fmt(cal['ece_binary'])}"
        ),
        "Confusion on matched faces (rows GT, columns predicted)",
        " " * 12 + "".join(f"{label:>10}" for label in conf["labels"]),
    ]
    for label, row in zip(conf["labels"], conf["matrix"], strict=True):
        lines.append(f"  {label:<10}" + "".join(f"{n:>10}" for n in row))
    lines.append(
        f"incorrect on matched faces: precision {_fmt(inc['precision'])} ({inc['tp']}/{inc['predicted']}), "
        f"recall {_fmt(inc['recall'])} ({inc['tp']}/{inc['gt_matched']})"
    )
    return "\n".join(lines)


def hard_case_figures(
    probs: np.ndarray, labels: Sequence[str], cases: Sequence[str], threshold: float
) -> dict[str, dict[str, Any]]:
    """Per hard case (see synth.HARD_CASES): how often the face is flagged the
    right way (masked vs not, at `threshold`) and given its exact label."""
    out: dict[str, dict[str, Any]] = {}
    for case in dict.fromkeys(cases):
        idx = [i for i, c in enumerate(cases) if c == case]
        label = labels[idx[0]]
        p_mask = probs[idx, LABELS.index("mask")]
        masked = p_mask >= threshold
        exact = [
            LABELS[int(np.argmax(probs[i, 1:])) + 1] == label if not m else label == "mask"
            for i, m in zip(idx, masked, strict=True)
        ]
        out[case] = {
            "label": label,
            "n": len(idx),
            "binary_right": float(np.mean(masked == (label == "mask"))),
            "exact_right": float(np.mean(exact)),
            "mean_p_mask": float(np.mean(p_mask)),
        }
    return out


def format_hard_cases(figures: Mapping[str, Mapping[str, Any]]) -> str:
    lines = [f"  {'case':<14}{'label':<11}{'n':>4}{'masked-vs-not':>15}{'exact label':>13}{'mean p(mask)':>14}"]
    for case, f in figures.items():
        lines.append(
            f"  {case:<14}{f['label']:<11}{f['n']:>4}{f['binary_right']:>15.3f}{f['exact_right']:>13.3f}"
            f"{f['mean_p_mask']:>14.3f}"
        )
    return "\n".join(lines)
