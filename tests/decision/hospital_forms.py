"""Synthetic hospital admission forms (no real person's data) with the values they hold.

Two families, written apart on purpose:

* :func:`examples` -- the pack's labelled router examples (``switchyard_packs/hospital_admission/
  examples.jsonl`` was written with ``python -m tests.decision.hospital_forms examples``): a
  typed form, a two-column form, a free-text transfer letter, an ADT system's JSON, OCR-like
  noisy text and an admission request by e-mail, each with label variants drawn at random;
* :func:`unseen` -- forms in styles the examples do not have (a registration sheet with ``=``
  and tabs, a nurse's hand-over e-mail, another system's JSON, a fax cover with a table-like
  block), other names, payers and wording: what the router's and the extractor's figures are
  measured on (tests/decision/test_hospital_admission.py prints the figures).

Each form comes with ``truth``: field -> the value the pack should read (as the extractor
reports it: dates ``YYYY-MM-DD``, enums by their value, ``true``/``false``).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sys
from dataclasses import dataclass, field
from typing import Any

FIRST = ["Amara", "Bastian", "Chiara", "Dmitri", "Esme", "Farid", "Greta", "Hamza", "Ines",
         "Jonah", "Keiko", "Luca", "Maren", "Nikhil", "Odette", "Pavel", "Quinn", "Rosalind",
         "Soren", "Tamsin", "Ulla", "Viktor", "Wren", "Yusuf", "Zofia", "Anneli", "Bruno",
         "Celeste", "Darius", "Elodie"]
LAST = ["Abernathy", "Brightwater", "Castellanos", "Dunmore", "Eriksen", "Fairweather",
        "Galloway", "Halvorsen", "Ibarra", "Jablonski", "Kowalczyk", "Lindqvist", "Marchetti",
        "Nakamura", "Okonkwo", "Pellegrini", "Quintero", "Rasmussen", "Sandoval", "Thorne",
        "Underhill", "Valdivia", "Whitcombe", "Yarrow", "Zelenko"]
PAYERS = ["Northwind Health Plan", "Contoso Care", "Harborview Mutual", "Summit Health Insurance",
          "Evergreen Medicaid", "Lakeside Medicare Advantage", "Bluepeak Health", "Meridian Assure"]
UNSEEN_FIRST = ["Aurelio", "Bettina", "Cosimo", "Delphine", "Emrys", "Fenna", "Gideon",
                "Hollis", "Isaura", "Jaspar", "Kalinda", "Leopold"]
UNSEEN_LAST = ["Ashcombe", "Brannigan", "Cheung-Ortiz", "Delacroix", "Eastwood", "Fitzroy",
               "Gutierrez-Lam", "Holloway", "Ingersoll", "Juniper"]
UNSEEN_PAYERS = ["Riverbend Health Cooperative", "Alder Mutual Insurance", "Cobalt Care Plan",
                 "Stonebridge Health"]
PHYSICIANS = ["Dr. A. Moreau", "Dr. K. Osei", "Dr. L. Petrov", "Dr. S. Whitfield", "Dr. R. Iyer",
              "Dr. M. Gallagher", "Dr. T. Nwosu", "Dr. E. Lindgren"]
#: (diagnosis or chief complaint, unit, bed type, admission types that fit)
CASES = [
    ("Community-acquired pneumonia", "medical", "standard", ("emergency", "transfer")),
    ("Chest pain, rule out acute coronary syndrome", "cardiology", "telemetry", ("emergency",)),
    ("Atrial fibrillation with rapid ventricular response", "cardiology", "telemetry",
     ("emergency", "transfer")),
    ("Acute appendicitis", "surgical", "standard", ("emergency",)),
    ("Elective total knee replacement", "surgical", "standard", ("elective",)),
    ("Laparoscopic cholecystectomy", "surgical", "standard", ("elective",)),
    ("Sepsis, urinary source", "icu", "icu", ("emergency", "transfer")),
    ("Diabetic ketoacidosis", "icu", "icu", ("emergency",)),
    ("Congestive heart failure exacerbation", "cardiology", "telemetry", ("emergency", "transfer")),
    ("Cellulitis of the left lower leg", "medical", "standard", ("emergency", "elective")),
    ("Suspected tuberculosis, cough and fever", "medical", "isolation", ("emergency", "transfer")),
    ("Induction of labour at 41 weeks", "maternity", "standard", ("elective",)),
    ("Labour, 39 weeks, contractions every 5 minutes", "maternity", "standard", ("emergency",)),
    ("Bronchiolitis, 8 months old", "pediatrics", "standard", ("emergency",)),
    ("Hip fracture after a fall", "surgical", "standard", ("emergency", "transfer")),
    ("COPD exacerbation", "medical", "standard", ("emergency",)),
]
ALLERGIES = ["NKDA", "Penicillin (rash)", "Sulfa drugs", "Latex", "Peanuts, shellfish",
             "Codeine (nausea)", "None known", "Iodine contrast"]
RELATIONS = ["spouse", "daughter", "son", "mother", "father", "partner", "sister", "brother"]

UNIT_WORDS = {"medical": ["Medical", "Medicine", "Internal Medicine", "4 West Medical"],
              "surgical": ["Surgical", "General Surgery", "Surgery"],
              "icu": ["ICU", "Intensive Care", "Critical Care", "MICU"],
              "maternity": ["Maternity", "Labor and Delivery", "L&D", "Obstetrics"],
              "pediatrics": ["Pediatrics", "Paediatrics", "Peds"],
              "cardiology": ["Cardiology", "Cardiac", "CCU"],
              "emergency": ["Emergency", "ED"]}
BED_WORDS = {"standard": ["Standard", "Standard bed", "General", "Med/Surg"],
             "isolation": ["Isolation", "Isolation room", "Negative pressure"],
             "telemetry": ["Telemetry", "Tele", "Monitored"],
             "icu": ["ICU", "ICU bed", "Critical care"]}
TYPE_WORDS = {"emergency": ["Emergency", "EMERGENCY", "Emergent", "ER", "Urgent"],
              "elective": ["Elective", "ELECTIVE", "Planned", "Scheduled"],
              "transfer": ["Transfer", "TRANSFER", "Transfer in", "Inter-facility transfer"]}
SEX_WORDS = {"female": ["F", "Female", "female", "W"], "male": ["M", "Male", "male"],
             "other": ["X", "Other", "Non-binary"], "unknown": ["U", "Unknown"]}


@dataclass
class Patient:
    """One synthetic admission: what a form says."""

    first: str
    last: str
    dob: dt.date
    sex: str
    mrn: str | None
    admission_type: str
    unit: str
    bed_type: str
    physician: str
    diagnosis: str
    payer: str
    member_id: str
    group: str
    subscriber: str | None
    secondary: tuple[str, str, str] | None  # payer, member id, group
    contact: str
    allergies: str
    consent: bool | None  # None: not on the form
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"

    def truth(self, *, mrn: bool = True, name: str | None = None) -> dict[str, str]:
        out = {"patient_name": name or self.name, "date_of_birth": self.dob.isoformat(),
               "sex": self.sex, "admission_type": self.admission_type,
               "requested_unit": self.unit, "bed_type": self.bed_type,
               "admitting_physician": self.physician, "diagnosis": self.diagnosis,
               "insurance_payer": self.payer, "member_id": self.member_id,
               "group_number": self.group, "emergency_contact": self.contact,
               "allergies": self.allergies}
        if self.mrn and mrn:
            out["mrn"] = self.mrn
        if self.subscriber:
            out["subscriber"] = self.subscriber
        if self.secondary:
            out.update(secondary_payer=self.secondary[0], secondary_member_id=self.secondary[1],
                       secondary_group_number=self.secondary[2])
        if self.consent is not None:
            out["consent_signed"] = "true" if self.consent else "false"
        return out


def patient(rng: random.Random, *, unseen: bool = False) -> Patient:
    first = rng.choice(UNSEEN_FIRST if unseen else FIRST)
    last = rng.choice(UNSEEN_LAST if unseen else LAST)
    diagnosis, unit, bed, types = rng.choice(CASES)
    born = dt.date(1938, 1, 1) + dt.timedelta(days=rng.randint(0, 365 * 80))
    if unit == "pediatrics":
        born = dt.date(2025, 1, 1) + dt.timedelta(days=rng.randint(0, 300))
    sex = "female" if unit == "maternity" else rng.choice(
        ["female", "male", "female", "male", "other", "unknown"])
    payers = UNSEEN_PAYERS if unseen else PAYERS
    payer = rng.choice(payers)
    secondary = None
    if rng.random() < 0.3:
        secondary = (rng.choice([p for p in payers if p != payer]),
                     f"{rng.choice('BCKQ')}{rng.randint(10000000, 99999999)}",
                     f"G-{rng.randint(1000, 9999)}")
    return Patient(
        first=first, last=last, dob=born, sex=sex,
        mrn=f"MRN{rng.randint(1000000, 9999999)}" if rng.random() < 0.7 else None,
        admission_type=rng.choice(types), unit=unit, bed_type=bed,
        physician=rng.choice(PHYSICIANS), diagnosis=diagnosis, payer=payer,
        member_id=f"{rng.choice('WXYZ')}{rng.randint(100000000, 999999999)}",
        group=f"{rng.randint(10000, 99999)}",
        subscriber=f"{rng.choice(FIRST)} {last}" if rng.random() < 0.3 else None,
        secondary=secondary,
        contact=f"{rng.choice(FIRST)} {last} ({rng.choice(RELATIONS)}) "
                f"+1 555 {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
        allergies=rng.choice(ALLERGIES), consent=True)


def _date(rng: random.Random, day: dt.date) -> str:
    return rng.choice([day.isoformat(), day.strftime("%d.%m.%Y"), day.strftime("%b %d, %Y"),
                       f"{day.day} {day.strftime('%B')} {day.year}",
                       day.strftime("%m/%d/%Y") if day.day > 12 else day.isoformat()])


def _w(rng: random.Random, table: dict[str, list[str]], key: str) -> str:
    return rng.choice(table[key])


def _labels(rng: random.Random) -> dict[str, str]:
    c = rng.choice
    return {"name": c(["Patient Name", "Name (Last, First)", "Patient", "Full Name", "Pt Name"]),
            "dob": c(["Date of Birth", "DOB", "Birth Date", "D.O.B."]),
            "sex": c(["Sex", "Gender"]),
            "mrn": c(["MRN", "Medical Record #", "Medical Record Number", "MR #"]),
            "type": c(["Admission Type", "Admit Type", "Type of Admission"]),
            "unit": c(["Requested Unit", "Admit to", "Unit", "Ward"]),
            "bed": c(["Bed Type", "Bed Requested", "Level of Care"]),
            "doc": c(["Admitting Physician", "Attending Physician", "Admitting Dr"]),
            "dx": c(["Admitting Diagnosis", "Chief Complaint", "Reason for Admission",
                     "Diagnosis"]),
            "payer": c(["Primary Insurance", "Insurance", "Insurance Carrier", "Payer"]),
            "member": c(["Member ID", "Policy #", "Policy Number", "Subscriber ID"]),
            "group": c(["Group #", "Group Number", "Group No"]),
            "subscriber": c(["Subscriber", "Policy Holder", "Subscriber Name"]),
            "contact": c(["Emergency Contact", "Next of Kin"]),
            "allergies": c(["Allergies", "Known Allergies", "Drug Allergies"]),
            "consent": c(["Consent signed", "Consent to Treat", "General Consent"])}


def _name(rng: random.Random, p: Patient, label: str) -> str:
    return f"{p.last}, {p.first}" if "Last" in label or rng.random() < 0.3 else p.name


def _consent(rng: random.Random, p: Patient) -> str:
    if p.consent is None:
        return ""
    if rng.random() < 0.3:
        return "[X] Yes  [ ] No" if p.consent else "[ ] Yes  [X] No"
    return rng.choice(["Yes", "Y", "yes"]) if p.consent else rng.choice(["No", "N", "no"])


def _triples(rng: random.Random, p: Patient
             ) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """(label, value, field) of a typed form, and what the pack should read from it."""
    lab = _labels(rng)
    name = _name(rng, p, lab["name"])
    out = [(lab["name"], name, "patient_name"), (lab["dob"], _date(rng, p.dob), "date_of_birth"),
           (lab["sex"], _w(rng, SEX_WORDS, p.sex), "sex")]
    if p.mrn:
        out.append((lab["mrn"], p.mrn, "mrn"))
    out += [(lab["type"], _w(rng, TYPE_WORDS, p.admission_type), "admission_type"),
            (lab["unit"], _w(rng, UNIT_WORDS, p.unit), "requested_unit"),
            (lab["bed"], _w(rng, BED_WORDS, p.bed_type), "bed_type"),
            (lab["doc"], p.physician, "admitting_physician"), (lab["dx"], p.diagnosis, "diagnosis"),
            (lab["payer"], p.payer, "insurance_payer"), (lab["member"], p.member_id, "member_id"),
            (lab["group"], p.group, "group_number")]
    if p.subscriber:
        out.append((lab["subscriber"], p.subscriber, "subscriber"))
    if p.secondary:
        out += [("Secondary Insurance", p.secondary[0], "secondary_payer"),
                ("Secondary Member ID", p.secondary[1], "secondary_member_id"),
                ("Secondary Group #", p.secondary[2], "secondary_group_number")]
    out += [(lab["contact"], p.contact, "emergency_contact"),
            (lab["allergies"], p.allergies, "allergies")]
    if p.consent is not None:
        out.append((lab["consent"], _consent(rng, p), "consent_signed"))
    return out, p.truth(name=name)


def _pairs(rng: random.Random, p: Patient) -> tuple[list[tuple[str, str]], dict[str, str]]:
    triples, truth = _triples(rng, p)
    return [(k, v) for k, v, _ in triples], truth


HEADERS = ["HOSPITAL ADMISSION FORM", "Inpatient Admission Request", "ADMISSION / REGISTRATION",
           "St. Aldric General Hospital - Patient Admission", "Admitting Office: Admission Record",
           "Riverside Regional Medical Center\nINPATIENT ADMISSION"]


def typed(rng: random.Random, p: Patient) -> tuple[str, dict[str, str]]:
    pairs, truth = _pairs(rng, p)
    sep = rng.choice([": ", ": ", " - ", "\t"])
    lines = [rng.choice(HEADERS), ""] + [f"{k}{sep}{v}" for k, v in pairs]
    if rng.random() < 0.5:
        lines.append(f"Signature: ________   Date: {dt.date(2026, 11, rng.randint(1, 28))}")
    return "\n".join(lines), truth


def two_column(rng: random.Random, p: Patient) -> tuple[str, dict[str, str]]:
    pairs, truth = _pairs(rng, p)
    rows = [" | ".join(f"{k}: {v}" for k, v in pairs[i:i + 2]) for i in range(0, len(pairs), 2)]
    head = rng.choice(HEADERS)
    return f"{head}\n{'=' * 40}\n" + "\n".join(rows), truth


def letter(rng: random.Random, p: Patient) -> tuple[str, dict[str, str]]:
    """A transfer letter: prose, then the demographic block the receiving desk needs."""
    pronoun = {"female": "She has", "male": "He has"}.get(p.sex, "They have")
    p.admission_type = "transfer"
    sender = rng.choice(["Valley Community Hospital", "Northgate Rehabilitation Centre",
                         "Eastbrook District Hospital", "Pine Hollow Clinic"])
    body = (f"{sender}\nTransfer of care\n\nDear Admitting Team,\n\n"
            f"We are transferring {p.name} to your {_w(rng, UNIT_WORDS, p.unit)} service for "
            f"further management of {p.diagnosis.lower()}. {pronoun} been stable for "
            f"transport; vital signs and medication list are enclosed. Please accept the "
            f"patient for inpatient admission.\n\n")
    lines = [f"Patient Name: {p.name}", f"DOB: {_date(rng, p.dob)}",
             f"Sex: {_w(rng, SEX_WORDS, p.sex)}", "Admission Type: Transfer",
             f"Reason for Admission: {p.diagnosis}",
             f"Bed Requested: {_w(rng, BED_WORDS, p.bed_type)}",
             f"Accepting Physician: {p.physician}",
             f"Insurance: {p.payer}", f"Member ID: {p.member_id}", f"Group #: {p.group}",
             f"Next of Kin: {p.contact}", f"Allergies: {p.allergies}",
             f"Admit to: {_w(rng, UNIT_WORDS, p.unit)}", "Consent to Treat: Yes"]
    middle = lines[4:12]
    rng.shuffle(middle)
    lines[4:12] = middle
    truth = p.truth(mrn=False)
    truth.pop("admitting_physician")  # "Accepting Physician" is not a label of the pack
    truth.pop("subscriber", None)
    for key in ("secondary_payer", "secondary_member_id", "secondary_group_number"):
        truth.pop(key, None)
    text = body + "\n".join(lines) + f"\n\nKind regards,\n{rng.choice(PHYSICIANS)}\n{sender}"
    return text, truth


def adt_json(rng: random.Random, p: Patient) -> tuple[str, dict[str, str]]:
    """An ADT system's admit message as JSON: sections one level deep."""
    doc: dict[str, Any] = {
        "messageType": rng.choice(["ADT^A01", "ADT_A01", "admit"]),
        "sentAt": f"2026-11-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:15:00Z",
        "patient": {"name": f"{p.last}, {p.first}" if rng.random() < 0.5 else p.name,
                    "dob": p.dob.isoformat(), "sex": p.sex[0].upper()},
        "visit": {"admission_type": p.admission_type[0].upper() if p.admission_type != "elective"
                  else "R", "unit": p.unit.upper() if p.unit == "icu" else p.unit.title(),
                  "bed_type": p.bed_type, "attending": p.physician,
                  "chief_complaint": p.diagnosis},
        "insurance": {"payer": p.payer, "member_id": p.member_id, "group_number": p.group},
        "emergency_contact": p.contact, "allergies": p.allergies,
        "consent_signed": True if p.consent else False,
    }
    if p.mrn:
        doc["patient"]["mrn"] = p.mrn
    truth = p.truth(name=doc["patient"]["name"])
    truth["admitting_physician"] = p.physician
    truth.pop("subscriber", None)
    for key in ("secondary_payer", "secondary_member_id", "secondary_group_number"):
        truth.pop(key, None)
    return json.dumps(doc), truth


