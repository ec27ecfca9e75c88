"""What ``fedmarket demo`` shows: the results table and three PNG plots (headless matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

TOKEN = 10**18


def _tokens(base_units: int) -> str:
    return f"{base_units / TOKEN:,.2f}"


def sourcing_table(sourcing: dict[str, Any]) -> Table:
    """Act 1: every candidate's offer, its predicted value, the mechanism's verdict and why."""
    table = Table(
        title=(
            f"Sourcing (request {sourcing['request_id']}): {len(sourcing['winners'])} of "
            f"{len(sourcing['candidates'])} offers picked within a budget of "
            f"{_tokens(sourcing['budget'])} ({sourcing['branch'].replace('_', ' ')})"
        ),
        title_justify="left",
    )
    for col, justify in [
        ("#", "right"), ("data owner", "left"), ("data", "left"), ("rows", "right"),
        ("label skew", "right"), ("ask", "right"), ("value (ppm)", "right"),
        ("OT distance", "right"), ("payment", "right"), ("why", "left"),
    ]:  # fmt: skip
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for i, c in enumerate(sourcing["candidates"], start=1):
        table.add_row(
            str(i),
            f"{c['address'][:6]}…{c['address'][-4:]}",
            c["kind"].replace("_", " "),
            str(c["samples"]),
            f"{c['label_skew']:.2f}",
            _tokens(c["ask"]),
            f"{c['value_ppm']:,}" if "value_ppm" in c else "-",
            f"{c['distance_ppm'] / 1e6:.2f}" if "distance_ppm" in c else "-",
            _tokens(c["payment"]) if c["won"] else "-",
            c["reason"],
            style="" if c["won"] else "dim",
        )
    return table


def versions_table(withdrawal: dict[str, Any]) -> Table:
    """Act 4: the model's versions before and after the withdrawal."""
    table = Table(
        title=(
            f"Withdrawal: {withdrawal['trainer'][:10]}… withdrew consent; unlearned by "
            f"{withdrawal['method']} (from round {withdrawal['first_round']})"
        ),
        title_justify="left",
    )
    for col in ("version", "reason", "parent", "digest", "validated", "test accuracy",
                "sellable after the deadline"):  # fmt: skip
        table.add_column(col)
    for v in withdrawal["versions"]:
        table.add_row(
            str(v["number"]), v["reason"], str(v["parent"]) if v["parent"] else "-",
            f"{v['digest'][:18]}…", "yes" if v["validated"] else "no",
            f"{v['test_accuracy']:.1%}", "yes" if v["sellable_after_deadline"] else "no",
        )  # fmt: skip
    return table


def results_table(result: dict[str, Any]) -> Table:
    """Trainer, samples, label skew, behaviour, score, payout, slashed stake, reputation, data
    payment and royalties."""
    table = Table(
        title=(
            f"Task {result['task_id']}: model accuracy {result['accuracy']:.1%} "
            f"(centralized training: {result['centralized_accuracy']:.1%})"
        ),
        title_justify="left",
    )
    for col, justify in [
        ("#", "right"), ("trainer", "left"), ("samples", "right"), ("label skew", "right"),
        ("behaviour", "left"), ("score (ppm)", "right"), ("payout", "right"),
        ("slashed", "right"), ("reputation", "right"), ("data payment", "right"),
        ("royalties", "right"), ("why", "left"),
    ]:  # fmt: skip
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for i, t in enumerate(result["trainers"], start=1):
        style = {"poisoner": "red", "free_rider": "yellow", "noisy": "magenta"}.get(
            t["behaviour"], ""
        )
        table.add_row(
            str(i),
            f"{t['address'][:6]}…{t['address'][-4:]}",
            str(t["samples"]),
            f"{t['label_skew']:.2f}",
            t["behaviour"],
            f"{t['score_ppm']:,}",
            _tokens(t["payout"]),
            _tokens(t["slashed"]) if t["slashed"] else "-",
            f"{t['reputation_ppm'] / 1e6:.3f}",
            _tokens(t.get("data_payment", 0)),
            _tokens(t.get("royalty", 0)),
            why(t),
            style=style,
        )
    return table


def why(t: dict[str, Any]) -> str:
    """Why this trainer got what it got, in words: flags, share of the budget, reputation."""
    rep = ""
    if "reputation_before_ppm" in t:
        rep = (
            f"; reputation {t['reputation_before_ppm'] / 1e6:.3f} → {t['reputation_ppm'] / 1e6:.3f}"
        )
    names = t.get("flag_names") or []
    if names:
        words = " and ".join(n.replace("_", " ") for n in names)
        lost = f", slashed {_tokens(t['slashed'])} of stake" if t["slashed"] else ""
        withheld = int(t.get("data_payment_withheld") or 0)
        data = (
            f", data payment {_tokens(withheld)} withheld (returns to the requester)"
            if withheld
            else ""
        )
        return f"flagged {words} by the oracles: paid nothing{data}, bond burned{lost}{rep}"
    budget = int(t.get("budget") or 0)
    after = "; withdrew consent after the sale" if t.get("withdrew") else ""
    if int(t["payout"]) == 0:
        return f"score at or below the floor: paid nothing (not flagged, stake kept){rep}{after}"
    share = f" = {int(t['payout']) / budget:.1%} of the {_tokens(budget)} budget" if budget else ""
    return f"paid in proportion to its score{share}{rep}{after}"


