"""RedrawPace: a pane's next redraw while training waits its last redraw's cost over its share of a core."""

from __future__ import annotations

import pytest

from nktui.ui.pacing import RedrawPace


def test_the_interval_is_the_cost_over_the_share_within_its_bounds():
    pace = RedrawPace(share=0.02, shortest=1.0, longest=3.0)
    pace.drew(10.0, 0.010)
    pace.rendered(0.020)  # the compositor's render of that redraw: 30 ms in all
    assert pace.interval == pytest.approx(1.5)  # 0.030 / 0.02
    assert not pace.due(11.4, running=True)
    assert pace.due(11.5, running=True)
    pace.drew(20.0, 0.001)
    assert pace.interval == 1.0  # cheap: the shortest interval
    pace.drew(30.0, 0.5)
    assert pace.interval == 3.0  # dear: never longer than the longest


def test_a_new_redraw_forgets_the_cost_of_the_last_one():
    pace = RedrawPace(share=0.01, shortest=1.0, longest=3.0)
    pace.drew(0.0, 0.02)
    pace.rendered(0.01)
    pace.drew(5.0, 0.005)
    assert pace.cost == pytest.approx(0.005)


def test_while_paused_a_pane_redraws_at_once():
    pace = RedrawPace(share=0.02, shortest=1.0, longest=3.0)
    pace.drew(10.0, 0.05)
    assert pace.due(10.01, running=False)
    assert RedrawPace(0.02, 1.0, 3.0).due(0.0, running=True)  # never drawn: due
