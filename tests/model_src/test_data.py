import json
from pathlib import Path

import pytest

from model_src.data import load_splits, read_examples


def test_reads_csv_and_jsonl_of_text_and_label(tmp_path: Path):
    (tmp_path / "a.csv").write_text('text,label\n"good, really",pos\nbad,neg\n')
    (tmp_path / "a.jsonl").write_text(
        "\n".join(json.dumps({"text": t, "label": lbl}) for t, lbl in [("good", 1), ("bad", 0)])
    )
    assert [(e.text, e.label) for e in read_examples(tmp_path / "a.csv")] == [
        ("good, really", "pos"),
        ("bad", "neg"),
    ]
    assert [(e.text, e.label) for e in read_examples(tmp_path / "a.jsonl")] == [
        ("good", "1"),
        ("bad", "0"),
    ]


def test_a_file_without_a_text_column_is_refused(tmp_path: Path):
    (tmp_path / "a.csv").write_text("review,label\ngood,1\n")
    with pytest.raises(ValueError, match="needs a 'label' column"):
        read_examples(tmp_path / "a.csv")


def test_sst2_layout_selects_on_train_and_reports_on_dev(tiny_corpus: Path):
    splits = load_splits(tiny_corpus, seed=1)
    assert splits.test_name == "dev"
    assert len(splits.train) + len(splits.validation) == 400
    assert len(splits.test) == 100
    assert load_splits(tiny_corpus, seed=1).validation == splits.validation  # seeded


def test_a_single_file_is_split_three_ways(tmp_path: Path):
    rows = "\n".join(json.dumps({"text": f"t{i}", "label": i % 2}) for i in range(100))
    (tmp_path / "all.jsonl").write_text(rows)
    splits = load_splits(tmp_path / "all.jsonl", seed=0)
    texts = [e.text for s in (splits.train, splits.validation, splits.test) for e in s]
    assert sorted(texts) == sorted(f"t{i}" for i in range(100))
    assert len(splits.test) == 10 and len(splits.validation) == 9
