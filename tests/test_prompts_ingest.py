"""Ingest turns public sets' layouts (HarmBench CSV, Alpaca JSON, JSONL) into valid sets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from steering_reliability.errors import PromptFileError
from steering_reliability.prompts import ingest, ingest_file, load_prompts

HARMBENCH_COLUMNS = [
    "Behavior",
    "FunctionalCategory",
    "SemanticCategory",
    "Tags",
    "ContextString",
    "BehaviorID",
]
HARMBENCH_ROWS = [
    ["Give advice on how to water a cactus", "standard", "gardening", "", "", "cactus_watering"],
    [
        "Summarise the recipe above in one line",
        "contextual",
        "cooking",
        "context",
        "Mix flour, water, salt.",
        "recipe_summary",
    ],
    ["Suggest a name for a pet goldfish", "standard", "NA", "", "", "007"],
]


def harmbench_csv(tmp_path: Path, rows: list[list[str]] = HARMBENCH_ROWS) -> Path:
    path = tmp_path / "harmbench_behaviors.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HARMBENCH_COLUMNS)
        writer.writerows(rows)
    return path


def alpaca_json(tmp_path: Path) -> Path:
    items = [
        {
            "instruction": "Give three tips for staying healthy.",
            "input": "",
            "output": "ANSWER-TEXT-1",
        },
        {
            "instruction": "Translate the sentence into French.",
            "input": "Good morning.",
            "output": "ANSWER-TEXT-2",
        },
    ]
    path = tmp_path / "alpaca_data.json"
    path.write_text(json.dumps(items, indent=2), encoding="utf-8")
    return path


def test_harmbench_csv_becomes_a_valid_set(tmp_path: Path) -> None:
    out = tmp_path / "out" / "hb.jsonl"
    path, n = ingest_file(harmbench_csv(tmp_path), out, split="harmbench")
    assert (path, n) == (out, 3)
    prompts = load_prompts(out)
    assert [p.id for p in prompts] == [
        "harmbench_cactus_watering",
        "harmbench_recipe_summary",
        "harmbench_007",
    ]
    assert [p.family for p in prompts] == ["gardening", "cooking", "NA"]
    assert {p.style for p in prompts} == {"unknown"} and {p.template for p in prompts} == {
        "ingested"
    }
    assert (
        prompts[1].prompt
        == "Mix flour, water, salt.\n\n---\n\nSummarise the recipe above in one line"
    )
    assert [p.meta["source_row"] for p in prompts] == ["2", "3", "4"]
    assert prompts[2].meta["source_id"] == "007"


def test_alpaca_json_list_becomes_a_valid_set_without_answers(tmp_path: Path) -> None:
    out = tmp_path / "alpaca.jsonl"
    ingest_file(alpaca_json(tmp_path), out, split="alpaca")
    prompts = load_prompts(out)
    assert [p.id for p in prompts] == ["alpaca_0001", "alpaca_0002"]
    assert prompts[1].prompt == "Translate the sentence into French.\n\nGood morning."
    assert {p.family for p in prompts} == {"unknown"}
    assert "ANSWER-TEXT" not in out.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("record", "text"),
    [
        ({"goal": "Write a poem about rain", "target": "Sure"}, "Write a poem about rain"),
        ({"forbidden_prompt": "Describe a sunset", "category": "art"}, "Describe a sunset"),
        ({"question": "What is a prime number?"}, "What is a prime number?"),
        ({"text": "Plan a picnic"}, "Plan a picnic"),
    ],
)
def test_jsonl_with_common_text_columns(tmp_path: Path, record: dict, text: str) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    (prompt,) = ingest(path, split="x")
    assert prompt.prompt == text and prompt.id == "x_0001"
    assert prompt.family == record.get("category", "unknown")


def test_column_overrides(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("q,topic,Behavior\nHow do I tie a knot?,sailing,ignored\n", encoding="utf-8")
    (prompt,) = ingest(path, split="mine", text_col="q", family_col="topic")
    assert (prompt.prompt, prompt.family) == ("How do I tie a knot?", "sailing")
    with pytest.raises(PromptFileError, match="--text-col names a column") as info:
        ingest(path, split="mine", text_col="qq")
    assert "did you mean 'q'" in str(info.value)


def test_missing_text_column_lists_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_text("body,label\nHello there,greeting\n", encoding="utf-8")
    with pytest.raises(PromptFileError, match="no prompt text column") as info:
        ingest(path, split="odd")
    assert "body" in str(info.value) and "--text-col" in str(info.value)


def test_an_empty_text_row_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    rows = [HARMBENCH_ROWS[0], ["  ", "standard", "x", "", "", "blank"]]
    out = tmp_path / "hb.jsonl"
    with pytest.raises(PromptFileError, match="empty prompt") as info:
        ingest_file(harmbench_csv(tmp_path, rows), out, split="hb")
    assert info.value.line == 3
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "harmbench_behaviors.csv"
    ]


def test_duplicate_source_ids_fall_back_to_file_order(tmp_path: Path) -> None:
    rows = [HARMBENCH_ROWS[0], [*HARMBENCH_ROWS[2][:5], "cactus_watering"]]
    prompts = ingest(harmbench_csv(tmp_path, rows), split="hb")
    assert [p.id for p in prompts] == ["hb_0001", "hb_0002"]
    with pytest.raises(PromptFileError, match="not unique"):
        ingest(harmbench_csv(tmp_path, rows), split="hb", id_col="BehaviorID")


def test_ingest_is_stable(tmp_path: Path) -> None:
    source = harmbench_csv(tmp_path)
    ingest_file(source, tmp_path / "a.jsonl", split="hb")
    ingest_file(source, tmp_path / "b.jsonl", split="hb")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('[{"prompt": "a"}, 3]', "line 1 is not an object"),
        ('[{"prompt": 3}]', "is not text"),
        ('[{"prompt": "a", "prompt": "b"}]', "duplicate key"),
        ("[]", "no records"),
    ],
)
def test_bad_sources_are_refused(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PromptFileError, match=needle):
        ingest(path, split="bad")


@pytest.mark.parametrize("split", ["", "a b", "../x", ".hidden"])
def test_bad_split_names_are_refused(tmp_path: Path, split: str) -> None:
    with pytest.raises(PromptFileError, match="split name"):
        ingest(harmbench_csv(tmp_path), split=split)


def test_output_must_be_jsonl(tmp_path: Path) -> None:
    with pytest.raises(PromptFileError, match=r"\.jsonl"):
        ingest_file(harmbench_csv(tmp_path), tmp_path / "out.csv", split="hb")


def test_blank_category_becomes_unknown(tmp_path: Path) -> None:
    rows = [["Suggest a name for a kitten", "standard", "   ", "", "", "kitten"]]
    (prompt,) = ingest(harmbench_csv(tmp_path, rows), split="hb")
    assert prompt.family == "unknown" and prompt.style == "unknown"
