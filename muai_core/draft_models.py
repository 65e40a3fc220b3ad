"""The manager's side of draft-model speculative decoding: which draft a request gets, loading and leasing it,
checking it against the target, and recording why it was not used."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from muai_core.contracts import GenerationRequest
from muai_core.drafting import DraftModel
from muai_core.errors import BackendError, ConfigurationError, InvalidInputError, ModelLoadError, first_line
from muai_core.resolver import USER_ERRORS, LoadedModel

if TYPE_CHECKING:
    from muai_core.manager import ModelManager

log = logging.getLogger("muai_core.draft")

#: Model info keys that must be equal for a draft's token ids to mean the target's tokens.
SAME_VOCABULARY = ("tokenizer_digest", "vocab_size")


class Drafts:
    """The draft models of one manager's requests, and for each target the last reason its draft was not used."""

    def __init__(self, manager: ModelManager) -> None:
        self._manager = manager
        self._lock = threading.Lock()
        self._status: dict[str, dict[str, Any]] = {}
        self._seen: set[tuple[str, str, str]] = set()  # reasons logged already: (model, draft, reason)

    def lease(self, model_name: str, request: GenerationRequest) -> LoadedModel | None:
        """The draft of ``request`` (its ``draft``, else the config's ``models.<name>.draft``), loaded and leased
        (the caller releases it); None without one, or where it fails to load (the reason is recorded).

        A draft that is the model itself, or that is no model here, is refused: ``InvalidInputError`` for the
        argument, ``ConfigurationError`` for the config.
        """
        name, where, error = _choice(model_name, request, self._manager)
        if not name:
            return None
        if name == model_name:
            raise error(
                f"{where} names the model itself ('{model_name}'): a model cannot draft for itself",
                hint="name a smaller model with the same tokenizer, or turn the draft off with draft=''",
            )
        manager = self._manager
        try:
            source = manager.plan(name).source
        except ModelLoadError as exc:
            raise error(f"{where}: {exc.message}", hint=exc.raw_hint) from exc
        if not source.found and name not in manager.config.models:
            looked = ", ".join(source.searched) or "the models directory"
            raise error(
                f"{where} names '{name}', which is no model here (looked in {looked})",
                hint="name a model under models: in the config or in models_dir (`muai models` lists them), "
                "or turn the draft off with draft=''",
            )
        self._record(model_name, name, None)
        try:
            return manager._load(name, *manager._choices.get(name, ("transformers", None)), lease=True)
        except USER_ERRORS:
            raise
        except Exception as exc:
            reason = str(exc) if isinstance(exc, BackendError) else f"{type(exc).__name__}: {first_line(exc)}"
            self.unused(model_name, name, f"it failed to load: {reason}")
            return None

    def drafter(self, target: LoadedModel, draft: LoadedModel, request: GenerationRequest) -> DraftModel:
        """What ``decode_loop`` drives: ``draft``, checked to read token ids as ``target`` does."""
        _, where, error = _choice(target.name, request, self._manager)
        mine, theirs = target.backend.info(target.handle), draft.backend.info(draft.handle)
        for key in SAME_VOCABULARY:
            if mine.get(key) is not None and theirs.get(key) is not None and mine[key] != theirs[key]:
                raise error(
                    f"{where}: '{draft.name}' has another vocabulary than '{target.name}' (their {key} differ), "
                    "so its token ids would mean other tokens",
                    hint="pick a draft model with the target's tokenizer (e.g. a smaller model of the same family), "
                    "or turn the draft off with draft=''",
                )

        def open_step(longest: int, cancel: threading.Event | None) -> Any:
            return draft.backend.decode_step(draft.handle, longest, cancel)

        def unused(reason: str) -> None:
            self.unused(target.name, draft.name, f"{reason} (the draft runs on {draft.backend_name})")

        return DraftModel(draft.name, open_step, unused)

    def unused(self, model_name: str, draft: str, reason: str) -> None:
        """Record (and log, once per reason) why ``model_name`` decodes without its draft."""
        if self._record(model_name, draft, reason):
            log.warning("muai: '%s' decodes without its draft model '%s': %s", model_name, draft, reason)

    def status(self, model_name: str) -> dict[str, Any] | None:
        """``{"model": the draft, "unused": why it was last not used, or None}``; None if it never had one."""
        with self._lock:
            status = self._status.get(model_name)
            return None if status is None else dict(status)

    def _record(self, model_name: str, draft: str, reason: str | None) -> bool:
        """Set the status; True when ``reason`` is news."""
        with self._lock:
            self._status[model_name] = {"model": draft, "unused": reason}
            if reason is None or (model_name, draft, reason) in self._seen:
                return False
            self._seen.add((model_name, draft, reason))
            return True


def _choice(model_name: str, request: GenerationRequest, manager: ModelManager) -> tuple[str, str, type]:
    """The draft's name, where it was given (for messages) and the error to raise about it."""
    if request.draft is not None:
        return request.draft, f"draft={request.draft!r}", InvalidInputError
    return manager.config.drafts.get(model_name, ""), f"models.{model_name}.draft", ConfigurationError
