#!/usr/bin/env bash
# Keeps the layers' dependencies where docs/decisions.md puts them:
#   <msgpack.h>        only in the codec, src/engine/frame.c
#   <sqlite3.h>        only in the SQLite store, src/store/store_sqlite*
#   <libpq-fe.h>       only in the PostgreSQL store, src/store/store_pg*
#   <libwebsockets.h>  only in src/transport/
#   <curl/curl.h>      only in the client's HTTP carriage, src/transport/transport_curl*
#   src/engine/        includes nothing from transport/, client/, server/, the
#                      SQLite store or the stores' test hooks
#   store_sqlite*.h    only in the SQLite store's own files
#   store_pg*.h        only in the PostgreSQL store's own files
#   store_testhooks.h  only in the stores themselves (and tests, outside src/)
# Usage: layering_test.sh SOURCE_DIR. First checks that the checker finds
# planted violations in a scratch tree, then checks SOURCE_DIR/src.
set -u

ROOT=${1:?usage: layering_test.sh SOURCE_DIR}

# check DIR: prints one line per violation under DIR (a src/ tree); returns 1 if any.
check() {
    local dir=$1 bad=0 line file inc
    # Every #include line of every C file: "file:line:text".
    while IFS= read -r line; do
        file=${line%%:*}
        file=${file#"$dir"/}
        inc=$(printf '%s\n' "${line#*:*:}" | sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]\([^>"]*\)[>"].*/\1/p')
        [ -n "$inc" ] || continue
        case "$inc" in
        msgpack.h | msgpack/*)
            [ "$file" = engine/frame.c ] || { echo "$file includes <$inc>: only engine/frame.c may"; bad=1; } ;;
        sqlite3.h | sqlite3ext.h)
            case "$file" in
            store/store_sqlite*) ;;
            *) echo "$file includes <$inc>: only store/store_sqlite* may"; bad=1 ;;
            esac ;;
        libpq-fe.h | libpq/* | postgresql/*)
            case "$file" in
            store/store_pg*) ;;
            *) echo "$file includes <$inc>: only store/store_pg* may"; bad=1 ;;
            esac ;;
        libwebsockets.h | libwebsockets/*)
            case "$file" in
            transport/*) ;;
            *) echo "$file includes <$inc>: only transport/ may"; bad=1 ;;
            esac ;;
        curl/*)
            case "$file" in
            transport/transport_curl*) ;;
            *) echo "$file includes <$inc>: only transport/transport_curl* may"; bad=1 ;;
            esac ;;
        esac
        case "$inc" in
        store_sqlite*.h | store/store_sqlite*.h)
            case "$file" in
            store/store_sqlite*) ;;
            *) echo "$file includes $inc: the SQLite store's headers are its own"; bad=1 ;;
            esac ;;
        store_pg*.h | store/store_pg*.h)
            case "$file" in
            store/store_pg*) ;;
            *) echo "$file includes $inc: the PostgreSQL store's headers are its own"; bad=1 ;;
            esac ;;
        store_testhooks.h | store/store_testhooks.h)
            case "$file" in
            store/store_*) ;;
            *) echo "$file includes $inc: test hooks are for the stores and tests only"; bad=1 ;;
            esac ;;
        esac
        case "$file" in
        engine/*)
            case "$inc" in
            transport/* | client/* | server/* | store/store_sqlite* | store/store_testhooks.h | \
                store_sqlite* | store/store_pg* | store_pg* | tools/*)
                echo "$file includes $inc: the engine depends on no I/O layer"; bad=1 ;;
            esac ;;
        esac
    done < <(grep -rnE '^[[:space:]]*#[[:space:]]*include' "$dir" --include='*.c' --include='*.h')
    return $bad
}

# The checker must see violations, or a silent grep would pass anything.
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/tether-layering-XXXXXX") || exit 1
trap 'rm -rf "$SCRATCH"' EXIT
mkdir -p "$SCRATCH/src/engine" "$SCRATCH/src/client" "$SCRATCH/src/store"
printf '#include <msgpack.h>\n' >"$SCRATCH/src/engine/frame.c"
printf '#include "store/store.h"\n' >"$SCRATCH/src/engine/session.c"
printf '#include <sqlite3.h>\n' >"$SCRATCH/src/store/store_sqlite.c"
printf '#include <libpq-fe.h>\n' >"$SCRATCH/src/store/store_pg.c"
if ! out=$(check "$SCRATCH/src"); then
    echo "self-test: a clean tree was reported:"
    echo "$out"
    exit 1
fi
planted=0
for v in 'engine/frame.h:#include <msgpack.h>' 'store/store_memory.c:#include <sqlite3.h>' \
    'client/client.c:#  include <libwebsockets.h>' 'client/client.c:#include <curl/curl.h>' 'engine/session.c:#include "transport/transport.h"' \
    'engine/session.c:#include "store/store_sqlite_int.h"' 'engine/session.c:#include "client/client_int.h"' \
    'client/client.c:#include "store/store_testhooks.h"' 'store/store_memory.c:#include "store_sqlite_int.h"' \
    'client/client.c:#include <libpq-fe.h>' 'store/store_sqlite.c:#include <libpq-fe.h>' \
    'store/store_memory.c:#include "store_pg_int.h"' 'engine/session.c:#include "store/store_pg_int.h"'; do
    f=$SCRATCH/src/${v%%:*}
    cp -p "$f" "$f.keep" 2>/dev/null || : >"$f.keep"
    printf '%s\n' "${v#*:}" >>"$f"
    if check "$SCRATCH/src" >/dev/null; then
        echo "self-test: planted violation not found: $v"
        planted=1
    fi
    mv "$f.keep" "$f"
    [ -s "$f" ] || rm -f "$f"
done
[ "$planted" -eq 0 ] || exit 1

if ! check "$ROOT/src"; then
    echo "FAIL: dependencies leak across layers (see above)"
    exit 1
fi
echo "ok: msgpack.h, sqlite3.h, libpq-fe.h, libwebsockets.h and curl.h stay in their layers; the engine does no I/O"
