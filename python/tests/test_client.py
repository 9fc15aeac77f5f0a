"""The Python client against a real coordinator and real workers (see
conftest.py). Waiting is done on events: ``Project.wait`` (the coordinator's
``WaitProject``) and ``Project.as_completed`` (its ``StreamCanonicalResults``
stream); timeouts only guard against hangs."""

from __future__ import annotations

import os
import subprocess
from typing import Iterator, Optional

import pytest

import quorum

from conftest import Server, binary, count_primes, parse_jsonl

#: A guard against hangs, not a synchronisation.
TIMEOUT = 180
QUORUM_2 = {"min_quorum": 2, "target_results": 2}


def ranges(n: int, width: int, interrupt_at: Optional[int] = None) -> Iterator[str]:
    """Inputs "START END\\n" of the primes app; a KeyboardInterrupt at item `interrupt_at`."""
    for i in range(n):
        if i == interrupt_at:
            raise KeyboardInterrupt
        yield f"{i * width} {(i + 1) * width}\n"


def expected(text: str) -> bytes:
    start, end = (int(part) for part in text.split())
    return f"{count_primes(start, end)}\n".encode()


def test_submit_from_a_generator_and_wait_with_progress(client, workers, primes_app, capsys):
    project = client.submit("generator", primes_app, ranges(30, 100), policy=QUORUM_2)
    assert (project.n_work_units, project.resumed) == (30, False)
    status = project.wait(timeout=TIMEOUT, progress=True)
    assert (status.work_units_total, status.work_units_done, status.work_units_failed) == (30, 30, 0)
    assert status.ended and status.state == "active"
    assert "30/30" in capsys.readouterr().err, "the tqdm bar ends full"
    results = list(project.results())
    assert [result.work_unit for result in results] == [str(i) for i in range(30)]
    inputs = list(ranges(30, 100))
    for result in results:
        assert result.output == expected(inputs[int(result.work_unit)])


def test_as_completed_yields_every_result_exactly_once(client, workers, primes_app):
    project = client.submit("completed", primes_app, ranges(40, 100), policy=QUORUM_2)
    seen = [result.work_unit for result in project.as_completed(timeout=TIMEOUT)]
    assert sorted(seen, key=int) == [str(i) for i in range(40)], "every work unit exactly once"
    assert project.status().work_units_done == 40
    # After the end, a new stream replays the whole order, again exactly once.
    assert sorted(result.work_unit for result in project.as_completed(timeout=TIMEOUT)) == sorted(seen)


def test_map_returns_outputs_in_input_order(client, workers, primes_app):
    # Descending ranges: input order differs from any order of completion.
    inputs = [f"{start} {start + 200}\n" for start in range(4000, 0, -200)]
    outputs = client.map(primes_app, inputs, timeout=TIMEOUT, **QUORUM_2)
    assert outputs == [expected(text) for text in inputs]


def test_to_pandas_matches_quorum_results_json(server: Server, client, workers, primes_app):
    project = client.submit("frame", primes_app, ranges(25, 300), policy={"min_quorum": 1})
    project.wait(timeout=TIMEOUT, progress=False)
    frame = project.to_pandas()
    lines = parse_jsonl(server.cli("results", "frame"))
    assert len(frame) == len(lines) == 25
    for row, line in zip(frame.to_dict("records"), lines):
        for key in ("work_unit_id", "work_unit", "result_id", "output", "output_digest", "fuel_used", "random_seed"):
            assert row[key] == line[key], key
        assert row["output_base64"] is None and "output_base64" not in line
        assert row["argv"] == line.get("argv", []) and row["env"] == line.get("env", {})


