"""The URLs bench/loadtest.py loads, by set (`--set`), and the wrk script sending several in turn.

- `board`: the leaderboard page and its JSON twin (`/leaderboard/open_medical`, `/api/...`).
- `model`: the model page of one seeded entry and its JSON twin, then the model pages of up to
  200 entries in turn (half HTML, half JSON).
- `search`: a search of the board (`?q=llama`), HTML and JSON, then 120 searches in turn (model
  families, teams, sizes, medical words; half HTML, half JSON).
- `--mixed` (not a set): 94 views of the board in turn (`mixed_paths`).

The views sent in turn are each asked for once before the run (`loadtest.warm`): the time of that
first, uncached answer is reported apart, since the run itself then measures the cached views.
"""

import json
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

TRACK = "open_medical"
SETS = ("board", "model", "search")
BOARD = (f"/leaderboard/{TRACK}", f"/api/leaderboard/{TRACK}")
MODEL_PAGES = 200
SEARCH = "llama"
# Words of the seeded names (bench/loadtest.py's FAMILIES, MEDICAL_TEAMS, MEDICAL_SUFFIXES).
_WORDS = [
    "llama", "mistral", "mixtral", "qwen", "qwen2.5", "qwen3", "gemma", "phi", "smollm2", "olmo",
    "falcon3", "yi-1.5", "internlm", "meta-llama", "google", "microsoft", "allenai", "tiiuae",
    "epfl-llm", "biomistral", "aaditya", "johnsnowlabs", "medalpaca", "freedomintelligence",
    "ucsc-vlaa", "m42-health", "hpai-bsc", "contactdoctor", "openmeditron", "instadeepai",
    "mlabonne", "nousresearch", "henrychur", "adaptllm", "wanglab", "tsinghuac3i", "med",
    "medical", "clinical", "bio", "pubmed", "medqa-sft", "meditron", "doctor", "aloe",
    "ultramedical", "medalign", "health", "instruct", "chat",
]  # fmt: skip
_SIZES = ["0.5b", "1b", "1.5b", "3b", "7b", "8b", "9b", "13b", "14b", "27b", "32b", "70b"]


def search_terms(count: int = 120) -> list[str]:
    """`count` distinct searches: single words, then a word and a size, then two words."""
    terms = list(_WORDS)
    terms += [f"{word} {size}" for word in _WORDS[:12] for size in _SIZES[::2]]
    terms += [f"{a} {b}" for a in _WORDS[:8] for b in _WORDS[36:]]
    return list(dict.fromkeys(terms))[:count]


def search_paths(terms: list[str]) -> list[str]:
    """Each search as the page (even positions) or its JSON twin (odd)."""
    paths = []
    for i, term in enumerate(terms):
        prefix = "/api" if i % 2 else ""
        paths.append(f"{prefix}/leaderboard/{TRACK}?{urlencode({'q': term})}")
    return paths


def board_entry_ids(base: str) -> list[int]:
    """The entry ids of the board, in rank order (the JSON twin, one page of up to 1,000)."""
    with urllib.request.urlopen(f"{base}/api/leaderboard/{TRACK}?per_page=1000", timeout=30) as r:
        rows = json.loads(r.read())["rows"]
    return [int(row["entry_id"]) for row in rows]


def model_paths(ids: list[int], count: int = MODEL_PAGES) -> list[str]:
    """The model pages of `count` entries spread over the board, half HTML, half JSON."""
    step = max(1, len(ids) // count)
    chosen = ids[::step][:count]
    return [f"{'/api' if i % 2 else ''}/model/{entry}" for i, entry in enumerate(chosen)]


def single_paths(name: str, ids: list[int]) -> list[str]:
    """The URLs of a set loaded one at a time."""
    if name == "board":
        return list(BOARD)
    if name == "model":
        entry = ids[len(ids) // 2]  # a mid-board entry
        return [f"/model/{entry}", f"/api/model/{entry}"]
    if name == "search":
        query = urlencode({"q": SEARCH})
        return [f"/leaderboard/{TRACK}?{query}", f"/api/leaderboard/{TRACK}?{query}"]
    raise ValueError(f"no set '{name}' (sets: {', '.join(SETS)})")


def rotation_paths(name: str, ids: list[int]) -> list[str]:
    """The URLs of a set sent in turn (none for the board: see --mixed)."""
    if name == "model":
        return model_paths(ids)
    if name == "search":
        return search_paths(search_terms())
    return []


def mixed_paths() -> list[str]:
    """Many views of the board, HTML and JSON: each sort column, pages 1-3, some filters (the
    canonical URLs the pages link to, so none is a redirect)."""
    from medboard.leaderboard.ranking import track_spec
    from medboard.web.board import BoardQuery

    spec = track_spec(TRACK)
    views = [
        BoardQuery(sort=column, page=page)
        for column in ("average", "model", "parameters", "date", *spec.tasks)
        for page in (1, 2, 3)
    ]
    views += [
        BoardQuery(types=("fine-tuned",)),
        BoardQuery(precisions=("bfloat16",), complete=True),
        BoardQuery(q="llama"),
        BoardQuery(q="qwen med", sort="medqa_4options"),
        BoardQuery(min_b=1.0, max_b=10.0),
        BoardQuery(sources=("evaluated", "imported")),
        BoardQuery(per_page=50, page=4),
        BoardQuery(desc=False),
    ]
    paths = []
    for view in views:
        paths.append(view.url(f"/leaderboard/{TRACK}"))
        paths.append(view.url(f"/api/leaderboard/{TRACK}"))
    return paths


def rotation_script(paths: list[str], folder: Path, name: str) -> Path:
    """A wrk Lua script sending `paths` in turn."""
    quoted = ",\n  ".join(json.dumps(p) for p in paths)
    script = folder / f"{name}.lua"
    script.write_text(
        f"local paths = {{\n  {quoted}\n}}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i % #paths + 1\n"
        '  return wrk.format("GET", paths[i])\n'
        "end\n",
        encoding="utf-8",
    )
    return script
