"""The second turn of a chat with a long history: first-token time with the prefix cache on and off.

    python benchmarks/prefix_cache.py smollm2-135m --precision INT8 --rounds 5

Two models are loaded (prefix_cache true / false), the rounds take turns between them. Each round starts a
new conversation (its history differs from the last round's, so the cache holds nothing of it), answers the
first turn, then times the second turn. The second answers must be token for token the same.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import yaml

from muai_core import ModelManager, PerformanceMonitor
from muai_core.bench.machine import cpu_description

TOPICS = ("lighthouses", "bread", "rivers", "chess", "volcanoes", "violins", "comets", "bees", "glaciers", "maps")


def history(round_number: int) -> list[dict[str, str]]:
    """A first turn of about 350 tokens that no earlier round used."""
    notes = " ".join(
        f"Note {i}: {TOPICS[(round_number + i) % len(TOPICS)]} matter to the project, reason {round_number * 31 + i}."
        for i in range(24)
    )
    return [{"role": "system", "content": "You are a careful assistant."}, {"role": "user", "content": notes}]


def manager(precision: str, prefix_cache: bool, folder: Path) -> ModelManager:
    config = folder / f"prefix-{prefix_cache}.yaml"
    openvino = {"precision": precision, "prefix_cache": prefix_cache}
    config.write_text(yaml.safe_dump({"backend": {"default": "openvino", "openvino": openvino}}))
    return ModelManager(config_path=str(config), monitor=PerformanceMonitor())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--precision", default="INT8")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        managers = {on: manager(args.precision, on, Path(folder)) for on in (True, False)}
        ttft: dict[bool, list[float]] = {True: [], False: []}
        prompt_tokens = 0
        for number in range(args.rounds + 1):  # round 0 warms both up
            answers = {}
            for on in (True, False) if number % 2 else (False, True):
                chat = history(number)
                first = managers[on].generate_result(args.model, messages=chat, max_new_tokens=24)
                reply = {"role": "assistant", "content": first.completion}
                second = [*chat, reply, {"role": "user", "content": "Sum it up."}]
                result = managers[on].generate_result(args.model, messages=second, max_new_tokens=32, ignore_eos=True)
                answers[on], prompt_tokens = result.token_ids, result.prompt_tokens
                if number:
                    ttft[on].append(result.ttft_s)
            if answers[True] != answers[False]:
                raise SystemExit(f"round {number}: the prefix cache changed the answer")
        on, off = statistics.median(ttft[True]), statistics.median(ttft[False])
        print(f"{args.model} {args.precision}, second turn of {prompt_tokens} prompt tokens, {cpu_description()}")
        print(f"TTFT with prefix cache {on * 1000:.1f} ms, without {off * 1000:.1f} ms: {off / on:.2f}x sooner")
        print("answers identical in every round")


if __name__ == "__main__":
    main()