def test_an_interrupted_submission_is_completed_by_a_second_call(client, workers, primes_app):
    n, width = 250, 10
    with pytest.raises(KeyboardInterrupt):
        client.submit("interrupted", primes_app, ranges(n, width, interrupt_at=120), batch_size=50, policy=QUORUM_2)
    # CreateProject took the first batch and AddWorkUnits the second before the interrupt.
    assert client.project("interrupted").status().work_units_total == 100
    again = client.submit("interrupted", primes_app, ranges(n, width), batch_size=50, policy=QUORUM_2)
    assert (again.resumed, again.n_work_units_present, again.n_work_units) == (True, 100, 150)
    status = again.wait(timeout=TIMEOUT, progress=False)
    assert (status.work_units_total, status.work_units_done) == (n, n)
    results = list(again.results())
    assert sorted(result.work_unit for result in results) == sorted(str(i) for i in range(n))
    inputs = list(ranges(n, width))
    assert all(result.output == expected(inputs[int(result.work_unit)]) for result in results)
    # A third identical call finds nothing to add.
    third = client.submit("interrupted", primes_app, ranges(n, width), batch_size=50, policy=QUORUM_2)
    assert (third.n_work_units_present, third.n_work_units) == (n, 0)


def test_submit_manifest(server: Server, client, workers, tmp_path):
    manifest = tmp_path / "project.toml"
    repo_app = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "primes", "primes.wat")
    manifest.write_text(
        f'name = "manifest"\napp = "{os.path.abspath(repo_app)}"\n[policy]\nmin_quorum = 1\n'
        "[limits]\nmemory = \"64MiB\"\nwall_time = \"1m\"\n"
        "[work_units]\nrange = { start = 0, end = 1000, chunk = 250 }\n"
    )
    project = client.submit_manifest(manifest)
    status = project.wait(timeout=TIMEOUT, progress=False)
    assert status.work_units_done == 4
    names = [result.work_unit for result in project.results()]
    assert names == ["0-250", "250-500", "500-750", "750-1000"], "named as `quorum submit` names them"


def test_errors_and_project_failed(client, workers):
    trap = b"(module (func (export \"_start\") unreachable))"
    policy = {"min_quorum": 1, "max_error_results": 1, "max_total_results": 4}
    with pytest.raises(quorum.ProjectFailed) as failed:
        client.map(trap, ["a"], name="trapping", timeout=TIMEOUT, **policy)
    assert "1 of 1 work units of project 'trapping' failed" in str(failed.value)
    groups = client.project("trapping").errors()
    assert groups and groups[0].n_results >= 2 and "unreachable" in groups[0].message, groups
    assert failed.value.errors == groups


def test_cancel(client, primes_app):
    # Workers may have done some work units before the cancel: the others fail as cancelled.
    project = client.submit("cancelled", primes_app, ranges(50, 5000), policy=QUORUM_2)
    n_cancelled = project.cancel()
    status = project.status()
    assert (status.state, status.work_units_open) == ("cancelled", 0)
    assert n_cancelled == status.work_units_failed and status.work_units_done + n_cancelled == 50
    assert len(list(project.as_completed(timeout=TIMEOUT))) == status.work_units_done
    # Submitting it again names the problem as the CLI does.
    with pytest.raises(quorum.AlreadyExists, match="already exists and is cancelled"):
        client.submit("cancelled", primes_app, ranges(50, 5000))


