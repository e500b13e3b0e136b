"""``top_n`` / ``lsqmf recommend`` rank by the predicted rating on the data's scale, shrunk by
the item's support (issue 21, item 3): a one-rating item predicted above the scale does not
top the list."""

from __future__ import annotations

import numpy as np
import pytest

from lsqmf import FitResult
from lsqmf.evaluate import top_n


def _model() -> FitResult:
    # user 0 baseline 3.5 (mu 3.0 + bias 0.5); item 0: one rating, predicted 5.5; items 1, 2:
    # 80 ratings each, predicted 4.8 and 4.6; item 3: 3 ratings, predicted 4.9
    raw = np.array([5.5, 4.8, 4.6, 4.9])
    return FitResult(P=np.array([[1.0]]), Q=(raw - 3.5)[None, :], mu=3.0,
                     row_bias=np.array([0.5]), col_bias=np.zeros(4),
                     row_counts=np.array([10]), col_counts=np.array([1, 80, 80, 3]),
                     options={"rating_scale": [1.0, 5.0]})


def test_a_one_rating_item_above_the_scale_does_not_top_the_list() -> None:
    cols, scores = top_n(_model(), 0, 4)
    assert cols.tolist() == [1, 2, 3, 0]
    assert scores.tolist() == pytest.approx([4.8, 4.6, 4.9, 5.0])  # clipped to the scale
    assert scores.max() <= 5.0


def test_shrinkage_zero_and_clip_none_give_the_raw_ranking() -> None:
    cols, scores = top_n(_model(), 0, 4, shrinkage=0, clip=None)
    assert cols.tolist() == [0, 3, 1, 2]
    assert scores.tolist() == pytest.approx([5.5, 4.9, 4.8, 4.6])


def test_shrinkage_is_validated() -> None:
    with pytest.raises(ValueError, match="`shrinkage`"):
        top_n(_model(), 0, 2, shrinkage=-1.0)
