"""Input and output files from Python, as ``quorum submit`` sends them and
``quorum results --files`` writes them, against a real coordinator and real
workers (conftest.py); the motifs example, a C app (examples/motifs)."""

from __future__ import annotations

import hashlib
import pathlib

import pytest

import quorum

from conftest import REPO, Server, parse_jsonl

#: A guard against hangs, not a synchronisation.
TIMEOUT = 180
MOTIFS = REPO / "examples" / "motifs"
MOTIF = "GATTACA"
CHUNKS = [f"chunk-{i}" for i in range(4)]


def motif_units(names=CHUNKS):
    """The motifs example's work units: each chunk's reads as its own /input/reads.txt."""
    return [{"name": name, "files": {"reads.txt": MOTIFS / "reads" / f"{name}.txt"}} for name in names]


def occurrences(text: str, motif: str) -> list:
    return [i for i in range(len(text) - len(motif) + 1) if text.startswith(motif, i)]


def expected(chunk: str) -> tuple:
    """The app's stdout and /output/hits.txt, computed here (see motif.c)."""
    reads = (MOTIFS / "reads" / f"{chunk}.txt").read_text()
    reference = (MOTIFS / "reference.txt").read_text()
    hits, n_reads, n_hits = [], 0, 0
    for number, read in enumerate(reads.split("\n")[: -1 if reads.endswith("\n") else None], start=1):
        found = occurrences(read, MOTIF)
        if found:
            n_reads += 1
            n_hits += len(found)
            hits.append(f"{number}: " + " ".join(str(offset) for offset in found) + "\n")
    stdout = f"reads {n_reads} hits {n_hits} reference {len(occurrences(reference, MOTIF))}\n"
    return stdout.encode(), "".join(hits).encode()


def submit_motifs(client, name, **extra):
    return client.submit(
        name,
        MOTIFS / "motif.wasm",
        extra.pop("inputs", motif_units()),
        args=[MOTIF],
        files={"reference.txt": MOTIFS / "reference.txt"},
        policy={"min_quorum": 1},
        limits={"output_files": "64KiB"},
        **extra,
    )


def test_motifs_with_shared_and_own_files(server: Server, client, workers, tmp_path):
    project = submit_motifs(client, "py-motifs")
    assert project.n_work_units == 4
    assert project.n_files_uploaded == 5, "the reference and four chunks of reads"
    assert project.bytes_uploaded == sum(
        path.stat().st_size for path in [MOTIFS / "reference.txt", *(MOTIFS / "reads").glob("chunk-*.txt")]
    )
    status = project.wait(timeout=TIMEOUT, progress=False)
    assert (status.work_units_done, status.work_units_failed) == (4, 0), project.errors()

    results = list(project.results())
    lines = parse_jsonl(server.cli("results", "py-motifs"))
    assert [result.work_unit for result in results] == [line["work_unit"] for line in lines] == CHUNKS
    for result, line in zip(results, lines):
        stdout, hits = expected(result.work_unit)
        assert result.output == stdout and result.text == line["output"]
        assert result.argv == tuple(line["argv"]) and result.argv[1:] == (MOTIF,)
        assert [file.name for file in result.output_files] == ["hits.txt"]
        hits_file = result.output_files[0]
        assert hits_file.data == hits and hits_file.size == len(hits)
        assert hits_file.digest == hashlib.sha256(hits).hexdigest()
        assert result.to_record()["output_files"] == line["output_files"], "as `quorum results` lists them"

    # download_files writes what `quorum results --files DIR` writes.
    assert project.download_files(tmp_path / "py") == 4
    server.cli("results", "py-motifs", "--files", str(tmp_path / "cli"))
    for chunk in CHUNKS:
        written = (tmp_path / "py" / chunk / "hits.txt").read_bytes()
        assert written == (tmp_path / "cli" / chunk / "hits.txt").read_bytes() == expected(chunk)[1]
    assert sorted(p.name for p in (tmp_path / "py").iterdir()) == CHUNKS

    frame = project.to_pandas()
    assert list(frame["output_files"].map(lambda files: [f["name"] for f in files])) == [["hits.txt"]] * 4


def test_each_content_is_uploaded_once(client, workers, tmp_path):
    # The coordinator holds the motifs files already (or gets them now): a
    # copy of one chunk under two paths and two work units is one upload.
    copy = tmp_path / "copy.txt"
    copy.write_bytes((MOTIFS / "reads" / "chunk-0.txt").read_bytes() + b"GATTACA\n")
    inputs = [
        {"name": "a", "files": {"reads.txt": copy}},
        {"name": "b", "files": {"reads.txt": str(copy)}},
        {"name": "c", "files": {"reads.txt": MOTIFS / "reads" / "chunk-1.txt"}},
    ]
    first = submit_motifs(client, "py-motifs-once", inputs=inputs)
    assert first.n_files_uploaded <= 3 and first.n_files_uploaded >= 1, "copy.txt at least: new content"
    again = submit_motifs(client, "py-motifs-twice", inputs=inputs)
    assert (again.n_files_uploaded, again.bytes_uploaded) == (0, 0), "every content is stored already"
    status = again.wait(timeout=TIMEOUT, progress=False)
    assert status.work_units_done == 3, again.errors()
    outputs = {result.work_unit: result.output for result in again.results()}
    assert outputs["a"] == outputs["b"] != outputs["c"]


