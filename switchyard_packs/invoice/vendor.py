"""Who issued an invoice: the supplier's name, weighed from what the page says about it.

A first line is not enough. Real invoices put a tagline or the word ``FACTUUR.`` above the
letterhead, print the customer's address first for a window envelope, keep the supplier only
in a footer, or write the sender as one line (``QualityHosting AG - Uferweg 40-42 - ...``).
Each name-like line is a candidate, and evidence adds up per name:

* a legal form at its end (``B.V.``, ``GmbH``, ``Inc.``, ``Pvt. Ltd.``): a company;
* standing in the letterhead (the first lines);
* the document's web or e-mail domain spelling the name (``azure-interior.com``);
* being named as the account holder of the bank account to pay into (the payee);
* standing beside the supplier's identifiers (IBAN, VAT, chamber of commerce, phone, web);
* starting a window envelope's sender line (``Kraxi GmbH · Flugzeugallee 17 · 12345 ...``);
* heading the block under a seller's heading (``Verkäufer:``, ``Rechnungsersteller``), as
  its first name line or its ``Name:`` (e-invoice renderings list ``Nummer: 549910`` and
  ``Globale Nummer: ...`` first);
* appearing more than once.

A name under a customer's label (``Bill to``, ``Factuuradres``, ``Rechnungsadresse``), in the
block under a customer's heading (``Käufer/Leistungsempfänger``), or in the address under a
sender line, is the customer's and does not count, nor is a person the letter addresses
(``Dhr.``, ``Mrs``). The best-supported name wins; how much evidence it has sets its
confidence, so a lone unlabelled first line stays doubtful.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["BUYER_LABELS", "COMPANY_SUFFIX", "SELLER_LABELS", "TITLE", "VendorGuess",
           "company_name", "find_vendor", "is_name_key", "is_party_heading"]

_LEGAL_FORMS = (r"Pty\.? Ltd\.?|Pvt\.? Ltd\.?|Private Limited|Ltd\.?|Inc\.?|Incorporated|"
                r"Corporation|LLC|"
                r"GmbH ?[&+] ?Co\.?(?: ?KG)?|GmbH|S\.A\. de C\.V\.|S\.A\.S\.|S\.A\.U\.|"
                # Peru's and Argentina's closed and limited companies and sole proprietors,
                # their last dot often left off ('EMPRESA S.A.C', 'TNG TECHNOLOGY S.R.L')
                r"S\.A\.C\.?|S\.A\.A\.?|S\.R\.L\.?|E\.I\.R\.L\.?|S\.A\.|"
                r"B\.V\.|BV|N\.V\.|NV|AG|Co\.|plc|SARL|SAS|S\.L\.|Oy|AB|Corp\.?|Limited|"
                r"Company|SE|SpA|S\.p\.A\.|S\.r\.l\.|Srl|KG|sp\. z o\.o\.|Sp\. z o\.o\.|"
                r"s\.r\.o\.|a\.s\.|OÜ|AS|A/S|ApS|Ltda\.?|"
                # Germany's mutual insurers, registered associations and cooperatives, its
                # partnerships (civil-law, general, limited by shares) and sole traders
                r"a\.G\.|VVaG|e\.V\.|eG|GbR|OHG|KGaA|e\.K\.")
# and in capitals, as letterheads print them ('CONTOSO LTD.', 'ACME GMBH'); the dotted ones
# in small letters too, which no word is ('bol.com b.v.', 's.r.l.'), and the few undotted
# ones that are no word in the languages the labels cover ('Dim Solution inc')
_IN_SMALL_LETTERS = {r"Inc\.?", r"Ltd\.?", "LLC", "GmbH", r"Corp\.?"}
_LEGAL_FORMS = "|".join(dict.fromkeys(
    form for written in _LEGAL_FORMS.split("|")
    for form in (written, written.upper(),
                 written.lower() if re.fullmatch(r"(?:[A-Za-z]\\\.)+", written)
                 or written in _IN_SMALL_LETTERS else written)))
#: A company's legal form at the end of a name.
COMPANY_SUFFIX = re.compile(rf"(?:\b(?:{_LEGAL_FORMS}))\s*$")
# a name followed by more on its line: 'e-Luscious Nederland B.V. iov Saeco.com'; a name
# whose words include one that is also a legal form keeps the forms that follow it ('Your
# Company Inc.', 'Festrol Corp Ltd.')
_SUFFIX_INSIDE = re.compile(rf"^(?P<name>.+?\b(?P<form>{_LEGAL_FORMS})(?:,?[ ](?:{_LEGAL_FORMS}))*)"
                            rf"(?=[\s,;]|$|(?<=\.))")
# a legal form that is also a plain word goes on into the name when one or two capitalised
# words follow it ('Staffing Company U', 'Your Company Name'; not 'Acme GmbH Berlin')
_NAME_GOES_ON = re.compile(r"(?<= )(?:Company|Corporation)(?: [A-Z][a-z]*){1,2}")
#: Document titles that start a line (and are no one's name).
TITLE = re.compile(
    r"^(?:(?:kopie|copy of|copie|duplicate|original)\s+)?"
    r"(?:tax invoice|vat invoice|commercial invoice|sales invoice|invoice \(original\)|"
    r"rechnung / invoice|"
    r"invoice|facture|factura|fattura|factuur|faktura|rechnung|bill|receipt|credit note|"
    r"gutschrift|avoir|creditnota)\b[\s:.]*", re.IGNORECASE)
#: Labels of the customer's address block: a name under one is the customer's.
BUYER_LABELS = (
    "bill to", "billed to", "billing address", "invoice to", "invoice address", "sold to",
    "ship to", "shipping address", "deliver to", "delivery address", "customer", "client",
    "kunde", "klant", "cliente", "nabywca", "odbiorca", "destinataire", "destinatario",
    "klient", "maksja", "ostja", "receptor", "kupující",
    "factuuradres", "afleveradres", "rechnungsadresse", "lieferadresse", "rechnungsempfänger",
    "adresse de facturation", "adresse de livraison", "facturer à", "facturar a",
    "intestatario", "buyer", "purchaser", "käufer", "leistungsempfänger", "warenempfänger",
    "abweichender warenempfänger", "acheteur", "acquirente", "comprador", "empfänger",
    "odběratel", "destinatário", "tomador",
    "tomador do serviço", "asiakas", "maksaja", "kund", "köpare", "kjøper", "køber",
    "ผู้ซื้อ", "ลูกค้า",  # Thai: buyer, customer
    "cumpărător", "cumparator",  # Romanian: buyer
)
#: Labels of the supplier: a heading over its block, or a label before its name.
SELLER_LABELS = ("vendor", "supplier", "seller", "issuer", "sold by", "bill from", "billed from",
                 "lieferant", "verkäufer",
                 "rechnungsersteller", "fornitore", "proveedor", "fournisseur", "vendeur",
                 "leverancier", "sprzedawca", "aussteller", "dodavatel", "emitente",
                 "prestador", "emisor", "müüja", "prodejce", "provider",
                 "prestador do serviço", "prestador de serviços", "emitente da nfs-e",
                 "myyjä", "säljare", "selger", "sælger", "leverantör", "leverandør",
                 "ผู้ขาย", "ผู้ออกใบกำกับภาษี",  # Thai: seller, issuer of the tax invoice
                 "vânzător", "vanzator", "furnizor", "prestator")  # Romanian: seller, supplier
# the bank account's holder is who is paid: the supplier
_PAYEE = re.compile(
    r"(?:titulaire du compte|account holder|account name|kontoinhaber|beneficiary|payee|"
    r"rekeninghouder|ten name van|intestato a|beneficiario|payable to|saaja)\s*[:\-]?\s*"
    r"(?P<name>[^|\n:;]{2,60})", re.IGNORECASE)  # a semicolon ends the name
# lines that identify the supplier: its bank, tax and register numbers, its contacts
_IDENTITY = re.compile(
    r"\b(?:IBAN|BIC|SWIFT|KvK|VAT|BTW|USt|UStId|USt-IdNr|TVA|Siret|SIREN|RCS|HRB|HRA|GSTIN|"
    r"P\.IVA|NIP|REGON|ABN|EIN|KMKR|CNPJ|CUIT|Tel|Phone|Fax)\b|www\.|@|https?://", re.IGNORECASE)
_DOMAIN = re.compile(r"(?:www\.|https?://(?:www\.)?|@)((?:[a-z0-9-]+\.)+)[a-z]{2,}\b",
                     re.IGNORECASE)
# a sender line's parts ('QualityHosting AG - Uferweg 40-42 - D-63571 Gelnhausen')
_PARTS = re.compile(r"\s+[-\u2013\u2014\u2022\u00b7|]\s+")
#: Marks a design sets before a name, apart from it ('◆ Acme Inc.', '• Acme', '» Acme'):
#: symbols and bullets, no letter, digit or bracket
_LEADING_MARKS = re.compile(r"^[^\w\s(\[\"'&@]{1,3}\s+")


def _unmarked(cell: str) -> str:
    """``cell`` without a leading design mark: each character of it a symbol or a bullet."""
    mark = _LEADING_MARKS.match(cell)
    if mark is None or not all(unicodedata.category(ch)[0] in "SP"
                               for ch in mark.group(0).strip()):
        return cell
    return cell[mark.end():]
# ... and a comma between them ('Alphabet, Lilienthalallee 26, 80786 München')
_SENDER_PARTS = re.compile(_PARTS.pattern + r"|,\s+")
#: 'Name' and 'company name' in the other languages, as a key before or over a name.
_NAME_WORDS = (r"firma|firmenname|raison sociale|ragione sociale|naam|nazwa|název|nombre|"
               r"razão social|razón social|nume|denumire")
# 'Name: Lieferant GmbH' under a 'Seller' heading
_NAME_LABEL = re.compile(rf"^(?:name|company|nome|{_NAME_WORDS})\s*:\s*", re.IGNORECASE)
# 'from' in small letters before a name in capitals ('de TNG TECHNOLOGY S.R.L', an Argentine
# invoice's issuer line) is no part of it; 'de Vries BV' keeps its particle
_FROM_WORD = re.compile(r"^(?:de|from|von|da|di)\s+(?=[A-Z][A-Z0-9&.\-]+(?:\s|$))")
# a key over its value ('Nome / Nome Empresarial' above the company's name) is no name
_NAME_KEY = re.compile(r"^(?:(?:company |business |legal |trading )?name|nome(?: empresarial)?|"
                       rf"{_NAME_WORDS})(?:\s*/\s*(?:(?:company |business "
                       r"|legal |trading )?name|nome(?: empresarial)?|nombre|razão social|"
                       r"razón social|raison sociale|firma|firmenname))*\s*:?$", re.IGNORECASE)
# how a letter addresses a person: what follows is a customer's name, no supplier's
_SALUTATION = re.compile(r"(?:Mr|Mrs|Ms|Mx|Dr|Dhr|Mevr|Hr|Fr|Herr|Frau|Mme|Mlle|Sig|Sr|Sra)"
                         r"\.?$|M\.$")
_NOT_A_NAME = re.compile(r"www\.|https?:|@|\(|\bpowered by\b|\bgenerated by\b|\bpage\b|"
                         r"!$", re.IGNORECASE)  # an exclamation ends a sentence, no name
#: An address's last line: the country, in English or its own language (a short list of the
#: countries whose languages the labels cover and their neighbours, not a gazetteer; pycountry
#: or Babel would bring thousands of names for the few an invoice's address ends with).
COUNTRIES = frozenset({
    "united states", "united states of america", "usa", "u.s.a.", "united kingdom", "uk",
    "great britain", "england", "scotland", "wales", "ireland", "éire", "canada", "australia",
    "new zealand", "india", "south africa", "singapore", "germany", "deutschland", "austria",
    "österreich", "switzerland", "schweiz", "suisse", "svizzera", "france", "belgium",
    "belgique", "belgië", "luxembourg", "netherlands", "the netherlands", "nederland",
    "holland", "spain", "españa", "portugal", "italy", "italia", "poland", "polska",
    "czech republic", "czechia", "česká republika", "česko", "slovakia", "slovensko",
    "hungary", "magyarország", "denmark", "danmark", "sweden", "sverige", "norway", "norge",
    "finland", "suomi", "brazil", "brasil", "mexico", "méxico", "argentina", "chile",
    "china", "japan", "greece", "romania", "românia", "croatia", "hrvatska", "slovenia",
    "slovenija", "estonia", "latvia", "lithuania", "turkey", "türkiye"})
#: Evidence weights, and the score a name needs before it is offered at all.
LEGAL_FORM, LETTERHEAD, DOMAIN, PAYEE, BESIDE_IDENTIFIERS, REPEATED = 2.0, 1.5, 3.0, 3.0, 1.0, 1.0
SENDER, SELLER_BLOCK = 2.0, 3.0
#: Lines under a party's heading read as its block (number, name, address).
BLOCK_LINES = 6
#: A line of more words than this is a sentence ('Second notice - our records show ...'),
#: not a sender line's name, street and town.
MAX_SENDER_WORDS = 10
MIN_SCORE = 1.5
LETTERHEAD_LINES = 3
#: Lines under a sender line taken for the recipient's address, and how far down the page
#: a sender line is looked for (above the address window).
RECIPIENT_LINES = 4
SENDER_LINES = 15
_BARE_DOMAIN = re.compile(r"[a-z0-9][a-z0-9-]*\.[a-z]{2,}")
# a postcode before its town ('80786 München', '3012 CN Rotterdam', 'D-63571 Gelnhausen')
_POSTCODE = re.compile(r"(?:^|\s)(?:[A-Z]{1,2}-)?\d{4,5}(?:\s?[A-Z]{2})?\s+[^\W\d_]{2,}")
_AMOUNT = re.compile(r"\d[.,]\d{2}\b|[€$£%]")


def _sender_name(row: list[str]) -> str | None:
    """The name a sender line starts with: the small line above a window envelope's address,
    the supplier's name, street and town in one (``Kraxi GmbH · Flugzeugallee 17 · 12345
    Papierfeld``, ``weclapp.com | Somestreet 42 | 08155 Some city``, ``Alphabet, Lilienthal-
    allee 26, 80786 München``): three parts or more, two with a number, the first none."""
    text = " | ".join(row).strip()
    parts = [p.strip() for p in _SENDER_PARTS.split(text) if p.strip()]
    if len(parts) < 3 or any(ch.isdigit() for ch in parts[0]) or _AMOUNT.search(text) or \
            sum(any(ch.isdigit() for ch in p) for p in parts[1:]) < 2 or \
            not any(_POSTCODE.search(p) for p in parts[1:]):
        return None
    first = parts[0]
    return company_name(first) or (first if _BARE_DOMAIN.fullmatch(first) else None)


@dataclass
class VendorGuess:
    """A supplier name, how sure the evidence makes it, and the text it was read from."""

    name: str
    confidence: float
    raw: str
    evidence: list[str] = field(default_factory=list)


def _compact(name: str) -> str:
    """A name's key: its letters and digits in any script, accents and case dropped, legal
    form cut off (``Société Générale SA`` and ``SOCIETE GENERALE`` share one; a Greek or
    Chinese name has one too)."""
    bare = unicodedata.normalize("NFKD", COMPANY_SUFFIX.sub("", name))
    return re.sub(r"[\W_]", "", "".join(ch for ch in bare if not unicodedata.combining(ch))
                  ).casefold()


def _respaced(cell: str) -> str:
    """OCR of small print drops spaces: ``AmazonWebServices,Inc.`` is ``Amazon Web Services,
    Inc.``. A long run of letters that changes case inside itself at least twice is split
    where it does (``WSRetailServicesPvt.Ltd.``); shorter names keep their inner capitals
    (``iViveLabs``, ``SanDisk``)."""
    def split(token: str) -> str:
        if len(token) < 12 or len(_CASE_CHANGE.findall(token)) < 2:
            return token
        token = _CASE_CHANGE.sub(" ", token)
        return re.sub(r"([,.])(?=[A-Z][a-z])", r"\1 ", token)
    return " ".join(split(token) for token in cell.split(" "))


# where a glued word's next one starts: 'nW' in 'AmazonWeb', 'SR' in 'WSRetail'
_CASE_CHANGE = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


#: The rest of a partnership's name after its first comma: ``Smith and Ebert``.
_PARTNERS = r"\s*[A-Z][^\W\d_]+\s+(?:and|&|und|et|en|y|e)\s+[A-Z][^\W\d_]+\s*$"


def company_name(cell: str) -> str | None:
    """The company name a line (or a laid-out line's cell) starts with: title words, a sender
    line's address parts and anything after a legal form cut off; None when what is left
    does not look like a name (digits, a colon, more than six words, no capital)."""
    # OCR drops the space after a comma too: 'Amazon Web Services,Inc.'
    cell = re.sub(r",(?=[A-Z])", ", ", _respaced(_unmarked(cell.strip())))
    # OCR reads the D of a capitals 'PTY LTD' as an O
    cell = re.sub(r"\b(PTY\.?|PVT\.?) LT[O0]\b", r"\1 LTD", cell)
    parts = _PARTS.split(cell)
    # a sender line's parts (not a sentence's), the others an address's ('QualityHosting AG -
    # Uferweg 40-42 - D-63571 Gelnhausen'); a name with a dash in it stays whole ('GNR - Guarda
    # Nacional Republicana')
    if len(cell.split()) <= MAX_SENDER_WORDS and \
            any(ch.isdigit() for part in parts[1:] for ch in part):
        cell = parts[0]
    labelled = _NAME_LABEL.match(cell) is not None
    cell = _FROM_WORD.sub("", _NAME_LABEL.sub("", cell))
    cell = re.sub(r"\s+", " ", TITLE.sub("", cell)).strip()
    inside = _SUFFIX_INSIDE.match(cell)
    # a 'Name:' field holds the whole name
    if inside is not None and not labelled and \
            not _NAME_GOES_ON.fullmatch(cell, inside.start("form")):
        cell = inside.group("name")
    # an address after a comma is cut off, a legal form after one is the name's (and in a
    # 'Name:' field the comma is the name's: 'Bartkowiak, Dróżdż and Górecki')
    # and a partnership's names are one name ('Towne, Smith and Ebert')
    comma = "" if labelled else rf"|,(?!\s*(?:{_LEGAL_FORMS})(?:\s|$))(?!{_PARTNERS})"
    cell = re.split(rf"\s\d{{1,4}}\s+\w{comma}|"
                    r"\s(?=(?:INVOICE|Invoice|FACTURE|Factura|Rechnung)\b)", cell)[0].strip()
    words = cell.split()
    if not 1 <= len(words) <= 6 or any(ch.isdigit() for ch in cell) or ":" in cell:
        return None
    if sum(ch.isalpha() for ch in cell) < 2:
        return None  # a letter alone: a form's box ('A', an Argentine invoice's class)
    if is_name_key(cell):
        return None
    if _NOT_A_NAME.search(cell):
        return None  # a web address, an e-mail, a producer's note ('Powered by TCPDF')
    if cell.lower().rstrip(".") in COUNTRIES or cell.lower() in COUNTRIES:
        return None  # an address's country line ('Nederland', 'United Kingdom')
    first = words[0]
    if _SALUTATION.match(first) and not COMPANY_SUFFIX.search(cell):
        return None  # a person addressed ('Dhr. M el Mathari', 'Mrs Jane Doe'): a customer
    # 'Acme', 'ACME', and names that keep a lower-case start: 'e-Luscious', 'iViveLabs', or
    # that end with a legal form: 'bol.com b.v.'; a script without capitals (Arabic, Hebrew,
    # Chinese, Thai) has no lower-case start either
    caseless = not any(ch.isupper() or ch.islower() for ch in first)
    if not (first[:1].isupper() or any(ch.isupper() for ch in first[1:]) or caseless
            or COMPANY_SUFFIX.search(cell)):
        return None
    return cell


def is_name_key(cell: str) -> bool:
    """Whether a cell is a key over a name (``Nome / Nome Empresarial``, ``Company name``),
    which is no name itself."""
    return _NAME_KEY.match(cell.strip()) is not None


#: An e-mail address's local part (``jaxson.vandoorn@``): a freelancer's spells their name.
_MAILBOX = re.compile(r"\b([a-z0-9][a-z0-9._-]{2,40})@", re.IGNORECASE)


def _domains(text: str) -> set[str]:
    """The labels of the document's web and e-mail domains, and its mailboxes' names run
    together (``jaxson.vandoorn@`` spells ``Jaxson Van Doorn``)."""
    labels = {label.replace("-", "") for m in _DOMAIN.finditer(text)
              for label in m.group(1).lower().split(".") if len(label) >= 3}
    mailboxes = {re.sub(r"[._-]", "", m.group(1).lower()) for m in _MAILBOX.finditer(text)}
    return labels | {box for box in mailboxes if len(box) >= 6 and box not in _ROLE_MAILBOXES}


#: Mailboxes named for a role, not a person or a company (``client@example.com`` spells no
#: ``Client Some Long Client``).
_ROLE_MAILBOXES = frozenset({
    "client", "clients", "customer", "customers", "billing", "invoice", "invoices", "invoicing",
    "contact", "support", "service", "office", "accounts", "account", "accounting", "hello",
    "noreply", "donotreply", "payments", "finance", "orders", "webmaster", "postmaster"})


def _spelled_by_domain(name: str, domains: set[str]) -> bool:
    key = _compact(name)
    if len(key) < 4:
        return False  # an acronym the page's domains spell by chance ('S.I.I.', www.sii.cl)
    # 'azure-interior.com' spells Azure Interior; 'aws.amazon.com' names Amazon Web Services
    return any(key == d or (len(d) >= 5 and key.startswith(d)) or
               (len(key) >= 5 and d.startswith(key)) for d in domains)


def _lower_case_brand(cell: str, domains: set[str], seen: int) -> str | None:
    """A brand written in small letters in the letterhead (``ironpress``, ``mailgun``), which
    :func:`company_name` takes for a word: a name only where the document's own domain spells
    it (``billing@ironpress.dev``)."""
    word = cell.strip()
    if seen > LETTERHEAD_LINES or not re.fullmatch(r"[a-z][a-z0-9.\-]{3,30}", word):
        return None
    return word if _spelled_by_domain(word, domains) else None


#: A buyer label starting a cell, then a name: ``Client Acme Corp``, ``Bill to: Acme``.
_BUYER_LABEL_INLINE = re.compile(
    r"(?:" + "|".join(re.escape(label) for label in sorted(BUYER_LABELS, key=len, reverse=True))
    + r")\b:?[ \t]+\S", re.IGNORECASE)


def _under_buyer_label(rows: list[list[str]], index: int, column: int) -> bool:
    """Whether the cell at (``index``, ``column``) sits in a customer's address block: a
    buyer label before it on its line or starting the cell itself (``Client Acme Corp``), or
    above it in its column within four lines, with no blank line or other field (``Invoice
    no: 9``) in between."""
    for cell in rows[index][:column]:
        if cell.strip().lower().rstrip(":").strip() in BUYER_LABELS:
            return True
    if _BUYER_LABEL_INLINE.match(rows[index][column].strip()):
        return True  # 'Client Some Long Client | Payable To ...': the label starts the cell
    for above in reversed(rows[max(0, index - 4):index]):
        if not above:
            return False  # a blank line ends the address block
        target = above[min(column, len(above) - 1)]
        text = target.strip().lower().rstrip(":").strip()
        # a buyer's heading ('Bill to', 'To', 'Dati cliente') or its label with the name after
        if _heading([target]) == "buyer" or \
                any(text.startswith(label + ":") for label in BUYER_LABELS):
            return True
        if ":" in target:
            return False  # another field's line: the block above is not this one's
    return False


def is_party_heading(cell: str) -> bool:
    """Whether a cell is a party's heading (``Dati cliente``, ``To``, ``Verkäufer:``), which
    names no one: right of a seller's label it is the next column's heading, not a name."""
    return _heading([cell]) is not None


def _heading(row: list[str]) -> str | None:
    """``seller`` or ``buyer`` when a line is a party's heading alone (``Verkäufer:``,
    ``Käufer/Leistungsempfänger``, ``Ver käufer:`` as some PDFs space it), else None. A
    table's header row (``Klant | Order | Factuur``) heads columns, not a block."""
    if len(row) != 1:
        return None
    words = row[0].lower().strip().rstrip(":").split()
    # as written ('Adresse de livraison'), and without the words a heading may add to say it
    # heads the party's details ('Dati fornitore', 'Customer details')
    parts = {part for text in ("".join(words), "".join(
        word for word in words if word not in _HEADING_QUALIFIERS)) for part in text.split("/")}
    if parts & _SELLER_HEADINGS or _SELLER_BY.search(" ".join(words)):
        return "seller"
    if parts & _BUYER_HEADINGS:
        return "buyer"
    return None


