"""Keyed fake identities: one person keeps one fake identity per camera (the "control" property).

A fake identity index is HMAC-SHA256(secret key, camera + NUL + track id), reduced to
[0, num_identities). Without the key nobody can tell which fake identity a person will get, or
link the same person across cameras; with it, a run is reproducible. The key itself never
appears in errors, reprs or logs (`IdentityAssigner` shows only a short sha256 fingerprint).

Uniformity: the whole 256-bit digest is taken as an integer and reduced modulo
`num_identities`. The modulo bias is at most num_identities / 2**256 per index, far below
anything measurable, so no rejection sampling is needed and one hash per track suffices.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import string
from pathlib import Path

from deid.errors import DeidError

KEY_BYTES = 32
MIN_KEY_BYTES = 16
_HEX = frozenset(string.hexdigits)
_TEXT = frozenset(string.printable.encode("ascii"))


def new_secret_key() -> bytes:
    """32 random bytes from the OS's cryptographic generator."""
    return secrets.token_bytes(KEY_BYTES)


def _from_hex(text: str, where: str) -> bytes:
    text = text.strip()
    if text[:2].lower() == "0x":
        text = text[2:]
    if not text:
        raise DeidError(f"secret key {where} is empty")
    if not set(text) <= _HEX:
        raise DeidError(f"secret key {where} is not a hex string (only 0-9 and a-f allowed)")
    if len(text) % 2:
        raise DeidError(f"secret key {where} has an odd number of hex digits ({len(text)})")
    return _check_length(bytes.fromhex(text), where)


def _check_length(key: bytes, where: str) -> bytes:
    if len(key) < MIN_KEY_BYTES:
        raise DeidError(
            f"secret key {where} is too short: {len(key)} bytes, need at least {MIN_KEY_BYTES} "
            f"({2 * MIN_KEY_BYTES} hex digits)"
        )
    return key


def _from_file(path: Path) -> bytes:
    where = f"in {path}"
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DeidError(f"cannot read the secret key file {path}: {error.strerror}") from None
    if not data:
        raise DeidError(f"secret key file {path} is empty")
    if set(data) <= _TEXT:  # text: must be hex (a raw random key is practically never all text)
        return _from_hex(data.decode("ascii"), where)
    return _check_length(data, where)


def _is_file(value: str) -> bool:
    try:
        return Path(value).expanduser().is_file()
    except (OSError, ValueError):  # a name too long or with NUL bytes is no file
        return False


def load_secret_key(value: str | None) -> bytes:
    """The secret key from `value`: hex digits, `@path`, an existing file or `env:VARIABLE`
    (hex in that environment variable); None: a new random one.

    A key file holds hex digits (whitespace around them is ignored) or raw bytes. Keys shorter
    than 16 bytes are refused. Errors never repeat `value` unless it is a file path or a
    variable name.
    """
    if value is None:
        return new_secret_key()
    if isinstance(value, str) and value.startswith("env:"):
        name = value[4:]
        text = os.environ.get(name)
        if not text:
            raise DeidError(f"secret key variable {name} is not set or empty")
        return _from_hex(text, f"in ${name}")
    if not isinstance(value, str):
        raise DeidError(
            f"secret key must be a hex string or a file path, got {type(value).__name__}"
        )
    if value.startswith("@"):
        path = Path(value[1:]).expanduser()
        if not path.is_file():
            raise DeidError(f"secret key file not found: {path}")
        return _from_file(path)
    if _is_file(value):
        return _from_file(Path(value).expanduser())
    return _from_hex(value, "(given as text, not an existing file)")


def key_fingerprint(key: bytes) -> str:
    """First 8 hex digits of sha256(key): tells keys apart in logs without revealing them."""
    return hashlib.sha256(key).hexdigest()[:8]


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray) or not key:
        raise ValueError("key must be non-empty bytes")


def fake_identity(key: bytes, camera: str, track: int | str, num_identities: int) -> int:
    """Uniform index in [0, num_identities) from HMAC-SHA256(key, f"{camera}\\x00{track}").

    The camera may not contain a NUL byte, so (camera, track) pairs never collide as messages.
    `track` 3 and "3" are the same track.
    """
    _check_key(key)
    if num_identities < 1:
        raise ValueError(f"num_identities must be >= 1, got {num_identities}")
    camera = str(camera)
    if "\x00" in camera:
        raise ValueError("camera id must not contain a NUL character")
    message = f"{camera}\x00{track}".encode()
    digest = hmac.new(bytes(key), message, hashlib.sha256).digest()
    return int.from_bytes(digest, "big") % num_identities


class IdentityAssigner:
    """Fake identity per track for one camera/session; `fixed` forces one identity for all."""

    def __init__(
        self, key: bytes, camera: str, num_identities: int, fixed: int | None = None
    ) -> None:
        _check_key(key)
        if num_identities < 1:
            raise ValueError(f"num_identities must be >= 1, got {num_identities}")
        if "\x00" in str(camera):
            raise ValueError("camera id must not contain a NUL character")
        if fixed is not None and not 0 <= int(fixed) < num_identities:
            raise DeidError(
                f"identity={fixed} is out of range: the model knows identities "
                f"0..{num_identities - 1}"
            )
        self._key = bytes(key)
        self.camera = str(camera)
        self.num_identities = int(num_identities)
        self.fixed = None if fixed is None else int(fixed)
        self._cache: dict[str, int] = {}

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self._key)

    def identity(self, track: int | str) -> int:
        """The fake identity of `track` (the same every call; `fixed` when set)."""
        if self.fixed is not None:
            return self.fixed
        name = str(track)
        if name not in self._cache:
            self._cache[name] = fake_identity(self._key, self.camera, name, self.num_identities)
        return self._cache[name]

    def __repr__(self) -> str:
        return (
            f"IdentityAssigner(camera={self.camera!r}, num_identities={self.num_identities}, "
            f"fixed={self.fixed}, key_fingerprint={self.fingerprint!r})"
        )

    __str__ = __repr__
