"""One measured run of the side-by-side benchmark (bench/swarm_bench.py): a child process measured from outside
(Proc), the two clients (how to start a seeder and a leecher, when each is ready or done), and run_once, which
runs one scenario once with one client and checks every leecher's copy byte for byte (SHA-1)."""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MIB = 1024 * 1024


# ----------------------------------------------------------------------------------------------------------------
# One measured process


class Proc:
    """A child process with its stdout read line by line (each line time-stamped, JSON parsed), its memory sampled
    from /proc (peak RSS as VmHWM, see `maxrss_mib`), and its exit collected with os.wait4 (rusage: CPU of
    exactly this process)."""

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
        self.hwm_kib = 0
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
        # Until the child has exec'd, /proc/PID is a copy of this (python) process: skip those samples. Its
        # command line is exactly argv once the exec is done.
        path = "/proc/%d/status" % self.pid
        want = ("\0".join(self.argv) + "\0").encode()
        execd = False
        while self.t_exit is None:
            try:
                if not execd:
                    with open("/proc/%d/cmdline" % self.pid, "rb") as f:
                        execd = f.read() == want
                    if not execd:
                        time.sleep(0.002)
                        continue
                with open(path) as f:
                    for line in f:
                        if line.startswith("RssAnon:"):
                            self.peak_anon_kib = max(self.peak_anon_kib, int(line.split()[1]))
                        elif line.startswith("VmRSS:"):
                            self.peak_rss_kib = max(self.peak_rss_kib, int(line.split()[1]))
                        elif line.startswith("VmHWM:"):
                            self.hwm_kib = max(self.hwm_kib, int(line.split()[1]))
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
        """Peak RSS of the program: VmHWM from /proc (the exec'd image's high-water mark, sampled every 50 ms
        and monotonic, so only growth in the last 50 ms before exit could be missed). Not wait4's ru_maxrss:
        a child forked from this python carries python's own RSS into ru_maxrss across the exec (a `--version`
        spawned from a python holding 200 MiB reports ~214 MiB). ru_maxrss only if no sample was taken."""
        if self.hwm_kib:
            return self.hwm_kib / 1024.0
        return None if self.rusage is None else self.rusage.ru_maxrss / 1024.0

    def ru_maxrss_mib(self):
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
                    "ru_maxrss_mib": p.ru_maxrss_mib(),
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
            "ru_maxrss_mib": seeder.ru_maxrss_mib(),
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
# Scenario 3: one seeder -> one leecher by infohash, peers found through a `qswarm dht` bootstrap node (qswarm only)


def info_hash_of(qswarm_path, torrent):
    out = subprocess.run([qswarm_path, "info", torrent], capture_output=True, text=True, timeout=60).stdout
    m = re.search(r"infohash:\s*([0-9a-f]{40})", out)
    if not m:
        raise RuntimeError("`qswarm info %s` printed no infohash" % torrent)
    return m.group(1)


def first_block_on_disk(path, deadline, stop):
    """Seconds (monotonic) when `path` first has a data block allocated (the first piece written; the leecher's
    file is sparse until then), polled every 5 ms; None if never before `deadline` or `stop` is set."""
    while time.monotonic() < deadline and not stop.is_set():
        try:
            if os.stat(path).st_blocks > 0:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.005)
    return None


