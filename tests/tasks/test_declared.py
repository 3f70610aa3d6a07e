"""Exams declared in TOML (medboard.tasks.declared): each refusal is one line, `FILE:LINE: reason`;
what is accepted becomes a task and a track; a stored declaration that no longer loads is skipped
with a warning. The commands end to end (add, eval, record, rank, queue, web) are in
tests/test_cli_exam.py."""

import json
from pathlib import Path

import pytest

from medboard.cli_exam import add_exam
from medboard.tasks import REGISTRY
from medboard.tasks.base import Registry, Task, Track
from medboard.tasks.declared import (
    ExamDeclarationError,
    builtin_names,
    exams_dir,
    read_declaration,
    registered,
    task_of,
)

RECORDS = [
    {
        "id": "c1",
        "question": "First-line drug for stable angina?",
        "options": {"A": "Aspirin", "B": "Nitroglycerin", "C": "Warfarin", "D": "Digoxin"},
        "answer": "B",
        "subject": "pharmacology",
    },
    {
        "id": "c2",
        "question": "Which valve is affected in rheumatic heart disease most often?",
        "options": {"A": "Mitral", "B": "Aortic", "C": "Tricuspid", "D": "Pulmonary"},
        "answer": "A",
        "subject": "valves",
    },
]
DECLARATION = """\
name = "cardio_exam_2026"
title = "Cardiology exam 2026"
language = "en"
license = "internal, not for redistribution"
data = "cardio.jsonl"
template = "Question: {question}\\n{options}Answer:"
choices = "letters"
protocol = "loglik"
public = false
"""


def jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def declare(folder: Path, text: str, data: str | None = None, name: str = "cardio.jsonl") -> Path:
    """A declaration in `folder`, with its data file (the two good records by default)."""
    if data is None:
        data = jsonl(RECORDS)
    (folder / name).write_text(data, encoding="utf-8")
    path = folder / "exam.toml"
    path.write_text(text, encoding="utf-8")
    return path


def refusal(path: Path, reserved: tuple[str, ...] = ()) -> str:
    with pytest.raises(ExamDeclarationError) as caught:
        read_declaration(path, reserved)
    message = str(caught.value)
    assert "\n" not in message
    return message


def with_line(line: str, number: int, text: str = DECLARATION) -> str:
    """The declaration with line `number` (1-based) replaced by `line`."""
    lines = text.splitlines()
    lines[number - 1] = line
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("", 1, "empty file: declare name, data, template"),
        ("  \n# nothing\n\n", 1, "empty file"),
        (with_line('data = "cardio.jsonl', 5), 5, "invalid TOML: "),
        (
            DECLARATION.replace('name = "cardio_exam_2026"\n', ""),
            1,
            "missing required field 'name'",
        ),
        (DECLARATION.replace('data = "cardio.jsonl"\n', ""), 1, "missing required field 'data'"),
        (with_line('colour = "red"', 3), 3, "unknown field 'colour' (fields: name, title, "),
        (DECLARATION + "\n[exam]\nname = 'x'\n", 11, "unknown field 'exam'"),
        (
            with_line('template = "{question} {options} {difficulty}"', 6),
            6,
            "template names an unknown field 'difficulty' (fields: context, id, options, question, "
            "subject)",
        ),
        (with_line('template = "{question} {options} {answer}"', 6), 6, "template shows {answer}"),
        (with_line('template = "{question {options}"', 6), 6, "template is not a format string"),
        (with_line('template = "{question.upper} {options}"', 6), 6, "unknown field"),
        (with_line('template = "{} {options}"', 6), 6, "unknown field ''"),
        (with_line('template = "{options}"', 6), 6, "template does not show {question}"),
        (with_line('template = "{question}"', 6), 6, "template does not show {options}"),
        (with_line('name = "Cardio-Exam"', 1), 1, "bad name 'Cardio-Exam': only a-z, 0-9 and _"),
        (with_line(f'name = "{"x" * 51}"', 1), 1, "at most 50 characters"),
        (with_line('language = "english"', 3), 3, "language 'english' is not an ISO 639-1 code"),
        (with_line('choices = "words"', 7), 7, "choices 'words' is not one of letters, texts"),
        (with_line('protocol = "flowertune"', 8), 8, "protocol 'flowertune' is not one of loglik"),
        (with_line('public = "no"', 9), 9, "public must be true or false, not 'no'"),
        (with_line("title = 2026", 2), 2, "title must be a string, not 2026"),
        (with_line('data = "cardio.xlsx"', 5), 5, "data file 'cardio.xlsx' is neither"),
        (with_line('data = "missing.jsonl"', 5), 5, "data file 'missing.jsonl' does not exist"),
    ],
)
def test_a_bad_declaration_is_refused_with_its_line(
    tmp_path: Path, text: str, line: int, reason: str
) -> None:
    path = declare(tmp_path, text)
    message = refusal(path)
    assert message.startswith(f"{path}:{line}: "), message
    assert reason in message, message


