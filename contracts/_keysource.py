"""Where a command's signing key comes from: a key file, `TKMS_PRIVATE_KEY`, the command line,
or one of anvil's development accounts.

A key given as `--private-key` is readable by every local user while the command runs (`ps`,
`/proc/PID/cmdline` is world-readable), so the CLIs warn when it is used and offer a file
(refused when group or others may read or write it, as ssh refuses keys) and an environment
variable (readable only by the same user and root). Messages never quote a key.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from contracts.errors import InvalidInput

ENV_VAR = "TKMS_PRIVATE_KEY"
MAX_KEY_FILE = 4096  # a hex key is 66 bytes; anything much larger is the wrong file
COMMAND_LINE_WARNING = (
    "warning: --private-key puts the key on the command line, where other local users can "
    "read it (ps, /proc/PID/cmdline); use --private-key-file FILE (mode 0600) or "
    f"{ENV_VAR} instead"
)


@dataclass(frozen=True)
class KeyChoice:
    """The chosen signer: a hex key from `source`, or anvil's account `anvil_account`."""

    source: str
    key: str | None = None
    anvil_account: int | None = None

    @property
    def development(self) -> bool:
        return self.anvil_account is not None


def read_key_file(path: Path, argument: str = "--private-key-file") -> str:
    """The hex key in `path` (surrounding whitespace ignored); refused unless only its owner
    may read and write it. A pipe works too (`--private-key-file <(pass show owner-key)`)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidInput(argument, f"cannot open {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)  # of what was opened: a symlink is judged by its target
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISFIFO(info.st_mode)):
            raise InvalidInput(argument, f"{path} is not a file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise InvalidInput(
                argument,
                f"{path} has mode {mode:04o}: group or others may read or change the key; "
                f"run `chmod 600 {path}`",
            )
        data = b""
        while len(data) <= MAX_KEY_FILE:
            chunk = os.read(fd, MAX_KEY_FILE + 1 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE:
        raise InvalidInput(argument, f"{path} is larger than a key file ({MAX_KEY_FILE} bytes)")
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise InvalidInput(argument, f"{path} does not hold a hex key") from None


def choose_key(
    *,
    private_key: str | None,
    private_key_file: Path | None,
    anvil_account: int | None,
    environ: Mapping[str, str],
) -> KeyChoice:
    """The signer the options (at most one, argparse enforces it) or else `TKMS_PRIVATE_KEY`
    name; `InvalidInput` if there is none."""
    if private_key_file is not None:
        return KeyChoice("--private-key-file", key=read_key_file(private_key_file))
    if private_key is not None:
        return KeyChoice("--private-key", key=private_key)
    if anvil_account is not None:
        return KeyChoice("--anvil-account", anvil_account=anvil_account)
    from_env = environ.get(ENV_VAR, "").strip()
    if from_env:
        return KeyChoice(ENV_VAR, key=from_env)
    raise InvalidInput(
        "--private-key-file",
        f"no signing key: pass --private-key-file FILE, set {ENV_VAR}, "
        "or on a development chain --anvil-account N",
    )
