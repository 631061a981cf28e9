#!/usr/bin/env bash
# contrib/rgw/cluster.sh — a throwaway one-node Ceph cluster with radosgw on 127.0.0.1, for testing
# rehydrate against a real S3 server that checks SigV4 signatures (tests/integration/s3-rgw.sh).
#
#   cluster.sh start DIR RGW_PORT ACCESS_KEY SECRET_KEY   one monitor, one OSD that keeps its objects in
#                                                        memory (memstore), radosgw; a user with that key
#   cluster.sh stop-rgw DIR | start-rgw DIR              stops or starts radosgw alone (a server restart)
#   cluster.sh stop DIR                                  stops everything; DIR may then be removed
#
# Everything lives in DIR (configuration, keyring, logs, sockets); nothing is installed or left running
# elsewhere. Needs Debian's ceph-mon, ceph-osd, radosgw and ceph-common (contrib/deps.sh installs them).
# Ports: the monitor takes two free ones; radosgw serves RGW_PORT and answers virtual-host requests for
# BUCKET.s3.localhost.
set -euo pipefail

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wait_for SECONDS COMMAND...: until COMMAND succeeds.
wait_for() {
    local n=$(( $1 * 10 )); shift
    for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    return 1
}

start_rgw() {
    local d=$1
    radosgw -c "$d/ceph.conf" -n client.rgw
    local port; port=$(cat "$d/rgw-port")
    wait_for 60 curl -sf -o /dev/null "http://127.0.0.1:$port/" ||
        { echo "radosgw did not start; see $d/log/client.rgw.log" >&2; return 1; }
}

# stop_daemons DIR NAME...: SIGTERM to each at once, SIGKILL to any left after 10 s.
stop_daemons() {
    local d=$1 pids="" name pid; shift
    for name; do
        [ -s "$d/run/$name.pid" ] || continue
        pid=$(cat "$d/run/$name.pid")
        kill "$pid" 2>/dev/null && pids="$pids $pid"
        rm -f "$d/run/$name.pid"
    done
    for _ in $(seq 100); do
        local alive=""
        for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive="$alive $pid"; done
        pids=$alive
        [ -z "$pids" ] && return 0
        sleep 0.1
    done
    for pid in $pids; do kill -9 "$pid" 2>/dev/null || true; done
}

start() {
    local d=$1 rgw_port=$2 key=$3 secret=$4
    mkdir -p "$d"/{mon,osd/ceph-0,run,log,rgw}
    d=$(cd "$d" && pwd)
    local fsid v1 v2 osd_uuid
    fsid=$(cat /proc/sys/kernel/random/uuid)
    osd_uuid=$(cat /proc/sys/kernel/random/uuid)
    v1=$(free_port)
    v2=$(free_port)
    echo "$rgw_port" >"$d/rgw-port"
    cat >"$d/ceph.conf" <<CONF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$v2,v1:127.0.0.1:$v1]
keyring = $d/keyring
auth allow insecure global id reclaim = false
ms bind ipv6 = false
run dir = $d/run
admin socket = $d/run/\$name.asok
pid file = $d/run/\$name.pid
log file = $d/log/\$name.log
mon cluster log file = $d/log/cluster.log
mon data = $d/mon/\$cluster-\$id
osd data = $d/osd/\$cluster-\$id
mon data avail warn = 1
mon data avail crit = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = 1073741824
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw data = $d/rgw
rgw dns name = s3.localhost
CONF
    local c=$d/ceph.conf k=$d/keyring
    ceph-authtool --create-keyring "$k" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-authtool "$k" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
    ceph-authtool "$k" --gen-key -n osd.0 --cap mon 'allow profile osd' --cap osd 'allow *' \
        --cap mgr 'allow profile osd' >/dev/null
    ceph-authtool "$k" --gen-key -n client.rgw --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw' >/dev/null
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$v2,v1:127.0.0.1:$v1]" "$d/monmap" >/dev/null
    ceph-mon -c "$c" --mkfs -i a --monmap "$d/monmap" --keyring "$k" 2>>"$d/log/setup.log"
    ceph-mon -c "$c" -i a
    ceph -c "$c" --connect-timeout 30 osd new "$osd_uuid" >/dev/null
    ceph-osd -c "$c" -i 0 --mkfs --osd-uuid "$osd_uuid" 2>>"$d/log/setup.log"
    ceph-osd -c "$c" -i 0 2>>"$d/log/setup.log"
    wait_for 60 bash -c "ceph -c '$c' --connect-timeout 5 osd stat | grep -q '1 up'" ||
        { echo "the OSD did not come up; see $d/log" >&2; return 1; }
    start_rgw "$d"
    radosgw-admin -c "$c" user create --uid=rehydrate --display-name=rehydrate \
        --access-key="$key" --secret-key="$secret" >/dev/null
}

stop() {
    [ -d "$1/run" ] || return 0
    stop_daemons "$1" client.rgw osd.0 mon.a
}

cmd=${1:-}
case "$cmd" in
start) [ $# -eq 5 ] || { echo "usage: $0 start DIR RGW_PORT ACCESS_KEY SECRET_KEY" >&2; exit 2; }; start "$2" "$3" "$4" "$5" ;;
stop) stop "$2" ;;
stop-rgw) stop_daemons "$2" client.rgw ;;
start-rgw) start_rgw "$2" ;;
*) echo "usage: $0 start DIR RGW_PORT ACCESS_KEY SECRET_KEY | stop DIR | stop-rgw DIR | start-rgw DIR" >&2; exit 2 ;;
esac
