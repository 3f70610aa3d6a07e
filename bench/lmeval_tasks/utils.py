"""process_docs for the reference lm-eval tasks (ref_*.yaml next to this file).

Each function maps medboard's normalized records (`{"id", "question", "options": {key: text},
"answer": key, ...}`) to the Hub schema the upstream lm-eval task reads, so that the prompt,
the choices and the target are then built by lm-eval's own `doc_to_text` / `doc_to_choice` /
`doc_to_target`, brought in by `include:` of the installed task YAML. Nothing here formats a
prompt: a copy of lm-eval's templates would prove nothing about parity.

Every mapped doc keeps the record's `id`, so the docs in lm-eval's `--log_samples` output
(`doc.id`) match medboard's sample ids.
"""

from collections.abc import Callable
from typing import Any

import datasets

Record = dict[str, Any]


def _options(record: Record) -> tuple[list[str], list[str]]:
    """(keys, texts) of the record's options in display order.

    JSON loading turns `options` into an Arrow struct: a key missing from one record but present
    in another (e.g. a 5-option exam year) comes back as None, so drop those.
    """
    items = [(key, text) for key, text in record["options"].items() if text is not None]
    return [key for key, _ in items], [text for _, text in items]


def _map(dataset: datasets.Dataset, convert: Callable[[Record], Record]) -> datasets.Dataset:
    # remove_columns: lm-eval treats `doc_to_text`/`doc_to_target` strings that equal a column
    # name as a field lookup, so keep exactly the Hub columns (plus `id`) and nothing else.
    return dataset.map(convert, remove_columns=dataset.column_names)


def _four(record: Record) -> tuple[list[str], int]:
    keys, texts = _options(record)
    if len(texts) != 4:
        raise ValueError(f"record {record['id']}: expected 4 options, got {len(texts)}")
    return texts, keys.index(record["answer"])


def _medqa(record: Record) -> Record:
    # GBaker/MedQA-USMLE-4-options-hf: sent1 = question, ending0..3, label = 0-based index
    texts, answer = _four(record)
    return {
        "id": record["id"],
        "sent1": record["question"],
        **{f"ending{i}": text for i, text in enumerate(texts)},
        "label": answer,
    }


def _medmcqa(record: Record) -> Record:
    # openlifescienceai/medmcqa: opa..opd, cop = 0-based index
    texts, answer = _four(record)
    return {
        "id": record["id"],
        "question": record["question"],
        **{f"op{letter}": text for letter, text in zip("abcd", texts, strict=True)},
        "cop": answer,
    }


def _careqa(record: Record) -> Record:
    # HPAI-BSC/CareQA (CareQA_en): op1..op4, cop = 1-based index (lm-eval subtracts 1)
    texts, answer = _four(record)
    return {
        "id": record["id"],
        "question": record["question"],
        **{f"op{i + 1}": text for i, text in enumerate(texts)},
        "cop": answer + 1,
    }


def _pubmedqa(record: Record) -> Record:
    # bigbio/pubmed_qa source schema: CONTEXTS is the list of abstract sections, which lm-eval
    # joins with "\n". Records that carry only the joined `context` give a one-element list,
    # which joins to the same string.
    contexts = record.get("contexts")
    return {
        "id": record["id"],
        "QUESTION": record["question"],
        "CONTEXTS": list(contexts) if contexts is not None else [record["context"]],
        "final_decision": record["answer"],
    }


def _headqa(record: Record) -> Record:
    # EleutherAI/headqa (en): answers = [{aid, atext}], ra = aid of the right answer (1-based)
    keys, texts = _options(record)
    return {
        "id": record["id"],
        "qtext": record["question"],
        "answers": [{"aid": i + 1, "atext": text} for i, text in enumerate(texts)],
        "ra": keys.index(record["answer"]) + 1,
    }


