"""Evaluation protocols: named, versioned ways of asking a multiple-choice task.

`loglik` scores each choice's log-likelihood (the task's own prompt, Task.prompt); the others
ask the model to generate an answer, which medboard.scoring.extract reads back:

- `flowertune` ("flowertune/1"): the FlowerTune LLM Leaderboard's medical evaluation (flower
  repo, benchmarks/flowertune-llm/evaluation/medical/benchmarks.py and utils.py), reproduced
  exactly: Meditron's instruction per dataset, its question format, its `<|im_start|>question`
  wrapper (whatever the model's own chat template), greedy decoding with no stop string, and its
  answer extraction. **It reproduces FlowerTune's label leak**: the reference sets
  `max_new_tokens` to the token count of the *gold answer* of the first question of each batch
  of 16 (`len(tokenizer(batch["gold"][0]))`), so the answer's length decides how much the model
  may say. It also reproduces the matching of outputs back by prompt string: questions with the
  same prompt all get the output of the last one. Use it to compare with FlowerTune's published
  numbers, never to rank models; `generative` is the corrected protocol.
- `generative` ("generative/1"): an instruction to answer with the letter (or yes/no/maybe),
  the model's chat template when its tokenizer has one, a fixed budget of new tokens that never
  depends on the gold answer, and a tolerant extraction.
- `cot` ("cot/1"): the same question, but the model thinks step by step and ends with a line
  "Answer: X", read from the end of its reasoning; a larger budget.

Rendering is here (tasks render prompts); the model's chat template comes in as a function, so a
task still knows no model.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from medboard.errors import MedboardError
from medboard.tasks.base import Sample, Task, option_lines

ChatFormatter = Callable[[Sequence[Mapping[str, str]]], str | None]
Renderer = Callable[[Task, Sample, ChatFormatter | None], str]

LOGLIK = "loglik"
LOGLIK_VERSION = "loglik/1"
LABELS = ("yes", "no", "maybe")


class UnknownProtocolError(MedboardError):
    pass


# -- flowertune: benchmarks.py, verbatim ---------------------------------------------------------
# "The instructions refer to Meditron evaluation" (epfLLM/meditron evaluation/instructions.json).
_DOCTOR = (
    "You are a medical doctor answering realworld medical entrance exam questions. Based on your "
    "understanding of basic and clinical science, medical knowledge, and mechanisms underlying "
    "health, disease, patient care, and modes of therapy, answer the following multiple-choice "
    "question. Select one correct answer from A to {last}. Base your answer on the current and "
    "standard practices referenced in medical guidelines."
)
FLOWERTUNE_INSTRUCTIONS = {
    "pubmedqa": "As an expert doctor in clinical science and medical knowledge, can you tell me "
    "if the following statement is correct? Answer yes, no, or maybe.",
    # "from A to E" although the questions have 4 options: as the reference has it
    "medqa": "You are a medical doctor taking the US Medical Licensing Examination. You need to "
    "demonstrate your understanding of basic and clinical science, medical knowledge, and "
    "mechanisms underlying health, disease, patient care, and modes of therapy. Show your ability "
    "to apply the knowledge essential for medical practice. For the following multiple-choice "
    "question, select one correct answer from A to E. Base your answer on the current and "
    "standard practices referenced in medical guidelines.",
    "medmcqa": _DOCTOR.format(last="D"),
    "careqa": _DOCTOR.format(last="D"),
}
FLOWERTUNE_BATCH_SIZE = 16  # eval.py's --batch-size default, which the leaderboard uses


def is_labels(sample: Sample) -> bool:
    """Whether the sample is answered by yes/no/maybe (PubMedQA) rather than by a letter."""
    return tuple(sample.options) == LABELS


def gold_key(sample: Sample) -> str:
    """The gold answer as the model would write it: its letter, or yes/no/maybe."""
    return list(sample.options)[sample.target]


def flowertune_question(question: str, choices: Sequence[str]) -> str:
    """utils.py `format_example`: a '?' is added to a question ending neither in '?' nor '.'."""
    if not question.endswith("?") and not question.endswith("."):
        question += "?"
    options = "\n".join(f"{chr(65 + i)}. {choice}" for i, choice in enumerate(choices))
    return "Question: " + question + "\n\nOptions:\n" + options


def flowertune_instruction(task: Task, sample: Sample) -> str:
    """The reference's instruction for its four datasets; for the other tasks (an extension of
    FlowerTune, which has none) the MedMCQA one with the right last letter."""
    if task.family in FLOWERTUNE_INSTRUCTIONS:
        return FLOWERTUNE_INSTRUCTIONS[task.family]
    if is_labels(sample):
        return FLOWERTUNE_INSTRUCTIONS["pubmedqa"]
    return _DOCTOR.format(last=list(sample.options)[-1])


def render_flowertune(task: Task, sample: Sample, chat: ChatFormatter | None) -> str:
    """benchmarks.py `post_process` + `inference`; the model's chat template is not used."""
    if is_labels(sample):
        body = f"{sample.context}\n{sample.question}"  # contexts joined with "\n", as ours are
    else:
        body = flowertune_question(sample.question, list(sample.options.values()))
    prompt = f"{flowertune_instruction(task, sample)}\n{body}\nThe answer is:\n"
    return f"<|im_start|>question\n{prompt}<|im_end|>\n<|im_start|>answer\n"


