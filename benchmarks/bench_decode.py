"""Decode benchmark: every Opportunity decoder side by side, in one process, interleaved rounds.

For each payload (see ``payloads.py``) every decoder decodes the same bytes for a fixed batch, in
an order that rotates every round; the result per decoder is the median time per object over the
rounds, and its speed relative to *the ceiling*: a msgspec Struct declaring every key of that
payload in advance (its custom keys typed ``Any``), which is the fastest anything that keeps every
field can be. Before timing, every decoder's output is checked: those that claim to keep custom
fields must return each of them exactly.

    python benchmarks/bench_decode.py            # full run, writes benchmarks/results/decode.json
    python benchmarks/bench_decode.py --quick    # CI smoke run: a few seconds
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from payloads import (
    CUSTOM_PREFIX,
    PAYLOADS,
    custom_of,
    encoded,
    load_average,
    machine_info,
    write_report,
)

from close_async import Opportunity, decode_opportunity
from close_async._resources.opportunities.codec import OpportunityDecoder

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "decode.json"
CEILING = "ceiling"
CLOSE_ASYNC = "close-async"
CLOSE_ASYNC_CUSTOM = "close-async + .custom"
CLOSE_ASYNC_FRESH = "close-async, fresh"
ORG_CEILING = "ceiling, org keys"
ORG_CEILING_UNTRACKED = "ceiling, org keys, gc=False"
ORG_PAYLOAD = "full_custom20"  # the organization's custom keys are those of the full payload


@dataclass
class Decoder:
    name: str
    decode: Callable[[bytes], Any]
    keeps_custom: bool  # does the result hold every custom field?
    note: str


# --- the competitors -----------------------------------------------------------------------------


def ceiling_type(payload: dict[str, Any], **options: Any) -> type[Opportunity]:
    """``Opportunity`` plus every custom key of ``payload`` declared (typed ``Any``) in advance."""
    keys = [key for key in payload if key.startswith(CUSTOM_PREFIX)]
    attrs = [f"cf_{i}" for i in range(len(keys))]
    return msgspec.defstruct(
        "CeilingOpportunity",
        [(attr, Any, msgspec.UNSET) for attr in attrs],
        bases=(Opportunity,),
        rename=dict(zip(attrs, keys, strict=True)),
        kw_only=True,
        **options,
    )


def pydantic_model() -> type[Any] | None:
    """Opportunity mirrored in pydantic v2, keeping unknown (custom) keys: ``extra="allow"``."""
    try:
        from pydantic import BaseModel, ConfigDict
    except ImportError:
        return None

    class Attachment(BaseModel):
        url: str | None = None
        filename: str | None = None
        content_type: str | None = None
        size: int | None = None
        thumbnail_url: str | None = None

    class CommentSummary(BaseModel):
        comment_count: int = 0
        thread_id: str | None = None

    class IntegrationLink(BaseModel):
        name: str | None = None
        url: str | None = None

    class ContactEmail(BaseModel):
        email: str | None = None
        type: str | None = None
        is_unsubscribed: bool | None = None

    class ContactPhone(BaseModel):
        phone: str | None = None
        phone_formatted: str | None = None
        type: str | None = None
        country: str | None = None
        outbound_sms_blocked: bool | None = None
        tz_ids: list[str] = []

    class ActionItem(BaseModel):
        action: str | None = None
        justification: str | None = None

    class StallStatus(BaseModel):
        communication_issue: str | None = None
        next_action: ActionItem | None = None

    class SuggestedAction(BaseModel):
        action: str | None = None
        justification: str | None = None
        details: dict[str, Any] | None = None

    class PydanticOpportunity(BaseModel):
        model_config = ConfigDict(extra="allow")

        id: str = ""
        organization_id: str | None = None
        lead_id: str | None = None
        lead_name: str | None = None
        status_id: str | None = None
        status_label: str | None = None
        status_display_name: str | None = None
        status_type: str | None = None
        pipeline_id: str | None = None
        pipeline_name: str | None = None
        value: int | None = None
        value_period: str | None = None
        value_currency: str | None = None
        value_formatted: str | None = None
        expected_value: int | None = None
        annualized_value: int | None = None
        annualized_expected_value: int | None = None
        confidence: int | None = None
        note: str | None = None
        contact_id: str | None = None
        contact_name: str | None = None
        user_id: str | None = None
        user_name: str | None = None
        created_by: str | None = None
        created_by_name: str | None = None
        updated_by: str | None = None
        updated_by_name: str | None = None
        date_created: dt.datetime | None = None
        date_updated: dt.datetime | None = None
        date_won: dt.date | None = None
        date_lost: dt.datetime | None = None
        is_stalled: bool | None = None
        stall_status: StallStatus | None = None
        suggested_action: SuggestedAction | None = None
        comment_summary: CommentSummary | None = None
        lead_primary_email: ContactEmail | None = None
        lead_primary_phone: list[ContactPhone] | None = None
        integration_links: list[IntegrationLink] = []
        attachments: list[Attachment] = []

    return PydanticOpportunity


def decoders_for(
    payload: dict[str, Any], org_payload: dict[str, Any], pydantic_cls: type[Any] | None
) -> list[Decoder]:
    ceiling = msgspec.json.Decoder(ceiling_type(payload)).decode
    org_ceiling = msgspec.json.Decoder(ceiling_type(org_payload)).decode
    # close-async's fast type is not tracked by the cycle collector (msgspec's gc=False): this
    # ceiling has that too, to show how much of close-async's speed comes from it.
    untracked = msgspec.json.Decoder(ceiling_type(org_payload, gc=False)).decode
    naive = msgspec.json.Decoder(Opportunity).decode
    to_dict = msgspec.json.Decoder().decode
    fresh = OpportunityDecoder()  # has seen this payload only: an org with no other custom keys
    fresh.decode(msgspec.json.encode(payload))

    def twice(raw: bytes) -> tuple[Opportunity, dict[str, Any]]:
        fields = to_dict(raw)
        custom = {k[7:]: v for k, v in fields.items() if k.startswith(CUSTOM_PREFIX)}
        return naive(raw), custom

    def close_async_custom(raw: bytes) -> dict[str, Any]:
        return decode_opportunity(raw).custom

    found = [
        Decoder("json.loads", json.loads, True, "stdlib, to dict"),
        Decoder("msgspec -> dict", to_dict, True, "msgspec.json.Decoder(), untyped"),
        Decoder("naive Struct", naive, False, "msgspec.json.Decoder(Opportunity): drops custom"),
        Decoder("msgspec twice", twice, True, "naive Struct + dict decode for the custom keys"),
        Decoder(CEILING, ceiling, True, "Struct declaring this payload's custom keys"),
        Decoder(ORG_CEILING, org_ceiling, True, "Struct declaring all 20 of the org's custom keys"),
        Decoder(ORG_CEILING_UNTRACKED, untracked, True, "the same, gc=False (as close-async)"),
        Decoder(CLOSE_ASYNC, decode_opportunity, True, "decode_opportunity(raw), 20 keys learned"),
        Decoder(CLOSE_ASYNC_CUSTOM, close_async_custom, True, "decode_opportunity(raw).custom"),
        Decoder(CLOSE_ASYNC_FRESH, fresh.decode, True, "a decoder that saw this payload only"),
    ]
    try:
        import orjson
    except ImportError:
        pass
    else:
        found.insert(1, Decoder("orjson.loads", orjson.loads, True, "to dict"))
    if pydantic_cls is not None:
        found.insert(
            found.index(next(d for d in found if d.name == ORG_CEILING_UNTRACKED)) + 1,
            Decoder(
                "pydantic v2",
                pydantic_cls.model_validate_json,
                True,
                'extra="allow", model_validate_json',
            ),
        )
    return found


# --- correctness, before any timing ---------------------------------------------------------------


def custom_kept(name: str, result: Any) -> dict[str, Any] | None:
    """The custom fields (prefixed keys) a decoder's result holds, or None if it has none."""
    if isinstance(result, dict):
        if name == CLOSE_ASYNC_CUSTOM:
            return {CUSTOM_PREFIX + k: v for k, v in result.items()}
        return {k: v for k, v in result.items() if k.startswith(CUSTOM_PREFIX)}
    if isinstance(result, tuple):  # msgspec twice
        return {CUSTOM_PREFIX + k: v for k, v in result[1].items()}
    if isinstance(result, msgspec.Struct):
        built = msgspec.to_builtins(result)
        return {k: v for k, v in built.items() if k.startswith(CUSTOM_PREFIX)}
    extra = getattr(result, "model_extra", None)  # pydantic
    return dict(extra) if extra is not None else None


