"""An e-mail (``message/rfc822``) taken apart: who sent it, what it says, what it carries.

Mailboxes are how much of the work arrives: a supplier's invoice as a PDF attached to a
one-line note, a customer's request as the message itself. :func:`parse_email` reads the
MIME structure with the standard library's parser (``email.policy.default``, which decodes
encoded-word headers and each part's transfer encoding and charset) into the headers a
person reads, the message's own text (its plain part, or its HTML part as text) and the
files it carries; messages forwarded as attachments are read the same way, a few levels
deep. What becomes of them, the document a task carries, is decided in ``_files``
(:func:`switchyard.documents.unpack_email`), next to the checks every document passes.

Standard library only: the parser is the one the ``email`` package ships, and the HTML
converter is a small :class:`html.parser.HTMLParser` that keeps a message's words, line
breaks and table cells (nothing of an HTML mail needs rendering to be read).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from html.parser import HTMLParser

EMAIL = "message/rfc822"
#: The headers kept, in the order the text shows them.
HEADERS = ("from", "to", "cc", "date", "subject", "message-id")
#: Forwarded messages inside forwarded messages are read this deep, no deeper.
MAX_FORWARD_DEPTH = 3

_BLOCK = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6",
                    "table", "section", "article", "header", "footer", "blockquote", "pre",
                    "hr", "address", "ul", "ol"})
_CELL = frozenset({"td", "th"})
_SKIP = frozenset({"script", "style", "head", "title"})


@dataclass(frozen=True)
class Attachment:
    """A file an e-mail carries: its name, the media type its part declares, its bytes, and
    whether it is shown inside the message (``inline``, or referenced by a Content-ID: a
    logo, a signature's picture) rather than attached to it."""

    name: str
    declared_type: str
    data: bytes
    inline: bool


@dataclass(frozen=True)
class ParsedEmail:
    """What :func:`parse_email` found."""

    headers: dict[str, str]
    #: The message's own words: its plain-text body (or HTML body as text), then each
    #: forwarded message with its headers, then text attachments with their names.
    body: str
    attachments: tuple[Attachment, ...] = field(default=())

    @property
    def text(self) -> str:
        """The e-mail as a person reads it: the headers, a blank line, the body."""
        head = "\n".join(f"{_LABELS[name]}: {value}" for name, value in self.headers.items()
                         if name != "message-id")
        return f"{head}\n\n{self.body}".strip() + "\n"


_LABELS = {"from": "From", "to": "To", "cc": "Cc", "date": "Date", "subject": "Subject",
           "message-id": "Message-ID"}


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skipping = 0
        self._cells = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skipping += 1
        elif tag in _CELL:
            if self._cells:
                self._trim()
                self.out.append(" | ")
            self._cells += 1
        elif tag in _BLOCK:
            self._cells = 0 if tag == "tr" else self._cells
            self._line_break()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK:
            self._line_break()
            if tag == "tr":
                self._cells = 0

    def _line_break(self) -> None:
        """One line break between blocks, however many block tags (and the white space
        between them) meet there."""
        self._trim()
        if self.out and not self.out[-1].endswith("\n"):
            self.out.append("\n")

    def _trim(self) -> None:
        """Drop the spaces the markup's indentation left after the last words."""
        while self.out and self.out[-1] == " ":
            self.out.pop()

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        text = re.sub(r"\s+", " ", data)
        if text == " " and (not self.out or self.out[-1].endswith(("\n", " ", " | "))):
            return  # indentation between tags
        self.out.append(text)


def html_text(html: str) -> str:
    """An HTML body's words, a line per block and `` | `` between a row's cells."""
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    lines = (line.strip() for line in "".join(parser.out).splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:  # noqa: BLE001 - a malformed header is left out, not fatal
        return ""
    return re.sub(r"\s+", " ", str(value)).strip() if value is not None else ""


def _part_text(part: EmailMessage) -> str:
    """A text part's characters, in the charset it declares (an unknown charset, or none on
    8-bit bytes: UTF-8 where it decodes, else Latin-1, which decodes any byte)."""
    try:
        text = part.get_content()
    except (LookupError, UnicodeError, AssertionError, KeyError):
        raw = part.get_payload(decode=True) or b""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
    if not isinstance(text, str):
        text = bytes(text).decode("utf-8", errors="replace")
    if part.get_content_subtype() == "html":
        return html_text(text)
    return text.replace("\r\n", "\n").strip()


def _read(message: EmailMessage, depth: int) -> tuple[list[str], list[Attachment]]:
    texts: list[str] = []
    files: list[Attachment] = []
    body = message.get_body(preferencelist=("plain", "html"))
    if body is not None:
        texts.append(_part_text(body))
    if not message.is_multipart():
        return texts, files
    for part in message.iter_attachments():
        media = part.get_content_type()
        name = part.get_filename() or ""
        if media == EMAIL and depth < MAX_FORWARD_DEPTH:
            inner = part.get_content()
            if isinstance(inner, EmailMessage):
                forwarded = ParsedEmail(
                    {h: v for h in HEADERS if (v := _header(inner, h))}, "")
                inner_texts, inner_files = _read(inner, depth + 1)
                texts.append("---------- Forwarded message ----------\n"
                             + forwarded.text + "\n" + "\n\n".join(inner_texts))
                files.extend(inner_files)
            continue
        if part.get_content_maintype() == "multipart":
            continue
        if part.get_content_maintype() == "text" and part.get_content_disposition() != "inline":
            texts.append(f"[{name or 'attached text'}]\n{_part_text(part)}")
            continue
        data = part.get_payload(decode=True)
        if isinstance(data, bytes) and data:
            inline = part.get_content_disposition() == "inline" or part.get("content-id") is not None
            files.append(Attachment(name, media, data, inline))
    return texts, files


def parse_email(body: bytes) -> ParsedEmail:
    """An e-mail's headers, text and attachments (the bytes of a ``message/rfc822``
    document). The parser never refuses a message (it records defects instead), so whether
    these bytes are an e-mail at all is judged by the caller from what was found."""
    message = BytesParser(policy=policy.default).parsebytes(body)
    assert isinstance(message, EmailMessage)
    headers = {name: value for name in HEADERS if (value := _header(message, name))}
    texts, files = _read(message, 0)
    return ParsedEmail(headers, "\n\n".join(t for t in texts if t.strip()), tuple(files))


__all__ = ["EMAIL", "HEADERS", "MAX_FORWARD_DEPTH", "Attachment", "ParsedEmail", "html_text",
           "parse_email"]
