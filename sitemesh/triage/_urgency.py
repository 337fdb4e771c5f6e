"""A ticket's urgency: the ticket's own, the label set's model, our rule, or 3."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

UrgencySource = Literal["ticket", "model", "rule", "default"]

DEFAULT_URGENCY: Final = 3
"""0 (critical) .. 3 (low); 3 when nothing else says."""

URGENCY_RULES: Final[Mapping[str, Mapping[str, int]]] = {
    "banking77": {
        # 1: the card or money is at risk now (someone else may be using it)
        "lost_or_stolen_card": 1,
        "lost_or_stolen_phone": 1,
        "compromised_card": 1,
        "card_swallowed": 1,
        "cash_withdrawal_not_recognised": 1,
        "card_payment_not_recognised": 1,
        "direct_debit_payment_not_recognised": 1,
        # 2: the customer's money left and did not arrive, or the card is locked
        "transaction_charged_twice": 2,
        "wrong_amount_of_cash_received": 2,
        "transfer_not_received_by_recipient": 2,
        "failed_transfer": 2,
        "pin_blocked": 2,
    },
}
"""Label set -> label -> urgency, for label sets without an urgency model.

Our rule, not the dataset's (BANKING77 has no urgency field): intents where a card or
money is at risk get 1, money that is missing or a locked card 2; every other intent
falls through to :data:`DEFAULT_URGENCY`. Applied to the predicted label whatever its
confidence."""


def resolve_urgency(
    *, ticket: int | None, model: int | None, label_set: str, label: str
) -> tuple[int, UrgencySource]:
    """The urgency of a ticket and where it came from, first that applies:

    1. ``ticket``: the ticket's own ``urgency`` field (the channel set it);
    2. ``model``: the label set's urgency model;
    3. ``rule``: :data:`URGENCY_RULES` for ``label_set`` and ``label``;
    4. ``default``: :data:`DEFAULT_URGENCY`.

    Args:
        ticket: ``SupportTicket.urgency`` (0..3 or ``None``).
        model: the urgency model's prediction (0..3 or ``None``).
        label_set: the label set's name (``""``: none applied).
        label: the predicted label.

    Returns:
        ``(urgency 0..3, source)``.
    """
    if ticket is not None:
        return ticket, "ticket"
    if model is not None:
        return model, "model"
    rule = URGENCY_RULES.get(label_set, {}).get(label)
    if rule is not None:
        return rule, "rule"
    return DEFAULT_URGENCY, "default"
