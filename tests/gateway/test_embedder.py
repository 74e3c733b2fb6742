"""The semantic cache's embedder: offline, and the same vectors as wordllama's own `embed`."""

import json
from pathlib import Path

import numpy as np

from gateway import embedder

SUITE = json.loads((Path(__file__).parent / "semantic_suite.json").read_text())


def test_vectors_equal_wordllamas_own_and_ignore_case_and_spacing():
    model = embedder._load()
    texts = [text for kind in ("opposite", "paraphrase") for pair in SUITE[kind] for text in (pair["a"], pair["b"])]
    texts += ["naïve café — 東京 😀", "x", "a  b\tc\nd"]
    for text in texts:
        ours = embedder.embed(text)
        theirs = model.embed([embedder.normalised(text)], norm=True)[0]
        assert ours.dtype == np.float32 and ours.shape == (embedder.DIMENSIONS,)
        assert float(ours @ theirs) > 0.9999, text
    assert float(embedder.embed("HOW DO I RESET MY ROUTER") @ embedder.embed("how do i  reset my router")) > 0.9999
    assert not embedder.embed("   ").any()
