"""Sealed key shares, one file per (generation, epoch) under `<data_dir>/shares/`.

File `g<generation>-e<epoch>.sealed`, sealed (`node.sealing`) under the label
`tkms-share:v1:<generation>:<epoch>`, so a file renamed to another slot does not unseal.
Content (fixed layout): b"tkms-share:v1" ‖ u64 generation ‖ u64 epoch ‖ u16 member ‖ scalar (32).

Saving and erasing are durable when they return (`node.sealing` fsyncs the directory after
the rename, the unlink and a mkdir). Erasing a share deletes its sealed file. Python cannot
wipe memory (see pyca/cryptography's limitations note): the share object itself is gone only
once every reference to it is dropped, which is why `EpochManager` forgets shares it erases.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from mpc.errors import EncodingError, ProtocolMisuse
from mpc.group import SCALAR_SIZE, Scalar
from mpc.sharing import Share
from mpc.types import MemberIndex
from node.errors import StorageError
from node.sealing import Sealer, make_directory, read_sealed, remove_durably, write_sealed

_LABEL: Final = b"tkms-share:v1"
_SIZE: Final = len(_LABEL) + 8 + 8 + 2 + SCALAR_SIZE
_NAME: Final = re.compile(r"g(\d{1,19})-e(\d{1,19})\.sealed")


def _label(generation: int, epoch: int) -> str:
    return f"tkms-share:v1:{generation}:{epoch}"


class ShareStore:
    """The node's sealed key shares."""

    def __init__(self, directory: Path, sealer: Sealer) -> None:
        """`directory` is `<data_dir>/shares`; it is created on the first save."""
        self.directory = directory
        self._sealer = sealer

    def _path(self, generation: int, epoch: int) -> Path:
        if generation < 1 or epoch < 1:
            raise StorageError(f"share slot g{generation}-e{epoch}: both must be >= 1")
        return self.directory / f"g{generation}-e{epoch}.sealed"

    def save(self, generation: int, epoch: int, share: Share) -> None:
        """Seal and store a share; durable (file and directory entry) once this returns."""
        make_directory(self.directory)
        data = (
            _LABEL
            + generation.to_bytes(8, "big")
            + epoch.to_bytes(8, "big")
            + share.member.to_bytes(2, "big")
            + share.value.to_bytes()
        )
        write_sealed(self._path(generation, epoch), self._sealer, _label(generation, epoch), data)

    def load(self, generation: int, epoch: int) -> Share:
        path = self._path(generation, epoch)
        data = read_sealed(path, self._sealer, _label(generation, epoch))
        try:
            if len(data) != _SIZE or not data.startswith(_LABEL):
                raise EncodingError("share file", f"expected {_SIZE} bytes starting {_LABEL!r}")
            pos = len(_LABEL)
            slot = (
                int.from_bytes(data[pos : pos + 8], "big"),
                int.from_bytes(data[pos + 8 : pos + 16], "big"),
            )
            if slot != (generation, epoch):
                raise EncodingError("share file", f"holds g{slot[0]}-e{slot[1]}")
            member = MemberIndex(int.from_bytes(data[pos + 16 : pos + 18], "big"))
            return Share(member, Scalar.from_bytes(data[pos + 18 :], "share"))
        except (EncodingError, ProtocolMisuse) as exc:
            raise StorageError(f"{path}: corrupt share file: {exc}") from None

    def list(self) -> list[tuple[int, int]]:
        """Every stored (generation, epoch), sorted."""
        if not self.directory.is_dir():
            return []
        found = []
        for entry in self.directory.iterdir():
            match = _NAME.fullmatch(entry.name)
            if match:
                found.append((int(match[1]), int(match[2])))
        return sorted(found)

    def erase(self, generation: int, epoch: int) -> bool:
        """Delete the sealed share, durably; True if there was one."""
        return remove_durably(self._path(generation, epoch))