#: Words a party's heading may add to its label: 'Supplier details', 'Dati fornitore',
#: 'Datos del cliente', 'Données du client', 'Kundendaten' excepted (one word).
_HEADING_QUALIFIERS = frozenset({
    "details", "detail", "information", "info", "data", "dati", "datos", "dados", "données",
    "del", "de", "do", "da", "della", "du", "des", "dello", "gegevens", "angaben",
    "informationen", "zum",
    "zur", "the", "of"})
#: A heading that says who supplied ('Product(s) provided by:', 'Issued by', 'Supplied by').
_SELLER_BY = re.compile(r"\b(?:provided|issued|supplied|sold|billed|invoiced)\s+by$")


# ... and a letter's 'From:' and 'To:', each alone on its line ('From: 1 May' is a period's
# start, no heading)
_SELLER_HEADINGS = {label.replace(" ", "") for label in SELLER_LABELS} | {"from"}
_BUYER_HEADINGS = {label.replace(" ", "") for label in BUYER_LABELS} | {"to"}
# 'Nummer : 549910', 'Globale Nummer: 4000001123452 (GLN)': a field of the block, no name
_PAIR = re.compile(r"^[^:]{1,40}?\s*:")


_FROM_CELL = re.compile(r"^from\s*:\s*(?P<name>\S.*)$", re.IGNORECASE)
_TO_CELL = re.compile(r"^to\s*:", re.IGNORECASE)