def flowertune_budgets(samples: Sequence[Sample], count_tokens: Callable[[str], int]) -> list[int]:
    """FlowerTune's max_new_tokens per sample: THE LABEL LEAK, reproduced on purpose.

    The reference decodes batches of 16 in dataset order and gives every question of a batch
    `len(tokenizer(gold_of_first_question, add_special_tokens=False))` new tokens: one token for
    a letter in most tokenizers, and for PubMedQA the length of "yes", "no" or "maybe".
    `count_tokens` counts a bare string's tokens (no special tokens).
    """
    budgets: list[int] = []
    for start in range(0, len(samples), FLOWERTUNE_BATCH_SIZE):
        batch = samples[start : start + FLOWERTUNE_BATCH_SIZE]
        budget = max(1, count_tokens(gold_key(batch[0])))
        budgets.extend([budget] * len(batch))
    return budgets


# -- generative and cot ------------------------------------------------------------------------
def _letters(sample: Sample) -> str:
    keys = list(sample.options)
    return ", ".join(keys[:-1]) + f" or {keys[-1]}" if len(keys) > 1 else keys[0]


def _question_block(sample: Sample) -> str:
    if is_labels(sample):
        return f"Abstract: {sample.context}\nQuestion: {sample.question}"
    return f"Question: {sample.question.strip()}\n{option_lines(sample)}".rstrip("\n")


def _ask(user: str, plain_suffix: str, chat: ChatFormatter | None) -> str:
    """The user turn in the model's chat template, else as plain text with a cue to answer."""
    templated = chat([{"role": "user", "content": user}]) if chat is not None else None
    return templated if templated is not None else user + plain_suffix


def render_generative(task: Task, sample: Sample, chat: ChatFormatter | None) -> str:
    if is_labels(sample):
        instruction = (
            "Answer the question about the abstract with yes, no or maybe, and nothing else."
        )
    else:
        instruction = (
            "Answer the following multiple-choice question. Reply with the letter of the "
            f"correct option ({_letters(sample)}) and nothing else."
        )
    return _ask(f"{instruction}\n\n{_question_block(sample)}", "\nAnswer:", chat)


def render_cot(task: Task, sample: Sample, chat: ChatFormatter | None) -> str:
    if is_labels(sample):
        instruction = (
            "Answer the question about the abstract. Think step by step, then give your final "
            'answer on the last line as "Answer: yes", "Answer: no" or "Answer: maybe".'
        )
    else:
        instruction = (
            "Answer the following multiple-choice question. Think step by step, then give "
            'your final answer on the last line as "Answer: X", where X is the letter of the '
            f"correct option ({_letters(sample)})."
        )
    return _ask(f"{instruction}\n\n{_question_block(sample)}", "\nLet's think step by step.", chat)


# -- the registry --------------------------------------------------------------------------------
@dataclass(frozen=True)
class GenerationProtocol:
    """A generative protocol: its prompt, its decoding budget and stops, its extraction.

    `version` goes into the run key (RunSpec.protocol): changing anything that decides the
    numbers means a new version. `max_new_tokens` None means FlowerTune's gold-derived budget.
    """

    name: str
    version: str
    render: Renderer
    max_new_tokens: int | None
    stop: tuple[str, ...]
    extractor: str  # a name in medboard.scoring.extract.EXTRACTORS
    share_duplicate_prompts: bool = False
    summary: str = ""

    def prompt(self, task: Task, sample: Sample, chat: ChatFormatter | None) -> str:
        return self.render(task, sample, chat)

    def budgets(
        self,
        samples: Sequence[Sample],
        count_tokens: Callable[[str], int],
        override: int | None = None,
    ) -> list[int]:
        """max_new_tokens per sample: the override, else the protocol's own."""
        if override is not None:
            return [override] * len(samples)
        if self.max_new_tokens is None:
            return flowertune_budgets(samples, count_tokens)
        return [self.max_new_tokens] * len(samples)


FLOWERTUNE = GenerationProtocol(
    name="flowertune",
    version="flowertune/1",
    render=render_flowertune,
    max_new_tokens=None,
    stop=(),  # the reference builds a stop list ("###", eos, pad) and never passes it
    extractor="flowertune",
    share_duplicate_prompts=True,
    summary="FlowerTune's generative evaluation, faithful (leaks the gold's length)",
)
GENERATIVE = GenerationProtocol(
    name="generative",
    version="generative/1",
    render=render_generative,
    max_new_tokens=32,
    stop=("\nQuestion:",),
    extractor="generative",
    summary="answer with a letter; chat template; fixed budget",
)
COT = GenerationProtocol(
    name="cot",
    version="cot/1",
    render=render_cot,
    max_new_tokens=512,
    stop=("\nQuestion:",),
    extractor="cot",
    summary="think step by step, then 'Answer: X'",
)
PROTOCOLS = {p.name: p for p in (FLOWERTUNE, GENERATIVE, COT)}
PROTOCOL_NAMES = (LOGLIK, *PROTOCOLS)


def protocol_version(name: str, max_new_tokens: int | None = None) -> str:
    """The protocol string of the run key: the version, and a budget that overrides its own.

    An override is written into the string ("generative/1;max_new_tokens=64") so that runs with
    other budgets get other keys while every existing key stays what it was.
    """
    if name == LOGLIK:
        if max_new_tokens is not None:
            raise UnknownProtocolError(
                "--max-new-tokens applies to the generative protocols (flowertune, generative, "
                "cot), not to loglik"
            )
        return LOGLIK_VERSION
    version = generation_protocol(name).version
    return version if max_new_tokens is None else f"{version};max_new_tokens={max_new_tokens}"


def generation_protocol(name: str) -> GenerationProtocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        known = ", ".join(PROTOCOL_NAMES)
        raise UnknownProtocolError(f"unknown protocol '{name}' (choose from {known})") from None
