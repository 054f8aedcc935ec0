#!/usr/bin/env python3
"""Turns the JSON lines of bench/compare into a markdown table and an SVG chart.

    python3 bench/compare_report.py RESULTS.jsonl CHART.svg > TABLE.md

Medians with min-max over the rounds; the Volley/best-peer ratio compares
Volley's median with the best median among the other WebSocket libraries
(raw TCP is the ceiling, not a peer).
"""
import json
import statistics
import sys
from collections import defaultdict

ORDER = ["volley", "tungstenite", "fastwebsockets", "tokio_websockets", "yawc", "raw_tcp"]
NAMES = {
    "volley": "Volley",
    "tungstenite": "tokio-tungstenite",
    "fastwebsockets": "fastwebsockets",
    "tokio_websockets": "tokio-websockets",
    "yawc": "yawc",
    "raw_tcp": "raw TCP (ceiling)",
}
PEERS = {"tungstenite", "fastwebsockets", "tokio_websockets", "yawc"}


def scenario_of(r):
    if r["mode"] == "echo":
        size = r["size"]
        s = f"{size // 1048576} MiB" if size >= 1048576 else f"{size // 1024} KiB" if size >= 1024 else f"{size} B"
        return f"echo {r['connections']} x {s}, K={r['in_flight']} (msg/s)", "msg", True
    if r["mode"] == "latency":
        return None
    if r["mode"] == "connect":
        return f"idle memory, N={r['connections']:,} (KiB/connection)", "mem", False
    return None


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    svg_path = sys.argv[2] if len(sys.argv) > 2 else None
    table = defaultdict(lambda: defaultdict(list))  # scenario -> server -> values
    higher_better = {}
    cpu = defaultdict(list)
    failures = [r for r in rows if r["mode"] == "failed"]
    for r in rows:
        label = r.get("label")
        if r["mode"] == "echo":
            name, _, hb = scenario_of(r)
            table[name][label].append(r["messages_per_sec"])
            higher_better[name] = hb
            cpu[name].append(r.get("loadgen_cpu_percent", 0))
            if r.get("server_us_per_message") is not None:
                cname = name.replace("(msg/s)", "server CPU per message (µs)")
                table[cname][label].append(r["server_us_per_message"])
                higher_better[cname] = False
        elif r["mode"] == "latency":
            for key, pct in (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")):
                name = f"latency 1 x {r['size']} B, {pct} (µs)"
                table[name][label].append(r[key])
                higher_better[name] = False
        elif r["mode"] == "connect":
            if r.get("bytes_per_connection") is not None:
                name = f"idle memory, N={r['connections']:,} (KiB/connection)"
                table[name][label].append(r["bytes_per_connection"] / 1024)
                higher_better[name] = False
            name = f"connect {r['connections']:,} connections (connections/s)"
            table[name][label].append(r["connections_per_sec"])
            higher_better[name] = True

    servers = [s for s in ORDER if any(s in v for v in table.values())]
    servers += sorted({s for v in table.values() for s in v} - set(servers))
    head = ["scenario"] + [NAMES.get(s, s) for s in servers] + ["Volley / best peer", "load gen CPU"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    chart = []
    for name in table:
        cells = [name]
        medians = {}
        for s in servers:
            vals = table[name].get(s)
            if not vals:
                cells.append("–")
                continue
            med = statistics.median(vals)
            medians[s] = med
            digits = 0 if med >= 100 else 1 if med >= 10 else 2
            fmt = f"{{:,.{digits}f}}"
            cell = fmt.format(med)
            if len(vals) > 1:
                cell += f" ({fmt.format(min(vals))}–{fmt.format(max(vals))})"
            cells.append(cell)
        peers = {s: m for s, m in medians.items() if s in PEERS}
        ratio = "–"
        if "volley" in medians and peers:
            if higher_better[name]:
                best = max(peers.values())
                ratio = f"{medians['volley'] / best:.2f}x" if best else "–"
            else:
                best = min(peers.values())
                ratio = f"{best / medians['volley']:.2f}x better" if medians["volley"] else "–"
                ratio = ratio if best >= medians["volley"] else f"{medians['volley'] / best:.2f}x worse"
        cells.append(ratio)
        cells.append(f"{statistics.median(cpu[name]):.0f} %" if cpu.get(name) else "–")
        print("| " + " | ".join(cells) + " |")
        if higher_better[name] and peers:
            chart.append((name, medians, max(peers.values())))
    if failures:
        print()
        for f in failures:
            print(f"- FAILED: {f['label']} {f['scenario']} (round {f['round']})")
    if svg_path:
        write_svg(svg_path, chart, servers)


COLORS = {
    "volley": "#d9480f",
    "tungstenite": "#1c7ed6",
    "fastwebsockets": "#37b24d",
    "tokio_websockets": "#7048e8",
    "yawc": "#f59f00",
    "raw_tcp": "#868e96",
}


def write_svg(path, chart, servers):
    """Horizontal bars per scenario, each server's median relative to the best peer."""
    bar, gap, left, width = 14, 18, 250, 430
    height = 40 + sum(len([s for s in servers if s in m]) * bar + gap + 18 for _, m, _ in chart) + 30
    top = max([m.get(s, 0) / best for _, m, best in chart for s in servers if s in m] + [1.0])
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 120}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">Echo throughput relative to the best '
        "Rust peer (1.0 = best peer; median of the rounds)</text>",
    ]
    y = 40
    for name, medians, best in chart:
        out.append(f'<text x="10" y="{y + 12}" font-weight="bold">{name}</text>')
        y += 18
        for s in servers:
            if s not in medians:
                continue
            rel = medians[s] / best
            w = max(1, int(width * rel / top))
            out.append(f'<text x="{left - 6}" y="{y + bar - 3}" text-anchor="end">{NAMES.get(s, s)}</text>')
            out.append(f'<rect x="{left}" y="{y}" width="{w}" height="{bar - 2}" fill="{COLORS.get(s, "#495057")}"/>')
            out.append(f'<text x="{left + w + 4}" y="{y + bar - 3}">{rel:.2f} ({medians[s]:,.0f})</text>')
            y += bar
        x1 = left + int(width / top)
        out.append(f'<line x1="{x1}" x2="{x1}" y1="{y - bar * len(medians)}" y2="{y}" stroke="black" stroke-dasharray="3,3"/>')
        y += gap
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