def _from_beside_to(row: list[str]) -> str | None:
    """The name in a row that sets the parties side by side, each after its key (``FROM:
    Company ABC | TO: John Doe``): the one after 'From'. Alone, 'From:' may start a period
    (``From: 1 May``); beside a 'To:' it names the sender."""
    if not any(_TO_CELL.match(cell.strip()) for cell in row):
        return None
    for cell in row:
        m = _FROM_CELL.match(cell.strip())
        if m is not None:
            return company_name(m.group("name"))
    return None


def _column_headings(row: list[str]) -> list[str] | None:
    """The parties of a row of party headings side by side (``Sprzedawca | Nabywca``,
    ``Empfänger | Aussteller``, or set too close for a column gap: ``Bill To: Bill From:``):
    each column below is that party's block; else None."""
    cells = row
    if len(row) == 1 and row[0].count(":") >= 2 and row[0].rstrip().endswith(":"):
        cells = [part.strip() + ":" for part in row[0].split(":")[:-1]]
    if len(cells) < 2:
        return None
    parties = [_heading([cell]) for cell in cells]
    return parties if all(parties) and "seller" in parties else None  # type: ignore[return-value]


def _one_per_party(parties: list[str]) -> list[str]:
    """A bilingual row's headings, each party once (``Prodejce | Provider | Kupující |
    Purchaser`` heads two columns, not four)."""
    return [who for at, who in enumerate(parties) if at == 0 or who != parties[at - 1]]


