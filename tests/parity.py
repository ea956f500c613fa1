"""What the two parity tests (tests/test_parity.py, tests/test_parity_resnet.py) share:
loading a fixture generator and its recorded numbers, the positives and hard negatives of
our matcher, and the comparisons with their messages."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load_generator(name: str) -> ModuleType:
    """``tests/fixtures/<name>.py`` as a module (numpy only at import time)."""
    spec = importlib.util.spec_from_file_location(name, FIXTURES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def read_fixture(path: Path) -> dict:
    """The recorded ``.npz``: every array by name, ``meta`` as the JSON it holds."""
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    data["meta"] = json.loads(str(data["meta"]))
    return data


def match_sets(targets, priors: dict, out: dict, multibox) -> dict[str, np.ndarray]:
    """``pos<shot>`` / ``neg<shot>``: the flat indices of each shot's positive priors and of
    its hard negatives, as our matcher and mining choose them (``priors``: shot -> priors)."""
    from dainet.boxes.matcher import match
    from dainet.losses.multibox import cross_entropy_per_prior, hard_negative_mask
    sets = {}
    for shot in (1, 2):
        _, conf_t = match(targets, priors[shot], multibox.match_iou, multibox.variances)
        pos = conf_t > 0
        ce = cross_entropy_per_prior(out[f"conf{shot}"], conf_t)
        neg = hard_negative_mask(ce, pos, multibox.neg_pos_ratio).numpy() & ~pos.numpy()
        sets[f"pos{shot}"] = np.flatnonzero(pos.numpy().ravel())
        sets[f"neg{shot}"] = np.flatnonzero(neg.ravel())
    return sets


def assert_close(ours, ref, what: str, tol: float, extra: str = "") -> None:
    """``|ours - ref| <= tol + tol |ref|`` everywhere, same shape; else the worst value."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} vs reference {ref.shape}"
    err = np.abs(ours - ref)
    bad = err > tol + tol * np.abs(ref)
    assert not bad.any(), (f"{what}: {int(bad.sum())} of {bad.size} values differ beyond rtol=atol={tol}; "
                           f"max abs diff {err.max():.3g} at {np.unravel_index(err.argmax(), err.shape)} "
                           f"(ours {ours.ravel()[err.argmax()]:.7g}, reference {ref.ravel()[err.argmax()]:.7g})"
                           f"{extra}")


def assert_same_weights_drawn(fixture: dict, probe: dict) -> None:
    """The first values of each probed tensor equal the reference's, bit for bit."""
    probed = [k[len("weights_probe/"):] for k in fixture if k.startswith("weights_probe/")]
    assert probed and set(probed) == set(probe)
    for k in probed:
        np.testing.assert_array_equal(probe[k], fixture[f"weights_probe/{k}"], err_msg=k)


def assert_same_sets(got: np.ndarray, want: np.ndarray, key: str) -> None:
    got, want = set(got.tolist()), set(want.tolist())
    assert got == want, (f"{key}: {len(got)} ours vs {len(want)} reference; only ours {sorted(got - want)[:10]}, "
                         f"only reference {sorted(want - got)[:10]}")


def assert_gradient_close(g, ref, name: str, tol: float, zero_ok: bool = False) -> None:
    """``max |g - ref| <= tol * max |ref|``. A zero reference gradient fails the check (it
    would be empty) unless ``zero_ok``: then ours must be zero too."""
    g, ref = np.asarray(g, np.float64), np.asarray(ref, np.float64)
    assert g.shape == ref.shape, f"d total / d {name}: shape {g.shape} vs reference {ref.shape}"
    scale = np.abs(ref).max()
    if scale == 0:
        assert zero_ok, f"{name}: the reference gradient is zero; the check would be empty"
        assert not g.any(), f"d total / d {name}: zero in the reference, max |ours| {np.abs(g).max():.3g}"
        return
    err = np.abs(g - ref)
    assert err.max() <= tol * scale, (
        f"d total / d {name}: max |ours - reference| = {err.max():.3g} = {err.max() / scale:.2e} of the "
        f"gradient's scale {scale:.3g} (tolerance {tol:g}); relative L2 "
        f"{np.linalg.norm(g - ref) / np.linalg.norm(ref):.2e}, ours/reference norm "
        f"{np.linalg.norm(g) / np.linalg.norm(ref):.4f}")