_OCR = {"l": "1", "o": "0", "e": "c", "i": "l", "S": "5", "B": "8", "rn": "m", "a": "o"}


def _noisy(rng: random.Random, text: str, rate: float) -> str:
    out = []
    for word in text.split(" "):
        if rng.random() < rate:
            wrong = rng.choice(list(_OCR))
            word = word.replace(wrong, _OCR[wrong], 1)
        out.append(word)
    return " ".join(out)


def ocr(rng: random.Random, p: Patient) -> tuple[str, dict[str, str]]:
    """A scanned form read by OCR: a few letters wrong, ragged spacing. The labels stay clean;
    a value the noise changed is left out of the truth (no extractor can be asked for it)."""
    triples, truth = _triples(rng, p)
    lines = [_noisy(rng, rng.choice(HEADERS), 0.4)]
    for label, value, name in triples:
        noisy = _noisy(rng, value, 0.15)
        lines.append(f"{label}{rng.choice([':', ': ', ' :', ':  '])}{noisy}")
        if noisy != value:
            truth.pop(name, None)
    if rng.random() < 0.5:
        lines.append(_noisy(rng, "I consent to treatment and release of information to my "
                                 "insurer. Patient/guardian signature", 0.2))
    return "\n".join(lines), truth


def email(rng: random.Random, p: Patient) -> tuple[str, dict[str, str]]:
    """An admission request by e-mail from a clinic or the ED: a few sentences, then details."""
    sender = rng.choice(["ED triage", "Dr. Okafor's clinic", "Pre-admission clinic",
                         "Bed management", "Outpatient surgery scheduling"])
    opening = rng.choice([
        f"please admit the patient below ({p.admission_type}); a bed on "
        f"{_w(rng, UNIT_WORDS, p.unit)} is needed.",
        f"requesting an inpatient bed for a {p.admission_type} admission today.",
        "could you find a bed for this patient? Paperwork follows by fax.",
        f"patient seen this morning, needs admission under {p.physician}."])
    triples, truth = _triples(rng, p)
    keep = [t for t in triples if t[2] not in ("subscriber", "secondary_payer",
                                               "secondary_member_id", "secondary_group_number")]
    for _, _, name in triples:
        if name not in {t[2] for t in keep}:
            truth.pop(name, None)
    body = "\n".join(f"{label}: {value}" for label, value, _ in keep)
    text = (f"From: {sender}\nSubject: {rng.choice(['Admission request', 'Bed request', 'Admit - ' + p.admission_type])}"
            f"\n\nHello admitting,\n{opening}\n\n{body}\n\nThanks,\n{sender}")
    return text, truth


