"""``mvlt evaluate --task tagging``: the tagging evaluation (the one ``mvlt tag --evaluate`` runs),
image only and image + text, into metrics.json and report.html; a case where only the text knows
the answer; and the errors of its flags."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import mvlt
from mvlt.cli import main
from mvlt.data.batches import encode_texts

from .conftest import strip_text_heads, write_headed_checkpoint, write_tagged_catalogue

QUIET = ["--no-progress", "--threads", "2"]
TWELVE_COLOURS = "colour=black,blue,brown,green,navy,orange,pink,purple,teal,yellow,white,red"


def evaluate(*args: str) -> int:
    return main(["evaluate", "--task", "tagging", *args, *QUIET])


def test_both_modes_into_metrics_and_the_report(
    headed_checkpoint: Path, shop: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "eval"
    assert evaluate("--checkpoint", str(headed_checkpoint), "--data", str(shop),
                    "--zero-shot", TWELVE_COLOURS, "--out", str(out)) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "colour: fine-tuned accuracy" in printed and "zero-shot, image+text accuracy" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    for source in ("finetuned", "zeroshot"):
        for mode in ("", "_image_text"):
            for stat in ("acc", "macro_f1"):
                assert 0.0 <= metrics[f"tag_colour_{stat}_{source}{mode}"] <= 1.0
    assert "tag_pattern_acc_finetuned_image_text" in metrics and "tag_pattern_acc_zeroshot" not in metrics
    protocol = metrics["protocol"]
    assert protocol["split"] == "test" and protocol["photos"] == 12
    assert "product of experts" in protocol["modes"]["image+text"]
    colour, pattern = protocol["attributes"]["colour"], protocol["attributes"]["pattern"]
    assert metrics["tag_colour_labels"] == 12 and "confusion" not in colour  # a large attribute: pairs
    assert set(colour["confused"]) == {
        "fine-tuned",
        "fine-tuned, image+text",
        "zero-shot",
        "zero-shot, image+text",
    }
    assert set(pattern["confusion"]) == {"labels", "fine-tuned", "fine-tuned, image+text"}  # small: matrices
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "MVLT tagging evaluation" in page
    assert "<h2>colour</h2>" in page and "worst-confused" in page and "majority class" in page
    assert "alt='confusion matrix, fine-tuned, image+text'" in page and "data:image/png;base64," in page
    record = json.loads((out / "tags.jsonl").read_text().splitlines()[0])
    assert set(record["tags_image_text"]) == set(record["tags"]) == {"colour", "pattern"}


def test_mvlt_tag_evaluate_is_the_same_evaluation(
    headed_checkpoint: Path, shop: Path, tmp_path: Path, capsys
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert evaluate("--checkpoint", str(headed_checkpoint), "--data", str(shop), "--out", str(a)) == 0
    assert main(["tag", "--evaluate", "--checkpoint", str(headed_checkpoint), "--data", str(shop),
                 "--out", str(b), *QUIET]) == 0  # fmt: skip
    first, second = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert {k: v for k, v in first.items() if k != "protocol"} == {
        k: v for k, v in second.items() if k != "protocol"
    }
    assert (b / "report.html").is_file()


def colour_told_catalogue(folder: Path) -> Path:
    """The tagging catalogue with each description replaced by its colour ("a garment" if none)."""
    manifest = write_tagged_catalogue(folder)
    with manifest.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["text"] = row["colour"] or "a garment"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def blind(model: mvlt.MVLT) -> mvlt.MVLT:
    """The image heads and the ITC image projection zeroed: the photo's evidence is flat."""
    with torch.no_grad():
        for head in model.tag_heads.values():
            head.fc.weight.zero_()
            head.fc.bias.zero_()
        model.itc_head.image_proj.weight.zero_()
        model.itc_head.image_proj.bias.zero_()
    return model


