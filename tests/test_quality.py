"""prolab_cli.quality: the numbers bench/label_space_quality.py reports, on matrices worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prolab_cli.errors import ProlabError
from prolab_cli.quality import jaccard, measure, related_pairs

CLASSES = ["car", "truck", "road", "sidewalk"]
ROWS = np.array([[1, 1, 0, 0, 0],    # car
                 [1, 1, 1, 0, 0],    # truck: nearest car (2/3)
                 [0, 0, 0, 1, 1],    # road
                 [0, 1, 0, 1, 0]],   # sidewalk: car 1/3, truck 1/4, road 1/3 -> tie car/road
                dtype=np.float32)
GROUPS = {"vehicles": ["car", "truck"], "ground": ["road", "sidewalk"]}


def test_jaccard_by_hand():
    sim = jaccard(ROWS)
    assert sim[0, 1] == pytest.approx(2 / 3) and sim[3, 0] == pytest.approx(1 / 3) and sim[3, 1] == pytest.approx(1 / 4)
    assert (np.diag(sim) == -1).all()


def test_measure_by_hand():
    q = measure(CLASSES, ROWS, GROUPS)
    assert (q.classes, q.properties, q.collision_groups, q.classes_in_collisions) == (4, 5, 0, 0)
    assert q.properties_per_class_mean == pytest.approx(9 / 4) and (q.properties_per_class_min, q.properties_per_class_max) == (2, 3)
    assert q.classes_per_property_max == 3 and q.single_class_properties == 2 and q.unowned_properties == 0
    # car -> truck (related), truck -> car (related), road -> sidewalk (1/3, related), sidewalk -> car|road (half)
    assert q.nn_related == pytest.approx((1 + 1 + 1 + 0.5) / 4) and q.nn_judged == 4
    assert math.isnan(measure(CLASSES, ROWS).nn_related)


def test_collisions_and_unknown_group_members():
    same = ROWS.copy()
    same[1] = same[0]
    q = measure(CLASSES, same, GROUPS)
    assert (q.collision_groups, q.classes_in_collisions) == (1, 2)
    with pytest.raises(ProlabError, match=r"group 'x': not in the class list: \['bus'\]"):
        related_pairs(CLASSES, {"x": ["car", "bus"]})
