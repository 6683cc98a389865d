#!/usr/bin/env bash
# Lab PKI for the hardened example: one CA and a certificate (key in the same PEM) per MC
# system, naming its domain (RFC 5922 7.1: the peer checks it against the PSI it claims).
# Writes certs/ca.pem, certs/primary.pem, certs/partner.pem next to this script.  Lab use
# only (1 day validity); in service the interconnect CA issues them.
#   examples/config/hardened/make-certs.sh [dir]
set -euo pipefail
dir=${1:-"$(dirname "$0")/certs"}
mkdir -p "$dir"
cd "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj "/CN=mcacm interconnect CA" -keyout "$tmp/ca.key" -out ca.pem 2>/dev/null
for system in primary partner; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=acms.$system.example" -keyout "$tmp/$system.key" -out "$tmp/$system.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s.example\nbasicConstraints=CA:FALSE\n' "$system" > "$tmp/ext"
  openssl x509 -req -in "$tmp/$system.csr" -CA ca.pem -CAkey "$tmp/ca.key" -CAcreateserial \
    -days 1 -extfile "$tmp/ext" -out "$tmp/$system.crt" 2>/dev/null
  cat "$tmp/$system.crt" "$tmp/$system.key" > "$system.pem"
done
rm -f ca.srl
echo "wrote $(pwd)/ca.pem, primary.pem and partner.pem"
