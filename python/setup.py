"""Builds the `quorum` package, generating its gRPC stubs at build time.

`build_py` runs grpcio-tools' protoc on the repository's
`proto/proto/quorum/v1/quorum.proto` (the one description of the wire
protocol, shared with the Rust crates) and writes `quorum/v1/quorum_pb2.py`,
its `.pyi` type stubs and `quorum_pb2_grpc.py` into the build directory, so
generated code is never committed nor edited. The package depends on grpcio
and protobuf at least at the versions that generated it (older runtimes
refuse newer generated code).
"""

import importlib.metadata
import pathlib

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent
# In the repository the protocol is beside this folder; `proto/` here lets
# a copied source tree build too.
PROTO_ROOTS = [HERE.parent / "proto" / "proto", HERE / "proto"]
PROTO_FILE = pathlib.Path("quorum") / "v1" / "quorum.proto"


def proto_root() -> pathlib.Path:
    for root in PROTO_ROOTS:
        if (root / PROTO_FILE).is_file():
            return root
    searched = ", ".join(str(root / PROTO_FILE) for root in PROTO_ROOTS)
    raise RuntimeError(f"quorum.proto not found (looked for {searched})")


class BuildWithStubs(build_py):
    """`build_py`, then the stubs generated into the build directory."""

    def run(self) -> None:
        super().run()
        import grpc_tools
        from grpc_tools import protoc

        root = proto_root()
        out = pathlib.Path(self.build_lib)
        well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
        arguments = [
            "grpc_tools.protoc",
            f"-I{root}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            str(root / PROTO_FILE),
        ]
        if protoc.main(arguments) != 0:
            raise RuntimeError(f"protoc failed on {root / PROTO_FILE}")
        (out / "quorum" / "v1" / "__init__.py").write_text(
            '"""The quorum.v1 protocol: stubs generated from quorum.proto at build time."""\n'
        )


def version(package: str) -> str:
    return importlib.metadata.version(package)


setup(
    cmdclass={"build_py": BuildWithStubs},
    install_requires=[
        f"grpcio>={version('grpcio-tools')}",
        f"protobuf>={version('protobuf')}",
        "tqdm>=4.60",
    ],
)
