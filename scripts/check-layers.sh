#!/usr/bin/env bash
# check-layers — the dependency direction of HACKING.md "Layers", checked on the sources.
#
#   bash scripts/check-layers.sh [SRC_DIR]     (default: src next to this script)
#
# 1. Every `#include "folder/file.h"` of a file in src/<folder>/ must name a folder that folder
#    may use (the table below; a folder may always include its own headers). app.h and
#    config.h, the composition root's, may be included only by the root files (main.c, app.c,
#    cli.c and config.c themselves) and by api/; version.h (the version string) by anyone.
# 2. The one commit path: only src/sandbox/ (and the store itself) calls the store functions
#    that change a sandbox (store_commit, store_sandbox_create, store_sandbox_delete,
#    store_sandbox_touch, store_sandbox_set_network). Comments count too: name the sandbox-layer function instead.
# Prints one line per offence (file:line: what) and exits 1 when there is any, else 0.
set -u
src=${1:-"$(cd "$(dirname "$0")/.." && pwd)/src"}
[ -d "$src" ] || { echo "check-layers: no source directory $src" >&2; exit 2; }

# folder -> the other folders it may include (util is everyone's; so is its own folder)
declare -A allowed=(
    [util]=""
    [store]="util"
    [jail]="util"
    [auth]="util"
    [workspace]="store util"
    [sandbox]="store util"
    [archive]="store util"
    [egress]="store util"
    [exec]="sandbox workspace jail egress store util"
    [api]="sandbox exec archive auth egress store util"
    [client]="util"
    [root]="api sandbox exec archive auth egress store workspace jail client util"
)
root_headers="app.h config.h cli.h version.h"
mutators='store_commit|store_sandbox_create|store_sandbox_delete|store_sandbox_touch|store_sandbox_set_network'

bad=0
say() {
    echo "$1"
    bad=1
}

while IFS= read -r -d '' f; do
    rel=${f#"$src"/}
    case "$rel" in
    */*) folder=${rel%%/*} ;;
    *) folder=root ;;
    esac
    if [ -z "${allowed[$folder]+set}" ]; then
        say "$rel: src/$folder/ is not a known layer (add it to HACKING.md and scripts/check-layers.sh)"
        continue
    fi
    while IFS=: read -r line inc; do
        case "$inc" in
        */*) target=${inc%%/*} ;;
        *) target=root ;;
        esac
        if [ "$target" = root ]; then
            case " $root_headers " in
            *" $inc "*) ;;
            *) say "$rel:$line: includes \"$inc\", which is not a header of src/"; continue ;;
            esac
            case "$inc" in
            app.h | config.h)
                case "$rel" in
                main.c | app.c | app.h | cli.c | config.c | api/*) ;;
                *) say "$rel:$line: includes \"$inc\": only main.c, app.c and api/ may (HACKING.md \"Layers\")" ;;
                esac
                ;;
            esac
            continue
        fi
        [ "$target" = "$folder" ] && continue
        case " ${allowed[$folder]} " in
        *" $target "*) ;;
        *) say "$rel:$line: includes \"$inc\": $folder/ may include only ${allowed[$folder]:-nothing but itself} (HACKING.md \"Layers\")" ;;
        esac
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
        sed 's/^\([0-9]*\):[^"]*"\([^"]*\)".*/\1:\2/')
    case "$folder" in
    sandbox | store) ;;
    *)
        grep -nE "\\b($mutators)\\(" "$f" | while IFS=: read -r line _; do
            echo "$rel:$line: changes a sandbox in the store directly: go through the sandbox layer (sandbox_commit, sandbox_create, sandbox_delete, sandbox_touch)"
        done | grep . && bad=1
        ;;
    esac
done < <(find "$src" -type f \( -name '*.c' -o -name '*.h' \) -print0 | sort -z)

exit $bad
