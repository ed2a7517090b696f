"""``--zero-shot`` values and vocabulary files: what they mean, and errors that name the bad one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mvlt.exits import UsageError
from mvlt.tagging import check_template, load_file, parse_specs
from mvlt.tagging.vocabulary import prompts


def test_labels_columns_and_files_combine_in_order(tmp_path: Path) -> None:
    path = tmp_path / "vocab.yaml"
    path.write_text("sleeves: [long sleeves, short sleeves, sleeveless]\n")
    spec = parse_specs(["colour=black, white ,red;pattern=solid,striped", "department,section", str(path)])
    assert spec.labels == {
        "colour": ["black", "white", "red"],
        "pattern": ["solid", "striped"],
        "sleeves": ["long sleeves", "short sleeves", "sleeveless"],
    }
    assert spec.columns == ["department", "section"]
    assert spec.attributes == ["colour", "pattern", "sleeves", "department", "section"]


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (["colour="], "--zero-shot 'colour=': no labels after '='"),
        (["=black,white"], "no attribute name before '='"),
        (["colour=black"], "'colour' needs at least two labels"),
        (["colour=black,,white"], "'colour' has an empty label"),
        (["colour=black,white,Black"], "repeats label(s) 'Black'"),
        (["colour=a,b", "colour"], "attribute 'colour' is given twice"),
        (["colour,,pattern"], "an empty column name"),
        (["col/our=a,b"], "'col/our' is not an attribute name"),
        ([], "--zero-shot: give the attributes"),
        ([" ; "], "no attribute given"),
    ],
)
def test_bad_specs_are_usage_errors_naming_the_spec(values: list[str], words: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_specs(values)
    assert words in str(err.value)


def test_vocabulary_files_json_and_yaml_and_their_errors(tmp_path: Path) -> None:
    good = tmp_path / "v.json"
    good.write_text(json.dumps({"colour": ["black", "white"], "fit": ["slim", "wide"]}))
    assert load_file(good) == {"colour": ["black", "white"], "fit": ["slim", "wide"]}
    with pytest.raises(FileNotFoundError, match=r"--zero-shot .*missing\.yaml: file not found"):
        parse_specs([str(tmp_path / "missing.yaml")])
    broken = tmp_path / "broken.yaml"
    broken.write_text("colour: [black, white\n")
    with pytest.raises(ValueError, match=r"broken\.yaml is not valid YAML"):
        load_file(broken)
    for text, words in [("- black\n- white\n", "expected a mapping"), ("colour: black\n", "must be a list")]:
        broken.write_text(text)
        with pytest.raises(ValueError, match=words) as err:
            load_file(broken)
        assert not isinstance(err.value, UsageError)  # the file is wrong (exit 1), not the flags


def test_prompt_templates() -> None:
    assert check_template("a photo of a {label} garment") == "a photo of a {label} garment"
    assert prompts("{label} {attribute}", "garment_group", ["Knitwear"]) == ["Knitwear garment group"]
    for template, words in [
        ("a photo", "must contain {label}"),
        ("{colour}", "unknown field"),
        ("{", "--prompt"),
    ]:
        with pytest.raises(UsageError, match=words):
            check_template(template)
