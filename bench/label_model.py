"""Benchmark: mothermodel's LabelModel vs Snorkel 0.10 LabelModel and majority vote.

    python bench/label_model.py [--snorkel-python /tmp/snorkelvenv/bin/python]
                                [--repeats 3] [--big] [--out bench/results/label_model.json]

Parts:
  (a) WRENCH youtube and trec (../shared/data): fit on train weak labels, report
      valid and test accuracy / macro-F1. Ours with and without dev gold (valid);
      with dev gold the valid figure is a 5-fold x 4 cross-validation over valid rows
      (fit with 4/5 of valid as dev, score the other 1/5).
      The default `label fit` adds the text view (labeling/model/textview.py): its test
      figure, and the valid-only grid its defaults were chosen from (rule: highest
      mean valid accuracy over youtube and trec).
  (b) synthetic 1M x 50 binary (each LF fires with prob 0.3, accuracy ~ U(0.55, 0.95),
      hidden truth): fit+predict time, peak memory, accuracy; ours vs Snorkel, ours both
      with the default fit subsample (max_fit_rows, 250k of the 1M rows) and on all rows
      (max_fit_rows=None); the three children run interleaved per repeat. --threads N sets
      torch's threads and the BLAS/OpenMP pools of every child, both sides (each child
      records its processes and threads in the JSON).
  (c) --big: synthetic 10M x 100, ours only.

Every measurement runs in a fresh child process (this script with --child ...),
which generates its data itself and reports its peak RSS (getrusage maxrss) and its
RSS just before fitting (imports + data). Snorkel's child runs under
--snorkel-python and imports only numpy + snorkel. Figures over repeats are medians.
This file imports no torch at top level.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
from snorkel_peer import DEFAULT_SNORKEL, snorkel_interpreter  # noqa: E402 (bench/ is sys.path[0])
DEFAULT_DATA = REPO.parent / "shared" / "data"
SEED = 123


# ----------------------------------------------------------------- helpers
def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KB on Linux


def set_threads(n: int) -> None:
    """``--threads N``: torch's intra-op threads in this child (0: leave the library default)."""
    if n:
        import torch
        torch.set_num_threads(n)


