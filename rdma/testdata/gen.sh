#!/bin/sh
# Regenerates the recorded sysfs trees used by sysfs_test.go. The layout and file contents
# follow what the kernel exposes under /sys (drivers/infiniband/core/sysfs.c; rxe counter
# names from drivers/infiniband/sw/rxe/rxe_hw_counters.c, Linux 6.1): class/infiniband/DEV is
# a symlink into devices/, ports/N/state reads "4: ACTIVE", gids/N prints 8 groups of 4 hex
# digits, unused GID slots read as all zeros and have no readable type/ndev.
set -eu
cd "$(dirname "$0")"

ZERO=0000:0000:0000:0000:0000:0000:0000:0000
RXE_COUNTERS="sent_pkts rcvd_pkts duplicate_request out_of_seq_request rcvd_rnr_err send_rnr_err rcvd_seq_err ack_deferred retry_exceeded_err retry_rnr_exceeded_err completer_retry_err send_err link_downed rdma_sends rdma_recvs"

# dev TREE DEV PARENTDIR STATE PHYS LINKLAYER
dev() {
	d=$1/devices/$3/infiniband/$2
	mkdir -p $d/ports/1/gids $d/ports/1/gid_attrs/types $d/ports/1/gid_attrs/ndevs $d/ports/1/hw_counters $1/class/infiniband
	ln -sfn ../../devices/$3/infiniband/$2 $1/class/infiniband/$2
	echo "$4" > $d/ports/1/state
	echo "$5" > $d/ports/1/phys_state
	echo "$6" > $d/ports/1/link_layer
	echo "1: CA" > $d/node_type
	for i in $(seq 0 15); do echo $ZERO > $d/ports/1/gids/$i; done
}
# gid TREE DEV PARENTDIR IDX RAW TYPE NDEV
gid() {
	d=$1/devices/$3/infiniband/$2/ports/1
	echo "$5" > $d/gids/$4
	echo "$6" > $d/gid_attrs/types/$4
	echo "$7" > $d/gid_attrs/ndevs/$4
}
# hw TREE DEV PARENTDIR name=value...
hw() {
	t=$1 dv=$2 p=$3; shift 3
	d=$t/devices/$p/infiniband/$dv/ports/1/hw_counters
	echo 10 > $d/lifespan
	for c in "$@"; do echo "${c#*=}" > $d/"${c%%=*}"; done
}
netdev() { mkdir -p $1/class/net/$2; echo $3 > $1/class/net/$2/mtu; }
rxecounters() { # all rxe counters zero, then overrides
	t=$1 dv=$2; shift 2
	args=""
	for c in $RXE_COUNTERS; do args="$args $c=0"; done
	hw $t $dv virtual $args "$@"
}

# rxe-pair: rxe0 on vA (10.10.0.1/24), rxe1 on vB (10.10.0.2/24), both ACTIVE, after a
# 1000-message RC SEND run (numbers as measured in the VM).
T=rxe-pair; rm -rf $T; mkdir -p $T/module/rdma_rxe; echo live > $T/module/rdma_rxe/initstate
dev $T rxe0 virtual "4: ACTIVE" "5: LinkUp" Ethernet
gid $T rxe0 virtual 0 fe80:0000:0000:0000:a83c:b2ff:fe10:0001 "RoCE v2" vA
gid $T rxe0 virtual 1 0000:0000:0000:0000:0000:ffff:0a0a:0001 "RoCE v2" vA
rxecounters $T rxe0 sent_pkts=3001 rcvd_pkts=3001 rdma_sends=1000 ack_deferred=12
dev $T rxe1 virtual "4: ACTIVE" "5: LinkUp" Ethernet
gid $T rxe1 virtual 0 fe80:0000:0000:0000:a83c:b2ff:fe10:0002 "RoCE v2" vB
gid $T rxe1 virtual 1 0000:0000:0000:0000:0000:ffff:0a0a:0002 "RoCE v2" vB
rxecounters $T rxe1 sent_pkts=3001 rcvd_pkts=3001 rdma_recvs=1000 duplicate_request=3
netdev $T vA 1500; netdev $T vB 1500

# rxe-down: rxe0 on a netdev that is down and has no IPv4 address: only the link-local GID.
T=rxe-down; rm -rf $T; mkdir -p $T/module/rdma_rxe; echo live > $T/module/rdma_rxe/initstate
dev $T rxe0 virtual "1: DOWN" "3: Disabled" Ethernet
gid $T rxe0 virtual 0 fe80:0000:0000:0000:a83c:b2ff:fe10:0003 "RoCE v2" vC
rxecounters $T rxe0
netdev $T vC 9000

# mlx5-roce: a hardware RoCE NIC (both GID types, an IPv4 and an IPv6 address, PMA counters
# in counters/, some of them "N/A (no PMA)"); no rdma_rxe loaded.
T=mlx5-roce; rm -rf $T; P=pci0000:00/0000:00:02.0/0000:01:00.0
dev $T mlx5_0 $P "4: ACTIVE" "5: LinkUp" Ethernet
gid $T mlx5_0 $P 0 fe80:0000:0000:0000:0e42:a1ff:fe7c:1a2b "IB/RoCE v1" enp1s0f0np0
gid $T mlx5_0 $P 1 fe80:0000:0000:0000:0e42:a1ff:fe7c:1a2b "RoCE v2" enp1s0f0np0
gid $T mlx5_0 $P 2 0000:0000:0000:0000:0000:ffff:c0a8:010a "IB/RoCE v1" enp1s0f0np0
gid $T mlx5_0 $P 3 0000:0000:0000:0000:0000:ffff:c0a8:010a "RoCE v2" enp1s0f0np0
gid $T mlx5_0 $P 4 2001:0db8:0000:0000:0000:0000:0000:0010 "IB/RoCE v1" enp1s0f0np0
gid $T mlx5_0 $P 5 2001:0db8:0000:0000:0000:0000:0000:0010 "RoCE v2" enp1s0f0np0
gid $T mlx5_0 $P 6 0000:0000:0000:0000:0000:ffff:c0a8:020a "IB/RoCE v1" enp1s0f0np0
hw $T mlx5_0 $P out_of_buffer=0 out_of_sequence=2 packet_seq_err=1 rx_write_requests=0 np_cnp_sent=5
d=$T/devices/$P/infiniband/mlx5_0/ports/1/counters; mkdir -p $d
echo 123456 > $d/port_xmit_data; echo 654321 > $d/port_rcv_data; echo 0 > $d/link_downed
echo "N/A (no PMA)" > $d/VL15_dropped
netdev $T enp1s0f0np0 1500