LAYOUTS = {"typed": typed, "two_column": two_column, "letter": letter, "adt_json": adt_json,
           "ocr": ocr,
           "email": email}


def examples(n: int = 210, seed: int = 17) -> list[tuple[str, str, dict[str, str]]]:
    """(layout, text, truth) for the pack's router examples, the layouts in turn."""
    rng = random.Random(seed)
    names = list(LAYOUTS)
    return [(names[i % len(names)], *LAYOUTS[names[i % len(names)]](rng, patient(rng)))
            for i in range(n)]


# -- forms in styles the examples do not have ---------------------------------------------------


def sheet(rng: random.Random, p: Patient) -> tuple[str, dict[str, str]]:
    """A registration sheet: ``LABEL = value`` in capitals, sections, a tab here and there."""
    name = f"{p.last.upper()}, {p.first.upper()}"
    lines = ["REGISTRATION SHEET - INPATIENT", "[PATIENT]", f"NAME (LAST, FIRST) = {name}",
             f"D.O.B. = {p.dob.strftime('%d.%m.%Y')}", f"GENDER = {p.sex[0].upper()}"]
    if p.mrn:
        lines.append(f"MEDICAL RECORD NUMBER = {p.mrn}")
    lines += ["[VISIT]", f"TYPE OF ADMISSION\t{p.admission_type.upper()}",
              f"ADMITTING UNIT = {_w(rng, UNIT_WORDS, p.unit).upper()}",
              f"LEVEL OF CARE = {p.bed_type.upper()}",
              f"ATTENDING PHYSICIAN = {p.physician}", f"DIAGNOSIS = {p.diagnosis}",
              "[COVERAGE]", f"PRIMARY PAYER = {p.payer}", f"POLICY NUMBER = {p.member_id}",
              f"GROUP NO = {p.group}", "[OTHER]", f"NEXT OF KIN = {p.contact}",
              f"ALLERGIES = {p.allergies}", "CONSENT FORM SIGNED = Y"]
    truth = p.truth(name=name)
    truth.pop("subscriber", None)
    for key in ("secondary_payer", "secondary_member_id", "secondary_group_number"):
        truth.pop(key, None)
    return "\n".join(lines), truth


