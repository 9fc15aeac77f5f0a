"""Where the client's settings come from, exactly as the ``quorum`` CLI
finds them: the coordinator's URL (argument, ``QUORUM_SERVER``, then
``http://127.0.0.1:7737``), the API token (argument, token file argument,
``QUORUM_TOKEN``, then a file named by ``QUORUM_TOKEN_FILE``; a token file
readable by group or others is refused) and the CA certificate of an
https:// coordinator (argument, then ``QUORUM_CA_CERT``).
"""

from __future__ import annotations

import os
import re
import stat
from typing import Optional, Tuple, Union

from .errors import ConfigError

PathLike = Union[str, "os.PathLike[str]"]

DEFAULT_SERVER = "http://127.0.0.1:7737"
SERVER_ENV = "QUORUM_SERVER"
TOKEN_ENV = "QUORUM_TOKEN"
TOKEN_FILE_ENV = "QUORUM_TOKEN_FILE"
CA_CERT_ENV = "QUORUM_CA_CERT"

_EXPECTED = "expected http://HOST:PORT, https://HOST:PORT or HOST:PORT"


def coordinator_url(text: str) -> str:
    """``HOST:PORT`` becomes ``http://HOST:PORT``; http:// and https:// URLs
    stay; anything else is refused saying what is expected."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "http", text
    url = f"{scheme}://{rest}"
    if scheme not in ("http", "https"):
        raise ConfigError(f"coordinator URL {text!r} has the scheme {scheme!r}: {_EXPECTED}")
    authority = rest.split("/")[0]
    if not authority or any(c.isspace() or not c.isprintable() for c in url):
        raise ConfigError(f"invalid coordinator URL {text!r}: {_EXPECTED}")
    return url


def grpc_target(url: str) -> Tuple[str, bool]:
    """The ``host:port`` gRPC dials for ``url``, and whether it is TLS."""
    scheme, _, rest = url.partition("://")
    authority = rest.split("/")[0]
    tls = scheme == "https"
    if not re.search(r":\d+$", authority):
        authority += ":443" if tls else ":80"
    return authority, tls


def resolve_server(server: Optional[str]) -> str:
    return coordinator_url(server if server is not None else os.environ.get(SERVER_ENV, DEFAULT_SERVER))


def _parse_secret(text: str) -> str:
    if not text.strip():
        raise ConfigError("the token is empty")
    return text.strip()


def read_private(path: PathLike, what: str) -> str:
    """Reads a file holding a secret, refusing one group or others may read."""
    shown = os.fspath(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError as error:
        raise ConfigError(f"cannot read {what} {shown}: {error.strerror}") from error
    if mode & 0o077:
        raise ConfigError(
            f"{what} {shown} is accessible by group or others (mode {mode:03o}); run `chmod 600 {shown}`"
        )
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {what} {shown}: {error}") from error


def read_token_file(path: PathLike) -> str:
    text = read_private(path, "token file")
    try:
        return _parse_secret(text)
    except ConfigError as error:
        raise ConfigError(f"token file {os.fspath(path)}: {error}") from None


def resolve_token(token: Optional[str], token_file: Optional[PathLike]) -> Optional[str]:
    """The token given, else the environment's; None when nothing gives one
    (calls then go without, and the coordinator refuses them)."""
    if token is not None:
        return _parse_secret(token)
    if token_file is not None:
        return read_token_file(token_file)
    if TOKEN_ENV in os.environ:
        try:
            return _parse_secret(os.environ[TOKEN_ENV])
        except ConfigError as error:
            raise ConfigError(f"{TOKEN_ENV}: {error}") from None
    if TOKEN_FILE_ENV in os.environ:
        try:
            return read_token_file(os.environ[TOKEN_FILE_ENV])
        except ConfigError as error:
            raise ConfigError(f"{TOKEN_FILE_ENV}: {error}") from None
    return None


def resolve_ca_cert(ca_cert: Optional[PathLike]) -> Optional[bytes]:
    path = ca_cert if ca_cert is not None else os.environ.get(CA_CERT_ENV)
    if path is None:
        return None
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise ConfigError(f"cannot read the CA certificate {os.fspath(path)}: {error.strerror}") from error
