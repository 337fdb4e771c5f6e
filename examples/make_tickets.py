"""Build ``examples/data/tickets.jsonl`` and its labels from the public datasets (run
once, output committed).

Every ticket comes from records the bundled models and knowledge bases were *not*
built from, so the demo measures them on unseen input:

* IBM Twitter customer-care conversations, ``dev.json`` (Apache-2.0): the
  conversations held out of the ``support-cases`` knowledge base
  (``sha256(sessionID) % 5 == 0``, see ``sitemesh.knowledge``). The first customer
  turn is the ticket (real handles and sometimes e-mail addresses: input for the
  privacy path); the label is the article the agent finally sent.
* BANKING77 (CC BY 4.0, PolyAI): rows held out of triage training
  (:func:`sitemesh.triage.held_out`), tenant ``bank``; the label is the intent.
* Endava IT help-desk tickets (MIT upstream / CC0 re-release): rows held out of
  triage training, tenant ``it-helpdesk``; the label is the category.

Writes ``tickets.jsonl`` (the ``SupportTicket`` records, IBM first) and
``tickets.labels.jsonl`` (``source`` -> label; read by ``sitemesh demo`` to print
triage accuracy and the precision of ``resolved``).

Usage::

    python examples/make_tickets.py /path/to/shared/data
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from sitemesh.schemas import SupportTicket
from sitemesh.triage import held_out, ticket_text

BANKING_COUNT = 150
ENDAVA_COUNT = 40


def _ibm_held_out(session: str) -> bool:
    return int(hashlib.sha256(session.encode()).hexdigest(), 16) % 5 == 0


def main(shared: Path) -> None:
    out = Path(__file__).parent / "data"
    tickets: list[SupportTicket] = []
    labels: list[dict[str, Any]] = []
    convs = json.loads((shared / "support-ibm-twitter-cdp" / "dev.json").read_text("utf-8"))
    for conv in convs:
        header = conv["dialogHeader"]
        if not _ibm_held_out(header["sessionID"]):
            continue
        first = conv["dialogContent"][0]
        source = f"ibm-twitter-cdp/dev.json#{header['sessionID']}"
        tickets.append(
            SupportTicket(
                tenant=header["company"],
                channel="twitter",
                customer=first["client"],
                body=first["message"],
                product=header["company"],
                source=source,
            )
        )
        url = conv["agentURL"]
        labels.append({"source": source, "article": url["doc_id"], "url": url["url"]})
    with (shared / "tickets-banking77" / "train.csv").open(encoding="utf-8") as fh:
        n = 0
        for i, row in enumerate(csv.DictReader(fh)):
            if n >= BANKING_COUNT or not held_out(row["text"]):
                continue
            n += 1
            source = f"banking77/train.csv#{i}"
            tickets.append(
                SupportTicket(tenant="bank", channel="app", body=row["text"], source=source)
            )
            labels.append({"source": source, "label_set": "banking77", "label": row["category"]})
    with (shared / "tickets-endava-it" / "all_tickets_dev.csv").open(encoding="utf-8") as fh:
        n = 0
        for i, row in enumerate(csv.DictReader(fh)):
            text = ticket_text(row["title"], row["body"])
            if n >= ENDAVA_COUNT or not row["body"].strip() or not held_out(text):
                continue
            n += 1
            source = f"endava-it/all_tickets_dev.csv#{i}"
            tickets.append(
                SupportTicket(
                    tenant="it-helpdesk",
                    channel="helpdesk",
                    title=row["title"],
                    body=row["body"],
                    source=source,
                )
            )
            labels.append(
                {"source": source, "label_set": "endava", "label": f"category_{row['category']}",
                 "urgency": int(row["urgency"])}
            )
    enc = msgspec.json.Encoder()
    (out / "tickets.jsonl").write_bytes(b"".join(enc.encode(t) + b"\n" for t in tickets))
    (out / "tickets.labels.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in labels), "utf-8"
    )
    print(f"wrote {len(tickets)} tickets and {len(labels)} labels to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data"))
