#!/bin/sh
# Debian's openssh-server, for the test hosts' SSH servers (Horovod starts a job's ranks on other hosts over SSH;
# scripts/cluster/cluster.py starts one sshd per worker host with its own config and keys). Installed without
# starting the machine's own sshd: a policy-rc.d refusing service starts is put in place for the install when the
# machine has none. Nothing to do when sshd is there; without root, says so (the cluster tests skip without root).
set -eu
if [ -x /usr/sbin/sshd ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "openssh-server is not installed and only root installs it: the test hosts need root anyway" >&2
	exit 0
fi
policy=/usr/sbin/policy-rc.d
made_policy=
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' > "$policy"
	chmod 755 "$policy"
	made_policy=1
fi
status=0
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssh-server > /tmp/install-sshd.log 2>&1 ||
	{ apt-get update > /dev/null 2>&1 &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssh-server \
			> /tmp/install-sshd.log 2>&1; } || status=$?
if [ -n "$made_policy" ]; then
	rm -f "$policy"
fi
if [ "$status" -ne 0 ]; then
	tail -20 /tmp/install-sshd.log >&2
	echo "openssh-server could not be installed (apt-get, exit $status): see /tmp/install-sshd.log" >&2
	exit "$status"
fi
echo "openssh-server installed (/usr/sbin/sshd); the machine's own sshd was not started"