def handover(rng: random.Random, p: Patient) -> tuple[str, dict[str, str]]:
    """A nurse's hand-over e-mail to the bed manager: prose with a few labelled lines."""
    text = (f"Subject: bed needed - {p.admission_type} admission\n\nHi team,\n\n"
            f"ED has a {p.diagnosis.lower()} who needs a bed today. Details below; the "
            f"paperwork is on the ward.\n\n"
            f"Patient: {p.name}\nBorn: {p.dob.strftime('%B %d, %Y')}\n"
            f"Gender: {p.sex}\nAdmit to: {_w(rng, UNIT_WORDS, p.unit)}\n"
            f"Bed: {p.bed_type}\nAdmission: {p.admission_type}\n"
            f"Attending: {p.physician}\nChief complaint: {p.diagnosis}\n"
            f"Carrier: {p.payer}\nMember #: {p.member_id}\nGroup: {p.group}\n"
            f"In case of emergency: {p.contact}\nAllergy: {p.allergies}\n"
            f"Consent on file: yes\n\nThanks,\nCharge nurse, ED")
    truth = p.truth(mrn=False)
    truth.pop("subscriber", None)
    for key in ("secondary_payer", "secondary_member_id", "secondary_group_number"):
        truth.pop(key, None)
    return text, truth


