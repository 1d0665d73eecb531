#!/usr/bin/env python3
"""Side-by-side swarm benchmark on 127.0.0.1: qswarm against libtorrent (issue 7, scenarios 1, 2 and 3).

  scenario 1: one seeder -> one leecher
  scenario 2: one seeder -> four leechers at once (all five processes on this machine; the leechers also connect
              to each other, so the swarm can share instead of being a star around the seeder)
  scenario 3: one seeder -> one leecher by infohash only, peers found through a `qswarm dht` bootstrap node
              (qswarm only: `--scenarios 1,3`; time to first byte and to done, from the fetch's start)

Both clients get the same random file and the same .torrent (mktorrent, 256 KiB pieces by default), runs
alternate between the clients (lt, qswarm, then qswarm, lt, ...), and every process is measured from outside:
wall time, CPU seconds (user+sys from wait4's rusage), peak RSS (VmHWM) and peak anonymous RSS (RssAnon), both
sampled from /proc/PID/status every 50 ms once the child has exec'd (wait4's ru_maxrss is not used: a child
forked from this python reports python's own RSS in it; libtorrent 2.0 maps the files it serves, so its peak
RSS counts page-cache pages of the data). Every leecher's file is compared (SHA-1 of the whole file) with the
source after each run. Prints a table of medians with the qswarm/libtorrent ratio, then a markdown section for
bench/RESULTS.md. See bench/README-libtorrent.md.

Any python3 runs this script (it only spawns processes); the libtorrent peers run bench/lt_peer.py under
Debian's /usr/bin/python3 (--lt-python). The qswarm side is used when --qswarm PATH is given and that binary has
the `seed` and `fetch` commands of DESIGN.md §1; otherwise it is skipped with the reason printed.
"""

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # importing swarm_run must not leave bench/__pycache__ in the repository
from swarm_run import Libtorrent, Qswarm, run_dht_once, run_once  # noqa: E402  (bench/ is sys.path[0] when run as a script)

HERE = os.path.dirname(os.path.abspath(__file__))
MB = 1e6
MIB = 1024 * 1024


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def parse_size(text):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.I)
    if not m:
        raise argparse.ArgumentTypeError("size like 1G, 256M, 262144: %r" % text)
    mult = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    return int(float(m.group(1)) * mult)


# ----------------------------------------------------------------------------------------------------------------
# Summaries


def med(values):
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, spec="%.2f"):
    return "–" if v is None else spec % v


def summarize(runs, size):
    """Medians over runs (and over leechers within a run where a figure is per leecher)."""
    s = {}
    s["runs"] = len(runs)
    s["all_done"] = med(r["all_done"] for r in runs)
    s["mbps"] = None if not s["all_done"] else size / s["all_done"] / MB
    leech = [l for r in runs for l in r["leechers"]]
    s["leech_time"] = med(l["listen_to_done"] for l in leech)
    s["spawn_to_done"] = med(l["spawn_to_done"] for l in leech)
    s["ttfb"] = med(l["ttfb"] for l in leech)
    s["ttfb_progress"] = med(l.get("ttfb_progress") for l in leech)
    s["t_metadata"] = med(l.get("t_metadata") for l in leech)
    s["leech_cpu"] = med(l["cpu"] for l in leech)
    s["leech_rss"] = med(l["maxrss_mib"] for l in leech)
    s["leech_rss_max"] = max((l["maxrss_mib"] or 0) for l in leech)
    s["leech_anon"] = med(l["peak_anon_mib"] for l in leech)
    s["leech_up"] = med(l["uploaded"] for l in leech)
    ups = [l["uploaded"] for l in leech if l["uploaded"] is not None]
    s["leech_up_min"] = min(ups) if ups else None
    s["every_leecher_uploads"] = all(
        r["leechers"] and all((l["uploaded"] or 0) > 0 for l in r["leechers"]) for r in runs
    )
    s["seed_cpu"] = med(r["seeder"]["cpu_transfer"] for r in runs)
    s["seed_rss"] = med(r["seeder"]["maxrss_mib"] for r in runs)
    s["seed_anon"] = med(r["seeder"]["peak_anon_mib"] for r in runs)
    s["seed_up"] = med(r["seeder"]["uploaded"] for r in runs)
    return s


