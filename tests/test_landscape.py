"""The loss surface, its directions, the descent path, the 1-D slice and the trajectory recorder, each checked
against an independent computation with torch: a copy of the model moved by hand, a forward pass, cross-entropy.
"""

from __future__ import annotations

import copy
import threading
import time

import pytest
import torch
import torch.nn.functional as F

from nktui.protocol.results import SurfaceCancelled, SurfaceRequest, WeightRef, parse_weight_ref
from nktui.engine.debugger.landscape import SurfaceProgress, compute_surface, evaluation_batch, grid_offsets
from nktui.engine.debugger.landscape_directions import filter_normalise, random_directions
from nktui.probe.trajectory import Trajectory


def trained(make_trainer, steps: int = 6, **overrides):
    trainer = make_trainer(**overrides)
    for _ in range(steps):
        trainer.step()
    return trainer


def loss_of(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


def moved(model, changes: dict[str, torch.Tensor]):
    """A copy of the model with `changes[name]` added to each named parameter."""
    other = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in other.named_parameters():
            if name in changes:
                p.add_(changes[name])
    return other


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def assert_same_weights(model, before: dict[str, torch.Tensor]) -> None:
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), before[name]), f"{name} changed"


# -- the surface over two weights -------------------------------------------------------------------------------
def test_the_centre_of_the_surface_is_the_models_loss_on_the_batch(make_trainer):
    trainer = trained(make_trainer)
    surface = compute_surface(trainer, SurfaceRequest(resolution=11))
    x, y = evaluation_batch(trainer)
    assert len(y) == 256 and surface.samples == 256
    assert surface.centre_loss == pytest.approx(loss_of(copy.deepcopy(trainer.model), x, y), rel=1e-6)
    assert surface.losses[5][5] == surface.centre_loss and surface.xs[5] == 0.0


@pytest.mark.parametrize("i, j", [(0, 0), (6, 2), (10, 10), (3, 9)])
def test_a_grid_point_is_the_loss_with_the_two_weights_moved_by_its_offsets(make_trainer, i, j):
    trainer = trained(make_trainer, model="mlp", hidden=(12,))
    w1, w2 = WeightRef("fc1.weight", (3, 17)), WeightRef("out.weight", (4, 2))
    surface = compute_surface(trainer, SurfaceRequest(w1=w1, w2=w2, resolution=11, span=0.8))
    a, b = surface.xs[i], surface.ys[j]
    assert (a, b) == (grid_offsets(0.8, 11)[i], grid_offsets(0.8, 11)[j])
    d1, d2 = torch.zeros(12, 64), torch.zeros(10, 12)
    d1[3, 17], d2[4, 2] = a, b
    x, y = evaluation_batch(trainer)
    expected = loss_of(moved(trainer.model, {"fc1.weight": d1, "out.weight": d2}), x, y)
    assert surface.losses[j][i] == pytest.approx(expected, rel=1e-6)
    if (i, j) != (5, 5):
        assert surface.losses[j][i] != pytest.approx(surface.centre_loss, rel=1e-6)  # the offsets matter


def test_two_weights_of_the_same_tensor(make_trainer):
    trainer = trained(make_trainer)
    w1, w2 = WeightRef("fc.weight", (2, 30)), WeightRef("fc.weight", (7, 30))
    surface = compute_surface(trainer, SurfaceRequest(w1=w1, w2=w2, resolution=5, span=2.0))
    change = torch.zeros(10, 64)
    change[2, 30], change[7, 30] = surface.xs[0], surface.ys[4]
    x, y = evaluation_batch(trainer)
    assert surface.losses[4][0] == pytest.approx(loss_of(moved(trainer.model, {"fc.weight": change}), x, y), rel=1e-6)


def test_the_default_weights_are_the_layers_two_largest_gradients(make_trainer):
    trainer = trained(make_trainer)
    grad = trainer.model.fc.weight.grad.abs().flatten()
    top = grad.topk(2).indices.tolist()
    surface = compute_surface(trainer, SurfaceRequest(layer="fc.weight", resolution=3))
    assert [surface.w1.index, surface.w2.index] == [divmod(k, 64) for k in top]


def test_before_any_step_the_default_weights_come_from_the_batchs_gradient(make_trainer):
    trainer = make_trainer()
    surface = compute_surface(trainer, SurfaceRequest(resolution=3))
    assert surface.w1.name == "fc.weight" and trainer.model.fc.weight.grad is None  # .grad untouched
    assert surface.line is None and "take a step (n)" in " ".join(surface.notes)