def other_json(rng: random.Random, p: Patient) -> tuple[str, dict[str, str]]:
    """Another system's JSON: flat camelCase keys the pack's labels do not spell the same."""
    doc = {"source": "bedboard-intake", "patientName": p.name, "birthDate": p.dob.isoformat(),
           "gender": p.sex, "admissionType": p.admission_type, "requestedUnit": p.unit,
           "bedType": p.bed_type, "admittingPhysician": p.physician, "diagnosis": p.diagnosis,
           "insurance": {"carrier": p.payer, "memberId": p.member_id, "groupNumber": p.group},
           "emergencyContact": p.contact, "allergies": p.allergies, "consentSigned": "yes"}
    if p.mrn:
        doc["mrn"] = p.mrn
    truth = p.truth()
    truth.pop("subscriber", None)
    for key in ("secondary_payer", "secondary_member_id", "secondary_group_number"):
        truth.pop(key, None)
    return json.dumps(doc, indent=2), truth


def fax(rng: random.Random, p: Patient) -> tuple[str, dict[str, str]]:
    """A fax cover sheet with the admission block as aligned columns (two or more spaces)."""
    rows = [("Patient Name", p.name), ("Date of Birth", p.dob.strftime("%m/%d/%Y")
                                       if p.dob.day > 12 else p.dob.isoformat()),
            ("Sex", p.sex[0].upper()), ("Admit Type", p.admission_type.title()),
            ("Unit", _w(rng, UNIT_WORDS, p.unit)), ("Bed Type", p.bed_type.title()),
            ("Admitting Physician", p.physician), ("Reason for Admission", p.diagnosis),
            ("Insurance Company", p.payer), ("Policy #", p.member_id),
            ("Group Number", p.group), ("Emergency Contact", p.contact),
            ("Allergies", p.allergies), ("Consent Signed", "Yes")]
    if p.mrn:
        rows.insert(1, ("MRN", p.mrn))
    width = max(len(k) for k, _ in rows) + 3
    text = ("FAX  -  CONFIDENTIAL HEALTH INFORMATION\nTo: Admitting / Bed Management\n"
            f"Pages: {rng.randint(2, 6)}\n\n" + "\n".join(f"{k.ljust(width)}{v}" for k, v in rows))
    truth = p.truth()
    truth.pop("subscriber", None)
    for key in ("secondary_payer", "secondary_member_id", "secondary_group_number"):
        truth.pop(key, None)
    return text, truth