def test_a_built_in_name_is_refused(tmp_path: Path) -> None:
    path = declare(tmp_path, with_line('name = "medqa_4options"', 1))
    message = refusal(path, tuple(builtin_names(REGISTRY)))
    assert message == f"{path}:1: bad name 'medqa_4options': a built-in task or suite is called so"
    assert {"medqa_4options", "open_medical", "pubmedqa"} <= builtin_names(REGISTRY)


def test_empty_data_is_refused_at_the_data_line(tmp_path: Path) -> None:
    path = declare(tmp_path, DECLARATION, data="\n  \n")
    assert refusal(path) == f"{path}:5: data file 'cardio.jsonl' is empty"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"answer": "E"}, "record 'c2': answer 'E' is not among its options A, B, C, D"),
        ({"answer": None}, "record 'c2': missing field 'answer'"),
        ({"id": ""}, "a record needs an id"),
        ({"id": "c1"}, "record 'c1': its id is on line 1 already"),
        ({"options": {"A": "Mitral"}, "answer": "A"}, "at least two options"),
        ({"options": {"A": "Mitral", "B": " "}, "answer": "A"}, "record 'c2': option B is empty"),
        ({"context": 3}, "record 'c2': context must be a string"),
    ],
)
def test_a_bad_record_is_refused_with_its_file_and_line(
    tmp_path: Path, change: dict, reason: str
) -> None:
    second = {k: v for k, v in {**RECORDS[1], **change}.items() if v is not None}
    path = declare(tmp_path, DECLARATION, data=jsonl(RECORDS[:1]) + "\n" + jsonl([second]))
    data = (tmp_path / "cardio.jsonl").resolve()
    message = refusal(path)
    assert message.startswith(f"{data}:3: ") and reason in message, message


def test_an_answer_not_among_the_options_reads_as_documented(tmp_path: Path) -> None:
    bad = {**RECORDS[1], "answer": "E"}
    path = declare(tmp_path, DECLARATION, data=jsonl([RECORDS[0], bad]))
    data = (tmp_path / "cardio.jsonl").resolve()
    expected = f"{data}:2: record 'c2': answer 'E' is not among its options A, B, C, D"
    assert refusal(path) == expected


def test_invalid_json_and_text_that_is_not_utf8(tmp_path: Path) -> None:
    path = declare(tmp_path, DECLARATION, data=jsonl(RECORDS) + '{"id": "c3",\n')
    data = (tmp_path / "cardio.jsonl").resolve()
    assert refusal(path).startswith(f"{data}:3: invalid JSON: ")
    path.write_bytes(DECLARATION.encode() + b'title = "caf\xe9"\n')
    assert refusal(path) == f"{path}:10: not UTF-8 text: save it as UTF-8"


CSV = """\
id,question,A,B,C,D,E,answer,subject
d1,"A rash that is
itchy and round?",Tinea,Psoriasis,Eczema,Acne,,A,derm
d2,Five options here?,one,two,three,four,five,E,derm
d3,Which one?,x,y,z,w,,{answer},derm
"""


def csv_declaration(tmp_path: Path, answer: str = "B") -> Path:
    text = DECLARATION.replace("cardio.jsonl", "derm.csv").replace('"letters"', '"texts"')
    text = text.replace('"Question: {question}\\n{options}Answer:"', '"{subject}: {question}"')
    return declare(tmp_path, text, data=CSV.format(answer=answer), name="derm.csv")


def test_a_csv_record_is_refused_at_its_first_line(tmp_path: Path) -> None:
    path = csv_declaration(tmp_path, answer="E")
    data = (tmp_path / "derm.csv").resolve()
    assert refusal(path) == f"{data}:5: record 'd3': answer 'E' is not among its options A, B, C, D"
    path.parent.joinpath("derm.csv").write_text("id,question,A,answer\nq,x,y,A\n")
    assert refusal(path).startswith(f"{data}:1: the header must name id, question, options A, B")
    path.parent.joinpath("derm.csv").write_text("id,question,A,B,answer\nq,x,y,A\n")
    assert refusal(path) == f"{data}:2: 4 cells, the header has 5"