def _party_blocks(rows: list[list[str]]
                  ) -> tuple[list[tuple[int, str]], set[tuple[int, int]]]:
    """The names under seller headings (row, name), and the cells (row, column) of
    customers' blocks. A block runs to a blank line or the next heading; its name is the
    first line that reads as one, or its ``Name:`` field; its other ``key: value`` lines are
    skipped. Headings side by side head a block each in their column."""
    sellers: list[tuple[int, str]] = []
    customer_cells: set[tuple[int, int]] = set()
    for index, row in enumerate(rows):
        columns = _column_headings(row)
        party = _heading(row)
        if party is None and columns is None:
            continue
        parties = columns or [party]
        named = [False] * len(parties)
        for below in range(index + 1, min(len(rows), index + 1 + BLOCK_LINES)):
            if not rows[below] or _heading(rows[below]) is not None or \
                    _column_headings(rows[below]) is not None:
                break
            if columns is not None and len(rows[below]) != len(columns) and \
                    len(rows[below]) == len(_one_per_party(columns)):
                columns = parties = _one_per_party(columns)
                named = [False] * len(parties)
            if columns is not None and len(rows[below]) != len(columns):
                continue  # a line across the columns, no party's
            for column, who in enumerate(parties):
                if who == "buyer":
                    customer_cells.add((below, column))
                    continue
                if named[column]:
                    continue
                cell = rows[below][column] if columns else " ".join(rows[below])
                line = cell.strip()
                pair = _PAIR.match(line)
                if pair is not None and not _NAME_LABEL.match(line):
                    continue
                # a 'Name:' field in the line's first cell ('Nombre: Acme SC | RFC: ...'),
                # else the whole line's
                name = company_name(rows[below][column] if columns else rows[below][0])
                if name is None and pair is not None and not columns:
                    name = company_name(line)
                if name is not None:
                    sellers.append((below, name))
                    named[column] = True
            if "buyer" not in parties and all(named):
                break  # every seller named, and no buyer's block left to mark
    return sellers, customer_cells


