# A libtorrent DHT node for tests/dht_libtorrent.rs: bootstraps from argv[1] only, announces argv[2] (as a
# torrent of its own, saved under argv[5]: see below), looks up argv[3] every 2 s and prints "FOUND ip:port" per
# peer, for argv[4] seconds. Everything stays on 127.0.0.1; no default bootstrap nodes, no LSD/UPnP/NAT-PMP.
import sys, time, libtorrent as lt
boot, ann_ih, want_ih, secs, save_dir = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
s = lt.session({
    'listen_interfaces': '127.0.0.1:0',
    'enable_dht': True, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
    'dht_bootstrap_nodes': boot,
    'dht_restrict_routing_ips': False, 'dht_restrict_search_ips': False,
    'dht_block_ratelimit': 100000, 'dht_ignore_dark_internet': False,
    'alert_mask': lt.alert.category_t.dht_notification | lt.alert.category_t.dht_operation_notification | lt.alert.category_t.status_notification | lt.alert.category_t.error_notification,
})
print('LISTEN', s.listen_port(), flush=True)
want = lt.sha1_hash(bytes.fromhex(want_ih))
# This binding's session.dht_announce() cannot be called (its flags type is not exposed), so announce the way
# a client does: add the torrent (magnet, no metadata) and force DHT announces of our listen port.
params = lt.parse_magnet_uri('magnet:?xt=urn:btih:' + ann_ih)
params.save_path = save_dir
h = s.add_torrent(params)
end = time.time() + secs; nxt = 0; found = set()
while time.time() < end:
    if time.time() >= nxt:
        h.force_dht_announce()
        s.dht_get_peers(want)
        nxt = time.time() + 2
    s.wait_for_alert(200)
    for a in s.pop_alerts():
        if isinstance(a, lt.dht_get_peers_reply_alert):
            if str(a.info_hash) == want_ih:
                for p in a.peers():
                    key = '%s:%d' % (p[0], p[1])
                    if key not in found:
                        found.add(key); print('FOUND', key, flush=True)
        elif isinstance(a, (lt.dht_bootstrap_alert,)):
            print('BOOTSTRAPPED', flush=True)
