"""Protocol prompts: FlowerTune's exact strings, its leaked budgets, and the corrected protocols."""

from collections.abc import Mapping, Sequence

import pytest

from medboard.tasks import REGISTRY
from medboard.tasks.base import Sample
from medboard.tasks.protocols import (
    COT,
    FLOWERTUNE,
    FLOWERTUNE_BATCH_SIZE,
    GENERATIVE,
    UnknownProtocolError,
    flowertune_budgets,
    flowertune_question,
    generation_protocol,
    protocol_version,
)

MEDQA = REGISTRY.task("medqa_4options")
PUBMEDQA = REGISTRY.task("pubmedqa")
MEDQA_RECORD = {
    "id": "q1",
    "question": "Which nerve innervates the diaphragm",
    "options": {"A": "Phrenic", "B": "Vagus", "C": "Radial", "D": "Ulnar"},
    "answer": "A",
}
PUBMEDQA_RECORD = {
    "id": "p1",
    "question": "Does walking help?",
    "contexts": ["We enrolled 120 adults.", "Pressure fell."],
    "answer": "maybe",
}

# benchmarks.py INSTRUCTIONS, as the reference has them (Meditron's)
MEDQA_INSTRUCTION = (
    "You are a medical doctor taking the US Medical Licensing Examination. You need to "
    "demonstrate your understanding of basic and clinical science, medical knowledge, and "
    "mechanisms underlying health, disease, patient care, and modes of therapy. Show your "
    "ability to apply the knowledge essential for medical practice. For the following "
    "multiple-choice question, select one correct answer from A to E. Base your answer on the "
    "current and standard practices referenced in medical guidelines."
)
PUBMEDQA_INSTRUCTION = (
    "As an expert doctor in clinical science and medical knowledge, can you tell me if the "
    "following statement is correct? Answer yes, no, or maybe."
)
MEDMCQA_INSTRUCTION = (
    "You are a medical doctor answering realworld medical entrance exam questions. Based on "
    "your understanding of basic and clinical science, medical knowledge, and mechanisms "
    "underlying health, disease, patient care, and modes of therapy, answer the following "
    "multiple-choice question. Select one correct answer from A to D. Base your answer on the "
    "current and standard practices referenced in medical guidelines."
)


def chat(messages: Sequence[Mapping[str, str]]) -> str:
    return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"


def medqa_sample(**changes: object) -> Sample:
    return MEDQA.to_sample({**MEDQA_RECORD, **changes})


def test_flowertune_medqa_prompt_is_the_reference_string() -> None:
    expected = (
        "<|im_start|>question\n"
        f"{MEDQA_INSTRUCTION}\n"
        "Question: Which nerve innervates the diaphragm?\n\n"
        "Options:\nA. Phrenic\nB. Vagus\nC. Radial\nD. Ulnar\n"
        "The answer is:\n"
        "<|im_end|>\n<|im_start|>answer\n"
    )
    # the model's chat template is not used: FlowerTune wraps every prompt the same way
    assert FLOWERTUNE.prompt(MEDQA, medqa_sample(), chat) == expected
    assert FLOWERTUNE.prompt(MEDQA, medqa_sample(), None) == expected


def test_flowertune_pubmedqa_prompt_is_the_reference_string() -> None:
    sample = PUBMEDQA.to_sample(PUBMEDQA_RECORD)
    expected = (
        "<|im_start|>question\n"
        f"{PUBMEDQA_INSTRUCTION}\n"
        "We enrolled 120 adults.\nPressure fell.\nDoes walking help?\n"
        "The answer is:\n"
        "<|im_end|>\n<|im_start|>answer\n"
    )
    assert FLOWERTUNE.prompt(PUBMEDQA, sample, None) == expected


def test_flowertune_instructions_per_dataset() -> None:
    for name in ("medmcqa", "careqa_en"):
        prompt = FLOWERTUNE.prompt(REGISTRY.task(name), medqa_sample(), None)
        assert prompt.startswith(f"<|im_start|>question\n{MEDMCQA_INSTRUCTION}\n")
    # tasks FlowerTune does not have: MedMCQA's instruction, up to the last letter
    headqa = REGISTRY.task("headqa_en")
    five = headqa.to_sample({**MEDQA_RECORD, "options": {**MEDQA_RECORD["options"], "E": "No"}})
    assert "Select one correct answer from A to E." in FLOWERTUNE.prompt(headqa, five, None)