@pytest.mark.parametrize("mode", ["weights", "random", "path"])
def test_every_weight_is_restored_bit_for_bit_and_training_goes_on_the_same(make_trainer, mode):
    trainer, twin = trained(make_trainer), trained(make_trainer)
    before = snapshot(trainer.model)
    compute_surface(trainer, SurfaceRequest(mode=mode, resolution=7))
    assert_same_weights(trainer.model, before)
    assert trainer.model.training
    for _ in range(3):
        assert trainer.step().loss == twin.step().loss
    assert_same_weights(trainer.model, snapshot(twin.model))


# -- random directions: Li et al. filter normalisation ----------------------------------------------------------
def test_each_row_of_a_random_direction_has_the_norm_of_the_weights_row(make_trainer):
    trainer = make_trainer(model="cnn")
    directions = random_directions(trainer.model, seed=3)
    params = dict(trainer.model.named_parameters())
    per_name = dict(zip([n for n in params], [None] * len(params)))
    for (name, p), d in zip(params.items(), _split(directions.flat[0].float(), params)):
        per_name[name] = d
        if p.ndim <= 1:
            assert torch.count_nonzero(d) == 0, f"{name} is 1-D: no direction"
            continue
        rows = d.reshape(p.shape[0], -1).norm(dim=1)
        assert torch.allclose(rows, p.detach().reshape(p.shape[0], -1).norm(dim=1), rtol=1e-5), name
    assert not torch.equal(directions.flat[0], directions.flat[1])  # two different directions


def test_filter_normalise_by_hand():
    weight = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    direction = torch.tensor([[1.0, 0.0], [2.0, 2.0]])
    out = filter_normalise(direction, weight)
    assert torch.allclose(out, torch.tensor([[5.0, 0.0], [2 ** -0.5, 2 ** -0.5]]))
    assert torch.equal(filter_normalise(torch.ones(3), torch.ones(3)), torch.zeros(3))


def test_a_random_plane_point_is_the_loss_at_theta_plus_a_d1_plus_b_d2(make_trainer):
    trainer = trained(make_trainer, model="mlp", hidden=(12,))
    surface = compute_surface(trainer, SurfaceRequest(mode="random", resolution=5, seed=1))
    directions = random_directions(trainer.model, seed=1)
    params = dict(trainer.model.named_parameters())
    a, b = surface.xs[1], surface.ys[4]
    change = directions.flat[0].float() * a + directions.flat[1].float() * b
    x, y = evaluation_batch(trainer)
    expected = loss_of(moved(trainer.model, dict(zip(params, _split(change, params)))), x, y)
    assert surface.losses[4][1] == pytest.approx(expected, rel=1e-5)


def _split(flat: torch.Tensor, params: dict) -> list[torch.Tensor]:
    out, start = [], 0
    for p in params.values():
        out.append(flat[start : start + p.numel()].view(p.shape))
        start += p.numel()
    return out


# -- the descent path -------------------------------------------------------------------------------------------
def test_the_path_is_the_two_weights_at_each_recorded_step_minus_now(make_trainer):
    trainer = make_trainer()
    seen = [trainer.model.fc.weight.detach().clone()]
    for _ in range(4):
        trainer.step()
        seen.append(trainer.model.fc.weight.detach().clone())
    w1, w2 = WeightRef("fc.weight", (1, 20)), WeightRef("fc.weight", (5, 36))
    surface = compute_surface(trainer, SurfaceRequest(w1=w1, w2=w2, resolution=3))
    now = seen[-1]
    assert [p.step for p in surface.path] == [0, 1, 2, 3, 4]
    for point, weights in zip(surface.path, seen):
        assert point.x == pytest.approx((weights[1, 20] - now[1, 20]).item(), abs=1e-7)
        assert point.y == pytest.approx((weights[5, 36] - now[5, 36]).item(), abs=1e-7)
    assert surface.path[-1].x == surface.path[-1].y == 0.0
    assert surface.span >= max(max(abs(p.x), abs(p.y)) for p in surface.path)  # the grid holds the path


