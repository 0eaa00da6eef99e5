"""Training pieces: model shape, augmentation, sampling, calibration, ONNX export parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from maskwatch.align import CROP
from maskwatch.classify import softmax
from maskwatch.train import class_weights, fit_temperature, nll, val_figures

torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")


def test_class_weights_favour_rare_classes() -> None:
    y = np.array([0] * 90 + [1] * 9 + [2] * 1)
    w = class_weights(y)
    assert w.sum() == pytest.approx(1.0)
    # per example 1/sqrt(n): 1/sqrt(90), 1/sqrt(9), 1/sqrt(1) -> the lone incorrect weighs sqrt(90) times a mask one
    assert w[99] / w[0] == pytest.approx(np.sqrt(90))


def test_fit_temperature_recovers_overconfidence() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 3)) * 2
    y = np.array([rng.choice(3, p=p) for p in softmax(true_logits)])
    t = fit_temperature(true_logits * 2.0, y)  # a model twice as confident as it should be
    assert t == pytest.approx(2.0, rel=0.1)
    assert nll(true_logits * 2.0, y, t) < nll(true_logits * 2.0, y)


def test_val_figures_counts() -> None:
    logits = np.log(np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]))
    f = val_figures(logits, np.array([0, 1, 2]))
    assert f["accuracy_3class"] == pytest.approx(2 / 3)
    assert f["accuracy_binary"] == pytest.approx(2 / 3)  # the no_mask face is called masked
    assert f["recall_incorrect"] == 1.0


def test_augment_keeps_shape_and_range() -> None:
    from maskwatch.train import augment

    x = torch.rand(16, 3, CROP, CROP) * 255
    out = augment(x.clone(), torch.Generator().manual_seed(1))
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 255
    again = augment(x.clone(), torch.Generator().manual_seed(1))
    assert torch.equal(out, again)  # seeded: reproducible


def test_export_matches_torch(tmp_path: Path) -> None:
    from maskwatch.detect import cpu_session
    from maskwatch.train import export_onnx, make_model

    torch.manual_seed(0)
    model = make_model().eval()
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    x = np.random.default_rng(0).integers(0, 255, size=(5, 3, CROP, CROP)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = cpu_session(str(path)).run(None, {"crops": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert path.stat().st_size < 3_000_000


def test_ensemble_averages_members_and_exports(tmp_path: Path) -> None:
    from maskwatch.detect import cpu_session
    from maskwatch.train import export_onnx, make_ensemble, make_model

    torch.manual_seed(0)
    members = [make_model().eval() for _ in range(2)]
    ensemble = make_ensemble(members).eval()
    x = torch.from_numpy(np.random.default_rng(1).integers(0, 255, size=(3, 3, CROP, CROP)).astype(np.float32))
    with torch.no_grad():
        expected = (members[0](x) + members[1](x)).numpy() / 2
        np.testing.assert_allclose(ensemble(x).numpy(), expected, rtol=1e-5, atol=1e-5)
    path = tmp_path / "e.onnx"
    export_onnx(ensemble, path)
    got = cpu_session(str(path)).run(None, {"crops": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
