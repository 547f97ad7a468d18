"""Parse `k=` values from the command line: `5`, `1..10`, `1,5,10` or a list."""

from __future__ import annotations

from collections.abc import Iterable

from deid.errors import DeidError


def parse_ks(value: int | str | Iterable[int]) -> list[int]:
    """Sorted unique positive ks; `"1..10"` is inclusive on both ends."""
    if isinstance(value, int):
        ks = [value]
    elif isinstance(value, str):
        text = value.strip()
        try:
            if ".." in text:
                low, high = (int(part) for part in text.split(".."))
                ks = list(range(low, high + 1))
            else:
                ks = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise DeidError(
                f"k={value!r}: expected a number, a range like 1..10, or 1,5,10"
            ) from None
    else:
        ks = [int(v) for v in value]
    if not ks or min(ks) < 1:
        raise DeidError(f"k={value!r}: ks must be positive integers")
    return sorted(set(ks))
