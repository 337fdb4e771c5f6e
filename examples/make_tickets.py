"""Build ``examples/data/tickets.jsonl`` from the public datasets (run once, output committed).

Sources (copied subsets; licences and provenance in ``examples/data/SOURCE.md``):

* IBM Twitter customer-care conversations, ``dev.json`` (Apache-2.0): the first
  customer turn of each conversation becomes a ``SupportTicket`` (it carries real
  handles and sometimes e-mail addresses: good input for the privacy path).
* Endava IT help-desk tickets, ``all_tickets_dev.csv`` (MIT upstream / CC0 re-release).

Usage::

    python examples/make_tickets.py /path/to/shared/data
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import msgspec

from sitemesh.schemas import SupportTicket

IBM_COUNT = 320
ENDAVA_COUNT = 40


def main(shared: Path) -> None:
    out = Path(__file__).parent / "data" / "tickets.jsonl"
    tickets: list[SupportTicket] = []
    convs = json.loads((shared / "support-ibm-twitter-cdp" / "dev.json").read_text("utf-8"))
    for conv in convs[:IBM_COUNT]:
        first = conv["dialogContent"][0]
        header = conv["dialogHeader"]
        tickets.append(
            SupportTicket(
                tenant=header["company"],
                channel="twitter",
                customer=first["client"],
                body=first["message"],
                product=header["company"],
                submitted_at=None,
                source=f"ibm-twitter-cdp/dev.json#{header['sessionID']}",
            )
        )
    with (shared / "tickets-endava-it" / "all_tickets_dev.csv").open(encoding="utf-8") as fh:
        for i, row in enumerate(csv.DictReader(fh)):
            if len(tickets) >= IBM_COUNT + ENDAVA_COUNT:
                break
            if not row["body"].strip():
                continue
            tickets.append(
                SupportTicket(
                    tenant="endava",
                    channel="helpdesk",
                    title=row["title"],
                    body=row["body"],
                    urgency=int(row["urgency"]),
                    source=f"endava-it/all_tickets_dev.csv#{i}",
                )
            )
    enc = msgspec.json.Encoder()
    out.write_bytes(b"".join(enc.encode(t) + b"\n" for t in tickets))
    print(f"wrote {len(tickets)} tickets to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data"))