#: Words no name ends with: a name that does is unfinished ('House of' over 'Hoverboards').
_UNFINISHED = re.compile(r"\b(?:of|and|the|for|de|du|des|del|der|und|van|von|&)$",
                         re.IGNORECASE)
#: The rest of an unfinished name: one to three capitalised words, no digits, no colon.
_NAME_REST = re.compile(r"[A-ZÀ-Ý][\w'’.-]*(?: [A-ZÀ-Ý&][\w'’.-]*){0,2}")


def _finished(rows: list[list[str]], index: int, name: str,
              is_label: Callable[[str], bool]) -> str:
    """A letterhead name that ends with a word no name ends with ('House of'), completed by
    the first cell of one of the next two lines that holds the rest of it ('Hoverboards'),
    passing lines that hold a field's label (the columns of a letterhead interleave: 'Date:
    01.01.2019' between the two halves of a logo's words); else as it is."""
    if not _UNFINISHED.search(name):
        return name
    for below in rows[index + 1:index + 3]:
        if not below:
            return name
        cell = below[0].strip()
        if is_label(cell) or ":" in cell or "#" in cell:
            continue
        if _NAME_REST.fullmatch(cell):
            return company_name(f"{name} {cell}") or name
        return name
    return name


def _wrapped(rows: list[list[str]], index: int, column: int, name: str) -> str:
    """``name`` whole when it wraps onto the next line, whose part there ends with the legal
    form ('MVM Musterhafter' over 'Versicherungsverein Musterstadt a.G.'); else as it is. The
    cell of the first line stands for the whole where the value is shown on the page.
    Callers ask only for a letterhead's name or a payee's: lower on the page the line above
    a name is more often a heading ('Crediteur', 'INVOICE FROM')."""
    if COMPANY_SUFFIX.search(name) or index + 1 >= len(rows) or column >= len(rows[index + 1]):
        return name
    below = rows[index + 1][column].strip()
    if not COMPANY_SUFFIX.search(below) or any(ch.isdigit() for ch in below) or \
            len(below.split()) > 4:
        return name
    return company_name(f"{name} {below}") or name


