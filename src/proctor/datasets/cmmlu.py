"""CMMLU (haonan-li/CMMLU): 67 Chinese subjects; a subject may also count as "China specific"."""

from __future__ import annotations

from proctor.datasets.benchmark import Benchmark, Subject
from proctor.datasets.csvfile import CsvFormat
from proctor.datasets.family import Family, HubArchive

CS = "China specific"

# name, English title, Chinese title, categories: the official mapping of
# CMMLU's src/categories.py (subcategory -> category), the official category first.
_SUBJECTS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("agronomy", "Agronomy", "农学", ("Other",)),
    ("anatomy", "Anatomy", "解剖学", ("STEM",)),
    ("ancient_chinese", "Ancient Chinese", "古汉语", ("Social Science", CS)),
    ("arts", "Arts", "艺术学", ("Humanities",)),
    ("astronomy", "Astronomy", "天文学", ("STEM",)),
    ("business_ethics", "Business Ethics", "商业伦理", ("Social Science",)),
    ("chinese_civil_service_exam", "Chinese Civil Service Exam", "中国公务员考试", ("Social Science", CS)),
    ("chinese_driving_rule", "Chinese Driving Rule", "中国驾驶规则", ("Other", CS)),
    ("chinese_food_culture", "Chinese Food Culture", "中国饮食文化", ("Social Science", CS)),
    ("chinese_foreign_policy", "Chinese Foreign Policy", "中国外交政策", ("Social Science", CS)),
    ("chinese_history", "Chinese History", "中国历史", ("Humanities", CS)),
    ("chinese_literature", "Chinese Literature", "中国文学", ("Humanities", CS)),
    ("chinese_teacher_qualification", "Chinese Teacher Qualification", "中国教师资格", ("Social Science", CS)),
    ("clinical_knowledge", "Clinical Knowledge", "临床知识", ("Other",)),
    ("college_actuarial_science", "College Actuarial Science", "大学精算学", ("STEM",)),
    ("college_education", "College Education", "大学教育学", ("Social Science",)),
    ("college_engineering_hydrology", "College Engineering Hydrology", "大学工程水文学", ("STEM",)),
    ("college_law", "College Law", "大学法律", ("Humanities",)),
    ("college_mathematics", "College Mathematics", "大学数学", ("STEM",)),
    ("college_medical_statistics", "College Medical Statistics", "大学医学统计", ("STEM",)),
    ("college_medicine", "College Medicine", "大学医学", ("Other",)),
    ("computer_science", "Computer Science", "计算机科学", ("STEM",)),
    ("computer_security", "Computer Security", "计算机安全", ("Other",)),
    ("conceptual_physics", "Conceptual Physics", "概念物理学", ("STEM",)),
    ("construction_project_management", "Construction Project Management", "建设工程管理", ("Other", CS)),
    ("economics", "Economics", "经济学", ("Social Science",)),
    ("education", "Education", "教育学", ("Social Science",)),
    ("electrical_engineering", "Electrical Engineering", "电气工程", ("STEM",)),
    ("elementary_chinese", "Elementary Chinese", "小学语文", ("Social Science", CS)),
    ("elementary_commonsense", "Elementary Commonsense", "小学常识", ("Other", CS)),
    ("elementary_information_and_technology", "Elementary Information and Technology", "小学信息技术", ("Other",)),
    ("elementary_mathematics", "Elementary Mathematics", "初等数学", ("STEM",)),
    ("ethnology", "Ethnology", "民族学", ("Social Science", CS)),
    ("food_science", "Food Science", "食品科学", ("Other",)),
    ("genetics", "Genetics", "遗传学", ("STEM",)),
    ("global_facts", "Global Facts", "全球事实", ("Humanities",)),
    ("high_school_biology", "High School Biology", "高中生物", ("STEM",)),
    ("high_school_chemistry", "High School Chemistry", "高中化学", ("STEM",)),
    ("high_school_geography", "High School Geography", "高中地理", ("Social Science",)),
    ("high_school_mathematics", "High School Mathematics", "高中数学", ("STEM",)),
    ("high_school_physics", "High School Physics", "高中物理学", ("STEM",)),
    ("high_school_politics", "High School Politics", "高中政治", ("Social Science", CS)),
    ("human_sexuality", "Human Sexuality", "人类性行为", ("Other",)),
    ("international_law", "International Law", "国际法学", ("Humanities",)),
    ("journalism", "Journalism", "新闻学", ("Social Science",)),
    ("jurisprudence", "Jurisprudence", "法理学", ("Humanities",)),
    ("legal_and_moral_basis", "Legal and Moral Basis", "法律与道德基础", ("Other",)),
    ("logical", "Logical", "逻辑学", ("Humanities",)),
    ("machine_learning", "Machine Learning", "机器学习", ("STEM",)),
    ("management", "Management", "管理学", ("Social Science",)),
    ("marketing", "Marketing", "市场营销", ("Social Science",)),
    ("marxist_theory", "Marxist Theory", "马克思主义理论", ("Humanities",)),
    ("modern_chinese", "Modern Chinese", "现代汉语", ("Social Science", CS)),
    ("nutrition", "Nutrition", "营养学", ("Other",)),
    ("philosophy", "Philosophy", "哲学", ("Humanities",)),
    ("professional_accounting", "Professional Accounting", "专业会计", ("Social Science",)),
    ("professional_law", "Professional Law", "专业法学", ("Humanities",)),
    ("professional_medicine", "Professional Medicine", "专业医学", ("Other",)),
    ("professional_psychology", "Professional Psychology", "专业心理学", ("Social Science",)),
    ("public_relations", "Public Relations", "公共关系", ("Social Science",)),
    ("security_study", "Security Study", "安全研究", ("Social Science",)),
    ("sociology", "Sociology", "社会学", ("Social Science",)),
    ("sports_science", "Sports Science", "体育学", ("Other",)),
    ("traditional_chinese_medicine", "Traditional Chinese Medicine", "中医中药", ("Other", CS)),
    ("virology", "Virology", "病毒学", ("STEM",)),
    ("world_history", "World History", "世界历史", ("Humanities",)),
    ("world_religions", "World Religions", "世界宗教", ("Humanities",)),
)

BENCHMARK = Benchmark(
    name="cmmlu",
    title="CMMLU",
    language="zh",
    eval_split="test",
    fewshot_split="dev",
    splits=("dev", "test"),
    subjects=tuple(Subject(name, title, title_zh, cats) for name, title, title_zh, cats in _SUBJECTS),
    categories=("STEM", "Humanities", "Social Science", "Other", CS),
)

FAMILY = Family(
    benchmark=BENCHMARK,
    # Header ",Question,A,B,C,D,Answer": the unnamed first column is pandas' row index.
    csv_format=CsvFormat(has_header=True, question="Question", answer="Answer", id=""),
    layouts=(
        "cmmlu/data/{split}/{subject}.csv",  # the GitHub repository
        "cmmlu/{split}/{subject}.csv",  # cmmlu_v1_0_1.zip, as in the OpenCompass data bundle
    ),
    archive=HubArchive(repo_id="haonan-li/cmmlu", filename="cmmlu_v1_0_1.zip"),
)