def run_dht_once(q, torrent, data_file, src_sha1, workdir, timeout):
    """Scenario 3 with qswarm: a `qswarm dht` node (the network's first node), a seeder that bootstraps from it
    and announces, then `qswarm fetch <infohash>` bootstrapping from it (no --peer: the seeder must be found in
    the DHT and the metadata fetched over BEP 9). Time to first byte: from the fetch's spawn to its output file's
    first allocated block (polled every 5 ms), and to its first `progress` event with downloaded bytes (that
    event comes once a second, so it is coarse)."""
    run_dir = tempfile.mkdtemp(prefix="run-", dir=workdir)
    procs = []
    stop = threading.Event()
    try:
        ih = info_hash_of(q.path, torrent)
        dht = Proc("qswarm-dht", [q.path, "dht", "--dht-listen", "127.0.0.1:0", "--no-bootstrap", "--json"], run_dir)
        procs.append(dht)
        first = dht.wait_line(lambda it: it[2] is not None and it[2].get("dht"), 30)
        if first is None:
            raise RuntimeError("dht node printed no listening line: %s" % dht.stderr_tail())
        boot = first[2]["dht"]
        data = data_file if q.data_arg == "file" else os.path.dirname(data_file)
        local = ["--listen", "127.0.0.1:0", "--dht-listen", "127.0.0.1:0", "--bootstrap", boot, "--json"]
        seeder = Proc("qswarm-seeder", [q.path, "seed", torrent, "--data", data] + local, run_dir)
        procs.append(seeder)
        if seeder.wait_line(lambda it: addr_of_listening(it) is not None, 60) is None:
            raise RuntimeError("seeder printed no listening line: %s" % seeder.stderr_tail())
        if not q.wait_seed_ready(seeder, timeout):
            raise RuntimeError("seeder never became ready: %s" % seeder.stderr_tail())
        # The seeder announces once its DHT node has bootstrapped (a round trip on loopback); give it a second.
        time.sleep(1.0)
        seeder_cpu_at_start = seeder.cpu_now() or 0.0
        out_dir = os.path.join(run_dir, "leech0")
        os.makedirs(out_dir)
        path = os.path.join(out_dir, os.path.basename(data_file))
        p = Proc("qswarm-leech0", [q.path, "fetch", ih, "-o", out_dir] + local, run_dir)
        procs.append(p)
        deadline = time.monotonic() + timeout
        found = {}
        poller = threading.Thread(target=lambda: found.update(t=first_block_on_disk(path, deadline, stop)))
        poller.start()
        done = p.wait_line(lambda it: it[2] is not None and it[2].get("event") == "complete", timeout)
        if done is None and p.exit_status is None:
            raise RuntimeError("%s not complete within %.0f s: %s" % (p.name, timeout, p.stderr_tail()))
        if not p.wait_exit(30):
            raise RuntimeError("%s still running 30 s after its complete event" % p.name)
        stop.set()
        poller.join()
        seeder.stop()
        dht.stop()
        if p.exit_status != 0:
            raise RuntimeError("%s exited %s: %s" % (p.name, p.exit_status, p.stderr_tail()))
        digest = sha1_file(path)
        if digest != src_sha1:
            raise RuntimeError("%s: SHA-1 %s differs from the source's %s" % (p.name, digest, src_sha1))
        t_done = done[0] if done is not None else p.t_exit
        t_listen = next((t for t, _, o in p.lines if o is not None and o.get("event") == "listening"), p.t_spawn)
        t_progress = next(
            (
                t
                for t, _, o in p.lines
                if o is not None and o.get("event") == "progress" and (o.get("downloaded") or 0) > 0
            ),
            None,
        )
        t_meta = next((t for t, _, o in p.lines if o is not None and o.get("event") == "metadata"), None)
        ev = complete_event(p)
        leech = {
            "spawn_to_done": t_done - p.t_spawn,
            "listen_to_done": t_done - t_listen,
            "t_done_abs": t_done,
            "t_listen_abs": t_listen,
            "spawn_to_exit": p.t_exit - p.t_spawn,
            "ttfb": None if found.get("t") is None else found["t"] - p.t_spawn,
            "ttfb_progress": None if t_progress is None else t_progress - p.t_spawn,
            "t_metadata": None if t_meta is None else t_meta - p.t_spawn,
            "cpu": p.cpu_total(),
            "maxrss_mib": p.maxrss_mib(),
            "ru_maxrss_mib": p.ru_maxrss_mib(),
            "peak_anon_mib": p.peak_anon_kib / 1024.0,
            "uploaded": None if ev is None else ev.get("uploaded"),
            "downloaded": None if ev is None else ev.get("downloaded"),
            "stderr_tail": p.stderr_tail(40),
        }
        sev = seeder.last_json(lambda o: o.get("uploaded") is not None)
        return {
            "client": q.name,
            "scenario": 3,
            "leechers": [leech],
            # Scenario 3's whole run: from starting `fetch` (nothing known but the infohash) to complete.
            "all_done": leech["spawn_to_done"],
            "seeder": {
                "cpu_total": seeder.cpu_total(),
                "cpu_transfer": None if seeder.cpu_total() is None else seeder.cpu_total() - seeder_cpu_at_start,
                "maxrss_mib": seeder.maxrss_mib(),
                "ru_maxrss_mib": seeder.ru_maxrss_mib(),
                "peak_anon_mib": seeder.peak_anon_kib / 1024.0,
                "uploaded": None if sev is None else sev.get("uploaded"),
            },
            "dht_rss_mib": dht.maxrss_mib(),
        }
    finally:
        stop.set()
        for p in procs:
            if p.exit_status is None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait_exit(10)
        shutil.rmtree(run_dir, ignore_errors=True)
