"""Hand-checked cases for maskwatch.evaluate; every expected number is derived in a comment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from maskwatch.evaluate import (
    THRESHOLDS,
    Annotated,
    average_precision,
    compute_metrics,
    expected_calibration_error,
    format_report,
    iou,
    load_annotations,
    match,
    precision_recall_curve,
    reliability_bins,
    roc_curve,
    run,
)
from maskwatch.types import Face, FrameResult

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def face(box: tuple[float, float, float, float], score: float, mask: float, no: float, inc: float) -> Face:
    return Face(box, score).with_class({"mask": mask, "no_mask": no, "incorrect": inc}, threshold=0.5)


def test_iou_of_known_boxes() -> None:
    # 10x10 boxes shifted by 5 px: intersection 5*10 = 50, union 100 + 100 - 50 = 150.
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges share no area


def test_greedy_match_lets_the_most_confident_prediction_pick_first() -> None:
    gts = [(0, 0, 10, 10), (4, 0, 14, 10)]
    # Pred 1 (score .9) overlaps GT0 by 9 px: 90/110 = .818, GT1 by 7 px: 70/130 = .538 -> takes GT0.
    # Pred 0 (score .6) prefers GT0 too (8.5 px: 85/115 = .739) but GT0 is taken, so it gets GT1
    # (7.5 px: 75/125 = .6 >= .5). Matching in list order instead would swap the pairs.
    preds = [(1.5, 0, 11.5, 10), (1, 0, 11, 10)]
    assert match(gts, preds, [0.6, 0.9]) == [(0, 1), (1, 0)]
    # A third, weaker copy finds both GTs taken and stays unmatched.
    assert match(gts, [*preds, (1, 0, 11, 10)], [0.6, 0.9, 0.1]) == [(0, 1), (1, 0)]
    # Below the IoU threshold nothing matches: 5 px overlap with GT1 = 50/150.
    assert match([(4, 0, 14, 10)], [(9, 0, 19, 10)], [1.0]) == []


def test_voc_all_point_average_precision() -> None:
    # TP, FP, TP with 3 GT: recall 1/3, 1/3, 2/3; precision 1, 1/2, 2/3.
    # Envelope: 1 up to recall 1/3, 2/3 up to 2/3, 0 after -> AP = 1/3 * 1 + 1/3 * 2/3 = 5/9.
    assert average_precision([True, False, True], 3) == pytest.approx(5 / 9)
    # FP, TP with 1 GT: a single step to recall 1 at precision 1/2.
    assert average_precision([False, True], 1) == pytest.approx(0.5)
    assert average_precision([True, True], 2) == pytest.approx(1.0)
    assert average_precision([], 2) == 0.0
    with pytest.raises(ValueError, match="undefined"):
        average_precision([True], 0)


def test_roc_auc_counts_ties_as_half() -> None:
    # Positives .9 and .4, negatives .6 and .1: 3 of the 4 pos/neg pairs are ordered right.
    _, _, auc = roc_curve([True, False, True, False], [0.9, 0.6, 0.4, 0.1])
    assert auc == pytest.approx(0.75)
    assert roc_curve([True, False], [0.5, 0.5])[2] == pytest.approx(0.5)
    assert roc_curve([True, True], [0.5, 0.2])[2] is None  # no negatives: undefined


def test_precision_recall_curve_by_hand() -> None:
    # Positives .9 and .4, negatives .6 and .1; one point per score, highest first:
    # .9 R 1/2 P 1, .6 R 1/2 P 1/2, .4 R 1 P 2/3, .1 R 1 P 1/2.
    recall, precision, ap = precision_recall_curve([True, False, True, False], [0.9, 0.6, 0.4, 0.1])
    assert recall.tolist() == [0.5, 0.5, 1.0, 1.0]
    assert precision.tolist() == pytest.approx([1, 0.5, 2 / 3, 0.5])
    # Envelope 1 up to recall 1/2, 2/3 up to 1 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    assert ap == pytest.approx(5 / 6)
    # A tie enters as one point (R 1, P 1/2) whatever the order, where ranked hits would give 1 or 1/2.
    assert precision_recall_curve([True, False], [0.5, 0.5])[2] == pytest.approx(0.5)
    assert precision_recall_curve([False, True], [0.5, 0.5])[2] == pytest.approx(0.5)
    assert precision_recall_curve([True, True], [0.5, 0.2])[2] == 1.0  # no negatives: nothing to get wrong
    assert precision_recall_curve([False, False], [0.5, 0.2])[2] is None  # no positives: undefined


def test_precision_recall_ap_matches_detection_ap_without_ties() -> None:
    rng = np.random.default_rng(7)
    scores = rng.permutation(200) / 200  # distinct, so the ranking is unambiguous
    positive = rng.random(200) < 0.3
    ranked = positive[np.argsort(-scores)]
    _, _, ap = precision_recall_curve(positive.tolist(), scores.tolist())
    assert ap == pytest.approx(average_precision(ranked.tolist(), int(positive.sum())))


def test_expected_calibration_error_by_hand() -> None:
    # 15 bins of width 1/15 = .0667: .95 in bin 14 [.933, 1], .55 in bin 8 [.533, .6), .25 in bin 3 [.2, .267).
    # Bin 14: two faces, one right -> |.5 - .95| = .45, weight 2/4 -> .225.
    # Bin 8:  one right face       -> |1 - .55| = .45, weight 1/4 -> .1125.
    # Bin 3:  one wrong face       -> |0 - .25| = .25, weight 1/4 -> .0625.   ECE = .225 + .1125 + .0625 = .4.
    confidence, correct = [0.95, 0.95, 0.55, 0.25], [True, False, True, False]
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.4)
    table = reliability_bins(confidence, correct)
    assert table["count"] == [0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2]
    assert table["accuracy"][14] == 0.5 and table["confidence"][14] == pytest.approx(0.95)
    assert table["accuracy"][0] is None and table["confidence"][0] is None  # empty bins are None, not 0
    # 1.0 belongs to the last bin and 0.0 to the first; both are perfectly calibrated here.
    assert reliability_bins([1.0, 0.0], [True, False])["count"] == [1] + [0] * 13 + [1]
    assert expected_calibration_error([1.0, 0.0], [True, False]) == 0.0
    assert expected_calibration_error([], []) is None
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([1.2], [True])
    with pytest.raises(ValueError, match="correctness"):
        expected_calibration_error([0.5, 0.6], [True])


def test_ece_is_near_zero_when_calibrated_and_catches_overconfidence() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.random(100_000)
    draw = rng.random(100_000)
    # Right with probability equal to the confidence: only sampling noise is left, about .005 per bin.
    assert expected_calibration_error(confidence.tolist(), (draw < confidence).tolist()) < 0.02
    # Right with probability confidence - .2 (never below 0): bins 3-14 are off by .2, weight 12/15 -> .16;
    # bins 0-2 are never right, off by their centres 1/30, 3/30, 5/30, weight 1/15 each -> .02; ECE ~ .18.
    overconfident = (draw < confidence - 0.2).tolist()
    assert expected_calibration_error(confidence.tolist(), overconfident) == pytest.approx(0.18, abs=0.01)


def scenario() -> tuple[list[Annotated], list[FrameResult]]:
    """Three images, 7 GT faces; the numbers below are checked in test_compute_metrics_by_hand.

    img1: g0 mask (size 10), g1 no_mask (20), g2 incorrect (40), g3 no_mask (40, missed);
          p0 on g0 -> mask, p1 on g1 -> no_mask, p2 on g2 -> no_mask (wrong), p3 a false positive -> mask.
    img2: g4 mask (130) predicted incorrect (a false alarm), g5 mask (40, missed).
    img3: g6 mask (70); the analysis failed, so its stray face must be ignored.
    """
    annotated = [
        Annotated(
            Path("/img1.jpg"),
            100,
            100,
            (
                ((0, 0, 10, 10), "mask"),
                ((20, 20, 40, 40), "no_mask"),
                ((50, 50, 90, 90), "incorrect"),
                ((0, 60, 20, 100), "no_mask"),
            ),
        ),
        Annotated(Path("/img2.jpg"), 200, 200, (((0, 0, 130, 100), "mask"), ((150, 150, 190, 190), "mask"))),
        Annotated(Path("/img3.jpg"), 100, 100, (((10, 10, 80, 80), "mask"),)),
    ]
    p0 = face((0, 0, 10, 10), 0.9, 0.8, 0.15, 0.05)
    p1 = face((20, 20, 40, 40), 0.8, 0.1, 0.7, 0.2)
    p2 = face((50, 50, 90, 90), 0.7, 0.2, 0.5, 0.3)
    p3 = face((60, 0, 80, 20), 0.6, 0.9, 0.05, 0.05)
    p4 = face((0, 0, 130, 100), 0.95, 0.3, 0.2, 0.5)
    results = [
        FrameResult("/img1.jpg", 100, 100, (p0, p1, p2, p3)),
        FrameResult("/img2.jpg", 200, 200, (p4,)),
        FrameResult(
            "/img3.jpg", 100, 100, (face((10, 10, 80, 80), 0.9, 0.9, 0.05, 0.05),), error="unreadable"
        ),
    ]
    return annotated, results


def test_labels_of_the_scenario() -> None:
    _, results = scenario()
    assert [f.label for f in results[0].faces] == ["mask", "no_mask", "no_mask", "mask"]
    assert results[1].faces[0].label == "incorrect"


def test_compute_metrics_by_hand() -> None:
    m = compute_metrics(*scenario(), threshold=0.5)
    assert (m["images"], m["failed_images"], m["threshold"]) == (3, 1, 0.5)
    det = m["detection"]
    # GT 7; predictions 4 + 1 (img3 failed, its face ignored); matched g0, g1, g2, g4.
    assert (det["gt"], det["predictions"], det["matched"]) == (7, 5, 4)
    assert det["recall"] == pytest.approx(4 / 7)
    assert det["precision"] == pytest.approx(4 / 5)
    # Sizes: g0 10 <16; g1 20 16-32; g2, g3, g5 40 32-64 (only g2 found); g6 70 64-128; g4 130 >=128.
    sizes = {k: (b["matched"], b["gt"]) for k, b in det["recall_by_size"].items()}
    assert sizes == {"<16": (1, 1), "16-32": (1, 1), "32-64": (1, 3), "64-128": (0, 1), ">=128": (1, 1)}
    assert det["recall_by_size"]["32-64"]["recall"] == pytest.approx(1 / 3)

    # mask GT g0 right, g4 wrong, g5 g6 missed; no_mask g1 right, g3 missed; incorrect g2 wrong.
    assert m["per_class"] == {
        "mask": {"gt": 4, "right": 1, "wrong": 1, "missed": 2},
        "no_mask": {"gt": 2, "right": 1, "wrong": 0, "missed": 1},
        "incorrect": {"gt": 1, "right": 0, "wrong": 1, "missed": 0},
    }
    # Rows GT, columns predicted:
    # g0 mask->mask, g4 mask->incorrect, g1 no_mask->no_mask, g2 incorrect->no_mask.
    assert m["confusion"]["matrix"] == [[1, 0, 1], [0, 1, 0], [0, 1, 0]]
    assert m["confusion"]["labels"] == ["mask", "no_mask", "incorrect"]
    # Only p4 predicts incorrect among matched faces and it is wrong; the one matched incorrect GT is missed.
    inc = m["incorrect"]
    assert (inc["tp"], inc["predicted"], inc["gt_matched"], inc["precision"], inc["recall"]) == (
        0,
        1,
        1,
        0,
        0,
    )

    binary = m["binary"]
    # Matched mask-vs-not agreement: g0 yes, g1 yes, g2 yes (both "not mask"), g4 no -> 3/4.
    assert binary["accuracy"] == pytest.approx(3 / 4)
    # Unmasked GT g1, g2, g3: g1 and g2 flagged, g3 missed but still in the denominator -> 2/3.
    assert (binary["unmasked_flagged"], binary["unmasked_gt"]) == (2, 3)
    assert binary["tnr"] == pytest.approx(2 / 3)
    # Mask GT g0, g4, g5, g6: only g4 flagged (g5, g6 missed count as not flagged) -> 1/4.
    assert (binary["mask_flagged"], binary["mask_gt"], binary["fnr"]) == (1, 4, 0.25)
    # Scores 1 - p(mask): unmasked g1 .9, g2 .8 above mask g0 .2, g4 .7 -> perfect ranking.
    assert binary["roc_auc"] == pytest.approx(1.0)
    assert binary["pr_ap"] == pytest.approx(1.0)
    json.dumps(m)  # must be JSON-serialisable as is


def test_calibration_of_the_scenario_by_hand() -> None:
    cal = compute_metrics(*scenario(), threshold=0.5)["calibration"]
    assert (cal["bins"], cal["faces"]) == (15, 4)
    # 3-class, matched faces (confidence = p of the predicted label, right?):
    # g0 mask .8 right, g1 no_mask .7 right, g2 no_mask .5 wrong (GT incorrect), g4 incorrect .5 wrong (GT mask).
    # Bins: .5*15 = 7.5 -> 7 (both .5), .7*15 = 10.5 -> 10, .8*15 = 12 -> 12 (its lower edge).
    # Bin 7 |0 - .5| * 2/4 = .25, bin 10 |1 - .7| * 1/4 = .075, bin 12 |1 - .8| * 1/4 = .05 -> ECE .375.
    assert cal["ece_3class"] == pytest.approx(0.375)
    table = cal["reliability_3class"]
    assert table["count"] == [0] * 7 + [2, 0, 0, 1, 0, 1, 0, 0]
    assert (table["accuracy"][7], table["accuracy"][10], table["accuracy"][12]) == (0, 1, 1)
    assert table["confidence"][7] == pytest.approx(0.5)
    # Binary, confidence max(p, 1 - p) of p(mask), right if (p >= .5) == (GT is mask):
    # g0 p .8 -> .8 right, g1 p .1 -> .9 right, g2 p .2 -> .8 right, g4 p .3 -> .7 wrong (a mask called unmasked).
    # Bin 12 (.8, .8) |1 - .8| * 2/4 = .1, bin 13 (.9) |1 - .9| * 1/4 = .025, bin 10 (.7) |0 - .7| * 1/4 = .175.
    assert cal["ece_binary"] == pytest.approx(0.3)


def test_operating_points_of_the_scenario_by_hand() -> None:
    m = compute_metrics(*scenario(), threshold=0.5)
    rows = m["thresholds"]
    assert [row["threshold"] for row in rows] == list(THRESHOLDS) == [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    # Matched p(mask): g0 mask .8, g4 mask .3, g1 no_mask .1, g2 incorrect .2; missed g3 (unmasked), g5, g6 (mask).
    # Flagged = p(mask) < t, so g4 (.3) is not flagged at t = .3 and g0 (.8) not at t = .8.
    # TNR: g1, g2 flagged at every t, g3 missed -> 2/3 throughout.
    # FNR over 4 mask GT: t .3 none; .4-.8 g4 -> 1/4; .9 g4, g0 -> 2/4.
    # Accuracy over 4 matched: t .3 all right; .4-.8 g4 wrong -> 3/4; .9 g4, g0 wrong -> 2/4.
    expected = [(0.0, 1.0)] + [(0.25, 0.75)] * 5 + [(0.5, 0.5)]
    assert [(row["fnr"], row["accuracy"]) for row in rows] == expected
    assert all(row["tnr"] == pytest.approx(2 / 3) and row["unmasked_flagged"] == 2 for row in rows)
    assert [row["mask_flagged"] for row in rows] == [0, 1, 1, 1, 1, 1, 2]
    # At the threshold the labels were made with, the table agrees with the `binary` block.
    (at_half,) = [row for row in rows if row["threshold"] == 0.5]
    binary = m["binary"]
    assert (at_half["tnr"], at_half["fnr"], at_half["accuracy"]) == (binary["tnr"], binary["fnr"], binary["accuracy"])


def test_average_precision_settings_by_hand() -> None:
    ap = compute_metrics(*scenario(), threshold=0.5)["ap"]
    # mask, soft: confidences score*p(mask): p0 .72 TP(g0), p3 .54 FP, p4 .285 TP(g4), p2 .14 FP, p1 .08 FP;
    # 4 mask GT (g0, g4, g5, g6) -> AP = 1/4 * 1 + 1/4 * 2/3 = 5/12.
    assert ap["3class"]["ap"]["mask"] == pytest.approx(5 / 12)
    assert ap["folded"]["ap"]["mask"] == pytest.approx(5 / 12)
    # unmasked, soft: score*(p(no_mask)+p(incorrect)): p1 .72 TP(g1), p4 .665 FP (img2 has no unmasked GT),
    # p2 .56 TP(g2), p0 .18 FP, p3 .06 FP; 3 GT -> ranked TP, FP, TP -> 5/9 as in the unit case.
    assert ap["folded"]["ap"]["unmasked"] == pytest.approx(5 / 9)
    assert ap["folded"]["map"] == pytest.approx((5 / 12 + 5 / 9) / 2)
    # incorrect, soft: p4 .475 FP ranks above p2 .21 TP(g2); 1 GT -> AP 1/2.
    assert ap["3class"]["ap"]["incorrect"] == pytest.approx(0.5)
    # Hard: mask competes only with p0 (.72 TP) and p3 (.54 FP) -> 1/4; incorrect only with p4 (FP) -> 0.
    assert ap["3class"]["ap_hard"]["mask"] == pytest.approx(0.25)
    assert ap["3class"]["ap_hard"]["incorrect"] == 0.0
    # Hard no_mask: p1 .56 TP(g1), p2 .35 FP (g2 is incorrect); 2 GT (g1, g3) -> 1/2 * 1 = 1/2.
    assert ap["3class"]["ap_hard"]["no_mask"] == pytest.approx(0.5)
    assert ap["3class"]["map_hard"] == pytest.approx((0.25 + 0.5 + 0.0) / 3)


def test_class_without_ground_truth_has_no_ap() -> None:
    annotated = [Annotated(Path("/a.jpg"), 50, 50, (((0, 0, 20, 20), "mask"),))]
    results = [FrameResult("/a.jpg", 50, 50, (face((0, 0, 20, 20), 0.9, 0.9, 0.05, 0.05),))]
    ap = compute_metrics(annotated, results, threshold=0.5)["ap"]["3class"]
    assert ap["ap"] == {"mask": 1.0, "no_mask": None, "incorrect": None}
    assert ap["map"] == 1.0  # undefined classes are left out of the mean


def test_results_must_align_with_annotations() -> None:
    annotated, results = scenario()
    with pytest.raises(ValueError, match="3 annotated images but 2 results"):
        compute_metrics(annotated, results[:2], threshold=0.5)


def test_unclassified_faces_are_refused() -> None:
    annotated = [Annotated(Path("/a.jpg"), 50, 50, ())]
    with pytest.raises(ValueError, match="not classified"):
        compute_metrics(annotated, [FrameResult("/a.jpg", 50, 50, (Face((0, 0, 5, 5), 0.9),))], 0.5)


def write_images(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")  # loading only checks that the image exists


def test_load_json(tmp_path: Path) -> None:
    write_images(tmp_path / "images", "a.jpg")
    entries = [
        {
            "image": "images/a.jpg",
            "width": 40,
            "height": 30,
            "faces": [{"box": [1, 2, 11, 12], "label": "incorrect"}],
        }
    ]
    (tmp_path / "ann.json").write_text(json.dumps(entries))
    (ann,) = load_annotations(tmp_path / "ann.json")
    assert ann == Annotated(
        (tmp_path / "images" / "a.jpg").resolve(), 40, 30, (((1, 2, 11, 12), "incorrect"),)
    )


VOC = (
    "<annotation><filename>{name}</filename>"
    "<size><width>400</width><height>300</height><depth>3</depth></size>{objects}</annotation>"
)
VOC_OBJECT = (
    "<object><name>{label}</name>"
    "<bndbox><xmin>{0}</xmin><ymin>{1}</ymin><xmax>{2}</xmax><ymax>{3}</ymax></bndbox></object>"
)


def voc(name: str, *objects: tuple[str, tuple[float, ...]]) -> str:
    return VOC.format(
        name=name, objects="".join(VOC_OBJECT.format(*box, label=label) for label, box in objects)
    )


def test_load_voc_folder_in_kaggle_layout(tmp_path: Path) -> None:
    annotations = tmp_path / "annotations"
    write_images(tmp_path / "images", "k1.png")
    write_images(annotations, "k2.png")  # an image next to its xml is found there first
    (annotations / "k1.xml").write_text(
        voc("k1.png", ("with_mask", (10, 20, 30, 40)), ("without_mask", (50, 60, 401, 80)))
    )
    (annotations / "k2.xml").write_text(
        voc("k2.png", ("mask_weared_incorrect", (0, 0, 5, 5)), ("no_mask", (1, 1, 9, 9)))
    )
    k1, k2 = load_annotations(annotations)
    assert k1.image == (tmp_path / "images" / "k1.png").resolve()
    assert (k1.width, k1.height) == (400, 300)
    # xmax 401 on a 400-px photo is the known upstream off-by-one: clipped, not refused.
    assert k1.faces == (((10, 20, 30, 40), "mask"), ((50, 60, 400, 80), "no_mask"))
    assert k2.image == (annotations / "k2.png").resolve()
    assert [label for _, label in k2.faces] == ["incorrect", "no_mask"]


def one_face_json(box: list[float], label: str = "mask", image: str = "a.jpg") -> str:
    return json.dumps([{"image": image, "width": 40, "height": 30, "faces": [{"box": box, "label": label}]}])


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("[{", "not readable as JSON"),
        ('{"image": "a.jpg"}', "expected a JSON list"),
        ('[{"image": "a.jpg", "width": 40, "height": 30}]', "malformed entry"),
        (one_face_json([0, 0, 5, 5], label="hat"), "unknown label 'hat'"),
        (one_face_json([0, 0, 50, 5]), "outside the 40x30 image"),
        (one_face_json([5, 0, 5, 5]), "empty"),
        (one_face_json([0, 0, 5]), "not four numbers"),
        (one_face_json([0, 0, 5, 5], image="gone.jpg"), "gone.jpg not found"),
    ],
)
def test_bad_json_raises_value_error_naming_the_file(tmp_path: Path, content: str, reason: str) -> None:
    write_images(tmp_path, "a.jpg")
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=reason) as err:
        load_annotations(path)
    assert str(path) in str(err.value)


def test_bad_voc_and_missing_paths_raise_value_error(tmp_path: Path) -> None:
    write_images(tmp_path, "a.png")
    (tmp_path / "a.xml").write_text(voc("a.png", ("with_hat", (0, 0, 5, 5))))
    with pytest.raises(ValueError, match=r"a\.xml: unknown label 'with_hat'"):
        load_annotations(tmp_path)
    (tmp_path / "a.xml").write_text("<annotation>")
    with pytest.raises(ValueError, match=r"a\.xml: malformed VOC XML"):
        load_annotations(tmp_path)
    with pytest.raises(ValueError, match="annotation file not found"):
        load_annotations(tmp_path / "missing.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no \.xml annotation files"):
        load_annotations(tmp_path / "empty")


def test_run_writes_metrics_predictions_and_plots(tmp_path: Path) -> None:
    write_images(tmp_path / "images", "a.jpg", "b.jpg")
    entries = [
        {
            "image": "images/a.jpg",
            "width": 100,
            "height": 100,
            "faces": [
                {"box": [0, 0, 20, 20], "label": "mask"},
                {"box": [50, 50, 80, 80], "label": "no_mask"},
            ],
        },
        {
            "image": "images/b.jpg",
            "width": 100,
            "height": 100,
            "faces": [{"box": [0, 0, 40, 40], "label": "mask"}],
        },
    ]
    (tmp_path / "val.json").write_text(json.dumps(entries))
    # Stands in for the pipeline that the CLI passes: a.jpg finds both faces right, b.jpg fails to load.
    answers = {
        "a.jpg": FrameResult(
            "a.jpg",
            100,
            100,
            (face((0, 0, 20, 20), 0.9, 0.9, 0.05, 0.05), face((50, 50, 80, 80), 0.8, 0.1, 0.8, 0.1)),
        ),
        "b.jpg": FrameResult.failed("b.jpg", "cannot decode"),
    }
    ticks: list[int] = []
    out = tmp_path / "out"
    metrics = run(
        tmp_path / "val.json", lambda p: answers[Path(p).name], out, 0.5, progress=lambda: ticks.append(1)
    )

    assert len(ticks) == 2
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert (metrics["images"], metrics["failed_images"]) == (2, 1)
    # 3 GT, 2 predictions, both matched; b.jpg's face is missed.
    assert (metrics["detection"]["recall"], metrics["detection"]["precision"]) == (pytest.approx(2 / 3), 1.0)
    assert metrics["binary"]["roc_auc"] == 1.0
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["image"] for line in lines] == ["a.jpg", "b.jpg"]
    assert json.loads(lines[1])["error"] == "cannot decode"
    plots = ["roc.png", "confusion.png", "pr.png", "reliability.png"]
    for name in plots:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert metrics["plots"] == plots
    # Both matched faces right with confidences .9 and .8: bins 13 and 12, gaps .1 and .2 -> ECE .15.
    assert metrics["calibration"]["ece_3class"] == pytest.approx(0.15)
    assert metrics["binary"]["pr_ap"] == 1.0


def test_format_report_shows_every_section() -> None:
    report = format_report(compute_metrics(*scenario(), threshold=0.5))
    for text in (
        "3 (1 failed)",
        "recall 0.571 (4/7 GT)",
        "32-64 0.333 (1/3)",
        "folded_hard",
        "mAP 0.486",
        "TNR unmasked flagged 0.667 (2/3",
        "FNR mask flagged     0.250 (1/4)",
        "AUC 1.000",
        "PR AP 1.000",
        "precision 0.000 (0/1)",
        "ECE 3-class 0.375, mask vs not 0.300",
        "    0.3   0.667   0.000     1.000\n",
        "    0.5   0.667   0.250     0.750  <- in use",
        "    0.9   0.667   0.500     0.500\n",
    ):
        assert text in report, text


def test_real_validation_split_loads() -> None:
    path = SHARED_DATA / "detection" / "val.json"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    annotated = load_annotations(path)
    assert len(annotated) == 129
    assert sum(len(a.faces) for a in annotated) == 587
    assert all(a.image.is_file() for a in annotated)


def test_hard_case_figures_by_hand() -> None:
    from maskwatch.evaluate import hard_case_figures

    probs = np.array([
        [0.1, 0.8, 0.1],  # hand, no_mask: flagged, exact
        [0.7, 0.2, 0.1],  # hand, no_mask: called masked -> wrong both ways
        [0.2, 0.3, 0.5],  # below_nose, incorrect: flagged, exact
        [0.3, 0.6, 0.1],  # below_nose, incorrect: flagged (binary right), label no_mask (exact wrong)
    ])
    f = hard_case_figures(probs, ["no_mask", "no_mask", "incorrect", "incorrect"],
                          ["hand", "hand", "below_nose", "below_nose"], threshold=0.5)
    assert f["hand"] == {"label": "no_mask", "n": 2, "binary_right": 0.5, "exact_right": 0.5,
                         "mean_p_mask": pytest.approx(0.4)}
    assert f["below_nose"]["binary_right"] == 1.0 and f["below_nose"]["exact_right"] == 0.5
