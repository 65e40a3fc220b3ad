"""The quality harness, quality bars, and ``muai verify`` on the in-place byte-level backends."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from muai_core.cli import main
from muai_core.config import parse_config
from muai_core.errors import ConfigurationError
from muai_core.hookspecs import hookimpl
from muai_core.quality import Bar, Harness, Runner, parse_bar, prompts
from muai_core.testing import CountingBackend, FaultyBackend, TokenBackend, registered
from tests.conftest import write_config


def runner(tokens, logits):
    return Runner(lambda prompt, n: tokens[:n], lambda ids: np.asarray(logits(len(ids)), dtype=np.float32))


def test_agreement_first_divergence_and_kl_are_measured_against_the_reference():
    flat = lambda n: np.zeros((n, 4))  # noqa: E731
    peaked = lambda n: np.tile([math.log(3), 0.0, 0.0, 0.0], (n, 1))  # noqa: E731  p = (1/2, 1/6, 1/6, 1/6)
    harness = Harness(runner([1, 2, 3, 4], flat), lambda text: [0, 0], prompt_set=["a", "b"], tokens=4)
    same = harness.compare(runner([1, 2, 3, 4], flat))
    assert (same.agreement, same.first_divergence, same.kl, same.prompts) == (1.0, 4, 0.0, 2)
    other = harness.compare(runner([1, 2, 9, 4], peaked))
    assert (other.agreement, other.first_divergence) == (0.75, 2)
    # KL(uniform || (1/2, 1/6, 1/6, 1/6)) = sum 1/4 * log((1/4) / q)
    assert other.kl == pytest.approx(0.25 * math.log(0.5) + 0.75 * math.log(1.5))
    assert other.teacher_forced_agreement == 1.0  # argmax 0 on both (a tie on the reference resolves to 0)
    record = other.record()
    assert record["per_prompt"][0]["first_divergence"] == 2 and "per_prompt" not in Bar().record()


def test_a_shorter_continuation_counts_its_missing_tokens_as_disagreement():
    harness = Harness(runner([1, 2, 3, 4], lambda n: np.zeros((n, 4))), lambda text: [0], ["a"], tokens=4)
    shorter = harness.compare(runner([1, 2], lambda n: np.zeros((n, 4))))
    assert (shorter.agreement, shorter.first_divergence) == (0.5, 2)


def test_the_prompt_set_ships_with_muai_and_spans_domains():
    texts = prompts()
    assert len(texts) >= 16 and len(set(texts)) == len(texts)
    assert any(text.startswith("def ") for text in texts) and any("\n" in text for text in texts)


def test_a_bar_says_why_figures_miss_it():
    bar = parse_bar({"max_kl": 0.05, "min_agreement": 0.8}, "quality_bar")
    assert bar.failures({"kl": 0.01, "agreement": 0.9}) == []
    assert bar.failures({"kl": 0.2, "agreement": 0.5}) == [
        "KL 0.2 > max_kl 0.05",
        "agreement 50.0% < min_agreement 80.0%",
    ]
    assert bar.failures({}) == ["KL unmeasured > max_kl 0.05", "agreement unmeasured < min_agreement 80.0%"]


@pytest.mark.parametrize("value", [{}, {"max_kl": -1}, {"min_agreement": 1.5}, {"max_kl": "low"}, {"kl": 1}, 0.05])
def test_a_bad_quality_bar_in_the_config_is_refused_naming_its_key(value):
    with pytest.raises(ConfigurationError, match=r"models\.m\.quality_bar") as info:
        parse_config({"models": {"m": {"quality_bar": value}}})
    assert "max_kl" in info.value.hint


def test_a_quality_bar_in_the_config_reaches_the_backend_with_the_paths():
    config = parse_config({"models": {"m": {"quality_bar": {"max_kl": 0.1}, "openvino_path": "x"}}})
    assert config.models["m"]["quality_bar"] == {"max_kl": 0.1}


class Shifted(CountingBackend):
    """Counting logits, but the next byte is the previous plus two: parts from the reference at once."""

    @hookimpl
    def muai_forward(self, model, inputs):
        logits = super().muai_forward(model, inputs)["logits"]
        return {"logits": np.roll(logits, 1, axis=-1)}

    @hookimpl
    def muai_generate(self, model, request):
        from muai_core.contracts import GenerationResult

        ids = tuple((ord(request.prompt[-1]) + 2 * (i + 1)) % 256 for i in range(request.max_new_tokens))
        return GenerationResult("", "", len(request.prompt), ids, "length", 0.0)


@pytest.fixture(autouse=True)
def backends():
    with (
        registered(CountingBackend(), "counting"),
        registered(TokenBackend(), "tokens"),
        registered(Shifted(), "shifted"),
    ):
        yield


def test_verify_two_backends_that_agree(tmp_path, capsys):
    assert (
        main(["verify", "m", "--backends", "tokens,counting", "--tokens", "8", "--json", str(tmp_path / "v.json")]) == 0
    )
    out = capsys.readouterr().out
    assert "m: tokens against counting" in out and "greedy agreement   100.0%" in out
    assert "never" in out
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["figures"]["agreement"] == 1.0 and report["figures"]["kl"] < 1e-6
    assert len(report["prompts"]) == len(prompts()) and report["prompts"][0]["reference_token"] is None


def test_verify_shows_where_two_backends_part_and_fails_a_bar(tmp_path, capsys):
    argv = ["verify", "m", "--backends", "shifted,counting", "--tokens", "4", "--json", str(tmp_path / "v.json")]
    assert main([*argv, "--min-agreement", "0.5"]) == 2
    captured = capsys.readouterr()
    assert "below the bar: agreement 0.0% < min_agreement 50.0%" in captured.err
    first = json.loads((tmp_path / "v.json").read_text())["prompts"][0]
    assert first["first_divergence"] == 0 and first["reference_token"] != first["candidate_token"]
    assert json.loads((tmp_path / "v.json").read_text())["figures"]["kl"] > 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--backends", "counting"], "--backends takes two targets"),
        (["--backends", "counting,nope"], "--backends: "),
        (["--backends", "counting:INT8,tokens"], "only openvino exports have one"),
        (["--backends", "counting,tokens", "--kv-cache-precision", "u8"], "--kv-cache-precision set openvino's"),
        (["--backends", "counting,tokens", "--tokens", "0"], "--tokens must be at least 1"),
        (
            ["--backends", "counting,tokens", "--dynamic-quantization-group-size", "0"],
            "--dynamic-quantization-group-size set openvino's",
        ),  # 0 (off) is a value, not "not given"
        (["--backends", "openvino,tokens", "--dynamic-quantization-group-size", "-1"], "must be 0 (off) or more"),
        (["--backends", "counting,tokens", "--max-kl", "-1"], "--max-kl must be >= 0"),
    ],
)
def test_verify_errors_name_the_flag(flags, message, capsys):
    assert main(["verify", "m", *flags]) == 2
    assert message in capsys.readouterr().err


def test_verify_refuses_a_backend_that_fell_back(capsys):
    config = write_config("backend: {priority: [counting]}")
    with registered(FaultyBackend(), "faulty"):
        assert main(["--config", config, "verify", "m", "--backends", "faulty,counting"]) == 2
    err = capsys.readouterr().err
    assert "--backends: faulty did not load m (it fell back to counting)" in err and "muai explain m" in err
