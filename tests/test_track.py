"""Tracks across frames, the label vote and the compliance summary.

The vote and the summary are tested on hand-made inputs; tracking is tested
on hand-made boxes, then with the real detector and classifier on a panned
example photo.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from maskwatch.compliance import compliance_over_time, people_per_label, summarize
from maskwatch.evaluate import iou
from maskwatch.pipeline import Pipeline
from maskwatch.track import (
    UNKNOWN,
    FaceTracker,
    Track,
    TrackConfig,
    counts_as_vote,
    decide,
    join_retracked,
    shifted,
    tally,
)
from maskwatch.types import LABELS, Face, FrameResult
from video_helpers import pan


def face(box=(100, 100, 160, 170), label: str | None = "mask", confidence: float = 0.95, score: float = 0.9) -> Face:
    probs = None
    if label is not None:
        rest = (1 - confidence) / 2
        probs = {k: confidence if k == label else rest for k in LABELS}
    return Face(box=box, score=score, label=label, confidence=None if label is None else confidence, probs=probs)


# -- the vote: hand-made inputs ----------------------------------------------------------


def test_one_bad_frame_does_not_flip_the_label() -> None:
    cfg = TrackConfig(min_votes=3)
    weights, n = tally([("mask", 0.9), ("mask", 0.85), ("no_mask", 0.99), ("mask", 0.8)])
    assert decide(weights, n, cfg) == ("mask", pytest.approx(2.55 / 3.54))


def test_confident_frames_outweigh_doubtful_ones() -> None:
    weights, n = tally([("mask", 0.61), ("mask", 0.62), ("no_mask", 0.97), ("no_mask", 0.95)])
    assert decide(weights, n, TrackConfig(min_votes=3))[0] == "no_mask"


@pytest.mark.parametrize(("votes", "expected"), [
    ([], UNKNOWN),
    ([("mask", 0.99)], UNKNOWN),
    ([("mask", 0.99), ("mask", 0.99)], UNKNOWN),
    ([("mask", 0.99), ("mask", 0.99), ("incorrect", 0.7)], "mask"),
    ([("incorrect", 0.8)] * 3, "incorrect"),
])
def test_unknown_until_enough_votes(votes, expected: str) -> None:
    weights, n = tally(votes)
    assert decide(weights, n, TrackConfig(min_votes=3))[0] == expected


@pytest.mark.parametrize(("f", "counts"), [
    (face(), True),
    (face(box=(0, 0, 20, 22)), False),  # too small for the classifier
    (face(confidence=0.5), False),  # the classifier was unsure
    (face(label=None), False),  # not classified
    (replace(face(), landmarks=((30, 40), (60, 40), (47, 55), (35, 70), (55, 70))), True),  # frontal
    (replace(face(), landmarks=((30, 40), (45, 40), (70, 55), (40, 70), (60, 70))), False),  # in profile
])
def test_which_faces_vote(f: Face, counts: bool) -> None:
    assert counts_as_vote(f, TrackConfig(min_face=24, min_confidence=0.6)) is counts


def test_track_stays_unknown_while_its_faces_are_too_small_or_unsure() -> None:
    cfg = TrackConfig(min_votes=2, min_face=24, min_confidence=0.6)
    track = Track(1, 0, 0, 0.0, 0.0, frames=0)
    for i, f in enumerate([face(box=(0, 0, 10, 12)), face(confidence=0.4), face(box=(0, 0, 12, 12), label="no_mask")]):
        track = track.seen(f, i, i / 25, cfg)
    assert (track.label, track.votes, track.frames) == (UNKNOWN, 0, 3)
    track = track.seen(face(), 3, 0.12, cfg).seen(face(confidence=0.8), 4, 0.16, cfg)
    assert (track.label, track.votes) == ("mask", 2) and track.confidence == 1.0


def test_config_bounds() -> None:
    with pytest.raises(ValueError, match="min_votes"):
        TrackConfig(min_votes=0)
    with pytest.raises(ValueError, match="lost_seconds"):
        TrackConfig(lost_seconds=0)


# -- tracking hand-made boxes --------------------------------------------------------------


def moving_faces(i: int) -> tuple[Face, ...]:
    """Two faces walking towards each other, 6 px per frame, and one standing still."""
    return (face(box=(50 + 6 * i, 100, 110 + 6 * i, 170)),
            face(box=(400 - 6 * i, 90, 460 - 6 * i, 165), label="no_mask"),
            face(box=(250, 300, 300, 360), label="incorrect"))


def test_ids_stay_with_the_same_face() -> None:
    tracker = FaceTracker(TrackConfig(min_votes=3), fps=25)
    seen = []
    for i in range(20):
        out = tracker.update(FrameResult("t", 640, 480, moving_faces(i)), i, i / 25)
        seen.append(out.extra["track_ids"])
    assert seen[0] == [None, None, None]  # one detection is not a track yet
    assert all(ids == seen[1] for ids in seen[1:]) and len(set(seen[1])) == 3
    assert out.extra["track_labels"] == ["mask", "no_mask", "incorrect"]
    assert out.to_dict()["faces"][0].keys() == face().to_dict().keys()  # per-face schema unchanged


def test_a_missed_detection_keeps_the_id_and_a_long_absence_ends_the_track() -> None:
    tracker = FaceTracker(TrackConfig(lost_seconds=0.5), fps=25)
    one = lambda i: (face(box=(50 + 4 * i, 100, 110 + 4 * i, 170)),)  # noqa: E731
    ids = [tracker.update(FrameResult("t", 640, 480, one(i)), i, i / 25).extra["track_ids"] for i in range(5)]
    tracker.update(FrameResult("t", 640, 480, ()), 5, 5 / 25)  # missed in one frame
    assert tracker.retire() == []
    again = tracker.update(FrameResult("t", 640, 480, one(6)), 6, 6 / 25).extra["track_ids"]
    assert again == ids[-1] != [None]
    for i in range(7, 30):  # gone for almost a second
        tracker.update(FrameResult("t", 640, 480, ()), i, i / 25)
    (ended,) = tracker.retire()
    assert (ended.track_id, ended.first_frame, ended.last_frame, ended.frames) == (again[0], 1, 6, 5)
    assert tracker.finish() == []


def test_hold_moves_faces_by_their_track_velocity() -> None:
    tracker = FaceTracker(TrackConfig(), fps=30)
    for i in (0, 3, 6):  # detection every third frame; the face moves 2 px per frame
        out = tracker.update(FrameResult("t", 640, 480, (face(box=(100 + 2 * i, 50, 160 + 2 * i, 120)),)), i, i / 30)
    held = tracker.hold("t", 640, 480, 7 / 30)
    assert held.extra["detected"] is False and held.extra["track_ids"] == out.extra["track_ids"]
    assert held.faces[0].box == pytest.approx((114, 50, 174, 120))
    assert held.faces[0].label == "mask"


def test_shifted_face_stays_inside_the_frame() -> None:
    f = Face(box=(600, 10, 630, 40), score=0.9, landmarks=((610, 20),) * 5)
    moved = shifted(f, 25, -20, 640, 480)
    assert moved.box == (610, 0, 640, 30) and moved.landmarks[0] == (620, 10)


# -- compliance summary: hand-made tracks -------------------------------------------------------


def track(tid: int, label: str, first: float, last: float) -> Track:
    return Track(tid, 0, 0, first, last, label=label)


def test_people_per_label_and_compliance_per_minute() -> None:
    tracks = [track(1, "mask", 0, 30), track(2, "no_mask", 10, 70), track(3, "mask", 65, 100),
              track(4, UNKNOWN, 70, 71), track(5, "incorrect", 130, 140)]
    assert people_per_label(tracks) == {"mask": 2, "no_mask": 1, "incorrect": 1, UNKNOWN: 1}
    rows = compliance_over_time(tracks, 60)
    assert [r["people"] for r in rows] == [2, 3, 1]
    assert [r["compliance"] for r in rows] == [0.5, 0.5, 0.0]
    summary = summarize(tracks, 60)
    assert summary["people"] == 5 and summary["compliance"] == 0.5  # unknown left out of the share


def test_summary_of_nobody() -> None:
    summary = summarize([], 60, duration=12.0)
    assert summary["people"] == 0 and summary["compliance"] is None
    assert summary["compliance_over_time"][0]["compliance"] is None


# -- the real detector and classifier on a panned photo ------------------------------------------------


@pytest.fixture(scope="module")
def pipe() -> Pipeline:
    return Pipeline()


@pytest.fixture(scope="module")
def clip():
    return pan("maksssksksss787.png", n=16)


def annotated_track_ids(clip, results) -> dict[int, set]:
    """For each annotated face: the track ids of the detections on it (IoU >= 0.4), frame by frame."""
    found: dict[int, set] = {k: set() for k in range(len(clip.labels))}
    for boxes, result in zip(clip.boxes, results, strict=True):
        for k, gt in enumerate(boxes):
            for f, tid in zip(result.faces, result.extra["track_ids"], strict=True):
                if tid is not None and iou(gt, f.box) >= 0.4:
                    found[k].add(tid)
    return found


def test_real_faces_keep_one_track_id_each(pipe: Pipeline, clip) -> None:
    tracker = FaceTracker(fps=25)
    results = [tracker.update(FrameResult("pan", 640, 480, tuple(pipe.faces(rgb))), i, i / 25)
               for i, rgb in enumerate(clip.frames)]
    found = annotated_track_ids(clip, results)
    assert sum(len(ids) == 1 for ids in found.values()) >= len(found) - 1, found
    ids = [next(iter(v)) for v in found.values() if len(v) == 1]
    assert len(set(ids)) == len(ids)  # and different people have different ids
    labels = {tid: t.label for tid, t in tracker.tracks.items()}
    right = sum((labels[next(iter(v))] == "mask") == (gt == "mask")
                for v, gt in zip(found.values(), clip.labels, strict=True) if len(v) == 1)
    assert right >= len(ids) - 1


def test_detect_every_third_frame_tracks_in_between(pipe: Pipeline, clip) -> None:
    tracker = FaceTracker(fps=25)
    results, detected = [], 0
    for i, rgb in enumerate(clip.frames):
        if i % 3 == 0:
            results.append(tracker.update(FrameResult("pan", 640, 480, tuple(pipe.faces(rgb))), i, i / 25))
            detected += 1
        else:
            results.append(tracker.hold("pan", 640, 480, i / 25))
    assert detected == 6 and len(results) == 16
    assert [r.extra["detected"] for r in results[:4]] == [True, False, False, True]
    found = annotated_track_ids(clip, results)  # held boxes follow the faces
    assert sum(len(ids) == 1 for ids in found.values()) >= len(found) - 1, found
    assert results[7].extra["track_ids"] == results[6].extra["track_ids"]
    # a track's speed is known from its second detection on: held faces then move along
    moved = [b.box[0] - a.box[0] for a, b, tid in zip(results[6].faces, results[7].faces, results[6].extra["track_ids"],
                                                         strict=True) if tid is not None]
    assert len(moved) >= 6 and sum(3 < dx < 5 for dx in moved) >= len(moved) - 2, moved  # 4 px per frame


def test_a_person_lost_for_a_moment_is_one_person_in_the_summary() -> None:
    """The tracker lost person 1 at 5 s and found them again as track 2 at 5.5 s, in the same place:
    one person, votes pooled; track 3 starts far away and track 4 too late: other people."""
    def at(x: float) -> Face:
        return Face(box=(x, 100, x + 40, 140), score=0.9)

    w = dict.fromkeys(("mask", "no_mask", "incorrect"), 0.0)
    tracks = [
        Track(1, 0, 50, 0.0, 5.0, votes=2, weights={**w, "no_mask": 1.8}, label=UNKNOWN, face=at(100),
              first_box=at(60).box),
        Track(2, 55, 90, 5.5, 9.0, votes=2, weights={**w, "no_mask": 1.7}, label=UNKNOWN, face=at(160),
              first_box=at(110).box),
        Track(3, 55, 90, 5.5, 9.0, votes=3, weights={**w, "mask": 2.9}, label="mask", face=at(500),
              first_box=at(400).box),
        Track(4, 140, 150, 14.0, 15.0, votes=3, weights={**w, "mask": 2.9}, label="mask", face=at(160),
              first_box=at(160).box),
    ]
    people = join_retracked(tracks, TrackConfig(min_votes=3, rejoin_seconds=2.0))
    assert sorted(p.track_id for p in people) == [1, 3, 4]
    one = next(p for p in people if p.track_id == 1)
    assert (one.label, one.votes, one.last_time) == ("no_mask", 4, 9.0)  # neither half had enough votes alone
    summary = summarize(tracks, 60, config=TrackConfig(min_votes=3))
    assert summary["tracks"] == 4 and summary["people"] == 3
    assert summary["people_per_label"] == {"mask": 2, "no_mask": 1, "incorrect": 0, UNKNOWN: 0}
    assert summarize(tracks, 60, config=TrackConfig(min_votes=3, rejoin_seconds=0))["people"] == 4
