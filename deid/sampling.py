"""Deterministic, resumable sampling for training (any method that draws random items).

Every draw of an epoch is a pure function of `(seed, epoch, position)`: the sampler yields
`(index, draw_seed)` keys, and the dataset uses `draw_seed` for everything random about the item
(pair partner, target identity, augmentation). So DataLoader workers need no shared RNG state,
and resuming mid-epoch only needs `(epoch, batches consumed)`: the sampler skips what was used.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

SampleKey = tuple[int, int]


def draw_seed(seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed for one draw; independent streams for every (seed, epoch, position)."""
    sequence = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), int(position)])
    return int(sequence.generate_state(2, dtype=np.uint32).astype(np.uint64).view(np.uint64)[0])


class ResumableSampler(Sampler[SampleKey]):
    """Shuffled (index, draw_seed) keys, sharded over `world_size` ranks, skippable on resume.

    `set_epoch` is called by Lightning at every epoch start. `skip_batches(n, epoch)` makes the
    iteration of that epoch start after its first `n` batches (this rank's view); it applies
    once, and not at all when the trainer has moved on to a later epoch. `len()` is always the full epoch length, so the trainer's batch counting
    (which resumes at `n`) ends the epoch where the data ends.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
    ) -> None:
        if num_items <= 0:
            raise ValueError("the sampler needs at least one item")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self._skip: tuple[int, int] | None = None  # (epoch, batches)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def skip_batches(self, batches: int, epoch: int) -> None:
        self._skip = (int(epoch), max(0, int(batches)))

    def _rank_positions(self) -> np.ndarray:
        per_rank = self.num_items // self.world_size
        if per_rank == 0:
            raise ValueError(
                f"{self.num_items} items cannot be shared by {self.world_size} processes"
            )
        positions = np.arange(per_rank * self.world_size)
        return positions[self.rank :: self.world_size]

    def _num_batches(self) -> int:
        per_rank = self.num_items // self.world_size
        if self.drop_last:
            return max(per_rank // self.batch_size, 1 if per_rank else 0)
        return -(-per_rank // self.batch_size)

    def __len__(self) -> int:
        per_rank = self.num_items // self.world_size
        return min(self._num_batches() * self.batch_size, per_rank)

    def _order(self) -> Sequence[int]:
        if not self.shuffle:
            return np.arange(self.num_items)
        rng = np.random.default_rng([int(self.seed) & 0xFFFFFFFF, self.epoch, 0x5EED])
        return rng.permutation(self.num_items)

    def __iter__(self) -> Iterator[SampleKey]:
        order = self._order()
        positions = self._rank_positions()[: len(self)]
        start = 0
        if self._skip is not None and self._skip[0] == self.epoch:
            start = self._skip[1] * self.batch_size
        self._skip = None
        for position in positions[start:]:
            yield int(order[position]), draw_seed(self.seed, self.epoch, int(position))


def identities_first(identities: Sequence[str], count: int) -> list[int]:
    """Up to `count` item indices for a fixed sample batch: the first item of each identity
    (in order), then the remaining items in order."""
    picked: list[int] = []
    seen: set[str] = set()
    for index, identity in enumerate(identities):
        if identity not in seen:
            seen.add(identity)
            picked.append(index)
    chosen = set(picked)
    rest = [i for i in range(len(identities)) if i not in chosen]
    return (picked + rest)[:count]
