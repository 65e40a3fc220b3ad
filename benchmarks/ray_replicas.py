"""``muai serve --ray``: 1 against 2 replicas on the same cores, measured with concurrent openai clients.

Each run starts the deployment on a local Ray cluster of ``--cpus`` CPUs, the CPUs split evenly between the
replicas (so one replica gets all the threads, two get half each), preloads the model, warms every replica up,
then ``--clients`` threads send ``--requests`` chat requests in all (greedy, ``--max-tokens`` each, EOS
ignored) and the table gives aggregate completion tok/s and p50/p95 latency.

    python benchmarks/ray_replicas.py --models-dir models --model smollm2-135m
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import openai
import ray
import yaml
from ray import serve

from muai_core.bench.machine import cpu_description
from muai_core.monitor import percentile
from muai_core.serving.ray import APP_NAME, deployment

QUESTION = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


def measure(base_url: str, model: str, clients: int, requests: int, max_tokens: int) -> dict[str, float]:
    """Aggregate completion tok/s and per-request latency of ``requests`` chat requests from ``clients`` threads."""
    latencies: list[float] = []
    tokens: list[int] = []
    left = iter(range(requests))
    lock = threading.Lock()

    def client() -> None:
        api = openai.OpenAI(base_url=base_url + "/v1", api_key="none", max_retries=0, timeout=600)
        while True:
            with lock:
                if next(left, None) is None:
                    return
            started = time.perf_counter()
            answer = api.chat.completions.create(
                model=model, messages=QUESTION, max_tokens=max_tokens, temperature=0, extra_body={"ignore_eos": True}
            )
            with lock:
                latencies.append(time.perf_counter() - started)
                tokens.append(answer.usage.completion_tokens)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {
        "tok_s": sum(tokens) / wall,
        "p50": percentile(sorted(latencies), 50),
        "p95": percentile(sorted(latencies), 95),
        "mean_tokens": statistics.mean(tokens),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--replicas", default="1,2", help="comma-separated replica counts")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray cluster")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()

    config = Path(tempfile.mkdtemp()) / "system.yaml"
    models_dir = str(Path(args.models_dir).resolve())
    config.write_text(
        yaml.safe_dump({"models_dir": models_dir, "backend": {"default": "pytorch", "priority": ["pytorch"]}})
    )
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    port = 8000 + os.getpid() % 1000
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    base_url = f"http://127.0.0.1:{port}"
    print(f"CPU: {cpu_description()}, {args.cpus} CPUs for Ray; model {args.model} on pytorch, greedy")
    print(f"{args.clients} concurrent clients, {args.requests} chat requests of {args.max_tokens} tokens per run\n")
    print("| replicas | CPUs each | tok/s (all clients) | p50 latency s | p95 latency s |")
    print("| --- | --- | --- | --- | --- |")
    try:
        for replicas in [int(n) for n in args.replicas.split(",")]:
            app = deployment(config, replicas=replicas, preload=[args.model], num_cpus=args.cpus / replicas)
            serve.run(app, name=APP_NAME, route_prefix="/")
            measure(base_url, args.model, replicas, replicas * 2, 4)  # warm every replica up
            row = measure(base_url, args.model, args.clients, args.requests, args.max_tokens)
            print(
                f"| {replicas} | {args.cpus / replicas:g} | {row['tok_s']:.1f} | {row['p50']:.2f} | {row['p95']:.2f} |"
            )
            serve.delete(APP_NAME)
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
