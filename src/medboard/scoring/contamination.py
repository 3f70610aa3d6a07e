"""Contamination: which benchmark items appear in a training corpus, by word n-gram overlap.

A fine-tuned model whose instruction data holds MedQA questions scores its memory, not its
medicine. This checks benchmark items against a corpus (for instance the JSONL instruction pairs
of a FlowerTune entry, read by the caller into strings) before a score is trusted.

Choices made here, and why:
- Normalization: lowercase, every character that is neither a word character nor whitespace
  becomes a space, then split on whitespace. "Beta-blockers," and "beta blockers" match; accents
  and digits are kept.
- Word 8-grams by default. GPT-3's study used 13-grams, PaLM's 8: medical items are short (an
  MMLU question is often under 20 words), and 13-grams would leave many of them uncheckable.
- An item is checked segment by segment (question, each option, a context): its n-grams never
  span two segments, so the result does not depend on how the corpus lays options out ("A. x" or
  "(a) x"). The corpus side takes every n-gram of every text. Segments shorter than n give no
  n-gram; an item with none at all is counted as too short, and never flagged.
- overlap ratio = share of an item's distinct n-grams found in the corpus. The item is flagged
  when at least one is found and the ratio is at least `min_ratio` (default 0: any shared n-gram,
  as GPT-3 did; raise it to ask for near-copies).
- Memory: each n-gram is kept as an 8-byte blake2b digest in a set of ints, stable across
  processes (Python's hash() of a str is not). Collisions are negligible below billions of n-grams;
  a Python set costs about 70 bytes per distinct n-gram.
"""

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from types import MappingProxyType

DEFAULT_N = 8
_NOT_WORD = re.compile(r"[^\w\s]")


@dataclass(frozen=True)
class CorpusIndex:
    n: int
    hashes: Set[int]
    documents: int


@dataclass(frozen=True)
class ItemOverlap:
    id: str
    n_ngrams: int  # distinct n-grams of the item (0: too short to check)
    n_found: int  # of them, in the corpus
    ratio: float
    contaminated: bool


@dataclass(frozen=True)
class TaskContamination:
    task: str
    n_items: int
    n_flagged: int
    share: float  # n_flagged / n_items
    n_too_short: int
    example_ids: tuple[str, ...]  # the first flagged items, in the order given
    items: tuple[ItemOverlap, ...]


def normalize(text: str) -> tuple[str, ...]:
    """Lowercased words, punctuation turned into spaces."""
    return tuple(_NOT_WORD.sub(" ", text.lower()).split())


def ngram_hash(words: Sequence[str]) -> int:
    """8-byte blake2b digest of an n-gram, as an int."""
    digest = hashlib.blake2b(" ".join(words).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def ngram_hashes(text: str, n: int = DEFAULT_N) -> set[int]:
    """The distinct word n-grams of one text, hashed."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    words = normalize(text)
    return {ngram_hash(words[i : i + n]) for i in range(len(words) - n + 1)}


def index_corpus(texts: Iterable[str], n: int = DEFAULT_N) -> CorpusIndex:
    """Every word n-gram of every text of the corpus (streamed: texts are read once)."""
    hashes: set[int] = set()
    documents = 0
    for text in texts:
        hashes |= ngram_hashes(text, n)
        documents += 1
    return CorpusIndex(n=n, hashes=hashes, documents=documents)


def item_segments(
    question: str, options: Iterable[str] = (), context: str | None = None
) -> tuple[str, ...]:
    """The texts of a benchmark item checked separately: context, question, each option."""
    return (*((context,) if context else ()), question, *options)


def item_ngrams(segments: Sequence[str], n: int = DEFAULT_N) -> set[int]:
    """Distinct hashed n-grams of an item, none spanning two segments."""
    if isinstance(segments, str):
        segments = (segments,)
    found: set[int] = set()
    for segment in segments:
        found |= ngram_hashes(segment, n)
    return found


def overlap(
    item_id: str, segments: Sequence[str], index: CorpusIndex, min_ratio: float = 0.0
) -> ItemOverlap:
    """How much of one item's n-grams the corpus holds, and whether that flags it."""
    grams = item_ngrams(segments, index.n)
    found = sum(1 for g in grams if g in index.hashes)
    ratio = found / len(grams) if grams else 0.0
    return ItemOverlap(item_id, len(grams), found, ratio, found > 0 and ratio >= min_ratio)


def overlap_ratio(segments: Sequence[str], index: CorpusIndex) -> float:
    """Share of the item's distinct n-grams found in the corpus (0 for an item too short)."""
    return overlap("", segments, index).ratio


def task_contamination(
    task: str,
    items: Mapping[str, Sequence[str]],
    index: CorpusIndex,
    min_ratio: float = 0.0,
    max_examples: int = 5,
) -> TaskContamination:
    """Contamination of one task's items (id -> segments, see item_segments)."""
    overlaps = tuple(overlap(key, segments, index, min_ratio) for key, segments in items.items())
    flagged = [o.id for o in overlaps if o.contaminated]
    return TaskContamination(
        task=task,
        n_items=len(overlaps),
        n_flagged=len(flagged),
        share=len(flagged) / len(overlaps) if overlaps else 0.0,
        n_too_short=sum(1 for o in overlaps if o.n_ngrams == 0),
        example_ids=tuple(flagged[:max_examples]),
        items=overlaps,
    )


def contamination_report(
    items_by_task: Mapping[str, Mapping[str, Sequence[str]]],
    index: CorpusIndex,
    min_ratio: float = 0.0,
    max_examples: int = 5,
) -> Mapping[str, TaskContamination]:
    """Per task: items, flagged items, their share and a few flagged ids."""
    return MappingProxyType(
        {
            task: task_contamination(task, items, index, min_ratio, max_examples)
            for task, items in items_by_task.items()
        }
    )
