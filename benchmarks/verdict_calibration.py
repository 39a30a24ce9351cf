"""The report's verdicts measured by simulation: false-positive rates, power, false "equivalent", and the sequential
design, each over 2,000 simulated reports per cell (``emabench.report.calibration``).

Each simulated report is a family of m comparisons of n seed-paired differences. Three rules decide it side by side
on the same draws: ``report`` (this report's rule), ``previous`` (paired t AND Wilcoxon after Holm, never below 6
seeds: the rule it replaced) and ``t`` (the plain paired t-test at α/m). α = 0.05 throughout. Monte Carlo error of a
rate near 0.05 over 2,000 reports: ±0.01 (two standard errors).

Tables (Markdown, on stdout):

1. family-wise false-positive rate (any better/worse) when every true mean difference is 0;
2. power: the share of reports saying "better" for one comparison of true effect d_z (mean/sd) among m − 1 nulls;
3. equivalence: the share of reports saying "equivalent" when every true difference equals the margin (a false
   claim) and when it is 0 (power), and the family-wise error of a family half at 0, half at the margin;
4. the sequential design (looks at 5, 10, 20[, 40] seeds, Lan–DeMets O'Brien–Fleming): family-wise error over all
   looks, and the verdicts and mean seeds to a decision under effects.

Run: ``.venv/bin/python benchmarks/verdict_calibration.py [--reps 2000] [--seed 0]`` (about 1.5 minutes on 2 cores;
seeded: the same numbers every time). Its tables are in docs/statistics.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from emabench.report import calibration as cal

SEEDS = (5, 10, 20)
FAMILIES = (1, 6, 24)
MARGIN = 0.5  # equivalence margin in the null and power cells (sd units; it decides nothing there)


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |", flush=True)


def false_positives(rng: np.random.Generator, reps: int) -> None:
    rows = []
    for distribution in cal.DISTRIBUTIONS:
        for n in SEEDS:
            for m in FAMILIES:
                d = cal.draw(rng, distribution, reps, np.zeros(m), n)
                rates = [cal.family_error(cal.verdicts(d, rule), np.zeros(m), MARGIN) for rule in cal.RULES]
                rows.append([distribution, str(n), str(m), *(f"{r:.3f}" for r in rates)])
    table(
        "False positives: share of reports with any better/worse when every true difference is 0",
        ["differences", "seeds n", "comparisons m", *cal.RULES],
        rows,
    )


def power(rng: np.random.Generator, reps: int) -> None:
    rows = []
    for effect in (1.0, 2.0):
        for n in SEEDS:
            for m in FAMILIES:
                means = np.zeros(m)
                means[0] = effect
                d = cal.draw(rng, "normal", reps, means, n)
                rates = [cal.share(cal.verdicts(d, rule), "better") for rule in cal.RULES]
                rows.append([f"{effect:g}", str(n), str(m), *(f"{r:.3f}" for r in rates)])
    table(
        "Power: share of reports saying better for one comparison of effect d_z among m − 1 null ones (normal)",
        ["d_z", "seeds n", "comparisons m", *cal.RULES],
        rows,
    )


def equivalence(rng: np.random.Generator, reps: int) -> None:
    rows = []
    for margin in (0.5, 1.0):
        for n in (*SEEDS, 40):
            for m in FAMILIES:
                at_margin = cal.draw(rng, "normal", reps, np.full(m, margin), n)
                false = cal.verdicts(at_margin, "report", margin=margin)
                at_zero = cal.draw(rng, "normal", reps, np.zeros(m), n)
                true = cal.verdicts(at_zero, "report", margin=margin)
                mixed_means = np.where(np.arange(m) % 2 == 0, 0.0, margin)
                mixed = cal.verdicts(cal.draw(rng, "normal", reps, mixed_means, n), "report", margin=margin)
                rows.append(
                    [f"{margin:g}", str(n), str(m)]
                    + [f"{float((false == 2).any(-1).mean()):.3f}", f"{cal.share(true, 'equivalent'):.3f}"]
                    + [f"{cal.family_error(mixed, mixed_means, margin):.3f}"]
                )
    table(
        "Equivalence (TOST within ±margin, normal differences of sd 1)",
        ["margin", "seeds n", "comparisons m", "any false equivalent (all at the margin)"]
        + ["equivalent when the difference is 0", "family-wise error, half at 0 and half at the margin"],
        rows,
    )


def sequential(rng: np.random.Generator, reps: int) -> None:
    rows = []
    for cap in (20, 40):
        for m in (1, 6):
            for distribution in ("normal", "t3", "accuracy on 360", "lognormal, skewness 1.75"):
                codes, seeds = cal.sequential(cal.draw(rng, distribution, reps, np.zeros(m), cap))
                error = cal.family_error(codes, np.zeros(m), MARGIN)
                rows.append([str(cap), str(m), f"null, {distribution}", f"{error:.3f}", "", "", ""])
            for effect, margin in ((1.0, MARGIN), (2.0, MARGIN), (0.0, 1.0)):
                means = np.zeros(m)
                means[0] = effect
                codes, seeds = cal.sequential(cal.draw(rng, "normal", reps, means, cap), margin=margin)
                verdict = "equivalent" if effect == 0 else "better"
                truth = f"d_z = {effect:g}" + (f", margin {margin:g}" if effect == 0 else "")
                error = cal.family_error(codes, means, margin)
                rows.append([str(cap), str(m), truth, f"{error:.3f}", verdict, f"{cal.share(codes, verdict):.3f}"])
                rows[-1].append(f"{seeds[:, 0].mean():.1f}")
    table(
        "Sequential design: looks at 5, 10, 20 (, 40) seeds, Lan–DeMets O'Brien–Fleming; comparison 1 carries the "
        "effect, the others are null",
        ["max seeds", "comparisons m", "truth", "family-wise error", "verdict", "share", "mean seeds (comparison 1)"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000, help="simulated reports per cell")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    print(f"{args.reps} simulated reports per cell, α = {cal.ALPHA}, generator seed {args.seed}")
    false_positives(rng, args.reps)
    power(rng, args.reps)
    equivalence(rng, args.reps)
    sequential(rng, args.reps)
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
