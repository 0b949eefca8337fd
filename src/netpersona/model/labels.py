"""Instance labels and persona names, with the syntax Kubernetes uses for labels.

A label key is an optional DNS-subdomain prefix and a slash, then a name of at most 63
characters; a value is at most 63 characters of the same alphabet, or empty.
"""

from __future__ import annotations

import re

from netpersona.model.quote import quote

__all__ = ["check_label_key", "check_label_value", "check_persona_name"]

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
# Matched with fullmatch: "$" would also match before a trailing newline.
_LABEL_NAME = re.compile(_NAME)
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_PERSONA_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def check_label_key(key: object) -> str | None:
    """None when ``key`` is a valid label key, else why not."""
    if not isinstance(key, str) or not key:
        return f"{quote(key)} is not a label key"
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return f"{quote(key)} is not a label key (the prefix must be a DNS subdomain)"
    if not _LABEL_NAME.fullmatch(name):
        return (
            f"{quote(key)} is not a label key (at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit)"
        )
    return None


def check_label_value(value: object) -> str | None:
    if not isinstance(value, str):
        return f"{quote(value)} is not a label value (labels are strings; quote numbers)"
    if value and not _LABEL_NAME.fullmatch(value):
        return (
            f"{quote(value)} is not a label value (at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit)"
        )
    return None


def check_persona_name(name: object) -> str | None:
    if not isinstance(name, str) or not _PERSONA_NAME.fullmatch(name):
        return (
            f"{quote(name)} is not a persona name (1-63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit)"
        )
    return None
