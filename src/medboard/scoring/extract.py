"""Answer extraction: which option a generated text chooses, one function per protocol.

Each extractor takes the generated text and the question's options (key -> text, in display
order: letters A, B, ... or the labels yes/no/maybe) and returns the chosen key, or None when no
valid option can be read from the text. None is scored as wrong and counted as `unparsed`, so a
model that rambles is not rewarded for it and the share of unreadable answers is visible.

- `flowertune`: FlowerTune's medical evaluation (flower repo,
  benchmarks/flowertune-llm/evaluation/medical/utils.py `format_answer`), reproduced exactly,
  quirks included: the lowercased output keeps only letters and digits; for a multiple-choice
  question its first character is the answer (so "Answer: C" reads as A, "The answer is C" as
  nothing); for PubMedQA it must be exactly "yes" or "no" after that cleaning, and "maybe" is not
  in its list of answers, so "maybe" counts only when the raw output is exactly "maybe".
- `generative`: tolerant reading of a short answer: a leading letter ("B", "(B)", "B.",
  "**B**"), an answer statement ("Answer: B", "The answer is (B)", "option B"), the text of one
  option, or for PubMedQA a leading or lone yes/no/maybe.
- `cot`: the final answer of a reasoning: the last "answer" statement, else a bare letter or
  label on the last line; letters mentioned along the reasoning are ignored.
"""

import re
from collections.abc import Callable, Mapping

LABELS = ("yes", "no", "maybe")
FLOWERTUNE_ANSWERS = ("a", "b", "c", "d", "e", "yes", "no")  # utils.py's list: no "maybe"

Extractor = Callable[[str, Mapping[str, str]], str | None]


def is_labels(options: Mapping[str, str]) -> bool:
    """Whether the options are PubMedQA's yes/no/maybe labels rather than letters."""
    return {key.lower() for key in options} == set(LABELS)


def _key(options: Mapping[str, str], answer: str | None) -> str | None:
    """The option key spelled `answer` (case-insensitively), if there is one."""
    if answer is None:
        return None
    for key in options:
        if key.lower() == answer.lower():
            return key
    return None


# -- flowertune ---------------------------------------------------------------------------------
def _flowertune_boolean(output: str) -> str:
    # utils.py clean_boolean_answer: one replacement, the first that applies
    for doubled, single in (("yesyes", "yes"), ("nono", "no"), ("yesno", "yes"), ("noyes", "no")):
        if doubled in output:
            return output.replace(doubled, single)
    return output


def flowertune_prediction(text: str, boolean: bool) -> str:
    """FlowerTune's prediction string for a generated text (utils.py `format_answer`).

    When the cleaned output is not one of its answers FlowerTune returns the whole lowercased
    output, which then matches the gold only if it is exactly the gold's text.
    """
    output_full = text.lower()
    output = output_full
    if "\n##" in output:
        output = output.split("\n##")[1].split("\n")[0].strip().lower()
    output = re.sub(r"[^a-zA-Z0-9]", " ", output).strip()
    output = re.sub(" +", " ", output)
    # clean_answer drops non-ASCII characters: the substitution above left none.
    output = _flowertune_boolean(output) if boolean else output[:1]
    return output if output in FLOWERTUNE_ANSWERS else output_full


def extract_flowertune(text: str, options: Mapping[str, str]) -> str | None:
    return _key(options, flowertune_prediction(text, boolean=is_labels(options)))


# -- shared pieces of the tolerant readers ------------------------------------------------------
_MARKUP = r"[\*_\(\[\"'`]*"
# A letter after an answer keyword: "Answer: B", "answer is (B)", "answer would be option B".
_STATEMENT = (
    r"(?i:\s*(?:is|would\s+be|will\s+be|should\s+be)?\s*[:=\-]?\s*(?:(?:option|choice)\s+)?)"
)
_ANSWER_LETTER = re.compile(r"(?i:\banswer\b)" + _STATEMENT + _MARKUP + r"([A-Za-z])(?![\w-])")
_OPTION_LETTER = re.compile(
    r"(?i:\b(?:option|choice)\b)\s*[:\-]?\s*" + _MARKUP + r"([A-Za-z])(?![\w-])"
)
_ANSWER_LABEL = re.compile(r"(?i)\banswer\b" + _STATEMENT + _MARKUP + r"(yes|no|maybe)\b")
# A letter that opens the text, followed by punctuation or the end of its line: "B", "(B) ...",
# "B. Phrenic", "**B**"; not "A patient ..." (an article).
_LEADING_LETTER = re.compile(r"^\s*" + _MARKUP + r"([A-Z])[\*_\)\]\"'`]*(?:[.:,;)]|\s*$|\s*\n)")
_LONE_LETTER = re.compile(r"^\s*" + _MARKUP + r"([A-Za-z])[\*_\)\]\"'`]*[.:;)]?\s*$")
_LEADING_LABEL = re.compile(r"(?i)^\W*(yes|no|maybe)\b")
_LABEL_WORD = re.compile(r"(?i)\b(yes|no|maybe)\b")


