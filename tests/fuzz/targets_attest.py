"""Fuzz targets for attest/: the TDX quote parser, DCAP verification, event logs, RTMR replay.

Documented errors: `parse_quote` raises only `QuoteParseError`; `verify_quote` and
`verify_evidence` only `AttestError` subclasses; `parse_event_log` and `parse_ccel` only
`EventLogError`; `replay_rtmrs`/`verify_replay` only `ReplayError` or `EventLogError`.
"""

from __future__ import annotations

import json
import random
import time
from functools import cache
from typing import Any

from hypothesis import strategies as st

from attest import (
    AttestError,
    BindingLabel,
    EventLogEntry,
    EventLogError,
    QuoteParseError,
    ReplayError,
    compute_report_data,
    default_policy,
    event_log_to_json,
    load_collateral,
    make_quote_verifier,
    parse_ccel,
    parse_event_log,
    parse_quote,
    replay_rtmrs,
    verify_evidence,
    verify_quote,
    verify_replay,
)
from attest.providers import SimulatorAllowed, SimulatorProvider
from tests.fuzz.mutate import (
    attestation_dir,
    fast_mutants,
    mutants,
    random_edits,
    random_json,
    raw_or_mutant,
    rich_mutants,
    seeded,
)
from tests.fuzz.runner import Prepared, Target

QUOTE_FILES = (
    "dcap-qvl/tdx_quote",
    "dcap-qvl/tdx_quote_outdated",
    "go-tdx-guest/quote_v5_sample.dat",
    "go-tdx-guest/tdx_prod_quote_SPR_E4.dat",
    "trustee/tdx_quote_4.dat",
    "automata/quotev5.dat",
    "dcap-qvl/sgx_quote",
)
CCEL_FILES = ("dstack/ccel.bin", "go-tdx-guest/ccel/ccel_data.dat")
NOW_A = 1751328000  # set A's verification time (testdata README, section 1)
SET_A_END = 4936  # set A's quote ends here; the rest is padding


@cache
def real_quotes() -> tuple[bytes, ...]:
    base = attestation_dir()
    quotes = [(base / name).read_bytes() for name in QUOTE_FILES]
    report = json.loads((base / "dstack/quote-report.json").read_text())
    quotes.append(bytes.fromhex(report["quote"]))
    return tuple(quotes)


def _u16(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "little") if at + 2 <= len(data) else 0


def quote_field_offsets(quote: bytes) -> list[int]:
    """Where the header, body descriptor and every length or type field of `quote` sit."""
    hot = [0, 2, 4, 6, 8, 12, 28, 48, 50]
    v5 = _u16(quote, 0) == 5
    sig_len = 54 + int.from_bytes(quote[50:54], "little") if v5 else 48 + 584
    s = sig_len + 4
    auth = s + 128 + 6 + 384 + 64
    cert = auth + 2 + _u16(quote, auth)
    hot += [sig_len, s, s + 64, s + 128, s + 130, s + 134, s + 134 + 384, auth, cert, cert + 2]
    return hot


def _hot_quote_offsets() -> list[int]:
    return sorted({o for q in real_quotes() for o in quote_field_offsets(q)})


def _quote_parser() -> Prepared:
    return Prepared(
        strategy=raw_or_mutant(real_quotes(), _hot_quote_offsets()),
        rich=rich_mutants(real_quotes(), _hot_quote_offsets()),
        check=lambda data: _parsed_consistently(data),
        allowed=(QuoteParseError,),
    )


def _parsed_consistently(data: bytes) -> None:
    quote = parse_quote(data)
    if quote.signed_region != data[: quote.signed_length] or len(quote.raw) > len(data):
        raise AssertionError("parsed quote does not describe the bytes it came from")


def _quote_dcap() -> Prepared:
    base = attestation_dir()
    genuine = (base / "dcap-qvl/tdx_quote").read_bytes()[:SET_A_END]
    collateral = load_collateral(base / "dcap-qvl/tdx_quote_collateral.json")
    policy = default_policy()

    def check(data: bytes) -> None:
        verified = verify_quote(data, collateral, now=NOW_A, policy=policy)
        if verified.quote.signed_region != parse_quote(genuine).signed_region:
            raise AssertionError("a quote with a changed signed region verified")

    return Prepared(
        strategy=fast_mutants([genuine], quote_field_offsets(genuine), max_edits=2),
        check=check,
        allowed=(AttestError,),
    )


