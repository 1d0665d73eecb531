#!/usr/bin/python3
"""One libtorrent peer (seeder or leecher) for one torrent on 127.0.0.1 over TCP: the reference side of the
side-by-side benchmark (bench/swarm_bench.py, bench/README-libtorrent.md).

Run it with Debian's /usr/bin/python3 (python3-libtorrent 2.0.8 lives there, not in a pyenv python).

  lt_peer.py seed  FILE.torrent --data DIR [--listen PORT] [--peer 127.0.0.1:PORT ...]
  lt_peer.py fetch FILE.torrent -o DIR    [--listen PORT] [--peer 127.0.0.1:PORT ...]

DHT, LSD, UPnP, NAT-PMP and uTP are off; peers are connected directly with handle.connect_peer; no rate limits.
The `tuned` settings (the default) are libtorrent's defaults plus the knobs a demanding user would turn for
throughput, chosen by measurement (see settings()), so the reference is libtorrent tuned, not handicapped.

Output on stdout, one line each, flushed:
  listening tcp=127.0.0.1:PORT                       first, as soon as the session is bound
  {"event":"ready", ...}                             seeder: the data is checked and it is seeding
  {"event":"complete", ...}                          leecher: every piece verified (then it exits 0)
  {"event":"stopped", ...}                           seeder: after SIGINT/SIGTERM (then it exits 0)
JSON fields: t_first_byte / t_done (seconds since the session started, None when not reached), downloaded and
uploaded (payload bytes of this run), peers (connections when it finished).
"""

import argparse
import json
import os
import signal
import sys
import time

import libtorrent as lt

STOP = False


def on_signal(_signum, _frame):
    global STOP
    STOP = True


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def settings(port, sockbuf, profile):
    """The settings pack for a profile. Every profile has what the benchmark needs: loopback listen, TCP only
    (uTP off), DHT/LSD/UPnP/NAT-PMP off, several connections from 127.0.0.1, no rate limits."""
    mandatory = {
        "listen_interfaces": "127.0.0.1:%d" % port,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_tcp": True,
        "enable_outgoing_tcp": True,
        "allow_multiple_connections_per_ip": True,
        "upload_rate_limit": 0,
        "download_rate_limit": 0,
        "alert_mask": lt.alert.category_t.status_notification
        | lt.alert.category_t.error_notification
        | lt.alert.category_t.storage_notification,
    }
    if profile == "default":
        s = lt.default_settings()
    elif profile == "tuned":
        # Defaults plus the knobs that matter for one fast loopback swarm on 2 cores. libtorrent 2.0 does disk
        # I/O through memory-mapped files (cache_size is gone in 2.0: the page cache is the cache), so what is
        # left to tune is hashing, the disk queue, the send buffer and the tick. Measured against `hps` below
        # (libtorrent's own high_performance_seed() pack with bigger queues and buffers): equal in scenario 1,
        # faster in scenario 2 (8.9 s vs 10.8 s median, 4 alternating runs), so this is the reference set.
        s = lt.default_settings()
        s.update(
            {
                "hashing_threads": 2,
                "send_buffer_watermark": 3 * 1024 * 1024,
                "max_queued_disk_bytes": 7 * 1024 * 1024,
                # Connection attempts run on the session tick (500 ms by default): a shorter tick lets the
                # first connection go out sooner.
                "tick_interval": 100,
                # high_performance_seed()'s value: with the default 60 s, one leecher in about ten sat idle
                # for a minute at the end of a scenario-2 run, waiting on requests that were never answered.
                "request_timeout": 10,
            }
        )
    else:  # "hps": high_performance_seed() with deeper queues and buffers (the first tuning tried)
        s = lt.high_performance_seed()
        s.update(
            {
                "hashing_threads": 2,
                "aio_threads": 4,
                "max_queued_disk_bytes": 16 * 1024 * 1024,
                "send_buffer_watermark": 8 * 1024 * 1024,
                "send_buffer_low_watermark": 1024 * 1024,
                "max_out_request_queue": 1500,
                "max_allowed_in_request_queue": 2000,
                "unchoke_slots_limit": -1,
                "peer_connect_timeout": 5,
                "min_reconnect_time": 1,
                "max_failcount": 10,
                "close_redundant_connections": False,
                "tick_interval": 100,
            }
        )
    s.update(mandatory)
    # 0 leaves the socket buffers to Linux's autotuning (a fixed 4 MiB measured no different on loopback).
    s["send_socket_buffer_size"] = sockbuf
    s["recv_socket_buffer_size"] = sockbuf
    return s


