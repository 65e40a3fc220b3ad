"""One test per hook, each through the core with a real in-place plugin (test_docs checks they exist)."""

from __future__ import annotations

import numpy as np

from muai_core.cli import main
from muai_core.contracts import Availability
from muai_core.errors import ConfigurationError
from muai_core.hookspecs import hookimpl
from muai_core.testing import CountingBackend, FaultyBackend, registered
from tests.conftest import write_config


def test_hook_muai_backend_available(make_manager, add_faulty):
    add_faulty("down", fail_on=frozenset({"available"}))
    manager = make_manager()
    assert manager.registry.backend("counting").available() == Availability(True)
    assert manager.get_available_backends() == ["counting"]


def test_hook_muai_load_model(make_manager, counting):
    make_manager(device="cpu").load_model("m")
    assert [(m.name, m.device) for m in counting.loaded] == [("m", "cpu")]


def test_hook_muai_forward(make_manager):
    assert make_manager().forward("m", {"input_ids": [[1, 2]]})["logits"].dtype == np.float32


def test_hook_muai_generate(make_manager):
    assert make_manager().generate("m", "a", max_new_tokens=2) == "abc"


def test_hook_muai_decode_step(registry, monitor, tmp_path):
    from muai_core import ModelManager
    from muai_core.batching import StepBatcher
    from muai_core.decoding import decode_loop
    from muai_core.testing.backends import _next_byte_logits

    class Engine:  # the counting model's logits depend on the last byte only: nothing to keep or roll back
        def admit(self, sequence, tokens):
            return True

        def run(self, chunks):
            rows = [[_next_byte_logits(np.array([[t]])) for t in c.tokens] for c in chunks]
            return [np.stack(r) if c.every else r[-1] for c, r in zip(chunks, rows, strict=True) if c.wants_logits]

        def release(self, sequence):
            pass

        def truncate(self, sequence, length):
            pass

    class Batched(CountingBackend):
        """The counting model, decoded through a step batcher; it gives the core a step for a draft."""

        @hookimpl
        def muai_load_model(self, request):
            model = super().muai_load_model(request)
            model.batcher = StepBatcher(Engine())
            return model

        @hookimpl
        def muai_generate(self, model, request):
            prompt = list(request.prompt.encode("utf-8"))
            with model.batcher.sequence(len(prompt) + request.new_token_budget(len(prompt))) as step:
                return decode_loop(step, prompt, request, lambda ids: bytes(ids).decode())

        @hookimpl
        def muai_decode_step(self, model, longest, cancel):
            return model.batcher.sequence(longest, cancel)

    registry.register(Batched("batched"), "batched")
    config = write_config("models: {m: {draft: d}, d: {}}", "draft.yaml")
    manager = ModelManager(backend="batched", registry=registry, monitor=monitor, config_path=config)
    plain = manager.generate_result("m", "a", max_new_tokens=20, draft="")
    drafted = manager.generate_result("m", "a", max_new_tokens=20)
    assert drafted.text == plain.text == "abcdefghijklmnopqrstu"
    assert plain.verify_calls == 0 and drafted.accepted_tokens == drafted.draft_tokens > 10
    assert manager.get_model_info("m")["draft"] == {"model": "d", "unused": None}


def test_hook_muai_unload_model(make_manager, counting):
    manager = make_manager()
    manager.load_model("m")
    manager.unload_model("m")
    assert counting.loaded[0].released


def test_hook_muai_model_info(make_manager):
    manager = make_manager()
    manager.load_model("m")
    assert manager.get_model_info("m")["model_info"] == {
        "backend": "counting",
        "device": "cpu",
        "vocab_size": 256,
        "context_length": 4096,
        "memory_bytes": 1024,
        "tokenizer_digest": "utf-8 bytes",
    }


def test_hook_muai_check_settings(capsys):
    seen = []

    class Checked(CountingBackend):
        @hookimpl
        def muai_check_settings(self, settings):
            seen.append(dict(settings))
            if settings.get("speed") != "fast":
                raise ConfigurationError(f"backend.checked.speed must be fast, got {settings.get('speed')!r}")

    def doctor(config: str) -> tuple[int, str]:
        return main(["--config", config, "doctor"]), capsys.readouterr().out

    with registered(Checked(), "checked"):
        rc, out = doctor(write_config("backend: {checked: {speed: slow}}", "slow.yaml"))
        assert rc == 2 and "problem: config: backend.checked.speed must be fast, got 'slow'" in out
        rc, out = doctor(write_config("backend: {checked: {speed: fast}}", "fast.yaml"))
        assert "backend.checked" not in out
        rc, out = doctor("none.yaml")  # no section: checked as an empty one
        assert rc == 2 and "problem: config: backend.checked.speed must be fast, got None" in out
    assert seen == [{"speed": "slow"}, {"speed": "fast"}, {}]


def test_hook_muai_register_commands(capsys):
    class Command:
        @hookimpl
        def muai_register_commands(self, subparsers):
            subparsers.add_parser("ping").set_defaults(func=lambda args: print("pong") or 0)

    with registered(Command(), "command"):
        assert main(["ping"]) == 0
    assert capsys.readouterr().out.strip() == "pong"


def test_hook_muai_diagnostics(capsys):
    class Diagnosed(CountingBackend):
        @hookimpl
        def muai_diagnostics(self):
            return ["diagnosed devices: abacus"]

    with registered(Diagnosed(), "diagnosed"), registered(FaultyBackend(fail_on=frozenset()), "other"):
        main(["doctor"])
    assert "diagnosed devices: abacus" in capsys.readouterr().out


def test_hook_muai_known_models(capsys, tmp_path):
    class Catalogue(CountingBackend):
        @hookimpl
        def muai_known_models(self):
            return {"abacus-1b": "muai fetch abacus-1b", "tiny": "muai fetch tiny"}

    (tmp_path / "models" / "tiny").mkdir(parents=True)
    (tmp_path / "models" / "tiny" / "config.json").write_text("{}")
    with registered(Catalogue(), "catalogue"):
        assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "abacus-1b                not installed; get it with: muai fetch abacus-1b" in out
    assert "tiny" in out and "muai fetch tiny" not in out, "an installed model is not offered again"
