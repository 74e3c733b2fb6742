"""The semantic cache's evaluation suite, offline: how the embedder and the guard score each pair.

    python -m bench.semantic_suite [--thresholds 0.85,0.9,0.93,0.95]

For every pair of tests/gateway/semantic_suite.json (opposite meanings, paraphrases), the
similarity of the two texts and the guard's verdict; then, per threshold, how many opposite
pairs would be served (false hits: must be 0) and how many paraphrases would. The end-to-end
run through a real daphne is tests/gateway/test_semantic_cache.py; this is the quick loop for
tuning the guard or choosing an org's floor.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

from gateway import embedder
from gateway.semantic_guard import GUARD_VERSION, check

SUITE = Path(__file__).resolve().parent.parent / "tests" / "gateway" / "semantic_suite.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--thresholds", default="0.8,0.85,0.9,0.93,0.95,0.97")
    parser.add_argument("--show", choices=("false-hits", "refused-paraphrases", "none"), default="false-hits")
    args = parser.parse_args(argv)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    suite = json.loads(SUITE.read_text())
    started = time.perf_counter()
    scored = {kind: [(pair, float(embedder.embed(pair["a"]) @ embedder.embed(pair["b"])), check(pair["a"], pair["b"]))
                     for pair in suite[kind]] for kind in ("opposite", "paraphrase")}
    print(f"{embedder.EMBEDDER_ID}, guard v{GUARD_VERSION}: {len(suite['opposite'])} opposite pairs, "
          f"{len(suite['paraphrase'])} paraphrase pairs ({time.perf_counter() - started:.1f} s)")
    print(f"{'threshold':>9} {'false hits':>10} {'paraphrases served':>19}")
    for t in thresholds:
        false = sum(1 for _, sim, refusal in scored["opposite"] if sim >= t and refusal is None)
        served = sum(1 for _, sim, refusal in scored["paraphrase"] if sim >= t and refusal is None)
        print(f"{t:>9.2f} {false:>10} {served:>9} ({served / len(scored['paraphrase']):.0%})")
    refusals = Counter(refusal for _, _, refusal in scored["opposite"])
    print("guard refusals of opposite pairs:", dict(refusals.most_common()))
    print("guard refusals of paraphrases:", dict(Counter(r for _, _, r in scored["paraphrase"]).most_common()))
    low = min(thresholds)
    if args.show == "false-hits":
        for pair, sim, refusal in scored["opposite"]:
            if refusal is None and sim >= low:
                print(f"  FALSE HIT {sim:.3f} [{pair['kind']}] {pair['a']!r} / {pair['b']!r}")
    elif args.show == "refused-paraphrases":
        for pair, sim, refusal in scored["paraphrase"]:
            if refusal is not None:
                print(f"  refused ({refusal}) {sim:.3f} [{pair['kind']}] {pair['a']!r} / {pair['b']!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
