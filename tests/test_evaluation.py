"""The detailed evaluation and `nktui eval`: checked against independent computations on the same weights.

Per-class metrics against a confusion matrix worked out by hand; the confusion matrix against the split's size and
the accuracy; the confidently wrong examples against a softmax over the whole validation set computed here; a
checkpoint's evaluation through `nktui eval`'s code path against `Trainer.evaluate` on the weights it was saved from.
"""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console

from nktui.cli import eval as eval_command
from nktui.render import eval_tables
from nktui.render.heatmap import image
from nktui.engine.evaluation import evaluate_in_detail
from nktui.protocol.records import EvalResult
from nktui.protocol.results import class_metrics
from nktui.run.rundir import save_checkpoint
from nktui.engine.state import capture_state


def trained(make_trainer, steps: int = 15, **overrides):
    trainer = make_trainer(**overrides)
    for _ in range(steps):
        trainer.step()
    return trainer


def validation_set(trainer) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*trainer.data.eval_batches("val"))
    return torch.cat(xs), torch.cat(ys)


# -- per-class metrics: by hand ------------------------------------------------------------------------------------
def test_class_metrics_of_a_confusion_matrix_worked_out_by_hand():
    # true 0: 3 right, 1 taken for 1; true 1: 2 right; true 2: 1 taken for 0, 1 for 1, none right
    confusion = ((3, 1, 0), (0, 2, 0), (1, 1, 0))
    result = EvalResult(step=1, epoch=1, loss=1.0, accuracy=5 / 8, confusion=confusion, classes=("a", "b", "c"))
    a, b, c = class_metrics(result)
    assert (a.support, a.predicted, a.correct) == (4, 4, 3)
    assert a.precision == pytest.approx(3 / 4) and a.recall == pytest.approx(3 / 4)
    assert a.accuracy == pytest.approx((3 + 3) / 8)  # TP 3, TN: the 3 samples neither true nor predicted a
    assert b.precision == pytest.approx(2 / 4) and b.recall == pytest.approx(1.0)
    assert b.accuracy == pytest.approx((2 + 4) / 8)
    assert c.precision is None  # nothing was predicted as c
    assert c.recall == pytest.approx(0.0) and c.accuracy == pytest.approx(6 / 8)


# -- the evaluation of a trained model -----------------------------------------------------------------------------
def test_confusion_matrix_sums_to_the_validation_set_and_its_diagonal_is_the_accuracy(make_trainer):
    trainer = trained(make_trainer)
    ev = evaluate_in_detail(trainer)
    confusion = ev.result.confusion
    assert sum(map(sum, confusion)) == trainer.data.val_size == ev.split_size
    diagonal = sum(confusion[k][k] for k in range(len(confusion)))
    assert diagonal / trainer.data.val_size == pytest.approx(ev.result.accuracy)
    assert sum(m.support for m in ev.classes) == trainer.data.val_size
    assert sum(m.correct for m in ev.classes) == diagonal


def test_evaluation_matches_a_forward_pass_over_the_validation_set(make_trainer):
    trainer = trained(make_trainer)
    ev = evaluate_in_detail(trainer, wrong=5)
    x, y = validation_set(trainer)
    with torch.no_grad():
        logits = trainer.model(x)
    assert ev.result.loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    predicted = logits.argmax(1)
    assert ev.result.accuracy == pytest.approx((predicted == y).float().mean().item())
    for k in range(trainer.data.num_classes):
        assert ev.classes[k].recall == pytest.approx(((predicted == k) & (y == k)).sum().item() / (y == k).sum().item())


def test_confidently_wrong_examples_are_the_most_confident_mistakes(make_trainer):
    trainer = trained(make_trainer)
    ev = evaluate_in_detail(trainer, wrong=6)
    x, y = validation_set(trainer)
    with torch.no_grad():
        probs = F.softmax(trainer.model(x), dim=1)
    confidence, predicted = probs.max(1)
    wrong = (predicted != y).nonzero().flatten()
    expected = wrong[confidence[wrong].argsort(descending=True)][:6].tolist()
    assert [ex.index for ex in ev.wrong] == expected
    for ex in ev.wrong:
        assert ex.true == y[ex.index].item() != ex.predicted == predicted[ex.index].item()
        assert ex.probability == pytest.approx(confidence[ex.index].item(), rel=1e-5)
        assert ex.true_probability == pytest.approx(probs[ex.index, ex.true].item(), rel=1e-5)
        assert torch.tensor(ex.pixels).equal(x[ex.index])  # the picture is the sample the model saw
    probabilities = [ex.probability for ex in ev.wrong]
    assert probabilities == sorted(probabilities, reverse=True)


def test_asking_for_more_examples_than_mistakes_gives_every_mistake_and_no_right_answer(make_trainer):
    trainer = trained(make_trainer, steps=60)
    ev = evaluate_in_detail(trainer, wrong=10_000)
    mistakes = trainer.data.val_size - sum(m.correct for m in ev.classes)
    assert 0 < len(ev.wrong) == mistakes < 10_000
    assert all(ex.true != ex.predicted for ex in ev.wrong)
    assert evaluate_in_detail(trainer, wrong=0).wrong == ()


def test_evaluate_in_detail_publishes_the_result_like_any_validation(make_trainer):
    trainer = trained(make_trainer, steps=3)
    ev = evaluate_in_detail(trainer)
    _, records = trainer.records.since(0)
    assert records[-1] == ev.result == trainer.last_eval


