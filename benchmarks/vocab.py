"""Word and name pools shared by the SQL-dump and file-tree generators.

Everything here is built from a seeded ``random.Random`` so the corpus is byte-for-byte
reproducible. Pools are precomputed once so the generators can pick whole strings with
``Random.choices`` instead of composing text word by word (which would be ~10x slower).
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

FIRST_NAMES = (
    "Anna Ben Clara David Elena Felix Greta Hannah Ivan Julia Karl Lena Max Nora Oskar Paula "
    "Quentin Rosa Simon Tina Ulrich Vera Walter Xenia Yusuf Zoe Amir Beatrice Carlos Dana Emil "
    "Fatima George Helga Igor Jana Kevin Laura Marco Nadia Otto Petra Rafael Sara Thomas Ursula "
    "Viktor Wanda Yara Zeynep Aaron Bianca Conrad Diana Erik Frida Gustav Heidi Ines Jonas Kira "
    "Lukas Mia Noah Olga Pia Robert Sophie Theo Uwe Valentina William Alice Bruno Chloe Daniel"
).split()
LAST_NAMES = (
    "Miller Schmidt Novak Rossi Garcia Johnson Weber Fischer Meyer Wagner Becker Schulz Hoffmann "
    "Koch Richter Klein Wolf Schroeder Neumann Schwarz Zimmermann Braun Krueger Hofmann Hartmann "
    "Lange Schmitt Werner Krause Meier Lehmann Schmid Schulze Maier Koehler Herrmann Koenig Walter "
    "Mayer Huber Kaiser Fuchs Peters Lang Scholz Moeller Weiss Jung Hahn Vogel Friedrich Keller "
    "Guenther Frank Berger Winkler Roth Beck Lorenz Baumann Franke Albrecht Schuster Simon Ludwig "
    "Boehm Winter Kraus Martin Schumacher Kraemer Vogt Stein Jaeger Otto Sommer Gross Seidel "
    "Heinrich Brandt Haas Schreiber Graf Schulte Dietrich Ziegler Kuhn Kuehn Pohl Engel Horn Busch"
).split()
STREETS = (
    "Main Street|Oak Avenue|Maple Road|Station Road|Church Lane|Mill Street|Park Avenue|"
    "High Street|Lindenweg|Bahnhofstrasse|Gartenstrasse|Schulstrasse|Bergstrasse|Rosenweg|"
    "Birkenallee|Elm Drive|Cedar Court|River Road|Hillside Way|Meadow Lane"
).split("|")
CITIES = (
    "Springfield|Riverside|Fairview|Greenville|Bristol|Clinton|Franklin|Georgetown|Salem|Madison|"
    "Arlington|Ashland|Burlington|Dover|Hudson|Kingston|Milton|Newport|Oxford|Winchester"
).split("|")
INSURERS = (
    "Acme Health|BlueRiver Mutual|CareFirst Plus|Delta Dental|Evergreen Life|Federal Employees|"
    "Guardian Care|Humana Select|Independence|Jupiter Health|Keystone Mutual|Liberty Dental|"
    "self-pay|Medicare Part B|Medicaid"
).split("|")
REASONS = (
    "check-up|cleaning|filling|root canal|crown fitting|extraction|consultation|follow-up|"
    "x-ray|vaccination|blood test|physiotherapy|prescription renewal|orthodontic adjustment|"
    "emergency|implant review|whitening|bridge fitting|night guard|pediatric exam"
).split("|")
STATUSES = ("scheduled", "completed", "completed", "completed", "cancelled", "no-show", "billed")
PAY_METHODS = ("cash", "card", "insurance", "bank transfer", "cheque", "insurance", "card")
WORDS = (
    "patient reports mild pain upper lower left right molar premolar incisor canine gum bleeding "
    "sensitivity cold hot pressure swelling since last visit two weeks three days advised rinse "
    "twice daily prescribed ibuprofen amoxicillin chlorhexidine follow up scheduled recall six "
    "months radiograph shows periapical lesion caries distal mesial occlusal buccal lingual "
    "restoration composite amalgam replaced temporary crown cemented impression taken lab order "
    "sent insurance pre-authorization requested approved denied copay collected balance due "
    "reminder sent by email phone sms no answer left voicemail rescheduled per patient request "
    "allergy penicillin latex none known medical history updated blood pressure normal elevated "
    "diabetes type smoker non-smoker pregnant anxious nervous sedation local anesthesia lidocaine "
    "articaine tolerated well without complications discussed treatment options cost estimate "
    "signed consent form hygiene instructions flossing electric toothbrush fluoride varnish "
    "sealants orthodontic referral specialist oral surgeon endodontist periodontist scaling "
    "root planing pocket depth recession mobility grade plaque calculus moderate heavy light"
).split()


@dataclass(frozen=True)
class Pools:
    """Precomputed string pools; picking from them is what keeps generation fast."""

    dates: tuple[str, ...]
    times: tuple[str, ...]
    amounts: tuple[str, ...]
    phones: tuple[str, ...]
    phrases: tuple[str, ...]
    paragraphs: tuple[str, ...]


def _sentence(rng: random.Random, lo: int, hi: int) -> str:
    words = rng.choices(WORDS, k=rng.randint(lo, hi))
    return " ".join(words).capitalize() + "."


def build_pools(seed: int) -> Pools:
    """Build the pools for one corpus seed (≈0.2 s; called once per generator run)."""
    rng = random.Random(f"pools-{seed}")
    day0 = dt.date(2012, 1, 1)
    dates = tuple((day0 + dt.timedelta(days=i)).isoformat() for i in range(15 * 366))
    times = tuple(f"{h:02d}:{m:02d}:00" for h in range(7, 19) for m in range(0, 60, 5))
    amounts = tuple(f"{rng.randint(15, 2400)}.{rng.randint(0, 99):02d}" for _ in range(50_000))
    phones = tuple(
        f"+1-{rng.randint(200, 999)}-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
        for _ in range(40_000)
    )
    # Phrases repeat across rows as real clinical shorthand does; the pool size sets how well
    # the dump compresses (tuned for roughly 4-6x with zstd level 3).
    phrases = tuple(_sentence(rng, 3, 9) for _ in range(60_000))
    paragraphs = tuple(
        " ".join(_sentence(rng, 6, 18) for _ in range(rng.randint(2, 6))) for _ in range(6_000)
    )
    return Pools(dates, times, amounts, phones, phrases, paragraphs)
