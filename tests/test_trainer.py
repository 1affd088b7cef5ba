"""Trainer: the numbers of one update, checked against computations made here without autograd or the engine."""

from __future__ import annotations

import math
import os
import textwrap

import pytest
import torch
from torch import nn

from nktui.protocol.config import DEFAULT_STEPS
from nktui.training import ConfigError, EvalResult, ModelError, RunConfig, StepRecord, Trainer
from nktui.engine.models import load_factory


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def step_records(trainer: Trainer) -> list[StepRecord]:
    _, items = trainer.records.since(0)
    return [r for r in items if isinstance(r, StepRecord)]


def rel_err(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


# -- plain SGD: the update is lr times the gradient, and the instruments measure it --------------------------------
@pytest.mark.parametrize("model", ["linear", "mlp"])
def test_sgd_update_norm_is_lr_times_grad_norm_and_the_weight_change(make_trainer, model):
    lr = 0.5
    trainer = make_trainer(model=model, lr=lr, hidden=(32, 16))
    for _ in range(3):  # the first step, and two from weights that training has moved
        before = params(trainer.model)
        rec = trainer.step()
        after = params(trainer.model)
        assert set(rec.layers) == set(before), "every parameter tensor has statistics on a direct step"
        assert rec.lr == lr
        for name, stats in rec.layers.items():
            grad = dict(trainer.model.named_parameters())[name].grad
            grad_norm = grad.double().norm().item()
            change = (after[name].double() - before[name].double()).norm().item()
            norm_before = before[name].double().norm().item()
            norm_after = after[name].double().norm().item()
            assert change > 0
            assert rel_err(stats.grad_norm, grad_norm) < 1e-5, name
            assert rel_err(stats.update_norm, lr * stats.grad_norm) < 1e-5, name
            assert rel_err(stats.update_norm, change) < 1e-5, name
            assert rel_err(stats.update_norm, lr * grad_norm) < 1e-5, name
            # weight_norm is the norm before the update (and the update moved the norm measurably)
            assert rel_err(stats.weight_norm, norm_before) < 1e-6, name
            assert rel_err(norm_after, norm_before) > 1e-5
            assert stats.update_ratio == pytest.approx(stats.update_norm / stats.weight_norm, rel=1e-12)
            assert stats.update_ratio == pytest.approx(change / norm_before, rel=1e-5)
            assert stats.shape == tuple(before[name].shape)
            assert stats.name == name


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_update_norm_is_the_weight_change_for_other_optimizers(make_trainer, optimizer):
    kwargs = dict(optimizer="sgd", momentum=0.9) if optimizer == "momentum" else dict(optimizer="adam", lr=1e-2)
    trainer = make_trainer(model="mlp", hidden=(16,), **kwargs)
    for _ in range(3):
        before = params(trainer.model)
        rec = trainer.step()
        after = params(trainer.model)
        for name, stats in rec.layers.items():
            change = (after[name].double() - before[name].double()).norm().item()
            assert rel_err(stats.update_norm, change) < 1e-4, name
            assert rel_err(stats.weight_norm, before[name].double().norm().item()) < 1e-6, name


# -- the linear model's gradient is softmax cross-entropy's, by hand ------------------------------------------------
def test_linear_gradient_matches_hand_computed_softmax_cross_entropy(make_trainer):
    trainer = make_trainer(model="linear", lr=0.2)
    trainer.step()
    trainer.step()  # check a step from weights that training has already moved
    x, y = trainer.data.train_batch(trainer.step_count)  # the batch the next step will use
    fc = trainer.model.fc
    W, b = fc.weight.detach().double().clone(), fc.bias.detach().double().clone()

    X = x.reshape(len(x), -1).double()
    logits = X @ W.T + b
    shifted = logits - logits.max(dim=1, keepdim=True).values
    probs = shifted.exp() / shifted.exp().sum(dim=1, keepdim=True)  # softmax by hand
    onehot = torch.zeros_like(probs)
    onehot[torch.arange(len(y)), y] = 1.0
    delta = (probs - onehot) / len(y)  # dL/dlogits of the batch-mean cross-entropy
    grad_w = delta.T @ X
    grad_b = delta.sum(dim=0)  # = column mean of (softmax - onehot)
    loss = -(probs[torch.arange(len(y)), y]).log().mean().item()
    accuracy = (logits.argmax(1) == y).double().mean().item()

    rec = trainer.step()

    assert torch.allclose(fc.weight.grad.double(), grad_w, rtol=1e-4, atol=1e-7)
    assert torch.allclose(fc.bias.grad.double(), grad_b, rtol=1e-4, atol=1e-7)
    assert rel_err(rec.layers["fc.weight"].grad_norm, grad_w.norm().item()) < 1e-5
    assert rel_err(rec.layers["fc.bias"].grad_norm, grad_b.norm().item()) < 1e-5
    assert rec.layers["fc.weight"].grad_mean == pytest.approx(grad_w.mean().item(), rel=1e-4, abs=1e-9)
    assert rec.layers["fc.weight"].grad_absmax == pytest.approx(grad_w.abs().max().item(), rel=1e-5)
    assert rec.loss == pytest.approx(loss, rel=1e-5)
    assert rec.accuracy == pytest.approx(accuracy, abs=1e-12)
    # and the update it made is exactly -lr times that gradient
    assert torch.allclose(fc.weight.detach().double(), W - 0.2 * grad_w, rtol=1e-5, atol=1e-6)
    assert torch.allclose(fc.bias.detach().double(), b - 0.2 * grad_b, rtol=1e-5, atol=1e-6)


def test_batches_are_a_pure_function_of_the_step(make_trainer):
    a, b = make_trainer(), make_trainer()
    for _ in range(5):
        a.step()
    xa, ya = a.data.train_batch(3)
    xb, yb = b.data.train_batch(3)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a.data.train_batch(4)[1], ya)


