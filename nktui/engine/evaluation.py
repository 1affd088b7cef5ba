"""A detailed evaluation: per-class precision, recall and accuracy, and the most confidently wrong examples.

`evaluate_in_detail(trainer)` runs `Trainer.evaluate` (so the result is the very one the loss plot and the status
bar get, and is published into the records like any validation) and, in the same pass over the split, keeps the
`wrong` misclassified samples the model was most sure of, with their pixels. It runs on the training thread
(the `Evaluate(detailed=True)` command) and returns an `nktui.protocol.results.Evaluation`, plain Python values only; the per-class
metrics come from `nktui.protocol.results.class_metrics`, which needs only the confusion matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..protocol.results import Evaluation, WrongExample, class_metrics
from ..probe.instruments import wide_dtype


@torch.no_grad()
def evaluate_split(model, data, split: str, on_batch=None) -> tuple[float, float, tuple[tuple[int, ...], ...]]:
    """(loss, accuracy, confusion[true][predicted]) of `model` on a split of `data`, in eval mode (RNG-free, so
    training goes on bit for bit); `on_batch(x, y, logits)` sees every batch. One host sync, at the end."""
    was_training = model.training
    model.eval()
    k = data.num_classes
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    loss_sum = torch.zeros((), device=device, dtype=wide_dtype(device))
    confusion = torch.zeros(k * k, device=device, dtype=torch.long)
    try:
        for x, y in data.eval_batches(split):
            logits = model(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").to(loss_sum.dtype)
            confusion += torch.bincount(y * k + logits.argmax(1), minlength=k * k)
            if on_batch is not None:  # e.g. the worst mistakes, below
                on_batch(x, y, logits)
    finally:
        model.train(was_training)
    n = data.split_size(split)
    rows = confusion.view(k, k).tolist()  # host sync, once per evaluation
    correct = sum(rows[i][i] for i in range(k))
    return loss_sum.item() / n, correct / n, tuple(tuple(r) for r in rows)


WRONG_EXAMPLES = 8  # confidently wrong examples kept by default
MAX_IMAGE_SIDE = 32  # larger images are average-pooled down to this many pixels a side before leaving the device


class _WorstMistakes:
    """Keeps, across batches, the `k` misclassified samples with the highest predicted probability (on the device)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.seen = 0
        self.confidence: torch.Tensor | None = None
        self.rest: tuple[torch.Tensor, ...] = ()  # index, true, predicted, true probability, pixels

    def __call__(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> None:
        probs = F.softmax(logits.float(), dim=1)
        confidence, predicted = probs.max(dim=1)
        wrong = predicted != y
        index = torch.arange(self.seen, self.seen + len(y), device=y.device)
        self.seen += len(y)
        if self.k <= 0:
            return
        confidence = torch.where(wrong, confidence, torch.full_like(confidence, -1.0))
        top = confidence.topk(min(self.k, len(confidence))).indices
        true_prob = probs.gather(1, y[:, None])[:, 0]
        candidate = (confidence[top], index[top], y[top], predicted[top], true_prob[top], x[top].float())
        if self.confidence is not None:
            candidate = tuple(torch.cat([old, new]) for old, new in zip((self.confidence, *self.rest), candidate))
        keep = candidate[0].topk(min(self.k, len(candidate[0]))).indices
        self.confidence, *rest = (t[keep] for t in candidate)
        self.rest = tuple(rest)

    def examples(self) -> list[WrongExample]:
        if self.confidence is None:
            return []
        confidence, index, true, predicted, true_prob, pixels = self.confidence, *self.rest
        found = confidence >= 0  # fewer mistakes than k: the rest are correct samples, marked -1
        pixels = _shrink(pixels[found])
        values = [t[found].tolist() for t in (confidence, index, true, predicted, true_prob)]
        images = pixels.cpu().tolist()
        return [
            WrongExample(
                index=int(i), true=int(t), predicted=int(p), probability=float(c), true_probability=float(tp),
                pixels=tuple(tuple(tuple(row) for row in channel) for channel in image),
            )
            for c, i, t, p, tp, image in zip(*values, images)
        ]


def _shrink(pixels: torch.Tensor) -> torch.Tensor:
    """Images larger than MAX_IMAGE_SIDE a side, average-pooled down: a terminal cell holds two pixels at most."""
    if pixels.ndim != 4 or max(pixels.shape[-2:], default=0) <= MAX_IMAGE_SIDE:
        return pixels
    h, w = pixels.shape[-2:]
    scale = MAX_IMAGE_SIDE / max(h, w)
    return F.adaptive_avg_pool2d(pixels, (max(1, round(h * scale)), max(1, round(w * scale))))


@torch.no_grad()
def evaluate_in_detail(trainer, split: str = "val", wrong: int = WRONG_EXAMPLES) -> Evaluation:
    """`trainer.evaluate(split)` plus per-class metrics and the `wrong` most confidently wrong samples."""
    mistakes = _WorstMistakes(wrong)
    result = trainer.evaluate(split, on_batch=mistakes)
    examples = mistakes.examples()
    low = min((v for ex in examples for ch in ex.pixels for row in ch for v in row), default=0.0)
    high = max((v for ex in examples for ch in ex.pixels for row in ch for v in row), default=1.0)
    pixel_range = (0.0, 1.0) if low >= 0.0 and high <= 1.0 else (low, high)
    return Evaluation(result=result, classes=class_metrics(result), wrong=tuple(examples), pixel_range=pixel_range)
