"""The peers benchmark's tables (text and Markdown), charts (PNG) and bench/README.md section."""

from __future__ import annotations

from pathlib import Path

BEGIN, END = "<!-- peers:begin -->", "<!-- peers:end -->"
# What each thread (rnnserve) or process (a peer) is, as the tables name it.
SHARE_NAMES = {
    "event loop": "event loop",
    "batch thread": "batch thread",
    "onnxruntime": "onnxruntime pool",
    "triton_model.py": "PyTriton model process",
    "triton_python_b": "Python backend stub",
    "mlserver": "mlserver main",
    "_bentoml_impl.worker.service": "worker",
    "bentoml": "supervisor",
}


def reference(label: str) -> str:
    """The rnnserve row each row is compared with: the same transport, V2 ids over HTTP."""
    return "rnnserve gRPC" if label.endswith("gRPC") else "rnnserve V2 ids"


def ratio(rows: dict, label: str, c: int) -> float | None:
    ref = rows.get(reference(label))
    return rows[label][c]["rps"] / ref[c]["rps"] if ref and ref[c]["rps"] else None


def _n(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


# Multiprocessing children (`python -c`): MLServer's inference worker runs the model;
# Triton's Python backend stub starts helpers.
CHILDREN = {"MLServer": "inference worker", "Triton": "stub helpers"}


def split_text(cell: dict, label: str = "") -> str:
    """The server's cores by role, largest first ("event loop 0.52 · batch thread 0.95 ...")."""
    names = SHARE_NAMES | {"python -c": CHILDREN.get(label.split()[0] if label else "", "child")}
    roles = sorted(cell["cpu"]["roles"].items(), key=lambda kv: -kv[1])
    return " · ".join(f"{names.get(name, name)} {cores:.2f}" for name, cores in roles
                      if cores >= 0.005)  # fmt: skip


def text(result: dict) -> str:
    levels = result["levels"]
    lines = []
    for workload, rows in result["table"].items():
        info = result["workloads"][workload]
        lines.append(f"\n{workload}: {info['description']}; {info['lengths']}")
        lines.append(
            f"{'server':<18}"
            + "".join(f"{f'c={c} req/s':>12}{'p50':>8}{'p99':>8}{'ratio':>7}" for c in levels)
        )
        for label, by_c in rows.items():
            cells = ""
            for c in levels:
                r = ratio(rows, label, c)
                cells += (f"{by_c[c]['rps']:>12.0f}{by_c[c]['p50_ms']:>8.2f}"
                          f"{by_c[c]['p99_ms']:>8.2f}{r:>7.2f}")  # fmt: skip
            lines.append(f"{label:<18}{cells}")
        lines.append("CPU (cores, medians of the rounds):")
        for label, by_c in rows.items():
            for c in levels:
                cell = by_c[c]
                limit = cell.get("limit")
                bound = (f"; limit {limit['combined_limit']:.0f} req/s ({limit['bound_by']})"
                         if limit else "")  # fmt: skip
                lines.append(
                    f"  {label:<18}c={c:<3} server {cell['cpu']['server']:.2f} "
                    f"[{split_text(cell, label)}], "
                    f"load generator {cell['cpu']['load_generator']:.2f}, "
                    f"other processes {cell['cpu']['other_processes']:.2f}{bound}"
                )
    return "\n".join(lines)


def markdown(result: dict, charts: list[Path]) -> str:
    levels = result["levels"]
    out = [
        f"{result['date']}, `{result['command']}` (`make bench-peers`), {result['rounds']} "
        f"interleaved rounds of {result['seconds_per_cell']:g} s per cell, medians; "
        f"{result['seconds_total'] / 60:.1f} min for the whole command once the environments "
        f"existed. {result['cores']} cores.",
        "",
        "What each server was given:",
        "",
        "| server | settings |",
        "|---|---|",
    ]
    for name, settings in result["settings"].items():
        shown = "its defaults (max_batch_size 32, max_batch_delay_ms 2)" if name == "rnnserve" \
            else ", ".join(f"`{k}` {v}" for k, v in settings.items())  # fmt: skip
        out.append(f"| {name} | {shown} |")
    if result["sweeps"]:
        out += ["", "Batch delays tried (SST-2 sentences; medians of the sweep's rounds; the "
                "kept one in bold):", "",
                "| peer | delay | c=1 req/s | c=1 p50 ms | c=64 req/s |",
                "|---|---|---|---|---|"]  # fmt: skip
        for peer, table in result["sweeps"].items():
            for delay, by_c in table.items():
                bold = "**" if str(delay) == str(result["delays"][peer]) else ""
                unit = {"Triton": "us", "MLServer": "ms", "BentoML": "ms (max latency)"}[peer]
                failed = f" ({by_c['64']['failed']} failed)" if by_c["64"]["failed"] else ""
                out.append(
                    f"| {peer} | {bold}{delay} {unit}{bold} | {_n(by_c['1']['rps'])} | "
                    f"{by_c['1']['p50_ms']:.2f} | {_n(by_c['64']['rps'])}{failed} |"
                )
    for workload, rows in result["table"].items():
        info = result["workloads"][workload]
        out += ["", f"**{workload}**: {info['description']}, {info['lengths']}; the peers' ids "
                f"padded to {info['peer_width']}.", ""]  # fmt: skip
        out.append("| server | " + " | ".join(f"c={c} req/s | p50 ms | p99 ms | x rnnserve"
                                             for c in levels) + " |")  # fmt: skip
        out.append("|---|" + "---:|" * 4 * len(levels))
        for label, by_c in rows.items():
            cells = []
            for c in levels:
                r = ratio(rows, label, c)
                bold = "**" if label.startswith("rnnserve") else ""
                cells.append(f"{bold}{_n(by_c[c]['rps'])}{bold} | {by_c[c]['p50_ms']:.2f} | "
                             f"{by_c[c]['p99_ms']:.1f} | {r:.2f}")  # fmt: skip
            failed = sum(by_c[c]["failed"] for c in levels)
            note = f" ({failed} failed)" if failed else ""
            out.append(f"| {label}{note} | " + " | ".join(cells) + " |")
        behind = [
            f"{label} at c={c} ({ratio(rows, label, c):.2f}x)"
            for label in rows
            if not label.startswith("rnnserve")
            for c in levels
            if ratio(rows, label, c) >= 1.0
        ]
        out += ["", "Rows where a peer answered as many requests per second as rnnserve or more: "
                + (", ".join(behind) if behind else "none") + "."]  # fmt: skip
        out += ["", "<details><summary>Where the CPU went (cores; " + workload + ")</summary>",
                "", "| row | c | req/s | server, by thread (rnnserve) or process (peers) | server "
                "| load generator | other processes | combined limit |",
                "|---|---|---:|---|---:|---:|---:|---|"]  # fmt: skip
        for label, by_c in rows.items():
            for c in levels:
                cell = by_c[c]
                limit = cell.get("limit")
                bound = (f"{limit['combined_limit']:,.0f} ({limit['bound_by']})"
                         if limit else "")  # fmt: skip
                out.append(
                    f"| {label} | {c} | {_n(cell['rps'])} | {split_text(cell, label)} | "
                    f"{cell['cpu']['server']:.2f} | {cell['cpu']['load_generator']:.2f} | "
                    f"{cell['cpu']['other_processes']:.2f} | {bound} |"
                )
        out += ["", "</details>"]
    out.append("")
    out += [f"![{chart.stem}]({chart.name})" for chart in charts]
    return "\n".join(out)


COLOURS = {"rnnserve V1 text": "C0", "rnnserve": "C9", "Triton": "C2", "MLServer": "C3",
           "BentoML": "C4"}  # fmt: skip


def style(label: str) -> dict:
    """A colour per server, dashed lines and squares for gRPC, thicker lines for rnnserve."""
    colour = COLOURS.get(label, COLOURS.get(label.split()[0], "C7"))
    grpc = label.endswith("gRPC")
    wide = label.startswith("rnnserve")
    return {"color": colour, "ls": "--" if grpc else "-", "marker": "s" if grpc else "o",
            "lw": 2.4 if wide else 1.4, "label": label}  # fmt: skip


def charts(result: dict, folder: Path) -> list[Path]:
    """One PNG per workload: req/s, p50 and p99 against concurrency, every server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = result["levels"]
    written = []
    for workload, rows in result["table"].items():
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
        for label, by_c in rows.items():
            for axis, key in zip(axes, ("rps", "p50_ms", "p99_ms"), strict=True):
                axis.plot(levels, [by_c[c][key] for c in levels], **style(label))
        for axis, title in zip(axes, ("requests/s", "p50 latency, ms", "p99 latency, ms"),
                               strict=True):  # fmt: skip
            axis.set_xscale("log", base=2)
            axis.set_xticks(levels, [str(c) for c in levels])
            axis.set_xlabel("concurrent clients")
            axis.set_title(title)
            axis.grid(alpha=0.3)
        axes[0].set_ylim(bottom=0)
        axes[0].legend(fontsize=8)
        for axis in axes[1:]:
            axis.set_yscale("log")
        info = result["workloads"][workload]
        fig.suptitle(f"sst2-lstm, {workload}: {info['description']}; medians of "
                     f"{result['rounds']} interleaved rounds, {result['date']}")  # fmt: skip
        fig.tight_layout()
        path = folder / f"peers-{workload}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def update_readme(readme: Path, section: str) -> None:
    """Replace what lies between the peers marks of `readme` with `section`."""
    content = readme.read_text()
    if BEGIN not in content or END not in content:
        raise SystemExit(f"{readme} has no {BEGIN} ... {END} marks to write the tables between")
    head, rest = content.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{section}\n{END}{tail}")
