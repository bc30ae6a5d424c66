"""Tables of a results folder recomputed from hand-written records (benchmark.report)."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from benchmark.cli import main
from benchmark.report import build, comparisons, formats, tables
from benchmark.report import claim as claim_module
from benchmark.run.store import SCHEMA

# Student-t quantiles t_{0.975, df} from a printed table (independent of scipy).
T975 = {1: 12.706204736, 2: 4.302652730, 3: 3.182446305}


def make_record(stream, strategy, seed, final=0.5, forgetting=0.2, locality=0.5, orig=0.4,
                seconds=(1.0, 1.0), params=(100, 100), status="ok", error=None, hparams=None,
                memory=None, info=None, epochs=1):
    """A record with every field the store validates and the runner writes, for a two-step
    stream: a = [[1, -], [old, new]] with old = 1 - forgetting and (old + new) / 2 = final.

    ``memory`` = (model bytes, state bytes) after each step adds the memory costs, loss curves
    and ``strategy_info`` (``info``, else the registry's) of a current record; without it the
    record is an older one, without them."""
    hparams = hparams or {}
    config = {"stream": stream, "stream_options": {"n_experiences": 2}, "backbone": "mlp",
              "strategy": strategy, "hparams": hparams, "seed": seed,
              "train": {"epochs": epochs, "batch_size": 8, "lr": 0.01}, "device": "cpu",
              "deterministic": False, "source": None, "epochs": epochs}
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    record = {"schema": SCHEMA, "key": key, "status": status, "error": error, "config": config,
              "classes_per_step": [[0, 1], [2, 3]], "accuracy_matrix": [], "step_locality": [],
              "original_locality": None, "metrics": {}, "costs": {"total_seconds": 1.0},
              "environment": {"python": "3.11", "torch": "2.x", "device": "cpu", "host": "h"}}
    if status == "ok":
        old = 1.0 - forgetting
        new = 2 * final - old
        record.update(
            accuracy_matrix=[[1.0, None], [old, new]], step_locality=[None, locality],
            original_locality=orig,
            metrics={"final_accuracy": final, "final_accuracy_weighted": final,
                     "average_incremental_accuracy": (1.0 + final) / 2, "forgetting": forgetting,
                     "bwt": -forgetting, "locality": locality, "original_locality": orig,
                     "old_accuracy": old, "new_accuracy": new},
            costs={"seconds": list(seconds), "peak_memory_mb": [10.0, 12.0],
                   "memory_kind": "process_max_rss", "parameters": list(params),
                   "trainable_parameters": list(params), "source": None, "total_seconds": 3.0})
    if memory is not None:
        from strategies import STRATEGIES

        model, state = memory
        record["costs"].update(model_bytes=[model, model], state_bytes=[state, state])
        record["strategy_info"] = info or STRATEGIES[strategy].info()
        record["steps"] = [{"loss_curve": [{"phase": "train", "epoch": 1, "loss": 1.0 + seed},
                                           {"phase": "train", "epoch": 2, "loss": 0.5}]}
                           for _ in range(2)]
    return record


def write_records(root: Path, records) -> Path:
    runs = root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for r in records:
        (runs / f"{r['key']}.json").write_text(json.dumps(r))
    return root


def read_table(root: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(root / "tables" / name)


@pytest.fixture(scope="module")
def one_stream(tmp_path_factory):
    """finetune seeds 0-2, joint (reference) seed 0, a failed finetune run; report built."""
    root = tmp_path_factory.mktemp("one")
    records = [
        make_record("s", "finetune", 0, final=0.6, forgetting=0.30, locality=0.5,
                    seconds=(1, 2), params=(10, 20)),
        make_record("s", "finetune", 1, final=0.7, forgetting=0.20, locality=0.5,
                    seconds=(2, 2), params=(10, 20)),
        make_record("s", "finetune", 2, final=0.8, forgetting=0.10, locality=0.8,
                    seconds=(3, 3), params=(10, 20)),
        make_record("s", "finetune", 3, status="failed", error="diverged: loss is nan"),
        make_record("s", "joint", 0, final=0.9, forgetting=0.05, locality=0.9),
    ]
    write_records(root, records)
    build.build_report(root, quiet=True)
    return root


def test_summary_numbers_match_hand_computation(one_stream):
    summary = read_table(one_stream, "summary.csv")
    assert list(summary["label"]) == ["joint", "finetune"]  # the reference first
    joint, ft = summary.iloc[0], summary.iloc[1]
    assert bool(joint["reference"]) and not bool(ft["reference"])
    assert (joint["role"], joint["note"], ft["role"]) == ("reference", "upper bound", "rival")
    assert ft["n"] == 3 and ft["n_failed"] == 1 and ft["seeds"] == "0 1 2"
    # final accuracy 0.6, 0.7, 0.8: mean 0.7, std 0.1; with 3 seeds the expanded bootstrap
    # tail (6.8e-8) is below the chance of the all-lowest resample (1/27): [min, max]
    assert ft["final_accuracy_mean"] == pytest.approx(0.7)
    assert ft["final_accuracy_std"] == pytest.approx(0.1)
    assert ft["final_accuracy_ci_low"] == pytest.approx(0.6)
    assert ft["final_accuracy_ci_high"] == pytest.approx(0.8)
    # locality 0.5, 0.5, 0.8: mean 0.6, std sqrt((0.01 + 0.01 + 0.04) / 2)
    std = math.sqrt(0.06 / 2)
    assert ft["locality_mean"] == pytest.approx(0.6)
    assert ft["locality_std"] == pytest.approx(std)
    assert (ft["locality_ci_low"], ft["locality_ci_high"]) == pytest.approx((0.5, 0.8))
    # forgetting 0.3, 0.2, 0.1 and BWT its negative; old accuracy = 1 - forgetting
    assert ft["forgetting_mean"] == pytest.approx(0.2)
    assert ft["bwt_mean"] == pytest.approx(-0.2)
    assert ft["old_accuracy_mean"] == pytest.approx(0.8)
    # new = 2 final - old: 0.5, 0.6, 0.7
    assert ft["new_accuracy_mean"] == pytest.approx(0.6)
    assert ft["average_incremental_accuracy_mean"] == pytest.approx(0.85)
    # seconds summed over steps: 3, 4, 6; parameters after the last step: 20
    assert ft["seconds_mean"] == pytest.approx(13 / 3)
    assert ft["seconds_std"] == pytest.approx(math.sqrt(((3 - 13 / 3) ** 2 + (4 - 13 / 3) ** 2
                                                          + (6 - 13 / 3) ** 2) / 2))
    assert ft["parameters_mean"] == 20 and ft["parameters_std"] == 0
    assert ft["final_accuracy_n"] == 3


def test_interval_undefined_for_a_single_seed(one_stream):
    joint = read_table(one_stream, "summary.csv").iloc[0]
    assert joint["n"] == 1 and joint["final_accuracy_mean"] == pytest.approx(0.9)
    for col in ("final_accuracy_std", "final_accuracy_ci_low", "final_accuracy_ci_high"):
        assert math.isnan(joint[col])


def test_runs_table_has_every_run_and_metric(one_stream):
    runs = read_table(one_stream, "runs.csv")
    assert len(runs) == 5
    failed = runs[runs["status"] == "failed"]
    assert list(failed["error"]) == ["diverged: loss is nan"]
    for m in tables.ALL_METRIC_NAMES:
        assert m in runs.columns
    ok = runs[(runs["strategy"] == "finetune") & (runs["status"] == "ok")].sort_values("seed")
    assert list(ok["final_accuracy"]) == pytest.approx([0.6, 0.7, 0.8])
    assert list(ok["seconds"]) == pytest.approx([3, 4, 6])
    assert list(ok["parameters"]) == [20, 20, 20]


def test_runs_table_keeps_extra_metrics():
    rec = make_record("s", "pnc", 0)
    rec["metrics"]["kept_channel_fraction"] = 0.25
    runs = tables.runs_table([rec, make_record("s", "ewc", 0)])
    assert "kept_channel_fraction" in runs.columns
    assert runs.set_index("strategy").loc["pnc", "kept_channel_fraction"] == 0.25
    assert math.isnan(runs.set_index("strategy").loc["ewc", "kept_channel_fraction"])


def test_markdown_and_latex_mark_reference_and_best():
    records = [make_record("s", name, seed, final=f + 0.01 * seed, forgetting=0.2)
               for name, f in (("ewc", 0.6), ("lwf", 0.7), ("joint", 0.9)) for seed in (0, 1)]
    summary = tables.summary_table(tables.runs_table(records))
    md = formats.summary_markdown(summary)
    rows = [line for line in md.splitlines() if line.startswith("| s ")]
    assert "joint (upper bound)" in rows[0]
    lwf = next(r for r in rows if "| lwf" in r)
    ewc = next(r for r in rows if "| ewc" in r)
    assert "**70.5 [70.0, 71.0]**" in lwf and "**" not in rows[0]  # best bold, reference never
    assert "60.5 [60.0, 61.0]" in ewc and "**60.5" not in ewc
    # forgetting ties between the rivals: nobody marked
    assert "**20.0" not in md
    tex = formats.summary_latex(summary)
    assert "\\toprule" in tex and "joint (upper bound)" in tex
    assert "\\textbf{70.5 [70.0, 71.0]}" in tex


def test_format_cell():
    assert formats.format_cell(0.7, 0.6, 0.8, "fraction") == "70.0 [60.0, 80.0]"
    assert formats.format_cell(0.7, float("nan"), float("nan"), "fraction") == "70.0"
    assert formats.format_cell(float("nan"), 0, 0, "fraction") == "—"
    assert formats.format_cell(26634, 26634, 26634, "count") == "26,634"
    assert formats.format_cell(108600, 100000, 120000, "bytes") == "108.6 kB"


def test_format_bytes():
    assert formats.format_bytes(512) == "512 B"
    assert formats.format_bytes(108600) == "108.6 kB"
    assert formats.format_bytes(2_400_000) == "2.4 MB"
    assert formats.format_bytes(3.2e9) == "3.2 GB"
    assert formats.format_bytes(float("nan")) == "—"


def paired_records():
    """pnc and ewc on seeds 0-3, lwf on seeds 0-2, finetune on seed 0 only."""
    pnc = [0.80, 0.75, 0.90, 0.85]
    ewc = [0.70, 0.72, 0.78, 0.74]
    lwf = [0.78, 0.70, 0.91]
    loc_pnc = [0.90, 0.80, 0.95, 0.85]
    loc_ewc = [0.50, 0.55, 0.60, 0.52]
    recs = [make_record("s", "pnc", i, final=v, locality=loc_pnc[i]) for i, v in enumerate(pnc)]
    recs += [make_record("s", "ewc", i, final=v, locality=loc_ewc[i]) for i, v in enumerate(ewc)]
    recs += [make_record("s", "lwf", i, final=v, locality=0.4) for i, v in enumerate(lwf)]
    recs += [make_record("s", "finetune", 0, final=0.5, locality=0.0)]
    return recs, dict(pnc=pnc, ewc=ewc, lwf=lwf, loc_pnc=loc_pnc, loc_ewc=loc_ewc)


def test_paired_tests_against_pnc():
    recs, v = paired_records()
    tests = comparisons.paired_tests(tables.runs_table(recs), metrics=["final_accuracy"])
    by = tests.set_index("strategy")
    d = np.subtract(v["pnc"], v["ewc"])
    ewc = by.loc["ewc"]
    assert ewc["n"] == 4 and ewc["mean_difference"] == pytest.approx(d.mean())
    sd = math.sqrt(np.sum((d - d.mean()) ** 2) / 3)
    t = d.mean() / (sd / 2)
    assert ewc["t_statistic"] == pytest.approx(t)
    assert ewc["t_p"] == pytest.approx(2 * st.t.sf(abs(t), 3))
    assert ewc["effect_size_dz"] == pytest.approx(d.mean() / sd)
    # 4 paired seeds: the interval of the mean difference is [min, max] (tail 1.2e-4 < 1/256)
    assert (ewc["difference_low"], ewc["difference_high"]) == pytest.approx((d.min(), d.max()))
    # Wilcoxon with 4 non-zero differences cannot go below 2 / 2^4, times 2 comparisons (ewc,
    # lwf; finetune has 1 seed) after Holm = 0.25 >= 0.05: absent, the t-test applies
    assert ewc["wilcoxon_min_p_holm"] == pytest.approx(0.25)
    assert math.isnan(ewc["wilcoxon_p"]) and math.isnan(ewc["wilcoxon_p_holm"])
    assert "Wilcoxon absent" in ewc["reason"]
    assert ewc["test_applied"] == "t" and ewc["p_holm"] == ewc["t_p_holm"]
    d3 = np.subtract(v["pnc"][:3], v["lwf"])
    lwf = by.loc["lwf"]
    assert lwf["n"] == 3 and lwf["mean_difference"] == pytest.approx(d3.mean())
    # Holm over the two defined p-values of the family (finetune's is undefined)
    p1, p2 = ewc["t_p"], lwf["t_p"]
    lo, hi = sorted([p1, p2])
    adj_lo, adj_hi = min(1, 2 * lo), max(min(1, 2 * lo), hi)
    assert sorted([ewc["t_p_holm"], lwf["t_p_holm"]]) == pytest.approx([adj_lo, adj_hi])
    ft = by.loc["finetune"]
    assert ft["n"] == 1 and math.isnan(ft["t_p"]) and math.isnan(ft["t_p_holm"])
    assert math.isnan(ft["wilcoxon_p"]) and "fewer than 2" in ft["reason"]
    assert ft["test_applied"] == ""  # no test applies to one pair


def test_wilcoxon_shown_where_it_can_reject():
    """6 seeds, one rival: the smallest exact p is 2 / 2^6 = 0.031 < 0.05, so it is shown."""
    x = [0.81, 0.77, 0.92, 0.85, 0.88, 0.79]
    y = [0.70, 0.79, 0.80, 0.72, 0.81, 0.74]  # one negative difference, rank 1 of 6
    recs = [make_record("s", "pnc", i, final=v) for i, v in enumerate(x)]
    recs += [make_record("s", "ewc", i, final=v) for i, v in enumerate(y)]
    row = comparisons.paired_tests(tables.runs_table(recs), metrics=["final_accuracy"]).iloc[0]
    assert row["wilcoxon_min_p_holm"] == pytest.approx(2 / 64)
    assert row["wilcoxon_p"] == pytest.approx(4 / 64) == row["wilcoxon_p_holm"]  # W = 1
    assert row["test_applied"] == "wilcoxon" and row["p_holm"] == pytest.approx(4 / 64)


def test_reference_is_not_a_rival():
    recs, _ = paired_records()
    recs += [make_record("s", "joint", i, final=0.95) for i in range(4)]
    runs = tables.runs_table(recs)
    assert "joint" not in set(comparisons.paired_tests(runs)["strategy"])
    claim = claim_module.claim_table(runs).iloc[0]
    assert claim["comparison"] == "parameter-tuning"
    assert claim["rival"] == "lwf"  # joint (0.95) is never a candidate
    assert "joint" not in claim["candidates"]
    unknown = tables.runs_table([make_record("s", "mystery", 0)])
    assert not unknown["reference"].iloc[0]  # unknown names are rivals


def test_claim_check_by_hand():
    recs, v = paired_records()
    claim = claim_module.claim_table(tables.runs_table(recs)).iloc[0]
    # best parameter-tuning method by mean A_T: ewc 0.735, lwf 0.797, finetune 0.5 -> lwf
    assert claim["rival"] == "lwf" and claim["n_pairs"] == 3
    d = 100 * np.subtract(v["pnc"][:3], v["lwf"])  # 2, 5, -1 points
    assert claim["accuracy_difference_points"] == pytest.approx(d.mean())
    # 3 pairs: the interval is [min, max] of the differences
    assert claim["accuracy_difference_low"] == pytest.approx(-1.0)
    assert claim["accuracy_difference_high"] == pytest.approx(5.0)
    assert claim["accuracy_verdict_points"].startswith("not supported")  # includes 0
    # the relative reading: mean(pnc) / mean(lwf) - 1, whose Fieller interval includes 0 too
    acc_p, acc_l = np.array(v["pnc"][:3]), np.array(v["lwf"])
    assert claim["accuracy_gain"] == pytest.approx(acc_p.mean() / acc_l.mean() - 1)
    assert claim["accuracy_gain_low"] < 0 < claim["accuracy_gain_high"]
    assert claim["accuracy_verdict_relative"].startswith("not supported")
    # lwf locality is a constant 0.4: Fieller reduces to the t-interval of L_pnc / 0.4
    lp = np.array(v["loc_pnc"][:3])
    gain = lp.mean() / 0.4 - 1
    lhalf = T975[2] * np.std(lp, ddof=1) / math.sqrt(3) / 0.4
    assert claim["locality_gain"] == pytest.approx(gain)
    assert claim["locality_gain_low"] == pytest.approx(gain - lhalf, abs=1e-6)
    assert claim["locality_gain_high"] == pytest.approx(gain + lhalf, abs=1e-6)
    assert claim["locality_verdict_relative"].startswith("supported")
    # the points reading: 100 (L_pnc - 0.4) against +50 points
    assert claim["locality_difference_points"] == pytest.approx(100 * (lp.mean() - 0.4))
    assert claim["locality_verdict_points"] == claim_module.claim_verdict(
        claim["locality_difference_low"], claim["locality_difference_high"], 50.0, " points")
    assert claim["supports_claim_points"] in (False, 0.0)
    assert claim["supports_claim_relative"] in (False, 0.0)


def test_claim_verdicts():
    verdict = claim_module.claim_verdict(1.0, 9.0, 5.0, "")
    assert verdict.startswith("supported: the interval contains")
    assert claim_module.claim_verdict(6.0, 9.0, 5.0, "").startswith("supported: the gain exceeds")
    assert claim_module.claim_verdict(0.5, 2.0, 5.0, "").startswith("partly supported")
    assert claim_module.claim_verdict(-1.0, 2.0, 5.0, "").startswith("not supported")
    assert claim_module.claim_verdict(-3.0, -1.0, 5.0, "").startswith("contradicted")
    assert claim_module.claim_verdict(float("nan"), 2.0, 5.0, "") == "undefined"


def test_without_pnc_everything_is_undefined_not_zero(one_stream):
    tests = read_table(one_stream, "tests.csv")
    assert len(tests) and (tests["test"] == "paired").all()
    assert tests["t_p"].isna().all() and tests["mean_difference"].isna().all()
    assert (tests["n"] == 0).all()
    assert tests["reason"].str.contains("pnc has no successful runs").all()
    claim = read_table(one_stream, "claim.csv").iloc[0]
    assert math.isnan(claim["accuracy_difference_points"])
    assert "pnc has no successful runs" in claim["reason"]


def test_variants_get_their_own_labels():
    recs = [make_record("s", "ewc", i, hparams={"ewc_lambda": lam})
            for lam in (10.0, 100.0) for i in range(2)]
    runs = tables.runs_table(recs)
    assert set(runs["label"]) == {"ewc[ewc_lambda=10.0]", "ewc[ewc_lambda=100.0]"}
    assert len(tables.summary_table(runs)) == 2


def several_stream_records():
    """Three strategies on three streams, two seeds; pnc best on every stream."""
    finals = {"a": {"pnc": 0.9, "ewc": 0.6, "lwf": 0.7},
              "b": {"pnc": 0.8, "ewc": 0.7, "lwf": 0.5},
              "c": {"pnc": 0.85, "ewc": 0.65, "lwf": 0.75}}
    return [make_record(stream, name, seed, final=f + 0.01 * seed, locality=0.3 + f / 2)
            for stream, by in finals.items() for name, f in by.items() for seed in (0, 1)]


def test_several_streams_friedman_and_ranks(tmp_path):
    write_records(tmp_path, several_stream_records())
    build.build_report(tmp_path, quiet=True)
    tests = read_table(tmp_path, "tests.csv")
    fr = tests[(tests["test"] == "friedman") & (tests["metric"] == "final_accuracy")].iloc[0]
    # ranks (1 = best) per stream: a: pnc 1, lwf 2, ewc 3; b: pnc 1, ewc 2, lwf 3;
    # c: pnc 1, lwf 2, ewc 3 -> rank sums pnc 3, lwf 7, ewc 8
    n, k = 3, 3
    chi2 = 12 / (n * k * (k + 1)) * (3 ** 2 + 7 ** 2 + 8 ** 2) - 3 * n * (k + 1)
    assert fr["n"] == 3 and fr["friedman_chi2"] == pytest.approx(chi2)
    assert fr["friedman_p"] == pytest.approx(math.exp(-chi2 / 2))  # chi-square, 2 dof
    assert fr["nemenyi_cd"] == pytest.approx(2.343 * math.sqrt(k * (k + 1) / (6 * n)),
                                             abs=1e-3)
    # Iman-Davenport: F = (N - 1) chi2 / (N (k - 1) - chi2) = 2 (14 / 3) / (6 - 14 / 3) = 7 on
    # (2, 4) degrees of freedom; for F(2, d) the tail is (1 + 2 F / d)^(-d / 2) = 4.5^-2
    assert fr["iman_davenport_f"] == pytest.approx(7.0)
    assert fr["iman_davenport_p"] == pytest.approx(4.5 ** -2)
    ranks = read_table(tmp_path, "ranks.csv")
    acc = ranks[ranks["metric"] == "final_accuracy"].set_index("strategy")["average_rank"]
    assert acc.to_dict() == pytest.approx({"pnc": 1.0, "lwf": 7 / 3, "ewc": 8 / 3})
    paired = tests[tests["test"] == "paired"]
    assert set(paired["stream"]) == {"a", "b", "c"}
    figures = {p.name for p in (tmp_path / "figures").glob("*.png")}
    assert {"accuracy_matrix__a.png", "per_step__b.png", "forgetting_vs_locality__c.png",
            "critical_difference__final_accuracy.png"} <= figures
    for p in (tmp_path / "figures").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_single_stream_has_no_friedman(one_stream):
    assert read_table(one_stream, "ranks.csv").empty
    assert not (one_stream / "figures" / "critical_difference__final_accuracy.png").exists()


def test_steps_table():
    rec = make_record("s", "ewc", 0, final=0.6, forgetting=0.3, locality=0.7)
    steps = tables.steps_table([rec])
    assert list(steps["accuracy"]) == pytest.approx([1.0, 0.6])
    assert math.isnan(steps["locality"].iloc[0]) and steps["locality"].iloc[1] == 0.7
    assert steps["old_accuracy"].iloc[1] == pytest.approx(0.7)


def test_corrupt_record_is_named_and_nothing_is_touched(tmp_path, capsys):
    write_records(tmp_path, [make_record("s", "ewc", 0)])
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "summary.csv").write_text("earlier\n")
    bad = tmp_path / "runs" / "0123456789abcdef.json"
    bad.write_text('{"schema": "clonebench.run/1", "key": ')
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and err.startswith("clonebench: error")
    assert (tmp_path / "tables" / "summary.csv").read_text() == "earlier\n"
    assert not (tmp_path / "report.html").exists()


def test_record_missing_a_field_is_named(tmp_path, capsys):
    rec = make_record("s", "ewc", 0)
    del rec["accuracy_matrix"]
    write_records(tmp_path, [rec])
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{rec['key']}.json" in err and "accuracy_matrix" in err


def test_empty_results_folder_gives_an_empty_report(tmp_path):
    (tmp_path / "runs").mkdir()
    path = build.build_report(tmp_path, quiet=True)
    assert path == tmp_path / "report.html" and path.exists()
    assert read_table(tmp_path, "runs.csv").empty