def verify(decoders: list[Decoder], payload: dict[str, Any], raw: bytes) -> None:
    """Every decoder that claims to keep custom fields returns each of them, exactly."""
    expected = {k: v for k, v in payload.items() if k.startswith(CUSTOM_PREFIX)}
    by_name = {d.name: d.decode(raw) for d in decoders}
    for d in decoders:
        kept = custom_kept(d.name, by_name[d.name])
        if d.keeps_custom:
            assert kept == expected, f"{d.name} lost or changed custom fields: {kept}"
        elif expected:
            assert not kept, f"{d.name} is said to drop custom fields but kept {kept}"
        if isinstance(by_name[d.name], dict) and d.name != CLOSE_ASYNC_CUSTOM:
            assert by_name[d.name] == payload, f"{d.name} changed the payload"
    ceiling, opp = by_name[CEILING], by_name[CLOSE_ASYNC]
    assert isinstance(opp, Opportunity)
    assert opp.custom == custom_of(payload), "close-async .custom differs from the payload"
    # Every declared field too, not only the custom ones: same builtins as the ceiling.
    assert msgspec.to_builtins(opp) == msgspec.to_builtins(ceiling), "close-async != ceiling"
    assert by_name[CLOSE_ASYNC_CUSTOM] == custom_of(payload)
    assert by_name[CLOSE_ASYNC_FRESH].custom == custom_of(payload)
    assert msgspec.to_builtins(by_name[CLOSE_ASYNC_FRESH]) == msgspec.to_builtins(ceiling)


