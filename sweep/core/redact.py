"""Passwords never leave the process: every storage URL and message is shown with *** for them.

Usage::

    redact_url("postgresql://me:secret@db/lrsweep")     # "postgresql://me:***@db/lrsweep"
    redact_secrets(text)                                 # every URL with credentials inside text
    redact_text(driver_message, url)                     # also the password itself, escaped or not
"""

from __future__ import annotations

import re


def _credentials(url: str) -> tuple[str, str, str | None, str]:
    """(scheme, user, password or None, rest after the credentials) of a database URL.

    Parsed the way SQLAlchemy reads it (the user has no ':' or '/', the password may hold any
    character up to the host), except that the credentials end at the *last* '@': a password
    with an unescaped '@' or '/' is then hidden whole, never shown in part.
    """
    scheme, rest = url.split("://", 1)
    at = rest.rfind("@")
    if scheme.startswith("sqlite") or at < 0:
        return scheme, "", None, rest
    userinfo, host = rest[:at], rest[at + 1 :]
    user, sep, password = userinfo.partition(":")
    return scheme, user, (password if sep else None), host


_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&#]*")
# Any URL with credentials inside free text: scheme://user:password@ (password up to the last
# '@' before a space, so one containing '@' or a quote is hidden whole; a quote is part of it:
# an override Hydra cannot parse is quoted in its message with the password's own quotes).
_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s]*@")


def redact_url(url: str) -> str:
    """The storage URL with any password replaced by *** (safe to print, log and store)."""
    if "://" not in url:
        return redact_secrets(url)
    scheme, user, password, host = _credentials(url)
    if password is None:
        out = url
    else:
        out = f"{scheme}://{user}:***@{host}"
    return _QUERY_PASSWORD.sub(r"\1***", out)


def redact_secrets(text: str) -> str:
    """`text` with the password of every URL in it replaced by *** (a last line of defence for
    messages that may quote a URL: parse errors, driver errors)."""
    return _QUERY_PASSWORD.sub(r"\1***", _URL_CREDENTIALS.sub(r"\1***@", text))


def redact_text(text: str, url: str) -> str:
    """Remove the password of `url` from a message (drivers sometimes echo the URL or the
    password, escaped or not)."""
    from urllib.parse import unquote

    secrets = []
    if "://" in url:
        password = _credentials(url)[2]
        if password:
            secrets.append(password)
    secrets += [m.group(0).split("=", 1)[1] for m in _QUERY_PASSWORD.finditer(url)]
    for secret in secrets:
        for form in {secret, unquote(secret)}:
            if form:
                text = text.replace(form, "***")
    return redact_secrets(text)