# -- reproducibility: same seed, same numbers; the thread computes what direct calls compute -----------------------
def test_same_seed_gives_identical_losses_and_weights(make_trainer):
    runs = []
    for seed in (0, 0, 1):
        trainer = make_trainer(model="mlp", hidden=(32,), seed=seed)
        losses = [trainer.step().loss for _ in range(8)]
        runs.append((losses, params(trainer.model)))
    (losses_a, params_a), (losses_b, params_b), (losses_c, _) = runs
    assert losses_a == losses_b
    assert all(torch.equal(params_a[n], params_b[n]) for n in params_a)
    assert losses_a != losses_c  # the seed matters, so the equality above means something


def test_k_direct_steps_equal_k_thread_steps_bitwise(make_trainer, controllers):
    k = 50  # more than one epoch of 44 batches: the thread also evaluates at the epoch boundary
    settings = dict(model="mlp", hidden=(32, 16), lr=0.1, steps=k, log_every=7)
    direct = make_trainer(**settings)
    direct_records = [direct.step() for _ in range(k)]

    threaded = make_trainer(**settings)
    ctl = threaded.start(paused=False)
    controllers.append(ctl)
    assert ctl.wait_for(lambda s: s.value == "finished" or s.is_over, timeout=60)
    assert ctl.state.value == "finished", ctl.error_traceback
    thread_records = step_records(threaded)
    evals = [r for r in threaded.records.since(0)[1] if isinstance(r, EvalResult)]

    assert threaded.step_count == direct.step_count == k
    assert [r.step for r in thread_records] == list(range(1, k + 1))
    assert [r.loss for r in thread_records] == [r.loss for r in direct_records]
    assert [r.accuracy for r in thread_records] == [r.accuracy for r in direct_records]
    assert [r.lr for r in thread_records] == [r.lr for r in direct_records]
    pa, pb = params(direct.model), params(threaded.model)
    assert all(torch.equal(pa[n], pb[n]) for n in pa)

    # the thread observed only some steps (and evaluated in between); direct calls observed every one
    observed = [r.step for r in thread_records if r.observed]
    assert 1 in observed and 7 in observed and 14 in observed
    assert len(observed) < k
    assert all(r.observed for r in direct_records)
    assert [e.step for e in evals] == [44, 50]
    for r in thread_records:
        if r.observed:  # the same gradients, whoever measured them
            d = direct_records[r.step - 1]
            assert {n: s.grad_norm for n, s in r.layers.items()} == {n: s.grad_norm for n, s in d.layers.items()}


