"""MMLU (hendrycks/test): 57 English subjects in 4 categories; CSVs have no header row."""

from __future__ import annotations

from proctor.datasets.benchmark import Benchmark, Subject
from proctor.datasets.csvfile import CsvFormat
from proctor.datasets.family import Family, HubArchive

# name, title, category: the official hendrycks/test categories.py mapping
# (subcategory -> category; "other (business, health, misc.)" shortened to "other").
_SUBJECTS: tuple[tuple[str, str, str], ...] = (
    ("abstract_algebra", "Abstract Algebra", "STEM"),
    ("anatomy", "Anatomy", "other"),
    ("astronomy", "Astronomy", "STEM"),
    ("business_ethics", "Business Ethics", "other"),
    ("clinical_knowledge", "Clinical Knowledge", "other"),
    ("college_biology", "College Biology", "STEM"),
    ("college_chemistry", "College Chemistry", "STEM"),
    ("college_computer_science", "College Computer Science", "STEM"),
    ("college_mathematics", "College Mathematics", "STEM"),
    ("college_medicine", "College Medicine", "other"),
    ("college_physics", "College Physics", "STEM"),
    ("computer_security", "Computer Security", "STEM"),
    ("conceptual_physics", "Conceptual Physics", "STEM"),
    ("econometrics", "Econometrics", "social sciences"),
    ("electrical_engineering", "Electrical Engineering", "STEM"),
    ("elementary_mathematics", "Elementary Mathematics", "STEM"),
    ("formal_logic", "Formal Logic", "humanities"),
    ("global_facts", "Global Facts", "other"),
    ("high_school_biology", "High School Biology", "STEM"),
    ("high_school_chemistry", "High School Chemistry", "STEM"),
    ("high_school_computer_science", "High School Computer Science", "STEM"),
    ("high_school_european_history", "High School European History", "humanities"),
    ("high_school_geography", "High School Geography", "social sciences"),
    ("high_school_government_and_politics", "High School Government and Politics", "social sciences"),
    ("high_school_macroeconomics", "High School Macroeconomics", "social sciences"),
    ("high_school_mathematics", "High School Mathematics", "STEM"),
    ("high_school_microeconomics", "High School Microeconomics", "social sciences"),
    ("high_school_physics", "High School Physics", "STEM"),
    ("high_school_psychology", "High School Psychology", "social sciences"),
    ("high_school_statistics", "High School Statistics", "STEM"),
    ("high_school_us_history", "High School US History", "humanities"),
    ("high_school_world_history", "High School World History", "humanities"),
    ("human_aging", "Human Aging", "other"),
    ("human_sexuality", "Human Sexuality", "social sciences"),
    ("international_law", "International Law", "humanities"),
    ("jurisprudence", "Jurisprudence", "humanities"),
    ("logical_fallacies", "Logical Fallacies", "humanities"),
    ("machine_learning", "Machine Learning", "STEM"),
    ("management", "Management", "other"),
    ("marketing", "Marketing", "other"),
    ("medical_genetics", "Medical Genetics", "other"),
    ("miscellaneous", "Miscellaneous", "other"),
    ("moral_disputes", "Moral Disputes", "humanities"),
    ("moral_scenarios", "Moral Scenarios", "humanities"),
    ("nutrition", "Nutrition", "other"),
    ("philosophy", "Philosophy", "humanities"),
    ("prehistory", "Prehistory", "humanities"),
    ("professional_accounting", "Professional Accounting", "other"),
    ("professional_law", "Professional Law", "humanities"),
    ("professional_medicine", "Professional Medicine", "other"),
    ("professional_psychology", "Professional Psychology", "social sciences"),
    ("public_relations", "Public Relations", "social sciences"),
    ("security_studies", "Security Studies", "social sciences"),
    ("sociology", "Sociology", "social sciences"),
    ("us_foreign_policy", "US Foreign Policy", "social sciences"),
    ("virology", "Virology", "other"),
    ("world_religions", "World Religions", "humanities"),
)

BENCHMARK = Benchmark(
    name="mmlu",
    title="MMLU",
    language="en",
    eval_split="test",
    fewshot_split="dev",
    splits=("dev", "val", "test"),
    subjects=tuple(Subject(name, title, None, (category,)) for name, title, category in _SUBJECTS),
    categories=("STEM", "humanities", "social sciences", "other"),
)

FAMILY = Family(
    benchmark=BENCHMARK,
    csv_format=CsvFormat(
        has_header=False,
        id=None,  # no id column: the 0-based row number is the id
        positions=("question", "A", "B", "C", "D", "answer"),
    ),
    layouts=(
        "mmlu/data/{split}/{subject}_{split}.csv",  # data.tar / the GitHub repository
        "mmlu/{split}/{subject}_{split}.csv",  # OpenCompass data bundle
    ),
    # cais/mmlu converted to parquet later; data.tar is kept at this earlier
    # commit, which is tried when `main` no longer has it.
    archive=HubArchive(
        repo_id="cais/mmlu",
        filename="data.tar",
        revisions=("main", "7a00892cd331d78a88c8c869d0224a5cdd149848"),
    ),
)
