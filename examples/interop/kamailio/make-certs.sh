#!/usr/bin/env bash
# Test PKI for the SIP core and our nodes: a CA and one leaf certificate (key in the same PEM)
# naming primary.example, partner.example and 127.0.0.1.  Writes <dir>/ca.pem and <dir>/sip.pem
# (default: certs/ next to this script, where tls.cfg looks).  Test use only: 1 day validity.
#   examples/interop/kamailio/make-certs.sh [dir]
set -euo pipefail
dir=${1:-"$(dirname "$0")/certs"}
mkdir -p "$dir"
cd "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj "/CN=mcacm interop CA" -keyout "$tmp/ca.key" -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=mcacm interop SIP" -keyout "$tmp/sip.key" -out "$tmp/sip.csr" 2>/dev/null
printf 'subjectAltName=DNS:primary.example,DNS:partner.example,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' \
  > "$tmp/ext"
openssl x509 -req -in "$tmp/sip.csr" -CA ca.pem -CAkey "$tmp/ca.key" -CAcreateserial \
  -days 1 -extfile "$tmp/ext" -out "$tmp/sip.crt" 2>/dev/null
cat "$tmp/sip.crt" "$tmp/sip.key" > sip.pem
rm -f ca.srl
echo "wrote $(pwd)/ca.pem and $(pwd)/sip.pem"