ROWS = [
    # key, label, format, ratio sense (None: no ratio)
    ("all_done", "all leechers done, s (median)", "%.2f", "time"),
    ("mbps", "throughput, MB/s (size / that time)", "%.1f", "rate"),
    ("leech_time", "leecher listening→complete, s", "%.2f", "time"),
    ("spawn_to_done", "leecher start→complete, s", "%.2f", "time"),
    ("ttfb", "leecher time to first byte, s", "%.3f", "time"),
    ("t_metadata", "scenario 3: fetch start→metadata event, s", "%.3f", "time"),
    ("ttfb_progress", "scenario 3: fetch start→first progress event with bytes (1 s cadence), s", "%.3f", "time"),
    ("leech_cpu", "leecher CPU s (user+sys)", "%.2f", "time"),
    ("seed_cpu", "seeder CPU s during the transfer", "%.2f", "time"),
    ("leech_rss", "leecher peak RSS, MiB (VmHWM)", "%.1f", "time"),
    ("leech_rss_max", "largest leecher peak RSS, MiB", "%.1f", "time"),
    ("leech_anon", "leecher peak anonymous RSS, MiB", "%.1f", "time"),
    ("seed_rss", "seeder peak RSS, MiB (VmHWM)", "%.1f", "time"),
    ("seed_anon", "seeder peak anonymous RSS, MiB", "%.1f", "time"),
    ("leech_up", "uploaded per leecher, MiB (median)", "MIB", None),
    ("leech_up_min", "least uploaded by a leecher, MiB", "MIB", None),
    ("seed_up", "uploaded by the seeder, MiB", "MIB", None),
]


def cell(s, key, spec):
    v = s.get(key)
    if spec == "MIB":
        return fmt(None if v is None else v / MIB, "%.1f")
    return fmt(v, spec)


def table(scenario_title, sums, clients, swarm):
    """Markdown table: one row per figure, one column per client, then qswarm/libtorrent."""
    names = [c for c in clients if c in sums]
    head = "| %s | %s |" % ("figure", " | ".join(names))
    sep = "|---|" + "---:|" * len(names)
    ratio = "qswarm" in names and "libtorrent" in names
    if ratio:
        head += " qswarm/libtorrent |"
        sep += "---:|"
    out = ["**%s**" % scenario_title, "", head, sep]
    for key, label, spec, sense in ROWS:
        row = "| %s | %s |" % (label, " | ".join(cell(sums[n], key, spec) for n in names))
        if ratio:
            q, l = sums["qswarm"].get(key), sums["libtorrent"].get(key)
            row += " %s |" % (fmt(q / l, "%.2f×") if q is not None and l else "–")
        out.append(row)
    out.append("")
    for n in names if swarm else []:
        verdict = "yes" if sums[n]["every_leecher_uploads"] else "no"
        out.append("- %s: every leecher uploaded something in every run: %s" % (n, verdict))
    return "\n".join(out)


def machine():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    return "%s, %d cores, %.0f GiB RAM, Linux %s" % (cpu, os.cpu_count(), mem, platform.release())


# ----------------------------------------------------------------------------------------------------------------


