"""Scenario 6: the disk fills up under a node in the middle of a DKG; a data dir that cannot
be used at start.

The node's data directory is a small tmpfs (we run as root; the test skips if `mount` is not
allowed). Once the node has posted its key and dealt, a filler file takes the rest of
the space: the node's next durable write fails with a StorageError naming the file and the
cause, and the node stops (fail-stop: it must not publish what it cannot journal). The other
four nodes activate the epoch without it. With space back, the restarted node finds an intact
journal, settles the epoch from it and holds a valid share: nothing was lost or corrupted.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts import Anvil, EpochKind, EpochStatus
from node.errors import StorageError
from node.journal import Published
from tests.node.epoch_harness import assert_key_shared, chain, held_shares, run_scenario
from tests.reliability.harness import FaultNetwork, leaves

__all__ = ["chain"]


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "2m") -> Iterator[Path]:
    """Mount a tmpfs of `size` on `path`, keeping what `path` held."""
    saved = path.with_name(path.name + ".saved")
    shutil.move(path, saved)
    path.mkdir()
    out = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        path.rmdir()
        shutil.move(saved, path)
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
    try:
        shutil.copytree(saved, path, dirs_exist_ok=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Take every free byte of the file system under `directory`."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
    return filler


def test_disk_full_mid_dkg_stops_the_node_cleanly_and_it_resumes_after(
    chain: Anvil, tmp_path: Path
) -> None:
    net = FaultNetwork(chain, tmp_path)
    nodes = net.create_nodes("n1", "n2", "n3", "n4", "n5")
    n5 = nodes[4]

    async def go() -> None:
        async with net.running():
            for node in nodes:
                net.start(node)
            info = await net.propose_slow(EpochKind.DKG, nodes, 3)
            journal = n5.journal
            assert journal is not None
            await net.wait_until(
                lambda: journal.published(info.epoch, Published.DEAL) is not None, "n5 to deal"
            )
            filler = fill(n5.data_dir)
            failure = await net.wait_crashed(n5, timeout=60)
            errors = leaves(failure)  # several tasks may hit the full disk at once
            for error in errors:
                assert isinstance(error, StorageError), repr(error)
                assert str(n5.data_dir) in str(error)
                assert "No space left on device" in str(error) or "disk is full" in str(error)
            await net.stop(n5)
            settled = await net.settle(info.epoch, allow_crashed={n5.name})
            assert settled.status is EpochStatus.ACTIVE  # four nodes are enough
            assert n5.stored() == []
            assert not list(n5.data_dir.rglob(".*.tmp")), "a half-written file was left"
            filler.unlink()
            db = sqlite3.connect(n5.data_dir / "journal.sqlite3")
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            db.close()
            net.start(n5)
            await net.wait_until(lambda: n5.stored() == [(1, info.epoch)], "n5 to store its share")
            committee, shares = held_shares(nodes)
            assert len(shares) == 5
            assert_key_shared(committee, shares)
            assert n5.name not in net.crashed

    with small_tmpfs(tmp_path / "n5"):
        run_scenario(go(), timeout=300)


def test_a_data_dir_that_cannot_be_used_is_a_clear_error_at_start(tmp_path: Path) -> None:
    data = tmp_path / "node"
    init = [sys.executable, "-m", "tkms", "node", "init", "--dir", str(data), "--tee", "simulator"]
    subprocess.run(init, capture_output=True, check=True)
    (data / "journal.sqlite3").mkdir()  # a directory where the journal file belongs
    config = tmp_path / "node.toml"
    config.write_text(
        f'data_dir = "{data}"\ntee = "simulator"\nsealing = "file"\n\n'
        '[chain]\nrpc_url = "http://127.0.0.1:9"\n'
        'governance = "0x0000000000000000000000000000000000000001"\n\n'
        '[listen]\npublic = "127.0.0.1:0"\npeer = "127.0.0.1:0"\nmetrics = "127.0.0.1:0"\n'
    )
    before = sorted(p.name for p in data.iterdir())
    run = [sys.executable, "-m", "tkms", "node", "run", "--config", str(config)]
    out = subprocess.run(run, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode != 0
    assert "journal.sqlite3" in out.stderr and "cannot open the journal" in out.stderr
    assert "Traceback" not in out.stderr
    assert sorted(p.name for p in data.iterdir()) == before


def test_a_storage_failure_while_running_exits_with_eio_and_a_logged_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from structlog.testing import capture_logs

    from node import daemon
    from node.config import load_config

    config = tmp_path / "node.toml"
    config.write_text(
        f'data_dir = "{tmp_path}"\ntee = "simulator"\nsealing = "file"\n\n'
        '[chain]\nrpc_url = "http://127.0.0.1:9"\n'
        'governance = "0x0000000000000000000000000000000000000001"\n'
    )

    async def fails(self: daemon.Node, started: object = None) -> None:
        # How a failed journal write reaches run_node_blocking: wrapped by two task groups.
        full = StorageError(f"{tmp_path}/journal.sqlite3: journal write failed: disk is full")
        raise ExceptionGroup("node", [ExceptionGroup("epochs", [full])])

    monkeypatch.setattr(daemon.Node, "run", fails)
    # The daemon's logging setup would bind this test's captured stderr for the whole worker
    # process (and every later test's log calls would write to a closed stream).
    monkeypatch.setattr(daemon, "configure_logging", lambda *a, **k: None)
    with capture_logs() as logs:
        assert daemon.run_node_blocking(load_config(config)) == daemon.EXIT_STORAGE
    (event,) = [e for e in logs if e["event"] == "node_failed"]
    assert "journal write failed: disk is full" in event["reason"]


def test_a_file_cut_short_by_a_size_limit_is_an_error_and_leaves_the_old_content(
    tmp_path: Path,
) -> None:
    """RLIMIT_FSIZE in a child: the kernel takes part of the write, then refuses the rest.

    A single unchecked os.write would have installed the truncated file (a torn share).
    """
    target = tmp_path / "share.sealed"
    target.write_bytes(b"old")
    code = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from node.sealing import write_atomic\n"
        "from node.errors import StorageError\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
        "try:\n"
        f"    write_atomic(Path({str(target)!r}), b'x' * 5000)\n"
        "except StorageError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 3, out.stderr
    assert f"cannot write {target}: File too large" in out.stdout
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["share.sealed"]
