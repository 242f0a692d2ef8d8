"""`searchbar eval-spell`: the metrics, the SymSpell baseline and the command on a small file."""

from __future__ import annotations

import json


def test_eval_spell_command_prints_every_system(tmp_path, capsys):
    from search_tools.cli import main

    path = tmp_path / "pairs.tsv"
    path.write_text("tayler swift\ttaylor swift\njazz piano\tjazz piano\n", encoding="utf-8")
    assert main(["eval-spell", str(path), "--json", str(tmp_path / "out.json")]) == 0
    printed = capsys.readouterr().out
    for system in ("spell_bart + guard", "spell_bart raw", "SymSpell lookup_compound"):
        assert system in printed
    rows = json.loads((tmp_path / "out.json").read_text())[str(path)]
    assert {r["system"] for r in rows} >= {"spell_bart + guard", "SymSpell lookup_compound"}
    assert all(r["pairs"] == 2 for r in rows)
