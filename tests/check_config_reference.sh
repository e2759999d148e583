#!/usr/bin/env bash
# ctest config_reference: docs/config.md must be exactly what the schema generates.
#   check_config_reference.sh T2SDA_TRAIN DOCS_CONFIG_MD
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 T2SDA_TRAIN DOCS_CONFIG_MD" >&2
  exit 2
fi
train=$1
doc=$2
fresh=$(mktemp)
trap 'rm -f "$fresh"' EXIT
"$train" --config-reference >"$fresh"
if ! diff -u "$doc" "$fresh"; then
  echo "$doc differs from the config schema (launch/train_config.c); regenerate it with:" >&2
  echo "  build/bin/t2sda_train --config-reference > docs/config.md" >&2
  exit 1
fi
echo "$doc matches the schema ($(grep -c '^| `' "$doc") keys)"