def threads_info() -> dict:
    """The conditions of this child: one process, torch's threads, numpy's BLAS threads."""
    import torch
    info = {"processes": 1, "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads()}
    try:
        from threadpoolctl import threadpool_info
        info["blas_threads"] = {f"{p['internal_api']}:{Path(p['filepath']).name}": p["num_threads"]
                                for p in threadpool_info()}
    except ImportError:
        info["blas_threads"] = None
    return info


def load_ours():
    """Our label models, as one namespace (the modules of mothermodel.labeling.model)."""
    from types import SimpleNamespace

    from mothermodel.labeling.model.baselines import MajorityVoter
    from mothermodel.labeling.model.dev_correction import stratified_folds
    from mothermodel.labeling.model.label_model import LabelModel, LabelModelConfig
    return SimpleNamespace(LabelModel=LabelModel, LabelModelConfig=LabelModelConfig, MajorityVoter=MajorityVoter,
                           stratified_folds=stratified_folds)


def synthetic(n: int, m: int, coverage: float = 0.3, seed: int = SEED, chunk: int = 1 << 18):
    """Binary label matrix (int8) with hidden truth; LF j fires w.p. `coverage`
    independently of y and then votes y with its accuracy ~ U(0.55, 0.95)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    accs = rng.uniform(0.55, 0.95, size=m)
    y = rng.integers(0, 2, size=n, dtype=np.int8)
    L = np.empty((n, m), dtype=np.int8)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        yb = y[s:e, None]
        fire = rng.random((e - s, m), dtype=np.float32) < coverage
        right = rng.random((e - s, m), dtype=np.float32) < accs[None, :]
        vote = np.where(right, yb, 1 - yb).astype(np.int8)
        L[s:e] = np.where(fire, vote, np.int8(-1))
    return L, y, accs


def load_wrench(data: Path, name: str, split: str):
    import numpy as np
    d = json.loads((data / name / f"{split}.json").read_text())
    L = np.array([v["weak_labels"] for v in d.values()], dtype=np.int8)
    y = np.array([v["label"] for v in d.values()], dtype=np.int64)
    k = len(json.loads((data / name / "label.json").read_text()))
    return L, y, k


def load_texts(data: Path, name: str, split: str) -> list:
    d = json.loads((data / name / f"{split}.json").read_text())
    return [v["data"]["text"] for v in d.values()]


TEXT_VIEW_GRID = {"l2": (1e-6, 3e-6, 1e-5, 3e-5, 1e-4), "weight": (1, 2, 3, 4, 6, 8)}


def text_view_runs(texts, splits, L_all, y_valid, lm, cfg_default):
    """Default text view (valid and test) and the valid-only grid over TEXT_VIEW_GRID."""
    import numpy as np
    import pyarrow as pa
    from dataclasses import replace

    from mothermodel.labeling.model.textview import combine, hashed_ngrams, text_view

    split = np.concatenate([np.full(len(t), s) for s, t in zip(splits, texts)])
    X = hashed_ngrams(pa.array(sum(texts, [])), cfg_default)
    P = lm.predict_proba(L_all).astype(np.float64)
    fit_rows = (split == "train") & (L_all >= 0).any(axis=1)
    t0 = time.perf_counter()
    Q, rep = text_view(X, P, fit_rows, cfg_default)
    view_s = time.perf_counter() - t0
    mix = np.asarray(rep["target_class_mix"])
    pred = lm_tie_break(combine(P, Q, mix, cfg_default.weight))
    out = {"config": {"l2": cfg_default.l2, "weight": cfg_default.weight}, "text_view_s": round(view_s, 2)}
    grid = {}
    for l2 in TEXT_VIEW_GRID["l2"]:
        Qg = Q if l2 == cfg_default.l2 else text_view(X, P, fit_rows, replace(cfg_default, l2=l2))[0]
        for w in TEXT_VIEW_GRID["weight"]:
            pg = lm_tie_break(combine(P, Qg, mix, w))
            grid[f"l2={l2},weight={w}"] = float((pg[split == "valid"] == y_valid).mean())
    out["valid_grid"] = grid
    return out, pred, split


def lm_tie_break(P):
    from mothermodel.labeling.model.votes import tie_break
    return tie_break(P, SEED)



def metrics(pred, y, k):
    import numpy as np
    pred, y = np.asarray(pred), np.asarray(y)
    f1s = []
    for c in range(k):
        tp = int(((pred == c) & (y == c)).sum())
        fp = int(((pred == c) & (y != c)).sum())
        fn = int(((pred != c) & (y == c)).sum())
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return {"accuracy": round(float((pred == y).mean()), 4), "macro_f1": round(float(np.mean(f1s)), 4)}


# ------------------------------------------------------------------ children
def child_synthetic(args) -> dict:
    import numpy as np
    L, y, accs = synthetic(args.n, args.m)
    rss_data = maxrss_mb()
    out = {"n": args.n, "m": args.m}
    if args.child == "ours":
        mod = load_ours()
        set_threads(args.threads)
        cfg = mod.LabelModelConfig(device="cpu", seed=SEED)
        if args.full_fit:
            cfg.max_fit_rows = None
        t0 = time.perf_counter()
        lm = mod.LabelModel(2, cfg).fit(L)
        t1 = time.perf_counter()
        pred = lm.predict(L)
        t2 = time.perf_counter()
        est = lm.lf_accuracies()
        out.update(acc_err_mean=round(float(np.abs(est - accs).mean()), 4),
                   n_iter=lm.n_iter_, n_fit_rows=lm.n_fit_rows_)
        if args.n <= 2_000_000:  # Bayes-optimal reference: true accuracies, true (uniform) prior
            # computed after the timings, in small blocks so it does not raise the peak RSS
            w = np.log(accs / (1 - accs)).astype(np.float32)
            hits = 0
            for s in range(0, args.n, 1 << 14):
                b = L[s:s + (1 << 14)]
                d = (b == 1).astype(np.float32) @ w - (b == 0).astype(np.float32) @ w
                hits += int(((d > 0) == (y[s:s + (1 << 14)] == 1)).sum())
            out["oracle_accuracy"] = round(hits / args.n, 6)
    elif args.child == "mv":
        mod = load_ours()
        set_threads(args.threads)
        t0 = time.perf_counter()
        mvm = mod.MajorityVoter(2, seed=SEED)
        t1 = time.perf_counter()
        pred = mvm.predict(L)
        t2 = time.perf_counter()
    else:  # snorkel
        from snorkel.labeling.model import LabelModel as SnorkelLM
        set_threads(args.threads)
        t0 = time.perf_counter()
        lm = SnorkelLM(cardinality=2, verbose=False)
        lm.fit(L, seed=SEED, progress_bar=False)
        t1 = time.perf_counter()
        pred = lm.predict(L, tie_break_policy="random")
        t2 = time.perf_counter()
        est = lm.get_weights()
        out.update(acc_err_mean=round(float(np.abs(est - accs).mean()), 4))
    out.update(fit_s=round(t1 - t0, 3), predict_s=round(t2 - t1, 3), total_s=round(t2 - t0, 3),
               accuracy=round(float((pred == y).mean()), 6), correct=int((pred == y).sum()),
               rss_before_fit_mb=round(rss_data, 1), peak_rss_mb=round(maxrss_mb(), 1), conditions=threads_info())
    return out


def valid_cv(mod, k, Ltr, Lva, yva, cfg, folds=5, repeats=4) -> dict:
    """Accuracy of fit(train weak labels, dev = 4/5 of valid) on the held-out
    1/5 of valid; stratified 5-fold, 4 seeded repeats, pooled. Valid only."""
    import numpy as np
    hits = tot = 0
    for rep in range(repeats):
        for held_out in mod.stratified_folds(yva, folds, 100 + rep):
            te = np.zeros(len(yva), bool)
            te[held_out] = True
            tr = ~te
            lm = mod.LabelModel(k, cfg).fit(Ltr, L_dev=Lva[tr], Y_dev=yva[tr])
            hits += int((lm.predict(Lva[te]) == yva[te]).sum())
            tot += int(te.sum())
    return {"accuracy": round(hits / tot, 4), "folds": folds, "repeats": repeats}


def child_wrench(args) -> dict:
    import numpy as np
    data = Path(args.data)
    res = {}
    for name in ("youtube", "trec"):
        Ltr, _ytr, k = load_wrench(data, name, "train")   # train gold never used
        Lva, yva, _ = load_wrench(data, name, "valid")
        Lte, yte, _ = load_wrench(data, name, "test")
        r = {}
        if args.child == "ours":
            mod = load_ours()
            cfg = mod.LabelModelConfig(device="cpu", seed=SEED)
            t0 = time.perf_counter()
            lm = mod.LabelModel(k, cfg).fit(Ltr)
            fit_s = time.perf_counter() - t0
            r["ours_default_no_dev"] = {"valid": metrics(lm.predict(Lva), yva, k),
                                        "test": metrics(lm.predict(Lte), yte, k), "fit_s": round(fit_s, 3)}
            lm2 = mod.LabelModel(k, cfg).fit(Ltr, L_dev=Lva, Y_dev=yva)
            lam = lm2.dev_lambda_
            r["ours_default_with_dev"] = {
                "dev_mode": cfg.dev_mode,
                "valid_cv": valid_cv(mod, k, Ltr, Lva, yva, cfg),
                "test": metrics(lm2.predict(Lte), yte, k),
                "dev_lambda_chosen_on_valid": None if lam is None or lam == float("inf") else lam,
                "dev_inner_cv_accuracy": lm2.dev_cv_accuracy_}
            # Opt-in CV-tuned discriminative correction (dev_mode='correct').
            cc = mod.LabelModelConfig(device="cpu", seed=SEED, dev_mode="correct")
            lm3 = mod.LabelModel(k, cc).fit(Ltr, L_dev=Lva, Y_dev=yva)
            lam3 = lm3.dev_lambda_
            r["ours_correct_with_dev"] = {
                "dev_mode": "correct",
                "valid_cv": valid_cv(mod, k, Ltr, Lva, yva, cc),
                "test": metrics(lm3.predict(Lte), yte, k),
                "dev_lambda_chosen_on_valid": None if lam3 is None or lam3 == float("inf") else lam3,
                "dev_inner_cv_accuracy": lm3.dev_cv_accuracy_}
            for lam_fixed in (1.0, 10.0, 100.0):
                c4 = mod.LabelModelConfig(device="cpu", seed=SEED, dev_mode="correct", dev_l2_grid=(lam_fixed,))
                r.setdefault("ablation_valid_cv_accuracy_with_dev", {})[f"correction_lambda={lam_fixed}"] = \
                    valid_cv(mod, k, Ltr, Lva, yva, c4)["accuracy"]
            c5 = mod.LabelModelConfig(device="cpu", seed=SEED, dev_mode="correct", dev_l2_grid=(float("inf"), 1.0))
            r["ablation_valid_cv_accuracy_with_dev"]["correction_lambda_cv_over_(inf,1)"] = \
                valid_cv(mod, k, Ltr, Lva, yva, c5)["accuracy"]
            # Sensitivity of the defaults, on VALID only (how they were chosen).
            abl = {}
            for ps in (10, 30, 100, 300):
                for pp in (0.7, 0.9):
                    c2 = mod.LabelModelConfig(device="cpu", seed=SEED, prior_strength=ps, prior_precision=pp)
                    abl[f"prior_strength={ps},prior_precision={pp}"] = metrics(
                        mod.LabelModel(k, c2).fit(Ltr).predict(Lva), yva, k)["accuracy"]
            c3 = mod.LabelModelConfig(device="cpu", seed=SEED, class_balance=[1.0 / k] * k)
            abl["class_balance=uniform"] = metrics(mod.LabelModel(k, c3).fit(Ltr).predict(Lva), yva, k)["accuracy"]
            r["ablation_valid_accuracy"] = abl
            from mothermodel.labeling.model.textview import TextViewConfig
            texts = [load_texts(data, name, s) for s in ("train", "valid", "test")]
            tv, pred, split = text_view_runs(texts, ("train", "valid", "test"), np.vstack([Ltr, Lva, Lte]),
                                             yva, lm, TextViewConfig(seed=SEED))
            r["ours_default_text_view"] = {"valid": metrics(pred[split == "valid"], yva, k),
                                           "test": metrics(pred[split == "test"], yte, k), **tv}
            mvm = mod.MajorityVoter(k, seed=SEED)
            r["majority_vote"] = {"valid": metrics(mvm.predict(Lva), yva, k),
                                  "test": metrics(mvm.predict(Lte), yte, k)}
        else:
            from snorkel.labeling.model import LabelModel as SnorkelLM
            from snorkel.labeling.model import MajorityLabelVoter
            for epochs in (100, 500):
                lm = SnorkelLM(cardinality=k, verbose=False)
                lm.fit(Ltr, n_epochs=epochs, seed=SEED, progress_bar=False)
                key = "snorkel_default" if epochs == 100 else "snorkel_500_epochs"
                r[key] = {"valid": metrics(lm.predict(Lva, tie_break_policy="random"), yva, k),
                          "test": metrics(lm.predict(Lte, tie_break_policy="random"), yte, k)}
            mv = MajorityLabelVoter(cardinality=k)
            r["snorkel_majority_vote"] = {"test": metrics(mv.predict(Lte, tie_break_policy="random"), yte, k)}
        res[name] = r
    return res


def run_child(python: str, child: str, task: str, extra=(), threads: int = 0) -> dict:
    cmd = [python, str(HERE), "--child", child, "--task", task, *extra]
    env = dict(os.environ, PYTHONHASHSEED="0")
    if threads:  # the same thread count for torch (set in the child) and for the BLAS/OpenMP pools
        cmd += ["--threads", str(threads)]
        env.update({v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"child {child}/{task} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def median_of(runs: list, keys=("fit_s", "predict_s", "total_s", "peak_rss_mb", "rss_before_fit_mb", "accuracy")):
    out = {k: statistics.median(r[k] for r in runs) for k in keys if k in runs[0]}
    out["runs"] = runs
    return out


# --------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snorkel-python", default=DEFAULT_SNORKEL)
    ap.add_argument("--ours-python", default=sys.executable)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--m", type=int, default=50)
    ap.add_argument("--big", action="store_true", help="also run 10M x 100 (ours only)")
    ap.add_argument("--skip-snorkel", action="store_true")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "label_model.json"))
    ap.add_argument("--child", choices=["ours", "snorkel", "mv"], help=argparse.SUPPRESS)
    ap.add_argument("--task", choices=["synthetic", "wrench"], help=argparse.SUPPRESS)
    ap.add_argument("--full-fit", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch intra-op threads in every synthetic child, both sides (0: the library default)")
    args = ap.parse_args()

    if args.child:
        res = child_synthetic(args) if args.task == "synthetic" else child_wrench(args)
        print(json.dumps(res))
        return

    snorkel = snorkel_interpreter(args.snorkel_python, args.skip_snorkel)
    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
               "command": " ".join([Path(sys.executable).name, *sys.argv]),
               "date": time.strftime("%Y-%m-%d %H:%M"), "loadavg_1m_before": round(os.getloadavg()[0], 2)}

    # (a) real data
    if (Path(args.data) / "trec" / "train.json").exists():
        wr = run_child(args.ours_python, "ours", "wrench", ["--data", args.data])
        if snorkel:
            sn = run_child(snorkel, "snorkel", "wrench", ["--data", args.data])
            for name in wr:
                wr[name].update(sn[name])
        results["wrench"] = wr
        grids = [wr[name]["ours_default_text_view"]["valid_grid"] for name in wr]
        mean = {key: round(sum(g[key] for g in grids) / len(grids), 4) for key in grids[0]}
        best = max(mean, key=mean.get)
        results["text_view_selection"] = {"rule": "highest mean valid accuracy over youtube and trec",
                                          "mean_valid_accuracy": mean, "best": best}
        for name, r in wr.items():
            for key, v in r.items():
                if key.startswith("ablation"):
                    print(f"[{name:7s}] valid-only ablation: {json.dumps(v)}")
                    continue
                if key == "ours_default_text_view":
                    print(f"[{name:7s}] text view valid-only grid: {json.dumps(v['valid_grid'])}")
                te = v["test"]
                print(f"[{name:7s}] {key:24s} test acc {te['accuracy']:.3f}  macro-F1 {te['macro_f1']:.3f}"
                      + (f"   valid acc {v['valid']['accuracy']:.3f}" if "valid" in v else "")
                      + (f"   valid 5-fold CV acc {v['valid_cv']['accuracy']:.3f}" if "valid_cv" in v else ""))
        sel = results["text_view_selection"]
        print(f"text view selection on valid: best {sel['best']} (mean valid {sel['mean_valid_accuracy'][sel['best']]})")
    else:
        print(f"no WRENCH data under {args.data}: skipping part (a)")

    # (b) synthetic n x m
    size = ["--n", str(args.n), "--m", str(args.m)]
    syn = {"n": args.n, "m": args.m, "coverage": 0.3, "accuracy_range": [0.55, 0.95]}
    # Interleaved (ours, ours all rows, Snorkel) per repeat, so that a change of load hits all sides alike.
    runs = {"ours": [], "ours_full_fit": [], "snorkel": []}
    for _ in range(args.repeats):
        runs["ours"].append(run_child(args.ours_python, "ours", "synthetic", size, args.threads))
        runs["ours_full_fit"].append(run_child(args.ours_python, "ours", "synthetic", size + ["--full-fit"],
                                               args.threads))
        if snorkel:
            runs["snorkel"].append(run_child(snorkel, "snorkel", "synthetic", size, args.threads))
    for key, r in runs.items():
        if r:
            syn[key] = median_of(r)
            syn[key]["conditions"] = r[0]["conditions"]
    syn["ours"]["fit_rows"] = syn["ours"]["runs"][0]["n_fit_rows"]
    syn["ours_full_fit"]["fit_rows"] = syn["ours_full_fit"]["runs"][0]["n_fit_rows"]
    syn["majority_vote"] = median_of([run_child(args.ours_python, "mv", "synthetic", size, args.threads)])
    if snorkel:
        s = syn["snorkel"]
        syn["ratios"] = {}
        for key, label in (("ours", "default"), ("ours_full_fit", "all_rows")):
            o = syn[key]
            syn["ratios"][label] = {
                "fit_rows": o["fit_rows"],
                "speedup_fit_plus_predict": round(s["total_s"] / o["total_s"], 2),
                "speedup_fit": round(s["fit_s"] / o["fit_s"], 2),
                "speedup_predict": round(s["predict_s"] / o["predict_s"], 2),
                "peak_memory_ours_over_snorkel": round(o["peak_rss_mb"] / s["peak_rss_mb"], 3),
                "accuracy_ours_minus_snorkel": round(o["accuracy"] - s["accuracy"], 6),
                "targets_met": s["total_s"] / o["total_s"] >= 5 and o["peak_rss_mb"] / s["peak_rss_mb"] <= 1 / 3,
            }
    results["synthetic"] = syn
    for key in ("ours", "ours_full_fit", "majority_vote", "snorkel"):
        if key in syn:
            v = syn[key]
            print(f"[{args.n}x{args.m}] {key:14s} fit {v['fit_s']:.2f}s predict {v['predict_s']:.2f}s "
                  f"total {v['total_s']:.2f}s peak {v['peak_rss_mb']:.0f} MB "
                  f"(before fit {v['rss_before_fit_mb']:.0f} MB) acc {v['accuracy']:.6f}"
                  + (f" (Bayes-optimal {v['runs'][0]['oracle_accuracy']:.6f})" if "oracle_accuracy" in v["runs"][0] else ""))
    for key in ("ours", "ours_full_fit", "snorkel"):
        if key in syn:
            c = syn[key]["conditions"]
            print(f"  {key:14s} conditions: {c['processes']} process, torch threads {c['torch_threads']}, "
                  f"BLAS/OpenMP threads {c['blas_threads']}")
    for label, r in syn.get("ratios", {}).items():
        print(f"ratios, {label} ({r['fit_rows']} fit rows): {json.dumps(r)}")

    # (c) big, ours only
    if args.big:
        big = median_of([run_child(args.ours_python, "ours", "synthetic", ["--n", "10000000", "--m", "100"],
                                   args.threads)])
        results["synthetic_big"] = {"n": 10_000_000, "m": 100, "ours": big}
        print(f"[10000000x100] ours fit {big['fit_s']:.2f}s predict {big['predict_s']:.2f}s total "
              f"{big['total_s']:.2f}s peak {big['peak_rss_mb']:.0f} MB acc {big['accuracy']:.4f}")

    results["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
