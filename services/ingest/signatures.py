"""Standard Webhooks signatures (https://www.standardwebhooks.com), both directions.

One implementation for the webhooks ingest sends (``webhooks``) and the ones it receives
(``sources``)::

    webhook-id: <message id, the same on every retry of one message>
    webhook-timestamp: <unix seconds>
    webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<raw body>")>

``webhook-signature`` may list several space-separated signatures (a receiver accepts the
message when any ``v1`` one matches), which is how a secret is rotated. The key is the base64
text after ``whsec_`` for secrets in that form (the ones Switchyard generates, and what
Standard Webhooks libraries expect); any other secret is used as its UTF-8 bytes, so secrets
registered before the switch keep working.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
#: How far a message's timestamp may be from now, either way (replayed or skewed messages).
TOLERANCE_S = 5 * 60


class SignatureError(ValueError):
    """The message is not authentic (or too old); the text says why, never the secret."""


def new_secret() -> str:
    """A fresh ``whsec_`` secret: 32 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            pass  # not base64 after all: the whole text is the key
    return secret.encode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one message."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, "sha256").digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, message_id: str, body: bytes, now: int | None = None
            ) -> dict[str, str]:
    timestamp = int(time.time()) if now is None else now
    return {ID_HEADER: message_id, TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, message_id, timestamp, body)}


def verify(secrets_: list[str], message_id: str, timestamp: str, signature: str,
           body: bytes, *, now: float | None = None, tolerance_s: int = TOLERANCE_S) -> None:
    """Raise :class:`SignatureError` unless one of ``signature``'s ``v1`` entries matches the
    body under one of ``secrets_`` and the timestamp is within the tolerance."""
    if not message_id or not timestamp or not signature:
        raise SignatureError(f"missing {ID_HEADER}, {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} "
                             "header")
    try:
        sent = int(timestamp)
    except ValueError:
        raise SignatureError(f"{TIMESTAMP_HEADER} is not unix seconds") from None
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance_s:
        raise SignatureError(f"{TIMESTAMP_HEADER} is more than {tolerance_s} s from now "
                             "(expired or replayed message)")
    offered = [entry.partition(",")[2] for entry in signature.split()
               if entry.startswith("v1,")]
    for secret in secrets_:
        expected = sign(secret, message_id, sent, body).partition(",")[2]
        if any(hmac.compare_digest(expected.encode(), o.encode("utf-8", "surrogateescape"))
               for o in offered):
            return
    raise SignatureError("no v1 signature matches the message (wrong secret, or altered)")


__all__ = ["ID_HEADER", "SECRET_PREFIX", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "TOLERANCE_S",
           "SignatureError", "headers", "new_secret", "secret_key", "sign", "verify"]