def parse_peer(text):
    host, _, port = text.rpartition(":")
    return (host or "127.0.0.1", int(port))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["seed", "fetch"])
    ap.add_argument("torrent")
    ap.add_argument("--data", help="seed: the directory holding the torrent's data (its save path)")
    ap.add_argument("-o", "--out", help="fetch: the directory to download into")
    ap.add_argument("--listen", type=int, default=0, help="TCP port on 127.0.0.1 (0 = any)")
    ap.add_argument("--peer", action="append", default=[], help="127.0.0.1:PORT to connect to, repeatable")
    ap.add_argument("--sockbuf", type=int, default=0, help="SO_SNDBUF/SO_RCVBUF in bytes (0 = OS autotuning)")
    ap.add_argument(
        "--profile",
        choices=["tuned", "default", "hps"],
        default="tuned",
        help="tuned: defaults plus a few throughput knobs (default); default: libtorrent's defaults; "
        "hps: high_performance_seed() with deep queues",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one libtorrent setting (int, true/false or string), repeatable",
    )
    ap.add_argument("--timeout", type=float, default=600.0, help="fetch: give up (exit 1) after SECS")
    args = ap.parse_args()
    save_path = args.data if args.mode == "seed" else args.out
    if not save_path:
        ap.error("seed needs --data DIR, fetch needs -o DIR")
    os.makedirs(save_path, exist_ok=True)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    t0 = time.monotonic()
    pack = settings(args.listen, args.sockbuf, args.profile)
    for kv in args.set:
        key, _, value = kv.partition("=")
        if key not in pack:
            ap.error("--set %s: libtorrent has no setting %r" % (kv, key))
        if isinstance(pack[key], bool):
            pack[key] = value.lower() in ("1", "true", "yes", "on")
        elif isinstance(pack[key], int):
            pack[key] = int(value)
        else:
            pack[key] = value
    ses = lt.session(pack)
    port = ses.listen_port()
    sys.stdout.write("listening tcp=127.0.0.1:%d\n" % port)
    sys.stdout.flush()

    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(args.torrent)
    atp.save_path = save_path
    # Not auto-managed: an auto-managed torrent waits for the session's queue pass (about once a second) before
    # it may connect, which delayed the first byte by up to a second. Started at once instead.
    atp.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    wanted = [parse_peer(p) for p in args.peer]
    # Peers given in the add parameters are in the peer list when the torrent starts, and libtorrent's
    # "connect boost" dials them at once; connect_peer after the start waits for the next connection round
    # (measured: up to a second of lost time to the first byte).
    atp.peers = wanted
    h = ses.add_torrent(atp)
    for p in wanted:
        h.connect_peer(p)
    next_retry = 0.0

    t_first = None
    t_done = None
    last_down, last_change, last_dump = -1, 0.0, 0.0
    ready_sent = False
    error = None
    while not STOP:
        ses.wait_for_alert(10)
        for a in ses.pop_alerts():
            if isinstance(a, (lt.torrent_error_alert, lt.file_error_alert)):
                error = a.message()
        st = h.status()
        now = time.monotonic() - t0
        if t_first is None and st.total_payload_download > 0:
            t_first = now
        if st.total_payload_download != last_down:
            last_down, last_change = st.total_payload_download, now
        elif args.mode == "fetch" and now - last_change > 5 and now - last_dump > 5:
            # Stalled for 5 s: say why on stderr (each peer's state), for the record of a slow run.
            last_dump = now
            sys.stderr.write("%.1f stalled at %d pieces, %d peers\n" % (now, st.num_pieces, st.num_peers))
            for pi in h.get_peer_info():
                sys.stderr.write(
                    "  %s:%d flags=%#x source=%#x down_q=%d req_q=%d up_q=%d progress=%.3f\n"
                    % (pi.ip[0], pi.ip[1], pi.flags, pi.source, pi.download_queue_length,
                       pi.requests_in_buffer if hasattr(pi, "requests_in_buffer") else -1,
                       pi.upload_queue_length, pi.progress)
                )
            sys.stderr.flush()
        if error is not None:
            break
        if wanted and now >= next_retry:
            # A --peer started at the same moment as us may not have been listening yet (connection refused):
            # ask again every 100 ms until an outgoing connection to each one is up (first 30 s).
            connected = {(pi.ip[0], pi.ip[1]) for pi in h.get_peer_info()}
            wanted = [p for p in wanted if p not in connected] if now < 30 else []
            for p in wanted:
                h.connect_peer(p)
            if wanted and st.num_peers == 0 and st.state == lt.torrent_status.downloading:
                # libtorrent dials peers added after the torrent started only on its next connection round,
                # up to a second later (measured: first byte at 1.1-1.2 s instead of 0.2 s for one leecher in
                # two). Pausing and resuming a torrent with no connections re-runs its start-up, whose
                # "connect boost" dials the peer list at once.
                h.pause()
                h.resume()
            next_retry = now + 0.1
        if st.is_seeding:
            if args.mode == "fetch":
                t_done = now
                break
            if not ready_sent:
                ready_sent = True
                emit({"event": "ready", "t": round(now, 4), "pieces": st.num_pieces})
        elif args.mode == "fetch" and now > args.timeout:
            error = "timeout after %.0f s (have %d pieces)" % (now, st.num_pieces)
            break

    st = h.status()
    result = {
        "event": "complete" if args.mode == "fetch" and t_done is not None else "stopped",
        "t_first_byte": None if t_first is None else round(t_first, 4),
        "t_done": None if t_done is None else round(t_done, 4),
        "downloaded": st.total_payload_download,
        "uploaded": st.total_payload_upload,
        "peers": st.num_peers,
        "pieces": st.num_pieces,
    }
    if error is not None:
        result["event"] = "error"
        result["message"] = error
    emit(result)
    # Drop the session without waiting for its orderly shutdown of every connection: the measurement is over.
    ses.pause()
    del h
    del ses
    return 1 if error is not None else 0


if __name__ == "__main__":
    sys.exit(main())