@cache
def real_event_log() -> list[Any]:
    report = json.loads((attestation_dir() / "dstack/quote-report.json").read_text())
    log = report["event_log"]
    return list(json.loads(log) if isinstance(log, str) else log)


JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, 2, 3, 4, -1, 0xFFFFFFFF, 0x100000000, 0x08000001]),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.binary(max_size=64).map(bytes.hex),
    st.binary(min_size=48, max_size=48).map(bytes.hex),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
ENTRY_FIELDS = ("imr", "event_type", "digest", "event", "event_payload", "version")


@st.composite
def event_log_texts(draw: st.DrawFn) -> bytes:
    """A real dstack event log with entries edited, dropped or added, as JSON text (bytes)."""
    entries: list[Any] = [dict(e) for e in real_event_log()]
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["set", "delete", "drop", "append", "replace"]))
        i = draw(st.integers(0, max(0, len(entries) - 1)))
        if action == "append" or not entries:
            entries.append(draw(st.dictionaries(st.sampled_from(ENTRY_FIELDS), JSON_VALUES)))
        elif action == "set" and isinstance(entries[i], dict):
            entries[i][draw(st.sampled_from(ENTRY_FIELDS))] = draw(JSON_VALUES)
        elif action == "delete" and isinstance(entries[i], dict):
            entries[i].pop(draw(st.sampled_from(ENTRY_FIELDS)), None)
        elif action == "drop":
            del entries[i]
        elif action == "replace":
            entries[i] = draw(JSON_VALUES)
    text = json.dumps(entries).encode()
    if draw(st.integers(0, 9)) == 0:  # now and then, damage the text itself
        text = draw(mutants([text], max_edits=2))
    return text


def _edited_log(rng: random.Random) -> bytes:
    """The fast path of `event_log_texts`: the same edits, drawn from `rng`."""
    entries: list[Any] = [dict(e) for e in real_event_log()]
    for _ in range(rng.randint(0, 4)):
        action = rng.choice(("set", "delete", "drop", "append", "replace"))
        i = rng.randrange(len(entries)) if entries else 0
        if action == "append" or not entries:
            entries.append({f: random_json(rng) for f in ENTRY_FIELDS if rng.random() < 0.8})
        elif action == "set" and isinstance(entries[i], dict):
            entries[i][rng.choice(ENTRY_FIELDS)] = random_json(rng)
        elif action == "delete" and isinstance(entries[i], dict):
            entries[i].pop(rng.choice(ENTRY_FIELDS), None)
        elif action == "drop":
            del entries[i]
        elif action == "replace":
            entries[i] = random_json(rng)
    text = json.dumps(entries).encode()
    return random_edits(rng, text, max_edits=2) if rng.random() < 0.1 else text


def _event_log_then_replay(data: bytes) -> None:
    entries = parse_event_log(data)
    replayed = replay_rtmrs(entries)
    if sum(replayed.counts) != len(entries):
        raise AssertionError("replay lost events")


def _event_log() -> Prepared:
    raw = st.one_of(st.binary(max_size=2048), JSON_VALUES.map(lambda v: json.dumps(v).encode()))
    fast_raw = seeded(lambda rng: rng.randbytes(rng.randint(0, 512)))
    return Prepared(
        strategy=st.one_of(seeded(_edited_log), fast_raw),
        rich=st.one_of(event_log_texts(), raw),
        check=_event_log_then_replay,
        allowed=(EventLogError, ReplayError),
    )


def _trimmed_ccel(data: bytes) -> bytes:
    """The log without its 0xFF padding (plus a few bytes of it, so the end marker stays)."""
    return data[: len(data.rstrip(b"\xff")) + 8]


def _ccel() -> Prepared:
    base = attestation_dir()
    seeds = [_trimmed_ccel((base / name).read_bytes()) for name in CCEL_FILES]
    hot = [0, 4, 8, 28, 32, 48, 56, 57, 60, 61, 64, 68, 70]
    return Prepared(
        strategy=raw_or_mutant(seeds, hot, max_raw=1024),
        rich=rich_mutants(seeds, hot, max_raw=1024),
        check=lambda data: _replayed(parse_ccel(data)),
        allowed=(EventLogError,),
    )


def _replayed(entries: tuple[EventLogEntry, ...]) -> None:
    replay_rtmrs(entries)


