"""The client's own rules, without a coordinator: settings resolved as the
CLI resolves them, durations and sizes, submission batches."""

from __future__ import annotations

import pytest

import quorum
from quorum import _config, _settings
from quorum.client import _batches, _work_units


@pytest.mark.parametrize(
    "text, expected",
    [("127.0.0.1:7737", "http://127.0.0.1:7737"), ("https://q.example.org", "https://q.example.org"),
     ("http://a:1", "http://a:1"), ("[::1]:7737", "http://[::1]:7737")],
)  # fmt: skip
def test_coordinator_urls(text, expected):
    assert _config.coordinator_url(text) == expected


@pytest.mark.parametrize("bad", ["ftp://a:1", "http://", "a b:1", "grpc://a:1"])
def test_bad_coordinator_urls(bad):
    with pytest.raises(quorum.ConfigError, match="expected http://HOST:PORT"):
        _config.coordinator_url(bad)


def test_token_order(tmp_path, monkeypatch):
    for variable in ("QUORUM_TOKEN", "QUORUM_TOKEN_FILE"):
        monkeypatch.delenv(variable, raising=False)
    file = tmp_path / "token"
    file.write_text("from-file\n")
    file.chmod(0o600)
    assert _config.resolve_token(None, None) is None
    monkeypatch.setenv("QUORUM_TOKEN_FILE", str(file))
    assert _config.resolve_token(None, None) == "from-file"
    monkeypatch.setenv("QUORUM_TOKEN", " from-env ")
    assert _config.resolve_token(None, None) == "from-env"
    assert _config.resolve_token(None, file) == "from-file"
    assert _config.resolve_token("flag", file) == "flag"
    monkeypatch.setenv("QUORUM_TOKEN", "  ")
    with pytest.raises(quorum.ConfigError, match="QUORUM_TOKEN: the token is empty"):
        _config.resolve_token(None, None)
    file.chmod(0o640)
    with pytest.raises(quorum.ConfigError, match=r"accessible by group or others \(mode 640\)"):
        _config.resolve_token(None, file)


@pytest.mark.parametrize(
    "value, seconds", [(90, 90.0), ("90s", 90.0), ("10m", 600.0), ("1h 30m", 5400.0), ("2days", 172800.0)]
)
def test_durations(value, seconds):
    assert _settings.seconds(value, "deadline") == seconds


def test_sizes_and_bad_values():
    assert _settings.size("256MiB", "memory") == 256 << 20
    assert _settings.size(1000, "memory") == 1000
    with pytest.raises(quorum.ConfigError, match="invalid size"):
        _settings.size("lots", "memory")
    with pytest.raises(quorum.ConfigError, match="unknown policy field 'quorum'"):
        _settings.policy({"quorum": 2})


def test_policy_defaults_are_the_manifests():
    policy = _settings.policy({"min_quorum": 3})
    assert (policy.min_quorum, policy.target_results, policy.max_error_results, policy.max_total_results) == (3, 3, 3, 12)
    assert policy.deadline_secs == 3600


def test_batches_respect_count_and_size():
    sizes = [len(batch) for batch in _batches(_work_units(str(i) for i in range(25)), 10, 1000)]
    assert sizes == [10, 10, 5]
    # Beside a large app, the first batch holds what fits.
    sizes = [len(batch) for batch in _batches(_work_units(["x" * 600, "y" * 600, "z"]), 10, 1000)]
    assert sizes == [1, 2]
    names = [unit.name for batch in _batches(_work_units([("a", b"1"), "2"]), 10, 1000) for unit in batch]
    assert names == ["a", "1"]


def test_file_names_are_one_path_component():
    from quorum import _files

    for good in ["data.txt", "ref genome.fa", ".hidden", "é" * 127]:
        assert _files.check_name(good) == good
    for bad in ["", ".", "..", "a/b", "../etc", "a\\b", "a\nb", "a\x7fb", "é" * 128]:
        with pytest.raises(quorum.InputFileError):
            _files.check_name(bad)


def test_files_are_hashed_once_per_path(tmp_path):
    from quorum import _files

    path = tmp_path / "data.txt"
    path.write_bytes(b"abc")
    hasher = _files.Hasher()
    file = hasher.local_file("data.txt", path)
    assert (file.digest, file.size) == ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 3)
    path.write_bytes(b"changed")
    assert hasher.local_file("other", str(path)).digest == file.digest, "hashed once"
    with pytest.raises(quorum.InputFileError, match="cannot read input file 'gone'") as missing:
        hasher.local_file("gone", tmp_path / "gone")
    assert (missing.value.name, missing.value.path) == ("gone", str(tmp_path / "gone"))


def test_work_units_from_dicts(tmp_path):
    (tmp_path / "r.txt").write_bytes(b"ACGT")
    units = list(_work_units([{"name": "a", "input": "x", "files": {"r.txt": tmp_path / "r.txt"}, "args": ["-v"],
                               "env": {"K": "V"}}, {"files": {}}]))  # fmt: skip
    assert (units[0].name, units[0].input, list(units[0].args)) == ("a", b"x", ["-v"])
    assert [(f.name, f.size) for f in units[0].files] == [("r.txt", 4)]
    assert [(v.name, v.value) for v in units[0].env] == [("K", "V")]
    assert (units[1].name, units[1].input, len(units[1].files)) == ("1", b"", 0)
    with pytest.raises(quorum.ConfigError, match="unknown key 'file'"):
        list(_work_units([{"file": {}}]))


def test_file_limits():
    limits = _settings.limits({"input_files": "1GiB", "output_files": 65536})
    assert (limits.input_files_bytes, limits.output_files_bytes) == (1 << 30, 65536)