# --- timing ---------------------------------------------------------------------------------------


CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}
clock = CLOCKS["cpu"]


def time_batch(decode: Callable[[bytes], Any], raw: bytes, batch: int) -> float:
    """Seconds per object over ``batch`` decodes of ``raw`` (results dropped at once)."""
    loop = itertools.repeat(None, batch)
    start = clock()
    for _ in loop:
        decode(raw)
    return (clock() - start) / batch


def calibrate(decode: Callable[[bytes], Any], raw: bytes, target: float) -> int:
    """A batch size that makes ``decode`` run about ``target`` seconds."""
    per_object = min(time_batch(decode, raw, 200) for _ in range(3))
    return max(50, round(target / per_object))


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def bench_payload(
    name: str, decoders: list[Decoder], raw: bytes, rounds: int, target: float
) -> dict[str, Any]:
    ceiling = next(d for d in decoders if d.name == CEILING)
    batch = calibrate(ceiling.decode, raw, target)
    times: dict[str, list[float]] = {d.name: [] for d in decoders}
    gc_was_enabled = gc.isenabled()
    try:
        for r in range(rounds):
            k = r % len(decoders)
            gc.collect()
            gc.disable()  # like timeit: a collection lands in whichever batch is unlucky
            for d in decoders[k:] + decoders[:k]:
                times[d.name].append(time_batch(d.decode, raw, batch))
            gc.enable()
    finally:
        if gc_was_enabled:
            gc.enable()
    ceiling_times = times[CEILING]
    org_times = times.get(ORG_CEILING, ceiling_times)
    untracked_times = times.get(ORG_CEILING_UNTRACKED, org_times)
    results = {}
    for d in decoders:
        own = times[d.name]
        median = statistics.median(own)
        # Paired: the ratio within each round (same conditions), then the median over rounds.
        paired = [c / t for c, t in zip(ceiling_times, own, strict=True)]
        org_paired = [o / t for o, t in zip(org_times, own, strict=True)]
        results[d.name] = {
            "keeps_custom": d.keeps_custom,
            "note": d.note,
            "median_us": round(median * 1e6, 4),
            "objects_per_s": round(1 / median),
            "ratio_to_ceiling": round(statistics.median(paired), 4),
            "ratio_p25": round(quantile(paired, 0.25), 4) if len(paired) > 1 else None,
            "ratio_p75": round(quantile(paired, 0.75), 4) if len(paired) > 1 else None,
            "ratio_of_medians": round(statistics.median(ceiling_times) / median, 4),
            # The issue's own ceiling: every key of the payload *and the organization's* custom
            # keys declared in advance (what a hand-written model for that org would declare).
            "ratio_to_org_ceiling": round(statistics.median(org_paired), 4),
            "org_ratio_p25": round(quantile(org_paired, 0.25), 4) if len(own) > 1 else None,
            "org_ratio_p75": round(quantile(org_paired, 0.75), 4) if len(own) > 1 else None,
            "ratio_to_untracked_org_ceiling": round(
                statistics.median(u / t for u, t in zip(untracked_times, own, strict=True)), 4
            ),
            "rounds_us": [round(t * 1e6, 4) for t in own],
        }
    return {
        "description": PAYLOADS[name][0],
        "bytes": len(raw),
        "custom_fields": sum(1 for k in PAYLOADS[name][1] if k.startswith(CUSTOM_PREFIX)),
        "batch": batch,
        "rounds": rounds,
        "decoders": results,
    }