def _mmlu(subject: str) -> Callable[[datasets.Dataset], datasets.Dataset]:
    # cais/mmlu: choices = list of texts, answer = 0-based index. lm-eval loads one Hub subset
    # per subject; medboard keeps all six subjects in one file, so filter on `subject` first.
    def convert(record: Record) -> Record:
        texts, answer = _four(record)
        return {
            "id": record["id"],
            "question": record["question"],
            "subject": record["subject"],
            "choices": texts,
            "answer": answer,
        }

    def process_docs(dataset: datasets.Dataset) -> datasets.Dataset:
        return _map(dataset.filter(lambda record: record["subject"] == subject), convert)

    process_docs.__name__ = f"mmlu_{subject}_docs"
    return process_docs


def medqa_docs(dataset: datasets.Dataset) -> datasets.Dataset:
    return _map(dataset, _medqa)


def medmcqa_docs(dataset: datasets.Dataset) -> datasets.Dataset:
    return _map(dataset, _medmcqa)


def careqa_docs(dataset: datasets.Dataset) -> datasets.Dataset:
    return _map(dataset, _careqa)


def pubmedqa_docs(dataset: datasets.Dataset) -> datasets.Dataset:
    return _map(dataset, _pubmedqa)


def headqa_docs(dataset: datasets.Dataset) -> datasets.Dataset:
    return _map(dataset, _headqa)


mmlu_anatomy_docs = _mmlu("anatomy")
mmlu_clinical_knowledge_docs = _mmlu("clinical_knowledge")
mmlu_college_biology_docs = _mmlu("college_biology")
mmlu_college_medicine_docs = _mmlu("college_medicine")
mmlu_medical_genetics_docs = _mmlu("medical_genetics")
mmlu_professional_medicine_docs = _mmlu("professional_medicine")


def _cmmlu(subject: str) -> Callable[[datasets.Dataset], datasets.Dataset]:
    # haonan-li/cmmlu: Question, A, B, C, D, Answer (a letter). lm-eval loads one Hub subset per
    # subject; medboard keeps the seven medical subjects in one file, so filter on `subject`.
    def convert(record: Record) -> Record:
        texts, answer = _four(record)
        return {
            "id": record["id"],
            "Question": record["question"],
            **dict(zip("ABCD", texts, strict=True)),
            "Answer": "ABCD"[answer],
        }

    def process_docs(dataset: datasets.Dataset) -> datasets.Dataset:
        return _map(dataset.filter(lambda record: record["subject"] == subject), convert)

    process_docs.__name__ = f"cmmlu_{subject}_docs"
    return process_docs


cmmlu_anatomy_docs = _cmmlu("anatomy")
cmmlu_clinical_knowledge_docs = _cmmlu("clinical_knowledge")
cmmlu_college_medicine_docs = _cmmlu("college_medicine")
cmmlu_genetics_docs = _cmmlu("genetics")
cmmlu_nutrition_docs = _cmmlu("nutrition")
cmmlu_traditional_chinese_medicine_docs = _cmmlu("traditional_chinese_medicine")
cmmlu_virology_docs = _cmmlu("virology")


# -- tasks lm-eval does not have: multiple-choice exams asked as medqa_4options asks its own -------
def _mcq(record: Record) -> Record:
    keys, texts = _options(record)
    return {
        "id": record["id"],
        "sent1": record["question"],
        "keys": keys,
        "endings": texts,
        "label": keys.index(record["answer"]),
    }


def mcq_doc_to_text(doc: Record) -> str:
    # lm_eval/tasks/medqa/preprocess_medqa.py doc_to_text, over the item's own option keys
    pairs = zip(doc["keys"], doc["endings"], strict=True)
    answers = "".join(f"{key}. {text}\n" for key, text in pairs)
    return f"Question: {doc['sent1']}\n{answers}Answer:"


def mcq_choices(doc: Record) -> list[str]:
    return list(doc["keys"])


def mcq_docs(dataset: datasets.Dataset) -> datasets.Dataset:
    return _map(dataset, _mcq)


def igakuqa_docs(dataset: datasets.Dataset) -> datasets.Dataset:
    # the items that refer to an image the data does not include are left out (medboard's igakuqa)
    return _map(dataset.filter(lambda record: not record.get("image")), _mcq)
