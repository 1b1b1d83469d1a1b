import json

import pytest

from dgm_course import results


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("DGM_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("DGM_MODE", "standard")
    return tmp_path / "results"


def test_record_writes_and_replaces(folder):
    results.record("01_background", "mixture_test_nll", 2.5, "nats per point", n_data=1000, wall_time_s=12.34)
    results.record("01_background", "mixture_test_nll", 2.4, "nats per point", n_data=1000)
    data = json.loads((folder / "01_background.standard.json").read_text())
    assert data["mode"] == "standard" and [e["value"] for e in data["numbers"]] == [2.4]
    assert not list(folder.glob("*.part"))


@pytest.mark.parametrize("args, message", [
    (("background", "x", 1.0, "u"), "look like '01_background'"),
    (("01_background", "Bad Name", 1.0, "u"), "lower_snake_case"),
    (("01_background", "x", float("nan"), "u"), "finite"),
    (("01_background", "x", "abc", "u"), "could not convert"),
])
def test_record_rejects_bad_input(folder, args, message):
    with pytest.raises(ValueError, match=message):
        results.record(*args)


def test_table_with_targets_and_readme_update(folder, tmp_path, monkeypatch):
    results.record("02_autoregressive_models", "made_test_nll", 92.0, "nats", n_data=2000, wall_time_s=300)
    results.record("02_autoregressive_models", "nade_test_nll", 96.0, "nats")
    monkeypatch.setenv("DGM_MODE", "smoke")
    results.record("02_autoregressive_models", "made_test_nll", 140.0, "nats")
    table = results.table(folder).splitlines()
    made = [r for r in table if "made_test_nll" in r]
    assert made[0].split("|")[5].strip() == "standard" and "| <= 93 | <= 87 | yes |" in made[0]
    assert made[1].split("|")[5].strip() == "smoke" and "| <= 93 | <= 87 |  |" in made[1]  # no target in smoke mode
    assert "| **no** |" in next(r for r in table if "nade_test_nll" in r)


    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{results.START}\nold\n{results.END}\noutro\n")
    assert results.main(["--readme", str(readme), "--check"]) == 1
    assert results.main(["--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "made_test_nll" in text and "old" not in text
    assert results.main(["--readme", str(readme), "--check"]) == 0
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        results.update_readme(readme)


def test_results_dir_finds_the_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv("DGM_RESULTS_DIR", raising=False)
    (tmp_path / "solutions").mkdir()
    (tmp_path / "dgm_course").mkdir()
    monkeypatch.chdir(tmp_path / "solutions")
    assert results.results_dir() == tmp_path / "results"


def test_targets_can_name_another_number(folder):
    results.record("01_background", "histogram_test_nll", 1.9, "nats")
    results.record("01_background", "mixture_test_nll", 1.7, "nats")
    row = next(r for r in results.table(folder).splitlines() if "mixture_test_nll" in r)
    assert "| < histogram_test_nll | < histogram_test_nll | yes |" in row
    results.record("01_background", "mixture_test_nll", 2.0, "nats")
    row = next(r for r in results.table(folder).splitlines() if "mixture_test_nll" in r)
    assert "| **no** |" in row



@pytest.mark.parametrize("target, value, met", [
    ("<= 2 * fid_floor", 60.0, "yes"), ("<= 2 * fid_floor", 61.0, "**no**"), ("<= 1.3*fid_floor", 39.0, "yes"),
    (">= 0.95", 0.95, "yes"), ("> fid_floor", 30.0, "**no**"), ("<= 2 * unknown", 1.0, ""), ("<= 2 * 3", 1.0, ""),
    ("about 2", 1.0, ""),
])
def test_targets_can_scale_another_number(target, value, met):
    assert results._met(target, value, {"fid_floor": 30.0}) == met