def find_vendor(text: str, is_label: Callable[[str], bool]) -> VendorGuess | None:
    """The likeliest supplier named in ``text`` (reading-order text, a laid-out page's cells
    separated by `` | ``), or None. ``is_label`` says whether a cell is a field's label (the
    extractor's vocabulary), which no name is."""
    # blank lines are kept (empty rows): they end an address block
    rows = [ln.split(" | ") if ln.strip() else [] for ln in text.strip().splitlines()]
    if not rows:
        return None
    domains = _domains(text)
    lowered = text.lower()
    scores: dict[str, VendorGuess] = {}

    def credit(name: str, raw: str, why: str, weight: float) -> None:
        key = _compact(name)
        if not key:
            return
        guess = scores.setdefault(key, VendorGuess(name, 0.0, raw))
        if why not in guess.evidence:
            guess.evidence.append(why)
            guess.confidence += weight
        if COMPANY_SUFFIX.search(name) and not COMPANY_SUFFIX.search(guess.name):
            guess.name, guess.raw = name, raw  # the fuller spelling, with its legal form

    for index, row in enumerate(rows):
        joined = " | ".join(row)   # (an empty row joins to nothing)
        for m in _PAYEE.finditer(joined):
            name = company_name(m.group("name"))
            if name is not None:
                # a payee's name wrapped in its narrow column ('Payable To Lowland Applied
                # Research' over 'Company') is whole with the line below
                column = joined[:m.start()].count(" | ")
                name = _wrapped(rows, index, column, name)
                credit(name, m.group(0), "payee", PAYEE)
    for index, row in enumerate(rows[:SENDER_LINES]):
        name = _from_beside_to(row)
        if name is not None:
            credit(name, " | ".join(row), "from, beside to", SELLER_BLOCK)
    sellers, recipient = _party_blocks(rows)  # recipient: rows of a customer's address
    for index, name in sellers:
        credit(name, " | ".join(rows[index]), "under a seller heading", SELLER_BLOCK)
    for index, row in enumerate(rows[:SENDER_LINES]):
        sender = _sender_name(row)
        if sender is not None:
            credit(sender, " | ".join(row), "sender line", SENDER)
            for below in range(index + 1, min(len(rows), index + 1 + RECIPIENT_LINES)):
                if not rows[below]:
                    break
                recipient.add((below, 0))
    seen = 0  # non-blank lines so far: the letterhead is the first few
    for index, row in enumerate(rows):
        seen += bool(row)
        for column, cell in enumerate(row):
            name = company_name(cell) or _lower_case_brand(cell, domains, seen)
            if name is None or is_label(cell) or _under_buyer_label(rows, index, column) or \
                    (index, column) in recipient or is_party_heading(cell):
                continue  # (a party's heading, 'To' or 'Dati fornitore', names no one)
            letterhead = seen <= LETTERHEAD_LINES
            if letterhead:
                name = _wrapped(rows, index, column, name)
                if column == 0:
                    name = _finished(rows, index, name, is_label)
            suffix = COMPANY_SUFFIX.search(name) is not None
            domain = _spelled_by_domain(name, domains)
            if not (suffix or domain or letterhead or _compact(name) in scores):
                continue  # a name-like line in the body: a description, a street
            if suffix:
                credit(name, cell, "legal form", LEGAL_FORM)
            if letterhead:
                credit(name, cell, "letterhead", LETTERHEAD if column == 0 else LETTERHEAD - 0.5)
            if domain:
                credit(name, cell, "domain", DOMAIN)
            near = rows[max(0, index - 3):index + 4]
            if any(_IDENTITY.search(" | ".join(r)) for r in near):
                credit(name, cell, "beside identifiers", BESIDE_IDENTIFIERS)
            if lowered.count(name.lower()) >= 2:
                credit(name, cell, "repeated", REPEATED)
    if not scores:
        return None
    # the best supported; on a tie, the one read first
    best = max(scores.values(), key=lambda g: g.confidence)
    if best.confidence < MIN_SCORE:
        return None
    score = best.confidence
    best.confidence = round(min(0.95, 0.6 + 0.09 * score), 3)
    return best
