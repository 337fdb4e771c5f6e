"""User names in machine data: ``user=alice``, ``Invalid user admin from``, ``/home/bob``.

Presidio has no recognizer for account names, and spaCy's NER does not read them in
log text (``for user bob`` is no sentence it was trained on). A log line names the
account in a few fixed phrasings, written by the programs that log them (OpenSSH's
``auth.c``/``auth2.c``, PAM's ``pam_unix``, sudo, cron), so patterns find them with
the keyword as their evidence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from presidio_analyzer import LocalRecognizer, RecognizerResult

from ._analyzer import LANGUAGE

if TYPE_CHECKING:
    from presidio_analyzer.nlp_engine import NlpArtifacts

__all__ = ["SYSTEM_ACCOUNTS", "USER_NAME", "UserNameRecognizer"]

USER_NAME: Final = "USER_NAME"
"""Entity type of an account name found in machine data (``confidential``: an online
identifier of a natural person, GDPR Art. 4(1) and Recital 30)."""

SYSTEM_ACCOUNTS: Final[frozenset[str]] = frozenset(
    {
        # Debian base-passwd's static users (/usr/share/base-passwd/passwd.master);
        # LSB 5.0 "User & Group Names" requires root, bin and daemon.
        "root",
        "daemon",
        "bin",
        "sys",
        "sync",
        "games",
        "man",
        "lp",
        "mail",
        "news",
        "uucp",
        "proxy",
        "www-data",
        "backup",
        "list",
        "irc",
        "gnats",
        "nobody",
        # what the logging program writes when there is no account name
        "unknown",
        "invalid",
        "none",
        "null",
    }
)
"""Account names that are not reported: operating-system accounts, which belong to no
natural person, and the placeholders programs log instead of a name (pam_unix's
``user unknown``). Compared case-insensitively. Any other name is reported, service
accounts such as ``yarn`` or ``cyrus`` included (fail closed: an operator can pass
a longer list)."""

SCORE: Final = 0.85
"""Score of a user name: the keyword that introduces it is part of the pattern (not a
context word), so a match is strong evidence; not 1.0, as a program may log a
non-name in the same place (a misspelt command, a path)."""

_VALUE = r"(?P<v>[^\s,;:'\"()\[\]<>=|]+)"
"""An account name: up to the next blank, quote, bracket or separator."""

_PATTERNS: Final[tuple[re.Pattern[str], ...]] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        # key=value and key: value (pam_unix "user=root", "ruser=", sudo "USER=root")
        r"\b(?:user(?:name)?|usr|uname|login(?:name)?|logname|ruser|acct|account)"
        r"\"?(?:=|[ \t]*:[ \t]*)\"?" + _VALUE,
        # "session opened for user bob", "Disconnected from invalid user x",
        # "Connection closed by authenticating user alice"
        r"\b(?:for|by|from)[ \t]+(?:(?:invalid|illegal|authenticating)[ \t]+)?user[ \t]" + _VALUE,
        # "Invalid user admin from 1.2.3.4", "input_userauth_request: invalid user x"
        r"\b(?:invalid|illegal|authenticating)[ \t]+user[ \t]" + _VALUE,
        # "Accepted password for carol from", "Failed publickey for invalid user d from"
        r"\b(?:accepted|failed)[ \t]+(?:password|publickey|keyboard-interactive(?:/pam)?"
        r"|hostbased|gssapi-with-mic|none)[ \t]+for[ \t]+(?:(?:invalid|illegal)[ \t]+user[ \t]+)?"
        + _VALUE
        + r"[ \t]+from\b",
        # sudo: "sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=..."
        r"\bsudo\b[^:\n]{0,12}:[ \t]+" + _VALUE + r"[ \t]+:[ \t]+TTY=",
        # su: "su: (to root) alice on pts/0"
        r"\bsu\b[^:\n]{0,12}:[ \t]+\(to[ \t]+\S+\)[ \t]+" + _VALUE,
        # cron: "CRON[123]: (alice) CMD (...)"
        r"\(" + _VALUE + r"\)[ \t]+CMD\b",
        # FreeRADIUS: "Login OK: [alice] (from client ...)", "Login incorrect (...): [bob]"
        r"\bLogin[ \t]+(?:OK|incorrect)[^\[\n]{0,80}?\[" + _VALUE + r"\]",
        # NCSA Common/Combined Log Format: host ident authuser [dd/Mon/yyyy:...]
        r"(?m)^\S+[ \t]+\S+[ \t]+" + _VALUE + r"[ \t]+\[\d{2}/[A-Za-z]{3}/\d{4}:",
    )
)
_HOME: Final = re.compile(
    # home directories: /home/alice, /Users/alice, C:\Users\alice
    r"(?:(?<![\w.])/home/|(?<![\w.])/Users/|\b[A-Z]:\\Users\\)(?P<v>[^\s/\\:;,'\"()\[\]<>]+)",
)

_HINT: Final = re.compile(
    r"user|login|logname|acct|account|password|publickey|sudo|su\b|CMD|/home/|/\d{4}:",
    re.IGNORECASE,
)
"""A necessary condition for any pattern to match (one search instead of one per pattern)."""

_NOT_NAMES: Final = frozenset({"from", "for", "by", "on", "to"})
"""Words a pattern may capture where the name is missing (``Invalid user  from``)."""
_NOT_HOMES: Final = frozenset({"public", "shared", "default", "default user", "all users"})
"""Home directories of no one (``/Users/Shared``, ``C:\\Users\\Public``)."""


class UserNameRecognizer(LocalRecognizer):
    """Presidio recognizer of account names in log lines (entity ``USER_NAME``).

    Recognised phrasings (case-insensitive; the reported span is the name only):

    * ``user=alice``, ``ruser=bob``, ``logname=...``, ``USER=root``, ``login: x``;
    * ``for user bob``, ``by authenticating user bob``, ``Invalid user admin from``;
    * ``Accepted password for carol from``, ``Failed publickey for invalid user d from``
      (OpenSSH ``auth.c``);
    * sudo's ``alice : TTY=``, su's ``(to root) alice``, cron's ``(alice) CMD``,
      FreeRADIUS's ``Login OK: [alice]``, the authuser field of the NCSA Common Log
      Format (``203.0.113.9 - alice [02/Apr/2031:07:12:09 +0000] "GET ..."``);
    * home directories ``/home/alice``, ``/Users/alice``, ``C:\\Users\\alice``.

    Names without a letter (``user=1000``: a numeric uid) and
    :data:`SYSTEM_ACCOUNTS` are not reported.

    Args:
        system_accounts: names never reported (case-insensitive); ``None``:
            :data:`SYSTEM_ACCOUNTS`.
        score: score of every match (0..1); default :data:`SCORE`.
    """

    def __init__(self, system_accounts: Iterable[str] | None = None, *, score: float = SCORE):
        accounts = SYSTEM_ACCOUNTS if system_accounts is None else system_accounts
        self._skip = frozenset(a.lower() for a in accounts) | _NOT_NAMES
        self._score = score
        super().__init__(supported_entities=[USER_NAME], supported_language=LANGUAGE)

    def load(self) -> None:
        """Nothing to load (patterns are compiled at import)."""

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Offsets ``(start, end)`` of the user names in ``text``, sorted, no duplicates.

        Args:
            text: one log line or a longer text.

        Returns:
            Character offsets (``str`` indices, end exclusive) of each name.
        """
        if not _HINT.search(text):
            return []
        found: set[tuple[int, int]] = set()
        for pattern in (*_PATTERNS, _HOME):
            skip = self._skip | _NOT_HOMES if pattern is _HOME else self._skip
            for m in pattern.finditer(text):
                start, end = m.span("v")
                value = text[start:end].rstrip(".")
                end = start + len(value)
                if any(c.isalpha() for c in value) and value.lower() not in skip:
                    found.add((start, end))
        return sorted(found)

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        """Presidio's recognizer interface: the user names of ``text``.

        Args:
            text: the text.
            entities: requested types; nothing is reported unless ``USER_NAME`` is one.
            nlp_artifacts: unused (no NLP needed).

        Returns:
            One ``RecognizerResult`` per name.
        """
        if USER_NAME not in entities:
            return []
        return self.results(text)

    def results(self, text: str) -> list[RecognizerResult]:
        """``RecognizerResult`` objects for :meth:`spans`, scored :data:`SCORE`."""
        return [
            RecognizerResult(USER_NAME, start, end, self._score) for start, end in self.spans(text)
        ]