def test_the_path_plane_holds_the_whole_path(make_trainer):
    trainer = trained(make_trainer, steps=2)  # steps 0, 1 recorded, 2 is now: two differences span the plane
    surface = compute_surface(trainer, SurfaceRequest(mode="path", resolution=3))
    assert surface.path_share == pytest.approx(1.0, abs=1e-6)
    assert surface.path[0].x > 0 and surface.span >= abs(surface.path[0].x)


def test_the_path_plane_needs_two_earlier_steps(make_trainer):
    with pytest.raises(ValueError, match="take a few steps"):
        compute_surface(trained(make_trainer, steps=1), SurfaceRequest(mode="path"))


# -- the 1-D slice along the last step ---------------------------------------------------------------------------
def test_the_slice_is_the_loss_along_the_last_update(make_trainer):
    trainer = trained(make_trainer, steps=3)
    before = copy.deepcopy(trainer.model)
    trainer.step()
    surface = compute_surface(trainer, SurfaceRequest(resolution=3))
    line = surface.line
    x, y = evaluation_batch(trainer)
    assert line.source == "last update" and (line.from_step, line.to_step) == (3, 4)
    assert line.ts[0] == -2.0 and line.ts[-1] == 3.0 and line.ts.index(1.0) == 30 and line.ts.index(0.0) == 20
    assert line.losses[30] == surface.centre_loss  # 1x: where the step went, the weights now
    assert line.losses[20] == pytest.approx(loss_of(before, x, y), rel=1e-5)  # 0x: before the step
    update = {n: p.detach() - q.detach() for (n, p), q in zip(trainer.model.named_parameters(), before.parameters())}
    expected = loss_of(moved(before, {n: 3.0 * u for n, u in update.items()}), x, y)
    assert line.losses[-1] == pytest.approx(expected, rel=1e-5)


def test_an_unobserved_last_step_falls_back_to_the_trajectory(make_trainer):
    trainer = trained(make_trainer, steps=3)
    trainer.trajectory.record(trainer.step_count)  # as an observed step would...
    trainer.forget_observed()  # ...but without the instruments' update (e.g. after a rewind)
    surface = compute_surface(trainer, SurfaceRequest(resolution=3))
    assert surface.line.source == "trajectory" and surface.line.losses[30] == surface.centre_loss


# -- cancelling ----------------------------------------------------------------------------------------------------
class CancelAfter(SurfaceProgress):
    """Cancels itself once `rows` grid rows are done, as a user pressing Esc mid-way would."""

    def __init__(self, rows: int) -> None:
        super().__init__()
        self.rows = rows

    def check(self) -> None:
        if self.total and self.done >= self.rows * 31:
            self.cancel()
        super().check()


@pytest.mark.parametrize("mode", ["weights", "random"])
def test_cancelling_stops_between_rows_and_restores_the_weights(make_trainer, mode):
    trainer = trained(make_trainer)
    before = snapshot(trainer.model)
    progress = CancelAfter(rows=4)
    with pytest.raises(SurfaceCancelled):
        compute_surface(trainer, SurfaceRequest(mode=mode), progress)
    assert progress.done == 4 * 31 < progress.total
    assert_same_weights(trainer.model, before)
    assert trainer.model.training


def test_cancelling_from_another_thread_through_the_controller(make_trainer, controllers, wait_until):
    trainer = trained(make_trainer)
    before = snapshot(trainer.model)
    ctl = trainer.start(paused=True)
    controllers.append(ctl)
    progress = SurfaceProgress()
    future = ctl.call(lambda t: compute_surface(t, SurfaceRequest(resolution=301), progress))  # ~90,000 points
    deadline = time.monotonic() + 30
    while progress.done == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert progress.done > 0
    progress.cancel()
    with pytest.raises(SurfaceCancelled):
        future.result(timeout=10)
    assert progress.done < progress.total
    assert_same_weights(trainer.model, before)
    assert ctl.step()  # the run goes on
    assert wait_until(lambda: trainer.step_count == 7)


def test_a_progress_cancelled_before_the_start_computes_nothing(make_trainer):
    trainer = trained(make_trainer)
    progress = SurfaceProgress()
    progress.cancel()
    with pytest.raises(SurfaceCancelled):
        compute_surface(trainer, SurfaceRequest(), progress)
    assert progress.done == 0


