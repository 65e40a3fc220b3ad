"""The muai CLI: output, exit codes, one-line errors with hints, and plugin commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from muai_core.cli import main
from muai_core.hookspecs import hookimpl
from muai_core.testing import CountingBackend, FaultyBackend, registered
from tests.conftest import write_config


@pytest.fixture(autouse=True)
def counting_backend():
    with registered(CountingBackend(), "counting"):
        yield


def test_plugins_lists_backends_with_availability(capsys):
    with registered(FaultyBackend(fail_on=frozenset({"available"})), "down"):
        assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "counting" in out and "registered in place" in out
    assert "down" in out and "unavailable: injected" in out


def test_generate_prints_the_completion_and_a_summary(capsys):
    assert main(["generate", "m", "ab", "--backend", "counting", "--max-new-tokens", "3"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "cde"
    assert "[counting] 3 tokens" in captured.err and "stop: length" in captured.err


def test_generate_streams(capsys):
    assert main(["generate", "m", "a", "--backend", "counting", "--max-new-tokens", "4", "--stream"]) == 0
    assert capsys.readouterr().out == "bcde\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "m", "x", "--backend", "nope"], "--backend: unknown backend 'nope'; installed backends: "),
        (["explain", "m", "--backend", "nope"], "--backend: unknown backend 'nope'; installed backends: "),
        (["generate", "m", "", "--backend", "counting"], "prompt is empty"),
        (["generate", "../../etc", "x", "--backend", "counting"], "not a valid model name"),
    ],
)
def test_errors_are_one_line_with_a_hint_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("muai: error: ") and message in err.splitlines()[0]
    assert err.splitlines()[1].startswith("hint: ")
    assert "Traceback" not in err and "_" not in err.splitlines()[0]  # flags, not backend_override


@pytest.mark.parametrize(
    ("flags", "message", "hint"),
    [
        (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1, got 0", "--max-new-tokens 1"),
        (["--top-p", "1.5"], "--top-p must be in (0, 1], got 1.5", "--top-p 0.9"),
        (["--top-k", "-1"], "--top-k must be at least 0", "--top-k 1"),
        (["--temperature", "-1"], "--temperature must be a finite number >= 0", "--temperature 0 means greedy"),
        (["--temperature", "nan"], "--temperature must be a finite number >= 0", "--temperature 0.7"),
        (["--seed", "-3"], "--seed must be at least 0 and at most 4294967295", "--seed 1"),
        (["--prompt-lookup", "65"], "--prompt-lookup must be at least 0 and at most 64", "--prompt-lookup 1"),
        (["--temperature", "0", "--top-p", "0.9"], "--temperature 0 means greedy decoding", "drop"),
        (["--precision", "FP64"], "--precision must be one of FP32, FP16, INT8, INT4, got FP64", "INT8"),
        (["--precision", "int8"], "--precision chooses an OpenVINO export, so it does not apply to --backend counting",
         "--backend openvino"),
    ],
)  # fmt: skip
def test_generate_errors_name_the_flags(capsys, flags, message, hint):
    assert main(["generate", "m", "x", "--backend", "counting", *flags]) == 2
    error, hint_line = capsys.readouterr().err.splitlines()
    assert error.startswith(f"muai: error: {message}") and hint_line.startswith("hint: ") and hint in hint_line
    assert "_" not in error + hint_line  # flags, not keyword arguments such as max_new_tokens


def test_temperature_zero_means_greedy(capsys):
    assert main(["generate", "m", "ab", "--backend", "counting", "--max-new-tokens", "3", "--temperature", "0"]) == 0
    assert capsys.readouterr().out.strip() == "cde"


def test_precision_without_backend_runs_openvino_with_that_precision(capsys):
    config = write_config("backend: {priority: [counting]}")
    argv = ["--config", config, "generate", "m", "ab", "--precision", "int8", "--max-new-tokens", "3"]
    assert main(argv) == 0  # openvino has no export of m, so it falls back to counting
    assert "[counting (fallback)] 3 tokens" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--backends", ","], "--backends names no backend: ','"),
        (["--backends", "counting,:INT8"], "--backends has a target without a backend: ':INT8'"),
        (["--backends", "nope"], "--backends: unknown backend 'nope'"),
        (["--backends", "counting:INT8"], "--backends: counting:INT8 has a precision, and only openvino exports"),
        (["--backends", "counting,openvino:int2"], "--backends: openvino:int2 has an unknown precision INT2; use FP32"),
        (["--out", "/dev/null/x"], "--out …/null/x: /dev/null is not a folder"),
        (["--warmup", "-1"], "--warmup must be at least 0"),
        (["--runs", "0"], "--runs must be at least 1"),
    ],
)
def test_bench_checks_its_flags_before_any_work(capsys, flags, message):
    assert main(["bench", "m", "--backends", "counting", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"muai: error: {message}") and "\nhint: " in err and "muai bench:" not in err


def test_debug_shows_the_traceback(capsys):
    assert main(["--debug", "generate", "m", "x", "--backend", "nope"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_debug_is_read_from_the_parsed_flags_not_from_the_prompt(capsys):
    assert main(["generate", "--backend", "nope", "m", "--", "--debug"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_explain_lists_each_attempt(capsys):
    config = write_config("backend: {priority: [counting]}")
    with registered(FaultyBackend(), "faulty"):
        assert main(["--config", config, "explain", "m", "--backend", "faulty"]) == 2  # a fallback is a problem
        assert main(["--config", config, "explain", "m", "--backend", "counting"]) == 0
    out = capsys.readouterr().out
    assert "chain: faulty -> counting" in out
    assert "faulty     load      failed" in out and "counting   load      ok" in out
    assert "fell back: faulty did not load the model (why: above); it runs on counting" in out


def test_plugins_can_add_commands(capsys):
    class Hello:
        @hookimpl
        def muai_register_commands(self, subparsers):
            parser = subparsers.add_parser("hello")
            parser.set_defaults(func=lambda args: print("hi from a plugin") or 0)

    with registered(Hello(), "hello"):
        assert main(["hello"]) == 0
    assert "hi from a plugin" in capsys.readouterr().out


def test_bad_flags_exit_non_zero(capsys):
    with pytest.raises(SystemExit) as info:
        main(["generate"])
    assert info.value.code == 2


def test_doctor_reports_versions_and_config_problems(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "python" in out and "muai-core" in out and "no problems found" in out
    bad = write_config("backend: {default: 3}")
    assert main(["--config", bad, "doctor"]) == 2
    assert "problem: config: backend.default" in capsys.readouterr().out


def test_doctor_names_an_unavailable_backend(capsys):
    with registered(FaultyBackend(fail_on=frozenset({"available"})), "down"):
        assert main(["doctor"]) == 2
    assert "problem: backend down is unavailable: injected" in capsys.readouterr().out


def test_models_lists_what_is_installed_where(capsys, tmp_path):
    weights = Path("models/tiny/model.safetensors")
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"\0" * 3 * 2**20)
    Path("models/tiny/config.json").write_text("{}")
    assert main(["models"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["tiny", "3", "MiB", "safetensors", str(Path("models/tiny"))]
    assert out[1].startswith("1 model(s) in models, ") and out[1].endswith(
        str(tmp_path.parent / f"{tmp_path.name}-muai-home" / "models")
    )


def test_models_says_where_it_looked_when_nothing_is_installed(capsys):
    assert main(["models"]) == 0
    assert "no models installed in models, " in capsys.readouterr().out
