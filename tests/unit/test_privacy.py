from __future__ import annotations

import hashlib
import hmac
import io
import os
import stat
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import medimg_core.privacy as privacy
from medimg_core.errors import PrivacyError
from medimg_core.privacy import csv_safe, pseudonym_key, pseudonymise, to_safe_csv

KEY = bytes(range(32))


@pytest.fixture(autouse=True)
def no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDIMG_PSEUDONYM_KEY", raising=False)


def test_public_names_are_exported() -> None:
    assert set(privacy.__all__) == {
        "FORMULA_PREFIXES",
        "PSEUDONYMISE_IDS_ENV",
        "csv_safe",
        "pseudonym_key",
        "pseudonymise",
        "pseudonymise_ids",
        "pseudonymise_ids_on_display",
        "to_safe_csv",
    }


def test_csv_safe_prefixes_formula_cells_only() -> None:
    frame = pd.DataFrame(
        {
            "note": ['=HYPERLINK("x")', "+1", "-x", "@SUM(A1)", "\tz", "\rz", "ok", None],
            "value": [-1.5, 2.0, -3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
            "count": [-1, 2, 3, 4, 5, 6, 7, 8],
        }
    )
    safe = csv_safe(frame)
    assert safe["note"].tolist()[:7] == [
        '\'=HYPERLINK("x")',
        "'+1",
        "'-x",
        "'@SUM(A1)",
        "'\tz",
        "'\rz",
        "ok",
    ]
    assert pd.isna(safe["note"].iloc[7])
    pd.testing.assert_series_equal(safe["value"], frame["value"])
    pd.testing.assert_series_equal(safe["count"], frame["count"])
    assert frame["note"].iloc[0] == '=HYPERLINK("x")'


def test_csv_safe_handles_object_category_headers_and_index() -> None:
    frame = pd.DataFrame(
        {
            "=cmd": [1, "=2", None, -3.5],
            "kind": pd.Categorical(["@a", "b", "@a", "b"]),
        },
        index=pd.Index(["-r1", "r2", "r3", "r4"]),
    )
    safe = csv_safe(frame)
    assert list(safe.columns) == ["'=cmd", "kind"]
    assert safe["'=cmd"].tolist()[:2] == [1, "'=2"]
    assert safe["'=cmd"].tolist()[3] == -3.5
    assert safe["kind"].tolist() == ["'@a", "b", "'@a", "b"]
    assert safe.index.tolist() == ["'-r1", "r2", "r3", "r4"]


def test_to_safe_csv_is_utf8_without_index_by_default() -> None:
    frame = pd.DataFrame({"name": ["Zoë", "=1+1"], "x": [-1.5, 2.0]})
    raw = to_safe_csv(frame)
    assert raw == "name,x\nZoë,-1.5\n'=1+1,2.0\n".encode()
    back = pd.read_csv(io.BytesIO(raw))
    assert back["x"].tolist() == [-1.5, 2.0]
    assert to_safe_csv(frame, index=True).startswith(b",name,x\n0,")


def test_pseudonymise_is_hmac_sha256_truncated() -> None:
    expected = hmac.new(KEY, b"P-001", hashlib.sha256).hexdigest()[:16]
    assert pseudonymise("P-001", KEY) == expected
    assert len(expected) == 16
    assert pseudonymise("P-001", KEY) == pseudonymise("P-001", KEY)
    assert pseudonymise("P-001", KEY) != pseudonymise("P-002", KEY)
    assert pseudonymise("P-001", KEY) != pseudonymise("P-001", b"another key")
    assert pseudonymise(123, KEY) == pseudonymise("123", KEY)


@pytest.mark.parametrize("key", [b"", "text key"])
def test_pseudonymise_refuses_a_bad_key(key: object) -> None:
    with pytest.raises(PrivacyError, match=r"must be non-empty bytes.*pseudonym_key"):
        pseudonymise("P1", key)  # type: ignore[arg-type]


def test_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    home = tmp_path / "workspace"
    key = pseudonym_key(home)
    path = home / "pseudonym.key"
    assert len(key) == 32
    assert path.read_bytes() == key
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert pseudonym_key(home) == key
    assert [p.name for p in home.iterdir()] == ["pseudonym.key"]


def test_concurrent_first_use_agrees_on_one_key(tmp_path: Path) -> None:
    keys: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: keys.append(pseudonym_key(tmp_path))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1
    assert (tmp_path / "pseudonym.key").read_bytes() == keys[0]


def test_home_defaults_to_medimg_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIMG_HOME", str(tmp_path / "home"))
    key = pseudonym_key()
    assert (tmp_path / "home" / "pseudonym.key").read_bytes() == key


def test_home_defaults_to_a_local_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEDIMG_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    key = pseudonym_key()
    assert (tmp_path / "medimg-workspace" / "pseudonym.key").read_bytes() == key


def test_environment_key_hex_and_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIMG_PSEUDONYM_KEY", KEY.hex())
    assert pseudonym_key(tmp_path) == KEY
    monkeypatch.setenv("MEDIMG_PSEUDONYM_KEY", "a long passphrase, not hex")
    assert pseudonym_key(tmp_path) == b"a long passphrase, not hex"
    assert not (tmp_path / "pseudonym.key").exists()


def test_damaged_key_file(tmp_path: Path) -> None:
    path = tmp_path / "pseudonym.key"
    path.write_bytes(b"short")
    path.chmod(0o600)
    with pytest.raises(PrivacyError, match=r"holds 5 bytes, not 32; it is damaged\. Restore it"):
        pseudonym_key(tmp_path)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pseudonym.key"
    path.write_bytes(np.zeros(32, dtype=np.uint8).tobytes())
    path.chmod(0o644)
    with pytest.raises(PrivacyError, match=r"can be read by other users \(mode 644\).*chmod 600"):
        pseudonym_key(tmp_path)


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions enforced"
)
def test_unwritable_workspace(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(PrivacyError, match=r"could not be created.*MEDIMG_PSEUDONYM_KEY"):
            pseudonym_key(locked)
    finally:
        locked.chmod(0o700)


def test_pseudonymise_ids_keeps_patients_apart_and_together() -> None:
    key = b"k" * 32
    ids = pd.Series([123, 456, None, 123.0, "123"], index=[5, 6, 7, 8, 9], name="patient_id")
    out = privacy.pseudonymise_ids(ids, key)
    assert out.index.tolist() == [5, 6, 7, 8, 9] and out.name == "patient_id"
    assert out[5] == out[8] == out[9] == pseudonymise("123", key)
    assert out[6] == pseudonymise("456", key) != out[5]
    assert out[7] is None
    assert "123" not in "".join(v for v in out if v)
    assert privacy.pseudonymise_ids(ids, b"other-key").iloc[0] != out.iloc[0]
    with pytest.raises(PrivacyError, match="non-empty bytes"):
        privacy.pseudonymise_ids(pd.Series([], dtype=object), b"")


def test_pseudonymised_display_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(privacy.PSEUDONYMISE_IDS_ENV, raising=False)
    assert privacy.pseudonymise_ids_on_display() is False
    for on in ("1", "on", "TRUE", " yes "):
        monkeypatch.setenv(privacy.PSEUDONYMISE_IDS_ENV, on)
        assert privacy.pseudonymise_ids_on_display() is True
    monkeypatch.setenv(privacy.PSEUDONYMISE_IDS_ENV, "off")
    assert privacy.pseudonymise_ids_on_display() is False
    monkeypatch.setenv(privacy.PSEUDONYMISE_IDS_ENV, "sometimes")
    with pytest.raises(PrivacyError, match="MEDIMG_PSEUDONYMISE_IDS is 'sometimes'"):
        privacy.pseudonymise_ids_on_display()


def test_pseudonymised_display_defaults_to_on_with_sign_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(privacy.PSEUDONYMISE_IDS_ENV, raising=False)
    assert privacy.pseudonymise_ids_on_display(sign_in=True) is True
    assert privacy.pseudonymise_ids_on_display(sign_in=False) is False
    # The setting, when given, wins over the default in both modes.
    monkeypatch.setenv(privacy.PSEUDONYMISE_IDS_ENV, "0")
    assert privacy.pseudonymise_ids_on_display(sign_in=True) is False
    monkeypatch.setenv(privacy.PSEUDONYMISE_IDS_ENV, "1")
    assert privacy.pseudonymise_ids_on_display(sign_in=False) is True