def test_evaluation_on_the_thread_does_not_disturb_dropout_training(make_trainer, controllers):
    """Evaluation switches dropout off and back on and draws no random numbers: a run that evaluates every 3 steps
    trains exactly like direct steps that never evaluate."""

    def model():
        torch.manual_seed(123)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))

    k = 12
    direct = make_trainer(model_obj=model(), steps=k)
    direct_losses = [direct.step().loss for _ in range(k)]
    threaded = make_trainer(model_obj=model(), steps=k, eval_every=3, log_every=5)
    ctl = threaded.start()
    controllers.append(ctl)
    assert ctl.wait_for(lambda s: s.value == "finished" or s.is_over, timeout=60)
    assert [r.loss for r in step_records(threaded)] == direct_losses
    assert len([r for r in threaded.records.since(0)[1] if isinstance(r, EvalResult)]) == 4
    pa, pb = params(direct.model), params(threaded.model)
    assert all(torch.equal(pa[n], pb[n]) for n in pa)
    assert threaded.model.training


# -- the learning rate ---------------------------------------------------------------------------------------------
def test_set_lr_between_steps_applies_from_the_next_update(make_trainer):
    trainer = make_trainer(model="linear", lr=0.1)
    trainer.step()
    rec_k = trainer.step()
    assert trainer.set_lr(0.03) == 0.03
    assert trainer.lr == 0.03
    rec_next = trainer.step()

    assert rec_k.lr == 0.1
    assert rec_next.lr == 0.03
    for name in rec_k.layers:
        k, nxt = rec_k.layers[name], rec_next.layers[name]
        assert rel_err(k.update_norm, 0.1 * k.grad_norm) < 1e-5
        assert rel_err(k.update_norm, 0.03 * k.grad_norm) > 0.5
        assert rel_err(nxt.update_norm, 0.03 * nxt.grad_norm) < 1e-5
    assert all(group["lr"] == 0.03 for group in trainer.optimizer.param_groups)


def test_set_lr_accepts_text_as_typed(make_trainer):
    trainer = make_trainer()
    assert trainer.set_lr(" 1e-3 ") == pytest.approx(1e-3)
    assert trainer.step().lr == pytest.approx(1e-3)


@pytest.mark.parametrize(
    "bad, says",
    [(0, "greater than 0"), (-1, "greater than 0"), (math.nan, "finite"), (math.inf, "finite"),
     ("abc", "number"), ("", "empty")],
)
def test_set_lr_rejects_bad_values_and_keeps_the_old_rate(make_trainer, bad, says):
    trainer = make_trainer(lr=0.1)
    trainer.step()
    with pytest.raises(ConfigError) as info:
        trainer.set_lr(bad)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert message.startswith("lr ") and says in message
    assert trainer.lr == 0.1
    assert trainer.step().lr == 0.1


