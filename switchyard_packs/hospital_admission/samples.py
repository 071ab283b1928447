"""Synthetic hospital admission forms for the demo and the chaos run, with the payer records
and the bed capacity they need.

Every person, number and hospital here is made up (names drawn from short lists and combined
at random; phone numbers in the 555 range). :func:`workload` is deterministic by seed: the same
seed gives the same forms, members and units. Forms come in four layouts a hospital desk
receives: a typed intake form (``Label: value``), a two-column registration sheet (``|``
between the columns), a transfer letter from another hospital, and a JSON record from an
upstream ADT system. Each form has a *scenario*, what the payer and the bed board will make of
it:

* ``match``: the payer's record agrees and a bed is free: admitted without a person;
* ``dob_differs``, ``name_differs``, ``inactive``, ``unknown_member``,
  ``elective_not_covered``: the payer disagrees on that (an insurance ticket names the field);
* ``consent_not_signed``: the consent box says no (or is missing): a person checks first;
* ``unit_full``: the form asks for a bed type the unit has none of free
  (:data:`FULL_UNIT`); the admission waits until a bed is discharged.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

SCENARIOS = ("match", "dob_differs", "name_differs", "inactive", "unknown_member",
             "elective_not_covered", "consent_not_signed", "unit_full")
#: Which payer fields each scenario makes disagree (what its insurance ticket names).
DISCREPANCIES: dict[str, tuple[str, ...]] = {
    "dob_differs": ("date_of_birth",), "name_differs": ("patient_name",),
    "inactive": ("coverage_status",), "unknown_member": ("member_id",),
    "elective_not_covered": ("admission_type",)}
#: Order in which scenarios are dealt: every admission in two admits straight through, and
#: even a handful of forms shows several kinds of ticket.
_DEAL = ("match", "dob_differs", "match", "consent_not_signed", "match", "name_differs",
         "match", "unit_full", "match", "inactive", "match", "unknown_member", "match",
         "elective_not_covered", "match", "match")
LAYOUTS = ("intake", "two_column", "letter", "adt_json")
#: The unit and bed type the ``unit_full`` forms ask for; the workload's units leave none free.
FULL_UNIT = ("medical", "isolation")
#: The default hospital's bed types per unit (the demo downstream's, see its beds module).
UNIT_BED_TYPES = {"emergency": ("standard",), "medical": ("standard", "isolation"),
                  "surgical": ("standard",), "icu": ("icu",), "maternity": ("standard",),
                  "pediatrics": ("standard",), "cardiology": ("standard", "telemetry")}

_FIRST_F = ("Amara", "Beatriz", "Chloe", "Daria", "Elena", "Fatima", "Greta", "Hana", "Ines",
            "Jovana", "Keiko", "Leila", "Marisol", "Nadia", "Olga", "Priya", "Rosa", "Sofia",
            "Tamsin", "Yara")
_FIRST_M = ("Aaron", "Bruno", "Caleb", "Dmitri", "Emeka", "Felix", "Goran", "Hugo", "Idris",
            "Jonas", "Kofi", "Lars", "Mateo", "Niko", "Omar", "Pavel", "Rafael", "Soren",
            "Tariq", "Viktor")
_LAST = ("Abernathy", "Barros", "Castellano", "Duval", "Eriksen", "Fairweather", "Galloway",
         "Haddad", "Ivanova", "Jansen", "Kowalczyk", "Lindqvist", "Moreau", "Nakagawa",
         "Okonkwo", "Petrov", "Quintero", "Rasmussen", "Szabo", "Thorne", "Umarov", "Valente",
         "Whitlock", "Yilmaz", "Zamora")
#: Names a payer may hold instead (a nickname, a maiden name): the name_differs scenario.
_NICKNAMES = {"Elena": "Lena", "Sofia": "Sophie", "Daria": "Dasha", "Jonas": "Jon",
              "Mateo": "Matthew", "Rafael": "Rafa", "Viktor": "Victor", "Pavel": "Paul"}
_PAYERS = (("Northwind Health", "N"), ("Harborview Mutual", "H"), ("Summit Health Plan", "S"),
           ("Contoso Care", "C"), ("Bluepeak Benefits", "B"))
_PLANS = ("Gold PPO", "Silver HMO", "Bronze EPO", "Platinum PPO")
_HOSPITALS = ("Riverbend General Hospital", "St. Aldwin Medical Center",
              "Lakeshore Regional Hospital", "Mercy Vale Hospital")
_SENDERS = ("Hollow Creek Community Hospital", "Eastmoor District Hospital",
            "Pine Ridge Medical Center")
_PHYSICIANS = ("Dr. A. Okafor", "Dr. M. Lindgren", "Dr. S. Patel", "Dr. R. Castillo",
               "Dr. J. Whitaker", "Dr. E. Novak", "Dr. H. Tanaka")
_DIAGNOSES = {
    "emergency": ("Fractured left femur after a fall", "Acute appendicitis",
                  "Severe dehydration with vomiting"),
    "medical": ("Community-acquired pneumonia", "Cellulitis of the right lower leg",
                "Diabetic ketoacidosis", "Acute kidney injury"),
    "surgical": ("Elective right hip replacement", "Laparoscopic cholecystectomy",
                 "Inguinal hernia repair"),
    "icu": ("Septic shock", "Respiratory failure requiring ventilation"),
    "maternity": ("Labour at 39 weeks", "Pre-eclampsia at 36 weeks"),
    "pediatrics": ("Bronchiolitis", "Asthma exacerbation", "Febrile seizure"),
    "cardiology": ("Chest pain, rule out myocardial infarction", "Atrial fibrillation with "
                   "rapid ventricular response", "Heart failure exacerbation"),
}
_ISOLATION_DIAGNOSES = ("Suspected tuberculosis", "Influenza A with pneumonia",
                        "C. difficile colitis")
_ALLERGIES = ("NKDA", "Penicillin (rash)", "Latex", "Sulfa drugs, shellfish", "Codeine (nausea)",
              "No known allergies", "Iodine contrast")
_RELATIONS = {"female": ("spouse", "daughter", "mother", "partner", "sister"),
              "male": ("spouse", "son", "father", "partner", "brother")}
_UNIT_WORDS = {"emergency": ("Emergency", "ED"), "medical": ("Medical", "Internal Medicine"),
               "surgical": ("Surgical", "General Surgery"), "icu": ("ICU", "Intensive Care"),
               "maternity": ("Maternity", "Labor and Delivery"),
               "pediatrics": ("Pediatrics", "Peds"), "cardiology": ("Cardiology", "CCU")}
_TODAY = date(2026, 11, 20)   # the forms' own dates: fixed, so a seed gives the same forms


@dataclass(frozen=True)
class Person:
    first: str
    last: str
    sex: str                    # female | male
    birth: date
    mrn: str                    # "" when the form has none

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


@dataclass(frozen=True)
class Admission:
    """One admission form and what it should come to."""

    key: str                    # the submission's idempotency key
    scenario: str
    layout: str
    content_type: str           # text/plain or application/json
    text: str                   # the form as submitted
    fields: dict[str, Any]      # what the form says, by the pack's field names
    expected_discrepancies: tuple[str, ...] = ()
    readmission: bool = False   # the patient was admitted before (the EHR matches them)

    @property
    def kind(self) -> str:
        return "hospital_admission"


@dataclass
class Workload:
    admissions: list[Admission] = field(default_factory=list)
    #: member id -> the payer's record (the body of ``PUT /_/payer/members/{member_id}``)
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: unit -> the body of ``PUT /_/beds/units/{unit}`` (capacity, and beds held already)
    units: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)


def _date_text(day: date, style: int) -> str:
    """Notations a form uses (none with day and month in doubt)."""
    month = day.strftime("%B")
    return (day.isoformat(), f"{day.day} {month} {day.year}",
            f"{month} {day.day}, {day.year}", f"{day.day:02d}.{day.month:02d}.{day.year}"
            )[style % 4]


def _person(rng: random.Random, unit: str) -> Person:
    sex = "female" if unit == "maternity" else rng.choice(("female", "male"))
    first = rng.choice(_FIRST_F if sex == "female" else _FIRST_M)
    if unit == "pediatrics":
        age = rng.randint(1, 15)
    elif unit == "maternity":
        age = rng.randint(19, 42)
    else:
        age = rng.randint(22, 91)
    birth = _TODAY - timedelta(days=age * 365 + rng.randint(0, 364))
    mrn = f"MRN{rng.randint(1000000, 9999999)}" if rng.random() < 0.6 else ""
    return Person(first, rng.choice(_LAST), sex, birth, mrn)


def _phone(rng: random.Random) -> str:
    return f"+1 555 {rng.randint(200, 999)} {rng.randint(1000, 9999)}"


def _contact(rng: random.Random, person: Person) -> str:
    sex = rng.choice(("female", "male"))
    first = rng.choice(_FIRST_F if sex == "female" else _FIRST_M)
    relation = rng.choice(("mother", "father") if person.birth.year > _TODAY.year - 18
                          else _RELATIONS[sex])
    if relation in ("mother", "father"):
        relation = "mother" if sex == "female" else "father"
    return f"{first} {person.last} ({relation}) {_phone(rng)}"


def _admission_fields(rng: random.Random, scenario: str, person: Person, unit: str,
                      bed_type: str, admission_type: str) -> dict[str, Any]:
    payer, prefix = rng.choice(_PAYERS)
    fields: dict[str, Any] = {
        "patient_name": person.name, "date_of_birth": person.birth.isoformat(),
        "sex": person.sex, "mrn": person.mrn or None, "admission_type": admission_type,
        "requested_unit": unit, "bed_type": bed_type,
        "admitting_physician": rng.choice(_PHYSICIANS),
        "diagnosis": rng.choice(_ISOLATION_DIAGNOSES if bed_type == "isolation"
                                else _DIAGNOSES[unit]),
        "insurance_payer": payer, "member_id": f"{prefix}{rng.randint(100000000, 999999999)}",
        "group_number": str(rng.randint(10000, 99999)),
        "subscriber": person.name,
        "emergency_contact": _contact(rng, person),
        "allergies": rng.choice(_ALLERGIES),
        "consent_signed": scenario != "consent_not_signed",
    }
    if unit == "pediatrics":   # a parent holds the policy
        fields["subscriber"] = fields["emergency_contact"].split(" (")[0]
    if scenario == "match" and rng.random() < 0.3:
        second, second_prefix = rng.choice([p for p in _PAYERS if p[0] != payer])
        fields.update(secondary_payer=second,
                      secondary_member_id=f"{second_prefix}{rng.randint(100000000, 999999999)}",
                      secondary_group_number=f"G-{rng.randint(1000, 9999)}")
    return fields


def _member(rng: random.Random, scenario: str, fields: dict[str, Any],
            person: Person) -> tuple[str, dict[str, Any]] | None:
    """The payer's record for the form's member, as the scenario has it (None: none)."""
    record = {"payer": fields["insurance_payer"], "plan": rng.choice(_PLANS),
              "status": "active", "patient_name": person.name,
              "date_of_birth": person.birth.isoformat(),
              "group_number": fields["group_number"], "subscriber": fields["subscriber"],
              "covers": ["emergency", "elective", "transfer"]}
    member_id = fields["member_id"]
    if scenario == "dob_differs":
        birth = person.birth
        swapped = birth.replace(month=birth.day, day=birth.month) \
            if birth.day <= 12 and birth.day != birth.month else birth.replace(
                year=birth.year - 1)
        record["date_of_birth"] = swapped.isoformat()
    elif scenario == "name_differs":
        first = _NICKNAMES.get(person.first)
        record["patient_name"] = f"{first} {person.last}" if first else \
            f"{person.first} {rng.choice([n for n in _LAST if n != person.last])}"
    elif scenario == "inactive":
        record.update(status="inactive",
                      ended=(_TODAY - timedelta(days=rng.randint(20, 400))).isoformat())
    elif scenario == "unknown_member":   # the payer knows the person under another number
        digits = member_id[1:]
        member_id = member_id[0] + digits[::-1] if digits != digits[::-1] else member_id + "0"
    elif scenario == "elective_not_covered":
        record.update(plan="Emergency Only EPO", covers=["emergency", "transfer"])
    return member_id, record


# -- layouts -------------------------------------------------------------------------------

def _sex_word(sex: str, short: bool) -> str:
    return ("F" if sex == "female" else "M") if short else sex.capitalize()


def _intake(rng: random.Random, f: dict[str, Any], person: Person) -> str:
    hospital = rng.choice(_HOSPITALS)
    unit_word = _UNIT_WORDS[f["requested_unit"]][rng.randint(0, 1)]
    consent = "Yes" if f["consent_signed"] else rng.choice(("No", "Not signed - patient "
                                                            "sedated"))
    lines = [hospital, "INPATIENT ADMISSION / REGISTRATION", "",
             f"Patient Name: {person.last}, {person.first}",
             f"Date of Birth: {_date_text(person.birth, rng.randint(0, 3))}",
             f"Sex: {_sex_word(person.sex, True)}"]
    if person.mrn:
        lines.append(f"MRN: {person.mrn}")
    lines += [f"Admission Type: {f['admission_type'].capitalize()}",
              f"Admit to Unit: {unit_word}",
              f"Bed Type: {f['bed_type'].capitalize()}",
              f"Admitting Physician: {f['admitting_physician']}",
              f"Admitting Diagnosis: {f['diagnosis']}", "",
              f"Primary Insurance: {f['insurance_payer']}",
              f"Member ID: {f['member_id']}",
              f"Group Number: {f['group_number']}",
              f"Subscriber: {f['subscriber']}"]
    if f.get("secondary_member_id"):
        lines += [f"Secondary Insurance: {f['secondary_payer']}",
                  f"Secondary Member ID: {f['secondary_member_id']}",
                  f"Secondary Group Number: {f['secondary_group_number']}"]
    lines += ["", f"Emergency Contact: {f['emergency_contact']}",
              f"Allergies: {f['allergies']}",
              f"Consent to Treatment Signed: {consent}", "",
              f"Registered by: admitting clerk, {_TODAY.isoformat()}"]
    return "\n".join(lines)


def _two_column(rng: random.Random, f: dict[str, Any], person: Person) -> str:
    hospital = rng.choice(_HOSPITALS).upper()
    yes, no = ("X", " ") if f["consent_signed"] else (" ", "X")
    rows = [(f"Patient: {person.name}",
             f"DOB: {_date_text(person.birth, rng.randint(0, 3))}"),
            (f"Sex: {_sex_word(person.sex, False)}",
             f"MRN: {person.mrn}" if person.mrn
             else f"Visit #: V{rng.randint(10000000, 99999999)}"),
            (f"Admit Type: {f['admission_type'].upper()}",
             f"Admit To: {_UNIT_WORDS[f['requested_unit']][rng.randint(0, 1)]}"),
            (f"Bed Requested: {f['bed_type'].capitalize()}",
             f"Attending: {f['admitting_physician']}"),
            (f"Diagnosis: {f['diagnosis']}", f"Allergies: {f['allergies']}"),
            (f"Insurance: {f['insurance_payer']}", f"Policy #: {f['member_id']}"),
            (f"Group #: {f['group_number']}", f"Policy Holder: {f['subscriber']}")]
    if f.get("secondary_member_id"):
        rows.append((f"Secondary Insurance: {f['secondary_payer']}",
                     f"Secondary Member ID: {f['secondary_member_id']}"))
        rows.append((f"Secondary Group #: {f['secondary_group_number']}", ""))
    rows.append((f"Next of Kin: {f['emergency_contact']}",
                 f"Consent Signed: [{yes}] Yes  [{no}] No"))
    width = max(len(left) for left, _ in rows) + 1
    body = [f"{left:<{width}} | {right}" if right else left for left, right in rows]
    rule = "-" * (width + 42)
    return "\n".join([f"{hospital} - PATIENT ADMISSION RECORD", rule, *body, rule,
                      f"Form ADM-2 rev. 2025   Printed {_TODAY.isoformat()}"])


def _letter(rng: random.Random, f: dict[str, Any], person: Person) -> str:
    sender, receiver = rng.choice(_SENDERS), rng.choice(_HOSPITALS)
    pronoun = "She" if person.sex == "female" else "He"
    unit_word = _UNIT_WORDS[f["requested_unit"]][1]
    consent = "Consent to treatment signed: Yes" if f["consent_signed"] else \
        "Consent to treatment signed: No (to be obtained on arrival)"
    lines = [sender, "Department of Medicine", "",
             _TODAY.strftime("%d %B %Y"), "",
             f"To: Admissions Office, {receiver}",
             f"Re: Transfer of care - {person.name}", "",
             "Dear colleagues,", "",
             f"Thank you for accepting {person.name} for inpatient care on your "
             f"{unit_word} service. {pronoun} was admitted here with "
             f"{f['diagnosis'].lower()} and is stable for transport. A copy of the "
             "medication record and the latest results travel with the patient.", "",
             "Patient details:",
             f"Patient Name: {person.name}",
             f"Date of Birth: {_date_text(person.birth, rng.randint(0, 3))}",
             f"Sex: {_sex_word(person.sex, False)}"]
    if person.mrn:
        lines.append(f"Medical Record Number: {person.mrn}")
    lines += ["Admission Type: Transfer",
              f"Requested Unit: {unit_word}",
              f"Bed Type: {f['bed_type'].capitalize()}",
              f"Reason for Admission: {f['diagnosis']}",
              f"Accepting Physician: {f['admitting_physician']}",
              f"Insurance Carrier: {f['insurance_payer']}",
              f"Member ID: {f['member_id']}",
              f"Group #: {f['group_number']}",
              f"Policy Holder: {f['subscriber']}"]
    if f.get("secondary_member_id"):
        lines += [f"Secondary Insurance: {f['secondary_payer']}",
                  f"Secondary Member ID: {f['secondary_member_id']}",
                  f"Secondary Group #: {f['secondary_group_number']}"]
    lines += [f"Next of Kin: {f['emergency_contact']}",
              f"Allergies: {f['allergies']}",
              consent, "",
              "Kind regards,", "", rng.choice(_PHYSICIANS), f"Consultant, {sender}"]
    return "\n".join(lines)


def _adt_json(rng: random.Random, f: dict[str, Any], person: Person, key: str) -> str:
    record: dict[str, Any] = {
        "messageType": "ADT^A01", "sendingFacility": rng.choice(_HOSPITALS),
        "messageControlId": key, "eventTime": f"{_TODAY.isoformat()}T{rng.randint(0, 23):02d}:"
                                              f"{rng.randint(0, 59):02d}:00Z",
        "patient": {"patientName": f"{person.last.upper()}, {person.first.upper()}",
                    "dateOfBirth": person.birth.isoformat(),
                    "sex": _sex_word(person.sex, True),
                    **({"mrn": person.mrn} if person.mrn else {})},
        "visit": {"admissionType": f["admission_type"].upper(),
                  "admitTo": _UNIT_WORDS[f["requested_unit"]][0],
                  "bedType": f["bed_type"], "attendingPhysician": f["admitting_physician"],
                  "admittingDiagnosis": f["diagnosis"]},
        "primaryInsurance": {"payer": f["insurance_payer"], "memberId": f["member_id"],
                             "groupNumber": f["group_number"], "subscriber": f["subscriber"]},
        "emergencyContact": f["emergency_contact"], "allergies": f["allergies"],
        "consentSigned": f["consent_signed"],
    }
    if f.get("secondary_member_id"):
        record.update(secondaryPayer=f["secondary_payer"],
                      secondaryMemberId=f["secondary_member_id"],
                      secondaryGroupNumber=f["secondary_group_number"])
    return json.dumps(record, indent=2)


# -- the workload --------------------------------------------------------------------------

def _unit_for(rng: random.Random, scenario: str, admission_type: str) -> tuple[str, str]:
    if scenario == "unit_full":
        return FULL_UNIT
    if admission_type == "emergency":
        unit = rng.choice(("emergency", "medical", "cardiology", "icu", "pediatrics"))
    elif admission_type == "elective":
        unit = rng.choice(("surgical", "surgical", "maternity", "cardiology", "medical"))
    else:
        unit = rng.choice(("medical", "cardiology", "icu", "surgical"))
    types = [t for t in UNIT_BED_TYPES[unit] if (unit, t) != FULL_UNIT]
    return unit, types[-1] if unit == "cardiology" and rng.random() < 0.6 else types[0]


def workload(count: int, seed: int = 7, prefix: str = "adm") -> Workload:
    """``count`` admission forms (scenarios dealt in a fixed order, then shuffled), the payer's
    records for them and a bed capacity with room for every form but the ``unit_full`` ones
    (whose unit and bed type has every bed taken)."""
    rng = random.Random(seed)
    out = Workload()
    scenarios = [_DEAL[i % len(_DEAL)] for i in range(count)]
    rng.shuffle(scenarios)
    admitted: list[tuple[Person, dict[str, Any]]] = []
    for index, scenario in enumerate(scenarios):
        key = f"{prefix}-{seed}-{index}"
        if scenario == "elective_not_covered":
            admission_type = "elective"
        elif scenario == "unit_full":
            admission_type = rng.choice(("emergency", "transfer"))
        else:
            admission_type = rng.choice(("emergency", "emergency", "elective", "transfer"))
        unit, bed_type = _unit_for(rng, scenario, admission_type)
        readmission = scenario == "match" and bool(admitted) and rng.random() < 0.2
        if readmission:   # the same patient, identifiers and insurance again (a new stay)
            person, earlier = rng.choice(admitted)
            fields = {**earlier, "admission_type": admission_type, "requested_unit": unit,
                      "bed_type": bed_type,
                      "diagnosis": rng.choice(_ISOLATION_DIAGNOSES if bed_type == "isolation"
                                              else _DIAGNOSES[unit])}
            if unit in ("maternity", "pediatrics"):   # the earlier patient's age and sex
                fields["requested_unit"], fields["bed_type"] = "medical", "standard"
                fields["diagnosis"] = rng.choice(_DIAGNOSES["medical"])
        else:
            person = _person(rng, unit)
            fields = _admission_fields(rng, scenario, person, unit, bed_type, admission_type)
            member = _member(rng, scenario, fields, person)
            if member is not None:
                out.members[member[0]] = member[1]
            if scenario == "match":
                admitted.append((person, fields))
        layouts = [lay for lay in LAYOUTS
                   if lay != "letter" or fields["admission_type"] == "transfer"]
        layout = layouts[rng.randrange(len(layouts))]
        if fields["admission_type"] == "transfer" and layout != "letter" and rng.random() < 0.5:
            layout = "letter"
        text = {"intake": lambda: _intake(rng, fields, person),
                "two_column": lambda: _two_column(rng, fields, person),
                "letter": lambda: _letter(rng, fields, person),
                "adt_json": lambda: _adt_json(rng, fields, person, key)}[layout]()
        out.admissions.append(Admission(
            key=key, scenario=scenario, layout=layout,
            content_type="application/json" if layout == "adt_json" else "text/plain",
            text=text, fields=fields, expected_discrepancies=DISCREPANCIES.get(scenario, ()),
            readmission=readmission))
    out.units = units_for(out.admissions)
    return out


def units_for(admissions: list[Admission], spare: int = 2) -> dict[str, dict[str, dict[str,
                                                                                      int]]]:
    """Capacity for every unit (all its bed types): the forms' beds plus ``spare``; the
    :data:`FULL_UNIT` bed type has one bed per ``unit_full`` form (at least one), all held."""
    needed: dict[tuple[str, str], int] = {}
    full = 0
    for admission in admissions:
        where = (admission.fields["requested_unit"], admission.fields["bed_type"])
        if where == FULL_UNIT:
            full += 1
        else:
            needed[where] = needed.get(where, 0) + 1
    units: dict[str, dict[str, dict[str, int]]] = {}
    for unit, types in UNIT_BED_TYPES.items():
        beds = {t: needed.get((unit, t), 0) + spare for t in types}
        units[unit] = {"beds": beds}
        if unit == FULL_UNIT[0]:
            beds[FULL_UNIT[1]] = max(1, full)
            units[unit]["occupied"] = {FULL_UNIT[1]: beds[FULL_UNIT[1]]}
    return units


__all__ = ["DISCREPANCIES", "FULL_UNIT", "LAYOUTS", "SCENARIOS", "Admission", "Person",
           "Workload", "units_for", "workload"]