def make_data(workdir, size, piece_length):
    src_dir = os.path.join(workdir, "src")
    os.makedirs(src_dir)
    data_file = os.path.join(src_dir, "bench-%d.bin" % size)
    h = hashlib.sha1()
    with open(data_file, "wb") as f:
        left = size
        while left:
            b = os.urandom(min(left, 4 * MIB))
            h.update(b)
            f.write(b)
            left -= len(b)
    torrent = os.path.join(workdir, "bench.torrent")
    log2 = piece_length.bit_length() - 1
    if shutil.which("mktorrent"):
        cmd = ["mktorrent", "-l", str(log2), "-t", "2", "-o", torrent, data_file]
    else:
        cmd = [
            "/usr/bin/python3",
            "-c",
            "import libtorrent as lt,sys;fs=lt.file_storage();lt.add_files(fs,sys.argv[1]);"
            "t=lt.create_torrent(fs,int(sys.argv[2]));lt.set_piece_hashes(t,sys.argv[3]);"
            "open(sys.argv[4],'wb').write(lt.bencode(t.generate()))",
            data_file,
            str(piece_length),
            src_dir,
            torrent,
        ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return data_file, torrent, h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=parse_size, default=1 << 30, help="file size (default 1G)")
    ap.add_argument("--piece-length", type=parse_size, default=256 * 1024, help="piece length (default 256K)")
    ap.add_argument("--runs", type=int, default=3, help="runs per client per scenario (default 3)")
    ap.add_argument("--scenarios", default="1,2", help="comma-separated, of 1, 2 and 3 (default 1,2)")
    ap.add_argument("--leechers", type=int, default=4, help="leechers in scenario 2 (default 4)")
    ap.add_argument("--qswarm", metavar="PATH", help="qswarm release binary (target/release/qswarm)")
    ap.add_argument(
        "--qswarm-data",
        choices=["dir", "file"],
        default="file",
        help="what `qswarm seed --data` gets: the file itself (default; DESIGN.md §1: a single-file torrent's "
        "--data is its file) or the directory holding it",
    )
    ap.add_argument(
        "--start",
        choices=["together", "sequential"],
        default="together",
        help="scenario 2: start the leechers at once on reserved ports (default), or one after another",
    )
    ap.add_argument("--no-libtorrent", action="store_true", help="run only qswarm")
    ap.add_argument(
        "--lt-profile",
        choices=["tuned", "default", "hps"],
        default="tuned",
        help="libtorrent settings: tuned for throughput (default), libtorrent's defaults, or hps "
        "(high_performance_seed with deep queues)",
    )
    ap.add_argument("--lt-set", action="append", default=[], metavar="KEY=VALUE", help="override a libtorrent setting")
    ap.add_argument(
        "--lt-compare",
        metavar="PROFILE[,KEY=VALUE...]",
        help="also run a second libtorrent configuration, `libtorrent-b`, alternating with the first (to tune it)",
    )
    ap.add_argument("--lt-python", default="/usr/bin/python3", help="python with `import libtorrent`")
    ap.add_argument("--dir", default=None, help="parent for the temporary directory (default: /tmp)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds a run may take before it fails")
    ap.add_argument("--json-out", help="also write every run's raw figures to this JSON file")
    ap.add_argument("--no-transport", action="store_true", help="do not run bench/transport.sh (scenario 5)")
    args = ap.parse_args()
    scenarios = [int(x) for x in args.scenarios.split(",") if x.strip()]
    if any(s not in (1, 2, 3) for s in scenarios):
        ap.error("--scenarios takes 1, 2 and/or 3 (4 and 5 are other scripts)")
    if args.piece_length & (args.piece_length - 1) or args.piece_length < 16384:
        ap.error("--piece-length must be a power of two >= 16K")

    clients = []
    skipped = []
    if not args.no_libtorrent:
        clients.append(Libtorrent(args.lt_python, args.lt_profile, args.lt_set))
        if args.lt_compare:
            profile, _, rest = args.lt_compare.partition(",")
            sets = [kv for kv in rest.split(",") if kv]
            clients.append(Libtorrent(args.lt_python, profile, sets, name="libtorrent-b"))
    if args.qswarm:
        q = Qswarm(os.path.abspath(args.qswarm), args.qswarm_data)
        reason = q.unusable()
        if reason:
            skipped.append("qswarm skipped: " + reason)
            log("qswarm skipped: " + reason)
        else:
            clients.append(q)
    else:
        skipped.append("qswarm not run: no --qswarm PATH given")
    if not clients:
        log("nothing to run")
        return 2

    workdir = tempfile.mkdtemp(prefix="qswarm-bench-", dir=args.dir)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = os.getloadavg()
    try:
        log("generating %d bytes of random data and the torrent in %s" % (args.size, workdir))
        data_file, torrent, src_sha1 = make_data(workdir, args.size, args.piece_length)
        raw = []
        sums = {}
        failures = []
        for sc in scenarios:
            n = 1 if sc == 1 else args.leechers
            sc_clients = [c for c in clients if sc != 3 or isinstance(c, Qswarm)]
            per_client = {c.name: [] for c in sc_clients}
            for run in range(args.runs):
                order = sc_clients if run % 2 == 0 else list(reversed(sc_clients))
                for c in order:
                    log("scenario %d, run %d/%d, %s ..." % (sc, run + 1, args.runs, c.name))
                    try:
                        if sc == 3:
                            r = run_dht_once(c, torrent, data_file, src_sha1, workdir, args.timeout)
                        else:
                            r = run_once(c, sc, n, torrent, data_file, src_sha1, workdir, args.timeout, args.start)
                    except RuntimeError as e:
                        failures.append("scenario %d run %d %s: %s" % (sc, run + 1, c.name, e))
                        log("  FAILED: %s" % e)
                        continue
                    r["run"] = run + 1
                    raw.append(r)
                    per_client[c.name].append(r)
                    log(
                        "  all done in %.2f s (%.1f MB/s); leechers: %s"
                        % (
                            r["all_done"],
                            args.size / r["all_done"] / MB,
                            ", ".join(
                                "%.2fs cpu %.2f rss %.0fMiB up %s"
                                % (
                                    l["listen_to_done"],
                                    l["cpu"],
                                    l["maxrss_mib"],
                                    "-" if l["uploaded"] is None else "%.0fMiB" % (l["uploaded"] / MIB),
                                )
                                for l in r["leechers"]
                            ),
                        )
                    )
            sums[sc] = {name: summarize(rs, args.size) for name, rs in per_client.items() if rs}

        transport = None
        tscript = os.path.join(HERE, "transport.sh")
        if not args.no_transport and os.path.isfile(tscript):
            log("scenario 5: running %s" % tscript)
            env = dict(os.environ)
            if args.qswarm:
                env["QSWARM_BIN"] = os.path.abspath(args.qswarm)
            r = subprocess.run(["bash", tscript], capture_output=True, text=True, env=env, timeout=1800)
            transport = (r.returncode, r.stdout.strip(), r.stderr.strip().splitlines()[-5:])

        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump({"size": args.size, "runs": raw, "failures": failures}, f, indent=1)

        names = [c.name for c in clients]
        titles = {
            1: "Scenario 1: one seeder → one leecher",
            2: "Scenario 2: one seeder → %d leechers at once" % args.leechers,
            3: "Scenario 3: one seeder → one leecher by infohash through a `qswarm dht` bootstrap node (times from "
            "starting `fetch`; time to first byte = its file's first allocated block)",
        }
        md = [
            "## Side-by-side with libtorrent (scenarios 1–3)",
            "",
            "- Date: %s" % started,
            "- Machine: %s" % machine(),
            "- Load average (1/5/15 min) at start %s, at end %s: other work on the machine makes figures noisy"
            % ("/".join("%.1f" % x for x in load_start), "/".join("%.1f" % x for x in os.getloadavg())),
            "- Clients: %s" % "; ".join(c.version() for c in clients),
            "- Data: %d bytes (%.0f MiB) of random data, %d KiB pieces, one .torrent (mktorrent) for both clients"
            % (args.size, args.size / MIB, args.piece_length // 1024),
            "- Runs: %d per client per scenario, alternating clients; figures are medians (per-leecher figures: "
            "median over all leechers of all runs). MB = 10^6 bytes." % args.runs,
            "- Command: `%s`" % " ".join(["python3", "bench/swarm_bench.py"] + sys.argv[1:]),
        ]
        md.append(
            "- Ratio column: qswarm ÷ libtorrent. For MB/s higher is better for qswarm; for seconds, CPU seconds "
            "and MiB lower is better. Column meanings: bench/README-libtorrent.md."
        )
        md += ["- %s" % s for s in skipped]
        md.append("- Every leecher's file matched the source's SHA-1 (%s) in every run that is counted." % src_sha1)
        for sc in scenarios:
            if sums.get(sc):
                md += ["", table(titles[sc], sums[sc], names, sc == 2)]
        if raw:
            md += [
                "",
                "<details><summary>Every run</summary>",
                "",
                "| scenario | run | client | all done, s | per leecher: listening→complete s / CPU s / peak RSS MiB / "
                "uploaded MiB | seeder CPU s / RSS MiB |",
                "|---|---|---|---:|---|---|",
            ]
            for r in raw:
                md.append(
                    "| %d | %d | %s | %.2f | %s | %s / %s |"
                    % (
                        r["scenario"],
                        r["run"],
                        r["client"],
                        r["all_done"],
                        "; ".join(
                            "%.2f / %s / %s / %s"
                            % (
                                l["listen_to_done"],
                                fmt(l["cpu"]),
                                fmt(l["maxrss_mib"], "%.0f"),
                                fmt(None if l["uploaded"] is None else l["uploaded"] / MIB, "%.0f"),
                            )
                            for l in r["leechers"]
                        ),
                        fmt(r["seeder"]["cpu_transfer"]),
                        fmt(r["seeder"]["maxrss_mib"], "%.0f"),
                    )
                )
            md += ["", "</details>"]
        if failures:
            md += ["", "Failed runs (not counted):", ""] + ["- %s" % f for f in failures]
        if transport is not None:
            md += ["", "**Scenario 5: raw transport (bench/transport.sh, exit %d)**" % transport[0], "", "```"]
            md += [transport[1]] + (["(stderr tail)"] + transport[2] if transport[0] else []) + ["```"]
        print("\n".join(md))
        return 1 if failures else 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
