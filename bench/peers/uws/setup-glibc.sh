#!/usr/bin/env bash
# The prebuilt uws_linux_x64_115.node in @btc-vision/uwebsockets.js 20.57.0 needs GLIBC_2.38
# (__isoc23_strtol/__isoc23_strtoul/__isoc23_sscanf); this machine (Debian 12) has glibc 2.36, so
# require() fails. Work-around without touching the system or the binary: fetch Debian 13's libc6
# .deb with apt (private source list and state under ./glibc/apt, nothing installed), unpack it into
# ./glibc; bench/compare.sh starts node through that glibc's loader
# (ld-linux-x86-64.so.2 --library-path ./glibc/...:/usr/lib/x86_64-linux-gnu node server.js).
set -euo pipefail
cd "$(dirname "$0")"
D="$PWD/glibc"; A="$D/apt"
mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/sources"
cat > "$A/sources/trixie.sources" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
OPT=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$A/sources" -o "Dir::State::Lists=$A/lists" -o "Dir::Cache=$A/cache")
timeout 300 apt-get "${OPT[@]}" update >/dev/null
( cd "$A" && timeout 300 apt-get "${OPT[@]}" download libc6 2>/dev/null )
DEB="$(ls "$A"/libc6_*_amd64.deb | tail -1)"
dpkg-deb -x "$DEB" "$D/root"
echo "unpacked $(basename "$DEB") into $D/root"
