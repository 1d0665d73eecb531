#!/usr/bin/python3
"""Load TORRENT with libtorrent, check the data under SAVE_PATH against it, print what libtorrent found.

Prints `infohash <hex>` then `pieces <valid> <total>`; exits 0 when every piece is valid, 1 when some are not,
3 on a libtorrent error or timeout. The session is loopback-only with DHT, LSD, UPnP and NAT-PMP off.
Usage: lt_check.py TORRENT SAVE_PATH
"""
import sys
import time

import libtorrent as lt

torrent, save_path = sys.argv[1], sys.argv[2]
ti = lt.torrent_info(torrent)
print("infohash", ti.info_hashes().v1, flush=True)
ses = lt.session({
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "listen_interfaces": "127.0.0.1:0",
})
atp = lt.add_torrent_params()
atp.ti = ti
atp.save_path = save_path
h = ses.add_torrent(atp)
checking = (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data)
deadline = time.time() + 60
while True:
    s = h.status()
    if s.errc.value() != 0:
        print("error", s.errc.message())
        sys.exit(3)
    if s.state not in checking and s.has_metadata and time.time() > 0:
        if s.state in (lt.torrent_status.seeding, lt.torrent_status.finished, lt.torrent_status.downloading):
            break
    if time.time() > deadline:
        print("timeout in state", s.state)
        sys.exit(3)
    time.sleep(0.05)
print("pieces", s.num_pieces, ti.num_pieces(), flush=True)
sys.exit(0 if s.num_pieces == ti.num_pieces() else 1)
