"""eval.py's report: the angle of a view to the nearest input and the aggregates over scored views."""

import pytest
import torch

from facelift.eval_report import ViewRecord, aggregate, angles_to_nearest_input
from facelift.render.turntable import ring_cameras


def test_the_angle_is_between_camera_centres_seen_from_the_origin():
    ring = ring_cameras([0.0, 90.0, 200.0, 30.0], elevation_deg=0.0, dtype=torch.float64)  # [4]
    angles = angles_to_nearest_input(ring[None], ring[None, :2])  # inputs: azimuths 0 and 90
    assert angles[0].tolist() == pytest.approx([0.0, 0.0, 110.0, 30.0], abs=1e-4)


def test_aggregates_group_by_role_camera_and_angle_bin():
    def rec(view, is_input, angle, psnr):
        return ViewRecord(0, "a", view, is_input, angle, {"psnr": psnr, "ssim": psnr / 100})

    agg = aggregate([rec(0, True, 0.0, 30.0), rec(1, False, 14.9, 20.0), rec(2, False, 15.0, 10.0),
                     rec(1, False, 29.0, 12.0)], bin_deg=15)
    assert {k: (g.count, g.means["psnr"]) for k, g in agg.roles.items()} == {
        "input": (1, 30.0), "novel": (3, 14.0), "all": (4, 18.0)}
    assert {k: g.count for k, g in agg.per_camera.items()} == {(0, "input"): 1, (1, "novel"): 2, (2, "novel"): 1}
    assert {k: g.means["psnr"] for k, g in agg.per_angle.items()} == {(0, 15): 20.0, (15, 30): 11.0}  # no input
    only_inputs = aggregate([rec(0, True, 0.0, 30.0)], bin_deg=15)
    assert "novel" not in only_inputs.roles and not only_inputs.per_angle
