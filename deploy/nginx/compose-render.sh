#!/bin/sh
# Run by the nginx image's entrypoint (/docker-entrypoint.d/) in deploy/compose.yaml,
# as root, before nginx starts: renders deploy/nginx/hybridcon.conf, the same file an
# operator installs by hand and tests/e2e/test_nginx_deploy.py runs, with the values
# that differ in compose. Rendering instead of keeping a second copy means the signed-URL
# rules cannot drift apart. Restart nginx after the HLS secret changes.
set -eu

template=/etc/hybridcon/hybridcon.conf
secret_file=/var/lib/hybridcon/keys/hls.secret
out=/etc/nginx/conf.d/default.conf

# hybridcon-1 creates the secret on its first start; compose starts nginx only once it
# is healthy, so a missing file is a broken volume, not a race.
if [ ! -s "$secret_file" ]; then
    echo "compose-render: $secret_file is missing or empty" >&2
    exit 1
fi
# As docs/operations.md renders it: URL-safe base64 without padding.
secret=$(base64 -w0 "$secret_file" | tr '+/' '-_' | tr -d '=')

# Every replacement must hit exactly once, or the template changed under us.
for needle in 'server 127.0.0.1:8080;' 'REPLACE-WITH-THE-HLS-SECRET' '    location /ws {'; do
    count=$(grep -cF -- "$needle" "$template" || true)
    if [ "$count" != 1 ]; then
        echo "compose-render: expected '$needle' once in $template, found $count" >&2
        exit 1
    fi
done

# The three nodes, least connections first (WebSockets are long-lived, so round robin
# would pile them onto whichever node restarted last), and WHIP/WHEP pinned to the
# node that runs the stages' media (compose-media.conf explains why).
sed \
    -e 's|server 127.0.0.1:8080;|least_conn;\n    server hybridcon-1:8080;\n    server hybridcon-2:8080;\n    server hybridcon-3:8080;|' \
    -e "s|REPLACE-WITH-THE-HLS-SECRET|$secret|" \
    -e 's|^    location /ws {|    include /etc/hybridcon/compose-media.conf;\n\n    location /ws {|' \
    "$template" > "$out"
# The secret is in the rendered file: readable by nginx's master (root) only.
chmod 0600 "$out"
