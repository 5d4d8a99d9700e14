"""The README's results block is the one training/readme_results.py writes from docs/results/report.json."""
import copy
import json
from pathlib import Path

import pytest

from training import readme_results as rr

REPO = Path(__file__).resolve().parents[1]


def test_readme_block_matches_the_shipped_report():
    report = json.loads((REPO / "docs" / "results" / "report.json").read_text())
    readme = (REPO / "README.md").read_text()
    block = readme.split(rr.BEGIN, 1)[1].split(rr.END, 1)[0]
    assert block.strip() == rr.render(report).strip(), \
        "README results are stale: python3 training/readme_results.py docs/results/report.json --readme README.md"


def test_summary_follows_the_numbers(tmp_path):
    report = json.loads((REPO / "docs" / "results" / "report.json").read_text())
    r = copy.deepcopy(report)
    main = rr.shipped_stage(r)
    for row in r["stages"][main]:
        row["accuracy"] = 0.999
        row["per_class"] = [0.999] * len(r["classes"])
    text = rr.render(r)
    assert "reaches the published HQARF accuracy at level(s) 0, 1, 2, 3, 4;" in text
    assert "met at level(s) 0, 1, 2, 3, 4." in text and "Classes below 0.5" not in text
    r["stages"][main][4]["accuracy"] = 0.1
    r["stages"][main][4]["per_class"][2] = 0.2
    text = rr.render(r)
    assert "falls short at level(s) 4" in text and f"{r['classes'][2]} 0.20" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{rr.BEGIN}\nold\n{rr.END}\nafter\n")
    rr.main([str(REPO / "docs" / "results" / "report.json"), "--readme", str(readme)])
    out = readme.read_text()
    assert out.startswith("intro\n") and out.endswith("after\n") and "old" not in out
    readme.write_text("no markers")
    with pytest.raises(SystemExit, match="markers"):
        rr.main([str(REPO / "docs" / "results" / "report.json"), "--readme", str(readme)])


def test_stages_a_run_did_not_evaluate_have_no_column():
    report = json.loads((REPO / "docs" / "results" / "report.json").read_text())
    row = next(iter(report["stages"].values()))
    with_all = copy.deepcopy(report)
    with_all["stages"]["hae"] = copy.deepcopy(row)
    with_all["stages"]["hqarf_nokl"] = copy.deepcopy(row)
    assert "HAE (no quantiser)" in rr.render(with_all) and "The continuous HAE keeps" in rr.render(with_all)
    without = copy.deepcopy(with_all)
    del without["stages"]["hae"], without["stages"]["hqarf_nokl"]
    text = rr.render(without)
    assert "HAE (no quantiser)" not in text and "HQARF without KL" not in text and "continuous HAE" not in text
    header, rule = text.splitlines()[:2]
    assert header.count("|") == rule.count("|") == text.splitlines()[2].count("|")


def test_a_codec_with_exemplars_gets_its_network_rendering_column():
    report = json.loads((REPO / "docs" / "results" / "report.json").read_text())
    report["stages"].pop("network", None)
    main = rr.shipped_stage(report)
    r = copy.deepcopy(report)
    r["stages"]["network"] = copy.deepcopy(r["stages"][main])
    for row in r["stages"]["network"][2:]:
        row["snr_db"] += 3.0
        row["accuracy"], row["accuracy_heldout"] = 0.5, 0.25
    for row in r["stages"]["network"]:
        row["rendering"] = "network"
    for row in r["stages"][main]:
        row["rendering"] = "exemplar" if row["level"] >= 2 else "network"
    text = rr.render(r)
    header, rule, first = text.splitlines()[:3]
    assert "network rendering (no exemplars): project / held-out" in header
    assert header.count("|") == rule.count("|") == first.count("|")
    assert "(the same)" in first and "(network" not in first
    level4 = text.splitlines()[6]
    assert "0.500 / 0.250" in level4 and f"(network {r['stages']['network'][4]['snr_db']:.1f})" in level4
    assert "At level(s) 2, 3, 4 the shipped decoder outputs exemplars" in text
    # the levels come from the rows' record of the rendering, not from the SNR: level 3 alone here
    for row in r["stages"][main]:
        row["rendering"] = "exemplar" if row["level"] == 3 else "network"
    text = rr.render(r)
    assert "At level(s) 3 the shipped decoder outputs exemplars" in text and "(the same)" in text.splitlines()[6]
    # a report from before the rows recorded it: where the network rendering's SNR differs
    for rows in r["stages"].values():
        for row in rows:
            row.pop("rendering", None)
    assert "At level(s) 2, 3, 4 the shipped decoder outputs exemplars" in rr.render(r)
    # a report without the network stage (evaluated before it existed, or a codec decoded without its bank)
    text = rr.render(report)
    assert "network rendering" not in text and "(network" not in text
    assert "At level(s) 2, 3, 4 the shipped decoder outputs exemplars" in text
