"""Data classification: detected entity types -> the task's data class."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from ..schemas import DATA_CLASS_ORDER, DataClass
from ._pii import DetectedEntity

__all__ = ["ENTITY_DATA_CLASS", "UNKNOWN_ENTITY_DATA_CLASS", "classify"]

ENTITY_DATA_CLASS: Mapping[str, DataClass] = MappingProxyType(
    {
        # restricted: identifiers whose leak enables fraud or identity theft, and
        # special-category data.
        "CREDIT_CARD": "restricted",  # PCI DSS v4.0 "account data" (PAN)
        "IBAN_CODE": "restricted",  # financial account (GDPR Recital 75: financial loss)
        "US_BANK_NUMBER": "restricted",
        "CRYPTO": "restricted",  # wallet address: a financial account
        "US_SSN": "restricted",  # national id (GDPR Art. 87)
        "US_ITIN": "restricted",
        "US_PASSPORT": "restricted",
        "UK_NHS": "restricted",  # health (GDPR Art. 9(1))
        "MEDICAL_LICENSE": "restricted",
        # confidential: direct identifiers of a natural person (GDPR Art. 4(1): "a
        # name, an identification number, location data, an online identifier").
        "PERSON": "confidential",
        "CUSTOMER_ID": "confidential",  # the ticket's customer field (online identifier)
        "USER_NAME": "confidential",  # an account name in machine data (online identifier)
        "EMAIL_ADDRESS": "confidential",
        "PHONE_NUMBER": "confidential",
        "IP_ADDRESS": "confidential",  # online identifier (Recital 30)
        "URL": "confidential",  # may carry user names, tokens or profile links
        "LOCATION": "confidential",  # addresses, places (location data)
        "US_DRIVER_LICENSE": "confidential",
        "MAC_ADDRESS": "confidential",  # device identifier (Recital 30)
        "AGE": "confidential",
        "NRP": "confidential",  # nationality, religion, politics: may be Art. 9
        # internal: not identifying on their own.
        "DATE_TIME": "internal",
        "ORGANIZATION": "internal",
        "UUID": "internal",
    }
)
"""Entity type -> data class.

The grouping follows the GDPR's notions: Art. 4(1) personal data (a natural person
identified "directly or indirectly", by name, number, location data or online
identifier, Recital 30 for IP and device identifiers) is ``confidential``; so is an
account name in a log line (``USER_NAME``: it identifies the account's holder on the
operator's systems, an online identifier; not ``restricted``, as a name alone enables
no fraud without the credential that logs never carry); data
whose disclosure causes financial loss or identity theft (Recital 75), national
identification numbers (Art. 87), special categories such as health (Art. 9) and
payment-card account data under PCI DSS v4.0 are ``restricted``.
"""

UNKNOWN_ENTITY_DATA_CLASS: DataClass = "confidential"
"""Class of an entity type missing from :data:`ENTITY_DATA_CLASS` (a custom
recognizer): treated as personal data until someone classifies it (fail closed)."""


def classify(entities: Iterable[DetectedEntity | str], *, public: bool = False) -> DataClass:
    """The data class of a text: the most sensitive class among its entities.

    ========================  ==========================================================
    ``restricted``            any financial, government or health identifier
                              (CREDIT_CARD, IBAN_CODE, US_BANK_NUMBER, CRYPTO, US_SSN,
                              US_ITIN, US_PASSPORT, UK_NHS, MEDICAL_LICENSE)
    ``confidential``          any direct identifier (PERSON, CUSTOMER_ID,
                              USER_NAME, EMAIL_ADDRESS, PHONE_NUMBER, IP_ADDRESS,
                              URL, LOCATION, US_DRIVER_LICENSE, MAC_ADDRESS, AGE,
                              NRP) or an unknown entity type
    ``internal``              no PII detected in customer content (the default)
    ``public``                no PII detected and the policy declares the task kind
                              public (``public=True``)
    ========================  ==========================================================

    See :data:`ENTITY_DATA_CLASS` for the sources of the grouping.

    Args:
        entities: detected entities, or bare entity type names.
        public: the content is declared public by the policy (rules file
            ``public_kinds``); only honoured when no entity raises the class.

    Returns:
        One of ``"public"``, ``"internal"``, ``"confidential"``, ``"restricted"``.
    """
    level = 0 if public else DATA_CLASS_ORDER.index("internal")
    for entity in entities:
        entity_type = entity if isinstance(entity, str) else entity.entity_type
        cls = ENTITY_DATA_CLASS.get(entity_type, UNKNOWN_ENTITY_DATA_CLASS)
        if cls == "internal":
            continue  # non-identifying types never make public content internal
        level = max(level, DATA_CLASS_ORDER.index(cls))
    return DATA_CLASS_ORDER[level]
