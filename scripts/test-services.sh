# Sourced by scripts/test: starts a throw-away PostgreSQL cluster and Redis server on loopback
# ports for the test suite, exports their URLs, and stops both when the calling shell exits.
PG_PORT=${PIXELDROP_TEST_PG_PORT:-55432}
REDIS_PORT=${PIXELDROP_TEST_REDIS_PORT:-56379}
SERVICES_DIR=$(mktemp -d /tmp/pixeldrop-test-services.XXXXXX)
chmod 755 "$SERVICES_DIR"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as_pg=()
if [[ $(id -u) -eq 0 ]]; then
  chown postgres "$SERVICES_DIR"
  as_pg=(runuser -u postgres --)
fi
"${as_pg[@]}" "$PGBIN/initdb" -D "$SERVICES_DIR/pg" -A trust -U pixeldrop >/dev/null
"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$SERVICES_DIR/pg" -l "$SERVICES_DIR/pg.log" -w \
  -o "-p $PG_PORT -k $SERVICES_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
"$PGBIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U pixeldrop pixeldrop_test
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --pidfile "$SERVICES_DIR/redis.pid" --logfile "$SERVICES_DIR/redis.log"

stop_test_services() {
  "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$SERVICES_DIR/pg" -m immediate stop >/dev/null 2>&1 || true
  [[ -f "$SERVICES_DIR/redis.pid" ]] && kill "$(cat "$SERVICES_DIR/redis.pid")" 2>/dev/null || true
  rm -rf "$SERVICES_DIR"
}
trap stop_test_services EXIT

export PIXELDROP_TEST_POSTGRES_URL="postgresql+psycopg://pixeldrop@127.0.0.1:$PG_PORT/pixeldrop_test"
export PIXELDROP_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
