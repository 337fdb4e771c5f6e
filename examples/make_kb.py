"""Build the bundled knowledge bases and the held-out bench data (run once, output committed).

Reads the public datasets once and writes:

* ``sitemesh/knowledge/data/support-cases/``: past cases from the IBM Twitter
  customer-care conversations (``dev.json``, Apache-2.0). A conversation is **held
  out** when ``int(sha256(sessionID), 16) % 5 == 0`` (102 of 525): it is not in the
  knowledge base and goes, with its label, to ``bench/data/ibm-heldout.jsonl`` for
  ``bench/resolve.py``. Every other conversation becomes a case: its text is the
  customer turns before the agent's URL turn, its answer the agent's
  ``url_utterance`` (HTML entities decoded), its URL the article the agent sent (the
  Wayback Machine prefix removed), its article id the IBM ``doc_id``, its tenant the
  company. Text and answer are pseudonymised (``sitemesh.knowledge.Pseudonymiser``: handles, e-mail
  addresses, phone numbers, other URLs and what Presidio detects become ``<TYPE>``);
  the builder then checks that no customer handle, e-mail address or phone number
  survived. Only the pseudonymised documents are written.
* ``sitemesh/knowledge/data/banking-faq/``: one FAQ document per banking77 intent (77),
  with an answer written for sitemesh (:data:`ANSWERS`: what a generic bank's app
  offers, no promise of work done, no phone numbers) and the URL
  ``<url base>/<intent>`` (``--url-base``, default
  ``sitemesh.knowledge.FAQ_URL_BASE``), indexed with the intent's example questions:
  the banking77 training rows that are **not** held out (held out:
  ``sitemesh.triage.held_out``, ``sha256(normalised text) % 5 == 0``, the triage
  training rule). Held-out rows go to ``bench/data/banking77-heldout.jsonl``.

Usage::

    python examples/make_kb.py [/path/to/shared/data] [--url-base URL]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import html
import json
import re
import shutil
from pathlib import Path
from typing import Any

from sitemesh.knowledge import (
    EMAIL_RE,
    FAQ_URL_BASE,
    HANDLE_RE,
    PHONE_RE,
    CaseRecord,
    Document,
    FaqRecord,
    KbIndex,
    KbSpec,
    Pseudonymiser,
    article_url,
    cases_to_docs,
    encode_docs,
    faq_to_docs,
    held_out,
    held_out_session,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "sitemesh" / "knowledge" / "data"
BENCH = ROOT / "bench" / "data"
IBM_REPO = "https://github.com/IBM/twitter-customer-care-document-prediction"
IBM_COMMIT = "453470eea55a1777f798053a6ac6302a9bf80f9a"
BANKING_REPO = "https://github.com/PolyAI-LDN/task-specific-datasets"
BANKING_COMMIT = "57ec275d8078af65b7731c2a98be812d844a6d6b"

ANSWERS: dict[str, str] = {
    "activate_my_card": (
        "To activate a new card, open the app, go to Cards and choose Activate, then enter the "
        "code printed on the letter that came with the card. If activation fails, check that "
        "the app is up to date and that you are entering the code for the card you hold."
    ),
    "age_limit": (
        "You need to be at least 18 to open an account in your own name. Younger customers may "
        "be able to use an account set up and supervised by a parent or guardian, where that is"
        " offered in your country."
    ),
    "apple_pay_or_google_pay": (
        "You can add your card to Apple Pay or Google Pay from the card's page in the app (Add "
        "to Apple Wallet / Add to Google Pay) or from your phone's wallet app. Once added, pay "
        "by holding your phone or watch near the terminal wherever contactless is accepted."
    ),
    "atm_support": (
        "Your card works at any ATM that shows the Visa or Mastercard logo, in your country and"
        " abroad. The ATM operator may add its own fee, which it shows on screen before you "
        "confirm."
    ),
    "automatic_top_up": (
        "Auto top-up adds money to your account whenever the balance falls below an amount you "
        "choose. Turn it on in the app under Top up > Auto top-up, where you set the threshold "
        "and the amount; you can change or switch it off at any time."
    ),
    "balance_not_updated_after_bank_transfer": (
        "Incoming bank transfers usually arrive within a few hours but can take up to a few "
        "working days, depending on the sending bank and the payment network. If it has been "
        "longer, ask the sender for the transfer reference and check that the account details "
        "they used match the ones shown in your app."
    ),
    "balance_not_updated_after_cheque_or_cash_deposit": (
        "Cash and cheque deposits are credited once they have been processed, which for cheques"
        " can take several working days. The app shows deposits that are still being processed;"
        " if one is missing after that time, keep your receipt and contact support from the "
        "app."
    ),
    "beneficiary_not_allowed": (
        "A transfer can be refused when the recipient's details cannot be verified or when the "
        "payment does not pass our security checks. Check the name and account details of the "
        "beneficiary in the app, and contact support from the app if the beneficiary is still "
        "not allowed."
    ),
    "cancel_transfer": (
        "A transfer can only be cancelled while it is still pending: open it in your activity "
        "and choose Cancel if that option is shown. Once a transfer has been completed it "
        "cannot be recalled from the app, so contact the recipient or our support team as soon "
        "as possible."
    ),
    "card_about_to_expire": (
        "A replacement card is usually sent automatically before your current card expires. You"
        " can check the delivery address and order a replacement yourself in the app under "
        "Cards; your card number may change, so update it wherever you have saved it."
    ),
    "card_acceptance": (
        "Your card can be used wherever Visa or Mastercard is accepted, online and in shops, in"
        " most countries. Some merchants, such as certain car-rental or fuel stations, may not "
        "accept prepaid or debit cards, and a few countries are not supported."
    ),
    "card_arrival": (
        "Cards normally arrive within the delivery time shown when you ordered, and the app "
        "shows the order and dispatch status under Cards. If the card has not arrived after "
        "that time, check the delivery address in the app; you can cancel the lost card there "
        "and order a new one."
    ),
    "card_delivery_estimate": (
        "The expected delivery time depends on your country and the delivery option you choose,"
        " and it is shown in the app when you order. The card's status in the app tells you "
        "when it has been dispatched."
    ),
    "card_linking": (
        "To link a card you already hold to the app, go to Cards and choose Link card, then "
        "enter the details printed on it. If the card was reported lost and then found, check "
        "its status first: a card that has been cancelled cannot be linked again."
    ),
    "card_not_working": (
        "If your card is not working, check in the app that it is not frozen, that it has not "
        "expired and that you have enough balance. Also check that the type of payment (online,"
        " contactless, ATM) is enabled in the card's security settings; if it still fails, "
        "contact support from the app."
    ),
    "card_payment_fee_charged": (
        "Card payments in your account currency are normally free, but a fee can apply to some "
        "payments, for example in another currency or above your plan's allowance. The fee and "
        "the reason for it are shown on the transaction in the app, and the full list is on the"
        " fees page of your plan."
    ),
    "card_payment_not_recognised": (
        "If you do not recognise a card payment, check the merchant name and date in the app, "
        "as merchants often appear under a different business name. If it is still unfamiliar, "
        "freeze your card in the app straight away and report the payment from the "
        "transaction's page so it can be disputed."
    ),
    "card_payment_wrong_exchange_rate": (
        "Card payments in another currency are converted at the exchange rate of the card "
        "network on the day the payment is processed, which can differ from the rate shown when"
        " you paid. A markup may also apply outside your plan's allowance; the rate used is "
        "shown on the transaction in the app."
    ),
    "card_swallowed": (
        "If an ATM keeps your card, contact the bank that runs the ATM, as only they can "
        "retrieve it. To be safe, freeze or cancel the card in the app and order a replacement."
    ),
    "cash_withdrawal_charge": (
        "Cash withdrawals are free up to your plan's monthly allowance; above it, a fee "
        "applies. The ATM operator can also add its own charge, which it has to show before you"
        " confirm the withdrawal."
    ),
    "cash_withdrawal_not_recognised": (
        "If the app shows a cash withdrawal you did not make, freeze your card in the app right"
        " away. Then report the transaction from its page in the app so that it can be "
        "investigated and a new card can be ordered."
    ),
    "change_pin": (
        "You can change your PIN at any ATM that offers a PIN-change service, using your "
        "current PIN. In some countries you can also view or change it in the app under Cards >"
        " Security."
    ),
    "compromised_card": (
        "If you think someone else is using your card, freeze it in the app immediately and "
        "review your recent transactions. Report any payment you did not make from its page in "
        "the app and order a replacement card."
    ),
    "contactless_not_working": (
        "Contactless can be refused for security reasons, for example on your first payment "
        "with a new card or after several contactless payments in a row; inserting the card and"
        " entering the PIN resets this. Also check that contactless is switched on in the "
        "card's security settings in the app."
    ),
    "country_support": (
        "You can use your card and the app while travelling in most countries. To open an "
        "account you need to live in one of the supported countries; the list is shown during "
        "sign-up and on our help pages."
    ),
    "declined_card_payment": (
        "A card payment can be declined because of insufficient balance, a frozen or expired "
        "card, a disabled payment type (online, contactless, abroad) or a security check. The "
        "reason is usually shown on the declined transaction in the app; check the card's "
        "settings and try again."
    ),
    "declined_cash_withdrawal": (
        "A cash withdrawal can be declined when the amount exceeds your balance or withdrawal "
        "limit, the PIN is wrong, the card is frozen, or the ATM does not accept the card. "
        "Check these in the app and try a different ATM if the problem persists."
    ),
    "declined_transfer": (
        "A transfer can be declined when the balance is too low, the recipient's details are "
        "invalid, a limit is reached, or the payment is stopped by a security check. The app "
        "shows the reason where one is available; check the details and try again."
    ),
    "direct_debit_payment_not_recognised": (
        "If you do not recognise a direct debit, check the name of the company that set it up, "
        "as it may appear under its billing name. You can cancel a direct debit in the app and "
        "report a payment you did not authorise from its page."
    ),
    "disposable_card_limits": (
        "Disposable virtual cards work like your regular card for online payments, but their "
        "details change after each payment. They cannot be used for recurring payments or at "
        "ATMs, and the same spending limits as your account apply."
    ),
    "edit_personal_details": (
        "You can update some personal details, such as your address or e-mail, in the app under"
        " Profile. Changes to your legal name or date of birth may need a document to confirm "
        "them, which the app asks you to upload."
    ),
    "exchange_charge": (
        "Currency exchange in the app is free up to your plan's allowance; above it, or at "
        "weekends on some plans, a small fee applies. The rate and any fee are shown before you"
        " confirm the exchange."
    ),
    "exchange_rate": (
        "The app shows the current exchange rate for each supported currency before you "
        "exchange or pay. Rates follow the market and change during the day, so the rate you "
        "get is the one shown when you confirm."
    ),
    "exchange_via_app": (
        "You can exchange money between the currencies you hold in the app: open your balance, "
        "choose Exchange, pick the currencies and the amount, and confirm. The rate and any fee"
        " are shown before you confirm."
    ),
    "extra_charge_on_statement": (
        "Extra charges on a statement are often fees for currency exchange, ATM withdrawals "
        "above your allowance, or a merchant's temporary authorisation. Open the transaction in"
        " the app to see what it is; if you still do not recognise it, report it from there."
    ),
    "failed_transfer": (
        "A transfer can fail when the recipient's bank rejects it, the details are incorrect, "
        "or there is a temporary problem with the payment network. If the money has left your "
        "account, it is returned when the transfer fails; check the recipient's details and try"
        " again."
    ),
    "fiat_currency_support": (
        "You can hold and exchange several currencies in the app; the list of supported "
        "currencies is shown when you add a new balance. Cryptocurrencies are not part of these"
        " currency balances."
    ),
    "get_disposable_virtual_card": (
        "You can create a disposable virtual card in the app under Cards > Add card > "
        "Disposable. Its details are replaced after each online payment, which protects you if "
        "a website leaks your card details."
    ),
    "get_physical_card": (
        "When your new card arrives, activate it in the app under Cards. Your PIN is available "
        "in the app under the card's security settings once the card has been activated."
    ),
    "getting_spare_card": (
        "You can order an additional card in the app under Cards > Order card. Whether a "
        "delivery fee applies depends on your plan and is shown before you confirm the order."
    ),
    "getting_virtual_card": (
        "You can create a virtual card in the app under Cards > Add card > Virtual. It is ready"
        " to use online straight away and can be added to Apple Pay or Google Pay."
    ),
    "lost_or_stolen_card": (
        "If your card is lost or stolen, freeze it in the app straight away so no one can use "
        "it. If you do not find it, cancel it there and order a replacement; report any payment"
        " you did not make from its page."
    ),
    "lost_or_stolen_phone": (
        "If your phone is lost or stolen, log in from another device or our website to freeze "
        "your cards and sign out of the lost device. Then change your passcode and contact "
        "support from the app so that the old device can be removed from your account."
    ),
    "order_physical_card": (
        "You can order a physical card in the app under Cards > Order card. Delivery times and "
        "any delivery fee for your plan are shown before you confirm."
    ),
    "passcode_forgotten": (
        "If you have forgotten your passcode, choose Forgot passcode on the login screen and "
        "follow the steps to verify your identity and set a new one. For your security, never "
        "share your passcode with anyone, including our staff."
    ),
    "pending_card_payment": (
        "A pending card payment means the merchant has authorised the amount but not yet "
        "completed the payment; this usually takes a few days. If the merchant never completes "
        "it, the amount is released back to your balance automatically."
    ),
    "pending_cash_withdrawal": (
        "A cash withdrawal shows as pending until the ATM operator confirms it, which usually "
        "takes a few working days. If you did not receive the cash and the withdrawal stays "
        "pending, report it from the transaction's page in the app."
    ),
    "pending_top_up": (
        "Top-ups are usually instant, but some, especially by bank transfer, can take longer "
        "while they are processed or checked. The app shows the top-up as pending until it "
        "completes; if it is still pending after a few working days, contact support from the "
        "app."
    ),
    "pending_transfer": (
        "Transfers can stay pending while they are processed by the payment network or go "
        "through a security check, usually for up to a few working days. The app shows the "
        "current status of the transfer in your activity."
    ),
    "pin_blocked": (
        "After too many wrong PIN attempts your PIN is blocked for your security. You can "
        "usually unblock it in the app under Cards > Security, or at an ATM that offers a PIN "
        "service, once you know the correct PIN, which the app can show you."
    ),
    "receiving_money": (
        "To receive money, share the account details shown in the app under Account > Details, "
        "or ask a friend who uses the app to send it to you directly. Salary and other bank "
        "transfers arrive in the balance of the account the details belong to."
    ),
    "Refund_not_showing_up": (
        "Refunds are started by the merchant and usually take several working days to reach "
        "your account, sometimes longer. If the merchant has confirmed the refund and it has "
        "not appeared after that time, ask them for the refund reference and contact support "
        "from the app."
    ),
    "request_refund": (
        "Refunds for a purchase are made by the merchant, so contact them first to ask for one."
        " If the merchant does not help and you did not receive what you paid for, you can open"
        " a dispute from the transaction's page in the app."
    ),
    "reverted_card_payment?": (
        "A card payment can be reverted when the merchant cancels it or does not complete it, "
        "and the amount then returns to your balance. This is shown on the transaction in the "
        "app; contact the merchant if you still want to make the purchase."
    ),
    "supported_cards_and_currencies": (
        "You can top up with most Visa and Mastercard debit and credit cards; some card types "
        "and issuers are not supported. The supported cards and currencies are shown in the app"
        " when you choose to top up."
    ),
    "terminate_account": (
        "You can close your account in the app under Profile > Close account, after moving any "
        "remaining money out. Closing an account cannot be undone, and some records are kept "
        "for the period the law requires."
    ),
    "top_up_by_bank_transfer_charge": (
        "Top-ups by bank transfer are normally free on our side, but your bank may charge you "
        "for sending the transfer. Any fee that applies to your plan is shown in the app before"
        " you confirm."
    ),
    "top_up_by_card_charge": (
        "Topping up with a card can carry a fee, depending on the card type, the country it was"
        " issued in and your plan. The fee is shown in the app before you confirm the top-up."
    ),
    "top_up_by_cash_or_cheque": (
        "Whether you can top up with cash or a cheque depends on your country; where it is "
        "possible, the app shows how under Top up. Otherwise, top up by bank transfer or with a"
        " debit card."
    ),
    "top_up_failed": (
        "A top-up can fail when the card is declined by its issuer, the card type is not "
        "supported, a limit is reached, or the details are incorrect. Check the card with its "
        "issuer and try again, or top up by bank transfer instead."
    ),
    "top_up_limits": (
        "Top-ups are subject to limits that depend on your plan and on whether your identity "
        "has been verified. The limits that apply to you are shown in the app under Top up."
    ),
    "top_up_reverted": (
        "A top-up can be reverted when the card issuer or the sending bank cancels the payment,"
        " for example after a security check, and the money then returns to the card or account"
        " it came from. Check with your card issuer or bank, then try again."
    ),
    "topping_up_by_card": (
        "You can top up with a debit or credit card in the app under Top up > Card. Friends can"
        " top up your account only through a transfer to your account details."
    ),
    "transaction_charged_twice": (
        "A payment that appears twice is often a pending authorisation next to the completed "
        "payment; the extra one disappears once the merchant completes the payment. If both are"
        " completed, ask the merchant for a refund of the duplicate, or report it from the "
        "transaction's page in the app."
    ),
    "transfer_fee_charged": (
        "Transfers in your account currency to other accounts are usually free; transfers in "
        "another currency or above your plan's allowance can carry a fee. The fee is shown "
        "before you confirm and on the transfer in your activity."
    ),
    "transfer_into_account": (
        "To add money by bank transfer, send it to the account details shown in the app under "
        "Account > Details. Use your own name as the sender, and the money is added to the "
        "balance in that currency once it arrives."
    ),
    "transfer_not_received_by_recipient": (
        "Transfers can take up to a few working days to reach the recipient, depending on the "
        "countries and banks involved. Check the status and the recipient's details in the app;"
        " if the transfer shows as completed, the recipient can ask their bank with the "
        "transfer reference."
    ),
    "transfer_timing": (
        "Transfers between accounts in the same country usually arrive the same day, while "
        "international transfers can take a few working days. The expected arrival time is "
        "shown in the app before you confirm the transfer."
    ),
    "unable_to_verify_identity": (
        "If identity verification fails, check that your document is valid, fully visible and "
        "photographed in good light, and that the details you entered match it exactly. You can"
        " try again in the app; if it still fails, contact support from the app."
    ),
    "verify_my_identity": (
        "To verify your identity, follow the steps in the app: take a photo of a valid ID "
        "document and a selfie. Verification usually completes within minutes, but some checks "
        "can take longer."
    ),
    "verify_source_of_funds": (
        "We may ask where the money in your account comes from, as the law requires for some "
        "transactions. The app asks you to upload a document such as a payslip or a bank "
        "statement when this is needed."
    ),
    "verify_top_up": (
        "To check a card top-up, open it in your activity in the app. Some top-ups ask you to "
        "confirm a small temporary charge or a code sent by your card issuer; the app shows "
        "what to enter."
    ),
    "virtual_card_not_working": (
        "If a virtual card is refused, check in the app that it is not frozen and that online "
        "payments are enabled for it. Disposable virtual cards change their details after each "
        "payment, and virtual cards cannot be used at ATMs or for some recurring payments."
    ),
    "visa_or_mastercard": (
        "Whether your card is a Visa or a Mastercard depends on your country and when it was "
        "issued; the logo on the card and in the app shows which one you have. Both are "
        "accepted at most merchants and ATMs worldwide."
    ),
    "why_verify_identity": (
        "We verify the identity of every customer because the law requires it and to protect "
        "your account against fraud. Verification is done once, in the app, with a photo of an "
        "ID document and a selfie."
    ),
    "wrong_amount_of_cash_received": (
        "If an ATM gave you less cash than the amount withdrawn, contact the bank that runs the"
        " ATM first, keeping any receipt. Then report the withdrawal from its page in the app "
        "so that it can be investigated."
    ),
    "wrong_exchange_rate_for_cash_withdrawal": (
        "Cash withdrawals in another currency are converted at the card network's rate, and the"
        " ATM operator may offer its own conversion at a worse rate. Choosing to be charged in "
        "the local currency at the ATM avoids the operator's conversion."
    ),
}
"""The FAQ answer of each banking77 intent, written for sitemesh (Apache-2.0): two or
three sentences on what a generic bank's app offers. They promise no work done and
give no phone numbers, so a reply drafted from them is true for any customer."""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _customer_turns(conv: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in conv["dialogContent"] if any(k.startswith("client") for k in t)]


def _handles(conv: dict[str, Any]) -> list[str]:
    out = []
    for t in conv["dialogContent"]:
        for k, v in t.items():
            if k.startswith("client") and isinstance(v, str) and v not in out:
                out.append(v)
    return out


def build_cases(shared: Path) -> tuple[list[Document], list[dict[str, Any]], int]:
    """The pseudonymised case documents, the held-out records, and the input count."""
    src = shared / "support-ibm-twitter-cdp"
    convs = json.loads((src / "dev.json").read_text("utf-8"))
    records: list[CaseRecord] = []
    heldout: list[dict[str, Any]] = []
    handles: list[list[str]] = []
    for conv in convs:
        header, agent = conv["dialogHeader"], conv["agentURL"]
        session = header["sessionID"]
        turns = _customer_turns(conv)
        if held_out_session(session):
            first = turns[0]
            heldout.append(
                {
                    "session": session,
                    "tenant": header["company"],
                    "customer": next(v for k, v in first.items() if k.startswith("client")),
                    "body": first["message"],
                    "doc_id": agent["doc_id"],
                    "url": article_url(agent["url"]),
                }
            )
            continue
        who = _handles(conv)
        handles.append(who)
        records.append(
            CaseRecord(
                text="\n".join(html.unescape(t["message"]) for t in turns),
                answer=html.unescape(agent["url_utterance"]),
                url=agent["url"],
                tenant=header["company"],
                article=agent["doc_id"],
                id="c-" + hashlib.sha256(session.encode()).hexdigest()[:12],
                customer=tuple(who),
                source=f"{IBM_REPO} dev.json",
            )
        )
    docs = cases_to_docs(records, Pseudonymiser())
    for doc, who in zip(docs, handles, strict=True):
        for text in (t.replace(doc.url or "\0", " ") for t in (doc.text, doc.answer)):
            for pattern in (EMAIL_RE, HANDLE_RE, PHONE_RE):
                assert not pattern.search(text), (doc.id, pattern.pattern)
            lowered = text.lower()
            for h in who:
                assert not re.search(rf"(?<![\w]){re.escape(h.lower())}(?![\w])", lowered), doc.id
    return docs, heldout, len(convs)


def build_faq(shared: Path, url_base: str) -> tuple[list[Document], list[dict[str, str]], int]:
    """The FAQ documents, the held-out banking77 rows, and the row count."""
    src = shared / "tickets-banking77"
    intents = json.loads((src / "categories.json").read_text("utf-8"))
    missing = set(intents) ^ set(ANSWERS)
    assert not missing, f"answers and intents differ: {sorted(missing)}"
    questions: dict[str, list[str]] = {i: [] for i in intents}
    heldout: list[dict[str, str]] = []
    n = 0
    with (src / "train.csv").open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            n += 1
            if held_out(row["text"]):
                heldout.append({"text": row["text"], "intent": row["category"]})
            else:
                questions[row["category"]].append(row["text"])
    records = [FaqRecord(intent=i, answer=ANSWERS[i], questions=questions[i]) for i in intents]
    return faq_to_docs(records, url_base=url_base, source="banking-faq"), heldout, n


def _write(
    folder: Path, docs: list[Document], meta: dict[str, Any], source_md: str, licence: Path
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "docs.jsonl").write_bytes(encode_docs(docs))
    spec = KbSpec(name=folder.name, kinds=tuple(meta["kinds"]), format=meta["format"])
    meta = meta | {"calibration": KbIndex(spec, docs).calibration.summary()}
    (folder / "kb.json").write_text(json.dumps(meta, indent=2) + "\n", "utf-8")
    (folder / "SOURCE.md").write_text(source_md, "utf-8")
    shutil.copyfile(licence, folder / "LICENSE")


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def main(shared: Path, url_base: str) -> None:
    """Write both knowledge bases and the bench files (see the module docstring)."""
    ibm = shared / "support-ibm-twitter-cdp"
    cases, ibm_held, n_convs = build_cases(shared)
    _write(
        DATA / "support-cases",
        cases,
        {
            "kinds": ["support_ticket"],
            "tenants": ["*"],
            "format": "cases",
            "description": "past cases of 24 companies' Twitter support (IBM CDP dev set, "
            "pseudonymised)",
        },
        f"""# support-cases: past cases from the IBM Twitter customer-care conversations

