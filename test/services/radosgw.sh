#!/bin/bash
# Start a throwaway single-node Ceph cluster (1 mon, 1 memstore OSD, radosgw) on 127.0.0.1, for tests.
# Usage: radosgw.sh STATE_DIR MON_PORT RGW_PORT ACCESS_KEY SECRET_KEY
# Prints "ready" when S3 answers on http://127.0.0.1:RGW_PORT. Daemons' pids are in STATE_DIR/run/*.pid;
# stop them with `kill $(cat STATE_DIR/run/*.pid)` and delete STATE_DIR.
# No cephx (loopback only): clients need auth_client_required=none and ms_mon_client_mode=crc, else rgw
# fails with -13 and hangs (FACTS.md).
set -euo pipefail
D=$1; MP=$2; RP=$3; AK=$4; SK=$5
mkdir -p "$D"/{run,log,mon,osd0,rgw}
FSID=$(cat /proc/sys/kernel/random/uuid)
cat > "$D/ceph.conf" <<CONF
[global]
fsid = $FSID
mon_host = [v2:127.0.0.1:$MP]
mon_initial_members = a
public_addr = 127.0.0.1
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_mon_client_mode = crc
run_dir = $D/run
admin_socket = $D/run/\$name.asok
log_file = $D/log/\$name.log
pid_file = $D/run/\$name.pid
keyring = $D/keyring
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
osd_objectstore = memstore
memstore_device_bytes = 1073741824
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
mon_max_pg_per_osd = 1000
mon_data_avail_warn = 1
[mon.a]
mon_data = $D/mon
[osd.0]
osd_data = $D/osd0
[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:$RP
rgw_data = $D/rgw
rgw_dns_name = localhost
CONF
C="-c $D/ceph.conf"
ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
monmaptool --create --addv a "[v2:127.0.0.1:$MP]" --fsid "$FSID" "$D/monmap" >/dev/null
ceph-mon $C --mkfs -i a --monmap "$D/monmap" --keyring "$D/keyring"
ceph-mon $C -i a
OSDU=$(cat /proc/sys/kernel/random/uuid)
ceph $C --connect-timeout 20 osd new "$OSDU" >/dev/null
ceph-osd $C -i 0 --mkfs --osd-uuid "$OSDU" 2>"$D/log/osd-mkfs.log" >/dev/null
ceph-osd $C -i 0 2>>"$D/log/osd-start.log"
radosgw $C -n client.rgw.a
radosgw-admin $C user create --uid=rho-test --display-name=rho-test --access-key="$AK" --secret-key="$SK" >/dev/null
for _ in $(seq 1 300); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$RP/" || true)" = 200 ]; then echo ready; exit 0; fi
  sleep 0.1
done
echo "radosgw did not answer on 127.0.0.1:$RP within 30 s; logs in $D/log" >&2
exit 1