@st.composite
def entry_lists(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Raw entry fields (any ints, any text, digests of any length) and four RTMR values."""
    entry = st.fixed_dictionaries(
        {
            "imr": st.integers(-2, 5),
            "event_type": st.sampled_from([0x08000001, 1, 0x80000001]) | st.integers(-1, 2**33),
            "digest": st.sampled_from([b"", bytes(48)]) | st.binary(max_size=64),
            "event": st.text(max_size=30),
            "event_payload": st.binary(max_size=64),
            "version": st.integers(-1, 3),
        }
    )
    rtmrs = draw(st.lists(st.binary(min_size=0, max_size=50), min_size=3, max_size=5))
    return draw(st.lists(entry, max_size=12)), rtmrs


def _random_entries(rng: random.Random) -> tuple[list[dict[str, Any]], list[bytes]]:
    def entry() -> dict[str, Any]:
        runtime = rng.random() < 0.5
        return {
            "imr": rng.choice((0, 1, 2, 3, 3, 3, -1, 4)),
            "event_type": 0x08000001 if runtime else rng.choice((1, 0x80000001, -1, 2**32)),
            "digest": rng.choice((b"", bytes(48), rng.randbytes(rng.randint(0, 64)))),
            "event": str(random_json(rng, 0)) if rng.random() < 0.5 else "app-id",
            "event_payload": rng.randbytes(rng.randint(0, 64)),
            "version": rng.choice((1, 2, 1, 2, 0, 3)),
        }

    entries = [entry() for _ in range(rng.randint(0, 12))]
    rtmrs = [rng.randbytes(rng.choice((48, 48, 0, 47))) for _ in range(rng.choice((4, 4, 3, 5)))]
    return entries, rtmrs


def _replay_check(case: tuple[list[dict[str, Any]], list[bytes]]) -> None:
    fields, rtmrs = case
    entries = [EventLogEntry(**f) for f in fields]
    verify_replay(entries, rtmrs)


def _replay() -> Prepared:
    return Prepared(
        strategy=seeded(_random_entries),
        rich=entry_lists(),
        check=_replay_check,
        allowed=(EventLogError, ReplayError),
        describe=repr,
    )


def _evidence() -> Prepared:
    """Simulator evidence bound to a key, with its event log, vm_config and binding fuzzed."""
    provider = SimulatorProvider()
    provider.extend_rtmr(3, "app-id", b"\x4b" * 20)
    provider.extend_rtmr(3, "compose-hash", b"\x01" * 32)
    provider.extend_rtmr(3, "instance-id", b"\x02" * 20)
    provider.extend_rtmr(3, "system-ready", b"")
    key = b"\x02" * 48
    quote = provider.get_quote(compute_report_data(BindingLabel.KDF_V1, key))
    log = event_log_to_json(provider.event_log()).encode()
    verify = make_quote_verifier(now=int(time.time()), policy=SimulatorAllowed())
    case = st.tuples(
        st.one_of(st.just(quote), fast_mutants([quote], quote_field_offsets(quote), max_edits=1)),
        st.one_of(st.just(log), fast_mutants([log], max_edits=2), seeded(_edited_log)),
        st.one_of(st.none(), st.text(max_size=40), JSON_VALUES.map(json.dumps)),
        st.sampled_from([key, b"", b"\x03" * 48]),
    )

    def check(c: tuple[bytes, bytes, str | None, bytes]) -> None:
        q, event_log, vm_config, bound = c
        verify_evidence(
            q,
            event_log,
            verify_quote=verify,
            binding=(BindingLabel.KDF_V1, bound),
            vm_config=vm_config,
        )

    return Prepared(
        strategy=case,
        check=check,
        allowed=(AttestError,),
        describe=lambda c: "|".join(
            [c[0].hex(), c[1].hex(), json.dumps(c[2]).encode().hex(), c[3].hex()]
        ),
    )


TARGETS = (
    Target("quote", "attest.parse_quote: mutated real TDX/SGX quotes and raw bytes", _quote_parser),
    Target(
        "quote-dcap", "attest.verify_quote: mutated set-A quote with its collateral", _quote_dcap
    ),
    Target(
        "eventlog", "attest.parse_event_log + replay_rtmrs: edited real dstack logs", _event_log
    ),
    Target("ccel", "attest.parse_ccel + replay: mutated real CCEL logs and raw bytes", _ccel),
    Target("replay", "attest.verify_replay: arbitrary entries against arbitrary RTMRs", _replay),
    Target(
        "evidence", "attest.verify_evidence: simulator quote, log, vm_config, binding", _evidence
    ),
)