def test_image_and_text_reads_the_answer_from_the_text_heads(tmp_path: Path) -> None:
    """A photo that tells nothing and a description that is its colour, with text tag heads trained
    on those descriptions and the ITC text projection zeroed (zero-shot text evidence is flat): image
    only is one label for every row, image + text is right on every row, from the text heads."""
    manifest = colour_told_catalogue(tmp_path / "shop")
    with manifest.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["colour"]]
    model = blind(mvlt.MVLT.from_pretrained(write_headed_checkpoint(tmp_path / "ckpt", manifest))).eval()
    batch = encode_texts(model.tokenizer, [r["text"] for r in rows])
    labels = torch.tensor([model.label_maps.encode_tag("colour", r["colour"]) for r in rows])
    with torch.no_grad():
        features = model.text_features(batch["input_ids"], batch["attention_mask"])
    head = model.text_tag_heads["colour"]
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(1000):  # the text head alone (a random encoder's [CLS] features are close)
        loss = torch.nn.functional.cross_entropy(head(features), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.equal(head(features).argmax(-1), labels)
    with torch.no_grad():
        model.itc_head.text_proj.weight.zero_()
        model.itc_head.text_proj.bias.zero_()
    checkpoint = model.save_pretrained(tmp_path / "blind")
    out = tmp_path / "eval"
    assert evaluate("--checkpoint", str(checkpoint), "--data", str(manifest), "--out", str(out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tag_colour_acc_finetuned_image_text"] == 1.0
    assert metrics["tag_colour_acc_finetuned"] <= metrics["tag_colour_acc_majority"] < 0.5
    modes = metrics["protocol"]["modes"]["image+text"]
    assert "two fine-tuned experts" in modes and "zero-shot" not in modes
    assert metrics["protocol"]["prompt"] is None and metrics["protocol"]["temperature"] is None


def test_a_checkpoint_without_text_heads_reads_the_text_zero_shot(tmp_path: Path) -> None:
    """Fine-tuned before text tag heads existed: it loads, tags from the image alone, and its image +
    text falls back to zero-shot text evidence (here a description equal to a label: right on every
    row, for both sources), which the protocol states."""
    manifest = colour_told_catalogue(tmp_path / "shop")
    model = blind(mvlt.MVLT.from_pretrained(write_headed_checkpoint(tmp_path / "ckpt", manifest)))
    old = strip_text_heads(model.save_pretrained(tmp_path / "blind"))
    assert len(mvlt.MVLT.from_pretrained(old).text_tag_heads) == 0
    out = tmp_path / "eval"
    assert evaluate("--checkpoint", str(old), "--data", str(manifest), "--zero-shot", "colour",
                    "--out", str(out)) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    for source in ("finetuned", "zeroshot"):
        assert metrics[f"tag_colour_acc_{source}_image_text"] == 1.0
        assert metrics[f"tag_colour_acc_{source}"] < 0.5
    assert metrics["tag_colour_acc_finetuned"] <= metrics["tag_colour_acc_majority"]
    assert "no text tag heads" in metrics["protocol"]["modes"]["image+text"]
    tags = tmp_path / "tags.jsonl"
    assert main(["tag", "--checkpoint", str(old), "--data", str(manifest), "--out", str(tags), *QUIET]) == 0
    assert all(json.loads(line)["sources"] == {"colour": "fine-tuned", "pattern": "fine-tuned"}
               for line in tags.read_text().splitlines())  # fmt: skip


def test_errors_name_the_flag(checkpoint: Path, shop: Path, tmp_path: Path, capsys) -> None:
    data, out = ["--data", str(shop)], ["--out", str(tmp_path / "eval")]
    ckpt = ["--checkpoint", str(checkpoint)]
    cases = [
        ([*ckpt, *data, *out], 2, "has no tag heads"),
        ([*ckpt, *data, "--zero-shot", "colr,pattern", *out], 2, "unknown column(s) 'colr'"),
        ([*ckpt, *data, "--zero-shot", "colour", "--queries", "5", *out], 2, "--queries: does not apply"),
        ([*ckpt, *data, "--zero-shot", "colour", "--out", str(tmp_path / "t.jsonl")], 2, "is a folder"),
        ([*ckpt, *data, "--zero-shot", "colour", "--prompt", "a photo", *out], 2, "{label}"),
        (["--checkpoint", str(tmp_path / "x"), *data, "--zero-shot", "colour", *out], 1, "--checkpoint"),
    ]
    for argv, code, fragment in cases:
        assert evaluate(*argv) == code, argv
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("mvlt evaluate: error: ") and fragment in err, (argv, err)
    for argv, fragment in [
        (["--task", "tagging,retrieval", *ckpt, *data, *out], "tagging runs alone"),
        (["--task", "retrieval", *ckpt, *data, "--zero-shot", "colour", *out], "only with --task tagging"),
    ]:
        assert main(["evaluate", *argv, *QUIET]) == 2
        assert fragment in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize("argv", [["evaluate", "--help"]])
def test_help_lists_the_tagging_options(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit):
        main(argv)
    text = capsys.readouterr().out
    assert "tagging (--task tagging, run alone)" in text and "--zero-shot" in text
