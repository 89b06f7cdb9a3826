"""classes.json is read in one place: the class list of a CSV and the eval class groups agree,
and a malformed file is the same one line wherever it is read."""

import json

import pytest

from mlfo.data.sources import load_index
from mlfo.data.splits import find_groups
from mlfo.errors import MLFOError


def _csv(tmp_path, classes) -> str:
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "train.csv").write_text("path,label\na.mp4,ring\n")
    (tmp_path / "classes.json").write_text(json.dumps({"classes": classes}))
    return str(tmp_path / "train.csv")


def test_classes_and_groups_from_one_reader(tmp_path):
    csv = _csv(tmp_path, [{"name": "move_up", "group": "motion"}, {"name": "ring", "group": "appearance"}, "zoom"])
    index = load_index(csv, cache=False, progress=False)
    names, groups = find_groups(csv)
    assert index.classes == names == ["move_up", "ring", "zoom"]
    assert groups == {"move_up": "motion", "ring": "appearance"}
    assert index.records[0].label == 1 and index.records[0].label_name == "ring"


@pytest.mark.parametrize("classes", ["ring", [{"name": "ring", "group": 3}], [{"name": ["ring"]}], [{"group": "a"}]])
def test_a_malformed_classes_json_is_the_same_line_everywhere(tmp_path, classes):
    csv = _csv(tmp_path, classes)
    message = r"classes\.json: not a classes\.json with a 'classes' list of names or \{name, group\}"
    with pytest.raises(MLFOError, match=message):
        load_index(csv, cache=False, progress=False)
    with pytest.raises(MLFOError, match=message):
        find_groups(csv)
