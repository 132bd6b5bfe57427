#!/usr/bin/env bash
# Writes docs/openapi.json into Sources/VSPCNet/HTTP/APIDocument.swift, which vspcd serves at
# /api/v1/openapi.json. Run it after editing docs/openapi.json (a test checks that both say the same).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import json, sys; json.load(open("docs/openapi.json"))'
{
    printf '%s\n' "/// The JSON API's OpenAPI 3 document, served at \`/api/v1/openapi.json\`: the same bytes as docs/openapi.json"
    printf '%s\n' "/// (a test compares them; after editing that file, run contrib/update-openapi.sh)."
    printf '%s\n' 'enum APIDocument {' '    static let json = #"""'
    cat docs/openapi.json
    printf '%s\n' '"""#' '}'
} > Sources/VSPCNet/HTTP/APIDocument.swift
