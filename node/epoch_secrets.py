"""The secrets of one in-flight epoch, sealed so a restart can resume it, erased when it ends.

Per epoch, in `<data_dir>/epoch-secrets/` (mode 0700), each sealed (`node.sealing`) under a
label that names the epoch, so a file moved to another slot does not unseal:

    epoch-<n>.seed.sealed   32 bytes: the seed our dealing polynomial is derived from
    epoch-<n>.key.sealed    our per-epoch key (`mpc.epochkey.EpochKeyPair`, private encoding)
    epoch-<n>.kem.sealed    the ML-KEM encapsulations of our deal: per recipient, u16 index,
                            shared secret (32), ciphertext (1088); written before the deal
                            is published, so a restart rebuilds the very same bytes

`erase(epoch)` deletes all three when the epoch's outcome is recorded. After that nothing on
this node opens the epoch's sealed shares on chain, which stay public forever. What erasure
does not do (docs/security.md): a copy of these files taken by the host while the epoch ran
still opens them for anyone who later obtains the sealing key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric import mlkem

from mpc.epochkey import EpochKeyPair
from mpc.errors import EncodingError
from mpc.group import Rng
from mpc.sharebox import KEM_CIPHERTEXT_SIZE, KEM_SECRET_SIZE, Encapsulate, mlkem_encapsulate
from node.errors import StorageError
from node.sealing import Sealer, make_directory, read_sealed, remove_durably, write_sealed

SEED_SIZE: Final = 32
DIR_NAME: Final = "epoch-secrets"
_RECORD: Final = 2 + KEM_SECRET_SIZE + KEM_CIPHERTEXT_SIZE
_KINDS: Final = ("seed", "key", "kem")

#: recipient index -> (shared secret, ciphertext) of the encapsulations of one deal.
Encapsulations = dict[int, tuple[bytes, bytes]]


class RecordingKem:
    """The `Encapsulate` our dealing machine uses: replays recorded encapsulations, records
    new ones. The node seals `made` before it publishes the deal (see `EpochSecrets`)."""

    def __init__(self, recorded: Mapping[int, tuple[bytes, bytes]]) -> None:
        self.made: Encapsulations = dict(recorded)

    def __call__(self, recipient: int, key: mlkem.MLKEM768PublicKey) -> tuple[bytes, bytes]:
        if recipient not in self.made:
            self.made[recipient] = mlkem_encapsulate(recipient, key)
        return self.made[recipient]


class EpochSecrets:
    """Sealed per-epoch secrets of one node; see the module docstring."""

    def __init__(self, directory: Path, sealer: Sealer) -> None:
        self._dir, self._sealer = directory, sealer

    def _path(self, epoch: int, kind: str) -> Path:
        return self._dir / f"epoch-{epoch}.{kind}.sealed"

    def _label(self, epoch: int, kind: str) -> str:
        return f"tkms-epoch-{kind}:v1:{epoch}"

    def _read(self, epoch: int, kind: str) -> bytes | None:
        path = self._path(epoch, kind)
        return read_sealed(path, self._sealer, self._label(epoch, kind)) if path.exists() else None

    def _write(self, epoch: int, kind: str, data: bytes) -> None:
        make_directory(self._dir)
        write_sealed(self._path(epoch, kind), self._sealer, self._label(epoch, kind), data)

    def dealing_seed(self, epoch: int, *, create: bool) -> bytes | None:
        """The seed of our dealing polynomial in `epoch`; made (and sealed) if asked."""
        seed = self._read(epoch, "seed")
        if seed is not None:
            if len(seed) != SEED_SIZE:
                raise StorageError(f"{self._path(epoch, 'seed')}: seed is {len(seed)} bytes")
            return seed
        if not create:
            return None
        seed = os.urandom(SEED_SIZE)
        self._write(epoch, "seed", seed)
        return seed

    def epoch_key(
        self,
        epoch: int,
        *,
        session_id: bytes,
        address: bytes,
        member: bool,
        create: bool,
        rng: Rng = os.urandom,
    ) -> EpochKeyPair | None:
        """Our key for `epoch`: the sealed one, or a fresh one (sealed first) if asked."""
        raw = self._read(epoch, "key")
        if raw is not None:
            try:
                return EpochKeyPair.from_private_bytes(raw)
            except EncodingError as exc:
                raise StorageError(f"{self._path(epoch, 'key')}: {exc}") from None
        if not create:
            return None
        key = EpochKeyPair.generate(session_id, address, member=member, rng=rng)
        self._write(epoch, "key", key.private_bytes())
        return key

    def encapsulations(self, epoch: int) -> Encapsulations:
        """The recorded ML-KEM encapsulations of our deal in `epoch` (empty if none)."""
        raw = self._read(epoch, "kem") or b""
        if len(raw) % _RECORD:
            raise StorageError(f"{self._path(epoch, 'kem')}: {len(raw)} bytes is not a record list")
        out: Encapsulations = {}
        for at in range(0, len(raw), _RECORD):
            index = int.from_bytes(raw[at : at + 2], "big")
            secret = raw[at + 2 : at + 2 + KEM_SECRET_SIZE]
            out[index] = (secret, raw[at + 2 + KEM_SECRET_SIZE : at + _RECORD])
        return out

    def save_encapsulations(self, epoch: int, made: Encapsulations) -> None:
        blob = b"".join(
            index.to_bytes(2, "big") + secret + ciphertext
            for index, (secret, ciphertext) in sorted(made.items())
        )
        self._write(epoch, "kem", blob)

    def erase(self, epoch: int) -> None:
        """Delete every secret of `epoch` (idempotent)."""
        for kind in _KINDS:
            remove_durably(self._path(epoch, kind))

    def epochs(self) -> list[int]:
        """Epochs that still have a secret here (for tests and the erasure check)."""
        if not self._dir.exists():
            return []
        found = {int(p.name.split(".")[0].removeprefix("epoch-")) for p in self._dir.iterdir()}
        return sorted(found)


def recording_kem(secrets: EpochSecrets, epoch: int) -> RecordingKem:
    """A `RecordingKem` primed with what we recorded for `epoch` before a restart."""
    return RecordingKem(secrets.encapsulations(epoch))


__all__ = ["EpochSecrets", "Encapsulate", "RecordingKem", "recording_kem"]