def test_each_error_type(server: Server, client, primes_app, tmp_path, monkeypatch):
    with pytest.raises(quorum.NotFound) as not_found:
        client.project("nope").status()
    assert str(not_found.value) == 'project "nope" not found (NOT_FOUND)', "as the CLI prints it"
    assert not_found.value.code == "NOT_FOUND" and not_found.value.message == 'project "nope" not found'

    client.submit("taken", primes_app, [])
    other_app = b"(module (func (export \"_start\")))"
    with pytest.raises(quorum.AlreadyExists, match="project 'taken' already exists with another app"):
        client.submit("taken", other_app, ["x"])

    not_wasi = b"\0asm\x01\0\0\0"  # a module without `_start`
    with pytest.raises(quorum.InvalidArgument, match="_start"):
        client.submit("not-wasi", not_wasi, ["x"])
    with pytest.raises(quorum.InvalidArgument):
        client.submit("bad name!", primes_app, ["x"])

    for variable in ("QUORUM_TOKEN", "QUORUM_TOKEN_FILE"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(quorum.Unauthenticated):
        quorum.Client(server.url).project("taken").status()

    created = subprocess.run(
        [str(binary("quorum-server")), "token", "create", "--role", "submit", "--project", "mine", "--db", str(server.db)],
        capture_output=True, check=True, text=True,
    )  # fmt: skip
    limited = quorum.Client(server.url, token=created.stdout.strip().splitlines()[-1])
    with pytest.raises(quorum.PermissionDenied):
        limited.project("taken").status()

    with pytest.raises(quorum.Unavailable, match="cannot reach coordinator at http://127.0.0.1:1: "):
        quorum.Client("127.0.0.1:1", token="x").project("taken").status()

    token_file = tmp_path / "token"
    token_file.write_text(server.admin_token)
    token_file.chmod(0o644)
    with pytest.raises(quorum.ConfigError, match=r"accessible by group or others \(mode 644\); run `chmod 600"):
        quorum.Client(server.url, token_file=token_file)
    token_file.chmod(0o600)
    monkeypatch.setenv("QUORUM_SERVER", server.url)
    monkeypatch.setenv("QUORUM_TOKEN_FILE", str(token_file))
    assert quorum.Client().project("taken").status().work_units_total == 0, "the CLI's environment variables"
    with pytest.raises(quorum.ConfigError, match="has the scheme 'ftp'"):
        quorum.Client("ftp://example.org")


def test_tls_with_a_ca_file(tmp_path, monkeypatch):
    """An https:// coordinator whose certificate chains to the given CA, as `quorum --ca-cert`."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def pem(path, data):
        path.write_bytes(data)
        return str(path)

    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "quorum test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(1).not_valid_before(valid[0]).not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(valid[0]).not_valid_after(valid[1])
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    ca_file = pem(tmp_path / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))
    cert_file = pem(tmp_path / "server.pem", certificate.public_bytes(serialization.Encoding.PEM))
    key_file = pem(
        tmp_path / "server.key",
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    tls = Server(tmp_path, ["--tls-cert", cert_file, "--tls-key", key_file], scheme="https")
    try:
        client = quorum.Client(tls.url, token=tls.admin_token, ca_cert=ca_file)
        with pytest.raises(quorum.NotFound):
            client.project("nope").status()
        assert client.projects() == []
        # Without the CA, the certificate chains to no trusted root.
        monkeypatch.delenv("QUORUM_CA_CERT", raising=False)
        with pytest.raises(quorum.Unavailable, match=f"cannot reach coordinator at {tls.url}: "):
            quorum.Client(tls.url, token=tls.admin_token).project("nope").status()
        monkeypatch.setenv("QUORUM_CA_CERT", ca_file)
        assert quorum.Client(tls.url, token=tls.admin_token).projects() == [], "QUORUM_CA_CERT, as the CLI"
    finally:
        tls.stop()


def test_a_signed_app(server: Server, client, workers, primes_app, tmp_path):
    """signing_key= takes a `quorum keygen` key; the coordinator checks the signature, workers verify it."""
    key = tmp_path / "project.key"
    subprocess.run([str(binary("quorum")), "keygen", "--out", str(key)], check=True, capture_output=True)
    project = client.submit("signed", primes_app, ranges(3, 100), signing_key=key, policy={"min_quorum": 1})
    assert project.wait(timeout=TIMEOUT, progress=False).work_units_done == 3
    key.write_text("not a key\n")
    with pytest.raises(quorum.ConfigError, match="does not hold a key made by `quorum keygen`"):
        client.submit("signed-badly", primes_app, ["0 1\n"], signing_key=key)
