"""The semantic cache's embedder: wordllama's 256-dimension model, shipped inside the package.

Loaded offline from the package directory (nothing is fetched at run time), once per process,
on the first request that needs it (in a worker thread: the load takes about 0.3 s, the event
loop keeps serving). A text embeds in about 10 µs on the event loop once its words were seen
(each new word is tokenized once). EMBEDDER_ID is part of every scope key, so a new model or
version never compares its vectors with an older one's.
"""

from __future__ import annotations

import asyncio
import threading
from importlib.metadata import version
from pathlib import Path

import numpy as np

DIMENSIONS = 256
EMBEDDER_ID = f"wordllama/l2_supercat_{DIMENSIONS}/{version('wordllama')}/lower"

_model = None
_lock = threading.Lock()
_word_ids: dict[str, list[int]] = {}  # word -> its token ids
_MAX_WORDS = 100_000


def _load():
    global _model
    with _lock:
        if _model is None:
            import wordllama
            from wordllama import WordLlama

            _model = WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True,
                                    dim=DIMENSIONS)
    return _model


def loaded() -> bool:
    return _model is not None


async def ready() -> None:
    """Load the model without blocking the event loop (a no-op once loaded)."""
    if _model is None:
        await asyncio.get_running_loop().run_in_executor(None, _load)


def embed(text: str) -> np.ndarray:
    """A unit-length float32 vector of the text: the mean of its tokens' vectors, as wordllama's
    own `embed` pools them.

    The model's tokenizer (BPE over the text with spaces made "▁") never merges across a space,
    so a text's tokens are its words' tokens one after another (checked on the 609 texts of the
    evaluation suite): each word is tokenized once per process and kept. The tokenizer call cost
    more than the rest of a lookup; a word already seen costs a dictionary lookup."""
    model = _model if _model is not None else _load()
    ids: list[int] = []
    for word in normalised(text).split(" "):
        found = _word_ids.get(word)
        if found is None:
            found = model.tokenizer.encode(word, add_special_tokens=False).ids
            if len(_word_ids) >= _MAX_WORDS:
                _word_ids.clear()
            _word_ids[word] = found
        ids += found
    if not ids:
        return np.zeros(DIMENSIONS, dtype=np.float32)
    vector = model.embedding[ids].mean(axis=0)
    norm = float(np.sqrt(vector @ vector))
    return (vector / norm if norm else vector).astype(np.float32, copy=False)


def normalised(text: str) -> str:
    """What is embedded: case folded, whitespace collapsed. Case changes nothing a question means
    but moves the model's vectors a lot ("HOW DO I RESET MY ROUTER" scored 0.34 against its
    lower-case twin); names and the like are the guard's job, and it reads the original text."""
    return " ".join(text.lower().split())