def write_plots(result: dict[str, Any], directory: Path) -> dict[str, str]:
    """Accuracy per round; payout against leave-one-out utility; stake before and after."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display needed
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    colours = {
        "honest": "tab:blue",
        "free_rider": "tab:orange",
        "poisoner": "tab:red",
        "noisy": "tab:purple",
    }

    fig, ax = plt.subplots(figsize=(6, 4))
    rounds = [r["round"] for r in result["rounds"]]
    ax.plot(
        rounds,
        [r["test_accuracy"] for r in result["rounds"]],
        marker="o",
        label="federated (FedMarket)",
    )
    ax.axhline(result["centralized_accuracy"], color="grey", linestyle="--", label="centralized")
    ax.set(
        xlabel="round", ylabel="test accuracy", title="Global model accuracy per round", ylim=(0, 1)
    )
    ax.legend()
    paths["accuracy"] = str(directory / "accuracy.png")
    fig.tight_layout()
    fig.savefig(paths["accuracy"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    seen: set[str] = set()
    for i, t in enumerate(result["trainers"], start=1):
        b = t["behaviour"]
        ax.scatter(t["loo_utility"], t["payout"] / TOKEN, color=colours[b], s=90,
                   label=None if b in seen else b.replace("_", " "), zorder=2)  # fmt: skip
        seen.add(b)
        # The row number of the table, inside the marker: matchable, never overlapping text.
        ax.annotate(str(i), (t["loo_utility"], t["payout"] / TOKEN), fontsize=7, color="white",
                    ha="center", va="center", zorder=3)  # fmt: skip
    ax.legend(title="behaviour (numbers: table rows)", fontsize=7, title_fontsize=7)
    ax.set(xlabel="leave-one-out utility on held-out data (accuracy, summed over rounds)",
           ylabel="payout (tokens)", title="Payout against held-out contribution")  # fmt: skip
    paths["payout_vs_loo"] = str(directory / "payout_vs_loo.png")
    fig.tight_layout()
    fig.savefig(paths["payout_vs_loo"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4))
    names = [f"{i}\n{t['behaviour'].replace('_', ' ')}" for i, t in
             enumerate(result["trainers"], start=1)]  # fmt: skip
    xs = range(len(names))
    before = [t["stake_before"] / TOKEN for t in result["trainers"]]
    after = [t["stake_after"] / TOKEN for t in result["trainers"]]
    ax.bar([x - 0.2 for x in xs], before, 0.4, label="before")
    ax.bar([x + 0.2 for x in xs], after, 0.4, label="after")
    ax.set_xticks(list(xs), names, fontsize=7)
    ax.set(ylabel="stake (tokens)", title="Trainer stake before and after the task")
    ax.legend()
    paths["stake"] = str(directory / "stake.png")
    fig.tight_layout()
    fig.savefig(paths["stake"], dpi=110)
    plt.close(fig)
    return paths


def sale_line(sale: dict[str, Any]) -> str:
    """Act 3 in one sentence."""
    return (
        f"sale: committee score {sale['score_ppm'] / 1e4:.1f}%, {len(sale['auditors'])} auditors "
        f"attested, listing {sale['listing_id']} sold {sale['sales']} times at "
        f"{_tokens(sale['price'])} ({sale['downloads_verified']} downloads digest-checked); "
        f"gross {_tokens(sale['gross'])} = requester {_tokens(sale['requester_share'])} + "
        f"auditors {_tokens(sale['auditor_share'])} + trainers {_tokens(sale['trainer_share'])} "
        f"(royalties by score, flagged trainers none)"
    )


def print_summary(console: Console, result: dict[str, Any]) -> None:
    if result.get("sourcing"):
        console.print(sourcing_table(result["sourcing"]))
        console.print(f"join gate: {result['sourcing']['gate']}")
    console.print(results_table(result))
    if result.get("sale"):
        console.print(sale_line(result["sale"]))
    if result.get("withdrawal"):
        console.print(versions_table(result["withdrawal"]))
    slashed_oracles = [o for o in result["oracles"] if o["slashed"]]
    console.print(
        f"chain: {result['chain']} · storage: {result['storage']} · "
        f"{result['seconds']:.0f}s · payout root {result['report_root'][:18]}…"
        + (f" · {len(slashed_oracles)} oracle(s) slashed" if slashed_oracles else "")
    )
    for name, path in result.get("plots", {}).items():
        console.print(f"plot {name}: {path}")