def test_the_default_surface_of_the_linear_model_takes_under_five_seconds(make_trainer):
    trainer = trained(make_trainer, steps=10)
    started = time.perf_counter()
    surface = compute_surface(trainer, SurfaceRequest())
    assert len(surface.xs) == len(surface.ys) == 31
    assert time.perf_counter() - started < 5.0


# -- the trajectory recorder -------------------------------------------------------------------------------------
def test_the_trajectory_keeps_observed_steps_only_and_at_most_its_capacity(make_trainer):
    trainer = make_trainer()
    assert [s for s, _ in trainer.trajectory.entries()] == [0]
    trainer.take_step()
    assert len(trainer.trajectory) == 1  # an unobserved step records nothing
    for _ in range(70):
        trainer.step()
    steps = [s for s, _ in trainer.trajectory.entries()]
    assert len(steps) == trainer.trajectory.capacity == 64 and steps[-1] == 71 and steps[0] == 8
    last = trainer.trajectory.entries()[-1][1]
    assert torch.equal(last, torch.cat([p.detach().reshape(-1) for p in trainer.model.parameters()]))


def test_the_trajectory_respects_its_byte_cap_and_skips_big_models(make_trainer):
    model = make_trainer().model
    small = Trajectory(model, max_bytes=650 * 4 * 10)  # room for ten entries of the linear model (650 weights)
    assert small.enabled and small.capacity == 10
    big = Trajectory(model, max_bytes=650 * 4 * 3)
    big.record(1)
    assert not big.enabled and len(big) == 0 and "not recorded" in big.describe()


def test_recording_an_earlier_step_forgets_the_later_ones():
    model = torch.nn.Linear(3, 2)
    trajectory = Trajectory(model)
    for step in (0, 1, 2, 3):
        trajectory.record(step)
    trajectory.record(2)  # a rewind to step 1, then step 2 again
    assert [s for s, _ in trajectory.entries()] == [0, 1, 2]
    assert [s for s, _ in trajectory.entries(up_to=1)] == [0, 1]


# -- typing a weight ---------------------------------------------------------------------------------------------
SHAPES = {"fc.weight": (10, 64), "fc.bias": (10,)}


@pytest.mark.parametrize(
    "text, expected",
    [("fc.weight[3,17]", ("fc.weight", (3, 17))), ("fc.weight 3 17", ("fc.weight", (3, 17))),
     (" fc.bias[9] ", ("fc.bias", (9,))), ("fc.weight[130]", ("fc.weight", (2, 2)))],
)
def test_parse_weight_ref(text, expected):
    assert parse_weight_ref(text, SHAPES) == WeightRef(*expected)


@pytest.mark.parametrize(
    "text, reason",
    [("fc.weights[1,1]", "no parameter"), ("fc.weight[10,0]", "out of range"), ("fc.weight[1,2,3]", "2 indices"),
     ("fc.weight[640]", "out of range"), ("", "write a weight")],
)
def test_parse_weight_ref_says_what_is_wrong(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_weight_ref(text, SHAPES)


def test_progress_is_readable_from_another_thread_while_computing(make_trainer):
    trainer = trained(make_trainer)
    progress = SurfaceProgress()
    seen = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen.append(progress.fraction)
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        compute_surface(trainer, SurfaceRequest(resolution=61), progress)
    finally:
        done.set()
        watcher.join()
    assert progress.fraction == 1.0 and seen == sorted(seen)


class SlowLinear(torch.nn.Module):
    """A linear model whose every forward pass takes 10 ms: a grid of 31x31 would take ~10 s."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        import time

        time.sleep(0.01)
        return self.fc(x.flatten(1))


def test_a_slow_model_gets_a_coarser_grid_within_the_budget():
    from nktui.protocol.results import BUDGET_SECONDS, SurfaceRequest
    from nktui.engine.debugger.landscape import compute_surface

    from nktui.training import RunConfig, Trainer

    trainer = Trainer(RunConfig(device="cpu", seed=0), model=SlowLinear())
    trainer.step()
    surface = compute_surface(trainer, SurfaceRequest(layer="fc.weight"))
    assert len(surface.xs) < 31 and len(surface.xs) % 2 == 1
    assert surface.seconds < BUDGET_SECONDS + 3
    assert any("would have taken" in note for note in surface.notes)
    exact = compute_surface(trainer, SurfaceRequest(layer="fc.weight", resolution=5, budget=None, with_slice=False))
    assert len(exact.xs) == 5
