"""Classes never trained on, at a tiny size: the synthetic world's held-out draw, and whether a model
trained on the seen classes names held-out objects (oracle rows, and the pipeline's label space)."""

from __future__ import annotations

import json
import math

import pytest

from segmentation.data.synth import COLOURS, hamming, make_classes

# the tiny run of the learning test (fixed seeds; sizes stated here, not tuned to the result)
TINY = dict(num_train=48, num_val=24, size=32, num_seen=16, num_heldout=4, seed=0, min_support=2)
ITERS = 120
K = 18
FRACTION_OF_ORACLE = 0.5  # the pipeline's label space must reach half the oracle's held-out accuracy
LUCK = 1e-6  # probability that a guesser reaches the oracle threshold


def _triple(c):
    return (c.colour, c.texture, c.shape)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_heldout_classes_are_new_combinations_of_seen_properties(seed):
    seen, held = make_classes(40, 8, seed)
    assert len({c.colour for c in held}) == 8  # not all one colour: 8 held-out classes, 8 colours
    for h in held:
        assert all(hamming(_triple(h), _triple(s)) >= 2 for s in seen)
        for axis in range(3):
            assert sum(_triple(s)[axis] == _triple(h)[axis] for s in seen) >= 2


def test_impossible_draw_is_refused():
    from prolab_cli.errors import ProlabError

    with pytest.raises(ProlabError, match="Hamming distance"):
        make_classes(6, 2, 0, min_support=2)
    assert len(COLOURS) == 8


def guess_threshold(n: int, chance: float, luck: float = LUCK) -> int:
    """Smallest k with P(Binomial(n, chance) >= k) <= luck: a guesser gets k of n right that rarely."""
    tail = 1.0
    for k in range(n + 1):
        if tail <= luck:
            return k
        tail -= math.comb(n, k) * chance**k * (1 - chance) ** (n - k)
    return n + 1


def test_guess_threshold():
    assert guess_threshold(10, 0.5, 1 / 1024) == 10
    assert guess_threshold(12, 1 / 21) == 7  # P(X >= 7) = 3.6e-7 <= 1e-6 < P(X >= 6) = 8.4e-6


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "issue 12 not resolved: measured 0/12 held-out objects for the oracle (threshold 7/12). The diagnosis "
    "(bench/README.md) shows the model reads texture and shape off colour-specific memories: on held-out "
    "objects it predicts them below chance. strict: this fails as soon as the world/model reaches the bar"))
def test_models_trained_on_seen_classes_name_heldout_objects(tmp_path):
    """Held-out objects (one per even validation image) are each labelled by majority vote of their
    pixels among all 1 + 16 + 4 classes. Chance is 1/21 per object; the oracle must get more right
    than a guesser would with probability 1e-6, and the pipeline's label space half as many."""
    import torch

    from segmentation.data.synth import write_synth
    from segmentation.engine.config import apply_overrides, load_config
    from segmentation.experiments.heldout import World, make_spaces, model_for, score_model
    from segmentation.engine.train import train

    torch.set_num_threads(1)
    data = write_synth(tmp_path / "data", "ade20k", **TINY)
    world = World.load(data)
    spaces = make_spaces(world, tmp_path, K)
    size = TINY["size"]
    cfg = apply_overrides(load_config("synth-vit-adapter-nano"), [
        f"schedule.max_iters={ITERS}", "train.ckpt_interval=100000", "train.seed=0", f"model.img_size={size}",
        f"data.crop_size=[{size},{size}]", f"data.scale=[{2 * size},{size}]", f"test.crop_size=[{size},{size}]",
        f"test.scale=[{2 * size},{size}]"])
    acc = {}
    for method in ("oracle", "pipeline"):
        train_space, test_space = spaces[method]
        run = train(cfg, data, work_dir=tmp_path / method, label_space=train_space, progress=False)
        scores = score_model(method, *model_for(method, run["checkpoint"], test_space), world)
        acc[method] = scores
    n = acc["oracle"]["heldout_objects"]
    chance = 1 / len(world.classes)
    need = guess_threshold(n, chance)
    report = json.dumps({m: round(a["heldout_object_accuracy"], 1) for m, a in acc.items()})
    assert acc["oracle"]["heldout_object_accuracy"] >= 100 * need / n, f"need {need}/{n} objects: {report}"
    assert acc["pipeline"]["heldout_object_accuracy"] >= FRACTION_OF_ORACLE * acc["oracle"]["heldout_object_accuracy"], report