# -- evaluation ----------------------------------------------------------------------------------------------------
def test_evaluate_matches_an_independent_computation(make_trainer):
    trainer = make_trainer(model="mlp", hidden=(32,), lr=0.2)
    for _ in range(20):
        trainer.step()
    before = params(trainer.model)
    result = trainer.evaluate()

    k = trainer.data.num_classes
    losses, confusion, n = [], torch.zeros(k, k, dtype=torch.long), 0
    with torch.no_grad():
        for x, y in trainer.data.eval_batches("val"):
            logits = trainer.model(x).double()
            losses.append((torch.logsumexp(logits, dim=1) - logits[torch.arange(len(y)), y]).sum())
            for t, p in zip(y.tolist(), logits.argmax(1).tolist()):
                confusion[t, p] += 1
            n += len(y)
    assert n == trainer.data.val_size
    assert result.size == sum(map(sum, result.confusion)) == trainer.data.val_size
    assert torch.equal(torch.tensor(result.confusion), confusion)
    assert result.accuracy == pytest.approx(sum(result.confusion[i][i] for i in range(k)) / result.size, abs=1e-12)
    assert result.loss == pytest.approx(torch.stack(losses).sum().item() / n, rel=1e-5)
    assert 0.0 < result.accuracy < 1.0
    assert (result.step, result.epoch, result.split) == (20, 1, "val")
    assert result.classes == trainer.data.classes
    assert trainer.last_eval is result
    assert trainer.records.latest() is result
    assert trainer.model.training
    after = params(trainer.model)
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_evaluate_train_split_is_not_published(make_trainer):
    trainer = make_trainer()
    trainer.step()
    seq = trainer.records.last_seq
    result = trainer.evaluate("train")
    assert result.split == "train"
    assert result.size == trainer.data.train_size
    assert trainer.records.last_seq == seq
    assert trainer.last_eval is None
    with pytest.raises(ValueError):
        trainer.evaluate("test")


def test_records_epoch_and_step(make_trainer):
    trainer = make_trainer(batch_size=512)  # 1438 training samples: 2 steps per epoch
    assert trainer.data.steps_per_epoch == 2
    recs = [trainer.step() for _ in range(5)]
    assert [(r.step, r.epoch) for r in recs] == [(1, 1), (2, 1), (3, 2), (4, 2), (5, 3)]
    assert trainer.epoch == 3
    assert [r.step for r in step_records(trainer)] == [1, 2, 3, 4, 5]


def test_step_limit_follows_steps_and_epochs(make_trainer):
    assert make_trainer(steps=7).step_limit == 7
    assert make_trainer(epochs=2).step_limit == 2 * 44  # 1438 // 32 batches per epoch
    assert make_trainer().step_limit == DEFAULT_STEPS


# -- models -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation, module", [("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh), ("relu", nn.ReLU)])
def test_mlp_activation_choice(make_trainer, activation, module):
    trainer = make_trainer(model="mlp", hidden=(16, 8), activation=activation)
    kinds = [type(m) for m in trainer.model.modules() if not isinstance(m, (nn.Sequential, nn.Linear, nn.Flatten))]
    assert kinds == [module, module]
    rec = trainer.step()
    assert math.isfinite(rec.loss)
    assert set(rec.layers) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "out.weight", "out.bias"}


def test_cnn_on_8x8_digits(make_trainer):
    trainer = make_trainer(model="cnn", lr=0.05)
    x, _ = trainer.data.train_batch(0)
    assert x.shape == (32, 1, 8, 8)
    with torch.no_grad():
        assert trainer.model(x).shape == (32, 10)
    rec = trainer.step()
    assert math.isfinite(rec.loss) and rec.observed


CUSTOM_MODEL = """
from torch import nn
SEEN = []

def build(input_shape, num_classes):
    SEEN.append((input_shape, num_classes))
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 12), nn.Tanh(), nn.Linear(12, num_classes))

def broken(input_shape, num_classes):
    raise RuntimeError("layer sizes do not add up")

def not_a_module(input_shape, num_classes):
    return "a string"

def frozen(input_shape, num_classes):
    m = nn.Linear(2, 2)
    m.requires_grad_(False)
    return m

NOT_CALLABLE = 3
"""


