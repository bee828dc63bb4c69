#!/bin/sh
# Writes the three files Janus needs to serve hybridcon's rooms (docs/operations.md,
# "Configuring Janus for hybridcon") into DIR, then runs the rest of the command line, if
# any: the image's entrypoint is `janus-config.sh /tmp/janus janus -F /tmp/janus`, and
# tests/janus.py renders its Janus's files with this same script.
#
# Read from the environment:
#   JANUS_WS_IP              the address the API listens on: one only hybridcon's nodes
#                            reach (required)
#   JANUS_ROOM_KEY_FILE      hybridcon's room key (HYBRIDCON_JANUS_ROOM_KEY_FILE; hybridcon
#                            makes it at its first start), the VideoRoom's admin_key (required)
#   JANUS_ADMIN_SECRET_FILE  optional: token authentication on, and the admin API on
#                            JANUS_ADMIN_IP (default JANUS_WS_IP) with this secret
#   JANUS_RTP_PORT_RANGE     default 20000-20999
#   JANUS_ICE_ENFORCE_LIST   optional: the interfaces (or addresses) ICE may use
#   JANUS_SESSION_TIMEOUT    default 60 (above hybridcon's 15 s keepalive)
#   JANUS_DEBUG_LEVEL        default 4
#   JANUS_LIBDIR             default: the janus folder under /usr/lib/<multiarch>
set -eu

if [ "$#" -lt 1 ]; then
    echo "usage: janus-config.sh DIR [command ...]" >&2
    exit 2
fi
dir=$1
shift

fail() {
    echo "janus-config: $*" >&2
    exit 1
}

[ -n "${JANUS_WS_IP:-}" ] || fail "JANUS_WS_IP is not set (the address the API listens on)"
[ -n "${JANUS_ROOM_KEY_FILE:-}" ] || fail "JANUS_ROOM_KEY_FILE is not set"
[ -s "$JANUS_ROOM_KEY_FILE" ] || fail "$JANUS_ROOM_KEY_FILE is missing or empty: hybridcon makes it at its first start with HYBRIDCON_ROOMS_PROVIDER=janus"

# One line, as hybridcon reads it; a quote would end the value in the jcfg file.
secret_of() {
    value=$(head -n1 "$1" | tr -d '\r\n')
    case $value in
        *'"'* | *'\'*) fail "$1 holds a quote or a backslash" ;;
    esac
    printf '%s' "$value"
}
room_key=$(secret_of "$JANUS_ROOM_KEY_FILE")

libdir=${JANUS_LIBDIR:-}
if [ -z "$libdir" ]; then
    for candidate in /usr/lib/*/janus; do
        [ -d "$candidate/plugins" ] && libdir=$candidate && break
    done
fi
[ -n "$libdir" ] && [ -f "$libdir/plugins/libjanus_videoroom.so" ] ||
    fail "no Janus VideoRoom plugin found (set JANUS_LIBDIR)"

# Everything Debian's package builds but the VideoRoom plugin and the WebSocket transport.
libs() {
    out=
    for name in "$@"; do out="$out${out:+,}libjanus_$name.so"; done
    printf '%s' "$out"
}

if [ -n "${JANUS_ADMIN_SECRET_FILE:-}" ]; then
    [ -s "$JANUS_ADMIN_SECRET_FILE" ] || fail "$JANUS_ADMIN_SECRET_FILE is missing or empty"
    admin_secret=$(secret_of "$JANUS_ADMIN_SECRET_FILE")
    auth="  admin_secret = \"$admin_secret\"
  token_auth = true"
    admin="admin: {
  admin_ws = true
  admin_ws_ip = \"${JANUS_ADMIN_IP:-$JANUS_WS_IP}\"
  admin_ws_port = 7188
  admin_wss = false
}"
else
    auth="  token_auth = false"
    admin="admin: {
  admin_ws = false
}"
fi
if [ -n "${JANUS_ICE_ENFORCE_LIST:-}" ]; then
    nat="  ice_enforce_list = \"$JANUS_ICE_ENFORCE_LIST\""
else
    nat=""
fi

mkdir -p "$dir"
umask 077
cat > "$dir/janus.jcfg" <<JCFG
general: {
  configs_folder = "$dir"
  plugins_folder = "$libdir/plugins"
  transports_folder = "$libdir/transports"
  events_folder = "$libdir/events"
  loggers_folder = "$libdir/loggers"
  debug_level = ${JANUS_DEBUG_LEVEL:-4}
$auth
  session_timeout = ${JANUS_SESSION_TIMEOUT:-60}
}
media: {
  rtp_port_range = "${JANUS_RTP_PORT_RANGE:-20000-20999}"
}
nat: {
$nat
}
plugins: {
  disable = "$(libs audiobridge duktape echotest lua nosip recordplay sip streaming textroom videocall voicemail)"
}
transports: {
  disable = "$(libs http mqtt nanomsg pfunix rabbitmq)"
}
events: {
  disable = "$(libs gelfevh mqttevh nanomsgevh rabbitmqevh sampleevh wsevh)"
}
loggers: {
  disable = "libjanus_jsonlog.so"
}
JCFG
cat > "$dir/janus.transport.websockets.jcfg" <<JCFG
general: {
  json = "plain"
  ws = true
  ws_ip = "$JANUS_WS_IP"
  ws_port = 8188
  wss = false
}
$admin
JCFG
cat > "$dir/janus.plugin.videoroom.jcfg" <<JCFG
general: {
  admin_key = "$room_key"
}
JCFG

if [ "$#" -gt 0 ]; then
    exec "$@"
fi
