"""One run-id rule for the command lines and the DAG: the month given, else the month the input's
names carry, else the command asks for --run_id."""

import pytest

from serving import client
from tf_cartola.contract import months


def test_the_given_month_wins_then_the_inputs_names_and_nothing_is_guessed():
    assert months.resolve("2026-04", ["users-2026-01.csv"]) == "2026-04"
    assert months.resolve(None, ["exports/2026_03/part-1.csv"]) == "2026-03"
    with pytest.raises(ValueError, match="YYYY-MM"):
        months.resolve("month-2", ["users.csv"])
    for paths in (["users.csv"], [], ["a-2026-01.csv", "b-2026-02.csv"]):
        with pytest.raises(months.MissingRunId, match="give --run_id"):
            months.resolve(None, paths)


def test_a_scorer_without_a_month_asks_for_run_id_with_status_2(tmp_path, capsys):
    users = tmp_path / "users.csv"
    users.write_text("GLOBO_ID\n1\n")
    status = client.main(["--model_dir", str(tmp_path), "--csv", str(users), "--out", "s.csv"])
    assert status == client.EXIT_ARGUMENTS
    assert "give --run_id YYYY-MM" in capsys.readouterr().err
