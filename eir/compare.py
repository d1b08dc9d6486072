"""What-if: replay one attach log under two rule sets and report what changes (`eir replay --compare`).

Each rule set gets its own engine and state, and parses the rows itself (IMEI policy and numbering plan
are rule-set keys too). The report is meant to be pasted into a change request: counts, the subscribers
whose verdict changes, and the (reason before -> reason after) breakdown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from eir.engine import Engine
from eir.model import Verdict
from eir.query import RequestError, build_query
from eir.replay import BadRow, RawRow, Summary, TimeParser

Transition = tuple[str, str]


@dataclass(slots=True)
class Comparison:
    """The difference between two replays of the same log."""

    name_a: str
    name_b: str
    a: Summary = field(default_factory=Summary)
    b: Summary = field(default_factory=Summary)
    changed_attaches: int = 0
    transitions: Counter[Transition] = field(default_factory=Counter)
    transition_subscribers: dict[Transition, set[int]] = field(default_factory=dict)
    changed_subscribers: set[int] = field(default_factory=set)
    newly_denied: set[int] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable form."""
        return {
            "rules_a": self.name_a, "rules_b": self.name_b,
            "attaches": self.a.rows, "changed_attaches": self.changed_attaches,
            "changed_subscribers": len(self.changed_subscribers),
            "subscribers_denied_only_under_b": len(self.newly_denied),
            "a": self.a.to_dict(), "b": self.b.to_dict(),
            "transitions": [
                {"from": f, "to": t, "attaches": n, "subscribers": len(self.transition_subscribers[(f, t)])}
                for (f, t), n in self.transitions.most_common()
            ],
        }

    def render(self) -> str:
        """A Markdown report for a change request."""
        a, b = self.a, self.b
        pa = f"{100 * self.changed_attaches / a.rows:.2f}%" if a.rows else "-"
        lines = [
            f"### Rule change: `{self.name_a}` -> `{self.name_b}`",
            "",
            f"Replayed {a.rows:,} attaches ({a.bad_rows:,} unreadable rows skipped).",
            f"- attaches whose decision changes: **{self.changed_attaches:,}** ({pa})",
            f"- distinct subscribers whose decision changes on at least one attach: "
            f"**{len(self.changed_subscribers):,}**",
            f"- subscribers denied at least once under `{self.name_b}` but never under `{self.name_a}`: "
            f"**{len(self.newly_denied):,}**",
            "",
            f"| verdict | {self.name_a} | {self.name_b} | change |",
            "|---|---:|---:|---:|",
        ]
        va, vb = a.by_verdict(), b.by_verdict()
        for v in ("ALLOW", "WARN", "DENY"):
            lines.append(f"| {v} | {va[v]:,} | {vb[v]:,} | {vb[v] - va[v]:+,} |")
        lines += ["", "| reason before | reason after | attaches | subscribers |", "|---|---|---:|---:|"]
        for (f, t), n in self.transitions.most_common():
            lines.append(f"| {f} | {t} | {n:,} | {len(self.transition_subscribers[(f, t)]):,} |")
        if not self.transitions:
            lines.append("| (none) | | 0 | 0 |")
        lines += ["", "| event | " + self.name_a + " | " + self.name_b + " |", "|---|---:|---:|"]
        for typ in sorted(set(a.events) | set(b.events)):
            lines.append(f"| {typ} | {a.events[typ]:,} | {b.events[typ]:,} |")
        return "\n".join(lines)


def compare(rows: Iterator[RawRow | BadRow], ea: Engine, eb: Engine, cmp: Comparison,
            on_bad: Callable[[BadRow], None], progress: Callable[[int], None] | None = None) -> Comparison:
    """Decide every row under both engines, in file order, and collect the differences."""
    import time

    started = time.perf_counter()
    ba, bb = ea.bundle, eb.bundle
    pta, ptb = TimeParser(), TimeParser()
    n = 0
    for row in rows:
        if isinstance(row, BadRow):
            on_bad(row)
            cmp.a.bad_rows += 1
            cmp.b.bad_rows += 1
            continue
        line, t, imei, msisdn, slot, imsi = row
        try:
            qa = build_query(ba.index, ba.rules, pta(t), imei, msisdn, slot, imsi)
            qb = build_query(bb.index, bb.rules, ptb(t), imei, msisdn, slot, imsi)
        except RequestError as e:
            on_bad(BadRow(line, str(e)))
            cmp.a.bad_rows += 1
            cmp.b.bad_rows += 1
            continue
        da, db = ea.check(qa), eb.check(qb)
        n += 1
        ra, rb = da.reason.value, db.reason.value
        cmp.a.by_reason[ra] += 1
        cmp.b.by_reason[rb] += 1
        sub = qa.msisdn
        for s, d in ((cmp.a, da), (cmp.b, db)):
            if d.verdict is not Verdict.ALLOW and sub:
                (s.warned if d.verdict is Verdict.WARN else s.denied).add(sub)
        if ra != rb or da.deadline != db.deadline:
            cmp.changed_attaches += 1
            key = (ra, rb)
            cmp.transitions[key] += 1
            if sub:
                cmp.transition_subscribers.setdefault(key, set()).add(sub)
                cmp.changed_subscribers.add(sub)
            else:
                cmp.transition_subscribers.setdefault(key, set())
        if progress is not None and n & 0xFFF == 0:
            progress(n)
    cmp.a.rows += n
    cmp.b.rows += n
    elapsed = time.perf_counter() - started
    cmp.a.seconds += elapsed
    cmp.b.seconds += elapsed
    cmp.newly_denied = cmp.b.denied - cmp.a.denied
    return cmp