UNSEEN_LAYOUTS = {"sheet": sheet, "handover": handover, "other_json": other_json, "fax": fax}


def unseen(n: int = 60, seed: int = 1717) -> list[tuple[str, str, dict[str, str]]]:
    """(layout, text, truth) in the styles the examples do not have, with other names."""
    rng = random.Random(seed)
    names = list(UNSEEN_LAYOUTS)
    return [(names[i % len(names)], *UNSEEN_LAYOUTS[names[i % len(names)]](
        rng, patient(rng, unseen=True))) for i in range(n)]


def admission_pdf(lines: tuple[str, ...]) -> bytes:
    """A one-page PDF form with a text layer: ``lines`` (``Label: value``) top to bottom."""
    import io

    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    y = A4[1] - 60
    pdf.setFont("Helvetica-Bold", 14)
    pdf.drawString(50, y, "Hospital Admission Form")
    pdf.setFont("Helvetica", 10)
    for line in lines:
        y -= 18
        label, _, value = line.partition(":")
        pdf.drawString(50, y, f"{label}:")
        pdf.drawString(220, y, value.strip())
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def _write_examples(path: str) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for _, text, _ in examples():
            out.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")


if __name__ == "__main__":   # python -m tests.decision.hospital_forms examples PATH
    if sys.argv[1:2] == ["examples"]:
        _write_examples(sys.argv[2])


