#!/usr/bin/env python3
"""Side-by-side swarm benchmark on 127.0.0.1: qswarm against libtorrent (issue 7, scenarios 1 and 2).

  scenario 1: one seeder -> one leecher
  scenario 2: one seeder -> four leechers at once (all five processes on this machine; the leechers also connect
              to each other, so the swarm can share instead of being a star around the seeder)

Both clients get the same random file and the same .torrent (mktorrent, 256 KiB pieces by default), runs
alternate between the clients (lt, qswarm, then qswarm, lt, ...), and every process is measured from outside:
wall time, CPU seconds (user+sys from wait4's rusage), peak RSS (ru_maxrss from wait4) and peak anonymous RSS
(RssAnon sampled from /proc/PID/status every 50 ms: libtorrent 2.0 maps the files it serves, so its ru_maxrss
counts page-cache pages of the data). Every leecher's file is compared (SHA-1 of the whole file) with the
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
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

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
# One measured process


class Proc:
    """A child process with its stdout read line by line (each line time-stamped, JSON parsed), its memory sampled
    from /proc, and its exit collected with os.wait4 (rusage: CPU and ru_maxrss of exactly this process)."""

    def __init__(self, name, argv, workdir):
        self.name = name
        self.argv = argv
        self.lines = []  # (t, text, json-or-None)
        self.cond = threading.Condition()
        self.eof = False
        self.exit_status = None
        self.t_exit = None
        self.rusage = None
        self.peak_anon_kib = 0
        self.peak_rss_kib = 0
        self.stderr_path = os.path.join(workdir, "%s.stderr" % name)
        self._stderr = open(self.stderr_path, "wb")
        self.t_spawn = time.monotonic()
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr)
        self.pid = self.p.pid
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._wait, daemon=True).start()
        threading.Thread(target=self._sample, daemon=True).start()

    def _read(self):
        for raw in self.p.stdout:
            t = time.monotonic()
            text = raw.decode("utf-8", "replace").rstrip("\n")
            obj = None
            if text.startswith("{"):
                try:
                    obj = json.loads(text)
                except ValueError:
                    obj = None
            with self.cond:
                self.lines.append((t, text, obj))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def _wait(self):
        _, status, ru = os.wait4(self.pid, 0)
        t = time.monotonic()
        self.p.returncode = os.waitstatus_to_exitcode(status)  # so Popen never waits on the reaped pid
        with self.cond:
            self.exit_status = self.p.returncode
            self.t_exit = t
            self.rusage = ru
            self.cond.notify_all()

    def _sample(self):
        path = "/proc/%d/status" % self.pid
        while self.t_exit is None:
            try:
                with open(path) as f:
                    for line in f:
                        if line.startswith("RssAnon:"):
                            self.peak_anon_kib = max(self.peak_anon_kib, int(line.split()[1]))
                        elif line.startswith("VmRSS:"):
                            self.peak_rss_kib = max(self.peak_rss_kib, int(line.split()[1]))
            except (OSError, ValueError, IndexError):
                pass
            time.sleep(0.05)

    def cpu_now(self):
        """user+sys CPU seconds so far (from /proc/PID/stat), or None once it is gone."""
        try:
            with open("/proc/%d/stat" % self.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def wait_line(self, pred, timeout):
        """First (t, text, json) satisfying pred, or None on timeout / EOF / exit."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                while seen < len(self.lines):
                    item = self.lines[seen]
                    seen += 1
                    if pred(item):
                        return item
                if self.eof:
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.5))

    def wait_exit(self, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.exit_status is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.5))
        return True

    def stop(self, grace=15.0):
        """SIGINT (what Ctrl-C sends: both clients stop cleanly on it), SIGKILL after grace seconds."""
        if self.exit_status is None:
            try:
                os.kill(self.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            if not self.wait_exit(grace):
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.wait_exit(10)
        deadline = time.monotonic() + 10
        with self.cond:
            while not self.eof and time.monotonic() < deadline:
                self.cond.wait(0.5)
        self._stderr.close()

    def cpu_total(self):
        return None if self.rusage is None else self.rusage.ru_utime + self.rusage.ru_stime

    def maxrss_mib(self):
        return None if self.rusage is None else self.rusage.ru_maxrss / 1024.0

    def stderr_tail(self, n=5):
        try:
            with open(self.stderr_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return ""

    def last_json(self, pred=lambda o: True):
        for _, _, obj in reversed(self.lines):
            if obj is not None and pred(obj):
                return obj
        return None


def addr_of_listening(item):
    """The peer address from a client's first line: lt_peer's `listening tcp=ADDR`, qswarm's JSON `quic`."""
    _, text, obj = item
    if obj is not None and obj.get("event") == "listening":
        return obj.get("quic") or obj.get("tcp")
    m = re.search(r"(?:quic|tcp)=(\S+)", text)
    return m.group(1) if m and text.startswith("listening") else None


# ----------------------------------------------------------------------------------------------------------------
# Clients: how to start a seeder and a leecher, how to tell they are ready / done


class Libtorrent:
    name = "libtorrent"

    def __init__(self, python, profile, overrides=(), name="libtorrent"):
        self.python = python
        self.profile = profile
        self.extra = ["--profile", profile] + [x for kv in overrides for x in ("--set", kv)]
        self.name = name
        self.script = os.path.join(HERE, "lt_peer.py")

    def version(self):
        out = subprocess.run(
            [self.python, "-c", "import libtorrent; print(libtorrent.__version__)"], capture_output=True, text=True
        )
        return "%s: libtorrent %s (bench/lt_peer.py %s)" % (self.name, out.stdout.strip(), " ".join(self.extra))

    def seed_argv(self, torrent, data_file):
        argv = [self.python, self.script, "seed", torrent, "--data", os.path.dirname(data_file)]
        return argv + self.extra

    transport = "tcp"

    def fetch_argv(self, torrent, out_dir, peers, listen_port):
        argv = [self.python, self.script, "fetch", torrent, "-o", out_dir, "--listen", str(listen_port)]
        argv += self.extra
        for p in peers:
            argv += ["--peer", p]
        return argv

    def wait_seed_ready(self, proc, timeout):
        return proc.wait_line(lambda it: it[2] is not None and it[2].get("event") == "ready", timeout) is not None


class Qswarm:
    name = "qswarm"

    def __init__(self, path, data_arg):
        self.path = path
        self.data_arg = data_arg

    def version(self):
        out = subprocess.run([self.path, "--version"], capture_output=True, text=True)
        return out.stdout.strip() or "qswarm (version unknown)"

    def unusable(self):
        """None when `seed` and `fetch` with the options of DESIGN.md §1 exist, else the reason to skip."""
        if not (os.path.isfile(self.path) and os.access(self.path, os.X_OK)):
            return "%s is not an executable file (build it: cargo build --release)" % self.path
        for cmd, needed in (
            ("seed", ["--data", "--no-dht", "--listen", "--json"]),
            ("fetch", ["--no-dht", "--peer", "--listen", "--json"]),
        ):
            try:
                r = subprocess.run([self.path, cmd, "--help"], capture_output=True, text=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired) as e:
                return "`%s %s --help` failed: %s" % (self.path, cmd, e)
            if r.returncode != 0:
                return "`%s %s --help` exited %d: the command does not exist yet (%s)" % (
                    self.path,
                    cmd,
                    r.returncode,
                    (r.stderr.strip().splitlines() or [""])[-1],
                )
            missing = [o for o in needed if o not in r.stdout]
            if missing:
                return "`%s %s --help` does not offer %s: the `%s` command of DESIGN.md §1 is not there yet" % (
                    self.path,
                    cmd,
                    ", ".join(missing),
                    cmd,
                )
        return None

    def seed_argv(self, torrent, data_file):
        data = data_file if self.data_arg == "file" else os.path.dirname(data_file)
        return [self.path, "seed", torrent, "--data", data, "--no-dht", "--listen", "127.0.0.1:0", "--json"]

    transport = "udp"

    def fetch_argv(self, torrent, out_dir, peers, listen_port):
        listen = "127.0.0.1:%d" % listen_port
        argv = [self.path, "fetch", torrent, "-o", out_dir, "--no-dht", "--listen", listen, "--json"]
        for p in peers:
            argv += ["--peer", p]
        return argv

    def wait_seed_ready(self, proc, timeout):
        """Ready when an event says every piece is there (have == total, or a seeding/ready/verified event), or,
        failing such an event, when the seeder's CPU has been idle for 0.5 s after its listening line (its
        verification of the data is over)."""

        def says_ready(it):
            o = it[2]
            if o is None:
                return False
            if o.get("event") in ("ready", "seeding", "verified"):
                return True
            return o.get("have") is not None and o.get("have") == o.get("total")

        deadline = time.monotonic() + timeout
        last_cpu, idle_since = None, None
        while time.monotonic() < deadline:
            if proc.wait_line(says_ready, 0.1) is not None:
                return True
            if proc.exit_status is not None:
                return False
            cpu = proc.cpu_now()
            now = time.monotonic()
            if cpu is not None and last_cpu is not None and cpu - last_cpu < 0.02:
                idle_since = idle_since or now
                if now - idle_since >= 0.5:
                    return True
            else:
                idle_since = None
            last_cpu = cpu
        return False


# ----------------------------------------------------------------------------------------------------------------
# One run of one scenario with one client


def sha1_file(path):
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MIB)
            if not b:
                return h.hexdigest()
            h.update(b)


def complete_event(proc):
    return proc.last_json(lambda o: o.get("event") == "complete")


def reserve_ports(n, kind):
    """n distinct free ports on 127.0.0.1 (TCP for libtorrent, UDP for QUIC), released just before use."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def run_once(client, scenario, n_leechers, torrent, data_file, src_sha1, workdir, timeout, start):
    """Returns a dict of measurements, or raises RuntimeError with what went wrong."""
    run_dir = tempfile.mkdtemp(prefix="run-", dir=workdir)
    procs = []
    try:
        seeder = Proc("%s-seeder" % client.name, client.seed_argv(torrent, data_file), run_dir)
        procs.append(seeder)
        first = seeder.wait_line(lambda it: addr_of_listening(it) is not None, 60)
        if first is None:
            raise RuntimeError("seeder printed no listening line: %s" % seeder.stderr_tail())
        seed_addr = addr_of_listening(first)
        if not client.wait_seed_ready(seeder, timeout):
            raise RuntimeError("seeder never became ready: %s" % seeder.stderr_tail())
        seeder_cpu_at_start = seeder.cpu_now() or 0.0

        # Each leecher gets the seeder and every leecher before it as --peer, so every pair is connected once
        # without relying on PEX's one-minute interval. "together" (default): all leechers start at the same
        # moment on ports reserved beforehand, so a --peer may not listen yet when first dialled (lt_peer
        # re-dials; a QUIC client retransmits its Initial). "sequential": each starts once the one before it
        # is listening (no such race, but the start is staggered by each process's start-up time).
        leechers, listen_t = [], []
        ports = reserve_ports(n_leechers, client.transport) if start == "together" else []
        addrs = ["127.0.0.1:%d" % port for port in ports]
        for i in range(n_leechers):
            out_dir = os.path.join(run_dir, "leech%d" % i)
            os.makedirs(out_dir)
            listen = ports[i] if ports else 0
            argv = client.fetch_argv(torrent, out_dir, [seed_addr] + addrs[:i], listen)
            p = Proc("%s-leech%d" % (client.name, i), argv, run_dir)
            procs.append(p)
            leechers.append((p, out_dir))
            if not ports:
                item = p.wait_line(lambda it: addr_of_listening(it) is not None, 60)
                if item is None:
                    raise RuntimeError("leecher %d printed no listening line: %s" % (i, p.stderr_tail()))
                addrs.append(addr_of_listening(item))
        for i, (p, _) in enumerate(leechers):
            item = p.wait_line(lambda it: addr_of_listening(it) is not None, 60)
            if item is None:
                raise RuntimeError("leecher %d printed no listening line: %s" % (i, p.stderr_tail()))
            listen_t.append(item[0])

        run_deadline = time.monotonic() + timeout
        for p, _ in leechers:
            left = max(0.0, run_deadline - time.monotonic())
            done = p.wait_line(lambda it: it[2] is not None and it[2].get("event") == "complete", left)
            if done is None and p.exit_status is None:
                raise RuntimeError("%s not complete within %.0f s: %s" % (p.name, timeout, p.stderr_tail()))
            # A fetch without --seed exits by itself once complete (DESIGN.md §1).
            if not p.wait_exit(30):
                raise RuntimeError("%s still running 30 s after its complete event" % p.name)
        seeder.stop()

        res = {"client": client.name, "scenario": scenario, "leechers": []}
        for i, (p, out_dir) in enumerate(leechers):
            if p.exit_status != 0:
                raise RuntimeError("%s exited %s: %s" % (p.name, p.exit_status, p.stderr_tail()))
            ev = complete_event(p)
            t_done = p.t_exit
            for t, _, obj in p.lines:
                if obj is not None and obj.get("event") == "complete":
                    t_done = t
            path = os.path.join(out_dir, os.path.basename(data_file))
            if not os.path.isfile(path):
                raise RuntimeError("%s: no file at %s" % (p.name, path))
            digest = sha1_file(path)
            if digest != src_sha1:
                raise RuntimeError("%s: SHA-1 %s differs from the source's %s" % (p.name, digest, src_sha1))
            ttfb = None
            if ev is not None and ev.get("t_first_byte") is not None:
                ttfb = ev["t_first_byte"]  # lt_peer: seconds since its session started (~ its listening line)
            else:  # qswarm: the first `progress` event reporting downloaded bytes (as fine as its event cadence)
                for t, _, obj in p.lines:
                    if obj is not None and obj.get("event") == "progress" and (obj.get("downloaded") or 0) > 0:
                        ttfb = t - listen_t[i]
                        break
            res["leechers"].append(
                {
                    "spawn_to_done": t_done - p.t_spawn,
                    "listen_to_done": t_done - listen_t[i],
                    "t_done_abs": t_done,
                    "t_listen_abs": listen_t[i],
                    "spawn_to_exit": p.t_exit - p.t_spawn,
                    "ttfb": ttfb,
                    "cpu": p.cpu_total(),
                    "maxrss_mib": p.maxrss_mib(),
                    "peak_anon_mib": p.peak_anon_kib / 1024.0,
                    "uploaded": None if ev is None else ev.get("uploaded"),
                    "downloaded": None if ev is None else ev.get("downloaded"),
                    "stderr_tail": p.stderr_tail(40),
                }
            )
        # The swarm's time: from the first leecher ready to listen to the last one complete.
        res["all_done"] = max(l["t_done_abs"] for l in res["leechers"]) - min(listen_t)
        sev = seeder.last_json(lambda o: o.get("uploaded") is not None)
        res["seeder"] = {
            "cpu_total": seeder.cpu_total(),
            "cpu_transfer": None if seeder.cpu_total() is None else seeder.cpu_total() - seeder_cpu_at_start,
            "maxrss_mib": seeder.maxrss_mib(),
            "peak_anon_mib": seeder.peak_anon_kib / 1024.0,
            "uploaded": None if sev is None else sev.get("uploaded"),
        }
        return res
    finally:
        for p in procs:
            if p.exit_status is None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait_exit(10)
        shutil.rmtree(run_dir, ignore_errors=True)


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
    ("leech_cpu", "leecher CPU s (user+sys)", "%.2f", "time"),
    ("seed_cpu", "seeder CPU s during the transfer", "%.2f", "time"),
    ("leech_rss", "leecher peak RSS, MiB (ru_maxrss)", "%.1f", "time"),
    ("leech_rss_max", "largest leecher peak RSS, MiB", "%.1f", "time"),
    ("leech_anon", "leecher peak anonymous RSS, MiB", "%.1f", "time"),
    ("seed_rss", "seeder peak RSS, MiB (ru_maxrss)", "%.1f", "time"),
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
    ap.add_argument("--scenarios", default="1,2", help="comma-separated, of 1 and 2 (default 1,2)")
    ap.add_argument("--leechers", type=int, default=4, help="leechers in scenario 2 (default 4)")
    ap.add_argument("--qswarm", metavar="PATH", help="qswarm release binary (target/release/qswarm)")
    ap.add_argument(
        "--qswarm-data",
        choices=["dir", "file"],
        default="dir",
        help="what `qswarm seed --data` gets: the directory holding the file (default) or the file itself",
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
    if any(s not in (1, 2) for s in scenarios):
        ap.error("--scenarios takes 1 and/or 2 (3-5 are other scripts)")
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
            per_client = {c.name: [] for c in clients}
            for run in range(args.runs):
                order = clients if run % 2 == 0 else list(reversed(clients))
                for c in order:
                    log("scenario %d, run %d/%d, %s ..." % (sc, run + 1, args.runs, c.name))
                    try:
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
        }
        md = [
            "## Side-by-side with libtorrent (scenarios 1–2)",
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
