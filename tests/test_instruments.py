"""Instruments: per-layer gradient, weight, histogram and activation statistics against direct torch computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nktui.training import StepRecord
from nktui.probe.instruments import Instruments


def test_gradient_statistics_match_direct_computation(make_trainer):
    trainer = make_trainer(model="mlp", hidden=(32, 16), lr=0.2)
    trainer.instruments.histogram_bins = 8
    trainer.step()
    rec = trainer.step()
    named = dict(trainer.model.named_parameters())
    assert set(rec.layers) == set(named)
    for name, stats in rec.layers.items():
        g = named[name].grad.detach()
        g64 = g.double()
        assert stats.numel == g.numel()
        assert stats.grad_norm == pytest.approx(g64.norm().item(), rel=1e-5)
        scale = g64.abs().max().item()  # float32 sums of +- terms (an output bias sums to ~0) round at ~1e-7 of it
        assert stats.grad_mean == pytest.approx(g64.mean().item(), rel=1e-4, abs=1e-6 * scale)
        assert stats.grad_std == pytest.approx(g64.std(correction=0).item(), rel=1e-4, abs=1e-6 * scale)
        assert stats.grad_absmax == pytest.approx(g64.abs().max().item(), rel=1e-6)
        assert stats.nonfinite == 0

        hist = stats.histogram
        assert hist is not None and len(hist.counts) == 8
        assert sum(hist.counts) == g.numel()
        assert hist.lo == pytest.approx(g.min().item(), rel=1e-6)
        assert hist.hi == pytest.approx(g.max().item(), rel=1e-6)
        expected = torch.histc(g.float(), bins=8, min=hist.lo, max=hist.hi)
        assert expected.sum().item() == g.numel()
        for got, want in zip(hist.counts, expected.tolist()):
            assert abs(got - want) <= 1, (name, hist.counts, expected.tolist())
        edges = hist.edges()
        assert len(edges) == 9 and edges[0] == hist.lo and edges[-1] == pytest.approx(hist.hi)


def test_std_is_the_population_std_not_the_sample_std(make_trainer):
    # a 10-element bias: population and sample std differ by sqrt(10/9), far beyond the tolerance
    trainer = make_trainer(model="linear")
    rec = trainer.step()
    g = trainer.model.fc.bias.grad.double()
    stats = rec.layers["fc.bias"]
    assert stats.grad_std == pytest.approx(g.std(correction=0).item(), rel=1e-4)
    assert stats.grad_std != pytest.approx(g.std(correction=1).item(), rel=1e-2)


def test_histograms_only_on_request(make_trainer):
    trainer = make_trainer()
    assert all(s.histogram is None for s in trainer.step().layers.values())
    trainer.instruments.histogram_bins = 5
    assert all(len(s.histogram.counts) == 5 for s in trainer.step().layers.values())


def test_nonfinite_gradients_are_counted_and_have_no_histogram(make_trainer):
    trainer = make_trainer(model="linear")
    trainer.instruments.histogram_bins = 8

    def poison(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        flat = grad.view(-1)
        flat[0], flat[5], flat[7] = math.nan, math.inf, -math.inf
        return grad

    handle = trainer.model.fc.weight.register_hook(poison)
    rec = trainer.step()
    handle.remove()
    weight, bias = rec.layers["fc.weight"], rec.layers["fc.bias"]
    assert weight.nonfinite == 3
    assert weight.histogram is None
    assert not math.isfinite(weight.grad_norm)
    assert math.isnan(weight.grad_std)
    # the other layer is unaffected
    assert bias.nonfinite == 0
    assert bias.histogram is not None and sum(bias.histogram.counts) == 10
    assert math.isfinite(bias.grad_norm)


def test_nonfinite_loss_is_recorded(make_trainer):
    class NanModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(x.flatten(1)) * math.nan

    trainer = make_trainer(model_obj=NanModel())
    rec = trainer.step()
    assert math.isnan(rec.loss)
    assert rec.layers["fc.weight"].nonfinite == 640
    assert rec.layers["fc.bias"].nonfinite == 10


def test_activation_statistics_match_a_manual_forward_pass(make_trainer):
    trainer = make_trainer(model="mlp", hidden=(32, 16), lr=0.2)
    trainer.instruments.activations = True
    trainer.step()
    with torch.no_grad():  # kill 5 hidden units outright, so the dead fraction is not trivially 0
        trainer.model.fc1.bias[:5] = -1000.0
    x, _ = trainer.data.train_batch(trainer.step_count)
    m = trainer.model
    with torch.no_grad():
        h1 = x.flatten(1) @ m.fc1.weight.T + m.fc1.bias
        a1 = h1.clamp_min(0)
        h2 = a1 @ m.fc2.weight.T + m.fc2.bias
        a2 = h2.clamp_min(0)
        out = a2 @ m.out.weight.T + m.out.bias
    expected = [("fc1", "Linear", h1), ("act1", "ReLU", a1), ("fc2", "Linear", h2), ("act2", "ReLU", a2),
                ("out", "Linear", out)]

    rec = trainer.step()
    assert [(a.name, a.kind, a.shape) for a in rec.activations] == [(n, k, tuple(t.shape)) for n, k, t in expected]
    for stats, (name, kind, t) in zip(rec.activations, expected):
        t64 = t.double()
        assert stats.mean == pytest.approx(t64.mean().item(), rel=1e-4, abs=1e-7), name
        assert stats.std == pytest.approx(t64.std(correction=0).item(), rel=1e-4, abs=1e-7), name
        if kind == "ReLU":
            dead = (t <= 0).all(dim=0).double().mean().item()
            assert stats.dead_fraction == pytest.approx(dead, abs=1e-7), name
        else:
            assert stats.dead_fraction is None
    assert rec.activations[1].dead_fraction >= 5 / 32


def test_activations_off_by_default_and_hooks_removed(make_trainer):
    trainer = make_trainer(model="mlp", hidden=(8,))
    assert trainer.step().activations == ()
    trainer.instruments.activations = True
    assert len(trainer.step().activations) == 3  # fc1, act1, out (flatten passes through)
    assert all(not m._forward_hooks for m in trainer.model.modules())
    trainer.instruments.activations = False
    assert trainer.step().activations == ()


def test_config_activations_switch(make_trainer):
    trainer = make_trainer(model="mlp", hidden=(8,), activations=True)
    assert [a.name for a in trainer.step().activations] == ["fc1", "act1", "out"]


def test_instruments_directly_around_an_optimizer_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    frozen = nn.Linear(2, 2)
    frozen.requires_grad_(False)
    model.append(frozen)
    instruments = Instruments(model)
    assert instruments.names == ("0.weight", "0.bias", "2.weight", "2.bias")  # frozen parameters are not measured
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randn(5, 3)).square().sum().backward()
    before = [p.detach().clone() for p in instruments.params]
    instruments.before_update()
    optimizer.step()
    layers, acts = instruments.after_update().to_host(instruments.names, instruments.shapes)
    assert acts == ()
    for name, p, b in zip(instruments.names, instruments.params, before):
        assert layers[name].update_norm == pytest.approx((p.detach() - b).norm().item(), rel=1e-5)
        assert layers[name].update_norm == pytest.approx(0.1 * p.grad.norm().item(), rel=1e-5)
        assert layers[name].weight_norm == pytest.approx(b.norm().item(), rel=1e-6)


def test_missing_gradient_counts_as_zero():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    instruments = Instruments(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model[0](torch.randn(4, 3)).sum().backward()  # the second layer gets no gradient at all
    instruments.before_update()
    optimizer.step()
    layers, _ = instruments.after_update().to_host(instruments.names, instruments.shapes)
    assert layers["1.weight"].grad_norm == 0.0 and layers["1.weight"].update_norm == 0.0
    assert layers["0.weight"].grad_norm > 0.0


def test_unobserved_thread_steps_carry_no_layer_statistics(make_trainer, controllers):
    trainer = make_trainer(steps=12, log_every=5)
    ctl = trainer.start()
    controllers.append(ctl)
    assert ctl.wait_for(lambda s: s.value == "finished" or s.is_over, timeout=30)
    recs = [r for r in trainer.records.since(0)[1] if isinstance(r, StepRecord)]
    assert [r.step for r in recs if r.observed] == [1, 5, 10]
    assert all(r.layers == {} and r.activations == () for r in recs if not r.observed)