@pytest.mark.parametrize(
    ("question", "shown"),
    [("Which nerve", "Which nerve?"), ("Which nerve?", "Which nerve?"), ("Name it.", "Name it.")],
)
def test_flowertune_adds_a_question_mark(question: str, shown: str) -> None:
    assert flowertune_question(question, ["x", "y"]) == f"Question: {shown}\n\nOptions:\nA. x\nB. y"


def test_flowertune_budget_leaks_the_first_gold_of_each_batch_of_16() -> None:
    golds = ["maybe"] + ["yes"] * 15 + ["no"] * 16 + ["maybe"] * 3
    samples = [
        PUBMEDQA.to_sample({**PUBMEDQA_RECORD, "id": str(i), "answer": g})
        for i, g in enumerate(golds)
    ]
    lengths = {"maybe": 3, "yes": 1, "no": 2}  # a made-up tokenizer
    budgets = flowertune_budgets(samples, lambda text: lengths[text])
    assert FLOWERTUNE_BATCH_SIZE == 16
    assert budgets == [3] * 16 + [2] * 16 + [3] * 3
    assert FLOWERTUNE.budgets(samples, lambda text: lengths[text]) == budgets
    # the letter of a multiple-choice gold: "A" is counted, not the option text
    seen: list[str] = []
    flowertune_budgets([medqa_sample()], lambda text: seen.append(text) or 1)
    assert seen == ["A"]


def test_budgets_of_the_corrected_protocols_never_look_at_the_gold() -> None:
    samples = [medqa_sample(answer=a) for a in "ABCD"]

    def refuse(text: str) -> int:
        raise AssertionError("the gold answer was read")

    assert GENERATIVE.budgets(samples, refuse) == [32] * 4
    assert COT.budgets(samples, refuse) == [512] * 4
    assert FLOWERTUNE.budgets(samples, refuse, override=7) == [7] * 4


def test_generative_prompt_with_and_without_chat_template() -> None:
    user = (
        "Answer the following multiple-choice question. Reply with the letter of the correct "
        "option (A, B, C or D) and nothing else.\n\n"
        "Question: Which nerve innervates the diaphragm\n"
        "A. Phrenic\nB. Vagus\nC. Radial\nD. Ulnar"
    )
    assert GENERATIVE.prompt(MEDQA, medqa_sample(), chat) == f"<user>{user}<assistant>"
    assert GENERATIVE.prompt(MEDQA, medqa_sample(), None) == f"{user}\nAnswer:"
    # a model without a chat template (the formatter answers None) gets the plain prompt
    assert GENERATIVE.prompt(MEDQA, medqa_sample(), lambda m: None) == f"{user}\nAnswer:"


def test_generative_and_cot_pubmedqa_prompts() -> None:
    sample = PUBMEDQA.to_sample(PUBMEDQA_RECORD)
    block = "Abstract: We enrolled 120 adults.\nPressure fell.\nQuestion: Does walking help?"
    assert GENERATIVE.prompt(PUBMEDQA, sample, None) == (
        "Answer the question about the abstract with yes, no or maybe, and nothing else.\n\n"
        f"{block}\nAnswer:"
    )
    cot = COT.prompt(PUBMEDQA, sample, chat)
    assert cot.startswith("<user>Answer the question about the abstract. Think step by step")
    assert '"Answer: yes", "Answer: no" or "Answer: maybe"' in cot
    assert cot.endswith(f"{block}<assistant>")


def test_cot_prompt_asks_for_a_final_answer_line() -> None:
    plain = COT.prompt(MEDQA, medqa_sample(), None)
    assert 'last line as "Answer: X"' in plain and "(A, B, C or D)" in plain
    assert plain.endswith("D. Ulnar\nLet's think step by step.")


def test_protocol_versions() -> None:
    assert protocol_version("loglik") == "loglik/1"
    assert protocol_version("flowertune") == "flowertune/1"
    assert protocol_version("generative") == "generative/1"
    assert protocol_version("cot") == "cot/1"
    assert protocol_version("generative", 64) == "generative/1;max_new_tokens=64"
    with pytest.raises(UnknownProtocolError, match="not to loglik"):
        protocol_version("loglik", 64)
    with pytest.raises(UnknownProtocolError, match="unknown protocol 'chat'"):
        generation_protocol("chat")
    assert FLOWERTUNE.stop == ()  # the reference never passes its stop list to generate