def extraction_figures(pack: Any, forms: list[tuple[str, str, dict[str, str]]]
                       ) -> dict[str, tuple[int, int]]:
    """Field -> (read right, expected) over ``forms`` with the pack's extractor."""
    from switchyard.packs import extract_fields

    figures: dict[str, list[int]] = {}
    for _, text, truth in forms:
        read = extract_fields(pack, text).values
        for name, want in truth.items():
            right = figures.setdefault(name, [0, 0])
            right[1] += 1
            right[0] += read.get(name) == want
    return {name: (r, n) for name, (r, n) in sorted(figures.items())}


def ascii_pdf(lines: tuple[str, ...], title: str = "Hospital Admission Form") -> str:
    """A one-page PDF with a text layer, as ASCII text (so a golden case in YAML can hold it):
    ``Label: value`` lines, the label at the left and the value in a column to its right."""
    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    ops = ["BT", "/F1 14 Tf", f"1 0 0 1 50 780 Tm ({esc(title)}) Tj", "/F1 10 Tf"]
    y = 750
    for line in lines:
        label, _, value = line.partition(":")
        ops.append(f"1 0 0 1 50 {y} Tm ({esc(label + ':')}) Tj")
        ops.append(f"1 0 0 1 230 {y} Tm ({esc(value.strip())}) Tj")
        y -= 18
    ops.append("ET")
    content = "\n".join(ops)
    objects = ["<< /Type /Catalog /Pages 2 0 R >>",
               "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
               "/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               f"<< /Length {len(content)} >>\nstream\n{content}\nendstream"]
    out, offsets = "%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n"
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    return out


def routing_figures(version_dir: Any, forms: list[str], threshold: float = 0.8
                    ) -> dict[str, Any]:
    """How the trained router (``models/repository/document_router/<n>``) labels ``forms``:
    label -> count, and how many were labelled ``hospital_admission`` at or above
    ``threshold`` (the default auto-execute threshold)."""
    import collections

    from services.decision.training import features as F
    from services.decision.training import train

    params = train.load_params(version_dir)
    classes = json.loads(str(params["meta"].reshape(-1)[0]))["classes"]
    probs = F.router_predict_proba(forms, params["weights"], params["bias"],
                                   float(params["temperature"]))
    labels = [classes[i] for i in probs.argmax(axis=1)]
    sure = sum(1 for i, label in enumerate(labels) if label == "hospital_admission"
               and probs[i].max() >= threshold)
    return {"labels": dict(collections.Counter(labels)), "sure": sure, "n": len(forms),
            "min_confidence": round(float(probs.max(axis=1).min()), 3)}
