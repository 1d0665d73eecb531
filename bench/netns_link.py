#!/usr/bin/env python3
"""A userspace lossy, slow "switch" for bench/netns.sh where the kernel has no sch_netem: it creates a TUN
device `tun0` in each given network namespace (addresses 10.99.0.0/24 only, nothing routed elsewhere), and
forwards IPv4 packets between them with a one-way DELAY, random LOSS and a per-host egress RATE cap (token
bucket: a packet departs when its host's link is free, arrives DELAY later). Prints `ready` once every tun0 is
up, then runs until killed (SIGTERM/SIGKILL) and prints its counters on SIGTERM.

    netns_link.py --delay-ms 50 --loss 0.02 --rate-bps 20000000 NS:10.99.0.10 NS2:10.99.0.11 ...
"""
import argparse, ctypes, fcntl, heapq, os, random, select, signal, struct, subprocess, sys, time

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def setns(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns " + path)
    finally:
        os.close(fd)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay-ms", type=float, default=50)
    ap.add_argument("--loss", type=float, default=0.02)
    ap.add_argument("--rate-bps", type=float, default=20e6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("hosts", nargs="+", help="NAMESPACE:IPV4")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    own = "/proc/self/ns/net"
    home = os.open(own, os.O_RDONLY)
    fds, by_ip = [], {}
    for h in a.hosts:
        ns, ip = h.split(":")
        setns("/var/run/netns/" + ns)
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"tun0", IFF_TUN | IFF_NO_PI))
        if libc.setns(home, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns home")
        subprocess.run(["ip", "-n", ns, "addr", "add", ip + "/24", "dev", "tun0"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "tun0", "up", "mtu", "1500"], check=True)
        os.set_blocking(fd, False)
        by_ip[bytes(map(int, ip.split(".")))] = len(fds)
        fds.append(fd)
    print("ready", flush=True)
    stats = {"forwarded": 0, "lost": 0, "bytes": 0}

    def report(*_):
        print("link stats: %(forwarded)d packets forwarded (%(bytes)d bytes), %(lost)d dropped" % stats, flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, report)
    delay = a.delay_ms / 1000.0
    free_at = [0.0] * len(fds)
    queue, seq = [], 0
    poll = select.poll()
    for fd in fds:
        poll.register(fd, select.POLLIN)
    index = {fd: i for i, fd in enumerate(fds)}
    while True:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, dst, pkt = heapq.heappop(queue)
            try:
                os.write(fds[dst], pkt)
            except OSError:
                pass
        wait = -1 if not queue else max(0, int((queue[0][0] - now) * 1000))
        for fd, _ in poll.poll(wait):
            src = index[fd]
            for _ in range(64):
                try:
                    pkt = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if len(pkt) < 20 or pkt[0] >> 4 != 4:
                    continue
                dst = by_ip.get(pkt[16:20])
                if dst is None:
                    continue  # only our own hosts: nothing leaves the namespaces
                now = time.monotonic()
                depart = max(now, free_at[src]) + len(pkt) * 8 / a.rate_bps
                if depart - now > 0.5:
                    stats["lost"] += 1  # the link's queue is full (500 ms of backlog): tail drop
                    continue
                free_at[src] = depart
                if rng.random() < a.loss:
                    stats["lost"] += 1
                    continue
                stats["forwarded"] += 1
                stats["bytes"] += len(pkt)
                seq += 1
                heapq.heappush(queue, (depart + delay, seq, dst, pkt))


if __name__ == "__main__":
    main()