## Source
- Dataset: Twitter Conversations Dataset for Conversational Document Prediction
  (Ganhotra et al., "Conversational Document Prediction to Assist Customer Care
  Agents", EMNLP 2020), {IBM_REPO}
- Commit: `{IBM_COMMIT}`, file `dev.json` ({n_convs} conversations, sha256
  `{_sha(ibm / "dev.json")}`)
- Licence: Apache-2.0 (IBM); `LICENSE` is the upstream licence file.

## What was done (`examples/make_kb.py`)
- Held out: conversations with `int(sha256(sessionID), 16) % 5 == 0` ({len(ibm_held)});
  they are not here; `bench/data/ibm-heldout.jsonl` keeps them with their labels.
- Each of the other {len(cases)} conversations is one document (`doc_kind` `case`):
  `text` = the customer turns before the agent's URL turn; `answer` = the agent's
  `url_utterance` (HTML entities such as `&amp;` decoded); `url` = the article URL (the `https://web.archive.org/web/<ts>/`
  prefix removed; the reply's archived link rewritten to it); `doc_id` = the IBM
  `doc_id`; `label` = the URL without scheme, `www.` and fragment (two doc ids of one
  page are one article); `tenant` = the company; `id` = `<doc_id>#c-<first 12 hex
  digits of sha256(sessionID)>`. Tweet ids, timestamps and handles are not kept.
- Pseudonymised with `sitemesh.knowledge.Pseudonymiser`: @handles, e-mail
  addresses, phone numbers, URLs other than the article, the customers' handles
  wherever they occur, and what Presidio (offline, `sitemesh.policy.PiiScanner`
  defaults) detects (PERSON, LOCATION, ...) are replaced by typed placeholders
  (`<HANDLE>`, `<EMAIL_ADDRESS>`, `<PHONE_NUMBER>`, `<URL>`, `<PERSON>`, ...). The
  builder asserts that no handle, address or number pattern survived.
- Caveat: Presidio also replaces some product names (it reads them as people or
  places); the article URL and the company (tenant) are kept.
""",
        ibm / "LICENSE",
    )
    bank = shared / "tickets-banking77"
    faq, bank_held, n_rows = build_faq(shared, url_base)
    n_questions = sum(len(d.questions) for d in faq)
    _write(
        DATA / "banking-faq",
        faq,
        {
            "kinds": ["support_ticket"],
            "tenants": ["bank*"],
            "format": "faq",
            "description": "one answer per banking77 intent, indexed with its example questions",
        },
        f"""# banking-faq: one answer per banking77 intent

## Sources
- Intents and example questions: BANKING77 (Casanueva et al., "Efficient Intent
  Detection with Dual Sentence Encoders", 2020), {BANKING_REPO}, commit
  `{BANKING_COMMIT}`, `banking_data/train.csv` ({n_rows} rows, sha256
  `{_sha(bank / "train.csv")}`) and `categories.json`. Licence: CC BY 4.0 (PolyAI);
  `LICENSE` is the upstream licence file. The questions are quoted unchanged.
- Answers: written for sitemesh (Apache-2.0, `examples/make_kb.py` `ANSWERS`): two or
  three sentences on what a generic bank's app offers, no promise of work done, no
  phone numbers. URLs: `{url_base}/<intent>` (intent lower-cased, only a-z, 0-9 and _
  kept); the base is a placeholder, see `docs/knowledge.md` to set a site's own.

## What was done
- Held out (not indexed; `bench/data/banking77-heldout.jsonl`): rows with
  `int(sha256(normalised text), 16) % 5 == 0`, normalised = NFKC, case-folded,
  whitespace collapsed (`sitemesh.triage.held_out`, the triage training rule):
  {len(bank_held)} rows.
- The other rows are the example questions of their intent: {n_questions} questions
  over {len(faq)} documents (duplicates within an intent dropped, case-insensitive).
""",
        bank / "LICENSE",
    )
    _jsonl(BENCH / "ibm-heldout.jsonl", ibm_held)
    _jsonl(BENCH / "banking77-heldout.jsonl", bank_held)
    (BENCH / "SOURCE.md").write_text(
        f"""# Held-out data of `bench/resolve.py`

Written by `examples/make_kb.py`; none of these records is in a bundled knowledge base
or was used to fit its calibration.

- `ibm-heldout.jsonl`: the {len(ibm_held)} IBM Twitter customer-care conversations
  (`dev.json` of {IBM_REPO}, commit `{IBM_COMMIT}`, Apache-2.0, Ganhotra et al., EMNLP
  2020) with `int(sha256(sessionID), 16) % 5 == 0`. Fields: `session`, `tenant` (the
  company), `customer` (the handle), `body` (the first customer turn, as written),
  `doc_id` and `url` (the article the agent sent; Wayback prefix removed). These are
  real tweets with real handles and sometimes contact details, kept as they are
  because they are the input the privacy path and the retriever must cope with: use
  them for measurements on this machine, do not publish derived per-record outputs.
- `banking77-heldout.jsonl`: the {len(bank_held)} BANKING77 training rows
  ({BANKING_REPO}, commit `{BANKING_COMMIT}`, CC BY 4.0, Casanueva et al. 2020) that
  `sitemesh.triage.held_out` sets aside. Fields: `text`, `intent`.
""",
        "utf-8",
    )
    print(
        f"support-cases: {len(cases)} cases ({len(ibm_held)} held out); banking-faq: "
        f"{len(faq)} intents, {n_questions} questions ({len(bank_held)} rows held out)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shared", nargs="?", type=Path, default=Path("../shared/data"))
    parser.add_argument("--url-base", default=FAQ_URL_BASE, help="base of the FAQ article URLs")
    args = parser.parse_args()
    main(args.shared, args.url_base)
