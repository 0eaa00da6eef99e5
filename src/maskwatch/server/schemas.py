"""Request and response bodies of the API, apart from the internal types.

These are what the OpenAPI document shows; routes build them from
`FrameResult`, `Alert` and the camera views.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Label = Literal["mask", "no_mask", "incorrect"]


class Problem(BaseModel):
    """Every error answer: `detail` names the input and the reason."""

    detail: str | list = Field(description="what was wrong; a list of field errors for 422 validation errors")


class FaceOut(BaseModel):
    box: list[float] = Field(description="[x1, y1, x2, y2] in pixels of the image as stored", min_length=4,
                             max_length=4)
    score: float = Field(description="face detector score")
    landmarks: list[list[float]] = Field(description="5 points [x, y]: eyes, nose, mouth corners")
    label: Label | None = None
    confidence: float | None = Field(None, description="classifier probability of `label`")
    probs: dict[str, float] | None = None


class DetectResult(BaseModel):
    """The part-1 JSON schema: one image's faces (`error` instead when it could not be read)."""

    model_config = ConfigDict(extra="allow")

    image: str = Field(description="the uploaded file's name, or `upload` for a raw body")
    width: int
    height: int
    faces: list[FaceOut]
    error: str | None = None
    orientation: int | None = Field(None, description="EXIF orientation when not 1 (boxes stay in stored pixels)")
    annotated_jpeg: str | None = Field(None, description="with ?with_image=true: the annotated image, base64 JPEG")


class BatchItem(DetectResult):
    status: int = Field(200, description="the status a single /v1/detect of this image would have had")


class BatchResult(BaseModel):
    results: list[BatchItem]


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    workers: int
    cameras: int


class CameraCreate(BaseModel):
    """A camera to run: an http(s)/rtsp(s) stream URL, or a webcam index such as `0`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=80, description="shown on the dashboard")
    url: str = Field(min_length=1, max_length=2000,
                     description="http(s) MJPEG or rtsp(s) URL, or a webcam index; never a file")
    detect_every: int = Field(2, ge=1, le=30, description="run the detector on every n-th frame (faster, "
                                                          "boxes lag on sudden moves)")
    alert_after: float = Field(3.0, ge=0, le=3600, description="seconds a person must be unmasked before an alert")
    alert_confidence: float = Field(0.7, ge=0.5, le=1, description="vote share the label needs to alert")
    alert_cooldown: float = Field(300.0, ge=0, le=86400, description="seconds before the same person alerts again")


class CompliancePoint(BaseModel):
    start: float = Field(description="UNIX time the bucket starts")
    people: int
    mask: int
    no_mask: int
    incorrect: int
    unknown: int
    compliance: float | None = Field(description="share of labelled people properly masked; null if none")


class CameraOut(BaseModel):
    id: str
    name: str
    url: str = Field(description="the source, its password (if any) replaced by ***")
    detect_every: int
    alert_after: float
    alert_confidence: float
    alert_cooldown: float
    created: float
    status: Literal["starting", "connecting", "live", "stalled", "error", "stopped"]
    error: str | None
    frames: int
    fps: float
    last_frame: float | None
    in_view: dict[str, int] = Field(description="faces in the latest frame per voted track label")
    compliance: float | None = Field(description="share properly masked among people seen in the current bucket")
    history: list[CompliancePoint]


class CameraList(BaseModel):
    cameras: list[CameraOut]


class EventOut(BaseModel):
    id: str
    camera: str = Field(description="the camera id (the alert's source)")
    track_id: int
    label: Label
    confidence: float
    first_seen: datetime
    time: datetime
    video_time: float
    box: list[float] | None
    snapshot_url: str | None = Field(description="the face JPEG, when snapshots are on and still kept")


class EventPage(BaseModel):
    total: int
    limit: int
    offset: int
    next_offset: int | None
    events: list[EventOut]


class Stats(BaseModel):
    uptime_seconds: float
    workers: int
    queue_capacity: int
    pending: int
    images: dict[str, int]
    faces: dict[str, int]
    cameras: int
    cameras_live: int
    alerts: dict[str, int]
    alerts_last_hour: dict[str, int]