def test_custom_model_from_a_package_module(make_trainer, tmp_path, monkeypatch):
    package = tmp_path / "nktui_test_models_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "net.py").write_text(CUSTOM_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    trainer = make_trainer(model="nktui_test_models_pkg.net:build", lr=0.5)
    import nktui_test_models_pkg.net as net

    assert net.SEEN == [((1, 8, 8), 10)]
    losses = [trainer.step().loss for _ in range(30)]
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) < sum(losses[:5])  # it trains
    assert set(trainer.step().layers) == {"1.weight", "1.bias", "3.weight", "3.bias"}


def test_custom_model_from_a_file(make_trainer, tmp_path):
    path = tmp_path / "my_model.py"
    path.write_text(CUSTOM_MODEL)
    trainer = make_trainer(model=f"{path}:build", lr=0.5)
    losses = [trainer.step().loss for _ in range(30)]
    assert sum(losses[-5:]) < sum(losses[:5])


def test_an_edited_model_file_loads_as_edited_even_within_the_same_second(tmp_path):
    """Python trusts a __pycache__ .pyc whose source has the same size and mtime (whole seconds); an edit inside
    that second (a user fixing a layer size and pressing r) must still load the new code."""
    path = tmp_path / "sized.py"
    path.write_text("def build(input_shape, num_classes):\n    return 16\n")
    assert load_factory(f"{path}:build")((64,), 10) == 16
    stat = path.stat()
    path.write_text("def build(input_shape, num_classes):\n    return 32\n")  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same mtime
    assert load_factory(f"{path}:build")((64,), 10) == 32


@pytest.mark.parametrize(
    "factory, says",
    [
        ("broken", ["raised RuntimeError", "layer sizes do not add up"]),
        ("not_a_module", ["returned str", "not a torch.nn.Module"]),
        ("frozen", ["no trainable parameters"]),
        ("missing", ["has no callable 'missing'"]),
        ("NOT_CALLABLE", ["has no callable 'NOT_CALLABLE'"]),
    ],
)
def test_custom_model_errors_are_model_errors(make_trainer, tmp_path, factory, says):
    path = tmp_path / "my_model.py"
    path.write_text(CUSTOM_MODEL)
    with pytest.raises(ModelError) as info:
        make_trainer(model=f"{path}:{factory}")
    for text in says:
        assert text in str(info.value)


def test_custom_model_module_that_does_not_import(make_trainer, tmp_path):
    with pytest.raises(ModelError, match="cannot import 'nktui_no_such_module_xyz'.*ModuleNotFoundError"):
        make_trainer(model="nktui_no_such_module_xyz:build")
    bad = tmp_path / "bad_model.py"
    bad.write_text("def build(:\n")
    with pytest.raises(ModelError, match="SyntaxError"):
        make_trainer(model=f"{bad}:build")
    with pytest.raises(ModelError, match="does not exist"):
        make_trainer(model=f"{tmp_path / 'nope.py'}:build")
    raising = tmp_path / "raising_model.py"
    raising.write_text(textwrap.dedent("raise ImportError('needs a package you do not have')\n"))
    with pytest.raises(ModelError, match="needs a package you do not have"):
        make_trainer(model=f"{raising}:build")


def test_unknown_builtin_model_is_a_config_error(make_trainer):
    with pytest.raises(ConfigError, match="unknown model 'resnet'"):
        make_trainer(model="resnet")


def test_a_model_passed_in_is_used(make_trainer):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    trainer = make_trainer(model_obj=model)
    assert trainer.model is model
    assert set(trainer.step().layers) == {"1.weight", "1.bias"}


# -- accuracy targets ----------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("model, target", [("linear", 0.93), ("mlp", 0.95)])
def test_reaches_accuracy_target(controllers, model, target):
    trainer = Trainer(RunConfig(model=model, steps=2000, device="cpu"))
    ctl = trainer.start()
    controllers.append(ctl)
    assert ctl.wait_for(lambda s: s.value == "finished" or s.is_over, timeout=120)
    assert ctl.state.value == "finished", ctl.error_traceback
    assert trainer.step_count == 2000
    assert trainer.last_eval is not None and trainer.last_eval.step == 2000
    assert trainer.last_eval.accuracy >= target
