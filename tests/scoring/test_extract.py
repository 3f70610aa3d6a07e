"""Answer extraction per protocol: letters, option texts, yes/no/maybe, and what stays unread."""

import pytest

from medboard.scoring.extract import (
    extract,
    extract_cot,
    extract_flowertune,
    extract_generative,
    flowertune_prediction,
)

MCQ = {"A": "Phrenic nerve", "B": "Vagus nerve", "C": "Radial nerve", "D": "Ulnar nerve"}
FIVE = {**MCQ, "E": "None of the above"}
YNM = {"yes": "yes", "no": "no", "maybe": "maybe"}


# -- flowertune: utils.py format_answer, quirks included ----------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", "B"),
        (" b", "B"),
        ("C. Radial nerve", "C"),
        ("(D)", "D"),
        ("d)", "D"),
        ("**A**", "A"),
        ("\n\nB", "B"),
        # the first character of the cleaned output, whatever the word
        ("Answer: C", "A"),
        ("apple", "A"),
        ("Because", "B"),
        ("The answer is C", None),  # 't' is not an answer
        ("", None),
        ("   ", None),
        ("1", None),
        ("E", None),  # in FlowerTune's list, but not an option of a 4-option question
        ("E", "E"),  # (see FIVE below)
        # after "\n##", only the first line that follows counts
        ("ignored\n## C\nmore", "C"),
        ("ignored\n##\nB", None),  # the line after "##" is empty
        ("é B", "B"),  # non-ASCII characters go first
    ],
)
def test_flowertune_multiple_choice(text: str, expected: str | None) -> None:
    options = FIVE if (text, expected) == ("E", "E") else MCQ
    assert extract_flowertune(text, options) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes", "yes"),
        ("Yes.", "yes"),
        (" no", "no"),
        ("NO!", "no"),
        ("yesyes", "yes"),
        ("nono", "no"),
        ("yesno", "yes"),
        ("noyes", "no"),
        # "maybe" is not in FlowerTune's list: it counts only when the raw output is "maybe"
        ("maybe", "maybe"),
        ("Maybe", "maybe"),  # the output is lowercased first
        ("maybe.", None),
        (" maybe", None),
        ("yes, it does", None),  # the whole cleaned output must be the answer
        ("a", None),  # a letter is in its list, but PubMedQA has no letters
        ("", None),
    ],
)
def test_flowertune_pubmedqa(text: str, expected: str | None) -> None:
    assert extract_flowertune(text, YNM) == expected


def test_flowertune_prediction_is_the_raw_output_when_unreadable() -> None:
    assert flowertune_prediction("The Answer", boolean=False) == "the answer"
    assert flowertune_prediction("Yes.", boolean=True) == "yes"
    assert flowertune_prediction("Maybe.", boolean=True) == "maybe."


# -- generative ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", "B"),
        (" B", "B"),
        ("B.", "B"),
        ("(B)", "B"),
        ("B)", "B"),
        ("**B**", "B"),
        ("[C]", "C"),
        ("b", "B"),
        ("(b)", "B"),
        ("B. Vagus nerve", "B"),
        ("D: Ulnar nerve", "D"),
        ("C\nThe radial nerve supplies...", "C"),
        ("Answer: B", "B"),
        ("answer: b", "B"),
        ("Answer:\nC", "C"),
        ("The answer is B", "B"),
        ("The answer is (C).", "C"),
        ("The correct answer is **D**.", "D"),
        ("The answer is option A", "A"),
        ("The answer would be choice C", "C"),
        ("I would choose option D.", "D"),
        ("Option B is wrong; the answer is C.", "C"),  # an answer statement beats an option
        ("the answer is a.", "A"),
        ("Phrenic nerve", "A"),  # the option text itself
        ("It is the vagus nerve, which runs...", "B"),
        ("the ulnar nerve.", "D"),
        # not answers
        ("A 45-year-old man has a fracture", None),  # "A" is an article here
        ("The answer is a nerve of the arm", None),
        ("I don't know.", None),
        ("", None),
        ("Answer: E", None),  # not an option
        ("Phrenic nerve or vagus nerve", None),  # two options named
        ("nerve", None),
    ],
)
def test_generative_letters(text: str, expected: str | None) -> None:
    assert extract_generative(text, MCQ) == expected


def test_generative_option_text_inside_a_longer_one_is_not_a_second_match() -> None:
    options = {"A": "Nerve", "B": "Phrenic nerve", "C": "Vagus", "D": "Ulnar"}
    assert extract_generative("the phrenic nerve", options) == "B"
    assert extract_generative("E", FIVE) == "E"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes", "yes"),
        ("Yes.", "yes"),
        ("No, it does not.", "no"),
        ("maybe", "maybe"),
        ("**Maybe**", "maybe"),
        ("Answer: no", "no"),
        ("The answer is yes, because the trial shows it.", "yes"),
        ("Based on the abstract, the answer is maybe.", "maybe"),
        ("There is no effect.", "no"),  # the only label word on the first line
        ("Nothing is known.", None),  # "no" inside a word does not count
        ("Yes and no.", "yes"),  # the leading word
        ("It could be yes or no.", None),  # two labels, neither leading
        ("", None),
        ("B", None),
    ],
)
def test_generative_pubmedqa(text: str, expected: str | None) -> None:
    assert extract_generative(text, YNM) == expected


# -- cot ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Step 1: the phrenic nerve (C3-C5)...\nOption B is wrong.\nAnswer: A", "A"),
        ("Let's think. A is unlikely. Answer: B. Then answer: D", "D"),  # the last statement
        ("...so the correct answer is (C).", "C"),
        ("Reasoning...\n**Answer: D**", "D"),
        ("Reasoning about options A and B.\nB", "B"),  # a bare letter on the last line
        ("Reasoning...\n(C)", "C"),
        ("Option A fits best.", None),  # letters along the reasoning are not the answer
        ("A 45-year-old man... I think it is the phrenic nerve.", None),
        ("", None),
        ("Answer: E", None),
    ],
)
def test_cot_letters(text: str, expected: str | None) -> None:
    assert extract_cot(text, MCQ) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The trial was small.\nAnswer: maybe", "maybe"),
        ("Yes, it seemed so at first... Answer: yes. On reflection, answer: no", "no"),
        ("Reasoning...\nNo.", "no"),
        ("Yes, walking helps.", None),  # no final answer
        ("", None),
    ],
)
def test_cot_pubmedqa(text: str, expected: str | None) -> None:
    assert extract_cot(text, YNM) == expected


def test_extract_by_protocol_name() -> None:
    assert extract("generative", "The answer is B", MCQ) == "B"
    assert extract("flowertune", "The answer is B", MCQ) is None
    assert extract("cot", "...\nAnswer: B", MCQ) == "B"
    with pytest.raises(ValueError, match="no answer extraction for protocol 'loglik'"):
        extract("loglik", "B", MCQ)
