"""Keyed fake identities: consistency per camera, uniformity, key loading, no key leaks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chisquare

from deid.anonymizers.identity_keys import (
    IdentityAssigner,
    fake_identity,
    load_secret_key,
    new_secret_key,
)
from deid.errors import DeidError

KEY = bytes(range(32))


def test_same_inputs_same_identity() -> None:
    ids = [fake_identity(KEY, "cam0", t, 1000) for t in range(50)]
    assert ids == [fake_identity(bytes(KEY), "cam0", t, 1000) for t in range(50)]
    assert fake_identity(KEY, "cam0", 7, 1000) == fake_identity(KEY, "cam0", "7", 1000)
    assert all(0 <= i < 1000 for i in ids)


def test_camera_and_key_change_the_mapping() -> None:
    tracks = range(200)
    base = [fake_identity(KEY, "cam0", t, 1000) for t in tracks]
    other_camera = [fake_identity(KEY, "cam1", t, 1000) for t in tracks]
    other_key = [fake_identity(new_secret_key(), "cam0", t, 1000) for t in tracks]
    assert np.mean(np.array(base) != np.array(other_camera)) > 0.95
    assert np.mean(np.array(base) != np.array(other_key)) > 0.95
    # within one camera, tracks get spread over many identities
    assert len(set(base)) > 150


@pytest.mark.parametrize("num_identities", [10, 7])
def test_identities_are_uniform(num_identities: int) -> None:
    counts = np.bincount(
        [fake_identity(KEY, "cam", t, num_identities) for t in range(20_000)],
        minlength=num_identities,
    )
    assert counts.min() > 0
    assert chisquare(counts).pvalue > 1e-3  # a fixed key: deterministic, not flaky


def test_assigner_caches_and_fixed_wins() -> None:
    assigner = IdentityAssigner(KEY, "cam0", 1000)
    assert assigner.identity(3) == fake_identity(KEY, "cam0", 3, 1000)
    assert assigner.identity(3) == assigner.identity("3")
    fixed = IdentityAssigner(KEY, "cam0", 1000, fixed=42)
    assert {fixed.identity(t) for t in range(20)} == {42}
    with pytest.raises(DeidError, match="identity=1000"):
        IdentityAssigner(KEY, "cam0", 1000, fixed=1000)
    with pytest.raises(ValueError):
        IdentityAssigner(KEY, "cam0", 0)
    with pytest.raises(ValueError):
        fake_identity(KEY, "cam\x00x", 1, 10)


def test_repr_does_not_reveal_the_key() -> None:
    key = new_secret_key()
    assigner = IdentityAssigner(key, "cam0", 1000)
    for text in (repr(assigner), str(assigner), f"{assigner}"):
        assert key.hex() not in text.lower()
        assert key.hex()[:8] not in text.lower()
        assert repr(key) not in text
        assert "cam0" in text
    assert repr(IdentityAssigner(KEY, "c", 5)) != repr(IdentityAssigner(new_secret_key(), "c", 5))


def test_load_key_from_hex_file_and_none(tmp_path: Path) -> None:
    key = new_secret_key()
    assert len(key) == 32 and key != new_secret_key()
    assert load_secret_key(key.hex()) == key
    assert load_secret_key(key.hex().upper()) == key
    assert load_secret_key("0x" + key.hex()) == key
    hex_file = tmp_path / "key.txt"
    hex_file.write_text(key.hex() + "\n")
    assert load_secret_key(str(hex_file)) == key
    assert load_secret_key(f"@{hex_file}") == key
    raw_file = tmp_path / "key.bin"
    raw_file.write_bytes(b"\x00\xff" + key)
    assert load_secret_key(str(raw_file)) == b"\x00\xff" + key
    fresh = load_secret_key(None)
    assert len(fresh) == 32 and fresh != load_secret_key(None)


@pytest.mark.parametrize(
    "secret",
    [
        "zz11223344556677889900aabbccddeeff",  # not hex
        "00112233445566778899aabbccddeef",  # odd number of digits
        "00112233",  # too short
        "my-secret-password-that-is-long",  # not hex, not a file
    ],
)
def test_malformed_keys_fail_without_echoing_them(secret: str) -> None:
    with pytest.raises(DeidError) as error:
        load_secret_key(secret)
    assert secret not in str(error.value)
    assert secret[:12] not in str(error.value)


def test_malformed_key_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.key"
    with pytest.raises(DeidError, match="not found"):
        load_secret_key(f"@{missing}")
    empty = tmp_path / "empty.key"
    empty.write_bytes(b"")
    with pytest.raises(DeidError, match="empty"):
        load_secret_key(str(empty))
    text = tmp_path / "text.key"
    text.write_text("correct horse battery staple\n")
    with pytest.raises(DeidError, match="not a hex") as error:
        load_secret_key(str(text))
    assert "horse" not in str(error.value)
    short = tmp_path / "short.key"
    short.write_bytes(b"\x00\x01\x02")
    with pytest.raises(DeidError, match="too short"):
        load_secret_key(str(short))
