"""`pipeline tune`'s console table and plot."""

from __future__ import annotations

from pathlib import Path

from pipeline_cli.perf.cost import Configuration, vcpu_share


def print_report(
    configurations: list[Configuration],
    picks: dict[str, dict[str, int]],
    method: str,
    peak: float,
    mix: tuple[str, ...],
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ThumbnailFunction, mix of {len(mix)} inputs, CPU share by {method}; peak RSS {peak:.0f} MB")
    columns = ["MemorySize", "vCPU", "ms / image"]
    columns += ["model ms"] if method == "cgroup" else []
    columns += ["$ / 1M arm64", "$ / 1M x86_64", "picked (arm64)", "picked (x86_64)"]
    for column in columns:
        table.add_column(column, justify="right")
    for c in configurations:
        row = [
            f"{c.memory_mb}" + ("" if c.viable else " (RSS!)"),
            f"{vcpu_share(c.memory_mb):.2f}",
            f"{c.duration_ms:.0f}",
        ]
        row += [f"{c.model_ms:.0f}"] if c.model_ms is not None else []
        row += [f"{c.cost_per_million['arm64']:.2f}", f"{c.cost_per_million['x86_64']:.2f}"]
        row += [
            ", ".join(s for s, memory in picks[arch].items() if memory == c.memory_mb) for arch in ("arm64", "x86_64")
        ]
        table.add_row(*row)
    Console(width=140).print(table)
    print(f"(RSS!): below the measured peak RSS, not viable. Inputs: {', '.join(mix)}.")
    for architecture, strategies in picks.items():
        print(f"{architecture}: " + ", ".join(f"{name} -> {memory} MB" for name, memory in strategies.items()))


def plot(configurations: list[Configuration], picks: dict[str, dict[str, int]], method: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    memory = [c.memory_mb for c in configurations]
    figure, duration_axis = plt.subplots(figsize=(10, 5.5))
    duration_axis.plot(memory, [c.duration_ms for c in configurations], "o-", color="tab:blue", label=f"ms ({method})")
    model = [c.model_ms for c in configurations if c.model_ms is not None]
    if len(model) == len(configurations):
        duration_axis.plot(memory, model, ".:", color="tab:cyan", label="ms (model)")
    duration_axis.set_xlabel("MemorySize (MB)")
    duration_axis.set_ylabel("ms per image", color="tab:blue")
    duration_axis.set_yscale("log")
    cost_axis = duration_axis.twinx()
    for architecture, style in (("arm64", "s--"), ("x86_64", "^:")):
        costs = [c.cost_per_million[architecture] for c in configurations]
        cost_axis.plot(memory, costs, style, color="tab:orange", label=f"$ per 1M images, {architecture}")
    cost_axis.set_ylabel("USD per million images", color="tab:orange")
    for c in configurations:
        if not c.viable:
            duration_axis.axvspan(c.memory_mb - 40, c.memory_mb + 40, color="red", alpha=0.15)
    balanced = picks["arm64"]["balanced"]
    duration_axis.axvline(balanced, color="grey", linestyle="--", linewidth=1)
    figure.legend(loc="upper center", ncols=4, fontsize=8)
    figure.suptitle(f"picks (arm64): {picks['arm64']}; red: below peak RSS", y=0.02, fontsize=9)
    figure.tight_layout(rect=(0, 0.04, 1, 0.93))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
