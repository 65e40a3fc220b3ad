"""The KV cache's blocks: who holds which, room promised to running sequences, and the prefix cache.

A sequence is admitted with a promise of every block it can need (prompt and budget) within ``max_blocks``,
so a running sequence never waits for room and nothing is ever preempted. Its blocks are taken as it grows,
and the tensors grow only as blocks are taken. A full
block is filed under a digest of every token up to its end (``prefix_cache``): a later sequence whose
prompt starts with the same tokens takes those blocks instead of computing them again. Blocks no sequence
holds stay cached until their room is needed (the deepest block of a released sequence goes first).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


def block_digests(tokens: Sequence[int], block_size: int, count: int, previous: bytes = b"") -> list[bytes]:
    """The digests of ``count`` full blocks of ``tokens``, each covering every token up to the block's end."""
    digests = []
    for index in range(count):
        block = np.asarray(tokens[index * block_size : (index + 1) * block_size], dtype=np.int64)
        previous = hashlib.blake2b(previous + block.tobytes(), digest_size=16).digest()
        digests.append(previous)
    return digests


@dataclass
class Reservation:
    """A sequence's blocks (in order: its block table) and how many more it was promised."""

    blocks: list[int]
    promised: int
    digests: list[bytes] = field(default_factory=list)  # of its full blocks filed so far


class BlockPool:
    """Block ids 0..capacity-1 of tensors the engine grows on demand (up to ``max_blocks``, see ``shortfall``)."""

    def __init__(self, block_size: int, max_blocks: int, prefix_cache: bool) -> None:
        self.block_size = block_size
        self.max_blocks = max_blocks
        self.prefix_cache = prefix_cache
        self.capacity = 0
        self._free: list[int] = []
        self._refs: dict[int, int] = {}  # block -> how many sequences hold it
        self._promised = 0
        self._by_digest: dict[bytes, int] = {}
        self._digest_of: dict[int, bytes] = {}
        self._idle: OrderedDict[int, None] = OrderedDict()  # cached blocks nobody holds, first evicted first
        self.reused_blocks = 0

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    @property
    def in_use(self) -> int:
        return len(self._refs)

    @property
    def cached(self) -> int:
        return len(self._by_digest)

    def reserve(self, digests: Sequence[bytes], blocks: int) -> Reservation | None:
        """Promise ``blocks`` blocks, the leading ones cached under ``digests`` where they are; None: no room now."""
        matched = []
        for digest in digests if self.prefix_cache else ():
            block = self._by_digest.get(digest)
            if block is None:
                break
            matched.append(block)
        woken = sum(1 for block in matched if block not in self._refs)
        if self.in_use + self._promised + blocks - len(matched) + woken > self.max_blocks:
            return None
        for block in matched:
            self._hold(block)
        self.reused_blocks += len(matched)
        self._promised += blocks - len(matched)
        return Reservation(matched, blocks - len(matched), list(digests[: len(matched)]))

    def shortfall(self, count: int) -> int:
        """How many blocks the tensors should grow by before ``count`` blocks are taken (0: none).

        Growing is preferred to evicting cached blocks, up to ``max_blocks``.
        """
        if count <= len(self._free) or self.capacity >= self.max_blocks:
            return 0
        return min(self.max_blocks, max(2 * self.capacity, self.capacity + count - len(self._free))) - self.capacity

    def grow(self, blocks: int) -> None:
        """The tensors now hold ``blocks`` more blocks."""
        self._free.extend(range(self.capacity + blocks - 1, self.capacity - 1, -1))
        self.capacity += blocks

    def take(self, reservation: Reservation) -> int:
        """One more block for ``reservation``: a free one, else the least recently released cached one."""
        if reservation.promised <= 0:
            raise RuntimeError("a sequence outgrew the blocks it was promised")
        if self._free:
            block = self._free.pop()
        else:
            block, _ = self._idle.popitem(last=False)
            del self._by_digest[self._digest_of.pop(block)]
        reservation.promised -= 1
        self._promised -= 1
        self._refs[block] = 1
        reservation.blocks.append(block)
        return block

    def file(self, reservation: Reservation, digest: bytes) -> None:
        """The next full block of ``reservation`` holds the tokens ``digest`` covers."""
        block = reservation.blocks[len(reservation.digests)]
        reservation.digests.append(digest)
        if self.prefix_cache and digest not in self._by_digest and block not in self._digest_of:
            self._by_digest[digest] = block
            self._digest_of[block] = digest

    def release(self, reservation: Reservation) -> None:
        self._promised -= reservation.promised
        reservation.promised = 0
        for block in reversed(reservation.blocks):  # the deepest block is evicted first
            self._refs[block] -= 1
            if self._refs[block]:
                continue
            del self._refs[block]
            if block in self._digest_of:
                self._idle[block] = None
            else:
                self._free.append(block)
        reservation.blocks = []

    def _hold(self, block: int) -> None:
        self._refs[block] = self._refs.get(block, 0) + 1
        self._idle.pop(block, None)
