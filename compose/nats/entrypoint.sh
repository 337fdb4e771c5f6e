#!/bin/sh
# Start nats-server from a rendered sitemesh config (compose/nats/*.conf or the
# Kubernetes ConfigMap), replacing each password placeholder
# __NATS_<SERVER>_<USER>_PASSWORD__ by the environment variable of the same name
# without the surrounding underscores (NATS_EU1_LEAF_PASSWORD). See
# sitemesh/topology/_compose.py.
#
#   NATS_CONF_TEMPLATE  the rendered config (default /etc/sitemesh/nats.conf)
#   NATS_CONF           where the filled config goes (default /tmp/nats.conf, 0600)
#   NATS_SERVER         the server binary (default nats-server)
#   "$@"                extra nats-server arguments, e.g. -sd /data/jetstream
set -eu
template="${NATS_CONF_TEMPLATE:-/etc/sitemesh/nats.conf}"
conf="${NATS_CONF:-/tmp/nats.conf}"
umask 077
cp "$template" "$conf"
for token in $(grep -o '__NATS_[A-Z0-9_]*_PASSWORD__' "$template" | sort -u); do
  name="${token#__}"
  name="${name%__}"
  value="$(printenv "$name" || true)"
  if [ -z "$value" ]; then
    echo "entrypoint: $name is not set (needed by $template)" >&2
    exit 64
  fi
  case "$value" in
    *[!A-Za-z0-9_-]*)
      echo "entrypoint: $name must be URL-safe (A-Z a-z 0-9 _ -); use secrets.token_urlsafe" >&2
      exit 64
      ;;
  esac
  sed -i "s|$token|$value|g" "$conf"
done
exec "${NATS_SERVER:-nats-server}" -c "$conf" "$@"
