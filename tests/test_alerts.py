"""Alert rules on hand-made tracked frames, with a fake clock."""

from __future__ import annotations

import pytest

from maskwatch.alerts import FORGET_SECONDS, Alert, AlertConfig, AlertRules
from maskwatch.track import UNKNOWN
from maskwatch.types import Face, FrameResult

FPS = 10


class FakeClock:
    """UNIX time that moves only when a test says so."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def frame(t: float, *people: tuple[int | None, str | None, float | None]) -> FrameResult:
    """A tracked frame at `t` s: one face per (track id, voted label, vote share)."""
    faces = tuple(Face(box=(10.0 * i, 10, 10.0 * i + 40, 50), score=0.9, label="no_mask", confidence=0.9)
                  for i in range(len(people)))
    return FrameResult("cam", 640, 480, faces, extra={
        "time": t, "track_ids": [p[0] for p in people], "track_labels": [p[1] for p in people],
        "track_confidences": [p[2] for p in people]})


def run(rules: AlertRules, clock: FakeClock, seconds: float, *people, start: float = 0.0) -> list[Alert]:
    """Feed `seconds` of frames at FPS showing `people`, moving the clock along."""
    alerts = []
    for i in range(round(seconds * FPS)):
        t = start + i / FPS
        clock.now = 1_700_000_000.0 + t
        alerts += rules.update(frame(t, *people))
    return alerts


def test_alerts_once_the_person_has_been_unmasked_for_the_threshold_time() -> None:
    clock = FakeClock()
    rules = AlertRules(AlertConfig(after_seconds=2.0, min_confidence=0.7), source="door", clock=clock)
    assert run(rules, clock, 2.0, (7, "no_mask", 0.9)) == []  # 0 .. 1.9 s
    (alert,) = run(rules, clock, 0.1, (7, "no_mask", 0.9), start=2.0)
    assert (alert.source, alert.track_id, alert.label, alert.confidence) == ("door", 7, "no_mask", 0.9)
    assert alert.first_seen == 1_700_000_000.0 and alert.time == 1_700_000_002.0
    assert alert.video_time == 2.0 and alert.box == (0.0, 10.0, 40.0, 50.0) and alert.snapshot is None


def test_one_alert_per_person_and_each_person_alerts() -> None:
    clock = FakeClock()
    rules = AlertRules(AlertConfig(after_seconds=1.0, cooldown_seconds=300), clock=clock)
    alerts = run(rules, clock, 60.0, (1, "no_mask", 0.95), (2, "incorrect", 0.8), (3, "mask", 0.99))
    assert sorted((a.track_id, a.label) for a in alerts) == [(1, "no_mask"), (2, "incorrect")]
    assert len({a.id for a in alerts}) == 2


def test_cooldown_allows_a_new_alert_for_the_same_person_later() -> None:
    clock = FakeClock()
    rules = AlertRules(AlertConfig(after_seconds=0.0, cooldown_seconds=5.0), clock=clock)
    alerts = run(rules, clock, 12.0, (4, "no_mask", 0.9))
    assert [a.video_time for a in alerts] == pytest.approx([0.0, 5.0, 10.0])


def test_the_clock_restarts_when_the_mask_goes_back_on() -> None:
    clock = FakeClock()
    rules = AlertRules(AlertConfig(after_seconds=2.0), clock=clock)
    assert run(rules, clock, 1.5, (1, "no_mask", 0.9)) == []
    assert run(rules, clock, 1.0, (1, "mask", 0.9), start=1.5) == []
    assert run(rules, clock, 1.5, (1, "no_mask", 0.9), start=2.5) == []  # 1.5 s of the second stretch
    (alert,) = run(rules, clock, 1.0, (1, "no_mask", 0.9), start=4.0)
    assert alert.video_time == pytest.approx(4.5)
    assert alert.first_seen == pytest.approx(1_700_000_002.5)


def test_no_mask_and_incorrect_count_as_one_stretch() -> None:
    clock = FakeClock()
    rules = AlertRules(AlertConfig(after_seconds=2.0), clock=clock)
    assert run(rules, clock, 1.5, (1, "incorrect", 0.9)) == []
    (alert,) = run(rules, clock, 1.0, (1, "no_mask", 0.9), start=1.5)
    assert alert.label == "no_mask" and alert.video_time == pytest.approx(2.0)


def test_a_doubtful_vote_waits_until_it_is_sure_enough() -> None:
    clock = FakeClock()
    rules = AlertRules(AlertConfig(after_seconds=1.0, min_confidence=0.8), clock=clock)
    assert run(rules, clock, 5.0, (1, "no_mask", 0.6)) == []
    (alert,) = run(rules, clock, 1.0, (1, "no_mask", 0.85), start=5.0)
    assert alert.video_time == 5.0 and alert.confidence == 0.85
    assert alert.first_seen == 1_700_000_000.0  # the stretch began at 0 s: doubt does not restart it


@pytest.mark.parametrize("person", [
    (None, None, None),  # a face without a confirmed track
    (None, "no_mask", 0.99),
    (5, UNKNOWN, 0.0),  # a track without enough votes
    (5, None, None),
    (5, "mask", 0.99),
])
def test_faces_without_a_labelled_unmasked_track_never_alert(person) -> None:
    clock = FakeClock()
    rules = AlertRules(AlertConfig(after_seconds=0.0, min_confidence=0.0), clock=clock)
    assert run(rules, clock, 3.0, person) == []


def test_frames_without_tracking_information_raise_nothing() -> None:
    rules = AlertRules(AlertConfig(after_seconds=0.0))
    faces = (Face(box=(0, 0, 40, 40), score=0.9, label="no_mask", confidence=0.99),)
    assert rules.update(FrameResult("cam", 640, 480, faces), 1.0) == []


def test_only_the_configured_labels_alert() -> None:
    clock = FakeClock()
    rules = AlertRules(AlertConfig(after_seconds=0.0, labels=("incorrect",)), clock=clock)
    alerts = run(rules, clock, 1.0, (1, "no_mask", 0.9), (2, "incorrect", 0.9))
    assert [a.track_id for a in alerts] == [2]


def test_gone_tracks_are_forgotten_but_not_before_their_cooldown() -> None:
    clock = FakeClock()
    rules = AlertRules(AlertConfig(after_seconds=0.0, cooldown_seconds=30.0), clock=clock)
    run(rules, clock, 1.0, (1, "no_mask", 0.9), (2, "mask", 0.9))
    assert rules.tracked == 2
    run(rules, clock, 1.0, start=FORGET_SECONDS + 2)  # frames with nobody in them
    assert rules.tracked == 1  # track 2 forgotten; track 1 kept for its cooldown
    assert run(rules, clock, 0.1, (1, "no_mask", 0.9), start=20.0) == []  # still cooling down
    run(rules, clock, 0.1, start=45.0)
    assert rules.tracked == 0


def test_alert_json_round_trip_with_snapshot() -> None:
    alert = Alert(id="abc", source="cam", track_id=3, label="incorrect", confidence=0.875,
                  first_seen=1_700_000_000.25, time=1_700_000_003.5, video_time=3.25, box=(1, 2, 3, 4),
                  snapshot=b"\xff\xd8jpeg")
    d = alert.to_dict()
    assert d["time"] == "2023-11-14T22:13:23.500Z" and d["snapshot_jpeg"] == "/9hqcGVn"
    assert Alert.from_dict(d) == alert


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"after_seconds": -1}, "after_seconds"),
    ({"min_confidence": 1.5}, "min_confidence"),
    ({"cooldown_seconds": -1}, "cooldown_seconds"),
    ({"labels": ("no_mask", "hat")}, "labels"),
    ({"labels": ()}, "labels"),
])
def test_config_bounds(kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AlertConfig(**kwargs)


def placed(t: float, *people: tuple[int, float]) -> FrameResult:
    """A frame at `t` s with unmasked people (track id, x of a 40 px face)."""
    faces = tuple(Face(box=(x, 100, x + 40, 140), score=0.9, label="no_mask", confidence=0.9) for _, x in people)
    return FrameResult("cam", 640, 480, faces, extra={
        "time": t, "track_ids": [p[0] for p in people], "track_labels": ["no_mask"] * len(people),
        "track_confidences": [0.9] * len(people)})


@pytest.mark.parametrize(("new_x", "gap", "alerts_again"), [
    (105.0, 0.5, False),  # the tracker lost the person for half a second: same person, no second alert
    (400.0, 0.5, True),   # someone else, elsewhere in the frame
    (105.0, 3.0, True),   # back after longer than rejoin_seconds: a new visit
])
def test_a_person_re_tracked_under_a_new_id_does_not_alert_twice(new_x: float, gap: float,
                                                                  alerts_again: bool) -> None:
    clock = FakeClock()
    rules = AlertRules(AlertConfig(after_seconds=1.0, rejoin_seconds=2.0), clock=clock)
    first = [a for i in range(20) for a in rules.update(placed(i / FPS, (1, 100.0)))]
    assert [a.track_id for a in first] == [1]
    start = 1.9 + gap
    second = [a for i in range(30) for a in rules.update(placed(start + i / FPS, (2, new_x)))]
    assert [a.track_id for a in second] == ([2] if alerts_again else [])


def test_two_people_side_by_side_are_two_people() -> None:
    """An alerted track still in view is not taken over by a new one next to it."""
    clock = FakeClock()
    rules = AlertRules(AlertConfig(after_seconds=1.0), clock=clock)
    alerts = [a for i in range(20) for a in rules.update(placed(i / FPS, (1, 100.0)))]
    alerts += [a for i in range(20, 50) for a in rules.update(placed(i / FPS, (1, 100.0), (2, 130.0)))]
    assert sorted(a.track_id for a in alerts) == [1, 2]
