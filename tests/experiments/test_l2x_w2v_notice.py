"""The one-time word2vec build says up front that it runs once and about how long it takes (issue 41, item 2)."""

from __future__ import annotations

from pathlib import Path

from experiments.l2x.data import Review, w2v_notice


def test_notice_says_once_and_how_long():
    # 5.96M tokens, as the default build
    reviews = [Review(tokens=["w"] * 596_006, scores=[0.5] * 5) for _ in range(10)]
    settings = {"vector_size": 200, "epochs": 20, "workers": 1}
    text = w2v_notice(reviews, settings, Path("cache/beer_word2vec_200d.txt"))
    assert "ONCE" in text and "about 14 minutes" in text and "cache/beer_word2vec_200d.txt" in text
    assert "5.96M tokens" in text and "20 epochs" in text