def print_table(name: str, result: dict[str, Any]) -> None:
    print(
        f"\n{result['description']}  ({result['bytes']} bytes, {result['custom_fields']} custom"
        f" fields; {result['rounds']} rounds x {result['batch']} objects)"
    )
    head = (
        "decoder",
        "keeps custom",
        "us/object",
        "objects/s",
        "x ceiling",
        "p25-p75",
        "x org ceiling",
        "p25-p75",
    )
    rows = [
        (
            decoder,
            "yes" if r["keeps_custom"] else "NO",
            f"{r['median_us']:.2f}",
            f"{r['objects_per_s']:,}",
            f"{r['ratio_to_ceiling']:.2f}",
            f"{r['ratio_p25']:.2f}-{r['ratio_p75']:.2f}" if r["ratio_p25"] is not None else "-",
            f"{r['ratio_to_org_ceiling']:.2f}",
            f"{r['org_ratio_p25']:.2f}-{r['org_ratio_p75']:.2f}"
            if r["org_ratio_p25"] is not None
            else "-",
        )
        for decoder, r in result["decoders"].items()
    ]
    widths = [max(len(c) for c in col) for col in zip(head, *rows, strict=True)]
    for row in (head, *rows):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=31, help="interleaved rounds (default 31)")
    parser.add_argument(
        "--batch-ms",
        type=float,
        default=10.0,
        help="each batch runs about this long for the ceiling (default 10 ms)",
    )
    parser.add_argument(
        "--clock",
        choices=CLOCKS,
        default="cpu",
        help="cpu: this thread's CPU time (default; time spent descheduled on a busy machine is"
        " not counted); wall: perf_counter",
    )
    parser.add_argument("--payloads", default=",".join(PAYLOADS), help="comma-separated")
    parser.add_argument("--quick", action="store_true", help="CI smoke run: 3 rounds, 1 ms batches")
    parser.add_argument("--json", metavar="PATH", default=str(DEFAULT_JSON), help="JSON output")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.batch_ms = 3, 1.0
    names = [n.strip() for n in args.payloads.split(",") if n.strip()]
    if unknown := set(names) - set(PAYLOADS):
        parser.error(f"unknown payloads {sorted(unknown)}; known: {list(PAYLOADS)}")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")

    global clock
    clock = CLOCKS[args.clock]
    pydantic_cls = pydantic_model()
    machine = machine_info()
    # The decoder learns custom keys: show it every payload first, as a long-running client would
    # have, so each payload is measured in the same steady state (its type declares all 20 keys).
    for name in PAYLOADS:
        decode_opportunity(encoded(name))
    report: dict[str, Any] = {
        "benchmark": "decode",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "params": {
            "rounds": args.rounds,
            "batch_ms": args.batch_ms,
            "clock": args.clock,
            "quick": args.quick,
        },
        "payloads": {},
    }
    for name in names:
        payload, raw = PAYLOADS[name][1], encoded(name)
        decoders = decoders_for(payload, PAYLOADS[ORG_PAYLOAD][1], pydantic_cls)
        verify(decoders, payload, raw)
        missing = sorted({"orjson.loads", "pydantic v2"} - {d.name for d in decoders})
        if missing and "skipped" not in report:
            print(f"skipped (not installed): {', '.join(missing)}")
            report["skipped"] = missing
        report["payloads"][name] = result = bench_payload(
            name, decoders, raw, args.rounds, args.batch_ms / 1000
        )
        print_table(name, result)
    report["machine"]["load_average_end"] = load_average()
    print()
    print(
        "x ceiling: speed relative to the ceiling (higher is faster), the median over rounds of"
        " the ratio within each round; p25-p75: its spread. x org ceiling: the same against"
        " the issue's ceiling (the payload's keys and the organization's 20 custom keys)."
    )
    print(
        "close-async target: >= 0.90 x the issue's ceiling (a Struct declaring every key of the"
        " payload and the organization's custom keys) on every payload (plain decode)."
    )
    for name, result in report["payloads"].items():
        ours = result["decoders"][CLOSE_ASYNC]
        org, plain = ours["ratio_to_org_ceiling"], ours["ratio_to_ceiling"]
        untracked = ours["ratio_to_untracked_org_ceiling"]
        custom = result["decoders"][CLOSE_ASYNC_CUSTOM]["ratio_to_org_ceiling"]
        verdict = "met" if org >= 0.9 else "NOT met"
        print(
            f"  {name:14} close-async {org:.2f} x org-keys ceiling ({verdict}); {untracked:.2f} x"
            f" it with gc=False; {plain:.2f} x payload-keys ceiling; reading .custom too:"
            f" {custom:.2f}"
        )
    print(f"wrote {write_report(args.json, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