@pytest.mark.parametrize(
    "files, inputs, message",
    [
        ({"../reference.txt": MOTIFS / "reference.txt"}, motif_units(), "it holds a path separator"),
        ({"a\\b": MOTIFS / "reference.txt"}, motif_units(), "it holds a path separator"),
        ({"": MOTIFS / "reference.txt"}, motif_units(), "it is empty"),
        ({"..": MOTIFS / "reference.txt"}, motif_units(), "it is a reference to a directory"),
        ({"a\nb": MOTIFS / "reference.txt"}, motif_units(), "it holds a control character"),
        ({"x" * 256: MOTIFS / "reference.txt"}, motif_units(), "it is longer than 255 bytes"),
        ({"reference.txt": MOTIFS / "nope.txt"}, motif_units(), "cannot read input file 'reference.txt'"),
        ({"reference.txt": MOTIFS / "reads"}, motif_units(), "not a regular file"),
        (
            {"reference.txt": MOTIFS / "reference.txt"},
            [*motif_units(), {"name": "gone", "files": {"reads.txt": MOTIFS / "reads" / "chunk-9.txt"}}],
            "work unit 'gone': cannot read input file 'reads.txt'",
        ),
        (
            {"reference.txt": MOTIFS / "reference.txt"},
            [{"name": "bad", "files": {"re/ads.txt": MOTIFS / "reads" / "chunk-0.txt"}}],
            "work unit 'bad': file name 're/ads.txt' is not allowed",
        ),
        (
            {"reference.txt": MOTIFS / "reference.txt"},
            [{"name": "twice", "files": {"reference.txt": MOTIFS / "reads" / "chunk-0.txt"}}],
            "file 'reference.txt' is both a shared file of the project and a file of the work unit",
        ),
    ],
)
def test_bad_files_raise_before_anything_is_created(client, files, inputs, message):
    name = "py-bad-files"
    with pytest.raises(quorum.InputFileError, match=_escaped(message)):
        client.submit(
            name, MOTIFS / "motif.wasm", inputs, args=[MOTIF], files=files, policy={"min_quorum": 1},
            limits={"output_files": "64KiB"},
        )  # fmt: skip
    with pytest.raises(quorum.NotFound):
        client.project(name).status()


def test_input_files_limit(client):
    with pytest.raises(quorum.InputFileError, match="over the project's input_files limit of 60000 bytes"):
        client.submit(
            "py-too-big", MOTIFS / "motif.wasm", motif_units(), files={"reference.txt": MOTIFS / "reference.txt"},
            limits={"input_files": 60_000, "output_files": "64KiB"},
        )  # fmt: skip
    with pytest.raises(quorum.NotFound):
        client.project("py-too-big").status()
    assert isinstance(quorum.InputFileError("x"), quorum.ConfigError)


def test_submit_manifest_with_files(client, workers):
    """The motifs example's own project.toml: [files], a JSON Lines source with files, args, limits."""
    project = client.submit_manifest(MOTIFS / "project.toml")
    status = project.wait(timeout=TIMEOUT, progress=False)
    assert status.work_units_done == 4, project.errors()
    for result in project.results():
        stdout, hits = expected(result.work_unit)
        assert result.output == stdout and result.output_files[0].data == hits


def _escaped(text: str) -> str:
    import re

    return re.escape(text)


#: Prints how many directories the sandbox preopens (fd 3, 4, ...).
COUNT_PREOPENS = """
(module
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $fd i32)
    (local.set $fd (i32.const 3))
    (block $done (loop $next
      (br_if $done (i32.ne (call $prestat (local.get $fd) (i32.const 64)) (i32.const 0)))
      (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
      (br $next)))
    (i32.store8 (i32.const 100) (i32.add (i32.const 48) (i32.sub (local.get $fd) (i32.const 3))))
    (i32.store8 (i32.const 101) (i32.const 10))
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 2))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""


def test_checkpointing_gives_a_checkpoint_directory(client, workers):
    """checkpointing=True: the app gets /checkpoint (and nothing else here: no files, no output files)."""
    import wasmtime

    app = bytes(wasmtime.wat2wasm(COUNT_PREOPENS))
    with_it = client.map(app, [""], name="py-checkpointing", checkpointing=True, timeout=TIMEOUT, min_quorum=1)
    without = client.map(app, [""], name="py-no-checkpointing", timeout=TIMEOUT, min_quorum=1)
    assert (with_it, without) == ([b"1\n"], [b"0\n"])
