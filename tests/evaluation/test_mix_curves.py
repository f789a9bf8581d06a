"""EM against mix size and native share: points from mix entries and figures, learning curves, and a
byte-stable plot."""

from __future__ import annotations

import pytest

from medinjection.evaluation.mix_curves import curves, mix_points, native_share, plot, table

MIXES = {
    "r11_8": {"mix": "r11", "weights": {"native": 1, "translated": 1}, "size": 8},
    "r11_16": {"mix": "r11", "weights": {"native": 1, "translated": 1}, "size": 16},
    "r13_16": {"mix": "r13", "weights": {"native": 1, "translated": 3}, "size": 16},
    "nat": {"mix": "nat", "weights": {"native": 1}, "size": 16},
    "old": {"provenances": ["native"]},  # a manifest of a mix without weights: no point
}
FIGURES = {
    "r11_8": {"value": 0.30, "ci95": [0.2, 0.4]},
    "r11_16": {"value": 0.35, "ci95": [0.25, 0.45]},
    "r13_16": {"value": 0.33, "ci95": [None, None]},
    "nat": {"value": None, "ci95": [None, None]},  # not scored: no point, never a 0
    "old": {"value": 0.5, "ci95": [0.4, 0.6]},
}


def test_points_curves_and_the_native_share():
    assert native_share({"native": 1, "translated": 3}) == 0.25 and native_share({"synthetic": 2}) == 0.0
    points = mix_points(MIXES, FIGURES)
    assert [(p.tag, p.size, p.native_share) for p in points] == [
        ("r11_8", 8, 0.5),
        ("r11_16", 16, 0.5),
        ("r13_16", 16, 0.25),
    ]
    assert list(curves(points)) == ["r11"] and [p.size for p in curves(points)["r11"]] == [8, 16]
    assert table(points)[0] == {
        "model": "r11_8",
        "mix": "r11",
        "size": 8,
        "native_share": 0.5,
        "value": 0.3,
        "ci95": [0.2, 0.4],
    }


def test_the_plot_is_byte_stable_and_absent_without_points(tmp_path):
    points = mix_points(MIXES, FIGURES)
    first = plot(points, tmp_path / "a.png").read_bytes()
    assert plot(points, tmp_path / "b.png").read_bytes() == first and first.startswith(b"\x89PNG")
    assert plot([], tmp_path / "c.png") is None and not (tmp_path / "c.png").exists()


@pytest.mark.parametrize("missing", ["weights", "size"])
def test_an_entry_without_weights_or_size_gives_no_point(missing):
    entry = {k: v for k, v in MIXES["r11_8"].items() if k != missing}
    assert mix_points({"x": entry}, {"x": {"value": 0.3, "ci95": [0.2, 0.4]}}) == []