def _lowercase_is_a_letter(text: str, end: int) -> bool:
    """Whether a lowercase letter ending at `end` stands alone ("is b.", not "is a disease")."""
    return re.match(r"[\*_\)\]\"'`]*(?:[.:,;!?)]|\s*$|\s*\n)", text[end:]) is not None


def _statement_letters(
    pattern: re.Pattern[str], text: str, options: Mapping[str, str]
) -> list[str]:
    found = []
    for match in pattern.finditer(text):
        letter = match.group(1)
        if letter.islower() and not _lowercase_is_a_letter(text, match.end(1)):
            continue
        key = _key(options, letter)
        if key is not None:
            found.append(key)
    return found


def _normalize(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def _option_text(text: str, options: Mapping[str, str]) -> str | None:
    """The one option whose text the output contains (an option inside another one's text,
    "nerve" in "phrenic nerve", does not count as a second match)."""
    said = f" {_normalize(text)} "
    hits = {
        key: norm
        for key, value in options.items()
        if (norm := _normalize(value)) and f" {norm} " in said
    }
    kept = [k for k, n in hits.items() if not any(n != m and n in m for m in hits.values())]
    return kept[0] if len(kept) == 1 else None


def _leading_letter(text: str, options: Mapping[str, str]) -> str | None:
    match = _LEADING_LETTER.match(text) or _LONE_LETTER.match(text)
    return _key(options, match.group(1)) if match else None


def _first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), "")


def _last_line(text: str) -> str:
    return next((line for line in reversed(text.splitlines()) if line.strip()), "")


# -- generative -------------------------------------------------------------------------------
def extract_generative(text: str, options: Mapping[str, str]) -> str | None:
    if is_labels(options):
        statements = [m.group(1) for m in _ANSWER_LABEL.finditer(text)]
        if statements:
            return _key(options, statements[0])
        leading = _LEADING_LABEL.match(text)
        if leading:
            return _key(options, leading.group(1))
        words = {w.lower() for w in _LABEL_WORD.findall(_first_line(text))}
        return _key(options, words.pop()) if len(words) == 1 else None
    leading = _leading_letter(text, options)
    if leading is not None:
        return leading
    for pattern in (_ANSWER_LETTER, _OPTION_LETTER):
        found = _statement_letters(pattern, text, options)
        if found:
            return found[0]
    return _option_text(text, options)


# -- chain of thought ---------------------------------------------------------------------------
def extract_cot(text: str, options: Mapping[str, str]) -> str | None:
    last_line = _last_line(text)
    if is_labels(options):
        statements = [m.group(1) for m in _ANSWER_LABEL.finditer(text)]
        if statements:
            return _key(options, statements[-1])
        lone = re.fullmatch(r"\W*(yes|no|maybe)\W*", last_line, flags=re.I)
        return _key(options, lone.group(1)) if lone else None
    found = _statement_letters(_ANSWER_LETTER, text, options)
    if found:
        return found[-1]
    lone = _LONE_LETTER.match(last_line)
    return _key(options, lone.group(1)) if lone else None


EXTRACTORS: dict[str, Extractor] = {
    "flowertune": extract_flowertune,
    "generative": extract_generative,
    "cot": extract_cot,
}


def extract(protocol: str, text: str, options: Mapping[str, str]) -> str | None:
    """The option key chosen by `text` under `protocol`'s reading, or None."""
    try:
        extractor = EXTRACTORS[protocol]
    except KeyError:
        raise ValueError(f"no answer extraction for protocol '{protocol}'") from None
    return extractor(text, options)