def test_a_csv_exam_scores_the_option_texts(tmp_path: Path) -> None:
    exam, records = read_declaration(csv_declaration(tmp_path))
    assert [len(r["options"]) for r in records] == [4, 5, 4]  # blank trailing options left out
    assert exam.size == 3 and exam.fields == ("id", "question", "subject")
    task = task_of(exam)
    sample = task.to_sample(records[0])
    assert sample.choices == ("Tinea", "Psoriasis", "Eczema", "Acne") and sample.target == 0
    assert task.prompt(sample) == "derm: A rash that is\nitchy and round?"
    assert task.continuations(sample)[0] == " Tinea"
    assert task.not_permutable


def test_a_csv_as_spreadsheets_save_it_reads_the_same(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts with a byte-order mark, and where the decimal separator is a
    comma it separates cells with semicolons; tabs come from copying cells. Each was refused
    with a header it could not read ("it has \ufeffid, ..." or "it has id;question;...")."""
    path = csv_declaration(tmp_path)
    _, expected = read_declaration(path)
    for delimiter in (";", "\t", ","):
        text = CSV.format(answer="B").replace(",", delimiter).replace("\n", "\r\n")
        (tmp_path / "derm.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
        assert read_declaration(path)[1] == expected, repr(delimiter)
    comma_in_cell = 'id;question;A;B;answer;subject\nq1;"1,5 mg or 2,5 mg?";1,5 mg;2,5 mg;A;dose\n'
    (tmp_path / "derm.csv").write_text(comma_in_cell, encoding="utf-8")
    [record] = read_declaration(path)[1]
    assert record["options"] == {"A": "1,5 mg", "B": "2,5 mg"} and record["question"] == (
        "1,5 mg or 2,5 mg?"
    )
    declare(tmp_path, "\ufeff" + DECLARATION, data="\ufeff" + jsonl(RECORDS))
    assert read_declaration(tmp_path / "exam.toml")[1] == RECORDS  # TOML and JSONL


def test_a_jsonl_exam_becomes_a_private_task(tmp_path: Path) -> None:
    exam, records = read_declaration(declare(tmp_path, DECLARATION))
    task = task_of(exam)
    assert isinstance(task, Task)
    assert (task.name, task.dataset, task.split) == (
        "cardio_exam_2026",
        "exam_cardio_exam_2026",
        "test",
    )
    assert task.private and task.title == "Cardiology exam 2026" and task.expected_size == 2
    from medboard.data.records import content_hash

    assert task.expected_hash == content_hash(records) == exam.content_hash
    sample = task.to_sample(records[1])
    assert sample.choices == ("A", "B", "C", "D") and sample.target == 0
    assert task.prompt(sample) == (
        "Question: Which valve is affected in rheumatic heart disease most often?\n"
        "A. Mitral\nB. Aortic\nC. Tricuspid\nD. Pulmonary\nAnswer:"
    )
    other = task_of(exam.__class__(**{**exam.__dict__, "template": "Q: {question}\n{options}A:"}))
    assert other.version != task.version  # another prompt, another version (another run key)


def test_registered_exams_join_a_registry_and_a_broken_one_is_skipped(
    tmp_path: Path, medboard_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exam, previous = add_exam(declare(tmp_path, DECLARATION), set())
    assert previous is None and (exams_dir() / "cardio_exam_2026.toml").is_file()
    assert (medboard_home / "data" / "exam_cardio_exam_2026" / "test.jsonl").is_file()
    broken = exams_dir() / "broken.toml"
    broken.write_text('name = "broken"\ndata = "x.jsonl"\ntemplate = "{question}"\nnope = 1\n')
    registry = Registry()
    for task, track in registered(registry):
        registry.add_task_track(task, track)
    assert registry.suite("cardio_exam_2026") == ("cardio_exam_2026",)
    assert registry.tracks()["cardio_exam_2026"].title == "Cardiology exam 2026"
    assert registry.resolve("cardio_exam_2026", "cardio_exam_2026")[0].expected_size == 2
    with pytest.raises(ValueError, match="'cardio_exam_2026' is already registered"):
        registry.add_suite("cardio_exam_2026", ("cardio_exam_2026",))  # only its own track may
    with pytest.raises(ValueError, match="track name 'other' is taken or not its task's"):
        registry.add_task_track(task, Track("other", "Other"))
    warnings = capsys.readouterr().err.splitlines()
    assert warnings == [
        f"warning: exam skipped: {broken}:4: unknown field 'nope' (fields: "
        "name, title, language, license, data, template, choices, protocol, public)"
    ]
    again = registered(registry)  # a built-in (here: registered) name wins; the exam is skipped
    assert again == []
    assert "a built-in task or suite is called cardio_exam_2026" in capsys.readouterr().err
