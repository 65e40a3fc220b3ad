"""The KV block pool on its own: promises kept, no block handed out twice, the prefix cache exact under eviction."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from muai_openvino.blocks import BlockPool, block_digests

BLOCK = 4


def digests(tokens: list[int]) -> list[bytes]:
    return block_digests(tokens, BLOCK, (len(tokens) - 1) // BLOCK)


def test_digests_cover_every_token_up_to_the_block_end() -> None:
    first = block_digests([1, 2, 3, 4, 5, 6, 7, 8], BLOCK, 2)
    other_start = block_digests([9, 2, 3, 4, 5, 6, 7, 8], BLOCK, 2)
    assert first[1] != other_start[1], "a block's digest must depend on the blocks before it"
    assert block_digests([5, 6, 7, 8], BLOCK, 1, previous=first[0]) == first[1:]


def test_a_sequence_gets_the_cached_blocks_of_its_prefix_and_promises_bound_admission() -> None:
    pool = BlockPool(BLOCK, max_blocks=6, prefix_cache=True)
    tokens = list(range(10))  # 2 full blocks before the last token
    first = pool.reserve(digests(tokens), 3)
    pool.grow(3)
    for _ in range(3):
        pool.take(first)
    for digest in block_digests(tokens, BLOCK, 2):
        pool.file(first, digest)
    assert pool.reserve([], 4) is None, "3 held + 4 promised exceed 6"
    second = pool.reserve(digests([*tokens[:8], 99, 98]), 3)
    assert second.blocks == first.blocks[:2] and second.promised == 1 and pool.reused_blocks == 2
    shared = list(second.blocks)
    pool.release(first)
    pool.release(second)
    assert pool.in_use == 0 and pool.cached == 2
    third = pool.reserve(digests(tokens), 6)  # 2 cached blocks reused, 4 more promised: exactly the pool
    assert third is not None and third.blocks == shared


operations = st.lists(
    st.tuples(st.sampled_from(["start", "grow", "end"]), st.integers(0, 7), st.integers(1, 30)), max_size=60
)


@settings(max_examples=60, deadline=None)
@given(operations, st.booleans())
def test_random_traffic_keeps_every_promise_and_never_shares_a_private_block(steps, prefix_cache) -> None:
    """Sequences start (prompts drawn from few prefixes), grow and end in any order: each gets every block it
    was promised; a block two sequences hold is a cached one with the same tokens; releases empty the pool."""
    pool = BlockPool(BLOCK, max_blocks=24, prefix_cache=prefix_cache)
    running: dict[int, tuple] = {}
    for number, (action, seed, length) in enumerate(steps):
        if action == "start":
            tokens = [seed % 3] * (length // 2) + [seed] * (length - length // 2)
            longest = len(tokens) + 6
            reservation = pool.reserve(digests(tokens), pool.blocks_for(longest))
            if reservation is None:
                continue
            running[number] = (reservation, tokens, longest, len(reservation.blocks) * BLOCK)
        elif action == "grow" and running:
            key = sorted(running)[seed % len(running)]
            reservation, tokens, longest, filled = running[key]
            target = min(longest, max(filled, len(tokens)) + 1)
            pool.grow(pool.shortfall(pool.blocks_for(target) - len(reservation.blocks)))
            while len(reservation.blocks) < pool.blocks_for(target):
                pool.take(reservation)
            full = min(target, len(tokens)) // BLOCK
            for digest in block_digests(tokens, BLOCK, full)[len(reservation.digests) :]:
                pool.file(reservation, digest)
            running[key] = (reservation, tokens, longest, target)
        elif action == "end" and running:
            key = sorted(running)[seed % len(running)]
            pool.release(running.pop(key)[0])
        held: dict[int, list] = {}
        for reservation, tokens, _, _ in running.values():
            for index, block in enumerate(reservation.blocks):
                held.setdefault(block, []).append(tuple(tokens[: (index + 1) * BLOCK]))
        for block, prefixes in held.items():
            assert len(prefixes) == 1 or len(set(prefixes)) == 1, f"block {block} holds two different prefixes"
            assert block < pool.capacity <= pool.max_blocks
        assert pool.in_use == len(held)
    for reservation, *_ in running.values():
        pool.release(reservation)
    assert pool.in_use == 0
