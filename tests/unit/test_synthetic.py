import numpy as np
import pandas as pd
import pytest

from tests import reference
from tf_cartola import synthetic
from tf_cartola.contract import features as F
from tf_cartola.synthetic import __main__ as synthetic_cli


@pytest.fixture(scope="module")
def frame():
    return synthetic.generate(128_000, seed=0)


def test_columns_types_and_ranges_follow_the_data_spec(frame):
    assert list(frame.columns) == list(F.CSV_COLUMNS)
    assert frame[F.ID_KEY].is_unique
    for column in F.INT_COLUMNS:
        assert frame[column].dtype == np.int64, column
    assert set(frame[F.LABEL_KEY].unique()) == {0, 1}
    assert frame["anos_como_pro"].between(0, 3).all()
    assert frame["anos_desde_criacao"].between(-1, 15).all()
    assert frame["avg_3"].between(0, 9.95).all() and frame["avg_4"].between(0, 7.67).all()
    assert frame["escalacoes"].between(0, 38).all()
    for column in ("norm_escalacao", "norm_rodadas", "rel_pont"):
        assert frame[column].dropna().between(0, 1).all(), column


def test_marginals_match_the_data_spec(frame):
    a = frame["anos_como_pro"]
    assert a.mean() == pytest.approx(0.63, abs=0.03) and a.std() == pytest.approx(1.02, abs=0.03)
    assert (a == 0).mean() == pytest.approx(0.68, abs=0.02)
    c = frame["anos_desde_criacao"]
    assert c.mean() == pytest.approx(2.99, abs=0.1) and c.std() == pytest.approx(2.7, abs=0.1)
    assert frame["avg_3"].mean() == pytest.approx(1.65, abs=0.05)
    assert (frame["avg_4"] == 0).mean() == pytest.approx(0.61, abs=0.03)


def test_missing_cells_sentinels_and_malformed_pixels_appear(frame):
    assert 0.02 < frame["rel_pont"].isna().mean() < 0.2
    assert 0.02 < frame["tempo_desperd"].isna().mean() < 0.2
    assert frame["pixels"].isna().mean() > 0.01
    assert (frame["pixels"] == "unknown").any()
    for column in ("anos_desde_criacao", "iteracao_atletismo", "iteracao_volei"):
        assert (frame[column] == -1).any(), column


def test_collinear_pairs_stay_collinear(frame):
    corr = lambda a, b: frame[[a, b]].dropna().corr().iloc[0, 1]  # noqa: E731
    assert abs(corr("dif_melhoria", "rel_pont")) > 0.95
    assert abs(corr("norm_rodadas", "escalacoes")) > 0.95
    assert abs(corr("max_camp", "min_camp")) > 0.95


def test_same_seed_same_frame_other_seed_other_frame():
    a, b = synthetic.generate(500, seed=4), synthetic.generate(500, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(synthetic.generate(500, seed=5))


def test_csv_round_trip_keeps_missing_cells_empty(tmp_path):
    path = tmp_path / "c.csv"
    synthetic.write_csv(synthetic.generate(200, seed=1), str(path))
    text = path.read_text().splitlines()
    assert text[0].split(",") == list(F.CSV_COLUMNS)
    assert any(",," in line or line.endswith(",") for line in text[1:])


def test_reference_procedure_reproduces_the_reported_metrics(frame):
    m = reference.run(frame)["metrics"]
    assert m["precision"] == pytest.approx(0.81, abs=0.05)
    assert m["recall"] == pytest.approx(0.75, abs=0.05)
    assert m["ks"] == pytest.approx(0.60, abs=0.05)
    assert m["mean_score_pro"] == pytest.approx(0.73, abs=0.05)
    assert m["mean_score_non_pro"] == pytest.approx(0.24, abs=0.05)


def test_next_month_keeps_most_users_and_converts_bypropensity(tmp_path):
    first = synthetic.generate(40_000, seed=1)
    path = tmp_path / "m1.csv"
    synthetic.write_csv(first, str(path))
    out = tmp_path / "m2.csv"
    assert (
        synthetic_cli.main(["--next_month_of", str(path), "--seed", "2", "--out", str(out)]) == 0
    )
    second = pd.read_csv(out, dtype={F.PIXELS: object})
    assert list(second.columns) == list(F.CSV_COLUMNS) and len(second) == len(first)
    assert second[F.ID_KEY].is_unique
    joined = first.merge(second, on=F.ID_KEY, suffixes=("", "_next"))
    assert abs(len(joined) / len(first) - synthetic.STAY) < 0.005  # 3% gone, as many new.
    assert (second[F.ID_KEY] > first[F.ID_KEY].max()).sum() == len(second) - len(joined)
    was_pro = joined[F.LABEL_KEY] == 1
    converted = joined.loc[~was_pro, f"{F.LABEL_KEY}_next"]
    churned = 1 - joined.loc[was_pro, f"{F.LABEL_KEY}_next"]
    assert abs(converted.mean() - synthetic.CONVERT) < 0.01
    assert abs(churned.mean() - synthetic.CHURN) < 0.01
    # Conversion rises with the generator's own propensity: its top quarter converts most.
    chance = synthetic.propensity(
        *(joined.loc[~was_pro, c] for c in ("anos_como_pro", "avg_3", "avg_4", "escalacoes")),
        joined.loc[~was_pro, "norm_escalacao"],
        joined.loc[~was_pro, "tempo_desperd"],
    )
    top = chance >= np.quantile(chance, 0.75)
    assert converted[top].mean() > 2 * converted[~top].mean()
    moved = (joined["escalacoes_next"] != joined["escalacoes"]).mean()
    assert (
        0.5 < moved < 0.8 and (joined["escalacoes_next"] - joined["escalacoes"]).abs().max() == 1
    )
