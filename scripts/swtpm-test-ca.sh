#!/usr/bin/env bash
# swtpm-test-ca.sh - a private software TPM with an EK certificate from a
# private test EK CA, for tests. Never touches the system swtpm configuration
# (/etc/swtpm*) or /var/lib/swtpm-localca: every file lives under DIR.
#
# Usage:
#   scripts/swtpm-test-ca.sh setup DIR        create DIR/ca (test EK CA),
#                                              DIR/state (TPM state with EK and
#                                              platform certificates) and
#                                              DIR/collateral/tpm/ek-ca/*.pem, plus
#                                              DIR/untrusted/tpm/ek-ca/ (another CA)
#   scripts/swtpm-test-ca.sh start DIR PORT   start swtpm on 127.0.0.1:PORT
#                                              (control channel PORT+1); prints
#                                              the swtpm PID on stdout
#   scripts/swtpm-test-ca.sh run DIR PORT     like start, but exec swtpm in the
#                                              foreground (the caller's child, so
#                                              it can kill and reap it by PID)
#   scripts/swtpm-test-ca.sh stop DIR         kill the swtpm started by start
#
# Exits 0 on success, 1 on failure (with a message on stderr), 2 on usage.
set -euo pipefail

usage() { echo "usage: $0 setup DIR | start DIR PORT | stop DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)

case "$cmd" in
setup)
	for t in swtpm swtpm_setup swtpm_localca; do
		command -v "$t" >/dev/null || { echo "swtpm-test-ca: $t not installed" >&2; exit 1; }
	done
	rm -rf "$dir/ca" "$dir/state" "$dir/collateral"
	mkdir -p "$dir/ca" "$dir/state" "$dir/collateral/tpm/ek-ca"
	# swtpm_localca creates a root CA and an intermediate signing CA in
	# statedir the first time it runs (signingkey/issuercert do not exist yet).
	cat >"$dir/ca/swtpm-localca.conf" <<CONF
statedir = $dir/ca
signingkey = $dir/ca/signkey.pem
issuercert = $dir/ca/issuercert.pem
certserial = $dir/ca/certserial
CONF
	cat >"$dir/ca/swtpm-localca.options" <<CONF
--platform-manufacturer seeswarm-test
--platform-version 2.1
--platform-model swtpm
CONF
	cat >"$dir/ca/swtpm_setup.conf" <<CONF
create_certs_tool = $(command -v swtpm_localca)
create_certs_tool_config = $dir/ca/swtpm-localca.conf
create_certs_tool_options = $dir/ca/swtpm-localca.options
active_pcr_banks = sha256
CONF
	# XDG_CONFIG_HOME keeps swtpm_setup from reading ~/.config/swtpm_setup.conf.
	XDG_CONFIG_HOME="$dir/ca" swtpm_setup --tpm2 --tpmstate "$dir/state" \
		--create-ek-cert --create-platform-cert \
		--config "$dir/ca/swtpm_setup.conf" --logfile "$dir/ca/setup.log" \
		--overwrite >/dev/null 2>&1 || {
		echo "swtpm-test-ca: swtpm_setup failed; see $dir/ca/setup.log" >&2
		cat "$dir/ca/setup.log" >&2 || true
		exit 1
	}
	cp "$dir/ca/issuercert.pem" "$dir/collateral/tpm/ek-ca/issuercert.pem"
	if [ -f "$dir/ca/swtpm-localca-rootca-cert.pem" ]; then
		cp "$dir/ca/swtpm-localca-rootca-cert.pem" "$dir/collateral/tpm/ek-ca/rootca.pem"
	fi
	# A second, unrelated CA: a collateral dir that must NOT accept the EK.
	mkdir -p "$dir/untrusted/tpm/ek-ca"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-subj "/CN=untrusted-ek-ca" -days 2 -keyout "$dir/ca/untrusted-key.pem" \
		-out "$dir/untrusted/tpm/ek-ca/untrusted.pem" >/dev/null 2>&1 || {
		echo "swtpm-test-ca: openssl could not create the untrusted CA" >&2
		exit 1
	}
	;;
start)
	[ $# -eq 3 ] || usage
	port=$3
	ctrl=$((port + 1))
	swtpm socket --tpm2 --tpmstate dir="$dir/state" \
		--server type=tcp,port="$port",bindaddr=127.0.0.1 \
		--ctrl type=tcp,port="$ctrl",bindaddr=127.0.0.1 \
		--flags not-need-init,startup-clear \
		--pid file="$dir/swtpm.pid" --log file="$dir/swtpm.log" \
		--daemon
	# --daemon returns after the sockets are bound and the PID file is written.
	cat "$dir/swtpm.pid"
	;;
run)
	[ $# -eq 3 ] || usage
	port=$3
	exec swtpm socket --tpm2 --tpmstate dir="$dir/state" \
		--server type=tcp,port="$port",bindaddr=127.0.0.1 \
		--ctrl type=tcp,port="$((port + 1))",bindaddr=127.0.0.1 \
		--flags not-need-init,startup-clear --log file="$dir/swtpm.log"
	;;
stop)
	if [ -f "$dir/swtpm.pid" ]; then
		kill "$(cat "$dir/swtpm.pid")" 2>/dev/null || true
		rm -f "$dir/swtpm.pid"
	fi
	;;
*)
	usage
	;;
esac
