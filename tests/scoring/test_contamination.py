import pytest

from medboard.scoring.contamination import (
    contamination_report,
    index_corpus,
    item_segments,
    ngram_hash,
    ngram_hashes,
    normalize,
    overlap,
    overlap_ratio,
)

# Ten words: three 8-grams (words 1-8, 2-9, 3-10).
PARTIAL_QUESTION = "Which cranial nerve carries taste from the anterior tongue today?"

CORPUS = [
    # an instruction pair that copies a benchmark question, in other case and punctuation
    "### Instruction: A 45-YEAR-OLD man has crushing chest pain for 30 minutes; which artery "
    "is occluded?\n### Response: C",
    # the first 8 words of PARTIAL_QUESTION, then something else
    "which cranial nerve carries taste from the anterior part of the palate",
    # an option text of 9 words, laid out with a letter the item does not have
    "Answer choices: (b) inhibition of the sodium potassium pump in cardiac myocytes",
    # words that would make an 8-gram only across the end of a question and its option
    "does the patient have the following finding bilateral pitting edema of legs",
]

ITEMS = {
    "leak": item_segments(
        "A 45-year-old man has crushing chest pain for 30 minutes. Which artery is occluded?",
        ["Left anterior descending", "Right coronary"],
    ),
    "partial": item_segments(PARTIAL_QUESTION, ["Facial", "Vagus"]),
    "option": item_segments(
        "How does digoxin work?",
        ["Inhibition of the sodium-potassium pump in cardiac myocytes", "Beta blockade"],
    ),
    "across": item_segments(
        "Does the patient have the following finding", ["Bilateral pitting edema of legs"]
    ),
    "clean": item_segments(
        "Which enzyme deficiency causes classic phenylketonuria in most newborn infants?",
        ["Phenylalanine hydroxylase", "Tyrosinase"],
    ),
    "short": item_segments("Is it benign?", ["Yes", "No"]),
}


@pytest.fixture(scope="module")
def index():
    return index_corpus(CORPUS)


def test_normalize() -> None:
    assert normalize("Beta-Blockers, e.g. Propranolol!  Ça va") == (
        "beta",
        "blockers",
        "e",
        "g",
        "propranolol",
        "ça",
        "va",
    )


def test_ngram_hash_is_stable_across_processes() -> None:
    assert ngram_hash(("the", "phrenic", "nerve")) == 3775321824678195469


def test_ngrams_of_a_text() -> None:
    assert len(ngram_hashes(PARTIAL_QUESTION)) == 3
    assert len(ngram_hashes("one two three", n=2)) == 2
    assert ngram_hashes("too short", n=3) == set()
    with pytest.raises(ValueError, match="n must be at least 1"):
        ngram_hashes("x", n=0)


def test_index(index) -> None:
    assert index.n == 8 and index.documents == 4


def test_items_by_hand(index) -> None:
    results = {key: overlap(key, segments, index) for key, segments in ITEMS.items()}
    # "45-year-old" is 3 words: the question has 16 words -> 9 n-grams, all in the corpus
    leak = results["leak"]
    assert (leak.n_ngrams, leak.n_found, leak.ratio, leak.contaminated) == (9, 9, 1.0, True)
    partial = results["partial"]  # 1 of its 3 n-grams
    assert (partial.n_ngrams, partial.n_found, partial.contaminated) == (3, 1, True)
    assert partial.ratio == pytest.approx(1 / 3)
    option = results["option"]  # question too short; the option (9 words) gives 2, both found
    assert (option.n_ngrams, option.n_found, option.contaminated) == (2, 2, True)
    across = results["across"]  # 7 + 5 words: no n-gram inside a segment
    assert (across.n_ngrams, across.contaminated) == (0, False)
    clean = results["clean"]
    assert (clean.n_ngrams, clean.n_found, clean.contaminated) == (3, 0, False)
    assert results["short"].n_ngrams == 0 and not results["short"].contaminated


def test_threshold_on_the_ratio(index) -> None:
    assert overlap("p", ITEMS["partial"], index, min_ratio=0.3).contaminated
    assert not overlap("p", ITEMS["partial"], index, min_ratio=0.5).contaminated
    assert overlap_ratio(ITEMS["partial"], index) == pytest.approx(1 / 3)
    assert overlap_ratio(PARTIAL_QUESTION, index) == pytest.approx(1 / 3)  # a plain string too


def test_segments_keep_the_context_first() -> None:
    assert item_segments("q", ["a", "b"], context="ctx") == ("ctx", "q", "a", "b")
    assert item_segments("q") == ("q",)


def test_report_per_task(index) -> None:
    items_by_task = {
        "medqa": {k: ITEMS[k] for k in ("leak", "clean", "short")},
        "mmlu": {k: ITEMS[k] for k in ("partial", "option", "across")},
    }
    report = contamination_report(items_by_task, index, max_examples=1)
    assert list(report) == ["medqa", "mmlu"]
    medqa, mmlu = report["medqa"], report["mmlu"]
    assert (medqa.n_items, medqa.n_flagged, medqa.n_too_short) == (3, 1, 1)
    assert medqa.share == pytest.approx(1 / 3) and medqa.example_ids == ("leak",)
    assert (mmlu.n_items, mmlu.n_flagged, mmlu.share) == (3, 2, pytest.approx(2 / 3))
    assert mmlu.example_ids == ("partial",)  # the first, max_examples=1
    assert [o.id for o in mmlu.items] == ["partial", "option", "across"]
    strict = contamination_report(items_by_task, index, min_ratio=0.5)
    assert strict["mmlu"].example_ids == ("option",)


def test_a_larger_n_is_stricter() -> None:
    index13 = index_corpus(CORPUS, n=13)
    assert overlap("leak", ITEMS["leak"], index13).n_ngrams == 4  # 16 - 13 + 1
    assert overlap("leak", ITEMS["leak"], index13).contaminated
    assert not overlap("partial", ITEMS["partial"], index13).contaminated
