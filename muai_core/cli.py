"""The ``muai`` command line. Plugins add sub-commands through ``muai_register_commands``."""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

from muai_core import __version__, verify
from muai_core.bench import report
from muai_core.bench.levels import run_concurrency
from muai_core.bench.levels_report import CONCURRENCY
from muai_core.bench.machine import cpu_description
from muai_core.bench.runner import DEFAULT_PROMPT, BenchSettings, Target, run_bench
from muai_core.config import load_config
from muai_core.contracts import MAX_PROMPT_LOOKUP
from muai_core.errors import BackendError, ConfigurationError, short_repr
from muai_core.inventory import installed_models
from muai_core.manager import ModelManager
from muai_core.model_source import models_dirs
from muai_core.plugins import LOAD_PLUGINS_ENV, default_registry
from muai_core.progress import Progress
from muai_core.quality import summary
from muai_core.serving import require_extra
from muai_core.serving.settings import API_KEY_ENV

EXIT_ERROR = 2
#: ``--precision`` chooses between this backend's exports.
PRECISION_BACKEND = "openvino"
PRECISIONS = ("FP32", "FP16", "INT8", "INT4")
#: ``muai serve`` hosts that only this machine reaches.
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="muai", description="Run language models on pluggable backends.")
    parser.add_argument("--version", action="version", version=f"muai {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--config", help="config YAML (default: $MUAI_CONFIG or config/system.yaml)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    plugins = commands.add_parser("plugins", help="list plugins, their backends and whether they can run")
    plugins.set_defaults(func=cmd_plugins)

    generate = commands.add_parser("generate", help="generate text from a prompt")
    generate.add_argument("model", help="model name, local directory or hub id")
    generate.add_argument("prompt", help="the prompt text")
    generate.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    generate.add_argument("--backend", help="backend to use first (falls back along backend.priority)")
    generate.add_argument("--device", default="cpu", help="device, e.g. cpu, cuda, GPU (default: cpu)")
    generate.add_argument(
        "--precision",
        type=str.upper,
        help="which OpenVINO export to run: FP32, FP16, INT8 or INT4 (implies --backend openvino)",
    )
    generate.add_argument("--max-new-tokens", type=int, default=64)
    generate.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    generate.add_argument("--temperature", type=float, help="sampling temperature; 0 means greedy decoding")
    generate.add_argument("--top-k", type=int)
    generate.add_argument("--top-p", type=float)
    generate.add_argument("--seed", type=int)
    generate.add_argument(
        "--prompt-lookup", type=int, metavar="K",
        help="propose up to K tokens at a time from the prompt, checked in one step (0: off; default: the config's)",
    )  # fmt: skip
    generate.add_argument(
        "--draft", metavar="MODEL",
        help="a smaller model with the same tokenizer proposes tokens, checked in one step ('': off; default: the "
        "config's models.<name>.draft)",
    )  # fmt: skip
    generate.add_argument("--stream", action="store_true", help="print tokens as they come")
    generate.set_defaults(func=cmd_generate)

    explain = commands.add_parser("explain", help="show which backends were tried for a model, and why")
    explain.add_argument("model")
    explain.add_argument("--backend", help="backend to try first")
    explain.set_defaults(func=cmd_explain)

    models = commands.add_parser("models", help="list installed models: where, in which formats, their disk size")
    models.set_defaults(func=cmd_models)

    doctor = commands.add_parser("doctor", help="versions, devices and config problems, without loading a model")
    doctor.set_defaults(func=cmd_doctor)

    bench = commands.add_parser("bench", help="compare backends on one model, each in its own process")
    bench.add_argument("model")
    bench.add_argument(
        "--backends", default="pytorch,openvino", help="comma-separated BACKEND[:PRECISION], e.g. pytorch,openvino:INT8"
    )
    bench.add_argument("--runs", type=int, default=3, help="timed runs per backend (median reported, min-max shown)")
    bench.add_argument("--warmup", type=int, default=1, help="runs before timing (the first one's TTFT: cold TTFT)")
    bench.add_argument(
        "--concurrency",
        help="comma-separated numbers of clients, e.g. 1,4,8,16: each sends one chat request at once to one loaded "
        "model; per level and round a process of its own (--runs rounds, --warmup untimed rounds in each)",
    )
    bench.add_argument("--new-tokens", type=int, default=128)
    bench.add_argument("--prompt", default=DEFAULT_PROMPT)
    bench.add_argument("--device", default="cpu")
    bench.add_argument(
        "--prompt-lookup", type=int, default=0, metavar="K",
        help="prompt-lookup decoding: propose up to K tokens from the prompt at a time (0: plain decoding)",
    )  # fmt: skip
    bench.add_argument("--draft", metavar="MODEL", help="draft-model speculative decoding with this draft model")
    bench.add_argument("--out", default="bench-results", help="folder for bench.json, bench.md and bench.png")
    bench.set_defaults(func=cmd_bench)

    verify.register(commands)

    serve = commands.add_parser("serve", help="an OpenAI-compatible HTTP server (needs muai-core[serve])")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    serve.add_argument("--config", default=argparse.SUPPRESS, help="config YAML; its serve: section sets the limits")
    serve.add_argument("--models", default="", help="comma-separated models to load at start (others: on first use)")
    serve.add_argument("--api-key", help=f"require this key (Authorization: Bearer KEY); default ${API_KEY_ENV}")
    serve.add_argument(
        "--ray",
        action="store_true",
        help="run as a Ray Serve deployment (needs muai-core[ray]) on $RAY_ADDRESS's cluster, else a local one",
    )
    serve.add_argument("--replicas", type=int, help="with --ray: copies of the server, each with its own models")
    serve.add_argument(
        "--replica-cpus", type=float, default=1.0, help="with --ray: CPUs Ray gives each replica (default: 1)"
    )
    serve.set_defaults(func=cmd_serve)

    default_registry().pm.hook.muai_register_commands(subparsers=commands)
    return parser


def cmd_plugins(args: argparse.Namespace) -> int:
    registry = default_registry()
    for record in registry.records():
        origin = f"{record.distribution} {record.version}" if record.distribution else "registered in place"
        if not record.loaded:
            print(f"{record.name:<12} {origin:<28} BROKEN: {record.error}")
            continue
        if record.name in registry.backend_names():
            availability = registry.backend(record.name).available()
            state = "available" if availability.available else f"unavailable: {availability.reason}"
        else:
            state = "commands only"
        print(f"{record.name:<12} {origin:<28} {state}")
    setting, left_out = registry.left_out()
    for record in left_out:
        print(f"{record.name:<12} {f'{record.distribution} {record.version}':<28} not loaded: {setting} leaves it out")
    if not registry.records() and not left_out:
        print("no plugins installed; pip install muai-pytorch")
    elif not registry.records():
        print(f"no plugins loaded: add them to {LOAD_PLUGINS_ENV} or unset the variable")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    kwargs = generation_kwargs(args)
    backend, settings = backend_flag("--backend", args.backend), None
    if args.precision:
        backend, settings = precision_backend(args.backend, args.precision), {"precision": args.precision}
    manager = ModelManager(device=args.device, backend=backend, backend_config=settings, config_path=args.config)
    manager.load_model(args.model)
    if args.stream:
        kwargs["streamer"] = lambda piece: print(piece, end="", flush=True)
    result = manager.generate_result(args.model, args.prompt, **kwargs)
    print("" if args.stream else result.completion)
    final = manager.get_model(args.model)
    speed = result.new_tokens / result.total_s if result.total_s > 0 else 0.0
    note = " (fallback)" if final.is_fallback else ""
    print(
        f"[{final.backend_name}{note}] {result.new_tokens} tokens, {speed:.1f} tok/s, "
        f"first token {result.ttft_s * 1000:.0f} ms, stop: {result.finish_reason}",
        file=sys.stderr,
    )
    return 0


def generation_kwargs(args: argparse.Namespace) -> dict[str, object]:
    """``generate``'s arguments from the flags, checked here so that errors name the flags.

    ``--temperature 0`` means greedy decoding, as in the OpenAI API and llama.cpp.
    """
    _at_least("--max-new-tokens", args.max_new_tokens, 1)
    _at_least("--top-k", args.top_k, 0)
    _at_least("--seed", args.seed, 0, maximum=2**32 - 1)
    _at_least("--prompt-lookup", args.prompt_lookup, 0, maximum=MAX_PROMPT_LOOKUP)
    if args.temperature is not None and not 0 <= args.temperature < math.inf:
        raise ConfigurationError(
            f"--temperature must be a finite number >= 0, got {args.temperature}",
            hint="e.g. --temperature 0.7; --temperature 0 means greedy decoding",
        )
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ConfigurationError(f"--top-p must be in (0, 1], got {args.top_p}", hint="e.g. --top-p 0.9")
    greedy = args.temperature == 0
    if greedy and (args.sample or args.top_k is not None or args.top_p is not None):
        raise ConfigurationError(
            "--temperature 0 means greedy decoding, but --sample, --top-k or --top-p ask for sampling",
            hint="drop --temperature 0 to sample, or drop the sampling flags",
        )
    return {
        "chat": args.chat,
        "max_new_tokens": args.max_new_tokens,
        "do_sample": False if greedy else True if args.sample else None,
        "temperature": None if greedy else args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "seed": args.seed,
        "prompt_lookup": args.prompt_lookup,
        "draft": args.draft,
        "return_full_text": False,
    }


def precision_backend(backend: str | None, precision: str) -> str:
    """The backend ``--precision`` runs on; it names an OpenVINO export."""
    if precision not in PRECISIONS:
        raise ConfigurationError(
            f"--precision must be one of {', '.join(PRECISIONS)}, got {precision}",
            hint="FP32 is the default export; INT4 is the smallest, INT8 the next",
        )
    if backend not in (None, PRECISION_BACKEND):
        raise ConfigurationError(
            f"--precision chooses an OpenVINO export, so it does not apply to --backend {backend}",
            hint=f"drop --precision, or pass --backend {PRECISION_BACKEND}",
        )
    return PRECISION_BACKEND


def _at_least(flag: str, value: int | None, minimum: int, maximum: int | None = None) -> None:
    if value is not None and (value < minimum or (maximum is not None and value > maximum)):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise ConfigurationError(
            f"{flag} must be at least {minimum}{upper}, got {value}", hint=f"e.g. {flag} {max(minimum, 1)}"
        )


def cmd_models(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    models = installed_models(config)
    for model in models:
        size = f"{model.size_bytes / 2**20:.0f} MiB"
        print(f"{model.name:<24} {size:>10}  {', '.join(model.formats):<40} {model.directory}")
    searched = ", ".join(str(root) for root in models_dirs(config))
    print(f"{len(models)} model(s) in {searched}" if models else f"no models installed in {searched}")
    installed = {model.name for model in models}
    for name, command in sorted(default_registry().known_models().items()):
        if name not in installed:
            print(f"{name:<24} not installed; get it with: {command}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print what muai runs on; exit non-zero when something would stop a model from loading."""
    problems = []
    print(f"python        {sys.version.split()[0]} ({sys.executable})")
    for package in ("muai-core", "torch", "transformers", "openvino", "openvino-genai", "tokenizers", "numpy"):
        print(f"{package:<13} {_version(package) or 'not installed'}")
    registry = default_registry()
    for lines in registry.pm.hook.muai_diagnostics():
        for line in lines:
            print(line)
    for record in registry.records():
        if not record.loaded:
            problems.append(f"plugin {record.name} is broken: {record.error}")
        elif record.name in registry.backend_names() and not registry.backend(record.name).available().available:
            problems.append(f"backend {record.name} is unavailable: {registry.backend(record.name).available().reason}")
    problems += config_problems(args.config)
    setting, left_out = registry.left_out()
    if not registry.backend_names() and left_out:
        problems.append(f"no backend is loaded: {setting} leaves out {', '.join(r.name for r in left_out)}")
    elif not registry.backend_names():
        problems.append("no backend is installed: pip install muai-pytorch (and/or muai-openvino)")
    for problem in problems:
        print(f"problem: {problem}")
    print("no problems found" if not problems else f"{len(problems)} problem(s)")
    return EXIT_ERROR if problems else 0


def config_problems(path: str | None) -> list[str]:
    """Problems of the config: the core's checks, then each available backend's ``muai_check_settings``."""
    try:
        manager = ModelManager(config_path=path)
    except BackendError as exc:
        return [f"config: {exc}"]
    print(f"config        {manager.config.source or 'none (defaults)'}; default backend {manager.backend_type}")
    problems = []
    for name in manager.get_available_backends():
        try:
            manager.registry.backend(name).check_settings(manager.config.backend_settings(name))
        except BackendError as exc:
            problems.append(f"config: {exc}")
        except Exception as exc:  # a broken check must not hide the other problems
            problems.append(f"backend {name} failed to check its settings: {type(exc).__name__}: {exc}")
    return problems


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cmd_bench(args: argparse.Namespace) -> int:
    _at_least("--runs", args.runs, 1)
    _at_least("--new-tokens", args.new_tokens, 1)
    _at_least("--warmup", args.warmup, 0)
    _at_least("--prompt-lookup", args.prompt_lookup, 0)
    targets = bench_targets(args.backends)
    levels = () if args.concurrency is None else concurrency_levels(args.concurrency)
    out = Path(args.out)
    check_writable_folder(out, "--out")
    settings = BenchSettings(
        args.model, targets, args.prompt, args.new_tokens, args.runs, args.warmup, args.device, args.config, levels,
        args.prompt_lookup, args.draft,
    )  # fmt: skip
    progress = Progress("muai bench")
    cpu = cpu_description()
    meta = {"model": args.model, "new_tokens": args.new_tokens, "runs": args.runs, "warmup": args.warmup, "cpu": cpu}
    if levels:
        progress.say(f"{args.model}, {args.new_tokens} new tokens per request, clients {args.concurrency}, {cpu}")
        rows, layout = run_concurrency(settings, progress), CONCURRENCY
        meta["concurrency"] = list(levels)
        what = "chat requests at once"
    else:
        progress.say(f"{args.model}, {args.new_tokens} new tokens, {args.runs} runs each")
        rows, layout = run_bench(settings, progress), report.SINGLE
        what = "greedy"
    prompt_tokens = next((r["prompt_tokens"] for r in rows if "prompt_tokens" in r), "?")
    title = f"{args.model}: {prompt_tokens}-token prompt, {args.new_tokens} new tokens, {what}\n{cpu}"
    print(report.table(rows, layout))
    for path in report.write(rows, out, title, meta, progress, layout):
        progress.say(f"wrote {path}")
    return EXIT_ERROR if any("error" in row for row in rows) else 0


def concurrency_levels(text: str) -> tuple[int, ...]:
    """The levels of ``--concurrency``: whole numbers of at least 1, each once, in increasing order."""
    items = [item.strip() for item in text.split(",")]
    hint = "e.g. --concurrency 1,4,8,16"
    if not any(items):
        raise ConfigurationError(f"--concurrency names no level: {short_repr(text)}", hint=hint)
    levels = set()
    for item in items:
        if not item:
            continue
        if not item.isdigit() or int(item) < 1:
            raise ConfigurationError(
                f"--concurrency takes numbers of clients of at least 1, got {short_repr(item)}", hint=hint
            )
        levels.add(int(item))
    return tuple(sorted(levels))


def bench_targets(text: str) -> list[Target]:
    """The targets of ``--backends``, each an installed backend; a precision only on openvino."""
    targets = []
    for item in text.split(","):
        if not item.strip():
            continue
        if not item.partition(":")[0].strip():
            raise ConfigurationError(
                f"--backends has a target without a backend: {short_repr(item.strip())}", hint=_TARGETS
            )
        target = Target.parse(item)
        backend_flag("--backends", target.backend)
        if target.precision and target.backend != PRECISION_BACKEND:
            raise ConfigurationError(
                f"--backends: {item.strip()} has a precision, and only {PRECISION_BACKEND} exports have one",
                hint=f"drop :{target.precision}, or use {PRECISION_BACKEND}:{target.precision}",
            )
        if target.precision and target.precision not in PRECISIONS:
            raise ConfigurationError(
                f"--backends: {item.strip()} has an unknown precision {target.precision}; use {', '.join(PRECISIONS)}",
                hint=_TARGETS,
            )
        targets.append(target)
    if not targets:
        raise ConfigurationError(f"--backends names no backend: {short_repr(text)}", hint=_TARGETS)
    return targets


_TARGETS = "e.g. --backends pytorch,openvino,openvino:INT8"


def backend_flag(flag: str, name: str | None) -> str | None:
    """``name`` (None stays None) if muai knows that backend; otherwise the registry's error, naming ``flag``."""
    if name is None:
        return None
    try:
        return default_registry().check_backend_name(name)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{flag}: {exc.message}", hint=exc.raw_hint) from None


def check_writable_folder(path: Path, flag: str) -> None:
    """Raise ``ConfigurationError`` unless ``path`` is, or can be made, a folder this process can write to."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigurationError(f"{flag} {path}: {existing} is not a folder", hint=f"pass a folder to {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigurationError(f"{flag} {path}: cannot write in {existing}", hint="pass a folder you can write to")


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the OpenAI API on ``--host:--port`` until interrupted."""
    _at_least("--port", args.port, 1, maximum=65535)
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    if args.ray:
        return _serve_on_ray(args, models)
    if args.replicas is not None:
        raise ConfigurationError("--replicas needs --ray", hint=f"muai serve --ray --replicas {args.replicas}")
    require_extra()
    import uvicorn

    from muai_core.serving.app import create_app

    app = create_app(args.config, api_key=args.api_key, preload=models)
    _serving_at(args, app.state.muai.settings.api_key)
    uvicorn.run(app, host=args.host, port=args.port, log_level="debug" if args.debug else "info")
    return 0


def _serve_on_ray(args: argparse.Namespace, models: list[str]) -> int:
    """``muai serve --ray``: the server's replicas behind Ray Serve's proxy until interrupted, then removed."""
    from muai_core.serving import ray as on_ray

    on_ray.require_ray()
    _at_least("--replicas", args.replicas, 1)
    replicas, cpus = args.replicas or 1, args.replica_cpus
    if not cpus > 0:
        raise ConfigurationError(f"--replica-cpus must be more than 0, got {cpus:g}", hint="e.g. --replica-cpus 0.5")
    application = on_ray.deployment(args.config, replicas=replicas, api_key=args.api_key, preload=models, num_cpus=cpus)
    import ray
    from ray import serve

    ray.init()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # after ray.init, which sets its own handler
    try:
        total = ray.cluster_resources().get("CPU", 0)
        if replicas * cpus > total:  # Ray would wait for CPUs that never come
            raise ConfigurationError(
                f"--replicas {replicas} with --replica-cpus {cpus:g} need {replicas * cpus:g} CPUs; the Ray cluster "
                f"has {total:g}",
                hint="fewer --replicas, a smaller --replica-cpus (e.g. 0.5), or more nodes in the cluster",
            )
        serve.start(http_options={"host": args.host, "port": args.port})
        try:
            serve.run(application, name=on_ray.APP_NAME, route_prefix="/")
            _serving_at(args, args.api_key or os.environ.get(API_KEY_ENV) or None)
            threading.Event().wait()
        finally:
            serve.delete(on_ray.APP_NAME)
    finally:
        ray.shutdown()
    return 0


def _serving_at(args: argparse.Namespace, api_key: str | None) -> None:
    if api_key is None and args.host not in LOOPBACK:
        print(
            f"muai serve: warning: {args.host} is reachable from other machines and no API key is set", file=sys.stderr
        )
    print(f"muai serve: http://{args.host}:{args.port}/ (OpenAI API under /v1)", file=sys.stderr)


def cmd_explain(args: argparse.Namespace) -> int:
    """Load the model and list each attempt; exit non-zero unless it loaded on the first backend of its chain."""
    backend_flag("--backend", args.backend)
    manager = ModelManager(config_path=args.config)
    plan = manager.plan(args.model, backend_override=args.backend)
    where = "local directory" if plan.source.is_local else "Hugging Face hub id"
    print(f"model {plan.model_name}: {where} {plan.source.source}")
    print(f"chain: {' -> '.join(plan.chain)}")
    try:
        loaded = manager.load_model(args.model, backend_override=args.backend)
        attempts = loaded.attempts
    except BackendError as exc:
        attempts = ()
        print(f"failed: {exc}")
    for attempt in attempts:
        reason = f" - {attempt.reason}" if attempt.reason else ""
        print(f"  {attempt.backend:<10} {attempt.stage:<9} {attempt.outcome:<14} {attempt.seconds:.2f}s{reason}")
    ok = attempts and attempts[-1].outcome == "ok"
    quality = manager.get_model_info(args.model)["model_info"].get("quality") if ok else None
    if isinstance(quality, dict):
        print(f"quality against PyTorch: {summary(quality)}")
    if not attempts or attempts[-1].outcome != "ok":
        return EXIT_ERROR
    if attempts[-1].backend != plan.chain[0]:  # a fallback hides a problem with the first backend
        print(f"fell back: {plan.chain[0]} did not load the model (why: above); it runs on {attempts[-1].backend}")
        return EXIT_ERROR
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(None, None, argv)


def run_command(
    parser: argparse.ArgumentParser | None, func: Callable[[argparse.Namespace], int] | None, argv: Sequence[str] | None
) -> int:
    """Parse and run with muai's error handling: one line and a hint, a traceback only with --debug."""
    args = None
    try:
        args = (parser or build_parser()).parse_args(sys.argv[1:] if argv is None else argv)
        debug = getattr(args, "debug", False)
        logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(message)s")
        return int((func or args.func)(args))
    except BackendError as exc:
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"muai: error: {exc.reason}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
