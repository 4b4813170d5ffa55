"""The GPU's timeline of one step: kernel time against the time between kernels.

Inside a CUDA graph the host launches nothing, yet the graphed step took ~15% longer than
the sum of its kernels in the eager profile (docs/PERFORMANCE.md): the time between
kernels (each kernel's ramp and tail, dependencies, launch latency inside the graph) is
the largest pool of the step not assigned to a kernel family. This reads the device
kernels' start and end times from a torch.profiler trace of one step and splits the step's
span into kernel time and idle time, and names the kernels most often followed by an idle
gap, and the pairs (kernel before, kernel after) that the longest gaps fall between: what
follows a gap says what waited. Where the profiler sees only the graph launch (no kernel
records inside the graph), the report says so instead of guessing.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass

# A gap this long (µs) is more than a kernel-to-kernel hand-off inside a graph: the
# kernels before such gaps are listed.
LONG_GAP_US = 5.0


@dataclass(frozen=True)
class Timeline:
    kernels: int
    kernel_ms: float  # sum of kernel durations (overlapping kernels counted in full)
    busy_ms: float  # union of the kernels' intervals
    span_ms: float  # first kernel start to last kernel end
    gaps_us: tuple[float, ...]  # idle time after each kernel before the next one starts
    long_gap_before: tuple[tuple[str, int, float], ...]  # (kernel, gaps, ms) largest first
    # (kernel before, kernel after, gaps, ms) largest first
    long_gap_pairs: tuple[tuple[str, str, int, float], ...] = ()

    @property
    def idle_ms(self) -> float:
        return self.span_ms - self.busy_ms


def timeline(events: list[tuple[str, float, float]], top: int = 8) -> Timeline:
    """`events`: (kernel name, start µs, end µs) of the device kernels of one step."""
    if not events:
        return Timeline(0, 0.0, 0.0, 0.0, (), (), ())
    ev = sorted(events, key=lambda e: (e[1], e[2]))
    kernel_us = sum(e - s for _, s, e in ev)
    busy, gaps = 0.0, []
    cur_s, cur_e = ev[0][1], ev[0][2]
    long_n: Counter[str] = Counter()
    long_us: Counter[str] = Counter()
    pair_n: Counter[tuple[str, str]] = Counter()
    pair_us: Counter[tuple[str, str]] = Counter()
    last_name = ev[0][0]
    for name, s, e in ev[1:]:
        if s > cur_e:  # idle between the running interval and this kernel
            gap = s - cur_e
            gaps.append(gap)
            if gap > LONG_GAP_US:
                long_n[last_name] += 1
                long_us[last_name] += gap
                pair_n[last_name, name] += 1
                pair_us[last_name, name] += gap
            busy += cur_e - cur_s
            cur_s, cur_e = s, e
        else:  # overlaps (another stream): no gap
            gaps.append(0.0)
            cur_e = max(cur_e, e)
        if e >= cur_e:
            last_name = name
    busy += cur_e - cur_s
    span = max(e for _, _, e in ev) - ev[0][1]
    worst = tuple((n, long_n[n], long_us[n] / 1e3)
                  for n, _ in long_us.most_common(top))
    pairs = tuple((b, a, pair_n[b, a], pair_us[b, a] / 1e3)
                  for (b, a), _ in pair_us.most_common(top))
    return Timeline(len(ev), kernel_us / 1e3, busy / 1e3, span / 1e3, tuple(gaps), worst,
                    pairs)


def format_timeline(t: Timeline, label: str) -> str:
    if t.kernels == 0:
        return (f"{label}: the profiler saw no kernel inside the step (only the graph "
                "launch): no timeline")
    gaps = t.gaps_us
    long = [g for g in gaps if g > LONG_GAP_US]
    lines = [
        f"{label}: {t.kernels} kernels; span {t.span_ms:.2f} ms = busy {t.busy_ms:.2f} ms "
        f"+ idle {t.idle_ms:.2f} ms ({100 * t.idle_ms / t.span_ms:.1f}%); kernel time "
        f"{t.kernel_ms:.2f} ms",
        f"  gaps between kernels: median {statistics.median(gaps) if gaps else 0:.2f} µs; "
        f"{len(long)} over {LONG_GAP_US:g} µs, {sum(long) / 1e3:.2f} ms together",
    ]
    if t.long_gap_before:
        lines.append(f"  kernels most followed by a gap over {LONG_GAP_US:g} µs "
                     "(kernel, gaps, ms):")
        lines += [f"    {n[:80]:80s} {c:6d} {ms:8.2f}" for n, c, ms in t.long_gap_before]
    if t.long_gap_pairs:
        lines.append("  the pairs those gaps fall between (before -> after, gaps, ms):")
        for b, a, c, ms in t.long_gap_pairs:
            lines += [f"    {b[:80]}", f"      -> {a[:74]:74s} {c:6d} {ms:8.2f}"]
    return "\n".join(lines)


def device_kernel_events(prof) -> list[tuple[str, float, float]]:
    """(name, start µs, end µs) of every device kernel in a finished torch.profiler run,
    annotations excluded."""
    from torch.autograd import DeviceType

    from scalefold.bench.step import is_annotation

    out = []
    for evt in prof.events():
        if evt.device_type != DeviceType.CUDA or is_annotation(evt.name, evt):
            continue
        out.append((evt.name, float(evt.time_range.start), float(evt.time_range.end)))
    return out