# -- a checkpoint: nktui eval against the app's evaluation of the same weights --------------------------------------
def test_evaluating_a_checkpoint_equals_evaluating_the_weights_it_was_saved_from(make_trainer, tmp_path):
    trainer = trained(make_trainer, steps=20, model="mlp", hidden=(16,))
    path = tmp_path / "state.pt"
    torch.save(capture_state(trainer), path)
    in_app = trainer.evaluate()  # what the app computes for these weights
    from_file = eval_command.evaluate_checkpoint(path, device="cpu")
    assert from_file.result.step == in_app.step == 20
    assert from_file.result.confusion == in_app.confusion
    assert from_file.result.accuracy == in_app.accuracy
    assert from_file.result.loss == pytest.approx(in_app.loss, rel=1e-6)
    trainer.step()  # other weights, another evaluation: the comparison above could tell them apart
    assert trainer.evaluate().loss != pytest.approx(from_file.result.loss, rel=1e-6)


def test_a_runs_last_pt_evaluates_too(make_trainer, tmp_path):
    trainer = trained(make_trainer, steps=10)
    path = save_checkpoint(trainer, tmp_path / "last.pt")
    ev = eval_command.evaluate_checkpoint(path, device="cpu")
    assert ev.result.confusion == trainer.evaluate().confusion


def test_nktui_eval_prints_the_tables(make_trainer, tmp_path, capsys):
    trainer = trained(make_trainer, steps=10)
    path = tmp_path / "state.pt"
    torch.save(capture_state(trainer), path)
    assert eval_command.main([str(path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    result = trainer.evaluate()
    assert f"accuracy {result.accuracy:.2%}" in out
    assert "Confusion matrix" in out and "precision" in out and "Most confidently wrong" in out
    first_rows = [line.split()[1:] for line in out.splitlines() if line.startswith("0 ")]
    assert first_rows[0] == [str(v) if v else "·" for v in result.confusion[0]]  # the confusion matrix's row 0


@pytest.mark.parametrize(
    "content, expected",
    [(None, "does not exist"), (b"not a checkpoint", "cannot read checkpoint"), ({"format": "x"}, "not an nktui")],
)
def test_nktui_eval_explains_a_bad_path_in_one_line(tmp_path, capsys, content, expected):
    path = tmp_path / "bad.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    assert eval_command.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nktui: error: ") and expected in err and len(err.strip().splitlines()) == 1


def test_nktui_eval_refuses_weights_of_another_model(make_trainer, tmp_path, capsys):
    trainer = trained(make_trainer, steps=1)
    state = capture_state(trainer)
    state["config"]["model"] = "mlp"  # the weights are the linear model's
    path = tmp_path / "state.pt"
    torch.save(state, path)
    assert eval_command.main([str(path), "--device", "cpu"]) == 2
    assert "do not fit the model 'mlp'" in capsys.readouterr().err


# -- drawing -------------------------------------------------------------------------------------------------------
def test_rgb_images_are_drawn_in_their_colours_and_one_channel_in_gray():
    red, green, blue = [[1.0, 0.0]] * 2, [[0.0, 1.0]] * 2, [[0.0, 0.5]] * 2
    (line,) = image([red, green, blue])
    colours = [(span.style.color.triplet, span.style.bgcolor.triplet) for span in line.spans]
    assert [tuple(c[0]) for c in colours] == [(255, 0, 0), (0, 255, 128)]  # top pixels
    (line,) = image([[[0.0, 0.5], [1.0, 0.25]]], zoom=1)
    top, bottom = line.spans[1].style.color.triplet, line.spans[1].style.bgcolor.triplet
    assert tuple(top) == (128, 128, 128) and tuple(bottom) == (64, 64, 64)
    assert len(image([[[0.0] * 3] * 4], zoom=2)) == 4 and len(image([[[0.0] * 3] * 4], zoom=2)[0]) == 6


def test_the_confusion_table_shows_every_count(make_trainer):
    trainer = trained(make_trainer, steps=5)
    ev = evaluate_in_detail(trainer)
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(eval_tables.confusion_table(ev.result))
    lines = console.file.getvalue().splitlines()[2:]
    for k, row in enumerate(ev.result.confusion):
        assert lines[k].split()[1:] == [str(v) if v else "·" for v in row]


def test_colour_images_keep_their_three_channels_and_large_ones_are_shrunk(make_trainer):
    from nktui.training import RunConfig, Trainer
    from nktui.engine.datasets import ImageSet

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(120) % 3
    pixels = torch.randint(0, 256, (120, 3, 64, 48), generator=generator, dtype=torch.uint8)
    pixels[labels == 0, 0] = 255  # class "red" has a full red channel
    images = ImageSet("colours", pixels, labels, ("red", "green", "blue"), 1 / 255)
    trainer = Trainer(RunConfig(device="cpu", batch_size=16, seed=0), data=images)
    trainer.step()
    ev = evaluate_in_detail(trainer, wrong=4)
    assert ev.wrong and all(len(ex.pixels) == 3 for ex in ev.wrong)
    assert all((len(ex.pixels[0]), len(ex.pixels[0][0])) == (32, 24) for ex in ev.wrong)  # 64x48 pooled to 32x24
    x, _ = validation_set(trainer)
    ex = ev.wrong[0]
    shrunk = F.adaptive_avg_pool2d(x[ex.index][None], (32, 24))[0]
    assert torch.allclose(torch.tensor(ex.pixels), shrunk, atol=1e-6)
    drawn = eval_tables.wrong_examples(ev, 100)
    assert "true " in drawn.plain and "pred " in drawn.plain
    colours = {span.style.color.triplet for span in drawn.spans if span.style and getattr(span.style, "color", None)
               and span.style.color.triplet is not None}
    assert any(len({c.red, c.green, c.blue}) > 1 for c in colours)  # not gray: the pictures are in colour
