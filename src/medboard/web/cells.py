"""Labels and cells: the names the pages give tasks and columns, and text safe in a CSV cell.

Shared by the leaderboard (board.py), the model page (model_data.py) and the queue, apart from
any of them so that none imports another for them.
"""

TASK_LABELS = {
    "medqa_4options": "MedQA",
    "medmcqa": "MedMCQA",
    "pubmedqa": "PubMedQA",
    "mmlu_anatomy": "Anatomy",
    "mmlu_clinical_knowledge": "Clinical knowledge",
    "mmlu_college_biology": "College biology",
    "mmlu_college_medicine": "College medicine",
    "mmlu_medical_genetics": "Medical genetics",
    "mmlu_professional_medicine": "Professional medicine",
    "careqa_en": "CareQA",
    "headqa_en": "HEAD-QA",
}
COLUMN_LABELS = {
    "rank": "Rank",
    "model": "Model",
    "average": "Average",
    "team": "Team",
    "model_type": "Type",
    "weight_type": "Weight type",
    "parameters": "Params",
    "dtype": "Precision",
    "date": "Date",
    "origin": "Source",
    "source": "Source",
    "comm_cost_gb": "Comm. cost (GB)",
}


def label(column: str) -> str:
    return TASK_LABELS.get(column) or COLUMN_LABELS.get(column) or column


def safe_cell(text: str) -> str:
    """Text a spreadsheet will not run as a formula (CSV injection)."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
